"""The risk domain's audit trail (``risk_changes``): one row per change, in the transaction
of the change itself, so a change and its record commit or roll back together."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit import clock
from paymux.kit.ids import new_id
from paymux.risk.models import RiskChange

MAX_VALUES = 20
"""A bulk change records at most this many of its values (and how many there were)."""


def record(
    session: AsyncSession, *, owner: str, livemode: bool | None, actor: str, action: str,
    object_type: str, object_id: str, **detail: Any,
) -> None:  # fmt: skip
    session.add(RiskChange(
        id=new_id("rch"), owner=owner, livemode=livemode, actor=actor or "unknown",
        action=action, object_type=object_type, object_id=object_id, detail=detail,
        created_at=clock.now(),
    ))  # fmt: skip

"""The notification inbox: every verified channel notification, stored raw, applied once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit.db import Base, JSONType, UTCDateTime


class ChannelEvent(Base):
    """The inbox: every verified channel notification, stored raw, applied once."""

    __tablename__ = "channel_events"
    __table_args__ = (sa.UniqueConstraint("channel_account_id", "event_key"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    channel: Mapped[str] = mapped_column(sa.String(32))
    channel_account_id: Mapped[str] = mapped_column(sa.ForeignKey("channel_accounts.id"))
    event_key: Mapped[str] = mapped_column(sa.String(128))
    out_trade_no: Mapped[str] = mapped_column(sa.String(64), index=True)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONType)
    body: Mapped[str] = mapped_column(sa.Text)
    result: Mapped[str] = mapped_column(sa.String(32))
    """What applying it did: ``applied``, ``no_change`` (stale or already known) or
    ``rejected`` (refused by the cross-check against our order; changed nothing)."""
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

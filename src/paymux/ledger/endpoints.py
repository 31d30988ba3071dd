"""``/v1/operator/ledger``: the books, for the platform's operators."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from paymux.kit.idempotency import IdempotentRoute
from paymux.kit.web import ReadSessionDep
from paymux.ledger import service
from paymux.ledger.repository import LedgerRepository
from paymux.merchants.auth import OperatorDep

router = APIRouter(prefix="/v1/operator/ledger", tags=["ledger"], route_class=IdempotentRoute)


class AccountOut(BaseModel):
    id: str
    owner_type: str
    owner_id: str
    purpose: str
    currency: str
    normal: str
    balance: int
    available: int
    pending_debits: int
    pending_credits: int
    version: int
    balance_as_of: int | None = None


@router.get("/accounts/{account_id}", response_model=AccountOut)
async def account(
    account_id: str, _: OperatorDep, session: ReadSessionDep,
    as_of: Annotated[dt.datetime | None, Query(description="Balance at a past moment")] = None,
) -> AccountOut:  # fmt: skip
    a = await service.get_account(session, account_id)
    past = await service.balance_as_of(session, a.id, as_of) if as_of else None
    return AccountOut(
        id=a.id, owner_type=a.owner_type, owner_id=a.owner_id, purpose=a.purpose,
        currency=a.currency, normal=a.normal, balance=a.balance, available=a.available,
        pending_debits=a.pending_debits, pending_credits=a.pending_credits, version=a.version,
        balance_as_of=past,
    )  # fmt: skip


@router.get("/trial_balance")
async def trial_balance(_: OperatorDep, session: ReadSessionDep) -> dict[str, object]:
    """Σ debits and Σ credits of every posted entry per currency: equal, or the books are
    broken."""
    totals = await LedgerRepository(session).totals_by_currency()
    return {
        "object": "trial_balance",
        "currencies": {
            c: {"debits": d, "credits": k, "balanced": d == k} for c, (d, k) in totals.items()
        },
    }

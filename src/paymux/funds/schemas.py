"""Where a payment's money is, as the API shows it."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from paymux.funds.models import PaymentFunds


class FundsOut(BaseModel):
    payment: str
    currency: str
    gross: int
    refunded: int
    refund_reserved: int
    split_out: int
    remaining: int
    escrow: str
    escrow_deadline: dt.datetime | None
    escrow_released_at: dt.datetime | None
    escrow_released_by: str | None
    settle_due_at: dt.datetime | None
    settlement: str | None
    settlement_fee: int

    @classmethod
    def of(cls, f: PaymentFunds) -> FundsOut:
        return cls(
            payment=f.payment_id, currency=f.currency, gross=f.gross, refunded=f.refunded,
            refund_reserved=f.refund_reserved, split_out=f.split_out, remaining=f.remaining,
            escrow=f.escrow_state, escrow_deadline=f.escrow_deadline,
            escrow_released_at=f.escrow_released_at, escrow_released_by=f.escrow_released_by,
            settle_due_at=f.settle_due_at, settlement=f.settlement_id, settlement_fee=f.fee,
        )  # fmt: skip

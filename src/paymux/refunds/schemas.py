"""The public shapes of the refunds API."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from paymux.payments.schemas import Failure
from paymux.refunds.models import Refund

OutRefundNo = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-|*@.]+$")
]


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payment: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    amount: int | None = Field(
        default=None, gt=0, le=10**15,
        description="Minor units; default everything still refundable.",
    )  # fmt: skip
    out_refund_no: OutRefundNo
    reason: Annotated[str, StringConstraints(max_length=80)] | None = None


class RefundOut(BaseModel):
    id: str
    object: Literal["refund"] = "refund"
    livemode: bool
    payment: str
    status: str
    amount: int
    currency: str
    out_refund_no: str
    reason: str | None
    channel: str
    channel_refund_no: str | None
    failure: Failure | None
    created_at: dt.datetime
    succeeded_at: dt.datetime | None
    requires_attention_since: dt.datetime | None
    """Set while a refund has stayed pending for longer than the channel should take; an
    operator should look at it with the channel (it is still queried)."""

    @classmethod
    def of(cls, refund: Refund) -> RefundOut:
        failure = (
            Failure(code=refund.failure_code, message=refund.failure_message)
            if refund.failure_code and refund.status == "failed"
            else None
        )
        return cls(
            id=refund.id, livemode=refund.livemode, payment=refund.payment_id,
            status=refund.status, amount=refund.amount, currency=refund.currency,
            out_refund_no=refund.out_refund_no, reason=refund.reason, channel=refund.channel,
            channel_refund_no=refund.channel_refund_no, failure=failure,
            created_at=refund.created_at, succeeded_at=refund.succeeded_at,
            requires_attention_since=(
                refund.attention_at if refund.status == "pending" else None),
        )  # fmt: skip

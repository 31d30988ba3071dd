"""The public shapes of payouts."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from paymux.channels.base import PayeeType
from paymux.payouts.models import Payout, Speed


class Destination(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: PayeeType
    account: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None


class PayoutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Literal["merchant"] | Annotated[str, StringConstraints(pattern=r"^wal_[0-9a-z]+$")]
    """``merchant`` (the merchant's available balance) or a wallet id."""
    amount: int = Field(gt=0, le=10**15)
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "CNY"
    speed: Speed = Speed.standard
    destination: Destination
    out_payout_no: Annotated[str, StringConstraints(min_length=1, max_length=64,
                                                    pattern=r"^[A-Za-z0-9_\-]+$")]  # fmt: skip
    remark: Annotated[str, StringConstraints(max_length=100)] = "提现"


class PayoutOut(BaseModel):
    id: str
    object: str = "payout"
    livemode: bool
    out_payout_no: str
    source: str
    amount: int
    fee: int
    currency: str
    speed: str
    destination: dict[str, str | None]
    channel: str
    status: str
    channel_transfer_no: str | None
    failure_code: str | None
    failure_message: str | None
    scheduled_for: dt.datetime | None
    succeeded_at: dt.datetime | None
    created_at: dt.datetime

    @classmethod
    def of(cls, p: Payout) -> PayoutOut:
        return cls(
            id=p.id, livemode=p.livemode, out_payout_no=p.out_payout_no,
            source=p.source_id if p.source_type == "wallet" else "merchant", amount=p.amount,
            fee=p.fee, currency=p.currency, speed=p.speed,
            destination={"type": p.destination_type, "account": p.destination_account,
                         "name": p.destination_name},
            channel=p.channel, status=p.status, channel_transfer_no=p.channel_transfer_no,
            failure_code=p.failure_code, failure_message=p.failure_message,
            scheduled_for=p.due_at if p.status == "pending" else None,
            succeeded_at=p.succeeded_at, created_at=p.created_at,
        )  # fmt: skip

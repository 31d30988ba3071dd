"""The public shapes of profit sharing."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from paymux.channels.base import SplitReceiverType
from paymux.splits.models import Split, SplitPart, Trigger

MAX_RECEIVERS = 50


class ReceiverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wallet: Annotated[str, StringConstraints(max_length=40)] | None = Field(
        default=None, description="A wallet of this app (a ledger split)."
    )
    channel_type: SplitReceiverType | None = Field(
        default=None, description="A receiver at the channel (a channel split): merchant/person."
    )
    channel_account: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    name: Annotated[str, StringConstraints(max_length=128)] | None = None
    amount: int = Field(default=0, ge=0, le=10**15, description="A fixed amount (minor units).")
    percent_bps: int = Field(default=0, ge=0, le=10_000, description="Basis points of the base.")
    description: Annotated[str, StringConstraints(max_length=80)] = "分账"

    @model_validator(mode="after")
    def _one_kind(self) -> ReceiverIn:
        if (self.wallet is None) == (self.channel_type is None):
            raise ValueError("a receiver is either a wallet or a channel_type+channel_account")
        if self.channel_type is not None and not self.channel_account:
            raise ValueError("a channel receiver needs channel_account")
        if self.amount == 0 and self.percent_bps == 0:
            raise ValueError("a receiver needs an amount or percent_bps")
        return self


class SplitSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trigger: Trigger = Trigger.realtime
    receivers: list[ReceiverIn] = Field(default_factory=list, max_length=MAX_RECEIVERS)
    commission_bps: int = Field(default=0, ge=0, le=10_000, description="Platform commission.")
    commission_amount: int = Field(default=0, ge=0, le=10**15)

    @model_validator(mode="after")
    def _something(self) -> SplitSpec:
        if not self.receivers and not (self.commission_bps or self.commission_amount):
            raise ValueError("a split needs receivers or a commission")
        kinds = {r.wallet is None for r in self.receivers}
        if len(kinds) > 1:
            raise ValueError("receivers are all wallets or all channel accounts")
        if sum(r.percent_bps for r in self.receivers) + self.commission_bps > 10_000:
            raise ValueError("percentages add up to more than 100%")
        return self


class SplitCreate(SplitSpec):
    payment: Annotated[str, StringConstraints(min_length=1, max_length=40)]


class PartOut(BaseModel):
    wallet: str | None
    channel_type: str | None
    channel_account: str | None
    description: str
    fixed_amount: int
    percent_bps: int
    amount: int
    reversed: int
    result: str | None
    """A channel receiver's outcome once its split is final (``succeeded``/``failed``)."""

    @classmethod
    def of(cls, p: SplitPart) -> PartOut:
        return cls(
            wallet=p.wallet_id, channel_type=p.channel_type, channel_account=p.channel_receiver,
            description=p.description, fixed_amount=p.fixed_amount, percent_bps=p.bps,
            amount=p.amount, reversed=p.reversed, result=p.result,
        )  # fmt: skip


class SplitOut(BaseModel):
    id: str
    object: str = "split"
    payment: str
    livemode: bool
    currency: str
    trigger: str
    via: str
    status: str
    base_amount: int
    commission: int
    total: int
    receivers: list[PartOut]
    failure_code: str | None
    failure_message: str | None
    executed_at: dt.datetime | None
    created_at: dt.datetime

    @classmethod
    def of(cls, s: Split, parts: list[SplitPart]) -> SplitOut:
        return cls(
            id=s.id, payment=s.payment_id, livemode=s.livemode, currency=s.currency,
            trigger=s.trigger, via=s.via, status=s.status, base_amount=s.base_amount,
            commission=s.commission, total=s.total, receivers=[PartOut.of(p) for p in parts],
            failure_code=s.failure_code, failure_message=s.failure_message,
            executed_at=s.executed_at, created_at=s.created_at,
        )  # fmt: skip

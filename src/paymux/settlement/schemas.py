"""The public shapes of settlement."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field, model_validator

from paymux.settlement.models import Cycle, Settlement, SettlementConfig


class SettlementConfigIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cycle: Cycle = Cycle.t1
    days: int = Field(default=1, ge=0, le=90, description="N of T+N.")
    weekday: int = Field(default=0, ge=0, le=6, description="0 = Monday (weekly cycle).")
    fee_bps: int = Field(default=0, ge=0, le=10_000)
    fee_fixed: int = Field(default=0, ge=0, le=10**12)
    fee_min: int = Field(default=0, ge=0, le=10**12)
    fee_max: int | None = Field(default=None, ge=0, le=10**12)

    @model_validator(mode="after")
    def _bounds(self) -> SettlementConfigIn:
        if self.fee_max is not None and self.fee_max < self.fee_min:
            raise ValueError("fee_max must not be below fee_min")
        return self


class SettlementConfigOut(SettlementConfigIn):
    merchant_id: str

    @classmethod
    def of(cls, c: SettlementConfig) -> SettlementConfigOut:
        return cls(
            merchant_id=c.merchant_id, cycle=c.cycle, days=c.days, weekday=c.weekday,
            fee_bps=c.fee_bps, fee_fixed=c.fee_fixed, fee_min=c.fee_min, fee_max=c.fee_max,
        )  # fmt: skip


class SettlementOut(BaseModel):
    id: str
    object: str = "settlement"
    merchant: str
    livemode: bool
    currency: str
    status: str
    payment_count: int
    gross: int
    refunded: int
    split_out: int
    fees: int
    net: int
    ledger_transaction: str | None
    cutoff: dt.datetime
    created_at: dt.datetime

    @classmethod
    def of(cls, s: Settlement) -> SettlementOut:
        return cls(
            id=s.id, merchant=s.merchant_id, livemode=s.livemode, currency=s.currency,
            status=s.status, payment_count=s.payment_count, gross=s.gross, refunded=s.refunded,
            split_out=s.split_out, fees=s.fees, net=s.net,
            ledger_transaction=s.ledger_transaction_id or None, cutoff=s.cutoff,
            created_at=s.created_at,
        )  # fmt: skip

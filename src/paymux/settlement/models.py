"""Settlement: per-merchant cycle and fee rule; batches that move settled money from pending to
available, each with its report."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit.db import Base, UTCDateTime
from paymux.kit.models import created_at_column, updated_at_column


class Cycle(StrEnum):
    t0 = "T0"
    """Settle as soon as the money is the merchant's (the next settlement run)."""
    t1 = "T1"
    """The next calendar day (in the settlement time zone)."""
    tn = "TN"
    """``days`` calendar days later."""
    weekly = "weekly"
    """On the next ``weekday`` (0 = Monday) after the payment."""


class SettlementConfig(Base):
    """A merchant's settlement terms (absent: T1, no fee)."""

    __tablename__ = "settlement_configs"

    merchant_id: Mapped[str] = mapped_column(sa.ForeignKey("merchants.id"), primary_key=True)
    cycle: Mapped[Cycle] = mapped_column(sa.String(8), default=Cycle.t1)
    days: Mapped[int] = mapped_column(sa.Integer, default=1)
    weekday: Mapped[int] = mapped_column(sa.Integer, default=0)
    fee_bps: Mapped[int] = mapped_column(sa.Integer, default=0)
    """Percentage fee on each payment's settled amount, in basis points (60 = 0.6%)."""
    fee_fixed: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    fee_min: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    fee_max: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    updated_at: Mapped[dt.datetime] = updated_at_column()


class Settlement(Base):
    """One batch: every due payment of a merchant, mode and currency in one run."""

    __tablename__ = "settlements"
    __table_args__ = (sa.Index("ix_settlements_merchant", "merchant_id", "livemode", "id"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(sa.ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(sa.Boolean)
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[str] = mapped_column(sa.String(16), default="paid")
    """``paid``: the money is in the merchant's available balance (batches are atomic)."""
    payment_count: Mapped[int] = mapped_column(sa.Integer)
    gross: Mapped[int] = mapped_column(sa.BigInteger)
    refunded: Mapped[int] = mapped_column(sa.BigInteger)
    split_out: Mapped[int] = mapped_column(sa.BigInteger)
    fees: Mapped[int] = mapped_column(sa.BigInteger)
    net: Mapped[int] = mapped_column(sa.BigInteger)
    """What became available: gross − refunded − split − fees."""
    ledger_transaction_id: Mapped[str] = mapped_column(sa.String(40))
    cutoff: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = updated_at_column()

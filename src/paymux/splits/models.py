"""Profit sharing (分账): a payment's money divided among receivers and a platform commission."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit.db import Base, UTCDateTime
from paymux.kit.models import created_at_column, updated_at_column


class Trigger(StrEnum):
    realtime = "realtime"
    """As soon as the payment succeeds (for an escrow payment: when the escrow is released)."""
    on_release = "on_release"
    """When the payment's escrow is released."""
    manual = "manual"
    """When the merchant asks (``POST /v1/splits/{id}/execute``)."""


class Via(StrEnum):
    ledger = "ledger"
    """Receivers are wallets here: the split is a ledger transfer."""
    channel = "channel"
    """Receivers are accounts at the channel: the channel's profit-sharing API pays them."""


class SplitStatus(StrEnum):
    scheduled = "scheduled"
    """Declared; waits for its trigger."""
    processing = "processing"
    """Sent to the channel; its amount is held."""
    succeeded = "succeeded"
    partial = "partial"
    """Final: the channel paid some receivers; the others' money went back to the merchant."""
    failed = "failed"


SPLIT_TRANSITIONS: dict[SplitStatus, frozenset[SplitStatus]] = {
    SplitStatus.scheduled: frozenset(
        {SplitStatus.processing, SplitStatus.succeeded, SplitStatus.failed}
    ),
    SplitStatus.processing: frozenset(
        {SplitStatus.succeeded, SplitStatus.partial, SplitStatus.failed}
    ),
    SplitStatus.succeeded: frozenset(),
    SplitStatus.partial: frozenset(),
    SplitStatus.failed: frozenset(),
}


class Split(Base):
    __tablename__ = "splits"
    __table_args__ = (
        sa.Index("ix_splits_app", "app_id", "livemode", "id"),
        sa.Index("ix_splits_due", "status", "due_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id"))
    livemode: Mapped[bool] = mapped_column(sa.Boolean)
    payment_id: Mapped[str] = mapped_column(sa.ForeignKey("payments.id"), index=True)
    currency: Mapped[str] = mapped_column(sa.String(3))
    trigger: Mapped[Trigger] = mapped_column(sa.String(16))
    via: Mapped[Via] = mapped_column(sa.String(16))
    status: Mapped[SplitStatus] = mapped_column(sa.String(16))
    commission_bps: Mapped[int] = mapped_column(sa.Integer, default=0)
    commission_fixed: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    commission: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    commission_reversed: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    base_amount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    """What was divided: the payment's remaining amount when the split ran."""
    total: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    """Receivers + commission: what left the merchant."""
    ledger_transaction_id: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When the worker should (next) call or query the channel; null otherwise."""
    query_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    failure_code: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    failure_message: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    executed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = updated_at_column()


class SplitPart(Base):
    """One receiver of a split."""

    __tablename__ = "split_parts"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    split_id: Mapped[str] = mapped_column(sa.ForeignKey("splits.id"), index=True)
    seq: Mapped[int] = mapped_column(sa.Integer)
    wallet_id: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    channel_type: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    """``merchant`` / ``person`` for a channel receiver."""
    channel_receiver: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    name: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    description: Mapped[str] = mapped_column(sa.String(80), default="")
    fixed_amount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    bps: Mapped[int] = mapped_column(sa.Integer, default=0)
    amount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    """Computed when the split runs."""
    reversed: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    """Returned by refunds (reserved or done)."""
    result: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    """A channel receiver's outcome once the split is final: ``succeeded`` or ``failed``."""

"""Withdrawals (提现): money leaving a wallet or a merchant's available balance to a person's
account through a channel's transfer API."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit.db import Base, UTCDateTime
from paymux.kit.models import created_at_column, updated_at_column


class PayoutStatus(StrEnum):
    pending = "pending"
    """Requested; the amount (and fee) is held; waits for its batch or is being sent."""
    review = "review"
    """Held like ``pending`` but not sent: a risk review must approve it first."""
    processing = "processing"
    """The channel accepted it (or we do not know yet); queried until final."""
    succeeded = "succeeded"
    failed = "failed"
    """The hold is voided: the money is back in the balance."""


PAYOUT_TRANSITIONS: dict[PayoutStatus, frozenset[PayoutStatus]] = {
    PayoutStatus.review: frozenset({PayoutStatus.pending, PayoutStatus.failed}),
    PayoutStatus.pending: frozenset(
        {PayoutStatus.processing, PayoutStatus.succeeded, PayoutStatus.failed}
    ),
    PayoutStatus.processing: frozenset({PayoutStatus.succeeded, PayoutStatus.failed}),
    PayoutStatus.succeeded: frozenset(),
    PayoutStatus.failed: frozenset(),
}


class Speed(StrEnum):
    standard = "standard"
    """Free; sent in the next day's batch."""
    express = "express"
    """Sent at once, for a fee."""


class Payout(Base):
    __tablename__ = "payouts"
    __table_args__ = (
        sa.UniqueConstraint("app_id", "livemode", "out_payout_no"),
        sa.Index("ix_payouts_app", "app_id", "livemode", "id"),
        sa.Index("ix_payouts_source_day", "source_id", "created_at"),
        sa.Index("ix_payouts_due", "status", "due_at"),
        sa.Index("ix_payouts_account_succeeded", "channel_account_id", "succeeded_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id"))
    livemode: Mapped[bool] = mapped_column(sa.Boolean)
    out_payout_no: Mapped[str] = mapped_column(sa.String(64))
    source_type: Mapped[str] = mapped_column(sa.String(16))
    """``wallet`` or ``merchant`` (the merchant's available balance)."""
    source_id: Mapped[str] = mapped_column(sa.String(40))
    currency: Mapped[str] = mapped_column(sa.String(3))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    fee: Mapped[int] = mapped_column(sa.BigInteger)
    speed: Mapped[Speed] = mapped_column(sa.String(16))
    destination_type: Mapped[str] = mapped_column(sa.String(32))
    destination_account: Mapped[str] = mapped_column(sa.String(128))
    destination_name: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    channel: Mapped[str] = mapped_column(sa.String(32))
    channel_account_id: Mapped[str] = mapped_column(sa.ForeignKey("channel_accounts.id"))
    status: Mapped[PayoutStatus] = mapped_column(sa.String(16))
    ledger_hold_id: Mapped[str] = mapped_column(sa.String(40))
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When the worker should send (standard: the next batch) or query it; null once final."""
    sent_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    channel_transfer_no: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    failure_code: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    failure_message: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    succeeded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = updated_at_column()

"""Refunds: money of a succeeded payment going back by the channel account that took it."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit.db import Base, JSONType, UTCDateTime
from paymux.kit.models import created_at_column, updated_at_column


class RefundStatus(StrEnum):
    pending = "pending"
    """Asked for (or being asked); the money may still be on its way back. Counts against the
    payment's refundable amount."""
    review = "review"
    """Reserved like ``pending`` but not asked for: a risk review must approve it first."""
    succeeded = "succeeded"
    failed = "failed"
    """The channel refused or closed it; the amount is refundable again."""


REFUND_TRANSITIONS: dict[RefundStatus, frozenset[RefundStatus]] = {
    RefundStatus.review: frozenset({RefundStatus.pending, RefundStatus.failed}),
    RefundStatus.pending: frozenset({RefundStatus.succeeded, RefundStatus.failed}),
    RefundStatus.succeeded: frozenset(),
    RefundStatus.failed: frozenset(),
}


class Refund(Base):
    """Its id is the refund number the channel sees (``out_refund_no``/``out_request_no``), so a
    re-sent request is the same refund at the channel."""

    __tablename__ = "refunds"
    __table_args__ = (
        sa.UniqueConstraint("app_id", "livemode", "out_refund_no"),
        sa.Index("ix_refunds_app_id", "app_id", "livemode", "id"),
        sa.Index("ix_refunds_query_due", "query_due_at"),
        sa.Index("ix_refunds_account_status", "channel_account_id", "status", "succeeded_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id"))
    livemode: Mapped[bool] = mapped_column(sa.Boolean)
    payment_id: Mapped[str] = mapped_column(sa.ForeignKey("payments.id"), index=True)
    attempt_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("payment_attempts.id"), nullable=True
    )
    """The attempt that took the money; null for wallet payments (refunded in the ledger)."""
    channel: Mapped[str] = mapped_column(sa.String(32))
    channel_account_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("channel_accounts.id"), nullable=True
    )
    out_refund_no: Mapped[str] = mapped_column(sa.String(64))
    """The merchant's own refund number (unique per app)."""
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    reason: Mapped[str | None] = mapped_column(sa.String(256), nullable=True)
    status: Mapped[RefundStatus] = mapped_column(sa.String(16))
    channel_refund_no: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    failure_code: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    failure_message: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    query_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When the janitor should (next) ask the channel; null once final."""
    query_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    fee_returned: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    """The share of the payment's channel fee the channel gives back with this refund (WeChat
    Pay, Alipay, UnionPay), booked with it: back to channel cost, not taken from clearing."""
    ledger_hold_id: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    """The ledger hold reserving the amount: posted on success, voided on failure."""
    split_returns: Mapped[dict[str, int]] = mapped_column(JSONType, default=dict)
    """What each split receiver gives back for this refund (reserved with the hold)."""
    succeeded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attention_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When the refund was flagged for an operator: still pending long after it was asked for
    (the channel neither finished nor refused it). Never a reason to fail it on our own: the
    money may have gone back."""
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = updated_at_column()

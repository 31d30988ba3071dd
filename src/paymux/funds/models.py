"""Where each paid payment's money is: escrow, pending settlement, settled; what was refunded,
reserved for refunds in flight and split off. The ledger holds the amounts; this row says which
part of them belongs to which payment, so settlement, refunds and splits move the right sums."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit.db import Base, UTCDateTime
from paymux.kit.models import created_at_column, updated_at_column


class EscrowState(StrEnum):
    none = "none"
    held = "held"
    """Paid into escrow; waits for the buyer, the platform or the auto-confirm deadline."""
    released = "released"
    refunded = "refunded"
    """Fully refunded while held: nothing was ever released."""


class PaymentFunds(Base):
    __tablename__ = "payment_funds"
    __table_args__ = (
        sa.Index("ix_payment_funds_settle_due", "settlement_id", "settle_due_at"),
        sa.Index("ix_payment_funds_escrow_due", "escrow_state", "escrow_deadline"),
    )

    payment_id: Mapped[str] = mapped_column(sa.ForeignKey("payments.id"), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.String(40))
    merchant_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    livemode: Mapped[bool] = mapped_column(sa.Boolean)
    currency: Mapped[str] = mapped_column(sa.String(3))
    source_account_id: Mapped[str] = mapped_column(sa.String(40))
    posting_id: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    """The ledger transaction of the payment's success posting (reconciliation reads the
    payment's money in the books by it; null for payments paid before it was kept)."""
    """The ledger account the money came from (a channel clearing account or a wallet); refunds
    go back to it."""
    top_up_wallet_id: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    """Set when the payment tops up a wallet: the money is the wallet's, not the merchant's."""
    gross: Mapped[int] = mapped_column(sa.BigInteger)
    channel_fee: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    refunded: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    refund_reserved: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    """Held by refunds still in flight."""
    split_out: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    """Moved to split receivers and commissions."""
    escrow_state: Mapped[EscrowState] = mapped_column(sa.String(16), default=EscrowState.none)
    escrow_seconds: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    """Auto-confirm after this many seconds from payment (set when created with escrow)."""
    escrow_deadline: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    escrow_released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    escrow_released_by: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    settle_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When the money may move from pending to available; null while in escrow."""
    settlement_id: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    risk_held: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    """Held by a risk decision: in the merchant's ``risk_hold`` account, not settleable, not
    split, until a reviewer releases it (or declines it: refunded)."""
    fee: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    """The settlement fee charged on it."""
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = updated_at_column()

    @property
    def remaining(self) -> int:
        """What of the payment is still the merchant's (or the wallet's) to settle or refund."""
        return self.gross - self.refunded - self.refund_reserved - self.split_out

"""The double-entry ledger: accounts, transactions and their immutable entries.

An account's ``balance`` is kept in the same transaction as the entries that change it (with a
``version`` bumped on every change), so it can be read without summing; ``balance_as_of`` derives
it from the entries for any past moment. Holds are two-phase transactions: while *pending* their
legs are only counted in ``pending_debits``/``pending_credits`` (so the money cannot be spent
twice); posting applies them once, voiding releases them once.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit.db import Base, JSONType, UTCDateTime
from paymux.kit.models import created_at_column


class Side(StrEnum):
    debit = "debit"
    credit = "credit"


class TxStatus(StrEnum):
    pending = "pending"
    """A hold: reserved, not yet in the balances."""
    posted = "posted"
    voided = "voided"


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (sa.UniqueConstraint("owner_type", "owner_id", "purpose", "currency"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    owner_type: Mapped[str] = mapped_column(sa.String(32))
    owner_id: Mapped[str] = mapped_column(sa.String(64))
    purpose: Mapped[str] = mapped_column(sa.String(48))
    currency: Mapped[str] = mapped_column(sa.String(8))
    """An ISO 4217 code, or a non-currency unit such as ``PTS`` (points)."""
    normal: Mapped[Side] = mapped_column(sa.String(8))
    """``debit`` for what the platform holds (clearing, receivables), ``credit`` for what it owes
    (merchant and user balances, revenue)."""
    allow_negative: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    balance: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    """Posted balance on the account's normal side, in minor units."""
    pending_debits: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    pending_credits: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    version: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[dt.datetime] = created_at_column()

    @property
    def pending_out(self) -> int:
        """Held amounts that will leave the account when their holds post."""
        return self.pending_debits if self.normal == Side.credit else self.pending_credits

    @property
    def available(self) -> int:
        return self.balance - self.pending_out


class LedgerTransaction(Base):
    __tablename__ = "ledger_transactions"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    """Idempotency key: the same key is the same transaction, applied once."""
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[TxStatus] = mapped_column(sa.String(16))
    description: Mapped[str] = mapped_column(sa.String(500), default="")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    reverses_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("ledger_transactions.id"), unique=True, nullable=True
    )
    """The transaction this one reverses (each can be reversed once)."""
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """For holds: when an unresolved hold may be voided by the worker."""
    posted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = created_at_column()


class LedgerEntry(Base):
    """One leg of a transaction. Written once, never updated or deleted."""

    __tablename__ = "ledger_entries"
    __table_args__ = (sa.Index("ix_ledger_entries_account", "account_id", "id"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    transaction_id: Mapped[str] = mapped_column(sa.ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[str] = mapped_column(sa.ForeignKey("ledger_accounts.id"))
    side: Mapped[Side] = mapped_column(sa.String(8))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(8))
    created_at: Mapped[dt.datetime] = created_at_column()

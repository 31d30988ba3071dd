"""Reconciliation (对账): runs of a channel account's bill day against our books, the bill files
and lines they read, the breaks they found, and the append-only history of every break."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit.db import Base, JSONType, UTCDateTime
from paymux.kit.models import created_at_column, updated_at_column


class Verdict(StrEnum):
    """A run's verdict, worst first."""

    incomplete = "incomplete"
    """Something was not checked: the bill is not intact (a hash, its summary, unreadable rows),
    the channel could not be asked about a break, or the books bridge left a residual."""
    breaks = "breaks"
    """Everything was checked and some of it does not agree: open breaks."""
    reconciled_with_pending = "reconciled_with_pending"
    """Everything agrees except records still within their grace period (carried to the next
    day's bill)."""
    reconciled = "reconciled"
    """Every line of the bill matched a record of ours exactly, and every record a line."""


class RunStatus(StrEnum):
    running = "running"
    done = "done"
    waiting = "waiting"
    """The channel has not published the bill yet: the job asks again later."""
    failed = "failed"
    """The run could not finish (the channel unreachable, an unreadable file): ``reasons``."""


class BreakClass(StrEnum):
    channel_only = "channel_only"
    """The channel has a payment we have no record of (P1)."""
    local_only = "local_only"
    """We have a paid payment the channel's bill lacks, past the grace period (P1)."""
    status_channel_success = "status_channel_success"
    """掉单: the channel says paid (or refunded), we do not (P1)."""
    status_local_success = "status_local_success"
    """We say paid, the channel lists the record as not paid (P1)."""
    amount_over = "amount_over"
    """The channel took more than our record says (P2)."""
    amount_under = "amount_under"
    """The channel took less than our record says (P1: money we booked is missing)."""
    currency_mismatch = "currency_mismatch"
    fee_mismatch = "fee_mismatch"
    """The channel's fee differs from the fee we booked (P3)."""
    refund_channel_only = "refund_channel_only"
    """Money went out at the channel as a refund we have no record of (P1)."""
    refund_local_only = "refund_local_only"
    """Our refund succeeded, the channel's bill lacks it past the grace period (P2)."""
    duplicate = "duplicate"
    """The same record is listed more than once (in this bill or another day's) (P2)."""
    unclassified = "unclassified"
    """A line that names a record but disagrees in a way no class above covers (the channel's
    number differs, the record is on another channel account) (P2)."""


PRIORITY: dict[BreakClass, int] = {
    BreakClass.channel_only: 1, BreakClass.local_only: 1,
    BreakClass.status_channel_success: 1, BreakClass.status_local_success: 1,
    BreakClass.amount_under: 1, BreakClass.currency_mismatch: 1,
    BreakClass.refund_channel_only: 1, BreakClass.amount_over: 2,
    BreakClass.refund_local_only: 2, BreakClass.duplicate: 2, BreakClass.unclassified: 2,
    BreakClass.fee_mismatch: 3,
}  # fmt: skip
"""P1 = money in or out without a valid record; P2 = a record and money that disagree; P3 = fees."""


class BreakState(StrEnum):
    open = "open"
    resolved = "resolved"
    accepted = "accepted"
    """Accepted as it is until ``accepted_until``; lapses (reopens) if its class or amounts
    change."""


class Resolution(StrEnum):
    auto_repaired = "auto_repaired"
    """The channel confirmed it and the record was brought in line through its own path."""
    matched = "matched"
    """A later bill (or a re-run) matched it."""
    linked = "linked"
    """A person linked it to a record."""
    received = "received"
    """A person confirmed the money arrived."""
    ignored = "ignored"
    voided = "voided"
    adjusted = "adjusted"
    """Booked as a balanced ledger adjustment."""
    refunded = "refunded"
    """The money was given back (a suggested refund, approved)."""


class ReconConfig(Base):
    """How a channel account is reconciled; defaults when no row exists."""

    __tablename__ = "recon_configs"

    channel_account_id: Mapped[str] = mapped_column(
        sa.ForeignKey("channel_accounts.id"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    fetch_after_minutes: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    """Minutes after the end of the bill day (channel time) to fetch; null: the channel's
    publication time (``bill_ready_after``)."""
    grace_days: Mapped[int] = mapped_column(sa.Integer, default=1)
    """Days a record may be missing from the bill before it is a break (carried meanwhile)."""
    approval_threshold: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    """Adjustments above this (minor units) need a second approver; refunds always do."""
    opening_balances: Mapped[dict[str, int]] = mapped_column(JSONType, default=dict,
                                                             server_default="{}")  # fmt: skip
    """Per currency, what the channel account held before paymux booked anything on it (the
    funds bill's balance check compares the channel's balance with our books plus this)."""
    updated_at: Mapped[dt.datetime] = updated_at_column()


class ReconFile(Base):
    """A bill file as fetched or uploaded, archived by its SHA-256."""

    __tablename__ = "recon_files"
    __table_args__ = (sa.Index("ix_recon_files_account_day", "channel_account_id", "bill_date"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    channel_account_id: Mapped[str] = mapped_column(sa.ForeignKey("channel_accounts.id"))
    bill_date: Mapped[dt.date] = mapped_column(sa.Date)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    filename: Mapped[str] = mapped_column(sa.String(255))
    source: Mapped[str] = mapped_column(sa.String(16))
    """``fetched`` or ``uploaded``."""
    expected: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    """Integrity facts that came with the file (WeChat's SHA1)."""
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[dt.datetime] = created_at_column()


FUNDS_KINDS = frozenset({"payout", "settlement", "duplicate_payout", "duplicate_settlement",
                         "funds_other"})  # fmt: skip
"""Break kinds a funds (资金账单) run finds; every other kind is a trade run's."""


def bill_of_kind(kind: str) -> str:
    """The bill (``trade`` or ``funds``) whose runs find breaks of ``kind``."""
    return "funds" if kind in FUNDS_KINDS else "trade"


class ReconRun(Base):
    __tablename__ = "recon_runs"
    __table_args__ = (
        sa.UniqueConstraint("channel_account_id", "bill_date", "bill", "run_no"),
        sa.Index("ix_recon_runs_app", "app_id", "livemode", "id"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    channel_account_id: Mapped[str] = mapped_column(sa.ForeignKey("channel_accounts.id"))
    app_id: Mapped[str] = mapped_column(sa.String(40))
    livemode: Mapped[bool] = mapped_column(sa.Boolean)
    channel: Mapped[str] = mapped_column(sa.String(32))
    bill_date: Mapped[dt.date] = mapped_column(sa.Date)
    bill: Mapped[str] = mapped_column(sa.String(8), default="trade", server_default="trade")
    """Which of the day's bills (:class:`paymux.channels.bills.BillKind`): ``trade`` (payments
    and refunds) or ``funds`` (the balance's movements: payouts and settlements)."""
    run_no: Mapped[int] = mapped_column(sa.Integer)
    """1, 2, … per (channel account, bill day, bill)."""
    source: Mapped[str] = mapped_column(sa.String(16))
    """``scheduled``, ``manual`` (fetched on request) or ``upload``."""
    status: Mapped[RunStatus] = mapped_column(sa.String(16))
    verdict: Mapped[Verdict | None] = mapped_column(sa.String(32), nullable=True)
    reasons: Mapped[list[str]] = mapped_column(JSONType, default=list)
    """Why the verdict is what it is (every check that failed), in order."""
    file_id: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    problems: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    """The bill's unreadable rows (position, text, reason), the first ones."""
    checks: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    totals: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    """Per currency: the channel's and our totals, matched, explained, residual, counts."""
    line_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    break_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    pending_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    report_sha256: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_by: Mapped[str] = mapped_column(sa.String(128))


class ReconLine(Base):
    """A bill line as staged for matching (written by COPY on PostgreSQL)."""

    __tablename__ = "recon_lines"
    __table_args__ = (sa.Index("ix_recon_lines_run_ref", "run_id", "reference"),)

    run_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    position: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    """A :class:`paymux.channels.base.StatementLineKind`: ``payment``, ``refund``, ``payout``,
    ``settlement``, ``fee`` or ``other``."""
    reference: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    """Our number on the line (attempt id for a payment, refund id for a refund)."""
    channel_ref: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    fee: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    occurred_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ReconBreak(Base):
    """A difference between a bill and our books, with an id stable across runs and days."""

    __tablename__ = "recon_breaks"
    __table_args__ = (
        sa.Index("ix_recon_breaks_account_state", "channel_account_id", "state", "key"),
        sa.Index("ix_recon_breaks_queue", "state", "priority", "opened_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    """``brk_`` + a hash of (channel account, kind, key): the same difference keeps its id."""
    channel_account_id: Mapped[str] = mapped_column(sa.ForeignKey("channel_accounts.id"))
    app_id: Mapped[str] = mapped_column(sa.String(40))
    merchant_id: Mapped[str] = mapped_column(sa.String(40))
    livemode: Mapped[bool] = mapped_column(sa.Boolean)
    kind: Mapped[str] = mapped_column(sa.String(24))
    """``payment``, ``refund`` (trade bills), ``payout``, ``settlement``, ``funds_other`` (funds
    bills), or ``duplicate_`` and one of them."""
    key: Mapped[str] = mapped_column(sa.String(128))
    klass: Mapped[BreakClass] = mapped_column("class", sa.String(32))
    priority: Mapped[int] = mapped_column(sa.Integer)
    state: Mapped[BreakState] = mapped_column(sa.String(16))
    resolution: Mapped[Resolution | None] = mapped_column(sa.String(16), nullable=True)
    currency: Mapped[str] = mapped_column(sa.String(3))
    channel_amount: Mapped[int] = mapped_column(sa.BigInteger)
    """Net (amount − fee) the channel's bill says, signed; 0 when it has no line."""
    local_amount: Mapped[int] = mapped_column(sa.BigInteger)
    """Net our record says, signed; 0 when we have none."""
    channel_fee: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    local_fee: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    channel_ref: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    payment_id: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    refund_id: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    first_bill_date: Mapped[dt.date] = mapped_column(sa.Date)
    last_bill_date: Mapped[dt.date] = mapped_column(sa.Date)
    first_run_id: Mapped[str] = mapped_column(sa.String(40))
    last_run_id: Mapped[str] = mapped_column(sa.String(40))
    detail: Mapped[str] = mapped_column(sa.String(500), default="")
    suggestion: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    """What the job suggests a person do (``{"action": "refund", …}``)."""
    accepted_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    accepted_class: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    accepted_amount: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[dt.datetime] = updated_at_column()

    @property
    def delta(self) -> int:
        return self.channel_amount - self.local_amount


class ReconSettlement(Base):
    """A settlement of the channel's: it paid the balance it held for us out to our own bank
    account (WeChat 提现, a Stripe payout, …), as its funds bill states it. Booked in the ledger
    once (the channel account's clearing account to the platform's ``settlement_in_transit``,
    where it waits for the bank's side), keyed by the channel's id of it; a later line with the
    same id and another amount is a break, never a second booking."""

    __tablename__ = "recon_settlements"
    __table_args__ = (
        sa.UniqueConstraint("channel_account_id", "channel_ref"),
        sa.Index("ix_recon_settlements_day", "channel_account_id", "bill_date"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    channel_account_id: Mapped[str] = mapped_column(sa.ForeignKey("channel_accounts.id"))
    channel_ref: Mapped[str] = mapped_column(sa.String(64))
    currency: Mapped[str] = mapped_column(sa.String(3))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    """Minor units paid out to the bank (negative: the channel took money back from it)."""
    bill_date: Mapped[dt.date] = mapped_column(sa.Date)
    occurred_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    run_id: Mapped[str] = mapped_column(sa.String(40))
    """The run that booked it."""
    ledger_transaction_id: Mapped[str] = mapped_column(sa.String(40))
    created_at: Mapped[dt.datetime] = created_at_column()


class ReconBreakEvent(Base):
    """What happened to a break, who did it and why; rows are only ever added."""

    __tablename__ = "recon_break_events"
    __table_args__ = (sa.Index("ix_recon_break_events_break", "break_id", "id"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    break_id: Mapped[str] = mapped_column(sa.String(40))
    action: Mapped[str] = mapped_column(sa.String(32))
    actor: Mapped[str] = mapped_column(sa.String(128))
    reason: Mapped[str] = mapped_column(sa.String(1000), default="")
    run_id: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[dt.datetime] = created_at_column()


class ApprovalState(StrEnum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"


class ReconApproval(Base):
    """A money-moving action on a break, requested by one person, carried out only once another
    approves it (maker-checker)."""

    __tablename__ = "recon_approvals"
    __table_args__ = (sa.Index("ix_recon_approvals_break", "break_id", "state"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    break_id: Mapped[str] = mapped_column(sa.String(40))
    action: Mapped[str] = mapped_column(sa.String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    state: Mapped[ApprovalState] = mapped_column(sa.String(16))
    requested_by: Mapped[str] = mapped_column(sa.String(128))
    reason: Mapped[str] = mapped_column(sa.String(1000))
    decided_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    decided_reason: Mapped[str | None] = mapped_column(sa.String(1000), nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = created_at_column()

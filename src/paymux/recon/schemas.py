"""The public shapes of reconciliation (runs, breaks, their history and approvals)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from paymux.channels.bills import BillKind
from paymux.recon.models import ReconApproval, ReconBreak, ReconBreakEvent, ReconRun


@dataclass(frozen=True)
class Scope:
    """Whose reconciliation a caller sees: one app in one mode (a merchant's key), or all of it
    (the operator, ``app_id`` None)."""

    app_id: str | None = None
    livemode: bool | None = None

    def sees(self, app_id: str, livemode: bool) -> bool:
        return (self.app_id is None or self.app_id == app_id) and (
            self.livemode is None or self.livemode == livemode
        )


OPERATOR = Scope()
"""The operator's scope: everything."""


class RunOut(BaseModel):
    object: Literal["recon.run"] = "recon.run"
    id: str
    channel_account_id: str
    channel: str
    livemode: bool
    bill_date: dt.date
    bill: str
    run_no: int
    source: str
    status: str
    verdict: str | None
    reasons: list[str]
    file_id: str | None
    checks: list[dict[str, Any]]
    problems: list[dict[str, Any]]
    totals: dict[str, Any]
    line_count: int
    break_count: int
    pending_count: int
    report_sha256: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    created_by: str

    @classmethod
    def of(cls, r: ReconRun) -> RunOut:
        return cls(
            id=r.id, channel_account_id=r.channel_account_id, channel=r.channel,
            livemode=r.livemode, bill_date=r.bill_date, bill=r.bill or "trade", run_no=r.run_no,
            source=r.source,
            status=r.status, verdict=r.verdict, reasons=list(r.reasons or []),
            file_id=r.file_id, checks=list(r.checks or []), problems=list(r.problems or []),
            totals=dict(r.totals or {}), line_count=r.line_count or 0,
            break_count=r.break_count or 0, pending_count=r.pending_count or 0,
            report_sha256=r.report_sha256, started_at=r.started_at, finished_at=r.finished_at,
            created_by=r.created_by,
        )  # fmt: skip


class BreakOut(BaseModel):
    object: Literal["recon.break"] = "recon.break"
    id: str
    channel_account_id: str
    merchant_id: str
    livemode: bool
    kind: str
    key: str
    klass: str = Field(serialization_alias="class")
    priority: int
    state: str
    resolution: str | None
    currency: str
    channel_amount: int
    local_amount: int
    delta: int
    channel_fee: int
    local_fee: int
    channel_ref: str | None
    payment_id: str | None
    refund_id: str | None
    first_bill_date: dt.date
    last_bill_date: dt.date
    last_run_id: str
    detail: str
    suggestion: dict[str, Any] | None
    accepted_until: dt.datetime | None
    opened_at: dt.datetime
    resolved_at: dt.datetime | None
    age_days: int

    @classmethod
    def of(cls, b: ReconBreak, today: dt.date | None = None) -> BreakOut:
        return cls(
            id=b.id, channel_account_id=b.channel_account_id, merchant_id=b.merchant_id,
            livemode=b.livemode, kind=b.kind, key=b.key, klass=b.klass, priority=b.priority,
            state=b.state, resolution=b.resolution, currency=b.currency,
            channel_amount=b.channel_amount, local_amount=b.local_amount, delta=b.delta,
            channel_fee=b.channel_fee, local_fee=b.local_fee, channel_ref=b.channel_ref,
            payment_id=b.payment_id, refund_id=b.refund_id, first_bill_date=b.first_bill_date,
            last_bill_date=b.last_bill_date, last_run_id=b.last_run_id, detail=b.detail,
            suggestion=b.suggestion, accepted_until=b.accepted_until, opened_at=b.opened_at,
            resolved_at=b.resolved_at,
            age_days=((today or b.last_bill_date) - b.first_bill_date).days,
        )  # fmt: skip


class EventOut(BaseModel):
    id: str
    action: str
    actor: str
    reason: str
    run_id: str | None
    data: dict[str, Any]
    created_at: dt.datetime

    @classmethod
    def of(cls, e: ReconBreakEvent) -> EventOut:
        return cls(id=e.id, action=e.action, actor=e.actor, reason=e.reason, run_id=e.run_id,
                   data=dict(e.data or {}), created_at=e.created_at)  # fmt: skip


class ApprovalOut(BaseModel):
    object: Literal["recon.approval"] = "recon.approval"
    id: str
    break_id: str
    action: str
    params: dict[str, Any]
    amount: int
    state: str
    requested_by: str
    reason: str
    decided_by: str | None
    decided_reason: str | None
    decided_at: dt.datetime | None
    created_at: dt.datetime

    @classmethod
    def of(cls, a: ReconApproval) -> ApprovalOut:
        return cls(
            id=a.id, break_id=a.break_id, action=a.action, params=dict(a.params or {}),
            amount=a.amount, state=a.state, requested_by=a.requested_by, reason=a.reason,
            decided_by=a.decided_by, decided_reason=a.decided_reason, decided_at=a.decided_at,
            created_at=a.created_at,
        )  # fmt: skip


class BreakDetail(BreakOut):
    history: list[EventOut]
    approvals: list[ApprovalOut]


class RunCreate(BaseModel):
    channel_account_id: str = Field(max_length=40)
    bill_date: dt.date
    bill: BillKind = BillKind.trade
    """``trade`` (payments and refunds) or ``funds`` (payouts and settlements)."""


class BreakAction(BaseModel):
    """One action on a break. ``reason`` is required for every action."""

    action: Literal["link", "mark_received", "ignore", "void", "accept", "adjust", "refund"]
    reason: str = Field(min_length=3, max_length=1000)
    records: list[str] = Field(default_factory=list, max_length=200)
    """``link``: the payment, refund or settlement ids the break is about (N:1 for
    settlements)."""
    until: dt.datetime | None = None
    """``accept``: until when (required)."""
    amount: int | None = Field(default=None, gt=0)
    """``adjust``: the amount to book (default: the break's delta, unsigned)."""
    account: Literal["suspense", "fee_rounding"] = "suspense"
    """``adjust``: the platform account the difference is booked to."""


class Decision(BaseModel):
    reason: str = Field(min_length=3, max_length=1000)


class ConfigIn(BaseModel):
    enabled: bool = True
    fetch_after_minutes: int | None = Field(default=None, ge=0, le=7 * 24 * 60)
    grace_days: int = Field(default=1, ge=0, le=30)
    approval_threshold: int = Field(default=0, ge=0)
    opening_balances: dict[Annotated[str, Field(pattern=r"^[A-Z]{3}$")],
                           Annotated[int, Field(ge=-(10**15), le=10**15)]] = Field(
        default_factory=dict, max_length=20)  # fmt: skip
    """Per currency, what the channel account held before paymux booked anything on it: the
    funds bill's balance check compares the channel's balance with our books plus this."""

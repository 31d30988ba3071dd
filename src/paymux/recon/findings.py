"""What a run found, before it becomes breaks: one :class:`Finding` per difference (or per
record carried because its grace period has not ended), and how findings become breaks with
stable ids and an append-only history."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit import clock
from paymux.kit.ids import new_id
from paymux.recon.models import (
    PRIORITY,
    BreakClass,
    BreakState,
    ReconBreak,
    ReconBreakEvent,
    ReconRun,
    Resolution,
    bill_of_kind,
)
from paymux.recon.repository import ReconRepository

SYSTEM = "system:recon"


def break_id(account_id: str, kind: str, key: str) -> str:
    """A break's id: the same (account, kind, key) is the same break whatever its class, in any
    run of any day, so notes and decisions stay with it."""
    digest = hashlib.sha256(f"{account_id}|{kind}|{key}".encode()).hexdigest()
    return f"brk_{digest[:26]}"


@dataclass
class Finding:
    kind: str
    """``payment``, ``refund``, ``payout``, ``settlement``, or ``duplicate_`` and one of them."""
    key: str
    """Our number (attempt or refund id), else the channel's."""
    klass: BreakClass | None
    """None: not a break yet — a record within its grace period, carried to the next bill."""
    currency: str
    channel_amount: int
    """Net (amount − fee) on the bill, signed; 0 when the bill has no line."""
    local_amount: int
    """Net our record says, signed; 0 when we have none (or it did not succeed)."""
    channel_fee: int = 0
    local_fee: int = 0
    channel_ref: str | None = None
    payment_id: str | None = None
    refund_id: str | None = None
    merchant_id: str | None = None
    app_id: str | None = None
    detail: str = ""
    suggestion: dict[str, Any] | None = None
    note: str = ""
    """What the run did about it (a channel query), for the history."""
    at: dt.datetime | None = None
    """When the line (or our record) says it happened."""
    books: int = 0
    """A local record's movement of the clearing account (for the books bridge)."""
    repaired: str = ""
    """The run repaired the record through the channel, and it still differs: the repair is
    recorded in the history of the (open) break."""
    resolved: Resolution | None = None
    """Already settled by the run itself (``auto_repaired``): recorded resolved, for the
    history, and not part of the verdict or the bridge."""

    @property
    def delta(self) -> int:
        return self.channel_amount - self.local_amount


def _lapsed(found: ReconBreak, finding: Finding, now: dt.datetime) -> bool:
    """An acceptance holds until it expires, and only for the class and amount accepted."""
    assert finding.klass is not None
    return (
        found.accepted_until is None
        or found.accepted_until <= now
        or found.accepted_class != finding.klass.value
        or found.accepted_amount != finding.delta
    )


async def record(
    session: AsyncSession, run: ReconRun, findings: list[Finding]
) -> tuple[list[ReconBreak], list[ReconBreak]]:
    """Upsert the run's breaks; resolve the account's open breaks that the run shows are fine
    now (matched by this bill, or gone from a re-run of the same day). Returns (the run's
    breaks, those newly opened or reopened)."""
    repo = ReconRepository(session)
    now = clock.now()
    real = [f for f in findings if f.klass is not None]
    by_id = {break_id(run.channel_account_id, f.kind, f.key): f for f in real}
    existing = await repo.breaks_by_id(list(by_id))
    kept: list[ReconBreak] = []
    opened: list[ReconBreak] = []

    def event(b: ReconBreak, action: str, reason: str = "", **data: Any) -> None:
        repo.add(ReconBreakEvent(id=new_id("rbe"), break_id=b.id, action=action, actor=SYSTEM,
                                 reason=reason, run_id=run.id, data=data))  # fmt: skip

    for bid, f in sorted(by_id.items()):
        assert f.klass is not None
        found = existing.get(bid)
        values = {
            "klass": f.klass, "priority": PRIORITY[f.klass], "currency": f.currency,
            "channel_amount": f.channel_amount, "local_amount": f.local_amount,
            "channel_fee": f.channel_fee, "local_fee": f.local_fee, "channel_ref": f.channel_ref,
            "payment_id": f.payment_id, "refund_id": f.refund_id, "detail": f.detail[:500],
            "suggestion": f.suggestion, "last_bill_date": run.bill_date, "last_run_id": run.id,
        }  # fmt: skip
        if f.resolved is not None:
            if found is None:
                found = ReconBreak(
                    id=bid, channel_account_id=run.channel_account_id,
                    app_id=f.app_id or run.app_id, merchant_id=f.merchant_id or "",
                    livemode=run.livemode, kind=f.kind, key=f.key, state=BreakState.resolved,
                    first_bill_date=run.bill_date, first_run_id=run.id, opened_at=now,
                    **values,
                )  # fmt: skip
                repo.add(found)
            else:
                for name, value in values.items():
                    setattr(found, name, value)
            found.state, found.resolution, found.resolved_at = BreakState.resolved, f.resolved, now
            event(found, f.resolved.value, f.note or f.detail, klass=f.klass.value)
            kept.append(found)
            continue
        if found is None:
            found = ReconBreak(
                id=bid, channel_account_id=run.channel_account_id,
                app_id=f.app_id or run.app_id, merchant_id=f.merchant_id or "",
                livemode=run.livemode, kind=f.kind, key=f.key, state=BreakState.open,
                first_bill_date=run.bill_date, first_run_id=run.id, opened_at=now, **values,
            )  # fmt: skip
            repo.add(found)
            event(found, "opened", f.detail, klass=f.klass.value, delta=f.delta)
            opened.append(found)
        else:
            changed = found.klass != f.klass or found.delta != f.delta
            for name, value in values.items():
                setattr(found, name, value)
            if found.state == BreakState.accepted and _lapsed(found, f, now):
                found.state = BreakState.open
                event(found, "acceptance_lapsed", "its class, amount or expiry changed")
                opened.append(found)
            elif found.state == BreakState.resolved and changed:
                found.state, found.resolution, found.resolved_at = BreakState.open, None, None
                event(found, "reopened", f.detail, klass=f.klass.value, delta=f.delta)
                opened.append(found)
            elif changed:
                event(found, "reclassified", f.detail, klass=f.klass.value, delta=f.delta)
            else:
                event(found, "seen", f.detail)
        if f.repaired:
            event(found, Resolution.auto_repaired.value, f.repaired)
        if f.note:
            event(found, "checked", f.note)
        kept.append(found)
    await _resolve_gone(repo, run, set(by_id), findings, event)
    await session.flush()
    return kept, opened


async def _resolve_gone(
    repo: ReconRepository, run: ReconRun, present: set[str], findings: list[Finding], event: Any
) -> None:
    """Open breaks this run shows are fine: the same day's breaks a re-run no longer finds,
    and any break whose record this bill now matches (a row that came a day late)."""
    carried = {break_id(run.channel_account_id, f.kind, f.key) for f in findings
               if f.klass is None}  # fmt: skip
    candidates = [b for b in await repo.open_breaks(run.channel_account_id)
                  if b.id not in present and bill_of_kind(b.kind) == run.bill]  # fmt: skip
    if not candidates:
        return
    today = [b for b in candidates if b.last_bill_date == run.bill_date or b.id in carried]
    by_kind: dict[str, list[ReconBreak]] = {}
    for b in candidates:
        if b not in today and b.kind in ("payment", "refund", "payout"):
            by_kind.setdefault(b.kind, []).append(b)
    matched: list[ReconBreak] = []
    for kind, group in by_kind.items():
        listed = await repo.listed_in([run.id], kind, [b.key for b in group])
        matched += [b for b in group if b.key in listed]
    now = clock.now()
    for b in today + matched:
        if b.id in carried:
            reason = "within its grace period again: carried, not a break"
        elif b in matched:
            reason = f"matched by the bill of {run.bill_date}"
        else:
            reason = "not found again by this run"
        b.state, b.resolution, b.resolved_at = BreakState.resolved, Resolution.matched, now
        b.last_run_id = run.id
        event(b, "resolved", reason, resolution=Resolution.matched.value)

"""A reconciliation run: one channel account's bill of one day against our books.

1. **Acquire** the bill: fetched from the channel (the daily job, or on request) or uploaded by
   a person; archived by its SHA-256 before anything reads it.
2. **Stage** its lines, streamed, into ``recon_lines`` (COPY on PostgreSQL).
3. **Match** them in SQL to our attempts and refunds by exact key; amounts, currency and fee to
   the unit (:mod:`paymux.recon.repository`). Lines that disagree come back with their code.
4. **Repair** what the channel itself confirms (:mod:`paymux.recon.repair`), then match again.
5. **Local side**: our payments and refunds of the day (and of the grace period before it) that
   no bill names: carried while within ``grace_days``, breaks after.
6. **Books bridge**: Σ bill (amount − fee) − Σ clearing-account movement of every record in the
   cut = Σ break deltas + Σ carried; what is left is an unexplained residual.
7. **Verdict**: ``incomplete`` > ``breaks`` > ``reconciled_with_pending`` > ``reconciled``.

A re-run makes a new run number; breaks keep their ids (:func:`paymux.recon.findings.break_id`).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from prometheus_client import Counter, Gauge

from paymux.channel_accounts import service as channel_service
from paymux.channel_accounts.repository import ChannelAccountRepository
from paymux.channels import base
from paymux.channels.bills import (
    BillCapable,
    BillKind,
    BillReader,
    FetchedBill,
    bill_capable_of,
    bills_of,
)
from paymux.kit import clock
from paymux.kit.errors import Conflict, InvalidRequest, NotFound
from paymux.kit.ids import new_id
from paymux.ledger import chart
from paymux.ledger import service as ledger
from paymux.ledger.chart import Purpose
from paymux.recon import archive, findings, parsing, repair, reports
from paymux.recon.findings import Finding
from paymux.recon.models import (
    BreakClass,
    BreakState,
    ReconFile,
    ReconRun,
    ReconSettlement,
    Resolution,
    RunStatus,
    Verdict,
)
from paymux.recon.repository import Coded, LineRecord, LocalItem, ReconRepository, Tally
from paymux.refunds.models import Refund, RefundStatus
from paymux.runtime import Runtime
from paymux.webhooks import service as webhooks

log = structlog.get_logger(__name__)

RUNS = Counter("paymux_recon_runs_total", "Reconciliation runs by channel and verdict",
               ["channel", "verdict"])  # fmt: skip
BREAKS_OPENED = Counter("paymux_recon_breaks_opened_total",
                        "Breaks opened (or reopened) by class and priority",
                        ["class", "priority"])  # fmt: skip
LAST_VERDICT = Gauge("paymux_recon_last_run_ok",
                     "1 when the channel account's last finished run was reconciled (with or "
                     "without pending), 0 when it was incomplete or had breaks",
                     ["channel_account"])  # fmt: skip

CROSS_DAY_WINDOW = 7
"""Days either side of a bill day whose bills a cross-day row is looked for in."""
DEFAULT_GRACE_DAYS = 1


@dataclass
class Upload:
    """A bill file a person gave (already on disk), instead of fetching one."""

    path: Path
    filename: str


@dataclass
class _Books:
    """Per currency: the bill's side, our books' side and what explains their difference."""

    channel_count: int = 0
    channel_amount: int = 0
    channel_fee: int = 0
    books: int = 0
    matched_count: int = 0
    matched_net: int = 0
    explained: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    pending_count: int = 0
    pending_delta: int = 0

    @property
    def channel_net(self) -> int:
        return self.channel_amount - self.channel_fee

    @property
    def residual(self) -> int:
        explained = sum(delta for _, delta in self.explained.values())
        return self.channel_net - self.books - explained - self.pending_delta

    def out(self) -> dict[str, Any]:
        return {
            "channel": {"count": self.channel_count, "amount": self.channel_amount,
                        "fee": self.channel_fee, "net": self.channel_net},
            "books": self.books,
            "matched": {"count": self.matched_count, "net": self.matched_net},
            "explained": {k: {"count": c, "delta": d}
                          for k, (c, d) in sorted(self.explained.items())},
            "pending": {"count": self.pending_count, "delta": self.pending_delta},
            "residual": self.residual,
        }  # fmt: skip


def day_window(zone: dt.tzinfo, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
    return start, start + dt.timedelta(days=1)


async def _adapter(rt: Runtime, account_id: str) -> tuple[Any, BillCapable]:
    """The channel account (a 404 when there is none) and its bill-reading adapter."""
    async with rt.db.read() as session:
        account = await ChannelAccountRepository(session).get(account_id)
    if account is None:
        raise NotFound("channel account", account_id)
    adapter = bill_capable_of(channel_service.adapter_for(rt.vault, account, rt.channel_http))
    if adapter is None:
        raise InvalidRequest("recon_not_supported", "This channel has no bill to reconcile.")
    return account, adapter


async def run(
    rt: Runtime, account_id: str, day: dt.date, *, bill: BillKind = BillKind.trade,
    source: str = "manual", actor: str, upload: Upload | None = None,
) -> ReconRun:  # fmt: skip
    """Reconcile one channel account's bill of one day — its trade bill, or its funds bill —
    (a new run number each time)."""
    account, adapter = await _adapter(rt, account_id)
    if bill not in bills_of(adapter):
        raise InvalidRequest("recon_bill_not_supported",
                             f"{account.channel} publishes no {bill.value} bill.",
                             param="bill")  # fmt: skip
    try:
        async with rt.db.transaction() as session:
            repo = ReconRepository(session)
            config = await repo.config(account_id)
            r = ReconRun(
                id=new_id("rcr"), channel_account_id=account_id, app_id=account.app_id,
                livemode=account.mode == "live", channel=account.channel, bill_date=day,
                bill=bill.value, run_no=await repo.next_run_no(account_id, day, bill.value),
                source="upload" if upload else source, status=RunStatus.running, reasons=[],
                problems=[], checks=[], totals={}, started_at=clock.now(), created_by=actor,
            )  # fmt: skip
            repo.add(r)
    except sa.exc.IntegrityError:  # another run of the day took the same number first
        raise Conflict(
            "recon_run_conflict",
            "Another run of this bill day started at the same moment; try again.",
        ) from None
    grace = config.grace_days if config is not None else DEFAULT_GRACE_DAYS
    try:
        return await _run(rt, r, adapter, grace, upload, actor)
    except Exception as exc:
        log.exception("recon_run_failed", run=r.id)
        await _finish(rt, r, RunStatus.failed, Verdict.incomplete,
                      [f"the run failed: {type(exc).__name__}"])  # fmt: skip
        raise


async def _run(
    rt: Runtime, r: ReconRun, adapter: BillCapable, grace: int, upload: Upload | None,
    actor: str,
) -> ReconRun:  # fmt: skip
    root = Path(rt.settings.recon_archive_dir)
    if upload is not None:
        stored = archive.store_file(root, upload.path)
        fetched = FetchedBill(upload.filename, {})
    else:
        with tempfile.TemporaryFile(prefix="paymux-bill-") as handle:
            try:
                fetched = await adapter.fetch_bill(r.bill_date, handle, BillKind(r.bill))
            except base.RetryableError as exc:
                if exc.code == "statement_not_ready":
                    waiting = ["the channel has not published the bill yet"]
                    return await _finish(rt, r, RunStatus.waiting, None, waiting)
                return await _finish(rt, r, RunStatus.failed, Verdict.incomplete,
                                     [f"the bill could not be fetched ({exc.code})"])  # fmt: skip
            except base.ChannelError as exc:
                return await _finish(rt, r, RunStatus.failed, Verdict.incomplete,
                                     [f"the bill could not be fetched ({exc.code})"])  # fmt: skip
            handle.seek(0)
            stored = archive.store(root, iter(lambda: handle.read(archive.CHUNK), b""))
    async with rt.db.transaction() as session:
        file = ReconFile(
            id=new_id("rcf"), channel_account_id=r.channel_account_id, bill_date=r.bill_date,
            sha256=stored.sha256, size=stored.size, filename=fetched.filename[:255] or "(none)",
            source="uploaded" if upload else "fetched", expected=fetched.expected,
            created_by=actor,
        )  # fmt: skip
        session.add(file)
        r.file_id = file.id
        await session.merge(r)
    reader = (adapter.bill_reader(stored.path, fetched.expected, BillKind(r.bill))
              if fetched.exists else None)  # fmt: skip
    line_count = await _stage(rt, r, reader)
    return await _reconcile(rt, r, adapter, grace, reader, line_count)


async def _stage(rt: Runtime, r: ReconRun, reader: BillReader | None) -> int:
    """Stream the bill's lines into the staging table: one COPY on PostgreSQL; on SQLite one
    transaction per batch, so the gateway's writers are never held up for the whole file."""
    if reader is None:
        return 0
    if rt.db.is_sqlite:
        count = 0
        batches = parsing.read_ahead(r.id, reader)
        async for batch in batches:
            async with rt.db.transaction() as session:
                count += await ReconRepository(session).stage(_once(batch))
        return count
    async with rt.db.transaction() as session:
        count = await ReconRepository(session).stage(parsing.read_ahead(r.id, reader))
    async with rt.db.statement() as session:
        await ReconRepository(session).analyze_lines()
    return count


async def _once(batch: list[LineRecord]) -> AsyncIterator[list[LineRecord]]:
    yield batch


def _local_net(c: Coded, account_id: str) -> int:
    """What our record says the line's money is (0 when it did not succeed here, or is on
    another channel account's books)."""
    if c.record_id is None or c.record_account != account_id or c.code == "duplicate":
        return 0
    if c.record_status != "succeeded" or c.record_amount is None:
        return 0
    return c.record_amount - (c.record_fee or 0)


def _describe(c: Coded) -> str:
    if c.kind == "payout":
        return {
            "channel_only": "the bill has a transfer (payout) we have no record of",
            "status_channel_success": f"the bill has the transfer; here it is {c.record_status}",
            "amount_over": f"the bill says {c.amount}, our payout {c.record_amount}",
            "amount_under": f"the bill says {c.amount}, our payout {c.record_amount}",
            "fee_mismatch": f"the channel charged {c.fee} on the transfer; we booked none",
        }.get(c.code) or _describe_trade(c)
    return _describe_trade(c)


def _describe_trade(c: Coded) -> str:
    return {
        "channel_only": "the bill has a payment we have no record of",
        "refund_channel_only": "the bill has a refund we have no record of",
        "status_channel_success": f"the bill says it succeeded; here it is {c.record_status}",
        "currency_mismatch": f"the bill says {c.currency}, our record {c.record_currency}",
        "amount_over": f"the bill says {c.amount}, our record {c.record_amount}",
        "amount_under": f"the bill says {c.amount}, our record {c.record_amount}",
        "fee_mismatch": f"the bill's fee is {c.fee}, we booked {c.record_fee or 0}",
        "unclassified": (
            f"the record is on channel account {c.record_account}"
            if c.record_channel_ref is None or c.channel_ref == c.record_channel_ref
            else f"the channel's number is {c.channel_ref}, ours {c.record_channel_ref}"
        ),
    }.get(c.code, c.code)


def _finding(c: Coded, account_id: str, klass: BreakClass, detail: str = "") -> Finding:
    kind = c.kind if klass is not BreakClass.duplicate else f"duplicate_{c.kind}"
    return Finding(
        kind=kind, key=c.reference or c.channel_ref or f"line:{c.position}", klass=klass,
        currency=c.currency, channel_amount=c.amount - c.fee,
        local_amount=_local_net(c, account_id), channel_fee=c.fee, local_fee=c.record_fee or 0,
        channel_ref=c.channel_ref, payment_id=c.payment_id,
        refund_id=c.record_id if c.kind == "refund" else None, merchant_id=c.merchant_id,
        app_id=c.app_id, detail=detail or _describe(c), at=c.occurred_at,
    )  # fmt: skip


MATCHED_KINDS = {BillKind.trade: ("payment", "refund"), BillKind.funds: ("payout",)}
"""The line kinds each bill's run matches one by one to our records (a funds run books its
``settlement`` lines, and only counts the rest)."""


async def _match(
    rt: Runtime, r: ReconRun, start: dt.datetime, end: dt.datetime
) -> tuple[list[Tally], list[Coded]]:
    # PostgreSQL: a transaction, for the match's own work_mem; SQLite: a read (a transaction
    # would take the write lock for the whole match).
    reading = rt.db.read() if rt.db.is_sqlite else rt.db.transaction()
    async with reading as session:
        repo = ReconRepository(session)
        if r.bill == BillKind.funds:
            return await repo.code_payouts(r.id, r.channel_account_id, start, end)
        return await repo.code_lines(r.id, r.channel_account_id, start, end)


async def _reconcile(
    rt: Runtime, r: ReconRun, adapter: BillCapable, grace: int, reader: BillReader | None,
    line_count: int,
) -> ReconRun:  # fmt: skip
    start, end = day_window(adapter.statement_timezone, r.bill_date)
    reasons: list[str] = [] if reader is None else reader.failures()
    tallies, coded = await _match(rt, r, start, end)
    notes: dict[int, str] = {}
    suggestions: dict[int, dict[str, Any]] = {}
    unreachable = 0
    repaired_at: set[int] = set()
    confirm = {"payment": repair.confirm_payment, "payout": repair.confirm_payout}
    for c in coded:  # 4. repair: only what the channel itself confirms
        if c.code == "status_channel_success" and c.kind in confirm and c.record_id:
            outcome, notes[c.position] = await confirm[c.kind](rt, c.record_id)
            unreachable += outcome is repair.Confirmed.unreachable
            if outcome in (repair.Confirmed.repaired, repair.Confirmed.already):
                repaired_at.add(c.position)
            if outcome is repair.Confirmed.closed_here and c.kind == "payment":
                suggestions[c.position] = {"action": "refund", "payment": c.payment_id,
                                           "amount": c.amount}  # fmt: skip
        elif c.code == "pending" and c.record_id:
            status, notes[c.position] = await repair.settle_refund(rt, c.record_id)
            unreachable += status is None
            if status is RefundStatus.succeeded:
                repaired_at.add(c.position)
    fixed: list[Finding] = []
    for c in coded:
        if c.position in repaired_at:
            f = _finding(c, r.channel_account_id, BreakClass.status_channel_success)
            f.resolved, f.note = Resolution.auto_repaired, notes[c.position]
            fixed.append(f)
    if repaired_at:
        tallies, coded = await _match(rt, r, start, end)
    books: dict[str, _Books] = defaultdict(_Books)
    out: list[Finding] = []
    for t in tallies:
        b = books[t.currency]
        b.channel_count += t.count
        b.channel_amount += t.amount
        b.channel_fee += t.fee
        b.books += t.books
        b.matched_count += t.count
        b.matched_net += t.amount - t.fee
    outside = [c for c in coded if c.code == "outside"]
    seen_elsewhere = await _cross_day(rt, r, outside)
    matched_kinds = MATCHED_KINDS[BillKind(r.bill)]
    for c in coded:
        b = books[c.currency]
        if c.kind not in matched_kinds:
            continue
        b.channel_count += 1
        b.channel_amount += c.amount
        b.channel_fee += c.fee
        b.books += c.books
        if c.code == "outside" and (c.kind, c.reference) not in seen_elsewhere:
            b.matched_count += 1
            b.matched_net += c.amount - c.fee
            continue
        if c.code == "outside":
            other_day = seen_elsewhere[(c.kind, c.reference)]
            f = _finding(c, r.channel_account_id, BreakClass.duplicate,
                         f"also in the bill of {other_day}")  # fmt: skip
        elif c.code == "pending":
            f = _finding(c, r.channel_account_id, BreakClass.status_channel_success,
                         "the bill has the refund; it is still pending here")  # fmt: skip
        else:
            f = _finding(c, r.channel_account_id, BreakClass(c.code))
        if c.code == "status_channel_success" and notes.get(c.position, "").startswith(
            "the channel could not be asked"
        ):
            continue  # nothing is known: the run is incomplete, not a false break
        f.note = notes.get(c.position, "")
        f.suggestion = suggestions.get(c.position)
        out.append(f)
    out = _merge_duplicates(out)
    # A repaired record that still differs (its fee, say) stays a break of that class, with
    # the repair in its history; one that now matches is recorded resolved, auto_repaired.
    remaining = {(f.kind, f.key): f for f in out}
    for f in fixed:
        still = remaining.get((f.kind, f.key))
        if still is None:
            out.append(f)
        else:
            still.repaired = f.note
    if r.bill == BillKind.funds:
        local = await _local_payouts(rt, r, adapter.statement_timezone, grace, start, end)
        settle = await _settlements(rt, r, books, out, reader is not None and reader.intact)
        counted = await _counted(rt, r)
        return await _conclude(rt, r, reader, reasons, books, out, local, unreachable,
                               line_count, {"counted": counted}, settle,
                               (start, end))  # fmt: skip
    local, unreached = await _local_side(rt, r, adapter.statement_timezone, grace, start, end)
    unreachable += unreached
    _suggest(out, local)
    others = line_count - sum(t.count for t in tallies) - len(coded)
    return await _conclude(rt, r, reader, reasons, books, out, local, unreachable, line_count,
                           {"other_lines": others})  # fmt: skip


async def _conclude(
    rt: Runtime, r: ReconRun, reader: BillReader | None, reasons: list[str],
    books: dict[str, _Books], out: list[Finding], local: list[Finding], unreachable: int,
    line_count: int, extra: dict[str, Any], settle: Any = None,
    window: tuple[dt.datetime, dt.datetime] | None = None,
) -> ReconRun:  # fmt: skip
    """The bridge, the verdict and the breaks, in one transaction with ``settle(session)``
    (a funds run's bookings of the channel's settlements)."""
    for f in out + local:
        b = books[f.currency]
        if f.resolved is not None:
            continue
        if f.klass is None:
            b.pending_count += 1
            b.pending_delta += f.delta
        else:
            b.explained[f.klass.value][0] += 1
            b.explained[f.klass.value][1] += f.delta
    for f in local:
        books[f.currency].books += f.books
    if unreachable:
        reasons.append(f"the channel could not be asked about {unreachable} record(s)")
    for currency, b in sorted(books.items()):
        if b.residual:
            reasons.append(f"{currency}: the books bridge leaves {b.residual} unexplained")
    async with rt.db.transaction() as session:
        r = await session.merge(r)
        if settle is not None and not reasons:
            extra = {**extra, "settlements": await settle(session, r)}
        overdue = [f for f in local if f.klass is not None]
        kept, opened = await findings.record(session, r, out + overdue)
        if r.bill == BillKind.funds and reader is not None and reader.intact:
            assert window is not None
            balance = await _balance_check(session, r, reader.balances, books, *window)
            extra = {**extra, "balance": balance}
            reasons += [f"{c}: {b['detail']}" for c, b in sorted(balance.items()) if not b["ok"]]
        open_now = [k for k in kept if k.state == BreakState.open]
        pending = sum(1 for f in local + out if f.klass is None)
        kept = [k for k in kept if k.state != BreakState.resolved or k.last_run_id == r.id]
        if reasons:
            verdict = Verdict.incomplete
        elif open_now:
            verdict = Verdict.breaks
        elif pending:
            verdict = Verdict.reconciled_with_pending
        else:
            verdict = Verdict.reconciled
        r.status, r.verdict, r.reasons = RunStatus.done, verdict, reasons
        r.line_count, r.break_count, r.pending_count = line_count, len(kept), pending
        r.totals = {"currencies": {c: b.out() for c, b in sorted(books.items())}, **extra}
        if reader is not None:
            r.problems = [{"position": p.position, "text": p.text, "reason": p.reason}
                          for p in reader.problems]  # fmt: skip
            r.checks = [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in reader.checks]
        r.finished_at = clock.now()
        r.report_sha256 = reports.digest(reports.run_document(r, kept))
        await _emit(session, r, opened)
    _count(r, opened)
    log.info("recon_run_done", run=r.id, bill=r.bill, verdict=verdict, breaks=len(kept),
             lines=line_count)  # fmt: skip
    return r


async def _balance_check(
    session: Any, r: ReconRun, closing: dict[str, int], books: dict[str, _Books],
    start: dt.datetime, end: dt.datetime,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """The three-way leg: the channel's own balance at the end of the day against our clearing
    account as of the same moment (plus what the account held before paymux, its
    ``opening_balances``). The gap must be exactly what the account's open breaks (of either
    bill, this run's included) and the day's carried records explain.

    The channel's balance is its funds bill's last line's where the bill gives one (WeChat Pay,
    Alipay); else the previous day's balance plus every line of the day (Stripe's balance
    transactions, PayPal's rows, UnionPay's ZM and its settlement) — on an account's first
    funds day, the day opens where our books stand, so that day checks its movement only."""
    repo = ReconRepository(session)
    account = r.channel_account_id
    config = await repo.config(account)
    opening = dict(config.opening_balances or {}) if config is not None else {}
    trade = await repo.latest_runs(account, r.bill_date, r.bill_date)
    trade_pending: dict[str, int] = {}
    if trade:
        found = await repo.get_run(trade[r.bill_date])
        for currency, t in ((found.totals or {}).get("currencies", {}) if found else {}).items():
            trade_pending[currency] = int(t.get("pending", {}).get("delta", 0))
    yesterday = r.bill_date - dt.timedelta(days=1)
    before = await repo.latest_runs(account, yesterday, yesterday, bill=BillKind.funds.value)
    previous: dict[str, Any] = {}
    if before:
        found = await repo.get_run(before[yesterday])
        previous = dict((found.totals or {}).get("balance", {})) if found else {}
    nets = await repo.line_nets(r.id)
    out: dict[str, dict[str, Any]] = {}
    for currency in sorted(set(closing) | set(nets)):
        base = int(opening.get(currency, 0))
        ours = base + await repo.clearing_balance(account, currency, end, SETTLEMENT_KEY_PREFIX,
                                                  [r.id, *trade.values()])  # fmt: skip
        if currency in closing:
            channel, source = closing[currency], "bill"
        elif currency in previous:
            channel = int(previous[currency]["channel"]) + nets.get(currency, 0)
            source = "previous day + lines"
        else:
            at_start = base + await repo.clearing_balance(account, currency, start,
                                                          SETTLEMENT_KEY_PREFIX)  # fmt: skip
            channel, source = at_start + nets.get(currency, 0), "our books at the start + lines"
        explained = (await repo.open_deltas(account, currency, r.bill_date)
                     + books[currency].pending_delta + trade_pending.get(currency, 0))  # fmt: skip
        residual = channel - ours - explained
        out[currency] = {
            "channel": channel, "source": source, "books": ours, "explained": explained,
            "residual": residual, "ok": residual == 0,
            "detail": "" if residual == 0 else (
                f"the channel's balance is {channel}, our books say {ours}; "
                f"{residual} unexplained"
                + ("" if trade else " (the day's trade bill has no finished run)")
            ),
        }  # fmt: skip
    return out


def _count(r: ReconRun, opened: list[Any]) -> None:
    verdict = r.verdict or "none"
    RUNS.labels(r.channel, verdict).inc()
    LAST_VERDICT.labels(r.channel_account_id).set(
        1 if verdict in (Verdict.reconciled, Verdict.reconciled_with_pending) else 0
    )
    for b in opened:
        BREAKS_OPENED.labels(b.klass, str(b.priority)).inc()


SUGGEST_WITHIN = dt.timedelta(minutes=30)


def _suggest(lines: list[Finding], local: list[Finding]) -> None:
    """Never a match, only a suggestion for the person in the queue: a line the channel has
    without a record of ours, and a record of ours no line names, of the same kind, amount and
    currency within :data:`SUGGEST_WITHIN` of each other (e.g. a payment re-made under another
    number). Each gets the other as a ``link`` candidate."""
    loose = {"channel_only": "payment", "refund_channel_only": "refund"}
    for f in lines:
        kind = loose.get(f.klass.value if f.klass else "")
        if kind is None or f.at is None:
            continue
        gross = f.channel_amount + f.channel_fee
        near = [g for g in local if g.kind == kind and g.currency == f.currency and g.at
                and g.local_amount + g.local_fee == gross
                and abs(g.at - f.at) <= SUGGEST_WITHIN]  # fmt: skip
        if not near:
            continue
        f.suggestion = {"action": "link", "why": "same amount within 30 minutes",
                        "candidates": sorted(g.refund_id or g.payment_id or g.key
                                             for g in near)}  # fmt: skip
        for g in near:
            g.suggestion = {"action": "link", "why": "same amount within 30 minutes",
                            "candidates": [f.key]}  # fmt: skip


def _merge_duplicates(found: list[Finding]) -> list[Finding]:
    """One duplicate break per record however many extra lines name it."""
    out: list[Finding] = []
    dups: dict[tuple[str, str], Finding] = {}
    for f in found:
        if f.klass is not BreakClass.duplicate:
            out.append(f)
            continue
        first = dups.get((f.kind, f.key))
        if first is None:
            dups[(f.kind, f.key)] = f
            out.append(f)
        else:
            first.channel_amount += f.channel_amount
            first.channel_fee += f.channel_fee
    return out


async def _cross_day(rt: Runtime, r: ReconRun, outside: list[Coded]) -> dict[tuple[str, Any], str]:
    """Lines our records date on another day: listed in that day's (or a nearby day's) bill
    of the same kind already? (kind, reference) → the other bill day."""
    if not outside:
        return {}
    span = dt.timedelta(days=CROSS_DAY_WINDOW)
    async with rt.db.read() as session:
        repo = ReconRepository(session)
        runs = await repo.latest_runs(r.channel_account_id, r.bill_date - span,
                                      r.bill_date + span, exclude=r.bill_date,
                                      bill=r.bill)  # fmt: skip
        out: dict[tuple[str, Any], str] = {}
        for day, run_id in sorted(runs.items()):
            for kind in MATCHED_KINDS[BillKind(r.bill)]:
                refs = [c.reference for c in outside if c.kind == kind and c.reference]
                for ref in await repo.listed_in([run_id], kind, refs):
                    out.setdefault((kind, ref), day.isoformat())
    return out


async def _local_side(
    rt: Runtime, r: ReconRun, zone: dt.tzinfo, grace: int, start: dt.datetime,
    end: dt.datetime,
) -> tuple[list[Finding], int]:  # fmt: skip
    """Our records of the day (and of the grace period before it) that no bill names. A
    pending refund is first asked about. Returns the findings (``klass`` None = carried) and
    how many records the channel could not be asked about."""
    since = start - dt.timedelta(days=grace)
    span = dt.timedelta(days=grace + 1)
    async with rt.db.read() as session:
        repo = ReconRepository(session)
        runs = await repo.latest_runs(r.channel_account_id, r.bill_date - span,
                                      r.bill_date + span, exclude=r.bill_date)  # fmt: skip
        items = await repo.local_items(r.channel_account_id, [r.id, *runs.values()], since, end)
    out: list[Finding] = []
    unreachable = 0
    for item in sorted(items, key=lambda i: (i.kind, i.record_id)):
        note = ""
        status = item.status
        if item.kind == "refund" and status == RefundStatus.pending:
            settled, note = await repair.settle_refund(rt, item.record_id)
            if settled is None:
                unreachable += 1
                continue
            if settled is not RefundStatus.succeeded:
                continue  # failed: no money moved, nothing to reconcile
            status = settled.value
            item = await _refreshed(rt, item)
        out.append(_local_finding(item, zone, r.bill_date, grace, note))
    return out, unreachable


async def _local_payouts(
    rt: Runtime, r: ReconRun, zone: dt.tzinfo, grace: int, start: dt.datetime,
    end: dt.datetime,
) -> list[Finding]:  # fmt: skip
    """Our payouts of the day (and of the grace period before it) that paid out through the
    account and that no funds bill names: carried while within ``grace_days``, breaks after."""
    since = start - dt.timedelta(days=grace)
    span = dt.timedelta(days=grace + 1)
    async with rt.db.read() as session:
        repo = ReconRepository(session)
        runs = await repo.latest_runs(r.channel_account_id, r.bill_date - span,
                                      r.bill_date + span, exclude=r.bill_date,
                                      bill=r.bill)  # fmt: skip
        items = await repo.local_payouts(r.channel_account_id, [r.id, *runs.values()], since,
                                         end)  # fmt: skip
    return [_local_finding(item, zone, r.bill_date, grace, "")
            for item in sorted(items, key=lambda i: i.record_id)]  # fmt: skip


async def _counted(rt: Runtime, r: ReconRun) -> list[dict[str, Any]]:
    """What a funds bill lists besides payouts and settlements (its trade money — which the
    trade bill reconciles —, the channel's own fees, anything else): counted and summed."""
    async with rt.db.read() as session:
        rows = await ReconRepository(session).funds_others(r.id)
    return [{"kind": kind, "currency": currency, "count": n, "amount": amount, "fee": fee,
             "net": amount - fee} for kind, currency, n, amount, fee in rows]  # fmt: skip


SETTLEMENT_KEY_PREFIX = "channel_settlement:"


async def _settlements(
    rt: Runtime, r: ReconRun, books: dict[str, _Books], out: list[Finding], intact: bool
) -> Any:
    """The funds bill's settlement lines against the settlements booked already. A new one is
    booked once (by the returned function, in the run's own transaction, and only when the bill
    is intact and the run otherwise complete); one booked before with the same amount matches;
    one booked before with another amount, a line listed twice, or a line without the channel's
    id is a break. Its money joins the books bridge either way."""
    async with rt.db.read() as session:
        repo = ReconRepository(session)
        lines = await repo.funds_lines(r.id, "settlement")
        refs = [x.channel_ref for x in lines if x.channel_ref]
        booked = await repo.settlements(r.channel_account_id, refs)
    seen: dict[str, int] = {}
    new: list[Any] = []
    for line in lines:
        b = books[line.currency]
        net = line.amount - line.fee
        b.channel_count += 1
        b.channel_amount += line.amount
        b.channel_fee += line.fee
        ref = line.channel_ref
        f = Finding(kind="settlement", key=ref or f"line:{line.position}", klass=None,
                    currency=line.currency, channel_amount=net, local_amount=0,
                    channel_fee=line.fee, channel_ref=ref, app_id=r.app_id,
                    at=line.occurred_at)  # fmt: skip
        if ref is None:
            f.klass = BreakClass.unclassified
            f.detail = "a settlement line without the channel's id"
            out.append(f)
            continue
        if ref in seen:
            f.kind, f.klass = "duplicate_settlement", BreakClass.duplicate
            f.detail = f"settlement {ref} is listed again (first on line {seen[ref]})"
            out.append(f)
            continue
        seen[ref] = line.position
        before = booked.get(ref)
        if before is None or (before.amount == -net and before.currency == line.currency):
            if before is None and net:
                new.append(line)  # booked by the run: it moves ``net`` out of clearing
            b.books += net
            b.matched_count += 1
            b.matched_net += net
            continue
        b.books += -before.amount
        f.local_amount = -before.amount
        f.klass = (BreakClass.currency_mismatch if before.currency != line.currency
                   else BreakClass.amount_over if abs(net) > abs(before.amount)
                   else BreakClass.amount_under)  # fmt: skip
        f.detail = (
            f"settlement {ref} was booked as {before.amount} {before.currency} on "
            f"{before.bill_date}; this bill says {-net} {line.currency}"
        )
        out.append(f)
    if not new or not intact:
        return None

    async def settle(session: Any, run: ReconRun) -> list[dict[str, Any]]:
        done = []
        for line in new:
            amount = -(line.amount - line.fee)
            txn = await _book_settlement(session, run, line.channel_ref, line.currency, amount)
            session.add(ReconSettlement(
                id=new_id("rst"), channel_account_id=run.channel_account_id,
                channel_ref=line.channel_ref, currency=line.currency, amount=amount,
                bill_date=run.bill_date, occurred_at=line.occurred_at, run_id=run.id,
                ledger_transaction_id=txn,
            ))  # fmt: skip
            done.append({"channel_ref": line.channel_ref, "currency": line.currency,
                         "amount": amount, "ledger_transaction_id": txn})  # fmt: skip
        return done

    return settle


async def _book_settlement(session: Any, r: ReconRun, ref: str, currency: str, amount: int) -> str:
    """The channel paid ``amount`` of its balance to our bank: out of the channel account's
    clearing account into the platform's ``settlement_in_transit`` (a negative amount — the
    channel took money back from the bank — the other way)."""
    clearing = await chart.clearing(session, r.channel_account_id, currency)
    transit = await chart.platform(session, r.livemode, Purpose.settlement_in_transit, currency)
    into, out_of = (transit, clearing) if amount > 0 else (clearing, transit)
    txn = await ledger.transfer(
        session, key=f"{SETTLEMENT_KEY_PREFIX}{r.channel_account_id}:{ref}",
        legs=[ledger.debit(into, abs(amount)), ledger.credit(out_of, abs(amount))],
        description=f"{r.channel} settlement {ref} to the bank",
        metadata={"kind": "channel_settlement", "channel_account": r.channel_account_id,
                  "settlement": ref, "run": r.id},
    )  # fmt: skip
    return str(txn.id)


async def _refreshed(rt: Runtime, item: LocalItem) -> LocalItem:
    """A refund just settled by a query: its time and books now."""
    async with rt.db.read() as session:
        refund = await session.get(Refund, item.record_id)
        assert refund is not None
    return LocalItem(item.kind, item.record_id, item.payment_id, item.merchant_id, item.app_id,
                     "succeeded", item.amount, item.fee, item.currency,
                     refund.succeeded_at, -(refund.amount - refund.fee_returned))  # fmt: skip


def _local_finding(
    item: LocalItem, zone: dt.tzinfo, day: dt.date, grace: int, note: str
) -> Finding:
    at = item.at.astimezone(zone).date() if item.at else day
    overdue = (day - at).days >= grace
    klass = None
    if overdue:
        klass = (BreakClass.refund_local_only if item.kind == "refund"
                 else BreakClass.local_only)  # fmt: skip
    net = item.amount - item.fee
    return Finding(
        kind=item.kind, key=item.record_id, klass=klass, currency=item.currency,
        channel_amount=0, local_amount=net, local_fee=item.fee, books=item.books,
        payment_id=item.payment_id,
        refund_id=item.record_id if item.kind == "refund" else None,
        merchant_id=item.merchant_id, app_id=item.app_id, at=item.at,
        detail=(f"our {item.kind} of {at} is not in the channel's bill" if overdue else
                f"our {item.kind} of {at} is not in the bill yet (grace {grace} day(s))"),
        note=note,
    )  # fmt: skip


async def _emit(session: Any, r: ReconRun, opened: list[Any]) -> None:
    """``recon.run.completed`` for the run; ``recon.break.opened`` for each P1 break it opened
    (at once: money without a valid record)."""
    from paymux.recon.schemas import BreakOut, RunOut

    await webhooks.emit(session, app_id=r.app_id, livemode=r.livemode,
                        type="recon.run.completed",
                        data=RunOut.of(r).model_dump(mode="json"))  # fmt: skip
    for b in opened:
        if b.priority == 1:
            await webhooks.emit(session, app_id=b.app_id, livemode=b.livemode,
                                type="recon.break.opened",
                                data=BreakOut.of(b).model_dump(mode="json"))  # fmt: skip


async def _finish(
    rt: Runtime, r: ReconRun, status: RunStatus, verdict: Verdict | None, reasons: list[str]
) -> ReconRun:
    async with rt.db.transaction() as session:
        r = await session.merge(r)
        r.status, r.verdict, r.reasons = status, verdict, reasons
        r.finished_at = clock.now()
        if verdict is not None:
            await _emit(session, r, [])
    if verdict is not None:
        _count(r, [])
    return r

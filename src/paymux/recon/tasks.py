"""The daily reconciliation job: for every enabled channel account, each bill (trade, and
funds where the channel has one) of each recent day once the channel has published it
(``bill_ready_after``, or the account's ``fetch_after_minutes``), asked again while the channel
says it is not ready."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

import structlog

from paymux.channel_accounts import service as channel_service
from paymux.channels.bills import BillKind, bill_capable_of, bills_of
from paymux.kit import clock
from paymux.recon import service
from paymux.recon.models import RunStatus
from paymux.recon.repository import ReconRepository
from paymux.runtime import Runtime

log = structlog.get_logger(__name__)

EVERY_SECONDS = 300.0
"""How often the job looks (a bill not ready yet is asked for again this often)."""
LOOKBACK_DAYS = 3
"""Bill days the job still fetches when they were missed (the worker was down)."""
STALE_RUNNING = dt.timedelta(hours=1)
"""A run still ``running`` after this long died with its process: the day is run again."""
MAX_FAILED = 3
"""Failed runs of one bill day before the job leaves it to a person."""
ACTOR = "system:recon-job"


def due_days(now: dt.datetime, zone: dt.tzinfo, after: dt.timedelta) -> list[dt.date]:
    """The recent bill days whose bills should be published by ``now``, oldest first."""
    today = now.astimezone(zone).date()
    days = []
    for back in range(LOOKBACK_DAYS, 0, -1):
        day = today - dt.timedelta(days=back)
        ready = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone) + after
        if now >= ready:
            days.append(day)
    return days


async def reconcile_due(rt: Runtime, *, only: Collection[str] | None = None,
                        force: bool = False) -> int:  # fmt: skip
    """Run every due (account, day) that has no finished run; returns how many ran. ``only``:
    these accounts; ``force``: even when the schedule is off (``paymux recon due``)."""
    if not (rt.settings.recon_schedule or force):
        return 0
    async with rt.db.read() as session:
        accounts = await ReconRepository(session).due_accounts()
    if only is not None:
        accounts = [a for a in accounts if a[0] in only]
    ran = 0
    now = clock.now()
    for account_id, _channel, _live, config in accounts:
        if config is not None and not config.enabled:
            continue
        async with rt.db.read() as session:
            account = await channel_service.account_of(session, account_id)
        adapter = bill_capable_of(channel_service.adapter_for(rt.vault, account, rt.channel_http))
        if adapter is None:
            continue
        after = adapter.bill_ready_after
        if config is not None and config.fetch_after_minutes is not None:
            after = dt.timedelta(minutes=config.fetch_after_minutes)
        for day in due_days(now, adapter.statement_timezone, after):
            for bill in sorted(bills_of(adapter), key=lambda b: b is not BillKind.trade):
                ran += await _run_due(rt, account_id, day, bill, now)
    return ran


async def _run_due(
    rt: Runtime, account_id: str, day: dt.date, bill: BillKind, now: dt.datetime
) -> int:
    """Run one bill of one day unless it is done, running, or failed too often (1 if it ran)."""
    async with rt.db.read() as session:
        repo = ReconRepository(session)
        if await repo.has_run(account_id, day, [RunStatus.done], bill=bill) or await repo.has_run(
            account_id, day, [RunStatus.running], started_after=now - STALE_RUNNING, bill=bill
        ):
            return 0
        if await repo.count_runs(account_id, day, RunStatus.failed, bill) >= MAX_FAILED:
            return 0
    try:
        await service.run(rt, account_id, day, bill=bill, source="scheduled", actor=ACTOR)
    except Exception:
        log.exception("recon_job_run_failed", account=account_id, day=str(day), bill=bill)
    return 1

"""``paymux worker``: the loop that runs every background job.

Queue-like jobs (janitor queries, expiry, webhook deliveries) claim their due rows with
``FOR UPDATE SKIP LOCKED``, so any number of workers on any hosts share them without
double work. Each tick first asks, in one plain read, which of them have anything due
(:class:`paymux.kit.db.DueCheck`) and runs only those: an idle worker costs the database one
statement per poll, not one per job. Periodic jobs (housekeeping) take a fleet-wide lease and
run once per period.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from paymux.jobs import leases
from paymux.kit import idempotency
from paymux.kit.db import Due, DueCheck
from paymux.kit.ids import token
from paymux.ledger import tasks as ledger_tasks
from paymux.payments import tasks as payment_tasks
from paymux.payouts import tasks as payout_tasks
from paymux.recon import tasks as recon_tasks
from paymux.refunds import tasks as refund_tasks
from paymux.risk import tasks as risk_tasks
from paymux.runtime import Runtime
from paymux.settlement import tasks as settlement_tasks
from paymux.splits import tasks as split_tasks
from paymux.webhooks import tasks as webhook_tasks

log = structlog.get_logger(__name__)

Job = Callable[[Runtime], Awaitable[int]]


@dataclass(frozen=True)
class Queued:
    name: str
    due: Due | None
    """When it has work (a plain read, asked for every job at once); None: every tick."""
    run: Job


@dataclass(frozen=True)
class Periodic:
    name: str
    every_seconds: float
    run: Job


async def _purge_idempotency_keys(rt: Runtime) -> int:
    return await idempotency.purge_older_than(rt.db, hours=24)


PERIODIC: tuple[Periodic, ...] = (
    Periodic("purge_idempotency_keys", 3600.0, _purge_idempotency_keys),
    Periodic("recon_daily", recon_tasks.EVERY_SECONDS, recon_tasks.reconcile_due),
    Periodic("risk_reviews", risk_tasks.EVERY_SECONDS, risk_tasks.reviews_due),
    Periodic("risk_purge_features", risk_tasks.PURGE_EVERY_SECONDS, risk_tasks.purge_features),
)


PERIODIC_CHECK_SECONDS = 30.0
"""How often a worker asks whether a periodic job is due (it learns nothing in between)."""


class Worker:
    def __init__(
        self,
        rt: Runtime,
        *,
        holder: str | None = None,
        periodic: Sequence[Periodic] = PERIODIC,
    ) -> None:
        self.rt = rt
        self.periodic = tuple(periodic)
        self._next_check: dict[str, float] = {}
        self._check: DueCheck | None = None
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{token('', 4)}"
        batch = rt.settings.worker_batch_size
        self.jobs: tuple[Queued, ...] = (
            Queued("janitor", payment_tasks.QUERY_DUE,
                   lambda r: payment_tasks.query_due(r, limit=batch)),
            Queued("expiry", payment_tasks.EXPIRY_DUE,
                   lambda r: payment_tasks.expire_due(r, limit=batch)),
            Queued("refunds", refund_tasks.DUE, lambda r: refund_tasks.query_due(r, limit=batch)),
            Queued("webhooks", webhook_tasks.DUE,
                   lambda r: webhook_tasks.deliver_due(r, limit=batch)),
            Queued("ledger_holds", ledger_tasks.DUE,
                   lambda r: ledger_tasks.void_expired(r, limit=batch)),
            Queued("splits", split_tasks.DUE, lambda r: split_tasks.process_due(r, limit=batch)),
            Queued("payouts", payout_tasks.DUE, lambda r: payout_tasks.send_due(r, limit=batch)),
            Queued("escrow", settlement_tasks.ESCROW_DUE,
                   lambda r: settlement_tasks.release_escrows(r, limit=batch)),
            Queued("settlement", settlement_tasks.SETTLE_DUE, settlement_tasks.settle_due),
        )  # fmt: skip

    def _due_check(self) -> DueCheck:
        probes = {job.name: job.due for job in self.jobs if job.due is not None}
        if self._check is None or self._check.key != tuple((n, id(d)) for n, d in probes.items()):
            self._check = DueCheck(probes)
        return self._check

    async def tick(self) -> int:
        """Run every job once; returns how many items were handled."""
        handled = 0
        try:
            due = await self._due_check()(self.rt.db)
        except Exception:
            log.exception("job_failed", job="due_check")
            due = set()
        for job in self.jobs:
            if job.due is not None and job.name not in due:
                continue
            try:
                handled += await job.run(self.rt)
            except Exception:
                log.exception("job_failed", job=job.name)
        for periodic in self.periodic:
            handled += await self._periodic(periodic)
        return handled

    async def _periodic(self, periodic: Periodic) -> int:
        db = self.rt.db
        moment = time.monotonic()
        if self._next_check.get(periodic.name, 0.0) > moment:
            return 0
        self._next_check[periodic.name] = moment + min(
            periodic.every_seconds, PERIODIC_CHECK_SECONDS
        )
        ttl = max(periodic.every_seconds, 60.0)
        if not await leases.acquire(
            db, periodic.name, self.holder, every=periodic.every_seconds, ttl=ttl
        ):
            return 0
        ran = False
        try:
            count = await periodic.run(self.rt)
            ran = True
            return count
        except Exception:
            log.exception("periodic_failed", job=periodic.name)
            return 0
        finally:
            await leases.release(db, periodic.name, self.holder, ran=ran)

    async def run_until_idle(self, *, max_ticks: int = 100) -> int:
        """Tick until nothing is due (tests, one-shot runs)."""
        total = 0
        for _ in range(max_ticks):
            handled = await self.tick()
            total += handled
            if handled == 0:
                break
        return total

    async def run_forever(self) -> None:
        log.info("worker_started", holder=self.holder)
        poll = self.rt.settings.worker_poll_seconds
        while True:
            handled = await self.tick()
            if handled == 0:
                await asyncio.sleep(poll)

"""The worker: periodic jobs run once across a fleet of workers, leases of crashed holders
expire, and queue-like jobs are shared without double work. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from paymux.jobs import leases
from paymux.jobs.worker import Periodic, Worker
from tests.conftest import Stack


def _counting_job(name: str, every: float, runs: list[str]) -> Periodic:
    async def run(_rt: Any) -> int:
        runs.append(name)
        await asyncio.sleep(0.01)  # overlap with the other workers' attempts
        return 1

    return Periodic(name, every, run)


async def test_a_periodic_job_runs_once_across_the_fleet(stack: Stack, clock: Any) -> None:
    runs: list[str] = []
    job = _counting_job(f"test-{uuid.uuid4().hex[:8]}", 600.0, runs)

    def fleet() -> list[Worker]:  # fresh workers: nothing remembered locally
        return [Worker(stack.runtime, holder=f"host{i}", periodic=[job]) for i in range(5)]

    await asyncio.gather(*(w._periodic(job) for w in fleet()))
    assert runs == [job.name]
    await asyncio.gather(*(w._periodic(job) for w in fleet()))
    assert runs == [job.name]  # the period has not passed
    clock.advance(601)
    await asyncio.gather(*(w._periodic(job) for w in fleet()))
    assert runs == [job.name] * 2


async def test_a_crashed_holders_lease_expires(stack: Stack, clock: Any) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    db = stack.runtime.db
    assert await leases.acquire(db, name, "crashed", every=10, ttl=60)
    # "crashed" never releases: nobody else may run the job until its lease expires.
    assert not await leases.acquire(db, name, "other", every=10, ttl=60)
    clock.advance(61)
    assert await leases.acquire(db, name, "other", every=10, ttl=60)
    await leases.release(db, name, "other", ran=True)
    assert not await leases.acquire(db, name, "third", every=10, ttl=60)  # ran just now
    await leases.release(db, name, "crashed", ran=True)  # a late release of a lost lease
    clock.advance(11)
    assert await leases.acquire(db, name, "third", every=10, ttl=60)


async def test_a_failing_periodic_job_is_retried_next_period(stack: Stack, clock: Any) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    calls: list[int] = []

    async def flaky(_rt: Any) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return 1

    job = Periodic(name, 600.0, flaky)
    assert await Worker(stack.runtime, periodic=[job])._periodic(job) == 0
    # It did not run to completion, so the next worker may run it without waiting a period.
    assert await Worker(stack.runtime, periodic=[job])._periodic(job) == 1
    assert await Worker(stack.runtime, periodic=[job])._periodic(job) == 0
    assert len(calls) == 2


async def test_a_worker_checks_periodic_jobs_sparingly(stack: Stack, clock: Any) -> None:
    runs: list[str] = []
    job = _counting_job(f"test-{uuid.uuid4().hex[:8]}", 5.0, runs)
    worker = Worker(stack.runtime, periodic=[job])
    await worker._periodic(job)
    clock.advance(6)  # due again in the database…
    await worker._periodic(job)
    assert runs == [job.name]  # …but this worker asks again only after 5 s of its own time
    assert await Worker(stack.runtime, periodic=[job])._periodic(job) == 1

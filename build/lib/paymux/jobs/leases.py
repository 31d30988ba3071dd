"""Fleet-wide leases: a periodic job runs once per period however many workers are running.

A worker takes the job's lease row under a row lock (PostgreSQL; SQLite serialises writers)
when the lease is free or expired and the period has passed; a crashed holder's lease expires.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from paymux.jobs.models import Lease
from paymux.kit import clock
from paymux.kit.db import Database


async def acquire(db: Database, name: str, holder: str, *, every: float, ttl: float) -> bool:
    now = clock.now()
    try:
        async with db.transaction() as session:
            stmt = sa.select(Lease).where(Lease.name == name).with_for_update()
            lease = (await session.scalars(stmt)).first()
            if lease is None:
                session.add(Lease(name=name, holder=holder, expires_at=now + _s(ttl)))
                await session.flush()
                return True
            if lease.expires_at > now:
                return False
            if lease.last_run_at is not None and lease.last_run_at + _s(every) > now:
                return False
            lease.holder = holder
            lease.expires_at = now + _s(ttl)
            return True
    except sa.exc.IntegrityError:  # another worker inserted the row first
        return False


async def release(db: Database, name: str, holder: str, *, ran: bool) -> None:
    now = clock.now()
    values: dict[str, dt.datetime] = {"expires_at": now}
    if ran:
        values["last_run_at"] = now
    async with db.transaction() as session:
        await session.execute(
            sa.update(Lease).where(Lease.name == name, Lease.holder == holder).values(**values)
        )


def _s(seconds: float) -> dt.timedelta:
    return dt.timedelta(seconds=seconds)

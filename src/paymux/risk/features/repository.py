"""Every query of velocity counters and links.

Writes are single upserts that add (counters) or move a time forward (links), never
read-then-write in Python, so any number of API processes on PostgreSQL share the counters
without losing an event. Each write is ONE statement for all its rows (a multi-row VALUES),
its rows sorted by key: two transactions that touch some of the same rows lock them in the
same order, so they queue on PostgreSQL instead of deadlocking.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit.db import insert_of
from paymux.risk.features.models import Resolution, RiskCounter, RiskLink


@dataclass(frozen=True, slots=True)
class Window:
    """One window of a read: its name (``1h``), which buckets it sums and from when."""

    name: str
    resolution: Resolution
    start: dt.datetime
    """The first bucket start (or link last-seen time) inside the window."""


class FeatureRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def _dialect(self) -> str:
        return self.session.get_bind().dialect.name

    async def add_counts(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add each row's ``count`` and ``total`` to its bucket (created at 0 when new).
        ``rows``: subject, key, measure, resolution, bucket_start, count, total — at most one
        per bucket, sorted by key (the caller's lock order)."""
        if not rows:
            return
        insert = insert_of(self._dialect)(RiskCounter).values(list(rows))
        stmt = insert.on_conflict_do_update(
            index_elements=["subject", "key", "measure", "resolution", "bucket_start"],
            set_={
                "count": RiskCounter.count + insert.excluded.count,
                "total": RiskCounter.total + insert.excluded.total,
            },
        )
        await self.session.execute(stmt)

    async def touch_links(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Record each pair as seen at its ``last_seen`` (and first seen then, when new).
        ``rows``: per_subject, per_key, counted_subject, counted_key, first_seen, last_seen,
        sorted by key. A pair already seen at that time or later is left alone (no new row
        version, which a touch per payment would otherwise write)."""
        if not rows:
            return
        insert = insert_of(self._dialect)(RiskLink).values(list(rows))
        stmt = insert.on_conflict_do_update(
            index_elements=["per_subject", "per_key", "counted_subject", "counted_key"],
            set_={"last_seen": insert.excluded.last_seen},
            where=RiskLink.last_seen < insert.excluded.last_seen,
        )
        await self.session.execute(stmt)

    async def window_sums(
        self,
        keys: Mapping[str, str],
        measures: Collection[str],
        windows: Sequence[Window],
        at: dt.datetime,
    ) -> dict[tuple[str, str], dict[str, tuple[int, int]]]:
        """(count, total) per window for each (subject, measure), in one query: the buckets
        of each subject's key (``keys``: subject → key) of ``measures`` whose start is in a
        window (≥ its start, ≤ ``at``). A pair with no bucket is absent."""
        if not keys or not measures or not windows:
            return {}
        c = RiskCounter
        columns: list[Any] = []
        for n, window in enumerate(windows):
            inside = sa.and_(c.resolution == window.resolution.value,
                             c.bucket_start >= window.start)  # fmt: skip
            columns.append(sa.func.sum(sa.case((inside, c.count), else_=0)).label(f"c{n}"))
            columns.append(sa.func.sum(sa.case((inside, c.total), else_=0)).label(f"t{n}"))
        # Per resolution, only the buckets of its widest window: a range scan of the primary
        # key per subject, measure and resolution.
        oldest: dict[Resolution, dt.datetime] = {}
        for window in windows:
            oldest[window.resolution] = min(oldest.get(window.resolution, at), window.start)
        ranges = [
            sa.and_(
                c.subject == subject,
                c.key == key,
                c.resolution == resolution.value,
                c.bucket_start >= start,
            )
            for subject, key in sorted(keys.items())
            for resolution, start in sorted(oldest.items())
        ]
        stmt = (
            sa.select(c.subject, c.measure, *columns)
            .where(sa.or_(*ranges), c.measure.in_(sorted(measures)), c.bucket_start <= at)
            .group_by(c.subject, c.measure)
        )
        out: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
        for row in await self.session.execute(stmt):
            out[(row[0], row[1])] = {
                window.name: (int(row[2 + 2 * n] or 0), int(row[3 + 2 * n] or 0))
                for n, window in enumerate(windows)
            }
        return out

    async def distinct_counts(
        self, pairs: Collection[tuple[str, str, str]], windows: Mapping[str, dt.datetime]
    ) -> dict[tuple[str, str], dict[str, int]]:
        """How many distinct counted values each per-subject value was seen with since each
        window's start, in one query. ``pairs``: (per_subject, per_key, counted_subject);
        ``windows``: name → start. Answered by (per_subject, counted_subject)."""
        if not pairs or not windows:
            return {}
        link = RiskLink
        oldest = min(windows.values())
        columns = [
            sa.func.sum(sa.case((link.last_seen >= start, 1), else_=0)).label(f"w{n}")
            for n, start in enumerate(windows.values())
        ]
        ranges = [
            sa.and_(
                link.per_subject == per,
                link.per_key == key,
                link.counted_subject == counted,
                link.last_seen >= oldest,
            )
            for per, key, counted in sorted(pairs)
        ]
        stmt = (
            sa.select(link.per_subject, link.counted_subject, *columns)
            .where(sa.or_(*ranges))
            .group_by(link.per_subject, link.counted_subject)
        )
        out: dict[tuple[str, str], dict[str, int]] = {}
        for row in await self.session.execute(stmt):
            out[(row[0], row[1])] = {name: int(row[2 + n] or 0) for n, name in enumerate(windows)}
        return out

"""Every query of velocity counters and links.

Writes are single upserts that add (counters) or move a time forward (links), never
read-then-write in Python, so any number of API processes on PostgreSQL share the counters
without losing an event. Each write is ONE statement for all its rows (a multi-row VALUES),
its rows sorted by key: two transactions that touch some of the same rows lock them in the
same order, so they queue on PostgreSQL instead of deadlocking.
"""

from __future__ import annotations

import datetime as dt
import functools
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


# The upserts are built once per dialect and run with a list of rows: SQLAlchemy's
# "insertmanyvalues" sends them as ONE multi-row ``INSERT … VALUES (…), (…) ON CONFLICT …``,
# rows in the order given, from a statement compiled once. (A statement built with
# ``.values([...])`` is never cached: compiling it each time cost several times the round
# trip.) ``RETURNING`` is what makes the asyncpg dialect batch rows into one statement
# rather than an executemany.


@functools.cache
def _add_counts(dialect: str) -> Any:
    table = RiskCounter.__table__
    insert = insert_of(dialect)(table)
    return insert.on_conflict_do_update(
        index_elements=["subject", "key", "measure", "resolution", "bucket_start"],
        set_={
            "count": table.c.count + insert.excluded.count,
            "total": table.c.total + insert.excluded.total,
        },
    ).returning(table.c.count)


@functools.cache
def _touch_links(dialect: str) -> Any:
    table = RiskLink.__table__
    insert = insert_of(dialect)(table)
    return insert.on_conflict_do_update(
        index_elements=["per_subject", "per_key", "counted_subject", "counted_key"],
        set_={"last_seen": insert.excluded.last_seen},
        where=table.c.last_seen < insert.excluded.last_seen,
    ).returning(table.c.last_seen)


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
        if rows:
            await self.session.execute(_add_counts(self._dialect), list(rows))

    async def touch_links(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Record each pair as seen at its ``last_seen`` (and first seen then, when new).
        ``rows``: per_subject, per_key, counted_subject, counted_key, first_seen, last_seen,
        sorted by key. A pair already seen at that time or later is left alone (no new row
        version, which a touch per payment would otherwise write)."""
        if rows:
            await self.session.execute(_touch_links(self._dialect), list(rows))

    async def purge_counters(self, resolution: Resolution, before: dt.datetime,
                             limit: int) -> int:  # fmt: skip
        """Delete up to ``limit`` buckets of ``resolution`` that start before ``before``;
        how many."""
        c = RiskCounter
        pk = (c.subject, c.key, c.measure, c.resolution, c.bucket_start)
        old = (
            sa.select(*pk)
            .where(c.resolution == resolution.value, c.bucket_start < before)
            .limit(limit)
        )
        result = await self.session.execute(sa.delete(c).where(sa.tuple_(*pk).in_(old)))
        return int(getattr(result, "rowcount", 0) or 0)

    async def purge_links(self, before: dt.datetime, limit: int) -> int:
        """Delete up to ``limit`` links last seen before ``before``; how many."""
        link = RiskLink
        pk = (link.per_subject, link.per_key, link.counted_subject, link.counted_key)
        old = sa.select(*pk).where(link.last_seen < before).limit(limit)
        result = await self.session.execute(sa.delete(link).where(sa.tuple_(*pk).in_(old)))
        return int(getattr(result, "rowcount", 0) or 0)

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
        subjects = tuple(sorted(keys))
        stmt = _window_sums(subjects, tuple((w.name, w.resolution) for w in windows))
        params = _window_params(keys, subjects, measures, windows, at)
        out: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
        for row in await self.session.execute(stmt, params):
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
        ordered = sorted(pairs)
        stmt = _distinct_counts(tuple((per, counted) for per, _, counted in ordered),
                                len(windows))  # fmt: skip
        out: dict[tuple[str, str], dict[str, int]] = {}
        for row in await self.session.execute(stmt, _link_params(ordered, windows)):
            out[(row[0], row[1])] = {name: int(row[2 + n] or 0) for n, name in enumerate(windows)}
        return out

    async def both(
        self, keys: Mapping[str, str], measures: Collection[str], windows: Sequence[Window],
        at: dt.datetime, pairs: Collection[tuple[str, str, str]],
        link_windows: Mapping[str, dt.datetime],
    ) -> tuple[dict[tuple[str, str], dict[str, tuple[int, int]]],
               dict[tuple[str, str], dict[str, int]]]:  # fmt: skip
        """:meth:`window_sums` and :meth:`distinct_counts` in one statement (``UNION ALL``):
        one round trip where a screening reads both."""
        subjects = tuple(sorted(keys))
        ordered = sorted(pairs)
        shape = tuple((w.name, w.resolution) for w in windows)
        link_shape = tuple((per, counted) for per, _, counted in ordered)
        stmt = _both(subjects, shape, link_shape, len(link_windows))
        params = _window_params(keys, subjects, measures, windows, at)
        params |= _link_params(ordered, link_windows)
        sums: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
        counts: dict[tuple[str, str], dict[str, int]] = {}
        width = 2 * len(windows)
        for row in await self.session.execute(stmt, params):
            if row[0] == "v":
                sums[(row[1], row[2])] = {
                    window.name: (int(row[3 + 2 * n] or 0), int(row[4 + 2 * n] or 0))
                    for n, window in enumerate(windows)
                }  # fmt: skip
            else:
                counts[(row[1], row[2])] = {name: int(row[3 + width + n] or 0)
                                            for n, name in enumerate(link_windows)}  # fmt: skip
        return sums, counts


def _window_params(keys: Mapping[str, str], subjects: Sequence[str], measures: Collection[str],
                   windows: Sequence[Window], at: dt.datetime) -> dict[str, Any]:  # fmt: skip
    oldest: dict[Resolution, dt.datetime] = {}
    for window in windows:
        oldest[window.resolution] = min(oldest.get(window.resolution, at), window.start)
    params: dict[str, Any] = {"at": at, "measures": sorted(measures)}
    params |= {f"key_{n}": keys[subject] for n, subject in enumerate(subjects)}
    params |= {f"start_{n}": window.start for n, window in enumerate(windows)}
    params |= {f"oldest_{resolution.value}": start for resolution, start in oldest.items()}
    return params


def _link_params(ordered: Sequence[tuple[str, str, str]],
                 windows: Mapping[str, dt.datetime]) -> dict[str, Any]:  # fmt: skip
    params: dict[str, Any] = {"l_oldest": min(windows.values())}
    params |= {f"l_key_{n}": key for n, (_, key, _) in enumerate(ordered)}
    params |= {f"l_start_{n}": start for n, start in enumerate(windows.values())}
    return params


# The reads are built once per shape (which subjects, which windows) with their values as
# parameters: building a query of a few dozen conditions cost more than running it.


@functools.lru_cache(maxsize=1024)
def _window_sums(subjects: tuple[str, ...], windows: tuple[tuple[str, Resolution], ...]) -> Any:
    c = RiskCounter
    columns: list[Any] = []
    for n, (_, resolution) in enumerate(windows):
        inside = sa.and_(
            c.resolution == resolution.value, c.bucket_start >= sa.bindparam(f"start_{n}")
        )
        columns.append(sa.func.sum(sa.case((inside, c.count), else_=0)).label(f"c{n}"))
        columns.append(sa.func.sum(sa.case((inside, c.total), else_=0)).label(f"t{n}"))
    # Per subject and resolution, only the buckets of the resolution's widest window: a range
    # scan of the primary key per subject, measure and resolution.
    resolutions = sorted({resolution for _, resolution in windows})
    ranges = [
        sa.and_(
            c.subject == subject,
            c.key == sa.bindparam(f"key_{n}"),
            c.resolution == resolution.value,
            c.bucket_start >= sa.bindparam(f"oldest_{resolution.value}"),
        )
        for n, subject in enumerate(subjects)
        for resolution in resolutions
    ]
    return (
        sa.select(c.subject, c.measure, *columns)
        .where(
            sa.or_(*ranges),
            c.measure.in_(sa.bindparam("measures", expanding=True)),
            c.bucket_start <= sa.bindparam("at"),
        )
        .group_by(c.subject, c.measure)
    )


@functools.lru_cache(maxsize=256)
def _distinct_counts(pairs: tuple[tuple[str, str], ...], windows: int) -> Any:
    columns, where = _link_parts(pairs, windows)
    link = RiskLink
    return (
        sa.select(link.per_subject, link.counted_subject, *columns)
        .where(where)
        .group_by(link.per_subject, link.counted_subject)
    )


def _link_parts(pairs: tuple[tuple[str, str], ...], windows: int) -> tuple[list[Any], Any]:
    link = RiskLink
    columns = [
        sa.func.sum(sa.case((link.last_seen >= sa.bindparam(f"l_start_{n}"), 1), else_=0))
        .label(f"w{n}")
        for n in range(windows)
    ]  # fmt: skip
    ranges = [
        sa.and_(
            link.per_subject == per,
            link.per_key == sa.bindparam(f"l_key_{n}"),
            link.counted_subject == counted,
            link.last_seen >= sa.bindparam("l_oldest"),
        )
        for n, (per, counted) in enumerate(pairs)
    ]
    return columns, sa.or_(*ranges)


@functools.lru_cache(maxsize=256)
def _both(subjects: tuple[str, ...], windows: tuple[tuple[str, Resolution], ...],
          pairs: tuple[tuple[str, str], ...], link_windows: int) -> Any:  # fmt: skip
    """The counters' select and the links' side by side: a kind column ("v" or "l"), two
    names, the counters' 2 × windows sums, then the links' counts; each side's other columns
    are NULL."""
    sums = _window_sums(subjects, windows)
    columns, where = _link_parts(pairs, link_windows)
    nothing = sa.cast(sa.null(), sa.BigInteger)
    counters = sa.select(sa.literal("v").label("kind"), *sums.selected_columns,
                         *[nothing.label(f"n{n}") for n in range(link_windows)])  # fmt: skip
    counters = counters.where(sums.whereclause)
    counters = counters.group_by(RiskCounter.subject, RiskCounter.measure)
    link = RiskLink
    links = sa.select(
        sa.literal("l").label("kind"),
        link.per_subject,
        link.counted_subject,
        *[nothing.label(f"m{n}") for n in range(2 * len(windows))],
        *columns,
    ).where(where)
    links = links.group_by(link.per_subject, link.counted_subject)
    return sa.union_all(counters, links)

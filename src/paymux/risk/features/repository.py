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
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit.db import insert_of
from paymux.risk.features.models import Resolution, RiskCounter, RiskLink
from paymux.risk.models import RiskCustomer


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

    async def read(
        self, keys: Mapping[str, str], measures: Collection[str], windows: Sequence[Window],
        at: dt.datetime, pairs: Collection[tuple[str, str, str]],
        link_windows: Mapping[str, dt.datetime], customer: CustomerRef | None = None,
    ) -> Reads:  # fmt: skip
        """:meth:`window_sums`, :meth:`distinct_counts` and the customer's first sight and
        first payment, in one statement (``UNION ALL`` of the parts asked for): a screening's
        features in one round trip."""
        subjects = tuple(sorted(keys)) if windows else ()
        ordered = sorted(pairs)
        shape = tuple((w.name, w.resolution) for w in windows) if subjects else ()
        link_shape = tuple((per, counted) for per, _, counted in ordered)
        nlinks = len(link_windows) if ordered else 0
        out = Reads()
        if not shape and not link_shape and customer is None:
            return out
        stmt = _union(subjects, shape, measures_given=bool(measures), pairs=link_shape,
                      link_windows=nlinks, customer=customer is not None,
                      dialect=self._dialect)  # fmt: skip
        params: dict[str, Any] = {}
        if shape:
            params |= _window_params(keys, subjects, measures, windows, at)
        if link_shape:
            params |= _link_params(ordered, link_windows)
        if customer is not None:
            params |= {"c_merchant": customer[0], "c_livemode": customer[1],
                       "c_ref": customer[2]}  # fmt: skip
        width = 2 * len(shape)
        for row in await self.session.execute(stmt, params):
            if row[0] == "v":
                out.sums[(row[1], row[2])] = {
                    name: (int(row[3 + 2 * n] or 0), int(row[4 + 2 * n] or 0))
                    for n, (name, _) in enumerate(shape)
                }  # fmt: skip
            elif row[0] == "l":
                out.counts[(row[1], row[2])] = {name: int(row[3 + width + n] or 0)
                                                for n, name in enumerate(link_windows)}  # fmt: skip
            else:
                seen, paid = row[3 + width + nlinks], row[4 + width + nlinks]
                out.customer = (_epoch(seen), _epoch(paid) if paid is not None else None)
        return out


CustomerRef = tuple[str, bool, str]
"""A customer as ``risk_customers`` keys it: merchant, mode, the merchant's customer id."""


@dataclass(slots=True)
class Reads:
    """What :meth:`FeatureRepository.read` found."""

    sums: dict[tuple[str, str], dict[str, tuple[int, int]]] = field(default_factory=dict)
    counts: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    customer: tuple[dt.datetime, dt.datetime | None] | None = None
    """(first seen, first paid), to the second; None: never seen."""


def _epoch(seconds: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC)


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


def _seconds(column: Any, dialect: str) -> Any:
    """A timestamp as whole seconds since the epoch (SQLite keeps it as naive UTC text)."""
    if dialect == "sqlite":
        return sa.cast(sa.func.strftime("%s", column), sa.BigInteger)
    return sa.cast(sa.func.extract("epoch", column), sa.BigInteger)


@functools.lru_cache(maxsize=256)
def _union(subjects: tuple[str, ...], windows: tuple[tuple[str, Resolution], ...], *,
           measures_given: bool, pairs: tuple[tuple[str, str], ...], link_windows: int,
           customer: bool, dialect: str) -> Any:  # fmt: skip
    """The parts asked for side by side: a kind column ("v" counters, "l" links, "c" the
    customer), two names, the counters' 2 × windows sums, the links' counts, the customer's
    two times; each part's other columns are NULL."""
    nothing = sa.cast(sa.null(), sa.BigInteger)
    text = sa.cast(sa.null(), sa.String)

    def pad(n: int, tag: str) -> list[Any]:
        return [nothing.label(f"{tag}{k}") for k in range(n)]

    width = 2 * len(windows)
    parts: list[Any] = []
    if windows and measures_given:
        sums = _window_sums(subjects, windows)
        parts.append(
            sa.select(sa.literal("v").label("kind"), *sums.selected_columns,
                      *pad(link_windows, "n"), *pad(2 if customer else 0, "q"))
            .where(sums.whereclause).group_by(RiskCounter.subject, RiskCounter.measure)
        )  # fmt: skip
    if pairs:
        columns, where = _link_parts(pairs, link_windows)
        link = RiskLink
        parts.append(
            sa.select(sa.literal("l").label("kind"), link.per_subject, link.counted_subject,
                      *pad(width, "m"), *columns, *pad(2 if customer else 0, "r"))
            .where(where).group_by(link.per_subject, link.counted_subject)
        )  # fmt: skip
    if customer:
        c = RiskCustomer
        parts.append(
            sa.select(sa.literal("c").label("kind"), text.label("a"), text.label("b"),
                      *pad(width, "s"), *pad(link_windows, "t"),
                      _seconds(c.first_seen_at, dialect), _seconds(c.first_paid_at, dialect))
            .where(c.merchant_id == sa.bindparam("c_merchant"),
                   c.livemode == sa.bindparam("c_livemode"),
                   c.customer_ref == sa.bindparam("c_ref"))
        )  # fmt: skip
    return parts[0] if len(parts) == 1 else sa.union_all(*parts)

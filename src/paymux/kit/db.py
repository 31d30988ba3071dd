"""Database plumbing: engine, sessions, declarative base, column types, claiming due rows.

Services take an ``AsyncSession`` and never commit; callers own the transaction
(:func:`Database.transaction` to write, :func:`Database.read` to only read). On SQLite every
write transaction starts with ``BEGIN IMMEDIATE`` so writers are serialised (SQLite has no row
locks) and the same service code is correct on both databases; within a process they also queue
on an asyncio lock, so they wait in order on the event loop rather than in SQLite's sleeping
busy handler (which starves under load). Reads use a separate engine with plain deferred
transactions: in WAL mode they never wait for a writer. On PostgreSQL guarded updates and
``FOR UPDATE SKIP LOCKED`` do that work, and both contexts share one engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, InstrumentedAttribute

from paymux.kit import clock

log = structlog.get_logger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = clock.aware(value).astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return clock.aware(value)


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def insert_of(dialect: str) -> Any:
    """The dialect's ``insert``, which knows ``ON CONFLICT`` (both dialects have it)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def create_engine(
    url: str, *, pool_size: int = 10, echo: bool = False, sqlite_immediate: bool = True
) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine, immediate=sqlite_immediate)
        return engine
    engine = create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800
    )
    _drop_closed_connections(engine)
    return engine


def _drop_closed_connections(engine: AsyncEngine) -> None:
    """Replace a pooled connection the server has closed (restart, ``idle_session_timeout``,
    ``pg_terminate_backend``) before it is handed out.

    This is what ``pool_pre_ping`` was for, without its cost: on asyncpg a pre-ping is three
    round trips (``BEGIN; ; ROLLBACK``) on every checkout — more than a ledger transfer's own
    statements. asyncpg reads an idle connection's socket on the event loop, so a connection
    the server ended is already marked closed when it is checked out; raising
    ``DisconnectionError`` makes the pool reconnect it. A connection that dies silently (no
    FIN, e.g. behind a dropped NAT entry) fails its first statement instead, and the pool then
    drops every connection older than it; ``pool_recycle`` keeps pooled connections younger
    than such middleboxes' idle timeouts.
    """

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        is_closed = getattr(driver, "is_closed", None)
        if is_closed is not None and is_closed():
            raise sa.exc.DisconnectionError("the server closed this pooled connection")


def _configure_sqlite(engine: AsyncEngine, *, immediate: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN IMMEDIATE is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


Later = Callable[["Database"], Awaitable[None]]
_AFTER_COMMIT = "paymux.after_commit"
_AFTER_ROLLBACK = "paymux.after_rollback"


def after_commit(session: AsyncSession, work: Later) -> None:
    """Run ``work`` once ``session``'s transaction has committed (never if it rolls back),
    with the :class:`Database`: it opens what it needs — :meth:`Database.statement` for
    counters that are single statements (no BEGIN and COMMIT on PostgreSQL), a transaction for
    anything more. For counters every request bumps — routing statistics — whose rows would
    otherwise stay locked, and so queue every other request, until the caller's commit. Never
    for money or state: a crash between the two commits loses the work."""
    session.info.setdefault(_AFTER_COMMIT, []).append(work)


def after_rollback(session: AsyncSession, work: Later) -> None:
    """Run ``work`` once ``session``'s transaction has rolled back because an exception left
    it (never if it commits), after its connection — and SQLite's write lock — is released.
    For the record of a request that was refused *because of* what the transaction found (a
    risk block: nothing it would have created may stay, but the refusal is kept)."""
    session.info.setdefault(_AFTER_ROLLBACK, []).append(work)


class Database:
    """Engine + session factory. One per process."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.engine = create_engine(url, pool_size=pool_size, echo=echo)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock: asyncio.Lock | None = None
        # PostgreSQL reads outside a transaction: READ COMMITTED gives every statement its
        # own snapshot inside one anyway, so a read session loses nothing and saves the BEGIN
        # and ROLLBACK round trips (an idle worker's poll, a notification's account lookup).
        self.read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        if self.is_sqlite:
            self._write_lock = asyncio.Lock()
            self.read_engine = create_engine(url, echo=echo, sqlite_immediate=False)
        self._read_sessionmaker = async_sessionmaker(self.read_engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error.

        Never open one inside another in the same task: on SQLite that waits for itself.
        Work handed to :func:`after_commit` runs once it has committed.
        """
        undone: Sequence[Later] = ()
        try:
            async with self._write_lock or contextlib.nullcontext(), self.sessionmaker() as session:
                try:
                    async with session.begin():
                        yield session
                except BaseException:
                    undone = session.info.pop(_AFTER_ROLLBACK, ())
                    raise
                later = session.info.pop(_AFTER_COMMIT, ())
        finally:
            if undone:
                await self._run_later(undone)
        if later:
            await self._run_later(later)

    async def _run_later(self, work: Sequence[Later]) -> None:
        for item in work:
            try:
                await item(self)
            except Exception:  # counters only (see after_commit): never fail what has committed
                log.exception("after_commit_failed")

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[AsyncSession]:
        """A session for one write statement, atomic by itself: on PostgreSQL it runs without
        BEGIN and COMMIT around it (two round trips saved); on SQLite it is a transaction, so a
        repository may write there in several statements what PostgreSQL writes in one. Never
        for two statements that must commit together — use :meth:`transaction`. Work handed
        to :func:`after_commit` runs after it."""
        if self._write_lock is not None:
            async with self.transaction() as session:
                yield session
            return
        async with self._read_sessionmaker() as session:
            yield session
            later = session.info.pop(_AFTER_COMMIT, ())  # each statement has committed
        if later:
            await self._run_later(later)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reading only (its transaction is rolled back at the end)."""
        async with self._read_sessionmaker() as session:
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.is_sqlite:  # its own engine (PostgreSQL's shares the pool)
            await self.read_engine.dispose()


M = TypeVar("M", bound=Base)


@dataclass(frozen=True)
class Due:
    """When a queue-like job has work: rows whose ``column`` time has come (and ``where``)."""

    column: InstrumentedAttribute[Any]
    where: tuple[sa.ColumnElement[bool], ...] = ()

    def condition(self, now: Any) -> sa.ColumnElement[bool]:
        return sa.and_(self.column.is_not(None), self.column <= now, *self.where)


class DueCheck:
    """Which of some jobs have a row due, in one plain read: an idle worker polls with this,
    taking no write lock (SQLite) or row locks (PostgreSQL) and one round trip for all jobs.
    The statement is built once (the time is its parameter): a poll costs its execution only."""

    def __init__(self, probes: Mapping[str, Due]) -> None:
        now: sa.BindParameter[dt.datetime] = sa.bindparam("now")
        self.key = tuple((name, id(due)) for name, due in probes.items())
        self.names = tuple(probes)
        self._stmt = sa.select(
            *(sa.exists().where(due.condition(now)).label(name) for name, due in probes.items())
        )

    async def __call__(self, db: Database) -> set[str]:
        if not self.names:
            return set()
        async with db.read() as session:
            row = (await session.execute(self._stmt, {"now": clock.now()})).one()
        return {name for name, flag in zip(self.names, row, strict=True) if flag}


def claim_statement(model: type[M], due: Due, *, limit: int, lease_seconds: float) -> sa.Update:
    """:func:`claim_due`'s ``UPDATE`` without its ``RETURNING``, for a caller that reads more
    with the claim in the same statement (its rows as a CTE)."""
    now = clock.now()
    pk = sa.inspect(model).primary_key[0]
    chosen = (
        sa.select(pk)
        .where(due.condition(now))
        .order_by(due.column)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    lease = now + dt.timedelta(seconds=lease_seconds)
    return sa.update(model).where(pk.in_(chosen)).values({due.column.key: lease})


async def claim_due(
    session: AsyncSession,
    model: type[M],
    due: Due,
    *,
    limit: int,
    lease_seconds: float,
) -> list[M]:
    """Claim up to ``limit`` rows whose ``due`` time has come, for this worker alone.

    Rows are locked with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite serialises writers) and
    their due time is pushed ``lease_seconds`` ahead before the caller's transaction commits, so
    other workers skip them and a crashed worker's claim simply becomes due again. One
    statement: ``UPDATE … WHERE pk IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING``.
    """
    pk = sa.inspect(model).primary_key[0]
    key = str(pk.key)
    stmt = claim_statement(model, due, limit=limit, lease_seconds=lease_seconds).returning(model)
    stmt = stmt.execution_options(synchronize_session=False, populate_existing=True)
    rows = list((await session.scalars(stmt)).all())
    return sorted(rows, key=lambda row: getattr(row, key))

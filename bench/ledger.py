"""Ledger transfers per second through the service layer on PostgreSQL, against pgbench.

Creates its own database on the server (dropped at the end, also on Ctrl-C or SIGTERM; or runs in
``--database``/``PAYMUX_BENCH_LEDGER_DATABASE``, one of yours, emptied first and last), migrates
it, opens ``--accounts`` credit-normal (merchant-style) accounts and funds them from one
``allow_negative`` clearing account. Then, for each concurrency level C, on a fresh checkpoint
and for ``--seconds`` each:

- ledger single: C asyncio workers, each committing one ``ledger.transfer`` per database
  transaction (a random pair of accounts, TPC-B-like, and a unique key);
- ledger batched: C workers, each committing one ``ledger.transfer_many`` of ``--batch``
  transfers per database transaction (it locks the batch's accounts once, in id order, so
  concurrent batches over the same accounts wait for each other rather than deadlock);
- ledger batched, disjoint: the same, but each worker moves money only among its own share of
  the accounts, so batches never wait for each other's row locks (the rate without contention);
- pgbench: its builtin TPC-B-like script (``-c C -j 2 -M prepared``) on the same database,
  initialised with ``pgbench -i -s --scale``.

Prints transfers/s, commits/s, latency per commit p50/p99, SQL statements per transfer, and the
CPU the client (this process, or pgbench) and the PostgreSQL server used in each phase, then the
ratios to pgbench and whether batched transfers reach the target (≥ 5× pgbench's TPC-B rate).
Finally checks the books: Σ debits = Σ credits, every transaction has two balanced entries, each
kept balance equals its entries, and every transfer counted here was recorded exactly once (exit
status 1 if not).

    python bench/ledger.py                                   # C = 8 and 16, 10 s per phase
    python bench/ledger.py --quick                           # smoke check
    python bench/ledger.py --concurrency 8 --batch 500 --accounts 10000 --seconds 20
    python bench/ledger.py --shape clearing                  # every transfer from one hot row
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from kit.measure import machine_busy, pct, postgres_cpu
from kit.pg import pgbench_init, pgbench_tpcb, read_pgbench_logs
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from paymux.kit import migrate
from paymux.kit.db import Database
from paymux.ledger import service as ledger
from paymux.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction, Side, TxStatus
from paymux.ledger.repository import LedgerRepository
from paymux.ledger.service import Transfer, credit, debit

DEFAULT_URL = os.environ.get(
    "PAYMUX_BENCH_PG_SERVER", "postgresql+asyncpg://postgres@127.0.0.1:5432"
)
DB_PREFIX = "paymux_bench_ledger_"
DATABASE = os.environ.get("PAYMUX_BENCH_LEDGER_DATABASE")
"""A database of your own to run in (emptied first and last) instead of a fresh one."""
REFUSED = {"postgres", "template0", "template1", "test"}  # never someone else's
TARGET = 5.0
FUNDING = 10**12  # per account: random transfers of 1–100 never hit the floor
RETRYABLE = {"40P01", "40001"}  # deadlock, serialization failure: retried, and counted


# ------------------------------------------------------------------ measurement
@dataclass
class Phase:
    name: str
    concurrency: int
    batch: int
    wall: float = 0.0
    transfers: int = 0
    commits: int = 0
    retries: int = 0
    statements: int = 0
    latencies: list[float] = field(default_factory=list)
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    machine_cpu: float = 0.0
    """All CPU time the machine spent (so what other processes took shows, e.g. a test run)."""

    @property
    def transfers_per_s(self) -> float:
        return self.transfers / self.wall if self.wall else 0.0

    @property
    def commits_per_s(self) -> float:
        return self.commits / self.wall if self.wall else 0.0


def figures(results: dict[int, dict[str, Phase]]) -> dict[str, dict[str, float]]:
    """The ``--json`` figures: per concurrency level and phase, throughput and latency."""
    return {
        f"{kind}@{c}": {"transfers_per_s": round(p.transfers_per_s, 1),
                        "commits_per_s": round(p.commits_per_s, 1),
                        "p50_ms": round(pct(p.latencies, 0.5) * 1000, 2),
                        "p99_ms": round(pct(p.latencies, 0.99) * 1000, 2)}
        for c, phases in results.items() for kind, p in phases.items()
    }  # fmt: skip


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def measured(phase: Phase, client: str) -> Iterator[None]:
    """Wall time and CPU of one phase; ``client`` is ``self`` (this process) or ``children``
    (pgbench, once it has been waited for)."""
    clock = time.process_time if client == "self" else children_cpu
    cpu0, pg0, all0, t0 = clock(), postgres_cpu(), machine_busy(), time.perf_counter()
    yield
    phase.wall = time.perf_counter() - t0
    phase.client_cpu, phase.server_cpu = clock() - cpu0, postgres_cpu() - pg0
    phase.machine_cpu = machine_busy() - all0


# ------------------------------------------------------------------ database lifecycle
def admin_dsn(url: URL, database: str = "postgres") -> str:
    return url.set(drivername="postgresql", database=database).render_as_string(hide_password=False)


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def create_database(url: URL, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn(url))
    try:
        # Leftovers of runs that were killed outright (their pid is gone); never anyone else's.
        for (stale,) in await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", DB_PREFIX + "%"
        ):
            pid = stale.removeprefix(DB_PREFIX)
            if pid.isdigit() and not alive(int(pid)):
                await conn.execute(f'DROP DATABASE IF EXISTS "{stale}" WITH (FORCE)')
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def empty_database(url: URL, name: str) -> None:
    """Create ``name`` if it does not exist, else drop everything in its public schema (the
    test fixtures reset a database the same way)."""
    conn = await asyncpg.connect(admin_dsn(url))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
            return
    finally:
        await conn.close()
    conn = await asyncpg.connect(admin_dsn(url, name))
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


async def drop_database(url: URL, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn(url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def checkpoint(url: URL, name: str, *, vacuum: bool = False) -> None:
    """Start each phase with no dirty buffers, so no phase pays for another's checkpoint;
    ``vacuum``: and the account rows' dead versions gone (each transfer updates two of 1,000
    rows, so a phase leaves ~20 dead versions per live one that autovacuum, on its one-minute
    round, has not reached). pgbench does the same for its updated tables before every run."""
    conn = await asyncpg.connect(admin_dsn(url, name))
    try:
        if vacuum:
            await conn.execute("VACUUM (ANALYZE) ledger_accounts")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def server_info(url: URL, name: str) -> str:
    conn = await asyncpg.connect(admin_dsn(url, name))
    try:
        version = await conn.fetchval("SHOW server_version")
        settings = [
            f"{s}={await conn.fetchval(f'SHOW {s}')}"
            for s in ("synchronous_commit", "fsync", "shared_buffers", "max_connections")
        ]
        return f"PostgreSQL {version} ({', '.join(settings)})"
    finally:
        await conn.close()


# ------------------------------------------------------------------ ledger
@dataclass
class Books:
    clearing: str
    merchants: list[str]


async def open_accounts(db: Database, n: int) -> Books:
    """The clearing account and ``n`` merchant accounts, each funded with :data:`FUNDING`."""
    async with db.transaction() as session:
        clearing = await ledger.open_account(
            session, owner_type="bench", owner_id="platform", purpose="clearing",
            currency="CNY", normal=Side.debit, allow_negative=True,
        )  # fmt: skip
    ids: list[str] = []
    for start in range(0, n, 200):
        async with db.transaction() as session:
            for i in range(start, min(n, start + 200)):
                account = await ledger.open_account(
                    session, owner_type="merchant", owner_id=f"m{i:06d}", purpose="balance",
                    currency="CNY", normal=Side.credit,
                )  # fmt: skip
                ids.append(account.id)
    for start in range(0, n, 500):
        async with db.transaction() as session:
            await ledger.transfer_many(session, [
                Transfer(f"fund-{account_id}",
                         [debit(clearing.id, FUNDING), credit(account_id, FUNDING)])
                for account_id in ids[start : start + 500]
            ])  # fmt: skip
    return Books(clearing.id, ids)


def sqlstate(exc: DBAPIError) -> str | None:
    orig: Any = exc.orig
    return getattr(orig, "sqlstate", None) or getattr(orig.__cause__, "sqlstate", None)


async def ledger_phase(
    db: Database, books: Books, *, name: str, concurrency: int, batch: int, seconds: float,
    disjoint: bool = False, shape: str = "pairs",
) -> Phase:  # fmt: skip
    phase = Phase(name, concurrency, batch)
    statements = [0]

    def count(*_: Any) -> None:
        statements[0] += 1

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    deadline = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        rng = random.Random(f"{name}-{concurrency}-{batch}-{n}")
        own = books.merchants[n::concurrency] if disjoint else books.merchants
        seq = 0
        while time.perf_counter() < deadline:
            if shape == "clearing":  # every transfer moves money from the one clearing account
                moves = [
                    (books.clearing, rng.choice(own), rng.randint(1, 100)) for _ in range(batch)
                ]
            else:
                moves = [(*rng.sample(own, 2), rng.randint(1, 100)) for _ in range(batch)]
            started = time.perf_counter()
            transfers = []
            for src, dst, amount in moves:
                seq += 1
                transfers.append(Transfer(f"{name}-c{concurrency}-k{batch}-w{n}-{seq}",
                                          [debit(src, amount), credit(dst, amount)]))  # fmt: skip
            try:
                async with db.transaction() as session:
                    if batch > 1:
                        await ledger.transfer_many(session, transfers)
                    else:
                        await ledger.transfer(session, key=transfers[0].key,
                                              legs=transfers[0].legs)  # fmt: skip
            except DBAPIError as exc:
                if sqlstate(exc) not in RETRYABLE:
                    raise
                phase.retries += 1
                continue
            phase.latencies.append(time.perf_counter() - started)
            phase.transfers += batch
            phase.commits += 1

    try:
        with measured(phase, "self"):
            await asyncio.gather(*[worker(n) for n in range(concurrency)])
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    phase.statements = statements[0]
    return phase


async def verify(db: Database, books: Books, expected_transactions: int) -> list[str]:
    """Problems found in the books (none if they are right)."""
    problems = []
    debit_amount = sa.case((LedgerEntry.side == Side.debit, LedgerEntry.amount), else_=0)
    credit_amount = sa.case((LedgerEntry.side == Side.credit, LedgerEntry.amount), else_=0)
    posted = LedgerTransaction.status == TxStatus.posted
    async with db.read() as session:
        totals = await LedgerRepository(session).totals_by_currency()
        for currency, (debits, credits) in totals.items():
            if debits != credits:
                problems.append(f"{currency}: Σ debits {debits} ≠ Σ credits {credits}")
        transactions = await session.scalar(
            sa.select(sa.func.count()).select_from(LedgerTransaction).where(posted)
        )
        if transactions != expected_transactions:
            problems.append(f"{transactions} transactions recorded, {expected_transactions} made")
        lopsided = await session.scalar(
            sa.select(sa.func.count()).select_from(
                sa.select(LedgerEntry.transaction_id)
                .group_by(LedgerEntry.transaction_id)
                .having(sa.or_(sa.func.count() != 2,
                               sa.func.sum(debit_amount) != sa.func.sum(credit_amount)))
                .subquery()
            )
        )  # fmt: skip
        if lopsided:
            problems.append(f"{lopsided} transactions without two balanced entries")
        net = dict(
            (
                await session.execute(
                    sa.select(LedgerEntry.account_id, sa.func.sum(debit_amount - credit_amount))
                    .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
                    .where(posted)
                    .group_by(LedgerEntry.account_id)
                )
            ).all()
        )
        accounts = (await session.execute(sa.select(LedgerAccount))).scalars().all()
        wrong = [
            a.id
            for a in accounts
            if a.balance != (net.get(a.id, 0) * (1 if a.normal == Side.debit else -1))
        ]
        if wrong:
            problems.append(
                f"{len(wrong)} kept balances differ from their entries, e.g. {wrong[0]}"
            )
        # What the platform holds (clearing, debit-normal) is what it owes the merchants.
        owed = sum(a.balance for a in accounts if a.id != books.clearing)
        held = next(a.balance for a in accounts if a.id == books.clearing)
        if owed != held:
            problems.append(f"merchants are owed {owed}, the clearing account holds {held}")
    return problems


# ------------------------------------------------------------------ pgbench
async def pgbench_phase(url: URL, name: str, *, concurrency: int, seconds: float) -> Phase:
    phase = Phase("pgbench tpcb-like", concurrency, 1)
    with tempfile.TemporaryDirectory(prefix="paymux-pgbench-") as tmp:
        with measured(phase, "children"):
            done = await pgbench_tpcb(url, name, clients=concurrency, seconds=seconds,
                                      log_prefix=f"{tmp}/log")  # fmt: skip
        phase.latencies = read_pgbench_logs(Path(tmp))
    phase.commits = phase.transfers = done.transactions
    # pgbench's own rate leaves out connection set-up; scale the wall time to match it.
    phase.wall = phase.commits / done.tps
    return phase


# ------------------------------------------------------------------ report
HEADER = (
    f"{'phase':<18}{'C':>4}{'K':>5}{'transfers/s':>13}{'commits/s':>11}{'p50 ms':>9}"
    f"{'p99 ms':>9}{'SQL/tr':>8}{'retries':>9}  {'client CPU':>20}  {'postgres CPU':>20}"
    f"{'other':>7}"
)


LEGEND = """
C: concurrent workers (pgbench clients); K: transfers per database transaction. disjoint: batched,
each worker among its own accounts. SQL/tr: statements sent per transfer, besides BEGIN and COMMIT
per transaction. CPU: % of one core, ms per transfer;
other: CPU of every other process on the machine (a busy neighbour makes the rates unreliable).
"""


def row(p: Phase) -> str:
    def cpu(seconds: float) -> str:
        share = 100 * seconds / p.wall if p.wall else 0.0
        per = 1000 * seconds / p.transfers if p.transfers else 0.0
        return f"{share:4.0f}% ({per:5.2f} ms/tr)"

    sql = f"{p.statements / p.transfers:.2f}" if p.statements and p.transfers else "-"
    return (
        f"{p.name:<18}{p.concurrency:>4}{p.batch:>5}{p.transfers_per_s:>13,.0f}"
        f"{p.commits_per_s:>11,.0f}{pct(p.latencies, 0.5) * 1000:>9.1f}"
        f"{pct(p.latencies, 0.99) * 1000:>9.1f}{sql:>8}{p.retries:>9}"
        f"  {cpu(p.client_cpu):>20}  {cpu(p.server_cpu):>20}"
        f"{max(0.0, p.machine_cpu - p.client_cpu - p.server_cpu) / p.wall:>7.0%}"
    )


def limit(p: Phase, cores: int) -> str:
    """What most likely bounds the phase's rate, from where the CPU went."""
    client, server, busy = (t / p.wall for t in (p.client_cpu, p.server_cpu, p.machine_cpu))
    if client >= 0.85:
        return f"the client's one core ({client:.0%} busy; PostgreSQL {server:.0%})"
    if busy >= 0.85 * cores:
        other = busy - client - server
        return (f"the machine's {cores} cores ({busy:.0%} of one core busy: client "
                f"{client:.0%}, PostgreSQL {server:.0%}, other processes {other:.0%})")  # fmt: skip
    return (f"waiting (row locks, commit flushes, round trips): client {client:.0%}, "
            f"PostgreSQL {server:.0%} of one core")  # fmt: skip


def summary(results: dict[int, dict[str, Phase]], cores: int) -> list[str]:
    lines = []
    for c, by in results.items():
        pg = by["pgbench"].transfers_per_s
        ratio = {kind: p.transfers_per_s / pg for kind, p in by.items()}
        lines += [
            f"C={c}: ledger single {by['single'].transfers_per_s:,.0f} tps, batched "
            f"{by['batched'].transfers_per_s:,.0f} transfers/s (K={by['batched'].batch}; "
            f"disjoint {by['disjoint'].transfers_per_s:,.0f}), pgbench {pg:,.0f} tps",
            f"      batched/pgbench {ratio['batched']:.2f}× (disjoint {ratio['disjoint']:.2f}×), "
            f"single/pgbench {ratio['single']:.2f}×; target batched ≥ {TARGET:g}× pgbench: "
            + ("met" if ratio["batched"] >= TARGET else "NOT met"),
        ]
        lines += [f"      {kind} limited by {limit(p, cores)}" for kind, p in by.items()]
    return lines


# ------------------------------------------------------------------ main
async def bench(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    # `timeout` or kill: unwind like Ctrl-C does, through the finally that drops the database.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel, "SIGTERM")
    server = make_url(args.url)
    name = args.database or f"{DB_PREFIX}{os.getpid()}"
    url = server.set(database=name)
    cores = os.cpu_count() or 1
    await (empty_database if args.database else create_database)(server, name)
    db: Database | None = None
    try:
        t0 = time.perf_counter()
        await migrate.upgrade(url.render_as_string(hide_password=False))
        db = Database(url.render_as_string(hide_password=False), pool_size=max(args.concurrency))
        books = await open_accounts(db, args.accounts)
        made = len(books.merchants)
        print(f"paymux ledger benchmark on {cores} cores, {await server_info(server, name)}")
        print(f"database {name}: {args.accounts} merchant accounts opened and funded in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
        t0 = time.perf_counter()
        await pgbench_init(server, name, scale=args.scale)
        print(f"pgbench -i -s {args.scale}: {time.perf_counter() - t0:.1f} s", flush=True)
        # Warm up every pooled connection (prepared statements) and the ORM's caches.
        warm = max(0.5, min(2.0, args.seconds / 5))
        for batch in (1, args.batch):
            p = await ledger_phase(db, books, name="warmup", concurrency=max(args.concurrency),
                                   batch=batch, seconds=warm / 2)  # fmt: skip
            made += p.transfers
        print(f"\n{args.seconds:g} s per phase\n{HEADER}", flush=True)
        results: dict[int, dict[str, Phase]] = {}
        for c in args.concurrency:
            results[c] = {}
            for kind, batch, disjoint in (("single", 1, False), ("batched", args.batch, False),
                                          ("disjoint", args.batch, True)):  # fmt: skip
                await checkpoint(server, name, vacuum=True)
                p = await ledger_phase(
                    db, books, name=f"ledger {kind}", concurrency=c, batch=batch,
                    seconds=args.seconds, disjoint=disjoint, shape=args.shape,
                )  # fmt: skip
                made += p.transfers
                results[c][kind] = p
                print(row(p), flush=True)
            await checkpoint(server, name)
            p = await pgbench_phase(server, name, concurrency=c, seconds=args.seconds)
            results[c]["pgbench"] = p
            print(row(p), flush=True)
        print(LEGEND)
        print("\n".join(summary(results, cores)))
        problems = await verify(db, books, made)
        print(f"\nbooks: {made:,} transfers, " + ("; ".join(problems) if problems else
              "Σ debits = Σ credits, every transaction two balanced entries, every kept "
              "balance equals its entries, every transfer recorded once: correct"))  # fmt: skip
        if args.json:
            # The headline figures are the first concurrency level's (C=8 by default).
            by = results[args.concurrency[0]]
            pg = by["pgbench"].transfers_per_s
            print(json.dumps({"benchmark": "ledger", "cores": cores, "transfers": made,
                              "correct": not problems, "concurrency": args.concurrency[0],
                              "batched_per_s": round(by["batched"].transfers_per_s, 1),
                              "single_tps": round(by["single"].transfers_per_s, 1),
                              "pgbench_tps": round(pg, 1),
                              "batched_vs_pgbench": round(by["batched"].transfers_per_s / pg, 2),
                              "single_vs_pgbench": round(by["single"].transfers_per_s / pg, 2),
                              "target_met": by["batched"].transfers_per_s >= TARGET * pg,
                              "phases": figures(results)}))  # fmt: skip
        return 1 if problems else 0
    finally:
        if db is not None:
            await db.dispose()
        await (empty_database if args.database else drop_database)(server, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="PostgreSQL server (no database)")
    parser.add_argument(
        "--database", default=DATABASE,
        help="run in this database of yours, emptied (public schema dropped) first and last, "
        "instead of a fresh one dropped at the end (env PAYMUX_BENCH_LEDGER_DATABASE)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, help="per phase (default 10)")
    parser.add_argument("--concurrency", type=int, nargs="+", help="levels (default 8 16)")
    parser.add_argument("--batch", type=int, help="transfers per batched commit (default 100)")
    parser.add_argument("--accounts", type=int, help="merchant accounts (default 1000)")
    parser.add_argument(
        "--shape", choices=["pairs", "clearing"], default="pairs",
        help="pairs: random pairs of merchant accounts (TPC-B-like); clearing: every transfer "
        "from the one clearing account to a random merchant (a hot row)",
    )  # fmt: skip
    parser.add_argument("--scale", type=int, help="pgbench scale (default 10)")
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    args = parser.parse_args()
    if args.database in REFUSED:
        parser.error(f"--database {args.database}: not a database to empty")
    if shutil.which("pgbench") is None:
        parser.error("pgbench is not on PATH (Debian: apt install postgresql-client)")
    quick = {"seconds": 2.0, "concurrency": [8], "batch": 20, "accounts": 200, "scale": 1}
    full = {"seconds": 10.0, "concurrency": [8, 16], "batch": 100, "accounts": 1000, "scale": 10}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:
        import uvloop  # as uvicorn runs the API processes

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    try:
        with runner:
            code = runner.run(bench(args))
    except (asyncio.CancelledError, KeyboardInterrupt) as exc:
        print("interrupted; the benchmark database was "
              + ("emptied" if args.database else "dropped"), file=sys.stderr)  # fmt: skip
        code = 143 if "SIGTERM" in exc.args else 130
    sys.exit(code)


if __name__ == "__main__":
    main()

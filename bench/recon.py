"""Reconciliation of one bill day at scale: a generated WeChat Pay ALL trade bill of ``--rows``
payments (the format ``write_bill`` renders) against as many local payments, with known
injected breaks, on PostgreSQL and on SQLite.

Setup (not timed): a fresh database (migrated), a merchant, an app, a wechatpay channel account
(sandbox credentials) with ``grace_days=0``; the payments of the bill day bulk-loaded with their
attempts, funds rows and ledger postings as ``funds.service.on_payment_succeeded`` makes them
(PostgreSQL COPY, SQLite executemany); the bill written streaming to a file with breaks injected
(amount over/under, fee, channel-only, local-only, duplicate rows, unknown refunds).

Timed: ``recon.service.run(..., upload=Upload(path, name))`` in a child process per database,
so its peak RSS is the run's alone; then the run's breaks (class, kind, key) are checked against
the injected set, the verdict must be ``breaks`` and the books bridge's residual 0.

    python bench/recon.py --json                      # 1,000,000 rows, both databases
    python bench/recon.py --rows 2000 --only sqlite   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import hashlib
import json
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.pg import reachable

from paymux.channels.wechatpay import bill
from paymux.ledger.models import Side, TxStatus
from paymux.ledger.posting import Leg, fingerprint

PG_URL = os.environ.get(
    "PAYMUX_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/paymux_bench_recon"
)
FEE_BPS = 60
CURRENCY = "CNY"
TARGET_SECONDS, STRETCH_PG_SECONDS, TARGET_RSS_MB = 30.0, 10.0, 300.0
_B32 = "0123456789abcdefghjkmnpqrstvwxyz"


def _b32(value: int, length: int) -> str:
    return "".join(_B32[(value >> (5 * (length - 1 - i))) & 31] for i in range(length))


# ------------------------------------------------------------------ the data set
@dataclass
class Plan:
    """Which payments exist, which the bill shows how, and the breaks that makes."""

    rows: int
    day: dt.date
    per_class: int
    head: str = field(default_factory=lambda: _b32(int(time.time() * 1000), 10))
    over: set[int] = field(default_factory=set)
    under: set[int] = field(default_factory=set)
    fee: set[int] = field(default_factory=set)
    local_only: set[int] = field(default_factory=set)
    duplicate: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        picked = random.Random(13).sample(range(self.rows), 5 * self.per_class)
        k = self.per_class
        self.over, self.under, self.fee, self.local_only, self.duplicate = (
            set(picked[i * k : (i + 1) * k]) for i in range(5)
        )
        start = dt.datetime.combine(self.day, dt.time(0), tzinfo=bill.CHINA)
        self.start = start.astimezone(dt.UTC)
        self.trade_prefix = f"42000{self.day:%Y%m%d}"

    # Deterministic ids in paymux's format (prefix + 10 time digits + 16 more), from the index.
    def payment_id(self, i: int) -> str:
        return f"pay_{self.head}{i:016d}"

    def attempt_id(self, i: int) -> str:
        return f"att_{self.head}{i:016d}"

    def trade_no(self, i: int) -> str:
        return f"{self.trade_prefix}{i:015d}"

    def amount(self, i: int) -> int:
        return 100 + (i * 7919) % 99_901

    def paid_at(self, i: int) -> dt.datetime:
        return self.start + dt.timedelta(microseconds=i * (86_399_000_000 // self.rows))

    def injected(self) -> set[tuple[str, str, str]]:
        """(class, kind, key) of every break the bill and the books are made to have."""
        out = set()
        classes = (("amount_over", self.over), ("amount_under", self.under),
                   ("fee_mismatch", self.fee), ("local_only", self.local_only))  # fmt: skip
        for klass, picked in classes:
            out |= {(klass, "payment", self.attempt_id(i)) for i in picked}
        out |= {("duplicate", "duplicate_payment", self.attempt_id(i)) for i in self.duplicate}
        out |= {("channel_only", "payment", self.unknown_attempt(n))
                for n in range(self.per_class)}  # fmt: skip
        out |= {("refund_channel_only", "refund", self.unknown_refund(n))
                for n in range(self.per_class)}  # fmt: skip
        return out

    def unknown_attempt(self, n: int) -> str:
        return f"att_zzzzzzzzzz{n:016d}"

    def unknown_refund(self, n: int) -> str:
        return f"re_zzzzzzzzzz{n:016d}"


@functools.cache
def fee(amount: int) -> int:
    return bill.fee_of(amount, FEE_BPS)


# ------------------------------------------------------------------ the bill
def bill_rows(plan: Plan, mchid: str, appid: str) -> Iterator[dict[str, str]]:
    rate = bill.rate_text(FEE_BPS)

    def row(at: dt.datetime, trade_no: str, out_trade_no: str, amount: int, charged: int,
            subject: str = "bench") -> dict[str, str]:  # fmt: skip
        text = bill.yuan(amount)
        return {
            "交易时间": at.astimezone(bill.CHINA).strftime(bill.TIME_FORMAT), "公众账号ID": appid,
            "商户号": mchid, "特约商户号": "0", "微信订单号": trade_no, "商户订单号": out_trade_no,
            "用户标识": "oBench", "交易类型": "NATIVE", "交易状态": bill.STATE_PAID,
            "付款银行": "OTHERS", "货币种类": CURRENCY, "应结订单金额": text, "代金券金额": "0.00",
            "微信退款单号": "0", "商户退款单号": "0", "退款金额": "0.00", "充值券退款金额": "0.00",
            "商品名称": subject, "商户数据包": "", "手续费": bill.fee_text(charged), "费率": rate,
            "订单金额": text, "申请退款金额": "0.00",
        }  # fmt: skip

    for i in range(plan.rows):
        if i in plan.local_only:
            continue
        amount = plan.amount(i)
        charged = fee(amount)
        if i in plan.over:
            amount += 1 + i % 50
        elif i in plan.under:
            amount -= 1 + i % 50
        elif i in plan.fee:
            charged += 1
        line = row(plan.paid_at(i), plan.trade_no(i), plan.attempt_id(i), amount, charged)
        yield line
        if i in plan.duplicate:
            yield line
    noon = plan.start + dt.timedelta(hours=12)
    for n in range(plan.per_class):
        amount = 500 + n
        yield row(noon, f"42009{plan.day:%Y%m%d}{n:015d}", plan.unknown_attempt(n), amount,
                  fee(amount))  # fmt: skip
    for n in range(plan.per_class):  # refunds we never asked for, of payments we have
        i = (n * 9973) % plan.rows
        refund = min(100, plan.amount(i))
        refunded = row(noon, plan.trade_no(i), plan.attempt_id(i), 0, -fee(refund))
        refunded.update({
            "交易状态": bill.STATE_REFUND, "微信退款单号": f"50300{plan.day:%Y%m%d}{n:015d}",
            "商户退款单号": plan.unknown_refund(n), "退款金额": bill.yuan(refund),
            "退款类型": "ORIGINAL", "退款状态": "SUCCESS", "订单金额": "0.00",
            "申请退款金额": bill.yuan(refund),
        })  # fmt: skip
        yield refunded


class _Hashing:
    def __init__(self, out: Any) -> None:
        self.out, self.sha1 = out, hashlib.sha1(usedforsecurity=False)

    def write(self, data: bytes) -> int:
        self.sha1.update(data)
        return int(self.out.write(data))


def write_bill_file(plan: Plan, path: Path, mchid: str, appid: str) -> str:
    """The bill as WeChat would serve it (uncompressed); its SHA1."""
    with path.open("wb") as handle:
        hashing = _Hashing(handle)
        bill.write_bill(bill_rows(plan, mchid, appid), hashing)  # type: ignore[arg-type]
    return hashing.sha1.hexdigest()


# ------------------------------------------------------------------ the books
@dataclass
class Accounts:
    clearing: str
    pending: str
    cost: str


@dataclass
class Tenant:
    merchant: str
    app: str
    account: str
    ledger: Accounts
    mchid: str
    appid: str


async def provision(url: str, archive: Path) -> Tenant:
    """Merchant, app, channel account (grace 0) and its three ledger accounts, through the
    services."""
    from paymux.channel_accounts import service as channels
    from paymux.channels.wechatpay.sandbox import Sandbox
    from paymux.ledger import chart
    from paymux.ledger.chart import Purpose
    from paymux.merchants import service as merchants
    from paymux.merchants.models import Mode
    from paymux.recon.models import ReconConfig

    rt = runtime(url, archive)
    try:
        creds = Sandbox().provision("http://127.0.0.1:9/sandbox/wechatpay")
        async with rt.db.transaction() as s:
            m = await merchants.create_merchant(s, name="bench recon")
            app = await merchants.create_app(s, merchant_id=m.id, name="bench")
            account = await channels.add_account(
                s, rt.vault, app_id=app.id, channel="wechatpay", mode=Mode.test,
                credentials=creds, fee_rate_bps=FEE_BPS, name="wechatpay bench",
            )  # fmt: skip
            s.add(ReconConfig(channel_account_id=account.id, grace_days=0))
            ledger = Accounts(
                await chart.clearing_id(s, account.id, CURRENCY),
                await chart.merchant_account_id(s, m.id, False, Purpose.pending, CURRENCY),
                await chart.platform_account_id(s, False, Purpose.channel_cost, CURRENCY),
            )
        return Tenant(m.id, app.id, account.id, ledger, creds["mchid"], creds["appid"])
    finally:
        await rt.aclose()


def runtime(url: str, archive: Path) -> Any:
    from paymux.config import Settings
    from paymux.runtime import Runtime

    settings = Settings(env="dev", database_url=url, recon_archive_dir=str(archive),
                        log_level="WARNING")  # fmt: skip
    return Runtime.build(settings)


Row = tuple[Any, ...]
PAYMENT_COLUMNS = ("id", "app_id", "merchant_id", "livemode", "out_trade_no", "amount", "currency",
                   "method", "status", "subject", "customer", "metadata", "channel",
                   "channel_account_id", "channel_trade_no", "current_attempt_id", "expires_at",
                   "paid_at", "amount_refunded", "created_at", "updated_at")  # fmt: skip
ATTEMPT_COLUMNS = ("id", "payment_id", "channel", "channel_account_id", "method", "amount",
                   "currency", "status", "channel_trade_no", "query_count", "created_at",
                   "updated_at")  # fmt: skip
FUNDS_COLUMNS = ("payment_id", "app_id", "merchant_id", "livemode", "currency",
                 "source_account_id", "gross", "channel_fee", "refunded", "refund_reserved",
                 "split_out", "escrow_state", "settle_due_at", "fee", "created_at",
                 "updated_at", "posting_id")  # fmt: skip
TX_COLUMNS = ("id", "key", "fingerprint", "status", "description", "metadata", "posted_at",
              "created_at")  # fmt: skip
ENTRY_COLUMNS = ("id", "transaction_id", "account_id", "side", "amount", "currency",
                 "created_at")  # fmt: skip


@dataclass
class Tables:
    """The rows of each table, made as they are written (``stamp`` renders a time per
    database)."""

    plan: Plan
    t: Tenant
    stamp: Callable[[dt.datetime], Any]
    json_empty: Any = "{}"
    sums: dict[str, int] = field(default_factory=lambda: {"amount": 0, "fee": 0, "n_fee": 0,
                                                          "n_net": 0})  # fmt: skip

    def payments(self) -> Iterator[Row]:
        p, t, stamp = self.plan, self.t, self.stamp
        for i in range(p.rows):
            at = stamp(p.paid_at(i))
            pid = p.payment_id(i)
            yield (pid, t.app, t.merchant, False, f"bench-{i}", p.amount(i), CURRENCY,
                   "wechat_native", "succeeded", "bench", self.json_empty, self.json_empty,
                   "wechatpay", t.account, p.trade_no(i), p.attempt_id(i), at, at, 0, at,
                   at)  # fmt: skip

    def attempts(self) -> Iterator[Row]:
        p, t, stamp = self.plan, self.t, self.stamp
        for i in range(p.rows):
            at = stamp(p.paid_at(i))
            yield (p.attempt_id(i), p.payment_id(i), "wechatpay", t.account, "wechat_native",
                   p.amount(i), CURRENCY, "succeeded", p.trade_no(i), 0, at, at)  # fmt: skip

    def funds(self) -> Iterator[Row]:
        p, t, stamp = self.plan, self.t, self.stamp
        for i in range(p.rows):
            at = stamp(p.paid_at(i))
            amount = p.amount(i)
            yield (p.payment_id(i), t.app, t.merchant, False, CURRENCY, t.ledger.clearing,
                   amount, fee(amount), 0, 0, 0, "none", at, 0, at, at,
                   f"ltx_{p.head}{i:016d}")  # the posting's id, as ledger() makes it  # fmt: skip

    def ledger(self) -> Iterator[tuple[Row, list[Row]]]:
        """Each payment's posting as ``on_payment_succeeded`` makes it: credit the merchant's
        pending account, debit channel cost by the fee, debit clearing by the rest."""
        p, acc, stamp, sums = self.plan, self.t.ledger, self.stamp, self.sums
        for i in range(p.rows):
            at = stamp(p.paid_at(i))
            pid, amount = p.payment_id(i), p.amount(i)
            charged = fee(amount)
            tx = f"ltx_{p.head}{i:016d}"
            legs = [Leg(acc.pending, Side.credit, amount)]
            if charged:
                legs.append(Leg(acc.cost, Side.debit, charged))
                sums["n_fee"] += 1
            if amount - charged:
                legs.append(Leg(acc.clearing, Side.debit, amount - charged))
                sums["n_net"] += 1
            sums["amount"] += amount
            sums["fee"] += charged
            meta = json.dumps({"payment": pid}, separators=(",", ":"))
            row = (tx, f"payment:{pid}", fingerprint(legs, TxStatus.posted, None), "posted",
                   f"payment {pid} succeeded", meta, at, at)  # fmt: skip
            entries = [(f"le_{p.head}{i * 3 + n:016d}", tx, leg.account_id, leg.side.value,
                        leg.amount, CURRENCY, at) for n, leg in enumerate(legs)]  # fmt: skip
            yield row, entries

    def balance_updates(self) -> list[tuple[int, int, str]]:
        """(balance change, version change, account) once every posting is written."""
        s, acc = self.sums, self.t.ledger
        return [(s["amount"], self.plan.rows, acc.pending), (s["fee"], s["n_fee"], acc.cost),
                (s["amount"] - s["fee"], s["n_net"], acc.clearing)]  # fmt: skip


async def load_postgresql(url: str, tables: Tables) -> None:
    import asyncpg

    conn = await asyncpg.connect(_plain(url))
    try:
        async with conn.transaction():
            for name, columns, rows in (
                ("payments", PAYMENT_COLUMNS, tables.payments()),
                ("payment_attempts", ATTEMPT_COLUMNS, tables.attempts()),
                ("payment_funds", FUNDS_COLUMNS, tables.funds()),
            ):
                await conn.copy_records_to_table(name, records=_aiter(rows), columns=columns)
            # Entries after their transactions (the foreign key), in slices of the same pass.
            for chunk in _chunks(tables.ledger(), 100_000):
                txs = [row for row, _ in chunk]
                legs = [leg for _, ls in chunk for leg in ls]
                await conn.copy_records_to_table("ledger_transactions", records=txs,
                                                 columns=TX_COLUMNS)  # fmt: skip
                await conn.copy_records_to_table("ledger_entries", records=legs,
                                                 columns=ENTRY_COLUMNS)  # fmt: skip
            for delta, versions, account in tables.balance_updates():
                await conn.execute("UPDATE ledger_accounts SET balance = balance + $1, "
                                   "version = version + $2 WHERE id = $3",
                                   delta, versions, account)  # fmt: skip
        # VACUUM, not only ANALYZE: a day's payments are long written when their bill comes,
        # their rows' commit status already noted (hint bits) and the visibility map set by
        # autovacuum; without it the timed run would pay for the load's first reads (it set
        # every row's hint bits: writes of the whole tables) and autovacuum would start on
        # the freshly loaded tables during it. CHECKPOINT: the load's dirty pages are written
        # now, not by the checkpointer during the timed run.
        await conn.execute("VACUUM (ANALYZE)")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def load_sqlite(path: Path, tables: Tables) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA synchronous=OFF")  # for the load only: this connection's setting

        def insert(name: str, columns: tuple[str, ...], rows: Iterator[Row]) -> None:
            marks = ", ".join("?" * len(columns))
            sql = f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({marks})"
            for chunk in _chunks(rows, 100_000):
                with db:
                    db.executemany(sql, chunk)

        insert("payments", PAYMENT_COLUMNS, tables.payments())
        insert("payment_attempts", ATTEMPT_COLUMNS, tables.attempts())
        insert("payment_funds", FUNDS_COLUMNS, tables.funds())
        tx_sql = (f"INSERT INTO ledger_transactions ({', '.join(TX_COLUMNS)}) VALUES "
                  f"({', '.join('?' * len(TX_COLUMNS))})")  # fmt: skip
        entry_sql = (f"INSERT INTO ledger_entries ({', '.join(ENTRY_COLUMNS)}) VALUES "
                     f"({', '.join('?' * len(ENTRY_COLUMNS))})")  # fmt: skip
        for chunk in _chunks(tables.ledger(), 100_000):
            with db:
                db.executemany(tx_sql, [row for row, _ in chunk])
                db.executemany(entry_sql, [leg for _, legs in chunk for leg in legs])
        with db:
            for delta, versions, account in tables.balance_updates():
                db.execute("UPDATE ledger_accounts SET balance = balance + ?, "
                           "version = version + ? WHERE id = ?",
                           (delta, versions, account))  # fmt: skip
        db.execute("ANALYZE")
    finally:
        db.close()


def _chunks(rows: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _aiter(rows: Iterator[Row]) -> AsyncIterator[Row]:
    for row in rows:
        yield row


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _sqlite_stamp(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


async def recreate_database(url: str, *, drop_only: bool = False) -> None:
    import asyncpg

    base, name = _plain(url).rsplit("/", 1)
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


# ------------------------------------------------------------------ the timed run (child)
def child(args: argparse.Namespace) -> None:
    """One run, timed, in this process; its figures as one JSON line."""
    from paymux.recon import archive, findings, service

    phases: dict[str, float] = {}

    def timed(name: str, module: Any, attr: str) -> None:
        original = getattr(module, attr)

        if asyncio.iscoroutinefunction(original):

            async def wrapped(*a: Any, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return await original(*a, **kw)
                finally:
                    phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0
        else:

            def wrapped(*a: Any, **kw: Any) -> Any:  # type: ignore[misc]
                t0 = time.perf_counter()
                try:
                    return original(*a, **kw)
                finally:
                    phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0

        setattr(module, attr, wrapped)

    timed("archive", archive, "store_file")
    timed("stage", service, "_stage")
    timed("match", service, "_match")
    timed("local", service, "_local_side")
    timed("breaks", findings, "record")

    async def go() -> dict[str, Any]:
        rt = runtime(args.db_url, Path(args.archive))
        try:
            async with rt.db.read() as s:  # connect (and warm) before the clock starts
                import sqlalchemy as sa

                await s.execute(sa.text("SELECT 1"))
            base_rss = _hwm_mb()
            upload = service.Upload(Path(args.bill), Path(args.bill).name)
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            r = await service.run(rt, args.account, dt.date.fromisoformat(args.day),
                                  actor="bench", upload=upload)  # fmt: skip
            seconds = time.perf_counter() - t0
            return {"run_id": r.id, "seconds": seconds,
                    "cpu_seconds": time.process_time() - cpu0, "base_rss_mb": base_rss,
                    "verdict": r.verdict, "line_count": r.line_count}  # fmt: skip
        finally:
            await rt.aclose()

    out = asyncio.run(go())
    out["peak_rss_mb"] = _hwm_mb()
    # ru_maxrss survives fork + exec (Linux keeps the parent's high-water mark at the fork):
    # reported, but VmHWM, this process image's own peak, is the run's figure.
    out["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["phases"] = {k: round(v, 3) for k, v in phases.items()}
    print(json.dumps(out), flush=True)


def _hwm_mb() -> float:
    """Peak resident memory of this process image (``VmHWM``: reset by exec), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ the parent
@dataclass
class Result:
    db: str
    setup_seconds: float
    load_seconds: float
    run: dict[str, Any]
    injected: int
    found: int
    missing: list[tuple[str, str, str]]
    extra: list[tuple[str, str, str]]
    verdict: str | None
    residual: int | None
    reasons: list[str]

    @property
    def correct(self) -> bool:
        return (not self.missing and not self.extra and self.verdict == "breaks"
                and self.residual == 0 and not self.reasons)  # fmt: skip


async def check(url: str, run_id: str) -> tuple[set[tuple[str, str, str]], Any]:
    import sqlalchemy as sa

    from paymux.recon.models import ReconBreak, ReconRun

    rt = runtime(url, Path(tempfile.gettempdir()))
    try:
        async with rt.db.read() as s:
            rows = await s.execute(sa.select(ReconBreak.klass, ReconBreak.kind, ReconBreak.key)
                                   .where(ReconBreak.last_run_id == run_id))  # fmt: skip
            found = {(str(k), str(kind), str(key)) for k, kind, key in rows}
            run = await s.get(ReconRun, run_id)
            assert run is not None
            # The loaded books hold together: every kept balance is what its entries make it.
            wrong = (await s.execute(sa.text(
                "SELECT a.id FROM ledger_accounts a LEFT JOIN (SELECT account_id, SUM(CASE WHEN"
                " side = 'debit' THEN amount ELSE -amount END) AS net FROM ledger_entries"
                " GROUP BY account_id) e ON e.account_id = a.id"
                " WHERE a.balance <> COALESCE(e.net, 0) * CASE WHEN a.normal = 'debit'"
                " THEN 1 ELSE -1 END"
            ))).scalars().all()  # fmt: skip
            reasons = list(run.reasons) + [f"ledger account {w}: balance ≠ its entries"
                                           for w in wrong]  # fmt: skip
            return found, (run.verdict, run.totals, reasons)
    finally:
        await rt.aclose()


async def one_database(db: str, args: argparse.Namespace, plan: Plan, tmp: Path) -> Result:
    from paymux.kit import migrate

    t0 = time.perf_counter()
    if db == "postgresql":
        url = args.url
        await recreate_database(url)
    else:
        url = f"sqlite+aiosqlite:///{tmp}/recon.db"
    archive = tmp / f"archive-{db}"
    try:
        await migrate.upgrade(url)
        tenant = await provision(url, archive)
        bill_path = tmp / f"wechatpay_{tenant.mchid}_{plan.day:%Y-%m-%d}_ALL.csv"
        sha1 = write_bill_file(plan, bill_path, tenant.mchid, tenant.appid)
        size_mb = bill_path.stat().st_size / 1e6
        t1 = time.perf_counter()
        if db == "postgresql":
            await load_postgresql(url, Tables(plan, tenant, lambda at: at))
        else:
            tables = Tables(plan, tenant, _sqlite_stamp)
            await asyncio.to_thread(load_sqlite, tmp / "recon.db", tables)
        load = time.perf_counter() - t1
        setup = time.perf_counter() - t0
        print(f"{db}: set up in {setup:.1f} s ({plan.rows:,} payments loaded in {load:.1f} s; "
              f"bill {size_mb:.0f} MB, SHA1 {sha1[:12]}…)", flush=True)  # fmt: skip
        cmd = [sys.executable, __file__, "--child", "--db-url", url, "--account",
               tenant.account, "--day", plan.day.isoformat(), "--bill", str(bill_path),
               "--archive", str(archive)]  # fmt: skip
        if args.keep:
            print("re-run (profiling):", " ".join(cmd), flush=True)
        proc = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the {db} run failed:\n{proc.stdout[-3000:]}{proc.stderr[-5000:]}")
        last = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
        run = json.loads(last)
        found, (verdict, totals, reasons) = await check(url, run["run_id"])
        injected = plan.injected()
        residual = totals.get("currencies", {}).get(CURRENCY, {}).get("residual")
        result = Result(db, setup, load, run, len(injected), len(found),
                        sorted(injected - found), sorted(found - injected), verdict, residual,
                        reasons)  # fmt: skip
        print(
            f"{db}: run {run['seconds']:.1f} s, peak RSS {run['peak_rss_mb']:.0f} MB, "
            f"phases {run['phases']}, breaks {result.found}/{result.injected}",
            flush=True,
        )
        return result
    finally:
        if db == "postgresql" and not args.keep:
            await recreate_database(url, drop_only=True)
        if not args.keep:
            shutil.rmtree(archive, ignore_errors=True)


def table(results: list[Result], rows: int) -> str:
    lines = [f"reconciliation of one bill day: {rows:,} bill rows against {rows:,} payments, "
             f"{os.cpu_count()} cores",
             f"{'database':<12}{'run s':>8}{'CPU s':>8}{'peak MB':>9}{'base MB':>9}"
             f"{'archive':>9}{'stage':>8}{'match':>8}{'local':>8}{'breaks':>8}"
             f"{'found/injected':>16}  verdict"]  # fmt: skip
    for r in results:
        ph = r.run["phases"]
        lines.append(
            f"{r.db:<12}{r.run['seconds']:>8.1f}{r.run['cpu_seconds']:>8.1f}"
            f"{r.run['peak_rss_mb']:>9.0f}{r.run['base_rss_mb']:>9.0f}"
            + "".join(f"{ph.get(k, 0.0):>{w}.1f}" for k, w in
                      (("archive", 9), ("stage", 8), ("match", 8), ("local", 8), ("breaks", 8)))
            + f"{f'{r.found}/{r.injected}':>16}  {r.verdict} (residual {r.residual})"
        )  # fmt: skip
    lines.append("phases in s: archive = copy + SHA-256; stage = read the bill + COPY/insert lines;"
                 " match = the SQL coding of every line; local = our records no line names; "
                 "breaks = upsert of breaks and their history")  # fmt: skip
    for r in results:
        target = TARGET_SECONDS
        ok_time = r.run["seconds"] <= target
        ok_rss = r.run["peak_rss_mb"] <= TARGET_RSS_MB
        stretch = (f"; stretch ≤ {STRETCH_PG_SECONDS:g} s: "
                   + ("met" if r.run["seconds"] <= STRETCH_PG_SECONDS else "NOT met")
                   if r.db == "postgresql" else "")  # fmt: skip
        lines.append(f"{r.db}: ≤ {target:g} s {'met' if ok_time else 'NOT met'}, "
                     f"≤ {TARGET_RSS_MB:g} MB {'met' if ok_rss else 'NOT met'}{stretch}; "
                     + ("breaks found = injected, verdict breaks, residual 0: correct"
                        if r.correct else f"WRONG: missing {r.missing[:5]} ({len(r.missing)}), "
                        f"extra {r.extra[:5]} ({len(r.extra)}), verdict {r.verdict}, "
                        f"residual {r.residual}, reasons {r.reasons}"))  # fmt: skip
    return "\n".join(lines)


def parse_seconds(plan: Plan, tmp: Path) -> float:
    """Reading the bill alone (no database): how much of ``stage`` is the codec."""
    from paymux.channels.wechatpay.bill import TradeBillReader

    path = next(tmp.glob("wechatpay_*_ALL.csv"), None)
    if path is None:
        return float("nan")
    t0 = time.perf_counter()
    reader = TradeBillReader(path)
    n = sum(1 for _ in reader.lines())
    assert n and reader.intact, reader.failures()
    return time.perf_counter() - t0


async def bench(args: argparse.Namespace) -> int:
    day = (dt.datetime.now(bill.CHINA) - dt.timedelta(days=1)).date()
    plan = Plan(args.rows, day, per_class=max(1, min(100, args.rows // 50)))
    dbs = [args.only] if args.only else ["postgresql", "sqlite"]
    if "postgresql" in dbs and not reachable(args.url):
        if args.only:
            print(f"PostgreSQL is not reachable at {args.url}", file=sys.stderr)
            return 2
        print("PostgreSQL is not reachable: SQLite only", file=sys.stderr)
        dbs.remove("postgresql")
    results = []
    parse = float("nan")
    for db in dbs:
        if args.keep:  # the files stay with the database, for re-runs of the child
            work = Path(tempfile.mkdtemp(prefix=f"paymux-bench-recon-{db}-"))
            results.append(await one_database(db, args, plan, work))
            parse = parse_seconds(plan, work)
            continue
        with tempfile.TemporaryDirectory(prefix="paymux-bench-recon-") as name:
            results.append(await one_database(db, args, plan, Path(name)))
            if db == dbs[-1]:
                parse = parse_seconds(plan, Path(name))
    print(table(results, args.rows))
    print(f"reading the bill alone (TradeBillReader, no database): {parse:.1f} s")
    if args.json:
        figures: dict[str, Any] = {"benchmark": "recon", "rows": args.rows,
                                   "cores": os.cpu_count(),
                                   "parse_seconds": round(parse, 2)}  # fmt: skip
        for r in results:
            p = "pg" if r.db == "postgresql" else "sqlite"
            figures.update({
                f"{p}_seconds": round(r.run["seconds"], 2),
                f"{p}_cpu_seconds": round(r.run["cpu_seconds"], 2),
                f"{p}_peak_rss_mb": round(r.run["peak_rss_mb"], 1),
                f"{p}_base_rss_mb": round(r.run["base_rss_mb"], 1),
                f"{p}_load_seconds": round(r.load_seconds, 1),
                f"{p}_correct": r.correct,
                **{f"{p}_{k}_seconds": v for k, v in r.run["phases"].items()},
            })  # fmt: skip
        figures["breaks_injected"] = results[0].injected if results else 0
        figures["breaks_found"] = {r.db: r.found for r in results}
        if len({r.found for r in results}) == 1 and results:
            figures["breaks_found"] = results[0].found
        figures["correct"] = all(r.correct for r in results)
        print(json.dumps(figures))
    return 0 if all(r.correct for r in results) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="bill rows / payments")
    parser.add_argument("--only", choices=["postgresql", "sqlite"])
    parser.add_argument("--url", default=PG_URL, help="PostgreSQL database (created, dropped)")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the PostgreSQL database and the files (re-run the child)",
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    for name in ("--db-url", "--account", "--day", "--bill", "--archive"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.rows < 100:
        parser.error("--rows: at least 100")
    sys.exit(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()

"""Full payment lifecycles through separate processes over loopback HTTP.

    create (merchant → gateway → channel sandbox) → customer pays (sandbox control API)
    → signed notification (sandbox → gateway inbox) → signed webhook (worker → merchant)

Processes: the channel sandboxes (WeChat Pay + Alipay, real signatures) in one process, a
merchant webhook receiver in another, N gateway API processes (``paymux serve --workers N``),
M ``paymux worker`` processes (on SQLite: one API process with the worker inside, as SQLite is
deployed), and this driver. Prints, per database:

- lifecycles/s: N payments, closed loop, from the first create to the last webhook received;
- create latency p50/p99 at half that load (open loop), and the gateway's own overhead
  (latency minus the time spent waiting for the channel, reported by the gateway per request);
- the CPU milliseconds each process (and PostgreSQL) spent per lifecycle, which shows where the
  machine's cores go.

    python bench/lifecycle.py                      # SQLite, then PostgreSQL if reachable
    python bench/lifecycle.py --only postgresql --payments 3000 --api 2 --workers 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request  # module level: the receiver's annotations need it

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get(
    "PAYMUX_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/paymux_bench_lifecycle"
)
"""The bench's own database (created on first use, its schema reset every run): never the
test suite's, which may be running at the same time."""


async def ensure_database(url: str) -> None:
    """Create the database ``url`` names if the server does not have it yet."""
    import asyncpg
    from sqlalchemy.engine import make_url

    target = make_url(url)
    admin = target.set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        found = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1",
                                    target.database)  # fmt: skip
        if not found:
            await conn.execute(f'CREATE DATABASE "{target.database}"')
    finally:
        await conn.close()
PAYMUX = str(Path(sys.executable).parent / "paymux")


# ------------------------------------------------------------------ helper processes
def run_sandbox(port: int, out: Path) -> None:
    import uvicorn

    from paymux.demo import make_sandboxes

    base = f"http://127.0.0.1:{port}"
    sandboxes = make_sandboxes(
        httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=200))
    )
    app = FastAPI()
    creds = {}
    for name, sandbox in sandboxes.items():
        app.mount(f"/sandbox/{name}", sandbox.app)
        creds[name] = sandbox.provision(f"{base}/sandbox/{name}")
    out.write_text(json.dumps(creds))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def run_receiver(port: int) -> None:
    import uvicorn

    app = FastAPI()
    seen: set[str] = set()

    @app.post("/hooks")
    async def hook(request: Request) -> dict[str, bool]:
        await request.body()
        seen.add(request.headers.get("webhook-id", ""))
        return {"ok": True}

    @app.get("/count")
    async def count() -> dict[str, int]:
        return {"count": len(seen)}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ------------------------------------------------------------------ orchestration
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_up(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                await client.get(url)
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=env, cwd=ROOT, start_new_session=True)


async def provision(db_url: str, env: dict[str, str], creds: dict[str, Any], hook: str) -> str:
    os.environ.update(env)
    from paymux.channel_accounts import service as channels
    from paymux.config import Settings
    from paymux.kit import migrate
    from paymux.merchants import service as merchants
    from paymux.merchants.models import Mode
    from paymux.runtime import Runtime
    from paymux.webhooks import service as webhooks

    if db_url.startswith("postgresql"):
        import sqlalchemy as sa

        from paymux.kit.db import create_engine

        await ensure_database(db_url)
        engine = create_engine(db_url)
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            await conn.execute(sa.text("CREATE SCHEMA public"))
        await engine.dispose()
    await migrate.upgrade(db_url)
    rt = Runtime.build(Settings())
    try:
        async with rt.db.transaction() as s:
            m = await merchants.create_merchant(s, name="bench")
            a = await merchants.create_app(s, merchant_id=m.id, name="bench")
            key = await merchants.issue_key(s, app_id=a.id, mode=Mode.test)
            for name, c in creds.items():
                await channels.add_account(
                    s, rt.vault, app_id=a.id, channel=name, mode=Mode.test, credentials=c
                )
            vetted = await webhooks.vet_url(rt.egress, hook, livemode=False)
            await webhooks.create_endpoint(
                s, rt.vault, app_id=a.id, livemode=False, url=vetted, events=["*"]
            )
        return key.secret
    finally:
        await rt.aclose()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Driver:
    def __init__(self, gateway: str, sandbox: str, receiver: str, key: str) -> None:
        self.gateway, self.sandbox, self.receiver = gateway, sandbox, receiver
        self.headers = {"Authorization": f"Bearer {key}"}
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        self.client = httpx.AsyncClient(timeout=30, limits=limits)
        self.latencies: list[float] = []
        self.channel_ms: list[float] = []
        self.errors = 0

    async def one(self, method: str) -> None:
        no = uuid.uuid4().hex[:24]
        body = {"amount": 1999, "currency": "CNY", "method": method, "out_trade_no": no,
                "subject": "bench"}  # fmt: skip
        started = time.perf_counter()
        r = await self.client.post(
            f"{self.gateway}/v1/payments", json=body,
            headers={**self.headers, "Idempotency-Key": no},
        )  # fmt: skip
        elapsed = (time.perf_counter() - started) * 1000
        if r.status_code != 201:
            self.errors += 1
            return
        self.latencies.append(elapsed)
        self.channel_ms.append(float(r.headers.get("Paymux-Channel-Time-Ms", "0")))
        action = r.json()["next_action"] or {}
        link = action.get("code_url") or action.get("url") or ""
        order = link.rsplit("/", 1)[-1]
        channel = "wechatpay" if method.startswith("wechat") else "alipay"
        await self.client.post(
            f"{self.sandbox}/sandbox/{channel}/_sandbox/orders/{order}/pay",
            json={"result": "pay"},
        )

    async def delivered(self) -> int:
        return int((await self.client.get(f"{self.receiver}/count")).json()["count"])

    async def closed_loop(self, n: int, concurrency: int) -> float:
        methods = ["wechat_native", "alipay_qr"]
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)
        before = await self.delivered()

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                await self.one(methods[i % 2])

        started = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        target = before + n - self.errors
        while await self.delivered() < target:
            if time.perf_counter() - started > 600:
                break
            await asyncio.sleep(0.05)
        return n / (time.perf_counter() - started)

    async def open_loop(self, rate: float, seconds: float) -> None:
        self.latencies.clear()
        self.channel_ms.clear()
        tasks = []
        interval = 1.0 / rate
        started = time.perf_counter()
        i = 0
        while time.perf_counter() - started < seconds:
            tasks.append(asyncio.create_task(self.one(["wechat_native", "alipay_qr"][i % 2])))
            i += 1
            await asyncio.sleep(max(0.0, started + i * interval - time.perf_counter()))
        await asyncio.gather(*tasks)


async def bench(db: str, args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="paymux-bench-"))
    db_url = f"sqlite+aiosqlite:///{tmp}/bench.db" if db == "sqlite" else PG_URL
    sp, rp, gp = free_port(), free_port(), free_port()
    gateway, sandbox, receiver = (
        f"http://127.0.0.1:{gp}",
        f"http://127.0.0.1:{sp}",
        f"http://127.0.0.1:{rp}",
    )
    env = {**os.environ, "PAYMUX_ENV": "dev", "PAYMUX_DATABASE_URL": db_url,
           "PAYMUX_PUBLIC_URL": gateway, "PAYMUX_LOG_LEVEL": "WARNING",
           "PAYMUX_WORKER_POLL_SECONDS": "0.05", "PAYMUX_WORKER_BATCH_SIZE": "200",
           "PAYMUX_DB_POOL_SIZE": "20",
           "PAYMUX_EGRESS_ALLOW_NETS": "127.0.0.0/8"}  # fmt: skip  (the receiver is on loopback)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        creds_file = tmp / "creds.json"
        procs.append(spawn([sys.executable, __file__, "--role", "sandbox", "--port", str(sp),
                            "--out", str(creds_file)], env))  # fmt: skip
        procs.append(
            spawn([sys.executable, __file__, "--role", "receiver", "--port", str(rp)], env)
        )
        await wait_up(f"{sandbox}/docs")
        await wait_up(f"{receiver}/count")
        key = await provision(db_url, env, json.loads(creds_file.read_text()), f"{receiver}/hooks")
        api = 1 if db == "sqlite" else args.api
        # SQLite is deployed as one process with its worker inside (docs/deploy.md): its writers
        # then queue in order on one lock instead of across processes on SQLite's busy handler.
        workers = 0 if db == "sqlite" else args.workers
        serve = [PAYMUX, "serve", "--port", str(gp), "--workers", str(api)]
        if db == "sqlite":
            serve.append("--with-worker")
        procs.append(spawn(serve, env))
        for _ in range(workers):
            procs.append(spawn([PAYMUX, "worker"], env))
        await wait_up(f"{gateway}/healthz")
        driver = Driver(gateway, sandbox, receiver, key)
        await driver.closed_loop(min(200, args.payments), args.concurrency)  # warm-up
        driver.latencies.clear()
        driver.channel_ms.clear()
        driver.errors = 0
        roles = {"driver": os.getpid(), "sandboxes": procs[0].pid, "receiver": procs[1].pid,
                 "api": procs[2].pid}  # fmt: skip
        roles.update({f"worker{i + 1}": p.pid for i, p in enumerate(procs[3:])})
        before = cpu_by_role(roles)
        rate = await driver.closed_loop(args.payments, args.concurrency)
        after = cpu_by_role(roles)
        if db == "sqlite":
            del before["postgres"], after["postgres"]
        cpu_ms = {role: round((after[role] - before[role]) * 1000 / args.payments, 2)
                  for role in after}  # fmt: skip
        await driver.open_loop(rate / 2, args.seconds)
        overhead = [a - b for a, b in zip(driver.latencies, driver.channel_ms, strict=True)]
        await driver.client.aclose()
        return {
            "database": db, "api_processes": api, "worker_processes": workers,
            "payments": args.payments, "lifecycles_per_s": round(rate, 1),
            "half_load_rate": round(rate / 2, 1),
            "create_p50_ms": round(pct(driver.latencies, 0.5), 1),
            "create_p99_ms": round(pct(driver.latencies, 0.99), 1),
            "channel_p50_ms": round(pct(driver.channel_ms, 0.5), 1),
            "overhead_p50_ms": round(pct(overhead, 0.5), 1),
            "overhead_p99_ms": round(pct(overhead, 0.99), 1),
            "errors": driver.errors,
            "cpu_ms_per_lifecycle": cpu_ms,
        }  # fmt: skip
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _proc_table() -> dict[int, tuple[int, str, float]]:
    """pid → (parent pid, command name, CPU seconds used), from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / ticks)
    return table


def cpu_by_role(roles: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each role's process tree (this driver: its own process only,
    the others are its children), plus the database server."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)

    def tree(pid: int) -> float:
        return table.get(pid, (0, "", 0.0))[2] + sum(tree(c) for c in children.get(pid, []))

    used = {role: tree(pid) for role, pid in roles.items() if role != "driver"}
    used["driver"] = table.get(roles["driver"], (0, "", 0.0))[2]
    used["postgres"] = sum(cpu for _, name, cpu in table.values() if name == "postgres")
    return used


def pg_reachable() -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", 5432)) == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["bench", "sandbox", "receiver"], default="bench")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--payments", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--api", type=int, default=2, help="API processes on PostgreSQL")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on PostgreSQL")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    args = parser.parse_args()
    if args.role == "sandbox":
        return run_sandbox(args.port, args.out)
    if args.role == "receiver":
        return run_receiver(args.port)
    # `timeout` or Ctrl-C: unwind through bench()'s finally, which stops the child processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    dbs = [args.only] if args.only else ["sqlite"] + (["postgresql"] if pg_reachable() else [])
    print(f"paymux lifecycle benchmark on {os.cpu_count()} cores")
    results = []
    for db in dbs:
        result = asyncio.run(bench(db, args))
        results.append(result)
        setup = (
            f"{result['api_processes']} API + {result['worker_processes']} worker processes"
            if result["worker_processes"]
            else "1 process with its worker inside"
        )
        print(
            f"{db:>10}: {result['lifecycles_per_s']:>7} lifecycles/s ({setup}); "
            f"at {result['half_load_rate']}/s create p50 {result['create_p50_ms']} ms, "
            f"p99 {result['create_p99_ms']} ms; gateway overhead p50 "
            f"{result['overhead_p50_ms']} ms, p99 {result['overhead_p99_ms']} ms; "
            f"errors {result['errors']}",
            flush=True,
        )
        shares = ", ".join(f"{k} {v}" for k, v in result["cpu_ms_per_lifecycle"].items())
        total = sum(result["cpu_ms_per_lifecycle"].values())
        print(f"{'':>12}CPU ms per lifecycle: {shares} (total {total:.1f})", flush=True)
    if args.json:
        print(json.dumps({"benchmark": "lifecycle", "cores": os.cpu_count(), "runs": results}))


if __name__ == "__main__":
    main()

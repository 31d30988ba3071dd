"""The processes ``bench/lifecycle.py`` drives, and what it reads of them from /proc (Linux).

One :class:`Stack` per database run: the channel sandboxes (WeChat Pay + Alipay, real
signatures) in one process and a merchant webhook receiver in another, both for the whole run,
and the gateway's API and worker processes, which are restarted with other counts or feature
toggles between phases. :class:`Driver` is the merchant and the customer: it creates payments and
pays them through the sandbox's control API.

The helper processes are ``bench/lifecycle.py --role sandbox|receiver`` (started by Stack).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request  # module level: the receiver's annotations need it

from kit import pg
from kit.measure import machine_busy, postgres_cpu, proc_table

ROOT = Path(__file__).resolve().parents[2]
PAYMUX = str(Path(sys.executable).parent / "paymux")
METHODS = ("wechat_native", "alipay_qr")


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
    arrived: list[float] = []  # when each new webhook id came, in order

    @app.post("/hooks")
    async def hook(request: Request) -> dict[str, bool]:
        await request.body()
        webhook_id = request.headers.get("webhook-id", "")
        if webhook_id not in seen:
            seen.add(webhook_id)
            arrived.append(time.time())
        return {"ok": True}

    @app.get("/count")
    async def count() -> dict[str, int]:
        return {"count": len(seen)}

    @app.get("/arrivals")
    async def arrivals(start: int = 0) -> list[float]:
        return arrived[start:]

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ------------------------------------------------------------------ /proc
def cpu_by_role(roles: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each role's process tree (the driver: its own process only,
    the others are its children), plus the database server's (live backends and exited ones)."""
    table = proc_table()
    children: dict[int, list[int]] = {}
    for pid, p in table.items():
        children.setdefault(p.ppid, []).append(pid)

    def tree(pid: int) -> float:
        p = table.get(pid)
        return (p.cpu if p else 0.0) + sum(tree(c) for c in children.get(pid, []))

    used = {role: tree(pid) for role, pid in roles.items() if role != "driver"}
    driver = table.get(roles["driver"])
    used["driver"] = driver.cpu if driver else 0.0
    used["postgres"] = postgres_cpu(table)
    return used


class Meter:
    """Wall time, CPU per role and the machine's busy CPU over a phase."""

    def __init__(self, roles: dict[str, int]) -> None:
        self.roles = roles
        self.t0, self.cpu0, self.busy0 = time.perf_counter(), cpu_by_role(roles), machine_busy()

    def stop(self) -> Usage:
        cpu, busy = cpu_by_role(self.roles), machine_busy()
        return Usage(
            time.perf_counter() - self.t0,
            {r: cpu[r] - self.cpu0[r] for r in cpu},
            busy - self.busy0,
        )


@dataclass
class Usage:
    wall: float
    cpu: dict[str, float]
    busy: float

    def cores(self) -> dict[str, float]:
        """Cores each role kept busy on average (CPU seconds per second)."""
        return {role: s / self.wall for role, s in self.cpu.items()}

    def ms_per(self, n: int) -> dict[str, float]:
        return {role: round(s * 1000 / n, 2) for role, s in self.cpu.items()}


# ------------------------------------------------------------------ the processes
class LazyTransport(httpx.AsyncBaseTransport):
    """A transport to the in-process gateway, set in ``holder["t"]`` once the app exists (its
    sandboxes' clients are built before it)."""

    def __init__(self, holder: dict[str, httpx.AsyncBaseTransport]) -> None:
        self.holder = holder

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.holder["t"].handle_async_request(request)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_up(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            try:
                await client.get(url)
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    procs.clear()


class Stack:
    def __init__(self, db: str, pg_url: str, pool_size: int) -> None:
        self.db, self.tmp = db, Path(tempfile.mkdtemp(prefix="paymux-bench-"))
        self.db_url = pg_url if db == "postgresql" else f"sqlite+aiosqlite:///{self.tmp}/bench.db"
        sp, rp, gp = free_port(), free_port(), free_port()
        self.ports = {"sandbox": sp, "receiver": rp, "gateway": gp}
        self.gateway, self.sandbox, self.receiver = (f"http://127.0.0.1:{p}" for p in (gp, sp, rp))
        self.env = {
            **os.environ,
            "PAYMUX_ENV": "dev",
            "PAYMUX_DATABASE_URL": self.db_url,
            "PAYMUX_PUBLIC_URL": self.gateway,
            "PAYMUX_LOG_LEVEL": "WARNING",
            "PAYMUX_WORKER_POLL_SECONDS": "0.05",
            "PAYMUX_WORKER_BATCH_SIZE": "200",
            "PAYMUX_DB_POOL_SIZE": str(pool_size),
            "PAYMUX_EGRESS_ALLOW_NETS": "127.0.0.0/8",
        }  # loopback receiver
        self.helpers: list[subprocess.Popen[bytes]] = []
        self.api: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.gateway_env: dict[str, str] = {}
        self.key = ""

    def spawn(self, args: list[str]) -> subprocess.Popen[bytes]:
        env = {**self.env, **self.gateway_env}
        return subprocess.Popen(args, env=env, cwd=ROOT, start_new_session=True)

    async def __aenter__(self) -> Stack:
        creds = self.tmp / "creds.json"
        me = [sys.executable, str(ROOT / "bench" / "lifecycle.py"), "--role"]
        self.helpers.append(
            self.spawn([*me, "sandbox", "--port", str(self.ports["sandbox"]), "--out", str(creds)])
        )
        self.helpers.append(self.spawn([*me, "receiver", "--port", str(self.ports["receiver"])]))
        await wait_up(f"{self.sandbox}/docs")
        await wait_up(f"{self.receiver}/count")
        self.key = await self.provision(json.loads(creds.read_text()))
        return self

    async def __aexit__(self, *_: object) -> None:
        stop(self.workers)
        stop(self.api)
        stop(self.helpers)

    async def provision(self, creds: dict[str, Any]) -> str:
        """A fresh schema, one merchant app with a key, both channel accounts and a webhook
        endpoint for every event at the receiver."""
        os.environ.update(self.env)
        from paymux.channel_accounts import service as channels
        from paymux.config import Settings
        from paymux.kit import migrate
        from paymux.merchants import service as merchants
        from paymux.merchants.models import Mode
        from paymux.runtime import Runtime
        from paymux.webhooks import service as webhooks

        if self.db == "postgresql":
            import sqlalchemy as sa

            from paymux.kit.db import create_engine

            await pg.ensure_database(self.db_url)
            engine = create_engine(self.db_url)
            async with engine.begin() as conn:
                await conn.execute(sa.text("DROP SCHEMA public CASCADE"))
                await conn.execute(sa.text("CREATE SCHEMA public"))
            await engine.dispose()
        await migrate.upgrade(self.db_url)
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
                hook = f"{self.receiver}/hooks"
                vetted = await webhooks.vet_url(rt.egress, hook, livemode=False)
                await webhooks.create_endpoint(
                    s, rt.vault, app_id=a.id, livemode=False, url=vetted, events=["*"]
                )
            return key.secret
        finally:
            await rt.aclose()

    async def start_gateway(self, api: int, workers: int, env: dict[str, str]) -> None:
        """(Re)start the gateway: ``api`` API processes and ``workers`` workers with ``env``
        (feature toggles) on top of the run's settings. On SQLite: one process with the
        worker inside, as SQLite is deployed (docs/deploy.md)."""
        stop(self.workers)
        stop(self.api)
        self.gateway_env = env
        serve = [PAYMUX, "serve", "--port", str(self.ports["gateway"]), "--workers", str(api)]
        if self.db == "sqlite":
            serve.append("--with-worker")
        self.api.append(self.spawn(serve))
        await wait_up(f"{self.gateway}/healthz")
        self.start_workers(workers)

    def start_workers(self, n: int) -> None:
        self.workers.extend(self.spawn([PAYMUX, "worker"]) for _ in range(n))

    def stop_workers(self) -> None:
        stop(self.workers)

    def roles(self) -> dict[str, int]:
        roles = {
            "driver": os.getpid(),
            "sandboxes": self.helpers[0].pid,
            "receiver": self.helpers[1].pid,
            "api": self.api[0].pid,
        }
        roles.update({f"worker{i + 1}": p.pid for i, p in enumerate(self.workers)})
        return roles

    def api_pids(self) -> list[int]:
        """The processes serving requests: uvicorn's spawned children with ``--workers`` > 1
        (not its supervisor or multiprocessing's resource tracker), else the one process."""
        serve = self.api[0].pid
        table = proc_table()
        served = []
        for pid, p in table.items():
            if p.ppid != serve:
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline:
                served.append(pid)
        return sorted(served) or [serve]

    async def pending_deliveries(self) -> int:
        import sqlalchemy as sa

        from paymux.kit.db import create_engine
        from paymux.webhooks.models import DeliveryStatus, WebhookDelivery

        engine = create_engine(self.db_url)
        try:
            async with engine.connect() as conn:
                stmt = sa.select(sa.func.count()).where(
                    WebhookDelivery.status == DeliveryStatus.pending
                )
                return int((await conn.execute(stmt)).scalar_one())
        finally:
            await engine.dispose()


# ------------------------------------------------------------------ the load
async def until(check: Callable[[], Awaitable[bool]], seconds: float) -> bool:
    """Poll ``check`` until it is true or ``seconds`` have passed (it reads another process's
    state: there is nothing to await on)."""
    deadline = time.perf_counter() + seconds
    while not await check():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


class Driver:
    def __init__(self, stack: Stack) -> None:
        self.gateway, self.sandbox, self.receiver = stack.gateway, stack.sandbox, stack.receiver
        self.headers = {"Authorization": f"Bearer {stack.key}"}
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        self.client = httpx.AsyncClient(timeout=30, limits=limits)
        self.latencies: list[float] = []
        self.channel_ms: list[float] = []
        self.errors = 0
        self.missing = 0
        """Webhooks that never arrived (after a stall) although their create succeeded."""

    def reset(self) -> None:
        self.latencies.clear()
        self.channel_ms.clear()
        self.errors = 0
        self.missing = 0

    async def one(self, method: str) -> None:
        no = uuid.uuid4().hex[:24]
        body = {
            "amount": 1999,
            "currency": "CNY",
            "method": method,
            "out_trade_no": no,
            "subject": "bench",
        }
        started = time.perf_counter()
        try:
            r = await self.client.post(
                f"{self.gateway}/v1/payments",
                json=body,
                headers={**self.headers, "Idempotency-Key": no},
            )
        except httpx.HTTPError:
            self.errors += 1
            return
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

    async def create_and_pay(self, n: int, concurrency: int) -> None:
        """``n`` payments created and paid, ``concurrency`` at a time (closed loop)."""
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                await self.one(METHODS[i % 2])

        await asyncio.gather(*[worker() for _ in range(concurrency)])

    async def arrivals(self, start: int) -> list[float]:
        """When the receiver got its webhooks from the ``start``-th on (epoch seconds)."""
        r = await self.client.get(f"{self.receiver}/arrivals", params={"start": start})
        return [float(t) for t in r.json()]

    async def wait_delivered(self, target: int, stall: float = 30.0) -> int:
        """Wait until the receiver has ``target`` webhooks, or none has come for ``stall``
        seconds (a lost notification or delivery: reported, rather than hanging the bench);
        how many are missing."""
        last, moved = -1, time.perf_counter()

        async def arrived() -> bool:
            nonlocal last, moved
            count = await self.delivered()
            if count != last:
                last, moved = count, time.perf_counter()
            return count >= target or time.perf_counter() - moved > stall

        await until(arrived, 24 * 3600)
        return max(0, target - last)

    async def closed_loop(self, n: int, concurrency: int) -> float:
        """Lifecycles per second: from the first create to the last webhook received."""
        before = await self.delivered()
        started = time.perf_counter()
        await self.create_and_pay(n, concurrency)
        self.missing += await self.wait_delivered(before + n - self.errors)
        return n / (time.perf_counter() - started)

    async def open_loop(self, rate: float, seconds: float) -> None:
        """Creates (each then paid) at ``rate`` per second for ``seconds``, whatever the
        answers' latency; the latencies are in :attr:`latencies`."""
        tasks = []
        interval = 1.0 / rate
        started = time.perf_counter()
        i = 0
        while time.perf_counter() - started < seconds:
            tasks.append(asyncio.create_task(self.one(METHODS[i % 2])))
            i += 1
            await asyncio.sleep(max(0.0, started + i * interval - time.perf_counter()))
        await asyncio.gather(*tasks)

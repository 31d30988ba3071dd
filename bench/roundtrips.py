"""Database round trips per lifecycle step on PostgreSQL, counted, not timed.

The lifecycle bench's CPU and latency figures move by ±10-30 % between runs on a shared
2-core machine, which hides a cut of a few percent; the number of round trips each step makes
to PostgreSQL does not move. This runs the gateway in-process (sandboxes mounted, webhooks to a
route of its own), warms it, then counts what asyncpg sends for each step of ``--payments``
lifecycles — create (with an Idempotency-Key), the paid notification, the webhook delivery —
as prepared statements, simple queries (BEGIN, COMMIT) and prepares (a statement a connection
had not prepared yet), and prints them per step.

    python bench/roundtrips.py --json      # on its own database, paymux_bench_roundtrips
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextvars
import functools
import json
import os
import uuid
from typing import Any

import asyncpg
import httpx
from asyncpg import prepared_stmt
from fastapi import APIRouter
from kit.pg import fresh_schema, reachable
from kit.stack import LazyTransport

from paymux.app import create_app
from paymux.config import Environment, Settings
from paymux.demo import make_sandboxes, provision
from paymux.runtime import Runtime

PG_URL = os.environ.get(
    "PAYMUX_BENCH_PG_URL",
    "postgresql+asyncpg://postgres@127.0.0.1:5432/paymux_bench_roundtrips",
)
GATEWAY = "http://gateway.test"
STEPS = ("create", "notify", "deliver")

_step: contextvars.ContextVar[str | None] = contextvars.ContextVar("step", default=None)
_counts: collections.Counter[tuple[str, str]] = collections.Counter()


def _count(cls: Any, name: str, kind: Any) -> None:
    original = getattr(cls, name)

    @functools.wraps(original)
    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        step = _step.get()
        if step is not None:
            _counts[(step, kind(args) if callable(kind) else kind)] += 1
        return await original(self, *args, **kwargs)

    setattr(cls, name, counted)


def instrument() -> None:
    """Count at asyncpg's surface: every round trip SQLAlchemy's adapter makes passes here."""
    _count(asyncpg.connection.Connection, "execute",
           lambda a: str(a[0]).split()[0].upper().rstrip(";") if a else "query")  # fmt: skip
    _count(asyncpg.connection.Connection, "_prepare", "prepare")
    for name in ("fetch", "fetchrow", "fetchval", "executemany"):
        _count(prepared_stmt.PreparedStatement, name, "statement")


async def run(payments: int, warmup: int) -> dict[str, Any]:
    from paymux.payments.repository import PaymentRepository
    from paymux.webhooks import tasks

    await fresh_schema(PG_URL)
    settings = Settings(env=Environment.test, database_url=PG_URL, public_url=GATEWAY,
                        log_level="WARNING", channel_timeout_seconds=5.0,
                        egress_allow_nets=["127.0.0.0/8"])  # fmt: skip
    holder: dict[str, httpx.AsyncBaseTransport] = {}
    channel_http = httpx.AsyncClient(mounts={GATEWAY: LazyTransport(holder)}, timeout=5.0)
    webhook_http = httpx.AsyncClient(mounts={GATEWAY: LazyTransport(holder)}, timeout=5.0)
    sandboxes = make_sandboxes(channel_http)
    rt = Runtime.build(settings, channel_http=channel_http, webhook_http=webhook_http)
    received: list[str] = []
    hooks = APIRouter()

    @hooks.post("/_bench/hook")
    async def hook() -> dict[str, bool]:
        received.append("x")
        return {"ok": True}

    app = create_app(settings, runtime=rt, sandboxes=sandboxes, extra_routers=[hooks])
    holder["t"] = httpx.ASGITransport(app=app)
    done = await provision(rt, sandboxes, public_url=GATEWAY, api_key=None,
                           webhook_url=f"{GATEWAY}/_bench/hook")  # fmt: skip
    headers = {"Authorization": f"Bearer {done.api_key}"}
    async with httpx.AsyncClient(transport=holder["t"], base_url=GATEWAY) as client:

        async def lifecycle(counted: bool) -> None:
            token = _step.set("create" if counted else None)
            body = {"amount": 1999, "currency": "CNY", "method": "wechat_native",
                    "subject": "Bench", "out_trade_no": uuid.uuid4().hex[:20]}  # fmt: skip
            key = {"Idempotency-Key": uuid.uuid4().hex}
            r = await client.post("/v1/payments", headers={**headers, **key}, json=body)
            r.raise_for_status()
            _step.reset(token)
            payment = r.json()
            async with rt.db.read() as session:
                (attempt,) = await PaymentRepository(session).attempts_of(payment["id"])
            # The sandbox notifies from a task it starts now: the task inherits the step.
            token = _step.set("notify" if counted else None)
            paid = await client.post(f"/sandbox/wechatpay/_sandbox/orders/{attempt.id}/pay",
                                     json={"result": "pay"})  # fmt: skip
            paid.raise_for_status()
            _step.reset(token)
            for _ in range(500):
                got = await client.get(f"/v1/payments/{payment['id']}", headers=headers)
                if got.json()["status"] == "succeeded":
                    break
                await asyncio.sleep(0.005)
            else:
                raise RuntimeError("the notification did not arrive")
            token = _step.set("deliver" if counted else None)
            delivered = await tasks.deliver_due(rt, limit=100)  # the one pending delivery
            _step.reset(token)
            if delivered != 1:
                raise RuntimeError(f"{delivered} deliveries were due, wanted 1")

        for _ in range(warmup):
            await lifecycle(False)
        for _ in range(payments):
            await lifecycle(True)
    for sandbox in sandboxes.values():
        await sandbox.core.aclose()
    await channel_http.aclose()
    await webhook_http.aclose()
    await rt.aclose()
    if len(received) != payments + warmup:
        raise RuntimeError(f"{len(received)} webhooks received, {payments + warmup} sent")
    steps: dict[str, dict[str, float]] = {}
    for (step, kind), n in sorted(_counts.items()):
        steps.setdefault(step, {})[kind] = round(n / payments, 2)
    return {step: {**kinds, "total": round(sum(kinds.values()), 2)}
            for step, kinds in steps.items()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=20, help="lifecycles counted")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    args = parser.parse_args()
    if not reachable(PG_URL):
        raise SystemExit(f"PostgreSQL is not reachable at {PG_URL}")
    instrument()
    steps = asyncio.run(run(args.payments, args.warmup))
    total = round(sum(s["total"] for s in steps.values()), 2)
    print(f"database round trips per lifecycle on PostgreSQL ({args.payments} counted):")
    for step in STEPS:
        kinds = steps.get(step, {})
        detail = ", ".join(f"{k} {v:g}" for k, v in kinds.items() if k != "total")
        print(f"  {step:<8} {kinds.get('total', 0):>5g}   ({detail})")
    print(f"  {'all':<8} {total:>5g}")
    if args.json:
        figures = {f"{step}_round_trips": steps.get(step, {}).get("total", 0) for step in STEPS}
        print(json.dumps({"benchmark": "roundtrips", "round_trips_per_lifecycle": total,
                          **figures}))  # fmt: skip


if __name__ == "__main__":
    main()

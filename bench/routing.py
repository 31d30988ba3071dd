"""Routing: (a) the decision's cost, (b) a simulated outage over the sandboxes.

(a) The pure in-process decision (:func:`paymux.routing.engine.decide`, warm caches) for an app
with 20 channel accounts and 50 rules, the last of which matches: p50/p99 in microseconds,
beside issue 11's target (p99 ≤ 100 µs); and the same with its explanation rendered (what the
attempt stores: a payment renders it once, when its first candidate is picked).

(b) The in-process gateway (as in tests/conftest.py) with its own SQLite file database, three
WeChat Pay sandboxes as three merchant accounts with different customer success rates and fees,
simulated time (a frozen clock advanced 2 s per payment) and a 10-minute outage of the best
account (its gateway refuses connections). Runs once with static priority routing and once with
paymux scoring; prints the success rate and fees before, during and after the outage.

    python bench/routing.py            # both
    python bench/routing.py --quick    # fewer payments
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from paymux.routing import engine, scoring

GATEWAY = "http://gateway.test"
TARGET_P99_US = 100.0
"""Issue 11: a routing decision with 20 accounts and 50 rules in at most this, at p99."""


# ------------------------------------------------------------------ (a) decision cost
def decision_cost(samples: int, explained: bool = False) -> tuple[float, float]:
    """(p50, p99) in µs of one decision; ``explained``: its explanation rendered too."""
    rng = random.Random(1)
    methods = frozenset({"wechat_native", "alipay_qr"})
    accounts = [
        engine.AccountView(
            id=f"chn_{i:02d}", channel=("wechatpay", "alipay", "unionpay")[i % 3],
            methods=methods, currencies=frozenset({"CNY"}), priority=i,
            fee=scoring.Fee(rate_bps=20 + i * 3, fixed=i % 2), min_amount=1,
            max_amount=10**9, maintenance=({"start": "03:00", "end": "04:00"},),
        )
        for i in range(20)
    ]  # fmt: skip
    rules = [
        engine.RuleView(
            id=f"rr_{i}", name=f"rule {i}",
            conditions={"amount_min": 10**7 + i, "device_types": ["ios"],
                        "metadata": {"category": [f"c{i}"]}},
            action={"type": "priority", "targets": ["chn_01", "unionpay"]},
        )
        for i in range(49)
    ] + [engine.RuleView(id="rr_last", name="last", conditions={"methods": ["wechat_native"]},
                         action={"type": "weighted", "targets": ["chn_00", "chn_03"],
                                 "weights": [7, 3]})]  # fmt: skip
    windows = {
        (a.id, "wechat_native"): scoring.Window(
            accepted=500 + i, succeeded=470, errors=3, latency_ms=80_000, recent_accepted=60,
        )
        for i, a in enumerate(accounts)
    }  # fmt: skip
    snap = engine.Snapshot(accounts=accounts, rules=rules, windows=windows)
    requests = [  # amounts vary, as a shop's do: nothing is memoised per amount
        engine.Request(method="wechat_native", currency="CNY", amount=rng.randint(100, 99_999),
                       device_type="android", metadata={"category": "books"})
        for _ in range(1000)
    ]  # fmt: skip
    now = dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.UTC)
    for req in requests[:200]:
        _ = engine.decide(req, snap, now, rng).explanation  # warm both paths
    timings = []
    for i in range(samples):
        req = requests[i % len(requests)]
        started = time.perf_counter_ns()
        decision = engine.decide(req, snap, now, rng)
        if explained:
            _ = decision.explanation  # rendered on first read
        timings.append((time.perf_counter_ns() - started) / 1000)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.99) - 1]


def steady_work(samples: int, p50_us: float) -> tuple[float, float]:
    """(p50, p99) in µs of a fixed pure-Python loop sized to take ``p50_us``, timed the same
    way: this machine's own spread between p50 and p99 for work that never varies (timer
    interrupts, the other core's load, the hypervisor), beside which to read the decision's."""

    def loop(n: int) -> int:
        x = 0
        for i in range(n):
            x += i
        return x

    started = time.perf_counter_ns()
    loop(100_000)
    per_iteration_us = (time.perf_counter_ns() - started) / 1000 / 100_000
    n = max(1, int(p50_us / per_iteration_us))
    timings = []
    for _ in range(samples):
        started = time.perf_counter_ns()
        loop(n)
        timings.append((time.perf_counter_ns() - started) / 1000)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.99) - 1]


# ------------------------------------------------------------------ (b) simulation
ACCOUNTS = (  # name, customer success rate, fee bps, static priority
    ("wx-a", 0.95, 60, 1),
    ("wx-b", 0.97, 38, 2),
    ("wx-c", 0.90, 25, 3),
)
OUTAGE = "wx-b"


class Outage(httpx.AsyncBaseTransport):
    """The gateway transport, except that one sandbox refuses connections while it is down."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.down = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down and request.url.path.startswith(f"/sandbox/{OUTAGE}/"):
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


async def simulate(
    strategy: str, per_phase: int, seed: int, order: tuple[str, ...] | None = None
) -> dict[str, dict[str, float]]:
    """``order``: the static priority of the accounts by name (default: ACCOUNTS')."""
    from paymux.app import create_app
    from paymux.channel_accounts import service as channel_service
    from paymux.channels.sandbox_kit import NotifyMode, Outcome, Script
    from paymux.channels.wechatpay.sandbox import Sandbox
    from paymux.config import Environment, Settings
    from paymux.kit import clock, migrate
    from paymux.merchants import service as merchant_service
    from paymux.merchants.models import Mode
    from paymux.payments import intake as payments
    from paymux.payments.schemas import PaymentCreate
    from paymux.routing import service as routing
    from paymux.runtime import Runtime

    routing.clear_caches()
    frozen = clock.FrozenClock(dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.UTC))
    previous = clock.set_clock(frozen)
    tmp = tempfile.mkdtemp(prefix="paymux-routing-bench-")
    url = f"sqlite+aiosqlite:///{tmp}/bench.db"
    await migrate.upgrade(url)
    settings = Settings(env=Environment.test, database_url=url, public_url=GATEWAY,
                        channel_timeout_seconds=5.0, log_level="ERROR")  # fmt: skip
    sandboxes = {name: Sandbox(time_scale=0.0001, hold_timeout_seconds=5.0)
                 for name, *_ in ACCOUNTS}  # fmt: skip
    holder: dict[str, httpx.AsyncBaseTransport] = {}

    class Lazy(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return await holder["t"].handle_async_request(request)

    outage = Outage(Lazy())
    channel_http = httpx.AsyncClient(mounts={GATEWAY: outage}, timeout=5.0)
    webhook_http = httpx.AsyncClient(timeout=1.0)
    rt = Runtime.build(settings, channel_http=channel_http, webhook_http=webhook_http)
    app = create_app(settings, runtime=rt, sandboxes=sandboxes)
    holder["t"] = httpx.ASGITransport(app=app)
    notifier = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), timeout=5.0)
    rng = random.Random(seed)
    fee_of: dict[str, int] = {}
    async with rt.db.transaction() as session:
        merchant = await merchant_service.create_merchant(session, name="bench")
        app_row = await merchant_service.create_app(session, merchant_id=merchant.id, name="b")
        for name, rate, bps, priority in ACCOUNTS:
            if order is not None:
                priority = order.index(name) + 1
            sandbox = sandboxes[name]
            sandbox.core.http = notifier
            for _ in range(per_phase * 3 + 10):
                outcome = Outcome.succeed if rng.random() < rate else Outcome.decline
                sandbox.core.add_script(Script(outcome=outcome, notify=NotifyMode.normal,
                                               delay=0.0))  # fmt: skip
            account = await channel_service.add_account(
                session, rt.vault, app_id=app_row.id, channel="wechatpay", mode=Mode.test,
                credentials=sandbox.provision(f"{GATEWAY}/sandbox/{name}"),
                methods=["wechat_native"], fee_rate_bps=bps, priority=priority, name=name,
            )  # fmt: skip
            fee_of[account.id] = bps
    from paymux.routing import rules as routing_rules
    from paymux.routing.schemas import SettingsIn

    async with rt.db.transaction() as session:
        await routing_rules.update_settings(session, app_row.id, SettingsIn(strategy=strategy),
                                          livemode=False)  # fmt: skip
    phases: dict[str, list[str]] = {"before": [], "during": [], "after": []}
    for phase in phases:
        outage.down = phase == "during"
        for _ in range(per_phase):
            req = PaymentCreate(amount=rng.choice((990, 4_900, 12_800, 56_000)),
                                method="wechat_native", out_trade_no=uuid.uuid4().hex[:24],
                                subject="bench")  # fmt: skip
            payment, _ = await payments.create(rt, app_id=app_row.id, merchant_id=merchant.id,
                                               livemode=False, req=req)  # fmt: skip
            phases[phase].append(payment.id)
            for _ in range(4):  # let the sandbox's notification land
                await asyncio.sleep(0)
            await asyncio.sleep(0.002)
            frozen.advance(600 / per_phase)  # each phase is 10 simulated minutes
    await asyncio.sleep(0.5)
    from paymux.payments.repository import PaymentRepository

    results: dict[str, dict[str, float]] = {}
    async with rt.db.read() as session:
        repo = PaymentRepository(session)
        for phase, ids in phases.items():
            ok = fees = paid = technical = 0
            for pid in ids:
                p = await repo.get_public(pid)
                assert p is not None
                technical += p.failure_code == "channel_unavailable"
                if p.status == "succeeded":
                    ok += 1
                    paid += p.amount
                    fees += scoring.fee_of(
                        p.amount, scoring.Fee(rate_bps=fee_of[p.channel_account_id or ""])
                    )
            results[phase] = {"success": 100.0 * ok / len(ids),
                              "fee_bps": 10_000.0 * fees / paid if paid else 0.0,
                              "technical": float(technical)}  # fmt: skip
    for sandbox in sandboxes.values():
        await sandbox.core.aclose()
    for client in (notifier, channel_http, webhook_http):
        await client.aclose()
    await rt.db.dispose()
    clock.set_clock(previous)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    args = parser.parse_args()
    samples = 2_000 if args.quick else 20_000
    p50, p99 = decision_cost(samples)
    e50, e99 = decision_cost(samples, explained=True)
    verdict = "met" if p99 <= TARGET_P99_US else "NOT met"
    print(f"(a) routing decision, 20 accounts, 50 rules: p50 {p50:.1f} µs, "
          f"p99 {p99:.1f} µs (target ≤ {TARGET_P99_US:.0f} µs: {verdict})")  # fmt: skip
    print(f"    with its explanation rendered: p50 {e50:.1f} µs, p99 {e99:.1f} µs")
    s50, s99 = steady_work(samples, p50)
    print(f"    this machine's spread for fixed work of the same p50: p50 {s50:.1f} µs, "
          f"p99 {s99:.1f} µs")  # fmt: skip
    per_phase = 60 if args.quick else 300
    print(f"(b) simulation: {per_phase} payments per 10-minute phase; outage of {OUTAGE} "
          "(best success, middle fee) during the middle phase")  # fmt: skip
    runs = (
        ("priority", "static priority", None),
        ("priority", "static, best first", ("wx-b", "wx-a", "wx-c")),
        ("score", "paymux routing", None),
    )
    simulation: dict[str, dict[str, dict[str, float]]] = {}
    for strategy, label, order in runs:
        results = await simulate(strategy, per_phase, seed=7, order=order)
        simulation[label] = results
        cells = "  ".join(
            f"{phase}: {r['success']:5.1f}% ok, {r['fee_bps']:4.1f} bps fee, "
            f"{int(r['technical'])} lost to technical errors"
            for phase, r in results.items()
        )
        print(f"  {label:18s} {cells}")
    if args.json:
        print(json.dumps({"benchmark": "routing", "decision_p50_us": round(p50, 1),
                          "decision_p99_us": round(p99, 1),
                          "decision_p99_target_us": TARGET_P99_US,
                          "decision_with_explanation_p50_us": round(e50, 1),
                          "decision_with_explanation_p99_us": round(e99, 1),
                          "steady_work_p50_us": round(s50, 1),
                          "steady_work_p99_us": round(s99, 1),
                          "simulation": simulation}))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())

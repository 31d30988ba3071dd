"""Full payment lifecycles through separate processes over loopback HTTP, against the targets.

    create (merchant → gateway → channel sandbox) → customer pays (sandbox control API)
    → signed notification (sandbox → gateway inbox) → signed webhook (worker → merchant)

Processes (bench/kit/stack.py): the channel sandboxes (WeChat Pay + Alipay, real signatures), a
merchant webhook receiver, N gateway API processes (``paymux serve --workers N``), M ``paymux
worker`` processes (on SQLite: one API process with the worker inside, as SQLite is deployed),
and this driver, all on this machine. Per database it prints, each figure beside its target:

- lifecycles/s: ``--payments`` payments, closed loop, from the first create to the last webhook
  received; on PostgreSQL beside pgbench's TPC-B rate measured in the same run (after the
  gateway has stopped, on the same database);
- the CPU milliseconds each process (and PostgreSQL) spent per lifecycle, from /proc; the
  gateway's own is API + worker;
- create latency p50/p99 at half that load (open loop) and the gateway's overhead (latency minus
  the channel time the gateway reports per request in ``Paymux-Channel-Time-Ms``);
- idle RSS of each API process after the warm-up;
- create latency with each hot-path feature the gateway declares on and off (a feature is a
  ``feature_<name>: bool`` field of ``paymux.config.Settings``, toggled per process with
  ``PAYMUX_FEATURE_<NAME>``; ``--feature NAME=on|off`` sets one for the whole run);
- with ``--scaling`` (PostgreSQL): lifecycles/s with 1 and 2 API processes, and webhook
  deliveries/s from a backlog with 1 and 2 workers, with where the CPU went;
- with ``--soak-seconds S``: RSS of each API process every minute under half load, and its growth.

    python bench/lifecycle.py                      # SQLite, then PostgreSQL if reachable
    python bench/lifecycle.py --only postgresql --scaling --json
    python bench/lifecycle.py --only postgresql --payments 3000 --api 2 --workers 1
    python bench/lifecycle.py --only postgresql --soak-seconds 1800     # the 30-minute soak
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.measure import pct, rss_mb
from kit.pg import have_pgbench, pgbench_init, pgbench_tpcb, reachable
from kit.stack import Driver, Meter, Stack, Usage, cpu_by_role, run_receiver, run_sandbox, until
from sqlalchemy.engine import make_url

PG_URL = os.environ.get(
    "PAYMUX_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/paymux_bench_lifecycle"
)
"""The bench's own database (created on first use, its schema reset every run): never the
test suite's, which may be running at the same time."""
GATEWAY_ROLES = ("api", "worker")  # role names (worker1, worker2, …) that are the gateway's own
FLAT_MB = 10.0
"""RSS growth over a soak that still counts as flat (allocator and cache noise)."""


# ------------------------------------------------------------------ features
def declared_features() -> list[str]:
    """The hot-path features the gateway declares: ``feature_<name>: bool`` in Settings."""
    from paymux.config import Settings

    return sorted(
        n.removeprefix("feature_") for n in Settings.model_fields if n.startswith("feature_")
    )


def feature_env(states: dict[str, bool]) -> dict[str, str]:
    return {f"PAYMUX_FEATURE_{name.upper()}": str(on).lower() for name, on in states.items()}


def parse_features(values: list[str], declared: list[str]) -> dict[str, bool]:
    states = {}
    for value in values:
        name, _, state = value.partition("=")
        if name not in declared or state not in ("on", "off"):
            known = ", ".join(declared) or "none yet"
            raise SystemExit(f"--feature {value}: want NAME=on|off, NAME one of: {known}")
        states[name] = state == "on"
    return states


# ------------------------------------------------------------------ phases
@dataclass
class Config:
    api: int
    workers: int
    env: dict[str, str]


async def throughput(
    stack: Stack, driver: Driver, n: int, args: argparse.Namespace, warmup: int
) -> dict[str, Any]:
    """Warm-up, idle RSS of the API processes, then ``n`` lifecycles (closed loop) with the
    CPU each role spent on them."""
    await driver.closed_loop(warmup, args.concurrency)
    await asyncio.sleep(2)  # idle: the warm-up's webhooks are in, nothing is due
    rss = [round(rss_mb(pid), 1) for pid in stack.api_pids()]
    driver.reset()
    meter = Meter(stack.roles())
    rate = await driver.closed_loop(n, args.concurrency)
    usage = meter.stop()
    if stack.db == "sqlite":
        del usage.cpu["postgres"]
    cpu = usage.ms_per(n)
    return {
        "lifecycles_per_s": round(rate, 1),
        "errors": driver.errors,
        "missing_webhooks": driver.missing,
        "usage": usage,
        "cpu_ms_per_lifecycle": cpu,
        "gateway_cpu_ms_per_lifecycle": round(
            sum(v for role, v in cpu.items() if role.startswith(GATEWAY_ROLES)), 2
        ),
        "api_rss_idle_mb": rss,
    }


async def latency(driver: Driver, rate: float, seconds: float) -> dict[str, float]:
    """Create latency, channel time and the gateway's overhead at ``rate`` (open loop)."""
    driver.reset()
    await driver.open_loop(rate, seconds)
    overhead = [a - b for a, b in zip(driver.latencies, driver.channel_ms, strict=True)]
    return {
        "create_p50_ms": round(pct(driver.latencies, 0.5), 1),
        "create_p99_ms": round(pct(driver.latencies, 0.99), 1),
        "channel_p50_ms": round(pct(driver.channel_ms, 0.5), 1),
        "create_overhead_p50_ms": round(pct(overhead, 0.5), 1),
        "create_overhead_p99_ms": round(pct(overhead, 0.99), 1),
        "creates": len(driver.latencies),
        "create_errors": driver.errors,
    }


async def features(
    stack: Stack,
    driver: Driver,
    base: Config,
    states: dict[str, bool],
    rate: float,
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    """Create latency at ``rate`` with each declared feature on and then off (the others as
    the run has them), each on freshly started gateway processes after a short warm-up."""
    table: dict[str, dict[str, Any]] = {}
    for name in declared_features():
        table[name] = {}
        for state in ("on", "off"):
            env = {**base.env, **feature_env({**states, name: state == "on"})}
            await stack.start_gateway(base.api, base.workers, env)
            await driver.closed_loop(min(100, args.payments), args.concurrency)
            table[name][state] = await latency(driver, rate, args.seconds)
    return table


async def soak(stack: Stack, driver: Driver, rate: float, seconds: float) -> dict[str, Any]:
    """Half load for ``seconds``, RSS of each API process sampled every minute (every quarter
    of a shorter soak) and printed as it goes."""
    step = 60.0 if seconds >= 120 else max(1.0, seconds / 4)
    pids = stack.api_pids()
    samples = [{"t_s": 0, "rss_mb": [round(rss_mb(p), 1) for p in pids]}]
    print(f"{'':>12}soak at {rate:.1f}/s for {seconds:g} s; RSS MB per API process:", flush=True)
    print(f"{'':>14}{_clock(0)}  {samples[0]['rss_mb']}", flush=True)
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds - 0.5:
        figures = await latency(driver, rate, min(step, seconds - elapsed))
        t = round(time.perf_counter() - started)
        samples.append(
            {
                "t_s": t,
                "rss_mb": [round(rss_mb(p), 1) for p in pids],
                "create_p99_ms": figures["create_p99_ms"],
            }
        )
        print(
            f"{'':>14}{_clock(t)}  {samples[-1]['rss_mb']}  (create p50 "
            f"{figures['create_p50_ms']} ms, p99 {figures['create_p99_ms']} ms, "
            f"errors {figures['create_errors']})",
            flush=True,
        )
    first, last = samples[0]["rss_mb"], samples[-1]["rss_mb"]
    growth = max(b - a for a, b in zip(first, last, strict=True))
    return {
        "seconds": seconds,
        "rate": round(rate, 1),
        "samples": samples,
        "rss_growth_mb": round(growth, 1),
    }


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60:>3}:{int(seconds) % 60:02d}"


def limit(usage: Usage, cores: int) -> str:
    """What most likely bounded a phase, from where the CPU went."""
    by = usage.cores()
    pg, busy = by.get("postgres", 0.0), usage.busy / usage.wall
    gateway = sum(v for r, v in by.items() if r.startswith(GATEWAY_ROLES))
    rest = sum(v for r, v in by.items() if r in ("driver", "sandboxes", "receiver"))
    shares = (
        f"gateway {gateway:.2f}, PostgreSQL {pg:.2f}, sandboxes+receiver+driver "
        f"{rest:.2f}, other processes {max(0.0, busy - gateway - pg - rest):.2f} cores"
    )
    if pg >= 0.85:
        return f"the database ({shares})"
    if busy >= 0.85 * cores:
        return f"the machine's {cores} cores, not the database ({shares})"
    return f"waiting: round trips, locks, polling ({shares}; {busy:.2f} of {cores} cores busy)"


async def api_scaling(
    stack: Stack, driver: Driver, base: Config, main: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Lifecycles/s with 1 and with 2 API processes (the same workers and load)."""
    runs = {}
    for n in (1, 2):
        if n == base.api:
            runs[n] = main
            continue
        await stack.start_gateway(n, base.workers, base.env)
        runs[n] = await throughput(stack, driver, args.payments, args, min(100, args.payments))
    cores = os.cpu_count() or 1
    pg_ms = runs[2]["cpu_ms_per_lifecycle"].get("postgres", 0.0)
    return {
        "api1_per_s": runs[1]["lifecycles_per_s"],
        "api2_per_s": runs[2]["lifecycles_per_s"],
        "ratio": round(runs[2]["lifecycles_per_s"] / runs[1]["lifecycles_per_s"], 2),
        "api1_limit": limit(runs[1]["usage"], cores),
        "api2_limit": limit(runs[2]["usage"], cores),
        # PostgreSQL becomes the limit where its CPU per lifecycle fills the cores it gets.
        "database_limit_per_core_per_s": round(1000 / pg_ms) if pg_ms else None,
    }


async def worker_scaling(
    stack: Stack, driver: Driver, base: Config, args: argparse.Namespace
) -> dict[str, Any]:
    """Webhook deliveries/s from a backlog of ``--backlog`` pending events (payments created
    and paid with no worker running), with 1 and then 2 workers started on it."""
    await stack.start_gateway(base.api, 0, base.env)
    out: dict[str, Any] = {"backlog": args.backlog}
    cores = os.cpu_count() or 1
    for n in (1, 2):
        driver.reset()
        await driver.create_and_pay(args.backlog, args.concurrency)
        want = args.backlog - driver.errors

        async def backlogged() -> bool:  # the sandbox's notifications may still be landing
            return await stack.pending_deliveries() >= want

        await until(backlogged, 120)
        pending, start = await stack.pending_deliveries(), await driver.delivered()
        stack.start_workers(n)
        await driver.wait_delivered(start + 1)  # CPU from here: not the worker's start-up
        meter = Meter(stack.roles())
        missing = await driver.wait_delivered(start + pending)
        usage = meter.stop()
        stack.stop_workers()
        # From the first delivery to the last, as the receiver saw them: a worker process takes
        # a while to start, which is not delivery.
        times = await driver.arrivals(start)
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        out[f"workers{n}_per_s"] = round((len(times) - 1) / span, 1) if span else None
        out[f"workers{n}_limit"] = limit(usage, cores)
        out[f"workers{n}_missing"] = missing
    one, two = out["workers1_per_s"], out["workers2_per_s"]
    out["ratio"] = round(two / one, 2) if one and two else None
    return out


async def pgbench(db_url: str, args: argparse.Namespace) -> dict[str, float]:
    """pgbench TPC-B-like on the bench's database, and PostgreSQL's CPU per transaction."""
    url = make_url(db_url)
    await pgbench_init(url, url.database or "", scale=args.pgbench_scale)
    before = cpu_by_role({"driver": os.getpid()})["postgres"]
    run = await pgbench_tpcb(
        url, url.database or "", clients=args.pgbench_clients, seconds=args.pgbench_seconds
    )
    used = cpu_by_role({"driver": os.getpid()})["postgres"] - before
    return {
        "pgbench_tps": round(run.tps, 1),
        "pgbench_postgres_ms_per_tx": round(used * 1000 / run.transactions, 3),
    }


async def bench(db: str, args: argparse.Namespace, states: dict[str, bool]) -> dict[str, Any]:
    stack = Stack(db, PG_URL, args.pool_size)
    base = Config(
        1 if db == "sqlite" else args.api,
        0 if db == "sqlite" else args.workers,
        feature_env(states),
    )
    result: dict[str, Any] = {
        "database": db,
        "api_processes": base.api,
        "worker_processes": base.workers,
        "payments": args.payments,
        "features_set": states,
    }
    async with stack:
        await stack.start_gateway(base.api, base.workers, base.env)
        driver = Driver(stack)
        try:
            progress(db, f"{args.payments} lifecycles, closed loop")
            main = await throughput(stack, driver, args.payments, args, min(200, args.payments))
            result.update({k: v for k, v in main.items() if k != "usage"})
            result["limit"] = limit(main["usage"], os.cpu_count() or 1)
            rate = main["lifecycles_per_s"] / 2
            result["half_load_rate"] = round(rate, 1)
            progress(db, f"{main['lifecycles_per_s']}/s; create latency at {rate:.1f}/s")
            result.update(await latency(driver, rate, args.seconds))
            if args.soak_seconds:
                result["soak"] = await soak(stack, driver, rate, args.soak_seconds)
            result["features"] = await features(stack, driver, base, states, rate, args)
            if args.scaling and db == "postgresql":
                progress(db, "1 vs 2 API processes")
                result["api_scaling"] = await api_scaling(stack, driver, base, main, args)
                progress(db, f"1 vs 2 workers on a backlog of {args.backlog} webhooks")
                result["worker_scaling"] = await worker_scaling(stack, driver, base, args)
        finally:
            await driver.client.aclose()
    if db == "postgresql" and not args.no_pgbench:
        if have_pgbench():
            progress(db, "pgbench TPC-B")
            result.update(await pgbench(PG_URL, args))
            result["pgbench_ratio"] = round(result["lifecycles_per_s"] / result["pgbench_tps"], 4)
            pg_ms = result["cpu_ms_per_lifecycle"].get("postgres", 0.0)
            per_tx = result["pgbench_postgres_ms_per_tx"]
            result["postgres_tpcb_equivalents"] = round(pg_ms / per_tx, 1) if per_tx else None
        else:
            print("pgbench is not on PATH (Debian: apt install postgresql-client)", flush=True)
    result["targets"] = targets(result)
    return result


# ------------------------------------------------------------------ report
def progress(db: str, what: str) -> None:
    print(f"  … {db}: {what}", flush=True)


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each figure of issue 11 beside its target: name, value, target, met (None: not
    measured in this run)."""
    pg = r["database"] == "postgresql"
    api_s, work_s, soaked = r.get("api_scaling"), r.get("worker_scaling"), r.get("soak")
    rss = max(r["api_rss_idle_mb"])
    rows = [
        (
            "gateway CPU per lifecycle (API + worker)",
            r["gateway_cpu_ms_per_lifecycle"],
            "ms",
            "≤",
            10.0,
        ),
        ("lifecycles/s", r["lifecycles_per_s"], "/s", "≥", 120.0) if pg else None,
        ("create overhead p50 at half load", r["create_overhead_p50_ms"], "ms", "≤", 3.0),
        ("create overhead p99 at half load", r["create_overhead_p99_ms"], "ms", "≤", 15.0),
        ("2 API processes / 1, lifecycles/s", api_s and api_s["ratio"], "×", "≥", 1.7)
        if pg
        else None,
        ("2 workers / 1, webhook deliveries/s", work_s and work_s["ratio"], "×", "≥", 1.7)
        if pg
        else None,
        ("idle RSS per API process (largest)", rss, "MB", "≤", 120.0),
        ("RSS growth over the soak", soaked and soaked["rss_growth_mb"], "MB", "≤", FLAT_MB),
    ]
    out = []
    for row in rows:
        if row is None:
            continue
        name, value, unit, op, target = row
        met = None if value is None else (value <= target if op == "≤" else value >= target)
        out.append(
            {"name": name, "value": value, "unit": unit, "target": f"{op} {target:g}", "met": met}
        )
    return out


HOW = {
    "2 API processes / 1, lifecycles/s": "--scaling",
    "2 workers / 1, webhook deliveries/s": "--scaling",
    "RSS growth over the soak": "--soak-seconds 1800",
}


def report(r: dict[str, Any]) -> None:
    setup = (
        f"{r['api_processes']} API + {r['worker_processes']} worker processes"
        if r["worker_processes"]
        else "1 process with its worker inside"
    )
    cpu = r["cpu_ms_per_lifecycle"]
    lines = [
        f"\n{r['database']}: {r['lifecycles_per_s']} lifecycles/s ({setup}, {r['payments']} "
        f"payments, errors {r['errors']}, webhooks missing {r['missing_webhooks']}); "
        f"limited by {r['limit']}",
        f"  CPU ms per lifecycle: {', '.join(f'{k} {v}' for k, v in cpu.items())} "
        f"(total {sum(cpu.values()):.1f}; gateway {r['gateway_cpu_ms_per_lifecycle']})",
        f"  at {r['half_load_rate']}/s: create p50 {r['create_p50_ms']} ms, p99 "
        f"{r['create_p99_ms']} ms; channel p50 {r['channel_p50_ms']} ms; gateway overhead p50 "
        f"{r['create_overhead_p50_ms']} ms, p99 {r['create_overhead_p99_ms']} ms "
        f"({r['creates']} creates, errors {r['create_errors']})",
        f"  idle RSS per API process: {', '.join(f'{v} MB' for v in r['api_rss_idle_mb'])}",
    ]
    if "pgbench_tps" in r:
        lines.append(
            f"  pgbench TPC-B (same run, same database): {r['pgbench_tps']:,.0f} tps; lifecycles/"
            f"s ÷ pgbench tps = {r['pgbench_ratio']:.4f}; a lifecycle costs PostgreSQL the CPU of "
            f"{r['postgres_tpcb_equivalents']} TPC-B transactions"
        )
    lines += feature_lines(r)
    if s := r.get("api_scaling"):
        lines += [
            f"  API scaling: 1 API process {s['api1_per_s']}/s, 2: {s['api2_per_s']}/s "
            f"= {s['ratio']}×",
            f"    1 API limited by {s['api1_limit']}",
            f"    2 API limited by {s['api2_limit']}",
            f"    PostgreSQL would be the limit at ~{s['database_limit_per_core_per_s']} "
            "lifecycles/s per core it has to itself",
        ]
    if s := r.get("worker_scaling"):
        lines += [
            f"  worker scaling, a backlog of {s['backlog']} webhooks: 1 worker "
            f"{s['workers1_per_s']} deliveries/s, 2: {s['workers2_per_s']}/s = "
            f"{s['ratio']}×",
            f"    1 worker limited by {s['workers1_limit']}",
            f"    2 workers limited by {s['workers2_limit']}",
        ]
    lines.append(f"  {'target':<40}{'measured':>12}  {'target':<10}")
    for t in r["targets"]:
        value = "—" if t["value"] is None else f"{t['value']:g} {t['unit']}"
        verdict = {True: "met", False: "NOT met", None: f"not measured ({HOW.get(t['name'])})"}
        lines.append(
            f"  {t['name']:<40}{value:>12}  {t['target'] + ' ' + t['unit']:<10}  "
            f"{verdict[t['met']]}"
        )
    print("\n".join(lines), flush=True)


def feature_lines(r: dict[str, Any]) -> list[str]:
    if not r["features"]:
        return [
            "  hot-path features: none declared yet (a `feature_<name>: bool` in Settings "
            "gets a row here: create p50/p99 with it on / off)"
        ]
    lines = [
        f"  create latency at {r['half_load_rate']}/s with each feature on / off:",
        f"    {'feature':<16}{'on: p50 / p99 ms':>20}{'off: p50 / p99 ms':>20}"
        f"{'overhead on / off p99':>24}",
    ]
    for name, by in r["features"].items():
        on, off = by["on"], by["off"]
        lines.append(
            f"    {name:<16}{on['create_p50_ms']:>10} / {on['create_p99_ms']:<7}"
            f"{off['create_p50_ms']:>10} / {off['create_p99_ms']:<7}"
            f"{on['create_overhead_p99_ms']:>12} / {off['create_overhead_p99_ms']}"
        )
    return lines


JSON_TOP = (
    "database",
    "lifecycles_per_s",
    "gateway_cpu_ms_per_lifecycle",
    "pgbench_tps",
    "pgbench_ratio",
    "create_overhead_p50_ms",
    "create_overhead_p99_ms",
    "create_p50_ms",
    "create_p99_ms",
    "api_processes",
    "worker_processes",
    "api_rss_idle_mb",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--payments", type=int, default=1000, help="lifecycles measured")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0, help="each half-load phase")
    parser.add_argument("--api", type=int, default=2, help="API processes on PostgreSQL")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on PostgreSQL")
    parser.add_argument(
        "--feature",
        action="append",
        default=[],
        metavar="NAME=on|off",
        help="a hot-path feature's state for the whole run (repeatable)",
    )
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="PostgreSQL: 1 vs 2 API processes, 1 vs 2 workers on a backlog",
    )
    parser.add_argument("--backlog", type=int, default=500, help="webhooks for worker scaling")
    parser.add_argument(
        "--soak-seconds",
        type=float,
        default=0.0,
        help="half load this long, RSS every minute (the issue's: 1800)",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=10,
        help="PAYMUX_DB_POOL_SIZE of each gateway process (and as many overflow): PostgreSQL's "
        "max_connections must hold (API processes + workers) × 2 × this",
    )
    parser.add_argument("--pgbench-seconds", type=float, default=10.0)
    parser.add_argument("--pgbench-clients", type=int, default=8)
    parser.add_argument("--pgbench-scale", type=int, default=10)
    parser.add_argument("--no-pgbench", action="store_true")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    # the helper processes a run starts (kit.stack.Stack): not for people
    parser.add_argument("--role", choices=["bench", "sandbox", "receiver"], default="bench",
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "sandbox":
        return run_sandbox(args.port, args.out)
    if args.role == "receiver":
        return run_receiver(args.port)
    states = parse_features(args.feature, declared_features())
    # `timeout` or Ctrl-C: unwind through the stack's exit, which stops the child processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pg = reachable(PG_URL)
    if args.only == "postgresql" and not pg:
        raise SystemExit(f"PostgreSQL is not reachable at {make_url(PG_URL).host}")
    dbs = [args.only] if args.only else ["sqlite"] + (["postgresql"] if pg else [])
    print(
        f"paymux lifecycle benchmark on {os.cpu_count()} cores (the sandboxes, the receiver "
        "and this driver share them with the gateway and PostgreSQL)",
        flush=True,
    )
    results = []
    for db in dbs:
        result = asyncio.run(bench(db, args, states))
        results.append(result)
        report(result)
    if args.json:
        top = {k: results[-1].get(k) for k in JSON_TOP}
        print(
            json.dumps({"benchmark": "lifecycle", "cores": os.cpu_count(), **top, "runs": results})
        )


if __name__ == "__main__":
    main()

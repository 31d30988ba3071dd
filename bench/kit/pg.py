"""PostgreSQL helpers the benchmarks share: pgbench's builtin TPC-B-like script as the yardstick
(``bench/ledger.py`` and ``bench/lifecycle.py`` both print their rates against it, measured in
the same run), and the bench databases' creation."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url


def pg_env(url: URL) -> dict[str, str]:
    """The environment pgbench and psql need to reach the server ``url`` names."""
    env = {**os.environ, "PGHOST": url.host or "127.0.0.1", "PGPORT": str(url.port or 5432)}
    if url.username:
        env["PGUSER"] = url.username
    if url.password:
        env["PGPASSWORD"] = url.password
    return env


async def run(cmd: list[str], env: dict[str, str]) -> str:
    """Run a command to its end (killed if this bench is interrupted); its output."""
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{text}")
    return text


def read_pgbench_logs(directory: Path) -> list[float]:
    """Seconds per transaction from pgbench's logs (``-l``; one file per thread), whose lines
    are: client, transaction number, elapsed µs, script, epoch seconds, µs."""
    return [int(line.split()[2]) / 1e6 for log in directory.iterdir() for line in log.open()]


@dataclass
class PgbenchRun:
    tps: float
    """pgbench's own rate, without connection set-up."""
    transactions: int


def have_pgbench() -> bool:
    return shutil.which("pgbench") is not None


async def pgbench_init(url: URL, database: str, *, scale: int) -> None:
    """``pgbench -i -s scale``: (re)create pgbench's tables in ``database``."""
    await run(["pgbench", "-i", "-q", "-s", str(scale), database], pg_env(url))


async def pgbench_tpcb(
    url: URL, database: str, *, clients: int, seconds: float, log_prefix: str | None = None
) -> PgbenchRun:
    """pgbench's builtin TPC-B-like script on ``database`` (initialised by
    :func:`pgbench_init`); with ``log_prefix``, per-transaction logs are written there."""
    cmd = ["pgbench", "-c", str(clients), "-j", str(min(2, clients)),
           "-T", str(max(1, round(seconds))), "-M", "prepared"]  # fmt: skip
    if log_prefix:
        cmd += ["-l", "--log-prefix", log_prefix]
    out = await run([*cmd, database], pg_env(url))
    tps = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", out, re.M)
    done = re.search(r"^number of transactions actually processed: (\d+)", out, re.M)
    if tps is None or done is None:
        raise RuntimeError(f"unexpected pgbench output:\n{out}")
    return PgbenchRun(float(tps.group(1)), int(done.group(1)))


async def ensure_database(url: str) -> None:
    """Create the database ``url`` names if the server does not have it yet."""
    import asyncpg

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


async def fresh_schema(url: str) -> None:
    """The database ``url`` names, with an empty public schema migrated to head."""
    import sqlalchemy as sa

    from paymux.kit import migrate
    from paymux.kit.db import create_engine

    await ensure_database(url)
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        await conn.execute(sa.text("CREATE SCHEMA public"))
    await engine.dispose()
    await migrate.upgrade(url)


def reachable(url: str) -> bool:
    """Whether something listens where ``url`` points (a quick check before a PostgreSQL run)."""
    target = make_url(url)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((target.host or "127.0.0.1", target.port or 5432)) == 0

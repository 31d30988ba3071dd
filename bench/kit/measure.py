"""What the benchmarks read of the machine (Linux ``/proc``) and how they summarise latencies."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Proc:
    ppid: int
    name: str
    cpu: float
    """CPU seconds used by the process itself."""
    children_cpu: float
    """CPU seconds of its children that have exited and been waited for."""


def proc_table() -> dict[int, Proc]:
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
        f = raw[raw.rindex(")") + 2 :].split()
        table[int(entry.name)] = Proc(
            int(f[1]), name, (int(f[11]) + int(f[12])) / ticks, (int(f[13]) + int(f[14])) / ticks
        )
    return table


def machine_busy() -> float:
    """CPU seconds all cores have been busy since boot (``/proc/stat``: all but idle, iowait)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def postgres_cpu(table: dict[int, Proc] | None = None) -> float:
    """CPU seconds the PostgreSQL server has used so far: its live processes plus the backends
    that have exited (the postmaster waits for them, so they are in its children's times)."""
    procs = proc_table() if table is None else table
    return sum(p.cpu + p.children_cpu for p in procs.values() if p.name == "postgres")


def rss_mb(pid: int) -> float:
    """Resident memory of one process (``VmRSS``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

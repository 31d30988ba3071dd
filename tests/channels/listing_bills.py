"""What the Stripe and PayPal bill tests share (both bills are a day's API listing written down
as JSON Lines, :mod:`paymux.channels.bill_listing`): golden files, the clock moved past the bill
day, and a pass over a large bill's lines."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from paymux.channels.base import StatementLine, StatementLineKind
from paymux.channels.bills import BillReader
from paymux.kit import clock

GOLDEN = Path(__file__).parent / "golden"


# ---------------------------------------------------------------- golden files
def line_dict(line: StatementLine) -> dict[str, Any]:
    out = {f.name: getattr(line, f.name) for f in dataclasses.fields(line) if f.name != "raw"}
    out["kind"] = line.kind.value
    out["occurred_at"] = line.occurred_at.isoformat() if line.occurred_at else None
    return out


def outcome(reader: BillReader) -> dict[str, Any]:
    """What a reader made of a file: its lines (without ``raw``), problems and checks."""
    lines = [line_dict(line) for line in reader.lines()]
    return {
        "lines": lines,
        "problems": [dataclasses.asdict(p) for p in reader.problems],
        "checks": [dataclasses.asdict(c) for c in reader.checks],
        "intact": reader.intact,
    }


def golden_cases(channel: str) -> list[Path]:
    return sorted(p for p in (GOLDEN / channel).iterdir() if not p.name.endswith(".json"))


def compare_golden(reader: BillReader, path: Path) -> dict[str, Any]:
    got = outcome(reader)
    expected_path = path.with_name(path.stem + ".expected.json")
    if os.environ.get("PAYMUX_REGEN_GOLDEN"):
        expected_path.write_text(json.dumps(got, indent=2, ensure_ascii=False) + "\n", "utf-8")
    assert got == json.loads(expected_path.read_text("utf-8")), path.name
    return got


# ---------------------------------------------------------------- bill days
@contextlib.contextmanager
def days_later(days: int) -> Iterator[None]:
    """The clock ``days`` on: a UTC day's listing is the bill once the day is over."""
    shifted = clock.OffsetClock()
    previous = clock.set_clock(shifted)
    shifted.advance(86_400 * days)
    try:
        yield
    finally:
        clock.set_clock(previous)


def today() -> dt.date:
    return clock.now().astimezone(dt.UTC).date()


def payments_of(lines: list[StatementLine], attempt: str) -> list[StatementLine]:
    return [x for x in lines if x.kind is StatementLineKind.payment and x.out_trade_no == attempt]


# ---------------------------------------------------------------- bounded memory
def consume(lines: Iterator[StatementLine]) -> tuple[int, int]:
    count = total = 0
    for line in lines:
        count += 1
        total += line.amount
    return count, total

"""Golden bill files (``tests/channels/golden/<channel>/``): each hand-written bill beside
``<name>.expected.json``, what its channel's reader must make of it — the lines (as dicts,
``raw`` left out), the problems and the checks. ``PAYMUX_WRITE_GOLDEN=1`` writes the JSON from
the reader instead of comparing (then read the diff before committing it)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from paymux.channels.bills import BillReader

GOLDEN = Path(__file__).parent / "golden"


def bills_of(channel: str, funds: bool = False) -> list[Path]:
    """The channel's golden trade bills (``funds``: its fund-flow bills, named ``funds_*``)."""
    return sorted(
        p for p in (GOLDEN / channel).iterdir()
        if not p.name.endswith(".json") and p.name.startswith("funds_") == funds
    )  # fmt: skip


def output(reader: BillReader) -> dict[str, Any]:
    """One pass of ``reader``, as JSON."""
    lines = []
    for line in reader.lines():
        fields = {f.name: getattr(line, f.name) for f in dataclasses.fields(line)}
        fields.pop("raw")
        if fields["balance"] is None:  # trade bills say no balance: their files predate it
            fields.pop("balance")
        fields["kind"] = line.kind.value
        fields["occurred_at"] = line.occurred_at.isoformat() if line.occurred_at else None
        lines.append(fields)
    return {
        "lines": lines,
        "problems": [dataclasses.asdict(p) for p in reader.problems],
        "checks": [dataclasses.asdict(c) for c in reader.checks],
        "intact": reader.intact,
    }


def compare(bill: Path, reader: BillReader) -> None:
    got = output(reader)
    expected = bill.with_name(bill.name + ".expected.json")
    if os.environ.get("PAYMUX_WRITE_GOLDEN") == "1":
        text = json.dumps(got, ensure_ascii=False, indent=2)
        expected.write_text(text + "\n", encoding="utf-8")
    assert got == json.loads(expected.read_text(encoding="utf-8"))


def json_of(bill: Path) -> Any:
    """The expected outcome stored beside ``bill``."""
    return json.loads(bill.with_name(bill.name + ".expected.json").read_text(encoding="utf-8"))

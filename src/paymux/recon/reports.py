"""A run's report: the daily statement per currency (channel total, our total, what matched,
what each break class explains, what is carried, the residual, the verdict, the ageing of the
breaks) and its breaks, as JSON, CSV or XLSX. Output is deterministic — sorted, no clock — so a
report's SHA-256 (recorded on the run) proves later that a file is the one the run produced."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from typing import Any

from paymux.recon.models import ReconBreak, ReconRun
from paymux.recon.schemas import BreakOut

AGEING = ((0, 1, "0-1d"), (2, 3, "2-3d"), (4, 7, "4-7d"), (8, 30, "8-30d"), (31, 10**6, ">30d"))
BREAK_COLUMNS = ("id", "class", "priority", "state", "resolution", "kind", "key", "currency",
                 "channel_amount", "local_amount", "delta", "channel_fee", "local_fee",
                 "channel_ref", "payment_id", "refund_id", "first_bill_date",
                 "last_bill_date", "age_days", "detail")  # fmt: skip
STATEMENT_COLUMNS = ("currency", "verdict", "channel_count", "channel_amount", "channel_fee",
                     "channel_net", "books", "matched_count", "matched_net", "pending_count",
                     "pending_delta", "residual")  # fmt: skip


def _break_rows(r: ReconRun, breaks: Sequence[ReconBreak]) -> list[dict[str, Any]]:
    rows = [BreakOut.of(b, r.bill_date).model_dump(mode="json", by_alias=True) for b in breaks]
    return sorted(rows, key=lambda row: (row["priority"], row["class"], row["key"]))


def _ageing(rows: list[dict[str, Any]]) -> dict[str, int]:
    out = {label: 0 for _, _, label in AGEING}
    for row in rows:
        for low, high, label in AGEING:
            if low <= row["age_days"] <= high:
                out[label] += 1
    return out


def run_document(r: ReconRun, breaks: Sequence[ReconBreak]) -> dict[str, Any]:
    rows = _break_rows(r, breaks)
    return {
        "run": {"id": r.id, "channel_account_id": r.channel_account_id, "channel": r.channel,
                "bill_date": r.bill_date.isoformat(), "bill": r.bill or "trade",
                "run_no": r.run_no,
                "verdict": r.verdict, "reasons": list(r.reasons or []),
                "checks": list(r.checks or []), "problems": list(r.problems or []),
                "line_count": r.line_count},
        "statement": dict(sorted((r.totals or {}).get("currencies", {}).items())),
        "other_lines": (r.totals or {}).get("other_lines", 0),
        "counted": (r.totals or {}).get("counted", []),
        "settlements": (r.totals or {}).get("settlements", []),
        "balance": (r.totals or {}).get("balance", {}),
        "ageing": _ageing(rows),
        "breaks": rows,
    }  # fmt: skip


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(document)).hexdigest()


def statement_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for currency, t in document["statement"].items():
        out.append({
            "currency": currency, "verdict": document["run"]["verdict"],
            "channel_count": t["channel"]["count"], "channel_amount": t["channel"]["amount"],
            "channel_fee": t["channel"]["fee"], "channel_net": t["channel"]["net"],
            "books": t["books"], "matched_count": t["matched"]["count"],
            "matched_net": t["matched"]["net"], "pending_count": t["pending"]["count"],
            "pending_delta": t["pending"]["delta"], "residual": t["residual"],
        })  # fmt: skip
    return out


def to_csv(document: dict[str, Any]) -> Iterator[str]:
    """The statement, a blank line, then the breaks (UTF-8 with BOM for spreadsheet programs)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield "\ufeff"
    writer.writerow(STATEMENT_COLUMNS)
    for row in statement_rows(document):
        writer.writerow([row[c] for c in STATEMENT_COLUMNS])
    writer.writerow([])
    writer.writerow(BREAK_COLUMNS)
    yield flush()
    for row in document["breaks"]:
        writer.writerow(["" if row[c] is None else row[c] for c in BREAK_COLUMNS])
        yield flush()


def to_xlsx(document: dict[str, Any]) -> bytes:
    """Two sheets, written with openpyxl's write-only workbook (rows streamed, not held)."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("statement")
    sheet.append(list(STATEMENT_COLUMNS))
    for row in statement_rows(document):
        sheet.append([row[c] for c in STATEMENT_COLUMNS])
    breaks = book.create_sheet("breaks")
    breaks.append(list(BREAK_COLUMNS))
    for row in document["breaks"]:
        breaks.append(["" if row[c] is None else row[c] for c in BREAK_COLUMNS])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()

"""PayPal's daily bill: the UTC day's Transaction Search rows, as the adapter writes them down.

PayPal's record of money moving on an account is Transaction Search (``GET
/v1/reporting/transactions``, PayPal REST reference "Transaction Search"; PROTOCOLS.md). Facts
relied on:

- query ``start_date`` / ``end_date`` (RFC 3339, at most 31 days apart), ``fields``,
  ``page_size`` (1..500), ``page`` (from 1); each answer carries ``transaction_details`` (the
  rows of that page), ``page``, ``total_pages``, ``total_items`` (rows in the whole result)
  and ``last_refreshed_datetime`` (the data is complete up to then: a transaction appears up to
  about three hours after it happened) — the listing is read to its end at ``page ==
  total_pages``;
- a row's ``transaction_info``: ``transaction_id``, ``transaction_event_code`` (T00xx
  payments — T0006 an Orders v2 checkout capture; T1107 a refund; T11xx otherwise reversals
  and holds; T04xx withdrawals), ``transaction_status`` (S success, P pending, D denied, V
  reversed), ``transaction_amount`` and ``fee_amount`` as ``{"currency_code", "value"}``
  with a signed decimal string (``"-5.00"``; the fee charged is negative, a fee given back on
  a refund positive), ``invoice_id``, ``custom_field``, ``paypal_reference_id`` (the order of
  a capture, the capture of a refund), ``transaction_initiation_date``.

Amounts are decimal strings read with :class:`~decimal.Decimal` into integer minor units; a
value finer than the currency allows or a currency PayPal does not take is an unreadable row.
Mapping: T00xx → payment (fee = −``fee_amount``: positive when charged), T1107 → refund
(negative; ``invoice_id`` is our refund id), anything else — and any row with status D
(denied: no money moved) — → other. ``custom_field`` is our
attempt id on every row, ``channel_trade_no`` the ``paypal_reference_id``.

The file (JSON Lines, UTF-8), so it reads line by line in bounded memory:

1. a header ``{"object": "paymux.paypal_bill", "day": "2026-12-01"}``;
2. one line per page, the API's answer as received except that line breaks between JSON tokens
   become spaces;
3. a trailer ``{"object": "end", "pages": N, "count": M}`` once the last page was read.

A day without any transaction is no file at all. Integrity checks: ``end_line`` (the trailer
exists), ``listing_complete`` (the last page is page ``total_pages``), ``page_count`` and
``row_count`` (the trailer against what was read), ``total_items`` (PayPal's own count against
the rows read) and ``fetched_count`` when the fetch reported its count.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from typing import IO, Any

from paymux.channels import base
from paymux.channels.bills import BillReader
from paymux.channels.paypal import protocol

BILL_OBJECT = "paymux.paypal_bill"
END_OBJECT = "end"
MAX_LINE = 32 * 1024 * 1024
"""A page of 500 rows is well under 1 MiB; a longer line is refused without being held."""


# ---------------------------------------------------------------- writing
def _json_line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def header(day: dt.date) -> bytes:
    return _json_line({"object": BILL_OBJECT, "day": day.isoformat()})


def page_line(raw: bytes) -> bytes:
    """An API answer on one line, byte for byte but for line breaks between tokens."""
    return raw.replace(b"\r", b" ").replace(b"\n", b" ").strip() + b"\n"


def trailer(pages: int, count: int) -> bytes:
    return _json_line({"object": END_OBJECT, "pages": pages, "count": count})


def write_bill(into: IO[bytes], day: dt.date, pages: list[bytes]) -> None:
    """A whole bill from pages already in hand (tests)."""
    into.write(header(day))
    count = 0
    for raw in pages:
        into.write(page_line(raw))
        count += len(json.loads(raw).get("transaction_details") or [])
    into.write(trailer(len(pages), count))


# ---------------------------------------------------------------- reading
def statement_line(detail: Any) -> base.StatementLine:
    """One transaction detail → a statement line; ValueError says why it cannot be read."""
    if not isinstance(detail, Mapping) or not isinstance(detail.get("transaction_info"),
                                                         Mapping):  # fmt: skip
        raise ValueError("transaction detail lacks transaction_info")
    if "transaction_amount" not in detail["transaction_info"]:
        raise ValueError("transaction detail without transaction_amount")
    try:
        line = protocol.statement_line(detail)
    except protocol.ProtocolError as exc:
        raise ValueError(exc.message) from None
    k = base.StatementLineKind
    refund = line.event_code == "T1107"
    kind = k.refund if refund else k.payment if line.event_code.startswith("T00") else k.other
    if line.status == "D":  # denied: no money moved
        kind = k.other
    return base.StatementLine(
        kind=kind, amount=line.amount, currency=line.currency, fee=-line.fee,
        out_trade_no=line.custom_field,
        out_refund_no=line.invoice_id if refund else None,
        channel_trade_no=line.reference_id,
        channel_refund_no=line.transaction_id if refund else None,
        occurred_at=line.initiated_at, raw=detail if isinstance(detail, dict) else dict(detail),
    )  # fmt: skip


def _lines(handle: IO[bytes]) -> Iterator[tuple[bytes, bool]]:
    """The file's lines, each cut at :data:`MAX_LINE` (True: it was longer; the rest of it is
    skipped without being kept)."""
    while True:
        line = handle.readline(MAX_LINE)
        if not line:
            return
        if len(line) == MAX_LINE and not line.endswith(b"\n"):
            while True:
                rest = handle.readline(MAX_LINE)
                if not rest or rest.endswith(b"\n"):
                    break
            yield line, True
            continue
        yield line, False


def _object(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _text(line: bytes) -> str:
    return line.decode("utf-8", "replace").rstrip("\r\n")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class PayPalBillReader(BillReader):
    """Reads a bill written by :meth:`PayPalAdapter.fetch_bill`, one page (line) at a time."""

    def read(self) -> Iterator[base.StatementLine]:
        with self.path.open("rb") as handle:
            lines = _lines(handle)
            first, _ = next(lines, (b"", False))
            head = _object(first)
            if head is None or head.get("object") != BILL_OBJECT:
                self.problem(0, _text(first[:1000]), "not a PayPal transaction search bill")
                return
            pages = count = 0
            end: dict[str, Any] | None = None
            last: dict[str, Any] = {}
            for number, (line, too_long) in enumerate(lines, start=2):
                page = None if too_long else _object(line)
                if end is not None:
                    self.problem(number, _text(line[:1000]), "line after the end line")
                    continue
                if page is None:
                    self.problem(number, _text(line[:1000]), "line is not a JSON object")
                    continue
                if page.get("object") == END_OBJECT:
                    end = page
                    continue
                rows = page.get("transaction_details", [])
                if not isinstance(rows, list) or _int(page.get("page")) is None:
                    self.problem(number, _text(line[:1000]), "not a page of the listing")
                    continue
                pages += 1
                last = {key: page.get(key) for key in ("page", "total_pages", "total_items")}
                for detail in rows:
                    count += 1
                    try:
                        yield statement_line(detail)
                    except ValueError as exc:
                        self.problem(number, json.dumps(detail, ensure_ascii=False), str(exc))
        self._checks(end, pages, count, last)

    def _checks(self, end: dict[str, Any] | None, pages: int, count: int,
                last: dict[str, Any]) -> None:  # fmt: skip
        self.check("end_line", end is not None, "" if end else "the listing was not written "
                   "to its end (no end line)")  # fmt: skip
        page, total_pages = _int(last.get("page")), _int(last.get("total_pages"))
        # an empty result is page 1 of 0 pages
        complete = page is not None and total_pages is not None and page >= total_pages
        self.check("listing_complete", complete, "" if complete else
                   f"the last page is {page} of {total_pages}")  # fmt: skip
        for name, key, found in (("page_count", "pages", pages), ("row_count", "count", count)):
            total = _int(end.get(key)) if end else None
            if total is None:
                self.check(name, False, f"no {key} in an end line")
            else:
                self.check_totals(name, total, found, key)
        items = _int(last.get("total_items"))
        if items is None:
            self.check("total_items", False, "no total_items on the last page")
        else:
            self.check_totals("total_items", items, count, "rows")
        if "count" in self.expected:
            expected = self.expected["count"]
            ok = expected.isdigit() and int(expected) == count
            self.check("fetched_count", ok, "" if ok else f"fetched {expected}, file {count}")

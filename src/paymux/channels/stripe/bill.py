"""Stripe's daily bill: the UTC day's balance transactions, as the adapter writes them down.

Stripe publishes no bill file for a day: its record of money moving is the Balance Transactions
list (``GET /v1/balance_transactions``, API reference "List all balance transactions"). Facts
relied on (Stripe API reference, objects "Balance Transaction" and "List"; PROTOCOLS.md):

- filters ``created[gte]`` / ``created[lt]`` (Unix seconds, UTC), ``limit`` 1..100,
  ``starting_after`` = the last id of the previous page; newest first; each answer is a list
  object ``{"object": "list", "data": [...], "has_more": bool, "url": ...}`` and the listing is
  complete when a page says ``has_more: false``. A list carries no total count.
- a balance transaction: ``id`` (``txn_…``), ``type`` (``charge``, ``payment``, ``refund``,
  ``stripe_fee``, ``payout``, ``adjustment``, …), ``reporting_category``, ``amount`` /
  ``fee`` / ``net`` signed integers in the currency's smallest unit (refunds negative; a fee
  given back is negative), ``currency`` a lower-case ISO code, ``created`` / ``available_on``
  Unix seconds, ``source`` the charge or refund (its object with ``expand[]=data.source``;
  ``expand[]=data.source.payment_intent`` brings the PaymentIntent whose ``metadata`` carries
  our attempt id). Zero-decimal and three-decimal currencies are converted as everywhere else
  (:func:`paymux.channels.stripe.protocol.from_stripe_amount`).
- Stripe keeps its processing fee when a charge is refunded: a ``refund`` line has ``fee`` 0
  (Stripe support, "Stripe fees are not returned on refunds" [unverified: per account
  pricing]).

The file (JSON Lines, UTF-8, one JSON object per line, so it reads line by line in bounded
memory — a JSON document cannot be parsed as a stream with the standard library):

1. a header ``{"object": "paymux.stripe_bill", "day": "2026-12-01", "created_gte": <unix>,
   "created_lt": <unix>}``;
2. one line per page, the API's answer exactly as received except that any line break between
   JSON tokens is turned into a space (a JSON string never holds a raw line break, so nothing
   else changes);
3. a trailer ``{"object": "end", "pages": N, "count": M}`` written once the last page
   (``has_more: false``) was read: M is the number of balance transactions in the pages.

A day without any balance transaction is no file at all (``FetchedBill.exists`` False).

Integrity checks, as the listing offers no summary: ``end_line`` (the trailer exists: the
listing was written to its end), ``listing_complete`` (the last page says ``has_more: false``),
``page_count`` and ``row_count`` (the trailer against what was read), and ``fetched_count``
when the fetch reported its count (``expected["count"]``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from typing import IO, Any

from paymux.channels import base
from paymux.channels.bills import BillReader
from paymux.channels.stripe import protocol as p

BILL_OBJECT = "paymux.stripe_bill"
END_OBJECT = "end"
MAX_LINE = 16 * 1024 * 1024
"""A page of 100 expanded balance transactions is well under 1 MiB; a longer line is refused
without being held whole."""

_KINDS = {
    "charge": base.StatementLineKind.payment,
    "payment": base.StatementLineKind.payment,
    "refund": base.StatementLineKind.refund,
    "payment_refund": base.StatementLineKind.refund,
    "stripe_fee": base.StatementLineKind.fee,
}


# ---------------------------------------------------------------- writing
def _json_line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def header(day: dt.date, start: dt.datetime, end: dt.datetime) -> bytes:
    return _json_line({"object": BILL_OBJECT, "day": day.isoformat(),
                       "created_gte": int(start.timestamp()),
                       "created_lt": int(end.timestamp())})  # fmt: skip


def page_line(raw: bytes) -> bytes:
    """An API answer on one line, byte for byte but for line breaks between tokens."""
    return raw.replace(b"\r", b" ").replace(b"\n", b" ").strip() + b"\n"


def trailer(pages: int, count: int) -> bytes:
    return _json_line({"object": END_OBJECT, "pages": pages, "count": count})


def write_bill(into: IO[bytes], day: dt.date, start: dt.datetime, end: dt.datetime,
               pages: list[bytes]) -> None:  # fmt: skip
    """A whole bill from pages already in hand (the sandbox and tests)."""
    into.write(header(day, start, end))
    count = 0
    for raw in pages:
        into.write(page_line(raw))
        count += len(json.loads(raw).get("data") or [])
    into.write(trailer(len(pages), count))


# ---------------------------------------------------------------- reading
def statement_line(row: Any) -> base.StatementLine:
    """One balance transaction → a statement line; ValueError says why it cannot be read."""
    if not isinstance(row, Mapping) or row.get("object", "balance_transaction") != \
            "balance_transaction":  # fmt: skip
        raise ValueError("not a balance transaction")
    if "amount" not in row:
        raise ValueError("balance transaction without amount")
    currency = p.our_currency(row.get("currency"))
    if currency not in p.SUPPORTED:
        raise ValueError(f"unknown currency {currency}")
    amount = p.from_stripe_amount(row["amount"], currency)
    fee = p.from_stripe_amount(row.get("fee", 0), currency)
    occurred = p.from_unix(row.get("created"))
    kind = _KINDS.get(str(row.get("type")), base.StatementLineKind.other)
    raw_source = row.get("source")
    source: Mapping[str, Any] = raw_source if isinstance(raw_source, Mapping) else {}
    intent = source.get("payment_intent")
    intent_id = intent.get("id") if isinstance(intent, Mapping) else intent
    attempt = None
    if isinstance(intent, Mapping):
        attempt = (intent.get("metadata") or {}).get(p.ATTEMPT_KEY)
    refund = kind is base.StatementLineKind.refund
    refund_no = (source.get("metadata") or {}).get(p.REFUND_KEY) if refund else None
    return base.StatementLine(
        kind=kind, amount=amount, currency=currency, fee=fee,
        out_trade_no=attempt if isinstance(attempt, str) else None,
        out_refund_no=refund_no if isinstance(refund_no, str) else None,
        channel_trade_no=intent_id if isinstance(intent_id, str) else None,
        channel_refund_no=source.get("id") if refund and isinstance(source.get("id"), str)
        else None,
        occurred_at=occurred, raw=row if isinstance(row, dict) else dict(row),
    )  # fmt: skip


def _lines(handle: IO[bytes]) -> Iterator[tuple[bytes, bool]]:
    """The file's lines, each cut at :data:`MAX_LINE` (True: the line was longer; the rest of
    it is skipped without being kept)."""
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


class StripeBillReader(BillReader):
    """Reads a bill written by :meth:`StripeAdapter.fetch_bill`, one page (line) at a time."""

    def read(self) -> Iterator[base.StatementLine]:
        with self.path.open("rb") as handle:
            lines = _lines(handle)
            first, _ = next(lines, (b"", False))
            head = _object(first)
            if head is None or head.get("object") != BILL_OBJECT:
                self.problem(0, _text(first[:1000]), "not a Stripe balance transactions bill")
                return
            pages = count = 0
            end: dict[str, Any] | None = None
            has_more: Any = None
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
                data = page.get("data")
                if page.get("object") != "list" or not isinstance(data, list):
                    self.problem(number, _text(line[:1000]), "not a page of the listing")
                    continue
                pages += 1
                has_more = page.get("has_more")
                for row in data:
                    count += 1
                    try:
                        yield statement_line(row)
                    except ValueError as exc:
                        self.problem(number, json.dumps(row, ensure_ascii=False), str(exc))
        self._checks(end, pages, count, has_more)

    def _checks(self, end: dict[str, Any] | None, pages: int, count: int, has_more: Any) -> None:
        self.check("end_line", end is not None, "" if end else "the listing was not written "
                   "to its end (no end line)")  # fmt: skip
        self.check("listing_complete", has_more is False,
                   "" if has_more is False else "the last page says has_more")  # fmt: skip
        for name, key, found in (("page_count", "pages", pages), ("row_count", "count", count)):
            total = end.get(key) if end else None
            if isinstance(total, int) and not isinstance(total, bool):
                self.check_totals(name, total, found, key)
            else:
                self.check(name, False, f"no {key} in an end line")
        if "count" in self.expected:
            expected = self.expected["count"]
            ok = expected.isdigit() and int(expected) == count
            self.check("fetched_count", ok, "" if ok else f"fetched {expected}, file {count}")

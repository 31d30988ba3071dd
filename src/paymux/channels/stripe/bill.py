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

The file is a listing bill (:mod:`paymux.channels.bill_listing`: JSON Lines, UTF-8, read line
by line in bounded memory):

1. a header ``{"object": "paymux.stripe_bill", "day": "2026-12-01", "created_gte": <unix>,
   "created_lt": <unix>}``;
2. one line per page, the API's answer exactly as received except that any line break between
   JSON tokens is turned into a space (a JSON string never holds a raw line break, so nothing
   else changes);
3. a trailer ``{"object": "end", "pages": N, "count": M}`` written once the last page
   (``has_more: false``) was read: M is the number of balance transactions in the pages.

A day without any balance transaction is no file at all (``FetchedBill.exists`` False).

The same file is the **funds** bill (:attr:`~paymux.channels.bills.BillKind.funds`): the
balance's movements are the same balance transactions. Read for its funds lines
(``StripeBillReader(..., funds=True)``), a balance transaction of type ``payout`` (Stripe paid
the balance to our bank account; ``amount`` negative), ``payout_cancel`` or ``payout_failure``
(the money came back; positive) is a ``settlement`` line whose ``channel_trade_no`` is the
payout's id (``po_…``, the transaction's ``source``, an id or the expanded payout object), with
the amount signed as Stripe gives it and Stripe's ``fee`` on it (0 for a standard payout).
Charges and refunds are payment and refund lines as in the trade reading. The trade reading is
unchanged: a payout there is an ``other`` line. Stripe gives no balance after each transaction
(``balance`` stays None).

Integrity checks, as the listing offers no summary: ``end_line`` (the trailer exists: the
listing was written to its end), ``listing_complete`` (the last page says ``has_more: false``),
``page_count`` and ``row_count`` (the trailer against what was read), and ``fetched_count``
when the fetch reported its count (``expected["count"]``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from paymux.channels import base
from paymux.channels.bill_listing import (
    ListingBillReader,
    json_line,
    page_line,
    trailer,
    write_listing,
)
from paymux.channels.stripe import protocol as p

__all__ = [
    "BILL_OBJECT",
    "MAX_LINE",
    "StripeBillReader",
    "header",
    "page_line",
    "statement_line",
    "trailer",
    "write_bill",
]

BILL_OBJECT = "paymux.stripe_bill"
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
SETTLEMENT_TYPES = frozenset({"payout", "payout_cancel", "payout_failure"})
"""Balance transaction types of a payout to our bank account and its return (the funds
reading's ``settlement`` lines)."""


# ---------------------------------------------------------------- writing
def header(day: dt.date, start: dt.datetime, end: dt.datetime) -> bytes:
    return json_line({"object": BILL_OBJECT, "day": day.isoformat(),
                      "created_gte": int(start.timestamp()),
                      "created_lt": int(end.timestamp())})  # fmt: skip


def write_bill(into: IO[bytes], day: dt.date, start: dt.datetime, end: dt.datetime,
               pages: list[bytes]) -> None:  # fmt: skip
    """A whole bill from pages already in hand (the sandbox and tests)."""
    write_listing(into, header(day, start, end), pages, "data")


# ---------------------------------------------------------------- reading
def statement_line(row: Any, *, funds: bool = False) -> base.StatementLine:
    """One balance transaction → a statement line; ValueError says why it cannot be read.
    ``funds``: the funds reading (a payout is a ``settlement`` line, see the module)."""
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
    if funds and row.get("type") in SETTLEMENT_TYPES:
        payout = raw_source.get("id") if isinstance(raw_source, Mapping) else raw_source
        if not isinstance(payout, str) or not payout:
            raise ValueError("payout balance transaction without its payout")
        return base.StatementLine(
            kind=base.StatementLineKind.settlement, amount=amount, currency=currency, fee=fee,
            channel_trade_no=payout, occurred_at=occurred,
            raw=row if isinstance(row, dict) else dict(row),
        )  # fmt: skip
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


class StripeBillReader(ListingBillReader):
    """Reads a bill written by :meth:`StripeAdapter.fetch_bill`, one page (line) at a time;
    ``funds``: for its funds lines (payouts as ``settlement``)."""

    bill_object = BILL_OBJECT
    not_a_bill = "not a Stripe balance transactions bill"
    max_line = MAX_LINE
    remembered = ("has_more",)

    def __init__(self, path: Path, expected: Mapping[str, str] | None = None, *,
                 funds: bool = False) -> None:  # fmt: skip
        super().__init__(path, expected)
        self.funds = funds

    def page_rows(self, page: Mapping[str, Any]) -> list[Any] | None:
        data = page.get("data")
        return data if page.get("object") == "list" and isinstance(data, list) else None

    def statement_line(self, row: Any) -> base.StatementLine:
        return statement_line(row, funds=self.funds)

    def check_complete(self, last: Mapping[str, Any]) -> None:
        has_more = last.get("has_more")
        self.check("listing_complete", has_more is False,
                   "" if has_more is False else "the last page says has_more")  # fmt: skip

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

The same file is the **funds** bill (:attr:`~paymux.channels.bills.BillKind.funds`):
Transaction Search lists every movement of the account's balance. Read for its funds lines
(``PayPalBillReader(..., funds=True)``), a T04xx row — a withdrawal from the PayPal balance to
the account's bank (T0400 general withdrawal; T0403, a transfer to the bank account, is seen
in integrations [unverified: the full T04xx table]) — is a ``settlement`` line whose
``channel_trade_no`` is the row's ``transaction_id`` and whose amount is signed as PayPal gives
it (negative; positive would be a withdrawal coming back [unverified]); a denied (D) one moved
no money and stays ``other``. Payments and refunds are as in the trade reading, where a T04xx
row stays ``other``. The balance after each row (``transaction_info.ending_balance``, only
with ``fields=all`` or ``balance_affecting_records_only``) is not read [unverified].

The file is a listing bill (:mod:`paymux.channels.bill_listing`: JSON Lines, UTF-8, read line
by line in bounded memory):

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
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from paymux.channels import base
from paymux.channels.bill_listing import (
    ListingBillReader,
    integer,
    json_line,
    page_line,
    trailer,
    write_listing,
)
from paymux.channels.paypal import protocol

__all__ = [
    "BILL_OBJECT",
    "MAX_LINE",
    "PayPalBillReader",
    "header",
    "page_line",
    "statement_line",
    "trailer",
    "write_bill",
]

BILL_OBJECT = "paymux.paypal_bill"
MAX_LINE = 32 * 1024 * 1024
"""A page of 500 rows is well under 1 MiB; a longer line is refused without being held."""


# ---------------------------------------------------------------- writing
def header(day: dt.date) -> bytes:
    return json_line({"object": BILL_OBJECT, "day": day.isoformat()})


def write_bill(into: IO[bytes], day: dt.date, pages: list[bytes]) -> None:
    """A whole bill from pages already in hand (tests)."""
    write_listing(into, header(day), pages, "transaction_details")


# ---------------------------------------------------------------- reading
def statement_line(detail: Any, *, funds: bool = False) -> base.StatementLine:
    """One transaction detail → a statement line; ValueError says why it cannot be read.
    ``funds``: the funds reading (a T04xx withdrawal is a ``settlement`` line)."""
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
    elif funds and line.event_code.startswith("T04"):
        if not line.transaction_id:
            raise ValueError("withdrawal without transaction_id")
        return base.StatementLine(
            kind=k.settlement, amount=line.amount, currency=line.currency, fee=-line.fee,
            channel_trade_no=line.transaction_id, occurred_at=line.initiated_at,
            raw=detail if isinstance(detail, dict) else dict(detail),
        )  # fmt: skip
    return base.StatementLine(
        kind=kind, amount=line.amount, currency=line.currency, fee=-line.fee,
        out_trade_no=line.custom_field,
        out_refund_no=line.invoice_id if refund else None,
        channel_trade_no=line.reference_id,
        channel_refund_no=line.transaction_id if refund else None,
        occurred_at=line.initiated_at, raw=detail if isinstance(detail, dict) else dict(detail),
    )  # fmt: skip


class PayPalBillReader(ListingBillReader):
    """Reads a bill written by :meth:`PayPalAdapter.fetch_bill`, one page (line) at a time;
    ``funds``: for its funds lines (T04xx withdrawals as ``settlement``)."""

    bill_object = BILL_OBJECT
    not_a_bill = "not a PayPal transaction search bill"
    max_line = MAX_LINE
    remembered = ("page", "total_pages", "total_items")

    def __init__(self, path: Path, expected: Mapping[str, str] | None = None, *,
                 funds: bool = False) -> None:  # fmt: skip
        super().__init__(path, expected)
        self.funds = funds

    def page_rows(self, page: Mapping[str, Any]) -> list[Any] | None:
        rows = page.get("transaction_details", [])
        return rows if isinstance(rows, list) and integer(page.get("page")) is not None else None

    def statement_line(self, row: Any) -> base.StatementLine:
        return statement_line(row, funds=self.funds)

    def check_complete(self, last: Mapping[str, Any]) -> None:
        page, total_pages = integer(last.get("page")), integer(last.get("total_pages"))
        # an empty result is page 1 of 0 pages
        complete = page is not None and total_pages is not None and page >= total_pages
        self.check("listing_complete", complete, "" if complete else
                   f"the last page is {page} of {total_pages}")  # fmt: skip

    def check_last_page(self, last: Mapping[str, Any], count: int) -> None:
        items = integer(last.get("total_items"))
        if items is None:
            self.check("total_items", False, "no total_items on the last page")
        else:
            self.check_totals("total_items", items, count, "rows")

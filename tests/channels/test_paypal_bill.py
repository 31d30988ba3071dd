"""PayPal's bill (the UTC day's Transaction Search answers written down as JSON Lines): golden
files read through ``bill_reader``, every sandbox bill tweak through the control API and the
adapter, and a reader over a large file in bounded memory.

Facts relied on are in :mod:`paymux.channels.paypal.bill` (PayPal REST reference: Transaction
Search, transaction event codes). Regenerate the ``*.expected.json`` files after a deliberate
change with ``PAYMUX_REGEN_GOLDEN=1`` and review the diff."""

from __future__ import annotations

import datetime as dt
import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from paymux.channels.base import RetryableError, StatementLine, StatementLineKind
from paymux.channels.bills import BillReader, FetchedBill
from paymux.channels.paypal import bill
from paymux.channels.paypal.adapter import PayPalAdapter
from tests.channels.listing_bills import (
    compare_golden,
    consume,
    days_later,
    golden_cases,
    payments_of,
    today,
)
from tests.channels.test_paypal import BASE, Env, env, paid, refund_request

__all__ = ["env"]

GOLDEN = Path(__file__).parent / "golden" / "paypal"
FEE_BPS = 349


def paypal_reader(path: Path, expected: dict[str, str] | None = None) -> BillReader:
    """The registered adapter's reader (reading needs no credentials nor connection)."""
    adapter = PayPalAdapter.__new__(PayPalAdapter)
    return adapter.bill_reader(path, expected or {})


# ---------------------------------------------------------------- golden files
@pytest.mark.parametrize("path", golden_cases("paypal"), ids=lambda p: p.name)
def test_golden_bill(path: Path) -> None:
    compare_golden(paypal_reader(path), path)


def test_golden_day_reads_as_paypal_means_it() -> None:
    """Decimal strings into minor units (JPY without decimals), the fee charged positive and a
    fee given back on a refund negative, T1107 refunds with our refund id, a withdrawal as
    other, the duplicate listed twice and the previous day's row kept."""
    reader = paypal_reader(GOLDEN / "day.jsonl")
    lines = list(reader.lines())
    assert reader.intact, reader.failures()
    k = StatementLineKind
    assert [(x.kind, x.amount, x.fee, x.currency, x.reference) for x in lines] == [
        (k.payment, 2000, 70, "USD", "att_0ABCDEFGH000000005"),
        (k.payment, 10000, 349, "USD", "att_0ABCDEFGH000000001"),
        (k.payment, 10000, 349, "USD", "att_0ABCDEFGH000000001"),
        (k.payment, 1500, 52, "JPY", "att_0ABCDEFGH000000002"),
        (k.refund, -2500, -87, "USD", "re_0ABCDEFGH000000001"),
        (k.refund, -1500, 0, "JPY", "re_0ABCDEFGH000000002"),
        (k.other, -50000, 0, "USD", None),
    ]  # fmt: skip
    assert lines[0].occurred_at == dt.datetime(2026, 11, 30, 23, 30, tzinfo=dt.UTC)
    assert (lines[4].channel_trade_no, lines[4].channel_refund_no) == (
        "2GG279541U471931P", "1JU08902781691411")  # fmt: skip


def test_golden_bad_files_fail_their_checks() -> None:
    bad = paypal_reader(GOLDEN / "bad_row.jsonl")
    assert len(list(bad.lines())) == 1
    assert [p.reason for p in bad.problems] == [
        "transaction detail without transaction_amount",
        "'12.345' is finer than USD allows",
        "PayPal does not take XXX",
        "transaction amount is malformed",
        "not a PayPal amount value: '1,000.00'",
        "transaction detail lacks transaction_info",
    ]
    assert all(c.ok for c in bad.checks) and not bad.intact
    summary = paypal_reader(GOLDEN / "bad_summary.jsonl")
    list(summary.lines())
    assert [c.name for c in summary.checks if not c.ok] == ["total_items"]
    cut = paypal_reader(GOLDEN / "truncated.jsonl")
    list(cut.lines())
    assert [c.name for c in cut.checks if not c.ok] == [
        "end_line", "listing_complete", "page_count", "row_count", "total_items"]  # fmt: skip
    other = paypal_reader(GOLDEN / "not_a_bill.html")
    assert list(other.lines()) == [] and [p.position for p in other.problems] == [0]


# ---------------------------------------------------------------- sandbox tweaks
async def tweak(env: Env, day: dt.date, kind: str, **fields: Any) -> None:
    r = await env.http.post(f"{BASE}/_sandbox/bill_tweaks",
                            json={"day": day.isoformat(), "kind": kind, **fields})  # fmt: skip
    assert r.status_code == 200, r.text


async def fetch(env: Env, day: dt.date, path: Path, *, page_size: int = 500
                ) -> tuple[FetchedBill, list[StatementLine], BillReader]:  # fmt: skip
    with days_later((day - today()).days + 1), path.open("wb") as handle:
        fetched = await env.adapter.fetch_bill(day, handle, page_size=page_size)
    reader = env.adapter.bill_reader(path, fetched.expected)
    return fetched, list(reader.lines()) if fetched.exists else [], reader


async def test_untweaked_day_not_ready_and_no_bill(env: Env, tmp_path: Path) -> None:
    request, order_id = await paid(env, amount=10000)
    refund = refund_request(request, order_id, 2500)
    await env.adapter.create_refund(refund)
    with pytest.raises(RetryableError) as early:
        await env.adapter.fetch_bill(today(), io.BytesIO())
    assert early.value.code == "statement_not_ready"
    fetched, lines, reader = await fetch(env, today(), tmp_path / "day.jsonl", page_size=1)
    assert reader.intact, reader.failures()
    assert fetched.filename == f"paypal_transactions_{today()}.jsonl"
    # the last: the day's withdrawal to the bank (T0400; test_paypal_funds)
    assert [(x.kind, x.amount, x.fee, x.reference) for x in lines] == [
        (StatementLineKind.payment, 10000, 10000 * FEE_BPS // 10_000, request.out_trade_no),
        (StatementLineKind.refund, -2500, 0, refund.out_refund_no),
        (StatementLineKind.other, -(10000 - 10000 * FEE_BPS // 10_000 - 2500), 0, None),
    ]  # fmt: skip
    assert len((tmp_path / "day.jsonl").read_bytes().splitlines()) == 5  # three pages
    empty = tmp_path / "empty.jsonl"
    none, _, _ = await fetch(env, today() - dt.timedelta(days=3), empty)
    assert not none.exists and empty.read_bytes() == b""


async def test_amount_fee_duplicate_drop(env: Env, tmp_path: Path) -> None:
    reqs = [(await paid(env, amount=1000 * (n + 1)))[0] for n in range(4)]
    a, b, c, d = (r.out_trade_no for r in reqs)
    await tweak(env, today(), "amount", out_trade_no=a, amount=7777)
    await tweak(env, today(), "fee", out_trade_no=b, amount=5)
    await tweak(env, today(), "duplicate", out_trade_no=c)
    await tweak(env, today(), "drop", out_trade_no=d)
    _, lines, reader = await fetch(env, today(), tmp_path / "bill.jsonl")
    assert reader.intact, reader.failures()
    assert [(x.amount, x.fee) for x in payments_of(lines, a)] == [(7777, 1000 * FEE_BPS // 10_000)]
    assert [(x.amount, x.fee) for x in payments_of(lines, b)] == [(2000, 5)]
    dup = payments_of(lines, c)
    assert len(dup) == 2 and dup[0].raw == dup[1].raw
    assert payments_of(lines, d) == []


async def test_next_day_moves_the_row(env: Env, tmp_path: Path) -> None:
    request, order_id = await paid(env, amount=1500)
    await tweak(env, today(), "next_day", out_trade_no=request.out_trade_no)
    fetched, _, _ = await fetch(env, today(), tmp_path / "today.jsonl")
    assert not fetched.exists  # its only payment moved: no bill today
    tomorrow = today() + dt.timedelta(days=1)
    _, later, reader = await fetch(env, tomorrow, tmp_path / "tomorrow.jsonl")
    (moved,) = payments_of(later, request.out_trade_no)
    assert reader.intact and moved.channel_trade_no == order_id
    assert moved.occurred_at == dt.datetime.combine(tomorrow, dt.time(0), tzinfo=dt.UTC)


async def test_extra_payment_and_extra_refund(env: Env, tmp_path: Path) -> None:
    request, order_id = await paid(env, amount=3000)
    await tweak(env, today(), "extra_payment", amount=4242)
    await tweak(env, today(), "extra_payment", amount=1234, out_trade_no="att_portal0001")
    await tweak(env, today(), "extra_refund", out_trade_no=request.out_trade_no, amount=1000)
    path = tmp_path / "bill.jsonl"
    _, lines, reader = await fetch(env, today(), path)
    assert reader.intact, reader.failures()
    foreign = [x for x in lines if x.kind is StatementLineKind.payment and x.amount == 4242]
    assert len(foreign) == 1 and foreign[0].out_trade_no is None
    assert foreign[0].fee == 4242 * FEE_BPS // 10_000
    assert [x.amount for x in payments_of(lines, "att_portal0001")] == [1234]
    (refund,) = [x for x in lines if x.kind is StatementLineKind.refund]
    assert (refund.amount, refund.out_refund_no) == (-1000, None)
    assert refund.out_trade_no == request.out_trade_no
    again = tmp_path / "again.jsonl"
    await fetch(env, today(), again)
    assert again.read_bytes() == path.read_bytes()  # the same listing on every fetch


async def test_corrupt_summary_is_total_items_off(env: Env, tmp_path: Path) -> None:
    await paid(env, amount=2000)
    await tweak(env, today(), "corrupt_summary", amount=3)
    _, lines, reader = await fetch(env, today(), tmp_path / "bill.jsonl")
    assert len(lines) == 2  # the payment and the day's withdrawal
    assert [(c.name, c.detail) for c in reader.checks if not c.ok] == [
        ("total_items", "rows: summary 5, detail 2")]  # fmt: skip


async def test_bad_row_is_one_problem(env: Env, tmp_path: Path) -> None:
    request, _ = await paid(env, amount=2000)
    await tweak(env, today(), "bad_row")
    _, lines, reader = await fetch(env, today(), tmp_path / "bill.jsonl")
    # the other line is the day's withdrawal
    assert [x.out_trade_no for x in lines if x.kind is not StatementLineKind.other] == [
        request.out_trade_no]  # fmt: skip
    assert [p.reason for p in reader.problems] == ["transaction detail without transaction_amount"]
    assert all(c.ok for c in reader.checks) and not reader.intact


# ---------------------------------------------------------------- bounded memory
ROWS = 80_000  # a file several times the limit: a reader that held it would fail


def large_bill(path: Path, rows: int) -> None:
    pages = -(-rows // 500)
    with path.open("wb") as handle:
        handle.write(bill.header(dt.date(2026, 12, 1)))
        for number in range(1, pages + 1):
            first = (number - 1) * 500
            details = [{"transaction_info": {
                "transaction_id": f"{n:017d}", "transaction_event_code": "T0006",
                "transaction_amount": {"currency_code": "USD", "value": f"{10 + n % 90}.99"},
                "transaction_initiation_date": "2026-12-01T09:00:00+0000",
            }} for n in range(first, min(first + 500, rows))]  # fmt: skip
            page = {"transaction_details": details, "page": number, "total_pages": pages,
                    "total_items": rows}  # fmt: skip
            handle.write(bill.page_line(json.dumps(page).encode()))
        handle.write(bill.trailer(pages, rows))


def test_large_bill_reads_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "large.jsonl"
    large_bill(path, ROWS)
    assert path.stat().st_size > 8_000_000
    reader = paypal_reader(path)
    tracemalloc.start()
    try:
        count, total = consume(reader.lines())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == ROWS and total == sum((10 + n % 90) * 100 + 99 for n in range(ROWS))
    assert reader.intact, reader.failures()
    assert peak < 4_000_000, peak

"""Stripe's bill (the UTC day's balance transactions written down as JSON Lines): golden files
read through ``bill_reader``, every sandbox bill tweak through the control API and the adapter,
and a reader over a large file in bounded memory.

Facts relied on are in :mod:`paymux.channels.stripe.bill` (Stripe API reference: Balance
Transactions, List, expansion). Regenerate the ``*.expected.json`` files after a deliberate
change with ``PAYMUX_REGEN_GOLDEN=1`` and review the diff."""

from __future__ import annotations

import datetime as dt
import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from paymux.channels.base import (
    RetryableError,
    StatementLine,
    StatementLineKind,
    UnknownOutcome,
)
from paymux.channels.bills import BillReader, FetchedBill
from paymux.channels.stripe import bill
from paymux.channels.stripe.adapter import StripeAdapter
from tests.channels.listing_bills import (
    GOLDEN,
    compare_golden,
    consume,
    days_later,
    golden_cases,
    payments_of,
    today,
)
from tests.channels.test_stripe import Env, env, paid, refund_request

__all__ = ["env"]


# ---------------------------------------------------------------- golden files
def stripe_reader(path: Path, expected: dict[str, str] | None = None) -> BillReader:
    """The registered adapter's reader (reading needs no credentials nor connection)."""
    adapter = StripeAdapter.__new__(StripeAdapter)
    return adapter.bill_reader(path, expected or {})


@pytest.mark.parametrize("path", golden_cases("stripe"), ids=lambda p: p.name)
def test_golden_bill(path: Path) -> None:
    compare_golden(stripe_reader(path), path)


def test_golden_day_reads_as_stripe_means_it() -> None:
    """The facts the golden day shows, spelled out: newest first, zero-decimal JPY, a partial
    and a full refund with our refund ids, Stripe's own fee line, the duplicate listed twice and
    a line of the previous day kept (reconciliation decides on it)."""
    reader = stripe_reader(GOLDEN / "stripe" / "day.jsonl")
    lines = list(reader.lines())
    assert reader.intact, reader.failures()
    got = [(x.kind, x.amount, x.fee, x.currency, x.reference) for x in lines]
    k = StatementLineKind
    assert got == [
        (k.fee, -200, 0, "USD", None),
        (k.refund, -1500, 0, "JPY", "re_0ABCDEFGH000000002"),
        (k.refund, -2500, 0, "USD", "re_0ABCDEFGH000000001"),
        (k.payment, 1500, 43, "JPY", "att_0ABCDEFGH000000002"),
        (k.payment, 10000, 320, "USD", "att_0ABCDEFGH000000001"),
        (k.payment, 10000, 320, "USD", "att_0ABCDEFGH000000001"),
        (k.payment, 2000, 88, "USD", "att_0ABCDEFGH000000005"),
    ]
    assert lines[-1].occurred_at == dt.datetime(2026, 11, 30, 23, tzinfo=dt.UTC)
    assert lines[2].channel_trade_no == "pi_3QaAlpha0000000001"
    assert lines[2].channel_refund_no == "re_3QaAlpha0000000003"


def test_golden_bad_files_fail_their_checks() -> None:
    folder = GOLDEN / "stripe"
    bad = stripe_reader(folder / "bad_row.jsonl")
    assert len(list(bad.lines())) == 2  # the KWD payment and the refund
    assert [p.reason for p in bad.problems] == [
        "balance transaction without amount", "bad currency 'USD'", "unknown currency XYZ",
        "stripe amount must be an integer", "line is not a JSON object",
    ]  # fmt: skip
    # the garbled page is not counted: the end line's three pages disagree
    assert [c.name for c in bad.checks if not c.ok] == ["page_count"] and not bad.intact
    summary = stripe_reader(folder / "bad_summary.jsonl")
    list(summary.lines())
    assert {c.name for c in summary.checks if not c.ok} == {"page_count", "row_count"}
    cut = stripe_reader(folder / "truncated.jsonl")
    list(cut.lines())
    assert {c.name for c in cut.checks if not c.ok} == {
        "end_line", "listing_complete", "page_count", "row_count"}  # fmt: skip
    other = stripe_reader(folder / "not_a_bill.csv")
    assert list(other.lines()) == [] and [p.position for p in other.problems] == [0]
    assert other.checks == []


def test_fetched_count_is_checked(tmp_path: Path) -> None:
    reader = stripe_reader(GOLDEN / "stripe" / "day.jsonl", {"count": "8"})
    list(reader.lines())
    assert [c.name for c in reader.checks if not c.ok] == ["fetched_count"]


# ---------------------------------------------------------------- sandbox tweaks
async def tweak(env: Env, day: dt.date, kind: str, **fields: Any) -> None:
    r = await env.client.post("/_sandbox/bill_tweaks",
                              json={"day": day.isoformat(), "kind": kind, **fields})  # fmt: skip
    assert r.status_code == 200, r.text


async def fetch(env: Env, day: dt.date, path: Path) -> tuple[FetchedBill, list[StatementLine],
                                                              BillReader]:  # fmt: skip
    with days_later((day - today()).days + 1), path.open("wb") as handle:
        fetched = await env.adapter.fetch_bill(day, handle)
    if not fetched.exists:
        return fetched, [], env.adapter.bill_reader(path, {})
    reader = env.adapter.bill_reader(path, fetched.expected)
    return fetched, list(reader.lines()), reader


async def test_untweaked_day_not_ready_and_no_bill(env: Env, tmp_path: Path) -> None:
    req, pi = await paid(env, amount=10000)
    refund = refund_request(req, pi, 2500)
    await env.adapter.create_refund(refund)
    with pytest.raises(RetryableError) as early:  # the UTC day is not over
        await env.adapter.fetch_bill(today(), io.BytesIO())
    assert early.value.code == "statement_not_ready"
    fetched, lines, reader = await fetch(env, today(), tmp_path / "day.jsonl")
    assert reader.intact, reader.failures()
    assert fetched.filename == f"stripe_balance_transactions_{today()}.jsonl"
    # the day's automatic payout is an ``other`` line of the trade reading (test_stripe_funds)
    assert sorted((x.kind, x.amount, x.fee, x.reference) for x in lines) == sorted([
        (StatementLineKind.payment, 10000, 320, req.out_trade_no),
        (StatementLineKind.refund, -2500, 0, refund.out_refund_no),
        (StatementLineKind.other, -(10000 - 320 - 2500), 0, None),
    ])  # fmt: skip
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
    assert [(x.amount, x.fee) for x in payments_of(lines, a)] == [(7777, 1000 * 290 // 10000
                                                                  + 30)]  # fmt: skip
    assert [(x.amount, x.fee) for x in payments_of(lines, b)] == [(2000, 5)]
    dup = payments_of(lines, c)
    assert len(dup) == 2 and dup[0].raw["id"] != dup[1].raw["id"]
    assert dup[0].channel_trade_no == dup[1].channel_trade_no
    assert payments_of(lines, d) == []


async def test_next_day_moves_the_row(env: Env, tmp_path: Path) -> None:
    req, pi = await paid(env, amount=1500)
    await tweak(env, today(), "next_day", out_trade_no=req.out_trade_no)
    fetched, _, _ = await fetch(env, today(), tmp_path / "today.jsonl")
    assert not fetched.exists  # its only payment moved: no bill today
    tomorrow = today() + dt.timedelta(days=1)
    _, later, reader = await fetch(env, tomorrow, tmp_path / "tomorrow.jsonl")
    (moved,) = payments_of(later, req.out_trade_no)
    assert reader.intact and moved.channel_trade_no == pi
    assert moved.occurred_at == dt.datetime.combine(tomorrow, dt.time(0), tzinfo=dt.UTC)


async def test_extra_payment_and_extra_refund(env: Env, tmp_path: Path) -> None:
    req, pi = await paid(env, amount=3000)
    await tweak(env, today(), "extra_payment", amount=4242)
    await tweak(env, today(), "extra_payment", amount=1234, out_trade_no="att_portal0001")
    await tweak(env, today(), "extra_refund", out_trade_no=req.out_trade_no, amount=1000)
    path = tmp_path / "bill.jsonl"
    _, lines, reader = await fetch(env, today(), path)
    assert reader.intact, reader.failures()
    foreign = [x for x in lines if x.kind is StatementLineKind.payment and x.amount == 4242]
    assert len(foreign) == 1 and foreign[0].out_trade_no is None  # made in the Dashboard
    assert foreign[0].fee == 4242 * 290 // 10000 + 30
    assert [x.amount for x in payments_of(lines, "att_portal0001")] == [1234]
    (refund,) = [x for x in lines if x.kind is StatementLineKind.refund]
    assert (refund.amount, refund.out_refund_no, refund.channel_trade_no) == (-1000, None, pi)
    # the same listing on every fetch, paged or not
    again = tmp_path / "again.jsonl"
    await fetch(env, today(), again)
    assert again.read_bytes() == path.read_bytes()


async def test_corrupt_summary_has_no_effect(env: Env, tmp_path: Path) -> None:
    """A list of balance transactions has no summary or count: ``corrupt_summary`` changes
    nothing (documented in the sandbox)."""
    await paid(env, amount=2000)
    before = tmp_path / "before.jsonl"
    await fetch(env, today(), before)
    await tweak(env, today(), "corrupt_summary", amount=5)
    after = tmp_path / "after.jsonl"
    _, _, reader = await fetch(env, today(), after)
    assert reader.intact and after.read_bytes() == before.read_bytes()


async def test_bad_row_is_one_problem(env: Env, tmp_path: Path) -> None:
    req, _ = await paid(env, amount=2000)
    await tweak(env, today(), "bad_row")
    _, lines, reader = await fetch(env, today(), tmp_path / "bill.jsonl")
    # the other line is the day's payout
    assert [x.out_trade_no for x in lines if x.kind is not StatementLineKind.other] == [
        req.out_trade_no]  # fmt: skip
    assert [p.reason for p in reader.problems] == ["balance transaction without amount"]
    assert all(c.ok for c in reader.checks) and not reader.intact
    day = today()
    with days_later(1), pytest.raises(UnknownOutcome, match="could not be read"):
        await env.adapter.statement(day)


async def test_listing_pages_through_the_adapter(env: Env, tmp_path: Path) -> None:
    """More than a page (100): several page lines, one end line with their count."""
    req, _ = await paid(env, amount=1000)
    await tweak(env, today(), "duplicate", out_trade_no=req.out_trade_no)
    for _ in range(120):
        await tweak(env, today(), "extra_payment", amount=500)
    path = tmp_path / "bill.jsonl"
    fetched, lines, reader = await fetch(env, today(), path)
    assert reader.intact, reader.failures()
    # 122 charges and the day's payout
    assert len(lines) == 123 and fetched.expected == {"count": "123"}
    file_lines = path.read_bytes().splitlines()
    assert len(file_lines) == 4 and json.loads(file_lines[-1]) == {
        "object": "end", "pages": 2, "count": 123}  # fmt: skip
    assert len({x.raw["id"] for x in lines}) == 123


# ---------------------------------------------------------------- bounded memory
ROWS = 80_000  # a file several times the limit: a reader that held it would fail


def large_bill(path: Path, rows: int) -> None:
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    with path.open("wb") as handle:
        handle.write(bill.header(start.date(), start, start + dt.timedelta(days=1)))
        for first in range(0, rows, 100):
            data = [{"id": f"txn_{n:020d}", "amount": 1000 + n, "currency": "usd", "fee": 59,
                     "created": int(start.timestamp()) + n % 86400, "type": "charge"}
                    for n in range(first, min(first + 100, rows))]  # fmt: skip
            page = {"object": "list", "data": data, "has_more": first + 100 < rows}
            handle.write(bill.page_line(json.dumps(page).encode()))
        handle.write(bill.trailer(-(-rows // 100), rows))


def test_large_bill_reads_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "large.jsonl"
    large_bill(path, ROWS)
    assert path.stat().st_size > 8_000_000
    reader = stripe_reader(path)
    tracemalloc.start()
    try:
        count, total = consume(reader.lines())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == ROWS and total == sum(range(1000, 1000 + ROWS))
    assert reader.intact, reader.failures()
    assert peak < 4_000_000, peak

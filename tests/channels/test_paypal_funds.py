"""PayPal's funds bill: the same Transaction Search rows read for the balance's movements — a
T04xx withdrawal to the bank is a ``settlement`` line with the row's ``transaction_id`` —
through a golden file, the adapter and the sandbox's daily withdrawal (the shared rule of
:func:`~paymux.channels.sandbox_bills.day_funds`).

Regenerate ``*.funds.expected.json`` after a deliberate change with ``PAYMUX_REGEN_GOLDEN=1``
and review the diff."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from pathlib import Path

import pytest

from paymux.channels.base import StatementLine, StatementLineKind
from paymux.channels.bills import BillKind, BillReader, bills_of
from paymux.channels.paypal import bill
from paymux.channels.paypal.adapter import PayPalAdapter
from paymux.channels.paypal.sandbox import Sandbox
from tests.channels.listing_bills import GOLDEN, days_later, line_dict, outcome, today
from tests.channels.test_paypal import Env, env, paid, refund_request
from tests.channels.test_paypal_bill import tweak

__all__ = ["env"]
K = StatementLineKind
FEE_BPS = Sandbox().fee_bps


def reader(path: Path, kind: BillKind = BillKind.funds) -> BillReader:
    adapter = PayPalAdapter.__new__(PayPalAdapter)
    return adapter.bill_reader(path, {}, bill=kind)


# ---------------------------------------------------------------- golden files
def test_golden_funds_day() -> None:
    path = GOLDEN / "paypal" / "funds_day.jsonl"
    got = outcome(reader(path))
    expected = path.with_name(path.stem + ".funds.expected.json")
    if os.environ.get("PAYMUX_REGEN_GOLDEN"):
        expected.write_text(json.dumps(got, indent=2, ensure_ascii=False) + "\n", "utf-8")
    assert got == json.loads(expected.read_text("utf-8"))


def test_golden_funds_day_reads_as_paypal_means_it() -> None:
    """The day's T0400 withdrawal is a settlement line with its transaction id, negative; a
    denied (D) one moved nothing and stays other; the sale and the refund are as in the trade
    reading, where the withdrawal is an other line."""
    path = GOLDEN / "paypal" / "funds_day.jsonl"
    funds = reader(path)
    lines = list(funds.lines())
    assert funds.intact, funds.failures()
    assert [(x.kind, x.amount, x.fee, x.channel_trade_no) for x in lines] == [
        (K.payment, 10000, 349, "6RB48152KA1907342"),
        (K.refund, -2500, 0, "7KD31208HM4470921"),
        (K.other, -5000, 0, None),
        (K.settlement, -7151, 0, "9WD8810442PL37113"),
    ]
    assert lines[-1].occurred_at == dt.datetime(2026, 12, 2, 23, 59, 59, tzinfo=dt.UTC)
    assert sum(x.net for x in lines if x.kind is not K.other) == 0  # all paid out
    trade = list(reader(path, BillKind.trade).lines())
    assert [x.kind for x in trade] == [K.payment, K.refund, K.other, K.other]
    assert [line_dict(x) for x in trade[:3]] == [line_dict(x) for x in lines[:3]]


@pytest.mark.parametrize("name", ["day.jsonl", "bad_row.jsonl", "truncated.jsonl"])
def test_funds_reading_is_the_trade_reading_but_for_withdrawals(name: str) -> None:
    """Line for line the same, problems and checks too, except that a withdrawal (an other
    line of the trade reading) is a settlement with its transaction id."""
    path = GOLDEN / "paypal" / name
    funds, trade = outcome(reader(path)), outcome(reader(path, BillKind.trade))
    assert {k: v for k, v in funds.items() if k != "lines"} == {
        k: v for k, v in trade.items() if k != "lines"}  # fmt: skip
    assert len(funds["lines"]) == len(trade["lines"])
    for f, t in zip(funds["lines"], trade["lines"], strict=True):
        if f["kind"] == "settlement":
            assert t["kind"] == "other" and f["amount"] == t["amount"] < 0
            assert f["channel_trade_no"] and f["occurred_at"] == t["occurred_at"]
        else:
            assert f == t
    if name == "day.jsonl":  # its T0400 of 18:00
        (settled,) = [x for x in funds["lines"] if x["kind"] == "settlement"]
        assert settled["amount"] == -50000


def test_a_withdrawal_without_its_id_is_a_problem() -> None:
    row = {"transaction_info": {"transaction_event_code": "T0400", "transaction_status": "S",
                                "transaction_amount": {"currency_code": "USD",
                                                       "value": "-1.00"}}}  # fmt: skip
    with pytest.raises(ValueError, match="without transaction_id"):
        bill.statement_line(row, funds=True)
    assert bill.statement_line(row).kind is K.other


def test_adapter_publishes_both_bills_in_one_file() -> None:
    assert bills_of(PayPalAdapter) == {BillKind.trade, BillKind.funds}
    with pytest.raises(ValueError):
        PayPalAdapter.__new__(PayPalAdapter).bill_reader(Path("x"), {}, bill="fund")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the sandbox
async def fetch_funds(env: Env, day: dt.date, path: Path, page_size: int = 500
                      ) -> tuple[list[StatementLine], BillReader]:  # fmt: skip
    with days_later((day - today()).days + 1), path.open("wb") as handle:
        fetched = await env.adapter.fetch_bill(day, handle, BillKind.funds, page_size=page_size)
    funds = env.adapter.bill_reader(path, fetched.expected, bill=BillKind.funds)
    return list(funds.lines()) if fetched.exists else [], funds


def settlements(lines: list[StatementLine]) -> list[StatementLine]:
    return [x for x in lines if x.kind is K.settlement]


async def test_sandbox_withdraws_the_day_as_day_funds_says(env: Env, tmp_path: Path) -> None:
    request, order_id = await paid(env, amount=10000)
    await env.adapter.create_refund(refund_request(request, order_id, 2500))
    day = today()
    path = tmp_path / "funds.jsonl"
    lines, funds = await fetch_funds(env, day, path, page_size=2)
    assert funds.intact, funds.failures()
    (withdrawal,) = settlements(lines)
    assert withdrawal.amount == -(10000 - 10000 * FEE_BPS // 10_000 - 2500)
    assert withdrawal.occurred_at == dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=dt.UTC)
    info = withdrawal.raw["transaction_info"]
    assert (info["transaction_event_code"], info["transaction_status"]) == ("T0400", "S")
    assert withdrawal.channel_trade_no == info["transaction_id"] and info["bank_reference_id"]
    assert sum(x.net for x in lines) == 0
    (app,) = env.sandbox.apps.values()
    (expected,) = [e for e in env.sandbox.day_funds(app, day)["USD"].entries
                   if e.kind == "settlement"]  # fmt: skip
    assert (expected.amount, expected.at) == (withdrawal.amount, withdrawal.occurred_at)
    # the same file as the trade bill, byte for byte, on every fetch
    with days_later(1):
        trade = io.BytesIO()
        await env.adapter.fetch_bill(day, trade, page_size=2)
    assert trade.getvalue() == path.read_bytes()
    again = tmp_path / "again.jsonl"
    await fetch_funds(env, day, again, page_size=2)
    assert again.read_bytes() == path.read_bytes()


async def test_settlement_amount_tweak_shows_and_carries(env: Env, tmp_path: Path) -> None:
    """``settlement_amount``: the day's withdrawal is the tweak's amount; what it leaves is
    withdrawn the next day (a day with no sale)."""
    await paid(env, amount=10000)
    day = today()
    await tweak(env, day, "settlement_amount", bill="funds", amount=4000)
    lines, funds = await fetch_funds(env, day, tmp_path / "day.jsonl")
    assert funds.intact and [x.amount for x in settlements(lines)] == [-4000]
    nxt = day + dt.timedelta(days=1)
    later, _ = await fetch_funds(env, nxt, tmp_path / "next.jsonl")
    left = 10000 - 10000 * FEE_BPS // 10_000 - 4000
    assert [(x.kind, x.amount) for x in later] == [(K.settlement, -left)]
    await fetch_funds(env, nxt, tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "next.jsonl").read_bytes()


async def test_day_without_money_has_no_withdrawal(env: Env, tmp_path: Path) -> None:
    lines, _ = await fetch_funds(env, today() - dt.timedelta(days=3), tmp_path / "none.jsonl")
    assert lines == [] and (tmp_path / "none.jsonl").read_bytes() == b""

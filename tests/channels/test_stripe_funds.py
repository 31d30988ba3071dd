"""Stripe's funds bill: the same balance transactions read for the balance's movements — a
``payout`` (and its ``payout_failure`` / ``payout_cancel``) is a ``settlement`` line with the
payout's id — through a golden file, the adapter and the sandbox's automatic payouts (the
shared rule of :func:`~paymux.channels.sandbox_bills.day_funds`).

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
from paymux.channels.stripe import bill
from paymux.channels.stripe.adapter import StripeAdapter
from tests.channels.listing_bills import GOLDEN, days_later, line_dict, outcome, today
from tests.channels.test_stripe import Env, env, paid, refund_request
from tests.channels.test_stripe_bill import tweak

__all__ = ["env"]
K = StatementLineKind


def reader(path: Path, kind: BillKind = BillKind.funds) -> BillReader:
    adapter = StripeAdapter.__new__(StripeAdapter)
    return adapter.bill_reader(path, {}, bill=kind)


# ---------------------------------------------------------------- golden files
def test_golden_funds_day() -> None:
    path = GOLDEN / "stripe" / "funds_day.jsonl"
    got = outcome(reader(path))
    expected = path.with_name(path.stem + ".funds.expected.json")
    if os.environ.get("PAYMUX_REGEN_GOLDEN"):
        expected.write_text(json.dumps(got, indent=2, ensure_ascii=False) + "\n", "utf-8")
    assert got == json.loads(expected.read_text("utf-8"))


def test_golden_funds_day_reads_as_stripe_means_it() -> None:
    """The day's payout out and an earlier payout's failure back, each a settlement line
    with the payout's id (expanded or not), signed as Stripe gives it; the charge and the
    refund as in the trade reading, where the payouts stay ``other`` lines."""
    path = GOLDEN / "stripe" / "funds_day.jsonl"
    funds = reader(path)
    lines = list(funds.lines())
    assert funds.intact, funds.failures()
    assert [(x.kind, x.amount, x.fee, x.channel_trade_no) for x in lines] == [
        (K.settlement, -12180, 0, "po_1QbToday0000000002"),
        (K.settlement, 5000, 0, "po_1QbEarlier000000001"),
        (K.refund, -2500, 0, "pi_3QbDelta0000000001"),
        (K.payment, 10000, 320, "pi_3QbDelta0000000001"),
    ]
    assert lines[0].occurred_at == dt.datetime(2026, 12, 2, 23, 59, 59, tzinfo=dt.UTC)
    assert sum(x.net for x in lines) == 0  # the day's balance, all paid out
    trade = list(reader(path, BillKind.trade).lines())
    assert [x.kind for x in trade] == [K.other, K.other, K.refund, K.payment]
    assert [line_dict(x) for x in trade[2:]] == [line_dict(x) for x in lines[2:]]


@pytest.mark.parametrize("name", ["day.jsonl", "bad_row.jsonl", "truncated.jsonl"])
def test_funds_reading_of_a_day_without_payouts_is_the_trade_reading(name: str) -> None:
    path = GOLDEN / "stripe" / name
    assert outcome(reader(path)) == outcome(reader(path, BillKind.trade))


def test_a_payout_without_its_payout_id_is_a_problem() -> None:
    row = {"id": "txn_1", "object": "balance_transaction", "amount": -100, "fee": 0,
           "currency": "usd", "created": 1796169599, "type": "payout", "source": None}  # fmt: skip
    with pytest.raises(ValueError, match="without its payout"):
        bill.statement_line(row, funds=True)
    assert bill.statement_line(row).kind is K.other  # the trade reading does not need it


def test_adapter_publishes_both_bills_in_one_file() -> None:
    assert bills_of(StripeAdapter) == {BillKind.trade, BillKind.funds}
    with pytest.raises(ValueError):
        StripeAdapter.__new__(StripeAdapter).bill_reader(Path("x"), {}, bill="fund")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the sandbox
async def fetch_funds(env: Env, day: dt.date, path: Path) -> tuple[list[StatementLine],
                                                                   BillReader]:  # fmt: skip
    with days_later((day - today()).days + 1), path.open("wb") as handle:
        fetched = await env.adapter.fetch_bill(day, handle, bill=BillKind.funds)
    funds = env.adapter.bill_reader(path, fetched.expected, bill=BillKind.funds)
    return list(funds.lines()), funds


def settlements(lines: list[StatementLine]) -> list[StatementLine]:
    return [x for x in lines if x.kind is K.settlement]


def account(env: Env) -> object:
    return env.sandbox.account(env.creds["secret_key"])


async def test_sandbox_pays_the_day_out_as_day_funds_says(env: Env, tmp_path: Path) -> None:
    req, pi = await paid(env, amount=10000)
    await env.adapter.create_refund(refund_request(req, pi, 2500))
    day = today()
    path = tmp_path / "funds.jsonl"
    lines, funds = await fetch_funds(env, day, path)
    assert funds.intact, funds.failures()
    (payout,) = settlements(lines)
    assert payout.amount == -(10000 - 320 - 2500) and payout.fee == 0
    assert payout.occurred_at == dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=dt.UTC)
    assert payout.channel_trade_no is not None and payout.channel_trade_no.startswith("po_")
    assert sum(x.net for x in lines) == 0
    (expected,) = [e for e in env.sandbox.day_funds(account(env), day)["usd"].entries  # type: ignore[arg-type]
                   if e.kind == "settlement"]  # fmt: skip
    assert (expected.amount, expected.at) == (payout.amount, payout.occurred_at)
    # the same file as the trade bill, byte for byte, on every fetch
    with days_later(1):
        trade = io.BytesIO()
        await env.adapter.fetch_bill(day, trade)
    assert trade.getvalue() == path.read_bytes()
    again = tmp_path / "again.jsonl"
    await fetch_funds(env, day, again)
    assert again.read_bytes() == path.read_bytes()


async def test_sandbox_payout_object(env: Env, tmp_path: Path) -> None:
    await paid(env, amount=5000)
    day = today()
    lines, _ = await fetch_funds(env, day, tmp_path / "funds.jsonl")
    (line,) = settlements(lines)
    headers = {"Authorization": f"Bearer {env.creds['secret_key']}"}
    with days_later(1):
        got = await env.client.get(f"/v1/payouts/{line.channel_trade_no}", headers=headers)
        listed = await env.client.get("/v1/payouts", headers=headers, params={"limit": 10})
    assert got.status_code == 200, got.text
    payout = got.json()
    assert payout["object"] == "payout" and payout["amount"] == -line.amount
    assert payout["automatic"] is True and payout["status"] == "in_transit"
    assert payout["balance_transaction"] == line.raw["id"]
    assert payout["arrival_date"] == int(dt.datetime.combine(
        day + dt.timedelta(days=2), dt.time(0), tzinfo=dt.UTC).timestamp())  # fmt: skip
    assert [p["id"] for p in listed.json()["data"]] == [line.channel_trade_no]
    with days_later(3):
        later = await env.client.get(f"/v1/payouts/{line.channel_trade_no}", headers=headers)
    assert later.json()["status"] == "paid"
    missing = await env.client.get("/v1/payouts/po_nothing", headers=headers)
    assert missing.status_code == 404
    # the official client reads it as a Payout
    with days_later(1):
        sdk = await env.sdk().v1.payouts.retrieve_async(str(line.channel_trade_no))
        listing = await env.sdk().v1.payouts.list_async({"limit": 1})
    assert (sdk.object, sdk.amount, sdk.arrival_date) == ("payout", -line.amount,
                                                          payout["arrival_date"])  # fmt: skip
    assert [p.id for p in listing.data] == [line.channel_trade_no]


async def test_a_day_of_refunds_only_debits_the_bank(env: Env, tmp_path: Path) -> None:
    """A day whose refunds outweigh its charges ends below zero: the payout is positive (the
    bank account debited), and the funds still net to zero."""
    req, pi = await paid(env, amount=1000)
    await env.adapter.create_refund(refund_request(req, pi, 1000))
    lines, _ = await fetch_funds(env, today(), tmp_path / "funds.jsonl")
    (payout,) = settlements(lines)
    assert payout.amount == 1000 * 290 // 10_000 + 30 and sum(x.net for x in lines) == 0


async def test_settlement_amount_tweak_shows_and_carries(env: Env, tmp_path: Path) -> None:
    """``settlement_amount``: the day's payout pays the tweak's amount; what it leaves is paid
    out the next day (a day with no charge)."""
    await paid(env, amount=10000)
    day = today()
    await tweak(env, day, "settlement_amount", bill="funds", amount=4000)
    lines, funds = await fetch_funds(env, day, tmp_path / "day.jsonl")
    assert funds.intact and [x.amount for x in settlements(lines)] == [-4000]
    nxt = day + dt.timedelta(days=1)
    later, _ = await fetch_funds(env, nxt, tmp_path / "next.jsonl")
    assert [(x.kind, x.amount) for x in later] == [(K.settlement, -(10000 - 320 - 4000))]
    trade, _ = await fetch_funds(env, nxt, tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "next.jsonl").read_bytes()
    assert trade == later


async def test_day_without_money_has_no_payout(env: Env, tmp_path: Path) -> None:
    path, day = tmp_path / "none.jsonl", today()
    with days_later(1), path.open("wb") as handle:
        fetched = await env.adapter.fetch_bill(day, handle, bill=BillKind.funds)
    assert not fetched.exists and path.read_bytes() == b""

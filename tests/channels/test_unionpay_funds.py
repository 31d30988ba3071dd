"""UnionPay's funds bill: the same ``fileTransfer`` zip read for what UnionPay clears on the
settlement date — the ZM records as in the trade reading and one ``settlement`` line, −Σ of
what they clear (``settleAmt``, else the amount net of ``merFee``) — through golden zips, the
adapter and the sandbox, against the shared rule of
:func:`~paymux.channels.sandbox_bills.day_funds`. ``PAYMUX_WRITE_GOLDEN=1`` rewrites the
``*.funds.expected.json`` files (read the diff)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from pathlib import Path

import pytest

from paymux.channels.base import StatementLine, StatementLineKind
from paymux.channels.bills import BillKind, BillReader, bills_of
from paymux.channels.sandbox_bills import day_funds
from paymux.channels.unionpay import protocol as p
from paymux.channels.unionpay.adapter import UnionPayAdapter
from paymux.channels.unionpay.bill import settle_amount
from tests.channels import golden_bills
from tests.channels.test_unionpay import Env, env
from tests.channels.test_unionpay_bill import Day, ahead, business, tweak

__all__ = ["ahead", "business", "env"]
K = StatementLineKind
GOLDEN = golden_bills.GOLDEN / "unionpay"
MER = "777290058110048"


def reader(path: Path, kind: BillKind = BillKind.funds) -> BillReader:
    return UnionPayAdapter.__new__(UnionPayAdapter).bill_reader(path, {}, bill=kind)


def plain(line: StatementLine) -> dict[str, object]:
    return {f.name: getattr(line, f.name) for f in dataclasses.fields(line) if f.name != "raw"}


# ------------------------------------------------------------------ golden files
@pytest.mark.parametrize("path", golden_bills.bills_of("unionpay"), ids=lambda p: p.name)
def test_golden_funds(path: Path) -> None:
    got = golden_bills.output(reader(path))
    expected = path.with_name(path.name + ".funds.expected.json")
    if os.environ.get("PAYMUX_WRITE_GOLDEN") == "1":
        expected.write_text(json.dumps(got, ensure_ascii=False, indent=2) + "\n", "utf-8")
    assert got == json.loads(expected.read_text("utf-8"))


@pytest.mark.parametrize("path", golden_bills.bills_of("unionpay"), ids=lambda p: p.name)
def test_funds_reading_is_the_trade_reading_and_its_settlement(path: Path) -> None:
    """The records are the trade reading's, line for line; a settlement follows only when
    the file read whole (no problem) and cleared something."""
    funds, trade = reader(path), reader(path, BillKind.trade)
    lines, trade_lines = list(funds.lines()), list(trade.lines())
    records = [x for x in lines if x.kind is not K.settlement]
    assert [plain(x) for x in records] == [plain(x) for x in trade_lines]
    assert funds.problems == trade.problems and funds.checks == trade.checks
    settled = [x for x in lines if x.kind is K.settlement]
    if funds.problem_count or not sum(x.net for x in records):
        assert settled == []
    else:
        assert lines[-1] is settled[0] and len(settled) == 1


def test_golden_day_settles_its_records_net_of_fees() -> None:
    lines = list(reader(GOLDEN / "day.zip").lines())
    *records, settled = lines
    # consumes 10000 + 2500 + 999 + 2500 (listed twice), refunds 4000 + 2500, fees net
    assert sum(x.net for x in records) == 10000 - 60 + 2500 - 15 - 4000 + 24 - 2500 + 15 + 999 \
        - 6 + 2500 - 15  # fmt: skip
    assert (settled.kind, settled.amount, settled.fee) == (K.settlement, -9442, 0)
    assert settled.channel_trade_no == f"settle:{MER}:20261130"
    assert settled.occurred_at == dt.datetime(2026, 11, 30, 23, 59, 59, tzinfo=p.CHINA)
    assert settled.currency == "CNY" and settled.out_trade_no is None


def test_golden_settle_amt_is_what_clears() -> None:
    """``settleAmt`` (C credited, D debited) is what a record clears; a record without one
    clears its amount net of ``merFee``."""
    funds = reader(GOLDEN / "settle_amt.zip")
    *records, settled = list(funds.lines())
    assert funds.intact and [x.kind for x in records] == [K.payment, K.refund, K.payment]
    assert settled.amount == -(9940 - 3976 + (2500 - 15))


def test_settle_amount_forms() -> None:
    assert settle_amount({"settleAmt": ""}, refund=False) is None
    assert settle_amount({"settleAmt": "C000000000100"}, refund=True) == 100
    assert settle_amount({"settleAmt": "D000000000100"}, refund=False) == -100
    assert settle_amount({"settleAmt": "0000000000100"}, refund=True) == -100
    with pytest.raises(p.ProtocolError):
        settle_amount({"settleAmt": "X00000000010"}, refund=False)


def test_adapter_publishes_both_bills_in_one_file() -> None:
    assert bills_of(UnionPayAdapter) == {BillKind.trade, BillKind.funds}
    with pytest.raises(ValueError):
        reader(GOLDEN / "day.zip", "fund")  # type: ignore[arg-type]


# ------------------------------------------------------------------ the sandbox
async def fetch(env: Env, day: dt.date, path: Path, kind: BillKind) -> list[StatementLine]:
    with path.open("wb") as handle:
        got = await env.adapter.fetch_bill(day, handle, bill=kind)
    return list(env.adapter.bill_reader(path, got.expected, bill=kind).lines())


async def test_sandbox_settlement_is_day_funds(env: Env, business: Day, tmp_path: Path) -> None:
    """The settlement the funds reading derives is the one the shared rule says (10000 and
    1999 paid, 4000 refunded, 0.6 % fees: the refund's returned); the file is the trade
    bill's, byte for byte, on every fetch."""
    path = tmp_path / "funds.zip"
    lines = await fetch(env, business.day, path, BillKind.funds)
    (settled,) = [x for x in lines if x.kind is K.settlement]
    mer_id = env.creds["mer_id"]
    shared = day_funds(env.sandbox.core, business.day, p.CHINA, env.sandbox.fee_of,
                       lambda d: [], listed=lambda o: o.merchant_id == mer_id)  # fmt: skip
    (expected,) = [e for e in shared.entries if e.kind == "settlement"]
    assert settled.amount == expected.amount == -(10000 - 60 + 1999 - 12 - 4000 + 24)
    assert settled.occurred_at == expected.at
    assert settled.channel_trade_no == f"settle:{mer_id}:{business.day:%Y%m%d}"
    trade = tmp_path / "trade.zip"
    await fetch(env, business.day, trade, BillKind.trade)
    again = tmp_path / "again.zip"
    await fetch(env, business.day, again, BillKind.funds)
    assert path.read_bytes() == trade.read_bytes() == again.read_bytes()


async def test_settlement_amount_tweak_cannot_show(env: Env, business: Day, tmp_path: Path) -> None:
    """The ZM file is the settlement: a settlement differing from its records cannot be
    written, so the sandbox leaves the file as it was (documented there)."""
    before = tmp_path / "before.zip"
    await fetch(env, business.day, before, BillKind.funds)
    await tweak(env, business.day, "settlement_amount", bill="funds", amount=1)
    after = tmp_path / "after.zip"
    await fetch(env, business.day, after, BillKind.funds)
    assert after.read_bytes() == before.read_bytes()


async def test_trade_tweak_moves_the_settlement(env: Env, business: Day, tmp_path: Path) -> None:
    """A trade tweak changes the records, and so what the day clears."""
    await tweak(env, business.day, "amount", business.first, amount=9000)
    lines = await fetch(env, business.day, tmp_path / "b.zip", BillKind.funds)
    (settled,) = [x for x in lines if x.kind is K.settlement]
    assert settled.amount == -(9000 - 60 + 1999 - 12 - 4000 + 24)

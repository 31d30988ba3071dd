"""WeChat Pay fund-flow bills (资金账单) for reconciliation: the reader over golden files, and the
sandbox's bill fetched through ``fetch_bill(bill=funds)`` + ``bill_reader`` — its lines are what
the sandbox did (payments, a refund, a payout, the settlement), and every funds tweak shows.
Format facts: :mod:`paymux.channels.wechatpay.fundflow`."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paymux.channels import bills
from paymux.channels.base import StatementLine, StatementLineKind
from paymux.channels.bills import BillKind
from paymux.channels.wechatpay import fundflow
from paymux.channels.wechatpay.adapter import WechatPayAdapter, WechatPayPartnerAdapter
from paymux.channels.wechatpay.bill import yuan
from paymux.kit import clock
from tests.channels import golden_bills
from tests.channels.test_wechatpay import BASE, Env
from tests.channels.test_wechatpay_bill import go_to, noon_days_ago, paid_order, refunded, shifted
from tests.channels.test_wechatpay_transfers import env, payout

__all__ = ["env", "shifted"]

_FILES = itertools.count()
FUNDS = BillKind.funds


# ------------------------------------------------------------------ golden files
GOLDEN = golden_bills.bills_of("wechatpay", funds=True)


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_golden_funds_bill(env: Env, path: Path) -> None:
    golden_bills.compare(path, env.adapter.bill_reader(path, {}, FUNDS))


def test_golden_funds_files_cover_the_cases() -> None:
    """What each golden fund-flow bill is for (a renamed or lost file fails here)."""
    got = {p.name.removesuffix(".csv"): golden_bills.json_of(p)
           for p in GOLDEN}  # fmt: skip
    day = got["funds_day"]
    assert day["intact"] and [x["kind"] for x in day["lines"]] == [
        "payment", "payment", "refund", "payout", "settlement"]  # fmt: skip
    assert [(x["amount"], x["fee"], x["balance"]) for x in day["lines"]] == [
        (10000, 60, 9940), (1999, 12, 11927), (-3000, -18, 8945), (-5000, 0, 3945),
        (-3945, 0, 0)]  # fmt: skip
    assert day["lines"][2]["out_refund_no"] == "re_golden_0031"
    assert day["lines"][3]["out_trade_no"] == "po_golden_0031"
    assert got["funds_empty"]["intact"] and got["funds_empty"]["lines"] == []
    assert failed(got["funds_bad_summary"]) == {"summary_count", "summary_income_count",
                                                "summary_income"}  # fmt: skip
    assert failed(got["funds_broken_chain"]) == {"balance_chain"}
    assert len(got["funds_bad_rows"]["problems"]) == 3 and not failed(got["funds_bad_rows"])
    older = got["funds_older_names"]
    assert older["intact"] and [x["kind"] for x in older["lines"]] == [
        "payment", "fee", "payout", "other"]  # fmt: skip
    assert [p["position"] for p in got["funds_not_a_bill"]["problems"]] == [0]


def failed(outcome: dict[str, Any]) -> set[str]:
    return {c["name"] for c in outcome["checks"] if not c["ok"]}


# ------------------------------------------------------------------ the sandbox's bill
async def fetch_and_read(
    env: Env, day: dt.date, tmp_path: Path, adapter: WechatPayAdapter | None = None
) -> tuple[bills.FetchedBill, bills.BillReader, list[StatementLine]]:
    adapter = adapter or env.adapter
    path = tmp_path / f"funds-{day}-{next(_FILES)}.csv"
    with path.open("wb") as handle:
        fetched = await adapter.fetch_bill(day, handle, FUNDS)
    reader = adapter.bill_reader(path, fetched.expected, FUNDS)
    return fetched, reader, list(reader.lines())


async def tweak(env: Env, **body: Any) -> None:
    r = await env.http.post(f"{BASE}/_sandbox/bill_tweaks", json={"bill": "funds", **body})
    assert r.status_code == 200, r.text


class Day:
    def __init__(self, day: dt.date, first: str, second: str, refund: str, payout_id: str):
        self.day, self.first, self.second = day, first, second
        self.refund, self.payout_id = refund, payout_id


@pytest.fixture
async def business(env: Env, shifted: clock.OffsetClock) -> Day:
    """Two days ago: 100.00 and 19.99 paid, 30.00 of the first refunded, 50.00 paid out."""
    go_to(shifted, noon_days_ago(2))
    first, _ = await paid_order(env, 10000)
    second, _ = await paid_order(env, 1999)
    refund, _ = await refunded(env, first, 3000, 10000)
    request = payout(amount=5000)
    state = await env.adapter.create_transfer(request)
    assert state.channel_transfer_no
    go_to(shifted, noon_days_ago(0))
    return Day(noon_days_ago(2).date(), first, second, refund, request.out_biz_no)


def kinds(lines: list[StatementLine]) -> list[tuple[str, str | None, int, int]]:
    return [(x.kind.value, x.reference, x.amount, x.fee) for x in lines]


async def test_funds_bill_is_what_the_sandbox_did(env: Env, business: Day, tmp_path: Path) -> None:
    fetched, reader, lines = await fetch_and_read(env, business.day, tmp_path)
    data = reader.path.read_bytes()
    assert fetched.exists and fetched.expected == {
        "sha1": hashlib.sha1(data, usedforsecurity=False).hexdigest()}  # fmt: skip
    assert fetched.filename.endswith(f"{business.day}_FUNDFLOW_BASIC.csv")
    assert reader.intact, reader.failures()
    assert {c.name for c in reader.checks} >= {"sha1", "summary_income", "balance_chain"}
    transfer = next(iter(env.sandbox.transfers.values()))
    settled = 10000 - 60 + 1999 - 12 - 3000 + 18 - 5000
    assert kinds(lines) == [
        ("payment", business.first, 10000, 60), ("payment", business.second, 1999, 12),
        ("refund", business.refund, -3000, -18), ("payout", business.payout_id, -5000, 0),
        ("settlement", None, -settled, 0),
    ]  # fmt: skip
    assert [x.balance for x in lines] == [9940, 11927, 8945, 3945, 0]
    assert lines[3].channel_trade_no == transfer.transfer_bill_no
    assert lines[3].raw["业务凭证号"] == transfer.out_bill_no != business.payout_id
    order = env.sandbox.core.find(business.first)
    assert order is not None and lines[0].channel_trade_no == order.channel_trade_no
    # Matches the shared sandbox day, line for line.
    day = env.sandbox.day_funds(env.creds["mchid"], business.day)
    assert [(e.amount, e.fee, e.balance) for e in day.entries] == [
        (x.amount, x.fee, x.balance) for x in lines]  # fmt: skip
    assert [e.flow_no for e in day.entries] == [x.raw["资金流水单号"] for x in lines]


async def test_a_funds_bill_fetched_twice_is_the_same_file(
    env: Env, business: Day, tmp_path: Path
) -> None:
    await tweak(env, day=f"{business.day}", kind="duplicate", out_trade_no=business.payout_id)
    _, one, _ = await fetch_and_read(env, business.day, tmp_path)
    _, two, _ = await fetch_and_read(env, business.day, tmp_path)
    assert one.path.read_bytes() == two.path.read_bytes()


async def test_payout_tweaks(env: Env, business: Day, tmp_path: Path) -> None:
    day = f"{business.day}"
    await tweak(env, day=day, kind="amount", out_trade_no=business.payout_id, amount=4999)
    _, reader, lines = await fetch_and_read(env, business.day, tmp_path)
    assert reader.intact and [x.amount for x in lines if x.kind.value == "payout"] == [-4999]
    assert lines[-1].balance == 0  # the settlement pays what the balance holds
    await env.http.delete(f"{BASE}/_sandbox/bill_tweaks")

    await tweak(env, day=day, kind="duplicate", out_trade_no=business.payout_id)
    _, reader, lines = await fetch_and_read(env, business.day, tmp_path)
    payouts = [x for x in lines if x.kind is StatementLineKind.payout]
    assert reader.intact and len(payouts) == 2 and payouts[0].reference == payouts[1].reference
    assert payouts[0].raw["资金流水单号"] != payouts[1].raw["资金流水单号"]
    await env.http.delete(f"{BASE}/_sandbox/bill_tweaks")

    await tweak(env, day=day, kind="drop", out_trade_no=business.payout_id)
    await tweak(env, day=day, kind="extra_payout", amount=700)
    _, reader, lines = await fetch_and_read(env, business.day, tmp_path)
    (extra,) = [x for x in lines if x.kind is StatementLineKind.payout]
    assert reader.intact and extra.amount == -700 and extra.reference != business.payout_id
    assert extra.reference and extra.reference.startswith("portal")


async def test_settlement_amount_leaves_a_balance_for_the_next_day(
    env: Env, business: Day, tmp_path: Path
) -> None:
    await tweak(env, day=f"{business.day}", kind="settlement_amount", amount=1000)
    _, reader, lines = await fetch_and_read(env, business.day, tmp_path)
    assert reader.intact and lines[-1].kind is StatementLineKind.settlement
    assert lines[-1].amount == -1000 and lines[-1].balance == 3945 - 1000
    _, later, moved = await fetch_and_read(env, business.day + dt.timedelta(days=1), tmp_path)
    assert later.intact and kinds(moved) == [("settlement", None, -2945, 0)]
    assert moved[0].balance == 0


async def test_corrupt_summary_and_bad_row(env: Env, business: Day, tmp_path: Path) -> None:
    await tweak(env, day=f"{business.day}", kind="corrupt_summary", amount=3)
    await tweak(env, day=f"{business.day}", kind="bad_row")
    _, reader, lines = await fetch_and_read(env, business.day, tmp_path)
    assert len(lines) == 5 and reader.problem_count == 1
    assert {c.name for c in reader.checks if not c.ok} == {"summary_income"}
    assert "summary 11930, detail 11927" in " ".join(reader.failures())


async def test_trade_tweaks_change_the_funds_bill_too(
    env: Env, business: Day, tmp_path: Path
) -> None:
    r = await env.http.post(f"{BASE}/_sandbox/bill_tweaks", json={
        "day": f"{business.day}", "kind": "drop", "out_trade_no": business.second})  # fmt: skip
    assert r.status_code == 200
    _, reader, lines = await fetch_and_read(env, business.day, tmp_path)
    assert reader.intact and business.second not in [x.reference for x in lines]


async def test_a_quiet_day_has_no_funds_bill(env: Env, business: Day, tmp_path: Path) -> None:
    quiet = business.day - dt.timedelta(days=1)
    with (tmp_path / "none").open("wb") as handle:
        got = await env.adapter.fetch_bill(quiet, handle, FUNDS)
    assert not got.exists and (tmp_path / "none").read_bytes() == b""


async def test_statement_stays_trade_only(env: Env, business: Day) -> None:
    lines = await env.adapter.statement(business.day)
    assert {x.kind for x in lines} == {StatementLineKind.payment, StatementLineKind.refund}
    assert env.adapter.bills == {BillKind.trade, BillKind.funds}
    assert fundflow.BILL_PATH == "/v3/bill/fundflowbill"


async def test_partner_accounts_have_trade_bills_only(env: Env, tmp_path: Path) -> None:
    creds = env.sandbox.partners.provision(BASE)
    adapter = WechatPayAdapter({**creds, "sp_mchid": "1900000100", "sub_mchid": "1900000109"},
                               env.http)  # fmt: skip
    assert isinstance(adapter, WechatPayPartnerAdapter)
    assert bills.bills_of(adapter) == {BillKind.trade}
    with (tmp_path / "x").open("wb") as handle, pytest.raises(ValueError):
        await adapter.fetch_bill(dt.date(2026, 11, 30), handle, FUNDS)
    with pytest.raises(ValueError):
        adapter.bill_reader(tmp_path / "x", {}, FUNDS)


# ------------------------------------------------------------------ a large file
def test_a_large_funds_bill_reads_in_bounded_memory(tmp_path: Path) -> None:
    """30k lines (a file several times the limit): the reader's peak stays under 1 MB."""
    rows, limit = 30_000, 1024 * 1024

    def many() -> Iterator[dict[str, str]]:
        for n in range(rows):
            yield {
                "记账时间": "2026-11-30 10:00:01", "微信支付业务单号": f"4200{n:018d}",
                "资金流水单号": f"2026113010{n:016d}", "业务名称": fundflow.TRADE,
                "业务类型": fundflow.TRADE, "收支类型": fundflow.INCOME, "收支金额（元）": "12.27",
                "账户结余（元）": yuan(1227 * (n + 1)), "资金变更提交申请人": "system",
                "备注": fundflow.note_of(fundflow.TRADE, 1227, 7), "业务凭证号": f"att_{n:026d}",
            }  # fmt: skip

    path = tmp_path / "large.csv"
    with path.open("wb") as handle:
        fundflow.write_fundflow(many(), handle)
    assert path.stat().st_size > 3 * limit
    reader = fundflow.FundFlowBillReader(path)
    tracemalloc.start()
    try:
        count = total = 0
        for line in reader.lines():
            count, total = count + 1, total + line.net
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (count, total) == (rows, rows * 1227) and reader.intact, reader.failures()
    assert peak < limit, f"peak {peak} bytes"

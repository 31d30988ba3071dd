"""Alipay fund-flow bills (账务明细, ``bill_type=signcustomer``) for reconciliation: the reader
over golden files, and the sandbox's bill fetched through ``fetch_bill(bill=funds)`` +
``bill_reader`` — its lines are what the sandbox did (payments and their fees, a refund, a
payout, the settlement), and every funds tweak shows. Format facts:
:mod:`paymux.channels.alipay.funds`."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import tracemalloc
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from paymux.channels import bills
from paymux.channels.alipay import bill, funds
from paymux.channels.alipay.sandbox import Sandbox
from paymux.channels.base import ChannelTransferStatus, StatementLine, StatementLineKind
from paymux.channels.bills import BillKind
from paymux.kit import clock
from tests.channels import golden_bills
from tests.channels.test_alipay import request
from tests.channels.test_alipay_bill import go_to, noon_days_ago, shifted
from tests.channels.test_alipay_refunds import refund
from tests.channels.test_alipay_transfers import Env, payout

__all__ = ["shifted"]

FUNDS = BillKind.funds
GOLDEN = golden_bills.bills_of("alipay", funds=True)
_FILES = itertools.count()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    """Certificate mode (Alipay pays out only in it), payments and refunds as usual."""
    sandbox = Sandbox(time_scale=0.001, hold_timeout_seconds=1.0)
    environment = Env(sandbox)
    yield environment
    await sandbox.core.aclose()
    for c in environment.clients:
        await c.aclose()


# ------------------------------------------------------------------ golden files
@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_golden_funds_bill(env: Env, path: Path) -> None:
    golden_bills.compare(path, env.adapter.bill_reader(path, {}, FUNDS))


def failed(outcome: dict[str, Any]) -> set[str]:
    return {c["name"] for c in outcome["checks"] if not c["ok"]}


def test_golden_funds_files_cover_the_cases() -> None:
    """What each golden 账务明细 is for (a renamed or lost file fails here)."""
    got = {p.name.removesuffix(".csv.zip"): golden_bills.json_of(p) for p in GOLDEN}
    day = got["funds_day"]
    assert day["intact"] and [x["kind"] for x in day["lines"]] == [
        "payment", "fee", "payment", "fee", "refund", "fee", "payout", "settlement"]  # fmt: skip
    assert [x["amount"] for x in day["lines"]] == [10000, -60, 1999, -12, -3000, 18, -5000,
                                                   -3945]  # fmt: skip
    assert [x["balance"] for x in day["lines"]][-2:] == [3945, 0]
    assert day["lines"][6]["out_trade_no"] == "po_golden_0031"
    assert got["funds_empty"]["intact"] and got["funds_empty"]["lines"] == []
    assert failed(got["funds_bad_summary"]) == {"summary_income_count", "summary_income"}
    assert failed(got["funds_broken_chain"]) == {"balance_chain"}
    assert len(got["funds_bad_rows"]["problems"]) == 3 and not failed(got["funds_bad_rows"])
    assert failed(got["funds_no_footer"]) == {
        "summary_income_count",
        "summary_income",
        "summary_expense_count",
        "summary_expense",
    }
    for name in ("funds_not_a_bill", "funds_not_a_zip"):
        assert [p["position"] for p in got[name]["problems"]] == [0] and not got[name]["lines"]


# ------------------------------------------------------------------ the sandbox's bill
async def paid(env: Env, amount: int) -> Any:
    req = request(amount=amount)
    await env.adapter.create_payment(req)
    answer = await env.client.post(f"/_sandbox/orders/{req.out_trade_no}/pay",
                                   json={"result": "pay"})  # fmt: skip
    assert answer.json()["changed"] is True
    order = env.sandbox.core.find(req.out_trade_no)
    assert order is not None
    for _ in range(200):
        if order.paid_at is not None:
            return req
        await asyncio.sleep(0.01)
    raise AssertionError("not paid")


class Day:
    def __init__(self, day: dt.date, first: Any, second: Any, out_biz_no: str, order_id: str):
        self.day, self.first, self.second = day, first, second
        self.out_biz_no, self.order_id = out_biz_no, order_id


@pytest.fixture
async def business(env: Env, shifted: clock.OffsetClock) -> Day:
    """Two days ago: 100.00 and 19.99 paid, 30.00 of the first refunded, 50.00 paid out."""
    go_to(shifted, noon_days_ago(2))
    first, second = await paid(env, 10000), await paid(env, 1999)
    assert (await env.adapter.create_refund(refund(first, 3000))).status.value == "succeeded"
    req = payout(env.alice, 5000)
    state = await env.adapter.create_transfer(req)
    assert state.status is ChannelTransferStatus.succeeded and state.channel_transfer_no
    go_to(shifted, noon_days_ago(0))
    return Day(noon_days_ago(2).date(), first, second, req.out_biz_no, state.channel_transfer_no)


async def fetched(
    env: Env, day: dt.date, tmp_path: Path
) -> tuple[bills.FetchedBill, bills.BillReader, list[StatementLine]]:
    path = tmp_path / f"funds-{day}-{next(_FILES)}.csv.zip"
    with path.open("wb") as handle:
        got = await env.adapter.fetch_bill(day, handle, FUNDS)
    reader = env.adapter.bill_reader(path, got.expected, FUNDS)
    return got, reader, list(reader.lines())


async def tweak(env: Env, **body: Any) -> None:
    answer = await env.client.post("/_sandbox/bill_tweaks", json={"bill": "funds", **body})
    assert answer.status_code == 200, answer.text


def kinds(lines: list[StatementLine]) -> list[tuple[str, str | None, int]]:
    return [(x.kind.value, x.out_trade_no, x.amount) for x in lines]


async def test_funds_bill_is_what_the_sandbox_did(env: Env, business: Day, tmp_path: Path) -> None:
    got, reader, lines = await fetched(env, business.day, tmp_path)
    seller = env.sandbox.apps[env.creds["app_id"]].seller_id
    assert got.exists and got.filename == bill.file_stem(seller, business.day) + ".csv.zip"
    assert reader.intact, reader.failures()
    assert {c.name for c in reader.checks} == {"summary_income_count", "summary_income",
                                               "summary_expense_count", "summary_expense",
                                               "balance_chain"}  # fmt: skip
    first, second = business.first.out_trade_no, business.second.out_trade_no
    settled = 10000 - 60 + 1999 - 12 - 3000 + 18 - 5000
    assert kinds(lines) == [
        ("payment", first, 10000), ("fee", first, -60), ("payment", second, 1999),
        ("fee", second, -12), ("refund", first, -3000), ("fee", first, 18),
        ("payout", business.out_biz_no, -5000), ("settlement", None, -settled),
    ]  # fmt: skip
    assert lines[6].channel_trade_no == business.order_id
    order = env.sandbox.core.find(first)
    assert order is not None and lines[0].channel_trade_no == order.channel_trade_no
    assert lines[4].channel_trade_no == order.channel_trade_no
    # The balance after each line: the shared sandbox day's, a fee row after its line.
    app = env.sandbox.apps[env.creds["app_id"]]
    day = env.sandbox.day_funds(app, business.day)
    ends = [x.balance for x, after in zip(lines, [*lines[1:], None], strict=True)
            if after is None or after.kind is not StatementLineKind.fee]  # fmt: skip
    assert [e.balance for e in day.entries] == ends
    assert lines[-1].balance == 0 and lines[-1].channel_trade_no == day.entries[-1].channel_ref


async def test_a_funds_bill_fetched_twice_is_the_same_file(
    env: Env, business: Day, tmp_path: Path
) -> None:
    await tweak(env, day=f"{business.day}", kind="duplicate", out_trade_no=business.out_biz_no)
    _, one, _ = await fetched(env, business.day, tmp_path)
    _, two, _ = await fetched(env, business.day, tmp_path)
    assert one.path.read_bytes() == two.path.read_bytes()


async def test_payout_tweaks(env: Env, business: Day, tmp_path: Path) -> None:
    day = f"{business.day}"
    await tweak(env, day=day, kind="amount", out_trade_no=business.out_biz_no, amount=4999)
    _, reader, lines = await fetched(env, business.day, tmp_path)
    assert reader.intact and [x.amount for x in lines if x.kind.value == "payout"] == [-4999]
    await env.client.delete("/_sandbox/bill_tweaks")

    await tweak(env, day=day, kind="duplicate", out_trade_no=business.out_biz_no)
    _, reader, lines = await fetched(env, business.day, tmp_path)
    payouts = [x for x in lines if x.kind is StatementLineKind.payout]
    assert reader.intact and [x.out_trade_no for x in payouts] == [business.out_biz_no] * 2
    assert payouts[0].raw["账务流水号"] != payouts[1].raw["账务流水号"]
    await env.client.delete("/_sandbox/bill_tweaks")

    await tweak(env, day=day, kind="drop", out_trade_no=business.out_biz_no)
    await tweak(env, day=day, kind="extra_payout", amount=700, out_trade_no="po_portal")
    _, reader, lines = await fetched(env, business.day, tmp_path)
    assert reader.intact
    assert [(x.out_trade_no, x.amount) for x in lines if x.kind.value == "payout"] == [
        ("po_portal", -700)]  # fmt: skip


async def test_settlement_amount_leaves_a_balance_for_the_next_day(
    env: Env, business: Day, tmp_path: Path
) -> None:
    await tweak(env, day=f"{business.day}", kind="settlement_amount", amount=1000)
    _, reader, lines = await fetched(env, business.day, tmp_path)
    assert reader.intact and (lines[-1].kind, lines[-1].amount) == (
        StatementLineKind.settlement, -1000)  # fmt: skip
    assert lines[-1].balance == 3945 - 1000
    _, later, moved = await fetched(env, business.day + dt.timedelta(days=1), tmp_path)
    assert later.intact and kinds(moved) == [("settlement", None, -2945)]


async def test_corrupt_summary_and_bad_row(env: Env, business: Day, tmp_path: Path) -> None:
    await tweak(env, day=f"{business.day}", kind="corrupt_summary", amount=3)
    await tweak(env, day=f"{business.day}", kind="bad_row")
    _, reader, lines = await fetched(env, business.day, tmp_path)
    assert len(lines) == 8 and reader.problem_count == 1
    assert {c.name for c in reader.checks if not c.ok} == {"summary_income"}
    assert reader.problems[0].text.startswith("账务明细行无法读取")


async def test_no_business_is_no_funds_bill(env: Env, business: Day, tmp_path: Path) -> None:
    quiet = business.day - dt.timedelta(days=1)
    with (tmp_path / "none").open("wb") as handle:
        got = await env.adapter.fetch_bill(quiet, handle, FUNDS)
    assert not got.exists and got.filename == f"alipay_{quiet:%Y%m%d}_signcustomer.csv.zip"


async def test_statement_stays_trade_only(env: Env, business: Day) -> None:
    lines = await env.adapter.statement(business.day)
    assert {x.kind for x in lines} == {StatementLineKind.payment, StatementLineKind.refund}
    assert bills.bills_of(env.adapter) == {BillKind.trade, BillKind.funds}


# ------------------------------------------------------------------ a large file
def many(count: int) -> Iterator[dict[str, str]]:
    """Payments of 12.34, the balance growing by each."""
    for n in range(count):
        yield {
            "账务流水号": f"3100{n:014d}", "业务流水号": f"2026113022001{n:09d}",
            "商户订单号": f"att_{n:026d}", "商品名称": "茶", "发生时间": "2026-11-30 10:00:01",
            "收入金额（+元）": "12.34", "支出金额（-元）": "0.00",
            "账户余额（元）": bill.yuan(1234 * (n + 1)), "业务类型": funds.PAYMENT,
        }  # fmt: skip


def test_a_large_funds_bill_reads_in_bounded_memory(tmp_path: Path) -> None:
    """30k rows (a member several times the limit): the reader's peak stays under 1 MB."""
    rows, limit = 30_000, 1024 * 1024
    path = tmp_path / "large.csv.zip"
    with path.open("wb") as handle:
        funds.write_zip(handle, "2088102000000001", dt.date(2026, 11, 30), many(rows),
                        dt.datetime(2026, 12, 1, tzinfo=dt.UTC))  # fmt: skip
    with zipfile.ZipFile(path) as archive:
        assert max(i.file_size for i in archive.infolist()) > 3 * limit
    reader = funds.AccountBillReader(path)
    tracemalloc.start()
    try:
        count = total = 0
        for line in reader.lines():
            count, total = count + 1, total + line.amount
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (count, total) == (rows, rows * 1234) and reader.intact, reader.failures()
    assert peak < limit, f"peak {peak} bytes"

"""Alipay trade bill as reconciliation reads it: golden files through the adapter's
``bill_reader``, every sandbox bill tweak fetched through ``fetch_bill``, and a reader's memory
on a large file. Format facts: :mod:`paymux.channels.alipay.bill`."""

from __future__ import annotations

import datetime as dt
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paymux.channels.alipay import bill
from paymux.channels.base import RetryableError, StatementLine, StatementLineKind
from paymux.channels.bills import BillReader, FetchedBill
from paymux.kit import clock
from tests.channels import golden_bills
from tests.channels.test_alipay import Env, env
from tests.channels.test_alipay_bill import go_to, noon_days_ago, shifted
from tests.channels.test_alipay_refunds import paid, refund

__all__ = ["env", "shifted"]


# ------------------------------------------------------------------ golden files
@pytest.mark.parametrize("path", golden_bills.bills_of("alipay"), ids=lambda p: p.name)
async def test_golden_bill(env: Env, path: Path) -> None:
    """day: two trades, a partial and a full refund, a trade of the day before, a trade
    listed twice — all read, all totals agree; empty: no rows, zero totals; bad_summary:
    the footer's 商家实收 and the 汇总 订单金额 one fen high, one 退款 too many; bad_row: a bad
    amount and a cut row, the good row read and the totals over it agreeing; not_a_bill (a
    账务明细 export) and not_a_zip: one problem at position 0, nothing else."""
    golden_bills.compare(path, env.adapter.bill_reader(path, {}))


# ------------------------------------------------------------------ sandbox tweaks
async def tweak(env: Env, day: dt.date, kind: str, **fields: Any) -> None:
    body = {"day": f"{day}", "kind": kind, **fields}
    answer = await env.client.post("/_sandbox/bill_tweaks", json=body)
    assert answer.status_code == 200, answer.text


async def fetched(env: Env, day: dt.date, tmp_path: Path) -> tuple[BillReader, list[StatementLine]]:
    path = tmp_path / f"{day}.csv.zip"
    with path.open("wb") as handle:
        got = await env.adapter.fetch_bill(day, handle)
    seller = env.sandbox.apps[env.creds["app_id"]].seller_id
    assert got.exists and got.filename == bill.file_stem(seller, day) + ".csv.zip"
    reader = env.adapter.bill_reader(path, got.expected)
    return reader, list(reader.lines())


def failed(reader: BillReader) -> set[str]:
    return {c.name for c in reader.checks if not c.ok}


class Day:
    """Two orders paid two days ago (10000, 1999) and 4000 of the first refunded."""

    def __init__(self, day: dt.date, first: str, second: str, refund_no: str) -> None:
        self.day, self.first, self.second, self.refund_no = day, first, second, refund_no


@pytest.fixture
async def business(env: Env, shifted: clock.OffsetClock) -> Day:
    go_to(shifted, noon_days_ago(2))
    first, second = await paid(env, amount=10000), await paid(env, amount=1999)
    back = refund(first, 4000)
    assert (await env.adapter.create_refund(back)).status.value == "succeeded"
    go_to(shifted, noon_days_ago(0))
    return Day(noon_days_ago(2).date(), first.out_trade_no, second.out_trade_no,
               back.out_refund_no)  # fmt: skip


def of(lines: list[StatementLine], order: str) -> list[tuple[StatementLineKind, int, int]]:
    return [(x.kind, x.amount, x.fee) for x in lines if x.out_trade_no == order]


async def test_untweaked_bill_is_intact(env: Env, business: Day, tmp_path: Path) -> None:
    reader, lines = await fetched(env, business.day, tmp_path)
    assert reader.intact and len(reader.checks) == 6
    assert of(lines, business.first) == [
        (StatementLineKind.payment, 10000, 60), (StatementLineKind.refund, -4000, -24)
    ]  # fmt: skip
    assert [x.out_refund_no for x in lines if x.kind is StatementLineKind.refund] == [
        business.refund_no
    ]


async def test_amount_and_fee(env: Env, business: Day, tmp_path: Path) -> None:
    await tweak(env, business.day, "amount", out_trade_no=business.first, amount=9999)
    await tweak(env, business.day, "fee", out_trade_no=business.second, amount=50)
    reader, lines = await fetched(env, business.day, tmp_path)
    assert reader.intact  # the file agrees with itself: only a match shows the break
    assert of(lines, business.first)[0] == (StatementLineKind.payment, 9999, 60)
    assert of(lines, business.second) == [(StatementLineKind.payment, 1999, 50)]


async def test_duplicate_and_drop(env: Env, business: Day, tmp_path: Path) -> None:
    await tweak(env, business.day, "duplicate", out_trade_no=business.second)
    await tweak(env, business.day, "drop", out_trade_no=business.first)
    reader, lines = await fetched(env, business.day, tmp_path)
    assert reader.intact
    assert of(lines, business.second) == [(StatementLineKind.payment, 1999, 12)] * 2
    # The payment is gone; its refund (a row of its own) is still listed.
    assert of(lines, business.first) == [(StatementLineKind.refund, -4000, -24)]


async def test_next_day(env: Env, business: Day, tmp_path: Path) -> None:
    await tweak(env, business.day, "next_day", out_trade_no=business.second)
    reader, lines = await fetched(env, business.day, tmp_path)
    assert reader.intact and of(lines, business.second) == []
    later, moved = await fetched(env, business.day + dt.timedelta(days=1), tmp_path)
    assert later.intact and of(moved, business.second) == [(StatementLineKind.payment, 1999, 12)]
    (line,) = moved
    assert line.occurred_at and line.occurred_at.astimezone(bill.CHINA).date() == business.day


async def test_extra_payment_and_refund(env: Env, business: Day, tmp_path: Path) -> None:
    await tweak(env, business.day, "extra_payment", amount=777)
    await tweak(env, business.day, "extra_refund", out_trade_no=business.second, amount=500)
    reader, lines = await fetched(env, business.day, tmp_path)
    assert reader.intact
    (extra,) = [x for x in lines if x.out_trade_no not in (business.first, business.second)]
    assert (extra.kind, extra.amount, extra.fee) == (StatementLineKind.payment, 777, 5)
    assert extra.out_trade_no and extra.out_trade_no.startswith("portal")
    back = [x for x in of(lines, business.second) if x[0] is StatementLineKind.refund]
    assert back == [(StatementLineKind.refund, -500, -3)]
    portal = [x.out_refund_no for x in lines if x.kind is StatementLineKind.refund]
    assert any(no and no.startswith("portal") for no in portal)


async def test_corrupt_summary(env: Env, business: Day, tmp_path: Path) -> None:
    _, before = await fetched(env, business.day, tmp_path)
    await tweak(env, business.day, "corrupt_summary", amount=3)
    reader, lines = await fetched(env, business.day, tmp_path)
    assert [x.raw for x in lines] == [x.raw for x in before] and not reader.problems
    assert failed(reader) == {"summary_amount", "summary_order_amount"}
    assert "summary 12002, detail 11999" in " ".join(reader.failures())


async def test_bad_row(env: Env, business: Day, tmp_path: Path) -> None:
    await tweak(env, business.day, "bad_row")
    reader, lines = await fetched(env, business.day, tmp_path)
    assert len(lines) == 3 and not failed(reader)
    assert reader.problem_count == 1 and reader.problems[0].text == bill.BAD_ROW


async def test_no_business_is_no_bill_but_a_tweak_makes_one(
    env: Env, business: Day, tmp_path: Path
) -> None:
    quiet = business.day - dt.timedelta(days=1)
    with (tmp_path / "none").open("wb") as handle:
        assert await env.adapter.fetch_bill(quiet, handle) == FetchedBill(
            f"alipay_{quiet:%Y%m%d}_trade.csv.zip", exists=False
        )
        assert handle.tell() == 0
    await tweak(env, quiet, "extra_payment", amount=100, out_trade_no="portal1")
    reader, lines = await fetched(env, quiet, tmp_path)
    assert reader.intact and [x.out_trade_no for x in lines] == ["portal1"]


# ------------------------------------------------------------------ a large file
def many(count: int) -> Iterator[dict[str, str]]:
    for n in range(count):
        yield {
            "支付宝交易号": f"2026113022001{n:09d}", "商户订单号": f"att_{n:026d}",
            "业务类型": "交易", "商品名称": "茶", "创建时间": "2026-11-30 10:00:00",
            "完成时间": "2026-11-30 10:00:01", "订单金额（元）": "12.34",
            "商家实收（元）": "12.34", "服务费（元）": "-0.07",
        }  # fmt: skip


def test_a_large_bill_reads_in_bounded_memory(tmp_path: Path) -> None:
    """30k rows (a detail member of ~4.5 MB): the reader's peak stays under 1 MB. (Fewer rows
    than a busy merchant's day only to keep tracemalloc's overhead bearable: the member alone
    is many times the limit, so a reader that held it would fail.)"""
    rows, limit = 30_000, 1024 * 1024
    path = tmp_path / "large.csv.zip"
    with path.open("wb") as handle:
        bill.write_zip(handle, "2088102000000001", dt.date(2026, 11, 30), many(rows),
                       dt.datetime(2026, 12, 1, tzinfo=dt.UTC))  # fmt: skip
    with zipfile.ZipFile(path) as archive:
        assert max(i.file_size for i in archive.infolist()) > 4 * limit
    reader = bill.AlipayBillReader(path)
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


async def test_no_bill_is_not_ready_until_the_bill_is_due(
    env: Env, shifted: clock.OffsetClock, tmp_path: Path
) -> None:
    """``isp.bill_not_exist`` before 10:00 China time the next day may be a bill not made
    yet: not ready; after it, a day without business."""
    today = dt.datetime.now(bill.CHINA).date()
    yesterday = today - dt.timedelta(days=1)
    with (tmp_path / "none").open("wb") as handle:
        go_to(shifted, dt.datetime.combine(today, dt.time(9, 59), tzinfo=bill.CHINA))
        with pytest.raises(RetryableError) as early:
            await env.adapter.fetch_bill(yesterday, handle)
        assert early.value.code == "statement_not_ready"
        go_to(shifted, dt.datetime.combine(today, dt.time(10, 1), tzinfo=bill.CHINA))
        assert not (await env.adapter.fetch_bill(yesterday, handle)).exists


async def test_a_bill_fetched_twice_is_the_same_file(
    env: Env, business: Day, tmp_path: Path
) -> None:
    await tweak(env, business.day, "duplicate", out_trade_no=business.second)
    files = []
    for name in ("one", "two"):
        with (tmp_path / name).open("wb") as handle:
            await env.adapter.fetch_bill(business.day, handle)
        files.append((tmp_path / name).read_bytes())
    assert files[0] == files[1]

"""Alipay trade bill (业务账单): codec, adapter ↔ sandbox, and ``python-alipay-sdk`` as oracle.

Facts relied on, each checked at its source:
- ``alipay.data.dataservice.bill.downloadurl.query`` with ``bill_type=trade`` and ``bill_date``
  ``yyyy-MM-dd`` answers ``bill_download_url``, "获取连接后30秒后未下载，链接地址失效"; a day
  without a bill answers sub_code ``isp.bill_not_exist`` (smartwalle/alipay ``bill.go``
  ``IsBillNotExist``; the same code handled in several merchants' reconcilers). Today's bill is
  not offered ("不支持下载当日账单", alipay-sdk-java-all v3 docs of the API).
- The zip holds ``…_业务明细.csv`` and ``…_业务明细(汇总).csv``, GBK (dromara/dax-pay
  ``AlipayReconcileService`` reads entries as GBK and skips the 汇总 file); the detail list sits
  between ``#---…业务明细列表---…`` and ``#---…业务明细列表结束---…`` with the 25 columns of
  PROTOCOLS.md, text fields end with a tab, refunds are 业务类型 退款 rows with negative amounts
  and 退款批次号/请求号 set, and the footer has ``#交易合计：N笔…`` / ``#退款合计：N笔…``
  (published sample bills in merchants' reconciliation tests).
- python-alipay-sdk 3.4.0 has no ``api_alipay_data_dataservice_bill_downloadurl_query`` helper;
  the oracle is its generic ``build_body`` + ``sign_data`` + ``_verify_and_return_sync_response``.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from paymux.channels.alipay import bill
from paymux.channels.base import RetryableError, StatementLine, StatementLineKind, UnknownOutcome
from paymux.channels.bills import BillReader
from paymux.kit import clock
from tests.channels.test_alipay import Env, env
from tests.channels.test_alipay_refunds import paid, refund

__all__ = ["env"]

CHINA = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture
def shifted() -> Iterator[clock.OffsetClock]:
    offset = clock.OffsetClock()
    previous = clock.set_clock(offset)
    yield offset
    clock.set_clock(previous)


def go_to(offset: clock.OffsetClock, when: dt.datetime) -> None:
    offset.offset = dt.timedelta()
    offset.offset = when - clock.now()


def noon_days_ago(days: int) -> dt.datetime:
    today = dt.datetime.now(CHINA).date()
    return dt.datetime.combine(today - dt.timedelta(days=days), dt.time(12), tzinfo=CHINA)


def row(**values: str) -> dict[str, str]:
    base = {name: "" for name in bill.COLUMNS}
    base.update({
        "业务类型": "交易", "创建时间": "2025-03-10 11:59:00", "完成时间": "2025-03-10 12:00:00",
        "订单金额（元）": "0.00", "商家实收（元）": "0.00", "服务费（元）": "0.00",
    })  # fmt: skip
    base.update(values)
    return base


# ------------------------------------------------------------------ codec
def read_zip(data: bytes, tmp_path: Path) -> tuple[BillReader, list[StatementLine]]:
    path = tmp_path / f"bill{len(list(tmp_path.iterdir()))}.csv.zip"
    path.write_bytes(data)
    reader = bill.AlipayBillReader(path)
    return reader, list(reader.lines())


def rezip(data: bytes, detail: str) -> bytes:
    """``data`` (a bill zip) with its detail member's text replaced."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in source.namelist():
            text = detail.encode("gbk") if name.endswith(bill.DETAIL_SUFFIX) else source.read(name)
            archive.writestr(name, text)
    return out.getvalue()


def test_codec_round_trip_gbk_tabs_and_totals(tmp_path: Path) -> None:
    trade = row(支付宝交易号="2025031022001", 商户订单号="att_1", 商品名称="茶 Tea",
                **{"订单金额（元）": "100.00", "商家实收（元）": "100.00",
                   "服务费（元）": "-0.60"})  # fmt: skip
    back = row(支付宝交易号="2025031022001", 商户订单号="att_1", 业务类型="退款",
               **{"订单金额（元）": "-40.00", "商家实收（元）": "-40.00", "服务费（元）": "0.24",
                  "退款批次号/请求号": "re_1"})  # fmt: skip
    data = bill.render_zip("2088102000000001", dt.date(2025, 3, 10), [trade, back],
                           dt.datetime(2025, 3, 11, 1, tzinfo=dt.UTC))  # fmt: skip
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert sorted(archive.namelist()) == [
        "20881020000000010156_20250310_业务明细(汇总).csv",
        "20881020000000010156_20250310_业务明细.csv",
    ]
    detail = archive.read("20881020000000010156_20250310_业务明细.csv").decode("gbk")
    lines = detail.split("\r\n")
    assert lines[0] == "#支付宝业务明细查询" and lines[1] == "#账号：[20881020000000010156]"
    assert lines[2] == "#起始日期：[2025年03月10日 00:00:00]   终止日期：[2025年03月11日 00:00:00]"
    assert lines[3].startswith("#----") and lines[4].startswith("支付宝交易号,商户订单号,业务类型,")
    assert lines[5].startswith("2025031022001\t,att_1\t,交易\t,茶 Tea,2025-03-10 11:59:00,")
    assert "#交易合计：1笔，商家实收共100.00元，商家优惠共0.00元" in lines
    assert "#退款合计：1笔，商家实收退款共-40.00元，商家优惠退款共0.00元" in lines
    assert lines[-2] == "#导出时间：[2025年03月11日 09:00:00]"
    summary = archive.read("20881020000000010156_20250310_业务明细(汇总).csv").decode("gbk")
    assert "合计,,1,1,60.00,60.00,0.00,0.00,0.00,-0.36,0.00,59.64" in summary

    reader, lines = read_zip(data, tmp_path)
    assert [x.raw for x in lines] == [trade, back] and reader.intact, reader.failures()
    assert {c.name for c in reader.checks} == {
        "summary_count", "summary_amount", "summary_refund_count", "summary_refund_amount",
        "summary_order_amount", "summary_fee",
    }  # fmt: skip
    got = [(x.kind, x.amount, x.fee, x.reference, x.out_trade_no) for x in lines]
    assert got == [
        (StatementLineKind.payment, 10000, 60, "att_1", "att_1"),
        (StatementLineKind.refund, -4000, -24, "re_1", "att_1"),
    ]


def test_reader_reports_what_is_not_a_bill(tmp_path: Path) -> None:
    good = bill.render_zip("2088102000000001", dt.date(2025, 3, 10), [row()],
                           dt.datetime(2025, 3, 11, tzinfo=dt.UTC))  # fmt: skip
    text = (
        zipfile.ZipFile(io.BytesIO(good))
        .read("20881020000000010156_20250310_业务明细.csv")
        .decode("gbk")
    )
    counted = text.replace("#交易合计：1笔", "#交易合计：2笔")
    reader, lines = read_zip(rezip(good, counted), tmp_path)
    assert len(lines) == 1 and [c.name for c in reader.checks if not c.ok] == ["summary_count"]
    # Without the end marker the footer reads as rows: bad rows, and no footer totals.
    reader, lines = read_zip(rezip(good, text.replace("业务明细列表结束", "x")), tmp_path)
    assert reader.problem_count == 4 and not reader.intact
    assert {c.name for c in reader.checks if not c.ok} >= {"summary_count", "summary_amount"}
    for broken in (text.replace("支付宝交易号,", "x,"), "a,b\r\n"):
        reader, lines = read_zip(rezip(good, broken), tmp_path)
        assert lines == [] and [p.position for p in reader.problems] == [0] and not reader.checks
    reader, lines = read_zip(b"PK not a zip", tmp_path)
    assert lines == [] and [p.position for p in reader.problems] == [0]


# ------------------------------------------------------------------ adapter ↔ sandbox
async def test_statement_lists_the_days_trades_refunds_and_fees(
    env: Env, shifted: clock.OffsetClock
) -> None:
    go_to(shifted, noon_days_ago(2))
    first = await paid(env, amount=10000)
    second = await paid(env, amount=1999)
    back = refund(first, 4000)
    state = await env.adapter.create_refund(back)
    assert state.status.value == "succeeded"
    go_to(shifted, noon_days_ago(1))
    later = await paid(env, amount=500)
    go_to(shifted, noon_days_ago(0))

    day = noon_days_ago(2).date()
    lines = await env.adapter.statement(day)
    orders = {o.out_trade_no: o.channel_trade_no for o in env.sandbox.core.orders.values()}
    got = sorted((x.kind, x.out_trade_no, x.out_refund_no, x.channel_trade_no, x.amount, x.fee)
                 for x in lines)  # fmt: skip
    assert got == sorted([
        (StatementLineKind.payment, first.out_trade_no, None, orders[first.out_trade_no],
         10000, 60),
        (StatementLineKind.payment, second.out_trade_no, None, orders[second.out_trade_no],
         1999, 12),
        (StatementLineKind.refund, first.out_trade_no, back.out_refund_no,
         orders[first.out_trade_no], -4000, -24),
    ])  # fmt: skip
    assert all(x.occurred_at and x.occurred_at.astimezone(CHINA).date() == day for x in lines)
    assert all(x.currency == "CNY" for x in lines)
    next_day = await env.adapter.statement(noon_days_ago(1).date())
    assert [x.out_trade_no for x in next_day] == [later.out_trade_no]
    assert await env.adapter.statement(noon_days_ago(3).date()) == []
    with pytest.raises(RetryableError) as not_ready:
        await env.adapter.statement(noon_days_ago(0).date())
    assert not_ready.value.code == "statement_not_ready"


async def test_download_url_expires_after_30_seconds(env: Env, shifted: clock.OffsetClock) -> None:
    go_to(shifted, noon_days_ago(1))
    await paid(env, amount=100)
    go_to(shifted, noon_days_ago(0))
    sdk = env.sdk()
    day = f"{noon_days_ago(1).date()}"
    body = sdk.build_body(bill.METHOD_BILL, {"bill_type": "trade", "bill_date": day})
    raw = (await env.client.get(f"/gateway.do?{sdk.sign_data(body)}")).text
    key = "alipay_data_dataservice_bill_downloadurl_query_response"
    url = sdk._verify_and_return_sync_response(raw, key)["bill_download_url"]
    assert (await env.client.get(url)).status_code == 200
    shifted.advance(31)
    assert (await env.client.get(url)).status_code == 404


async def test_unreadable_download_is_unknown_outcome(env: Env, shifted: clock.OffsetClock) -> None:
    go_to(shifted, noon_days_ago(1))
    await paid(env, amount=100)
    go_to(shifted, noon_days_ago(0))
    env.sandbox.trade_bill = lambda app, day: b"not a zip"  # type: ignore[method-assign]
    with pytest.raises(UnknownOutcome) as bad:
        await env.adapter.statement(noon_days_ago(1).date())
    assert bad.value.code == "bill_not_intact"


# ------------------------------------------------------------------ the SDK as oracle
async def test_sdk_request_is_answered_and_its_verification_passes(
    env: Env, shifted: clock.OffsetClock, tmp_path: Path
) -> None:
    go_to(shifted, noon_days_ago(1))
    pay = await paid(env, amount=2500)
    await env.adapter.create_refund(refund(pay, 2500))
    go_to(shifted, noon_days_ago(0))
    sdk = env.sdk()
    key = "alipay_data_dataservice_bill_downloadurl_query_response"

    async def ask(day: dt.date, bill_type: str = "trade") -> dict[str, str]:
        body = sdk.build_body(bill.METHOD_BILL, {"bill_type": bill_type, "bill_date": f"{day}"})
        raw = (await env.client.get(f"/gateway.do?{sdk.sign_data(body)}")).text
        return sdk._verify_and_return_sync_response(raw, key)  # type: ignore[no-any-return]

    answer = await ask(noon_days_ago(1).date())
    assert answer["code"] == "10000"
    data = (await env.client.get(answer["bill_download_url"])).content
    rows = [line.raw for line in read_zip(data, tmp_path)[1]]
    fields = ("业务类型", "订单金额（元）", "服务费（元）", "退款批次号/请求号")
    got = [tuple(r[f] for f in fields) for r in rows]
    assert got == [
        ("交易", "25.00", "-0.15", ""), ("退款", "-25.00", "0.15", rows[1]["退款批次号/请求号"]),
    ]  # fmt: skip
    assert rows[1]["退款批次号/请求号"].startswith("re_")
    missing = await ask(noon_days_ago(3).date())
    assert (missing["code"], missing["sub_code"]) == ("40004", "isp.bill_not_exist")
    today = await ask(noon_days_ago(0).date())
    assert today["code"] == "40004" and today["sub_code"] == "isv.invalid_arguments"
    wrong = await ask(noon_days_ago(1).date(), bill_type="fund")
    assert wrong["code"] == "40002"

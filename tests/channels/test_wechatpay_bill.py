"""WeChat Pay trade bill (交易账单): codec, adapter ↔ sandbox, and the official SDK as oracle.

Facts relied on, each checked at its source:
- ``GET /v3/bill/tradebill?bill_date=&bill_type=ALL|SUCCESS|REFUND&tar_type=GZIP`` answers
  ``hash_type`` (SHA1), ``hash_value`` and ``download_url`` (valid 30 s); the hash is of the
  *uncompressed* bill ("原始账单（gzip需要解压缩）的摘要值", the v3 API page as quoted in the
  SDK models of wechatpay-java / WxJava). ``wechatpayv3`` (minibear2021) ``trade_bill``
  defaults to ``tar_type=GZIP`` and ``download_bill`` sends a signed GET to the URL with
  ``skip_verify=True``: the file is not signed.
- Errors 400 ``NO_STATEMENT_EXIST`` (账单文件不存在: nothing happened that day) and 400
  ``STATEMENT_CREATING`` (账单生成中: not made yet, T+1) from the same page's error table.
- File: 27 column header, every data field prefixed with a backtick, then the summary header
  (总交易单数,…) and a backticked summary line; 手续费 with five decimals, 费率 ``0.60%``
  (WxJava ``WxPayBillResultTest`` fixtures); refunds are rows of their own with 交易状态
  ``REFUND`` and the amount in 退款金额.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3 import core as wx_core

from paymux.channels.base import (
    CreateRefund,
    RetryableError,
    StatementLine,
    StatementLineKind,
    UnknownOutcome,
)
from paymux.channels.wechatpay import bill
from paymux.kit import clock
from tests.channels.test_wechatpay import BASE, NOTIFY_URL, Env, env, pay, payment, until
from tests.channels.test_wechatpay_transfers import SdkRequests

__all__ = ["env"]

CHINA = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture
def shifted() -> Iterator[clock.OffsetClock]:
    offset = clock.OffsetClock()
    previous = clock.set_clock(offset)
    yield offset
    clock.set_clock(previous)


def go_to(offset: clock.OffsetClock, when: dt.datetime) -> None:
    """Shift the clock so that it reads ``when`` now (time still flows)."""
    offset.offset = dt.timedelta()
    offset.offset = when - clock.now()


def noon_days_ago(days: int) -> dt.datetime:
    today = dt.datetime.now(CHINA).date()
    return dt.datetime.combine(today - dt.timedelta(days=days), dt.time(12), tzinfo=CHINA)


async def paid_order(env: Env, amount: int) -> tuple[str, str]:
    created = payment(amount=amount)
    await env.adapter.create_payment(created)
    await pay(env, created.out_trade_no)
    order = env.sandbox.core.find(created.out_trade_no)
    assert order is not None
    await until(lambda: order.paid_at is not None, "payment")
    return created.out_trade_no, order.channel_trade_no


async def refunded(env: Env, out_trade_no: str, amount: int, total: int) -> tuple[str, str]:
    out_refund_no = "re" + out_trade_no[2:]
    state = await env.adapter.create_refund(CreateRefund(
        out_refund_no=out_refund_no, out_trade_no=out_trade_no, channel_trade_no=None,
        amount=amount, total_amount=total, currency="CNY", reason="退货", notify_url=NOTIFY_URL,
    ))  # fmt: skip
    assert state.channel_refund_no
    return out_refund_no, state.channel_refund_no


def read_bill(
    data: bytes, tmp_path: Path, expected: dict[str, str] | None = None
) -> tuple[list[StatementLine], bill.TradeBillReader]:
    path = tmp_path / "bill.csv"
    path.write_bytes(data)
    reader = bill.TradeBillReader(path, expected)
    return list(reader.lines()), reader


async def download(adapter: Any, url: str) -> bytes:
    return b"".join([chunk async for chunk in adapter._download(url)])


# ------------------------------------------------------------------ codec
def test_codec_round_trip_and_summary(tmp_path: Path) -> None:
    row = {name: "" for name in bill.COLUMNS}
    row.update({"交易时间": "2025-03-10 12:00:00", "商户号": "1900000109", "微信订单号": "42000001",
                "商户订单号": "att1", "交易状态": "SUCCESS", "货币种类": "CNY",
                "应结订单金额": "6.00", "手续费": "0.04000", "订单金额": "6.00"})  # fmt: skip
    refund = {**row, "交易状态": "REFUND", "应结订单金额": "0.00", "订单金额": "0.00",
              "微信退款单号": "50001", "商户退款单号": "re1", "退款金额": "1.50",
              "申请退款金额": "1.50", "手续费": "-0.01000"}  # fmt: skip
    data = bill.render([row, refund])
    text = data.decode()
    assert text.startswith("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,")
    assert "\r\n`2025-03-10 12:00:00,`,`1900000109," in text
    assert text.endswith(
        "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n"
        "`2,`6.00,`1.50,`0.00,`0.03000,`6.00,`1.50\r\n"
    )
    lines, reader = read_bill(data, tmp_path, {"sha1": bill.sha1_hex(data).upper()})
    assert reader.intact and [c.name for c in reader.checks][:3] == [
        "sha1", "summary_count", "summary_amount"]  # fmt: skip
    assert [x.raw for x in lines] == [row, refund]
    assert [(x.kind, x.amount, x.fee, x.reference) for x in lines] == [
        (StatementLineKind.payment, 600, 4, "att1"),
        (StatementLineKind.refund, -150, -1, "re1"),
    ]
    assert lines[0].occurred_at == dt.datetime(2025, 3, 10, 4, tzinfo=dt.UTC)
    assert lines[1].channel_refund_no == "50001" and lines[1].out_trade_no == "att1"
    assert bill.fee_of(1999, 60) == 12 and bill.fee_of(1000, 60) == 6 and bill.fee_of(75, 60) == 0
    assert [bill.to_fen(t) for t in ("0.04000", "-1.5", "12", "", "0.10")] == [4, -150, 1200, 0, 10]


def test_codec_reports_what_is_not_a_bill(tmp_path: Path) -> None:
    good = bill.render([])
    for broken in (b"", b"a,b,c\r\n", b"\xff\xfe", gzip.compress(good)):
        lines, reader = read_bill(broken, tmp_path)
        assert lines == [] and reader.problem_count == 1 and reader.problems[0].position == 0
        assert not reader.intact
    lines, reader = read_bill(good.replace("总交易单数".encode(), b"x"), tmp_path)
    assert [(c.name, c.ok) for c in reader.checks] == [("summary", False)]
    assert reader.problems[0].reason == "row has 7 fields, not 27"
    _, reader = read_bill(good.replace(b"`0,", b"`3,", 1), tmp_path)
    assert reader.failures() == ["summary_count: 总交易单数: summary 3, detail 0"]
    for text in ("0.001", "1,00", "abc", "1.2.3"):
        with pytest.raises(bill.BillError):
            bill.to_fen(text)


# ------------------------------------------------------------------ adapter ↔ sandbox
async def test_statement_lists_the_days_payments_refunds_and_fees(
    env: Env, shifted: clock.OffsetClock
) -> None:
    go_to(shifted, noon_days_ago(2))
    first, first_txn = await paid_order(env, 1999)
    second, second_txn = await paid_order(env, 1000)
    unpaid = payment(amount=500)
    await env.adapter.create_payment(unpaid)
    refund_no, wx_refund_no = await refunded(env, first, 500, 1999)
    go_to(shifted, noon_days_ago(1))
    late, _ = await paid_order(env, 300)  # the next day: not on the first day's bill

    day = noon_days_ago(2).date()
    lines = await env.adapter.statement(day)
    got = sorted((x.kind, x.out_trade_no, x.out_refund_no, x.channel_trade_no,
                  x.channel_refund_no, x.amount, x.fee, x.currency) for x in lines)  # fmt: skip
    assert got == sorted([
        (StatementLineKind.payment, first, None, first_txn, None, 1999, 12, "CNY"),
        (StatementLineKind.payment, second, None, second_txn, None, 1000, 6, "CNY"),
        (StatementLineKind.refund, first, refund_no, first_txn, wx_refund_no, -500, -3, "CNY"),
    ])  # fmt: skip
    assert all(x.occurred_at and x.occurred_at.astimezone(CHINA).date() == day for x in lines)
    assert lines[0].raw["商户号"] == env.creds["mchid"] and lines[0].raw["费率"] == "0.60%"
    assert env.adapter.statement_timezone.utcoffset(None) == dt.timedelta(hours=8)

    sent = [r for r in env.sent if r.url.path.startswith("/v3/bill")]
    assert str(sent[-2].url.query.decode()) == f"bill_date={day}&bill_type=ALL&tar_type=GZIP"
    assert sent[-1].url.path == bill.DOWNLOAD_PATH and sent[-1].headers["Authorization"]

    # Today's bill is not made yet; a day without business has none.
    with pytest.raises(RetryableError) as not_ready:
        await env.adapter.statement(noon_days_ago(1).date())
    assert not_ready.value.code == "statement_not_ready"
    go_to(shifted, noon_days_ago(0))
    assert [x.out_trade_no for x in await env.adapter.statement(noon_days_ago(1).date())] == [late]
    assert await env.adapter.statement(noon_days_ago(3).date()) == []


async def test_download_is_checked_against_its_hash(env: Env, shifted: clock.OffsetClock) -> None:
    go_to(shifted, noon_days_ago(1))
    await paid_order(env, 1999)
    go_to(shifted, noon_days_ago(0))
    downloads = env.sandbox._bill_downloads

    async def tamper(request: Any) -> None:
        # The file changes between the hash announced and the download (19.99 → 19.98).
        if request.url.path == bill.DOWNLOAD_PATH and env.sandbox._bill_downloads:
            for token, (mchid, payload, expires) in list(env.sandbox._bill_downloads.items()):
                data = gzip.decompress(payload).replace(b"`19.99", b"`19.98")
                env.sandbox._bill_downloads[token] = (mchid, gzip.compress(data), expires)

    env.http.event_hooks["request"].append(tamper)
    with pytest.raises(UnknownOutcome) as mismatch:
        await env.adapter.statement(noon_days_ago(1).date())
    assert mismatch.value.code == "bill_not_intact"
    assert str(mismatch.value.message).startswith("sha1: file SHA1 ")
    assert downloads is None  # made on first use


async def test_sandbox_download_rules(env: Env, shifted: clock.OffsetClock) -> None:
    go_to(shifted, noon_days_ago(1))
    await paid_order(env, 1999)
    go_to(shifted, noon_days_ago(0))
    day = noon_days_ago(1).date()
    other = env.sandbox.provision(BASE)
    from paymux.channels.wechatpay.adapter import WechatPayAdapter

    stranger = WechatPayAdapter(other, env.http)
    _, answer = await env.adapter._call("GET", f"{bill.BILL_PATH}?bill_date={day}&bill_type=ALL")
    url = answer["download_url"]
    # Plain (no tar_type): the file itself.
    assert bill.sha1_hex(await download(env.adapter, url)) == answer["hash_value"]
    # Another merchant cannot fetch it; an expired link is refused.
    with pytest.raises(Exception) as foreign:
        await download(stranger, url)
    assert getattr(foreign.value, "code", "") == "not_authorized"
    shifted.advance(31)
    with pytest.raises(Exception) as expired:
        await download(env.adapter, url)
    assert getattr(expired.value, "code", "") == "invalid_request"
    # The other merchant's own day has no bill; malformed requests are refused.
    assert await stranger.statement(day) == []
    for query in ("bill_date=2025-13-01", f"bill_date={day}&bill_type=X",
                  f"bill_date={day}&tar_type=ZIP"):  # fmt: skip
        with pytest.raises(Exception) as bad:
            await env.adapter._call("GET", f"{bill.BILL_PATH}?{query}")
        assert getattr(bad.value, "code", "") == "invalid_request"


# ------------------------------------------------------------------ the official SDK
async def test_official_sdk_downloads_the_sandbox_bill(
    env: Env, shifted: clock.OffsetClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    go_to(shifted, noon_days_ago(1))
    first, _ = await paid_order(env, 1999)
    await refunded(env, first, 1999, 1999)
    go_to(shifted, noon_days_ago(0))
    shifted.offset = dt.timedelta()  # the SDK signs with real time
    c = env.creds
    sdk = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE, mchid=c["mchid"],
        private_key=c["merchant_private_key"], cert_serial_no=c["merchant_serial_no"],
        appid=c["appid"], apiv3_key=c["apiv3_key"], notify_url=NOTIFY_URL,
        public_key=c["platform_public_key"], public_key_id=c["platform_public_key_id"],
    )  # fmt: skip
    sdk._core._gate_way = BASE
    monkeypatch.setattr(wx_core, "requests", SdkRequests(env.http, asyncio.get_running_loop()))
    day = noon_days_ago(1).date()

    # trade_bill verifies the platform signature of the answer (it raises otherwise).
    status, text = await asyncio.to_thread(sdk.trade_bill, f"{day}")
    assert status == 200
    import json

    answer = json.loads(text)
    assert answer["hash_type"] == "SHA1"
    status, content = await asyncio.to_thread(sdk.download_bill, answer["download_url"])
    assert status == 200
    data = gzip.decompress(content)
    assert bill.sha1_hex(data) == answer["hash_value"]
    lines, reader = read_bill(data, tmp_path, {"sha1": answer["hash_value"]})
    assert reader.intact
    rows = [line.raw for line in lines]
    assert [r["交易状态"] for r in rows] == ["SUCCESS", "REFUND"]
    assert rows[1]["退款金额"] == "19.99" and rows[1]["手续费"] == "-0.12000"

    status, text = await asyncio.to_thread(sdk.trade_bill, f"{noon_days_ago(3).date()}")
    assert (status, json.loads(text)["code"]) == (400, "NO_STATEMENT_EXIST")
    status, text = await asyncio.to_thread(sdk.trade_bill, f"{noon_days_ago(0).date()}")
    assert (status, json.loads(text)["code"]) == (400, "STATEMENT_CREATING")

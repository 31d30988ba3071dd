"""WeChat Pay trade bills for reconciliation: the reader over golden files, each sandbox bill
tweak seen through ``fetch_bill`` + ``bill_reader``, and a large file read in bounded memory.

Golden files (``golden/wechatpay/*.csv``) are ALL bills written by hand in WeChat's format (see
:mod:`paymux.channels.wechatpay.bill` for the facts and their sources): fixed ids and times, CRLF,
every cell backticked. Beside each, ``<name>.expected.json``: what the adapter's ``bill_reader``
gives (``given``: the ``expected`` facts passed in, e.g. the ``sha1`` of the download; then the
lines as dicts, the problems and the checks).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import itertools
import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paymux.channels import bills
from paymux.channels.base import StatementLine, StatementLineKind, UnknownOutcome
from paymux.channels.wechatpay import bill
from paymux.channels.wechatpay.adapter import WechatPayAdapter, WechatPayPartnerAdapter
from paymux.kit import clock
from tests.channels.test_wechatpay import BASE, Env, env, pay, payment
from tests.channels.test_wechatpay_bill import (
    go_to,
    noon_days_ago,
    paid_order,
    shifted,
)

__all__ = ["env", "shifted"]

GOLDEN = Path(__file__).parent / "golden" / "wechatpay"
TRADE_BILLS = sorted(p for p in GOLDEN.glob("*.csv") if not p.name.startswith("funds_"))
"""The trade bills (``funds_*``: fund-flow bills, test_wechatpay_funds.py)."""
MCHID, SP_MCHID, SUB_MCHID = "1900000109", "1900000100", "1900000109"
_FILES = itertools.count()


def line_dict(line: StatementLine) -> dict[str, Any]:
    return {
        "kind": line.kind.value, "amount": line.amount, "currency": line.currency,
        "fee": line.fee, "out_trade_no": line.out_trade_no, "out_refund_no": line.out_refund_no,
        "channel_trade_no": line.channel_trade_no, "channel_refund_no": line.channel_refund_no,
        "occurred_at": line.occurred_at.isoformat() if line.occurred_at else None,
    }  # fmt: skip


def outcome(reader: bills.BillReader) -> dict[str, Any]:
    lines = [line_dict(line) for line in reader.lines()]
    return {
        "lines": lines,
        "problems": [vars(p) for p in reader.problems],
        "checks": [vars(c) for c in reader.checks],
        "intact": reader.intact,
    }


def golden_adapter(env: Env, name: str) -> WechatPayAdapter:
    if name.startswith("partner"):
        creds = env.sandbox.partners.provision(BASE)
        creds |= {"sp_mchid": SP_MCHID, "sub_mchid": SUB_MCHID}
        adapter = WechatPayAdapter(creds, env.http)
        assert isinstance(adapter, WechatPayPartnerAdapter)
        return adapter
    return WechatPayAdapter({**env.creds, "mchid": MCHID}, env.http)


@pytest.mark.parametrize("path", TRADE_BILLS, ids=lambda p: p.stem)
def test_golden_bill(env: Env, path: Path) -> None:
    expected = json.loads(path.with_suffix(".expected.json").read_text("utf-8"))
    reader = golden_adapter(env, path.stem).bill_reader(path, expected["given"])
    assert {"given": expected["given"], **outcome(reader)} == expected


def test_golden_files_cover_the_cases() -> None:
    """What the golden set is for, file by file (a renamed or lost file fails here)."""
    got = {p.stem: json.loads(p.with_suffix(".expected.json").read_text("utf-8"))
           for p in TRADE_BILLS}  # fmt: skip
    kinds = [line["kind"] for line in got["payments_and_refunds"]["lines"]]
    assert kinds == ["payment"] * 3 + ["refund"] * 2 and got["payments_and_refunds"]["intact"]
    refunds = got["payments_and_refunds"]["lines"][3:]
    assert [r["amount"] for r in refunds] == [-3000, -500]  # partial of 100.00, full of 5.00
    other = got["other_day_and_duplicate"]["lines"]
    assert other[0]["occurred_at"].startswith("2026-11-29") and other[1] == other[2]
    assert got["empty"]["lines"] == [] and got["empty"]["intact"]
    assert {c["name"] for c in got["bad_summary"]["checks"] if not c["ok"]} == {
        "summary_amount", "summary_fee"}  # fmt: skip
    assert len(got["bad_rows"]["problems"]) == 4 and len(got["bad_rows"]["lines"]) == 2
    assert [p["position"] for p in got["not_a_bill"]["problems"]] == [0]
    assert {c["name"]: c["ok"] for c in got["truncated"]["checks"]} == {
        "sha1": False, "summary": False}  # fmt: skip
    assert got["partner"]["problems"][0]["reason"].startswith("row of sub-merchant")


# ------------------------------------------------------------------ sandbox tweaks
async def fetch_and_read(
    env: Env, day: dt.date, tmp_path: Path
) -> tuple[bills.FetchedBill, bills.BillReader, list[StatementLine]]:
    path = tmp_path / f"bill-{day}-{next(_FILES)}.csv"
    with path.open("wb") as handle:
        fetched = await env.adapter.fetch_bill(day, handle)
    reader = env.adapter.bill_reader(path, fetched.expected)
    return fetched, reader, list(reader.lines())


async def tweak(env: Env, **body: Any) -> None:
    r = await env.http.post(f"{BASE}/_sandbox/bill_tweaks", json=body)
    assert r.status_code == 200, r.text


@pytest.fixture
async def day_of_two(env: Env, shifted: clock.OffsetClock) -> tuple[dt.date, str, str]:
    """Two orders paid (19.99 and 10.00) two days ago; the clock at today's noon."""
    go_to(shifted, noon_days_ago(2))
    first, _ = await paid_order(env, 1999)
    second, _ = await paid_order(env, 1000)
    go_to(shifted, noon_days_ago(0))
    return noon_days_ago(2).date(), first, second


def rows(lines: list[StatementLine]) -> list[tuple[str, str | None, int, int]]:
    return [(x.kind.value, x.reference, x.amount, x.fee) for x in lines]


async def test_fetched_bill_is_the_uncompressed_file_with_its_sha1(
    env: Env, day_of_two: tuple[dt.date, str, str], tmp_path: Path
) -> None:
    day, first, second = day_of_two
    fetched, reader, lines = await fetch_and_read(env, day, tmp_path)
    assert fetched.exists and fetched.filename == f"wechatpay_{env.creds['mchid']}_{day}_ALL.csv"
    data = reader.path.read_bytes()
    assert data.startswith(bill.HEADER_LINE.encode()) and fetched.expected == {
        "sha1": hashlib.sha1(data, usedforsecurity=False).hexdigest()}  # fmt: skip
    assert reader.intact and rows(lines) == [
        ("payment", first, 1999, 12), ("payment", second, 1000, 6)]  # fmt: skip
    assert {c.name for c in reader.checks} >= {"sha1", "summary_count", "summary_amount",
                                                "summary_refund", "summary_fee"}  # fmt: skip
    assert env.adapter.bill_ready_after == dt.timedelta(hours=10)
    # Nothing happened: no bill, nothing written. Today: not made yet.
    empty = io.BytesIO()
    nothing = await env.adapter.fetch_bill(day - dt.timedelta(days=1), empty)
    assert not nothing.exists and empty.getvalue() == b""
    with pytest.raises(Exception) as not_ready:
        await env.adapter.fetch_bill(noon_days_ago(0).date(), io.BytesIO())
    assert getattr(not_ready.value, "code", "") == "statement_not_ready"


@pytest.mark.parametrize("damage", ["cut", "not_gzip"])
async def test_a_damaged_download_is_refused(
    env: Env, day_of_two: tuple[dt.date, str, str], damage: str
) -> None:
    """The gzip is inflated as it streams: a download cut short, or not gzip at all, is an
    UnknownOutcome (fetch again), not a half file handed to the reader."""
    day, _, _ = day_of_two

    async def spoil(request: Any) -> None:
        if request.url.path == bill.DOWNLOAD_PATH:
            for token, (mchid, payload, expires) in list(env.sandbox._bill_downloads.items()):
                spoilt = payload[: len(payload) // 2] if damage == "cut" else b"<html>busy</html>"
                env.sandbox._bill_downloads[token] = (mchid, spoilt, expires)

    env.http.event_hooks["request"].append(spoil)
    with pytest.raises(UnknownOutcome) as refused:
        await env.adapter.fetch_bill(day, io.BytesIO())
    assert refused.value.code == "malformed_response"


@pytest.mark.parametrize(
    "kind",
    ["amount", "fee", "duplicate", "next_day", "drop", "extra_payment", "extra_refund",
     "corrupt_summary", "bad_row"],
)  # fmt: skip
async def test_each_bill_tweak_shows_in_the_fetched_bill(
    env: Env, day_of_two: tuple[dt.date, str, str], tmp_path: Path, kind: str
) -> None:
    day, first, second = day_of_two
    base = [("payment", first, 1999, 12), ("payment", second, 1000, 6)]
    body: dict[str, Any] = {"day": day.isoformat(), "kind": kind, "out_trade_no": first}
    if kind in ("amount", "fee", "extra_payment", "extra_refund", "corrupt_summary"):
        body["amount"] = {"amount": 1900, "fee": 50, "extra_payment": 777, "extra_refund": 500,
                          "corrupt_summary": 5}[kind]  # fmt: skip
    if kind == "extra_payment":
        body["out_trade_no"] = "portal_order_1"
    await tweak(env, **body)
    _, reader, lines = await fetch_and_read(env, day, tmp_path)
    failed = {c.name for c in reader.checks if not c.ok}
    if kind == "corrupt_summary":
        # The hash is of the corrupt file (it proves transport); the summary is off by 5 fen.
        assert failed == {"summary_amount"} and not reader.problem_count
        (check,) = [c for c in reader.checks if c.name == "summary_amount"]
        assert check.detail == "应结订单总金额: summary 3004, detail 2999"
        assert rows(lines) == base
        return
    if kind == "bad_row":
        assert reader.problem_count == 1 and not failed and rows(lines) == base
        assert reader.problems[0].reason == "row has 10 fields, not 27"
        return
    assert reader.intact, reader.failures()
    got = rows(lines)
    if kind == "amount":
        assert got == [("payment", first, 1900, 12), base[1]]
    elif kind == "fee":
        assert got == [("payment", first, 1999, 50), base[1]]
    elif kind == "duplicate":
        assert got == [base[0], base[0], base[1]]
    elif kind == "next_day":
        assert got == [base[1]]
        _, later, moved = await fetch_and_read(env, day + dt.timedelta(days=1), tmp_path)
        assert later.intact and rows(moved) == [base[0]]
        assert moved[0].occurred_at and moved[0].occurred_at.astimezone(bill.CHINA).date() == day
    elif kind == "drop":
        assert got == [base[1]]
    elif kind == "extra_payment":
        assert sorted(got) == sorted([*base, ("payment", "portal_order_1", 777, 5)])
    else:  # extra_refund: a refund number the gateway never issued
        (refund,) = [x for x in lines if x.kind is StatementLineKind.refund]
        assert refund.out_trade_no == first and refund.amount == -500 and refund.fee == -3
        assert refund.out_refund_no and refund.out_refund_no.startswith("portal")
        assert [r for r in got if r[0] == "payment"] == base
    if kind.startswith("extra_"):  # made-up numbers stay: a bill fetched twice is the same file
        again, reader_again, _ = await fetch_and_read(env, day, tmp_path)
        assert reader_again.path.read_bytes() == reader.path.read_bytes()


async def test_partner_bill_is_the_sub_merchants(
    env: Env, shifted: clock.OffsetClock, tmp_path: Path
) -> None:
    """A sub-merchant's fetched bill lists its own orders only (``sub_mchid`` asked) and is
    named by both ids; a provider-wide file read for it shows the sibling's rows as problems."""
    creds = env.sandbox.partners.provision(BASE)
    sibling_ids = env.sandbox.partners.add_sub_merchant(creds["sp_mchid"])
    mine = WechatPayAdapter(creds, env.http)
    sibling = WechatPayAdapter({**creds, **sibling_ids}, env.http)
    go_to(shifted, noon_days_ago(1))
    orders = [payment(), payment()]
    for adapter, order in zip((mine, sibling), orders, strict=True):
        await adapter.create_payment(order)
        await pay(env, order.out_trade_no)
    for order in orders:
        found = env.sandbox.core.find(order.out_trade_no)
        assert found is not None and found.paid_at is not None
    go_to(shifted, noon_days_ago(0))
    day = noon_days_ago(1).date()
    path = tmp_path / "partner.csv"
    with path.open("wb") as handle:
        fetched = await mine.fetch_bill(day, handle)
    assert fetched.filename == f"wechatpay_{creds['sp_mchid']}_{creds['sub_mchid']}_{day}_ALL.csv"
    reader = mine.bill_reader(path, fetched.expected)
    assert [x.out_trade_no for x in reader.lines()] == [orders[0].out_trade_no] and reader.intact
    whole = env.sandbox.trade_bill(creds["sp_mchid"], day)
    assert whole is not None
    path.write_bytes(whole)
    reader = mine.bill_reader(path, {})
    assert [x.out_trade_no for x in reader.lines()] == [orders[0].out_trade_no]
    assert reader.problem_count == 1 and "sub-merchant" in reader.problems[0].reason
    # A sub-merchant of another service provider is refused.
    stranger = env.sandbox.partners.provision(BASE)
    foreign = WechatPayAdapter({**creds, "sub_mchid": stranger["sub_mchid"]}, env.http)
    with pytest.raises(Exception) as refused:
        await foreign.fetch_bill(day, io.BytesIO())
    assert getattr(refused.value, "code", "") == "sub_merchant_not_bound"


# ------------------------------------------------------------------ bounded memory
def generated_rows(count: int) -> Iterator[dict[str, str]]:
    start = dt.datetime(2026, 11, 30, tzinfo=bill.CHINA)
    for i in range(count):
        refund = i % 10 == 9
        amount = bill.yuan(100 + i % 5000)
        yield {
            "交易时间": (start + dt.timedelta(seconds=i % 86_400)).strftime(bill.TIME_FORMAT),
            "公众账号ID": "wx2421b1c4370ec43b", "商户号": MCHID, "特约商户号": "0",
            "微信订单号": f"42000020261130{i:010d}", "商户订单号": f"att{i:012d}",
            "用户标识": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "交易类型": "NATIVE",
            "交易状态": "REFUND" if refund else "SUCCESS", "付款银行": "OTHERS",
            "货币种类": "CNY", "应结订单金额": "0.00" if refund else amount,
            "代金券金额": "0.00", "微信退款单号": f"5030{i:016d}" if refund else "0",
            "商户退款单号": f"ref{i:012d}" if refund else "0",
            "退款金额": amount if refund else "0.00", "充值券退款金额": "0.00",
            "商品名称": "T-shirt", "手续费": "-0.01000" if refund else "0.01000",
            "费率": "0.60%", "订单金额": "0.00" if refund else amount,
            "申请退款金额": amount if refund else "0.00",
        }  # fmt: skip


def traced_peak(run: Any) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_large_bill_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """25k rows (a 6 MB file) read under tracemalloc (slow: it traces every allocation) in
    well under a MB; the summary holds and the (wrong) SHA1 given fails."""
    path = tmp_path / "large.csv"
    count = 25_000
    with path.open("wb") as handle:
        bill.write_bill(generated_rows(count), handle)
    assert path.stat().st_size > 5_000_000
    reader = bill.TradeBillReader(path, {"sha1": "0" * 40}, mchid=MCHID)
    seen: list[int] = []
    peak = traced_peak(lambda: seen.append(sum(1 for _ in reader.lines())))
    assert seen == [count] and reader.problem_count == 0
    assert [c.name for c in reader.checks if not c.ok] == ["sha1"]
    assert peak < 1_000_000, peak


def test_large_bill_is_written_in_bounded_memory(tmp_path: Path) -> None:
    """``write_bill`` holds a chunk of rows, not the file: 20k rows (5 MB) written in well
    under a MB."""
    path = tmp_path / "written.csv"

    def write() -> None:
        with path.open("wb") as handle:
            bill.write_bill(generated_rows(20_000), handle)

    peak = traced_peak(write)
    assert path.stat().st_size > 4_000_000 and peak < 1_000_000, peak

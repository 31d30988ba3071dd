"""Pure parts of reconciliation: break ids, suggestions, a refund's share of the fee."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymux.funds.models import PaymentFunds
from paymux.funds.service import fee_share
from paymux.recon.findings import Finding, break_id
from paymux.recon.models import BreakClass
from paymux.recon.service import _suggest

NOON = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


def test_a_break_id_depends_on_account_kind_and_key_not_class() -> None:
    one = break_id("chn_1", "payment", "att_1")
    assert one == break_id("chn_1", "payment", "att_1")
    assert one.startswith("brk_") and len(one) == 30
    assert len({one, break_id("chn_2", "payment", "att_1"), break_id("chn_1", "refund", "att_1"),
                break_id("chn_1", "payment", "att_2")}) == 4  # fmt: skip


def _line(amount: int, at: dt.datetime) -> Finding:
    return Finding(kind="payment", key="portal1", klass=BreakClass.channel_only, currency="CNY",
                   channel_amount=amount - 6, local_amount=0, channel_fee=6, at=at)  # fmt: skip


def _ours(amount: int, at: dt.datetime, klass: BreakClass | None = None) -> Finding:
    return Finding(kind="payment", key="att_9", klass=klass, currency="CNY", channel_amount=0,
                   local_amount=amount - 6, local_fee=6, payment_id="pay_9", at=at)  # fmt: skip


def test_same_amount_close_in_time_is_suggested_never_matched() -> None:
    line, ours = _line(1_000, NOON), _ours(1_000, NOON + dt.timedelta(minutes=20))
    _suggest([line], [ours])
    assert line.suggestion == {"action": "link", "why": "same amount within 30 minutes",
                               "candidates": ["pay_9"]}  # fmt: skip
    assert ours.suggestion is not None and ours.suggestion["candidates"] == ["portal1"]
    assert line.klass is BreakClass.channel_only  # still a break: a person decides
    for other in (_ours(1_001, NOON), _ours(1_000, NOON + dt.timedelta(minutes=31))):
        lonely = _line(1_000, NOON)
        _suggest([lonely], [other])
        assert lonely.suggestion is None


def _funds(gross: int, fee: int) -> PaymentFunds:
    return PaymentFunds(payment_id="pay_1", gross=gross, channel_fee=fee)


@given(gross=st.integers(1, 10**9), rate=st.integers(0, 300),
       parts=st.lists(st.integers(1, 10**6), min_size=1, max_size=8))  # fmt: skip
def test_refunds_get_back_exactly_the_fee_never_more(gross: int, rate: int,
                                                     parts: list[int]) -> None:  # fmt: skip
    fee = (gross * rate + 5_000) // 10_000
    funds = _funds(gross, fee)
    left, given_back = gross, 0
    for part in parts:
        amount = min(part, left)
        last = amount == left
        share = fee_share(funds, amount, given_back, last=last)
        assert 0 <= share <= fee - given_back
        given_back += share
        left -= amount
        if last:
            break
    if left == 0:
        assert given_back == fee  # a fully refunded payment got all of its fee back
    assert given_back <= fee


@pytest.mark.parametrize("in_process", [False, True])
async def test_a_bill_reads_the_same_in_a_thread_or_a_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_process: bool
) -> None:
    """Large bills are parsed in a process of their own: the same batches, problems and checks
    as in a thread."""
    from paymux.channels.wechatpay import bill
    from paymux.recon import parsing

    rows = [{"交易时间": "2026-12-01 10:00:00", "商户号": "1900000001", "特约商户号": "0",
             "微信订单号": f"42{i:026d}", "商户订单号": f"att_{i}", "交易状态": "SUCCESS",
             "货币种类": "CNY", "应结订单金额": "1.00", "代金券金额": "0.00", "退款金额": "0.00",
             "充值券退款金额": "0.00", "手续费": "0.01000", "订单金额": "1.00",
             "申请退款金额": "0.00"} for i in range(45_000)]  # fmt: skip
    path = tmp_path / "bill.csv"
    with path.open("wb") as out:
        bill.write_bill(rows, out, unreadable=["`broken,row"])
    monkeypatch.setattr(parsing, "PROCESS_FROM_BYTES", 0 if in_process else 1 << 40)
    reader = bill.TradeBillReader(path, {})
    got = [batch async for batch in parsing.read_ahead("rcr_t", reader)]
    assert [len(b) for b in got] == [20_000, 20_000, 5_000]
    assert got[2][-1][1:6] == (45_000, "payment", "att_44999", f"42{44_999:026d}", 100)
    assert reader.finished and reader.problem_count == 1 and len(reader.checks) == 7
    assert all(c.ok for c in reader.checks), reader.checks

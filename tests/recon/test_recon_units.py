"""Pure parts of reconciliation: break ids, suggestions, a refund's share of the fee."""

from __future__ import annotations

import datetime as dt

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

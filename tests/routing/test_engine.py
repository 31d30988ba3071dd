"""The pure routing decision: filters, every rule condition and action, scoring, breakers."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from typing import Any

import pytest
from pydantic import ValidationError

from paymux.routing import engine, scoring
from paymux.routing.engine import AccountView, BreakerView, Request, RuleView, Snapshot
from paymux.routing.schemas import Action, Conditions, MaintenanceWindow

# Wednesday 2026-11-25 10:00 China time.
NOW = dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.UTC)
M = frozenset({"wechat_native"})
C = frozenset({"CNY"})


def acct(ident: str, channel: str = "wechatpay", **kw: Any) -> AccountView:
    return AccountView(id=ident, channel=channel, methods=M, currencies=C, **kw)


A = acct("chn_a", priority=1, fee=scoring.Fee(rate_bps=60))
B = acct("chn_b", priority=2, fee=scoring.Fee(rate_bps=30))
U = acct("chn_u", "unionpay", priority=3, fee=scoring.Fee(rate_bps=20))


def req(**kw: Any) -> Request:
    return Request(**{"method": "wechat_native", "currency": "CNY", "amount": 10_000, **kw})


def rule(conditions: dict[str, Any], action: dict[str, Any], name: str = "r") -> RuleView:
    Conditions.model_validate(conditions)
    Action.model_validate(action)
    return RuleView(id=f"rr_{name}", name=name, conditions=conditions, action=action)


def order(r: Request, snap: Snapshot, now: dt.datetime = NOW, seed: int = 1) -> list[str]:
    return [c.account_id for c in engine.decide(r, snap, now, random.Random(seed)).order]


# ------------------------------------------------------------------ candidates
def test_filters_method_currency_amount_and_says_why() -> None:
    other = AccountView(
        id="chn_x", channel="alipay", methods=frozenset({"alipay_qr"}), currencies=C
    )
    small = acct("chn_small", max_amount=5_000)
    big = acct("chn_big", min_amount=50_000)
    usd = AccountView(id="chn_usd", channel="stripe", methods=M, currencies=frozenset({"USD"}))
    capped = acct("chn_cap", daily_amount_limit=9_999)
    snap = Snapshot(accounts=[A, other, small, big, usd, capped])
    decision = engine.decide(req(), snap, NOW)
    assert [c.account_id for c in decision.order] == ["chn_a"]
    reasons = {c["account"]: c.get("excluded") for c in decision.explanation["candidates"]}
    assert reasons == {
        "chn_a": None,
        "chn_x": "method_not_offered",
        "chn_small": "above_max_amount",
        "chn_big": "below_min_amount",
        "chn_usd": "currency_not_offered",
        "chn_cap": "above_daily_amount_limit",
    }


def test_maintenance_windows_weekly_wrapping_and_once() -> None:
    weekly = acct("chn_w", maintenance=({"start": "09:30", "end": "10:30"},))
    other_day = acct("chn_d", maintenance=({"start": "09:30", "end": "10:30", "weekdays": [0]},))
    night = acct("chn_n", maintenance=({"start": "23:00", "end": "01:00"},))
    once = acct("chn_o", maintenance=({"start": "2026-11-25T09:59", "end": "2026-11-25T10:01"},))
    snap = Snapshot(accounts=[weekly, other_day, night, once])
    assert order(req(), snap) == ["chn_d", "chn_n"]  # 10:00 Wednesday
    half_past_midnight = dt.datetime(2026, 11, 25, 16, 30, tzinfo=dt.UTC)  # 00:30 Thursday
    assert "chn_n" not in order(req(), snap, half_past_midnight)
    assert "chn_w" in order(req(), snap, half_past_midnight)
    # A window wrapping midnight belongs to the weekday it started on.
    monday_night = acct("chn_m", maintenance=({"start": "23:00", "end": "01:00", "weekdays": [2]},))
    assert order(req(), Snapshot(accounts=[monday_night]), half_past_midnight) == []
    with pytest.raises(ValidationError):
        MaintenanceWindow(start="2026-11-25T10:00", end="2026-11-25T09:00")
    with pytest.raises(ValidationError):
        MaintenanceWindow(start="10:00", end="10:00")


def test_request_override_beats_rules() -> None:
    pin_b = rule({}, {"type": "pin", "targets": ["chn_b"]})
    snap = Snapshot(accounts=[A, B, U], rules=[pin_b], strategy="priority")
    assert order(req(pinned="chn_a"), snap) == ["chn_a"]
    assert order(req(pinned="wechatpay"), snap) == ["chn_a", "chn_b"]
    assert order(req(), snap) == ["chn_b"]


# ------------------------------------------------------------------ conditions
@pytest.mark.parametrize(
    ("conditions", "hit", "miss"),
    [
        ({"methods": ["wechat_native"]}, {}, {"method": "wechat_h5"}),
        ({"currencies": ["CNY"]}, {}, {"currency": "USD"}),
        ({"amount_min": 100, "amount_max": 10_000}, {"amount": 10_000}, {"amount": 10_001}),
        ({"amount_max": 5_000}, {"amount": 5_000}, {"amount": 99_999}),
        ({"device_types": ["ios"]}, {"device_type": "ios"}, {"device_type": "android"}),
        ({"regions": ["CN-GD"]}, {"region": "CN-GD"}, {"region": None}),
        ({"customer_type": "new"}, {"returning": False}, {"returning": True}),
        ({"customer_type": "returning"}, {"returning": True}, {"returning": None}),
        ({"preferred_channels": ["unionpay"]}, {"preferred_channel": "unionpay"}, {}),
        ({"last_channels": ["unionpay"]}, {"last_channel": "unionpay"}, {"last_channel": "x"}),
        (
            {"metadata": {"risk_level": ["high"]}},
            {"metadata": {"risk_level": "high"}},
            {"metadata": {"risk_level": "low"}},
        ),
        ({"metadata": {"category": ["games", "vip"]}}, {"metadata": {"category": "vip"}}, {}),
    ],
)
def test_each_condition(
    conditions: dict[str, Any], hit: dict[str, Any], miss: dict[str, Any]
) -> None:
    r = rule(conditions, {"type": "pin", "targets": ["unionpay"]})
    snap = Snapshot(accounts=[A, U], rules=[r], strategy="priority")
    assert order(req(**hit), snap) == ["chn_u"]
    if miss.get("method") or miss.get("currency"):
        u_all = AccountView(
            id="chn_u",
            channel="unionpay",
            methods=frozenset({"wechat_h5", "wechat_native"}),
            currencies=frozenset({"CNY", "USD"}),
        )
        snap = Snapshot(accounts=[u_all], rules=[r], strategy="priority")
        assert engine.decide(req(**miss), snap, NOW).explanation["rule"] is None
    else:
        assert order(req(**miss), snap) == ["chn_a", "chn_u"]


def test_time_of_day_window_in_china_time_and_wrapping() -> None:
    day = rule({"time_from": "09:00", "time_to": "18:00"}, {"type": "pin", "targets": ["chn_b"]})
    night = rule({"time_from": "22:00", "time_to": "06:00"}, {"type": "pin", "targets": ["chn_u"]})
    snap = Snapshot(accounts=[A, B, U], rules=[day, night], strategy="priority")
    assert order(req(), snap) == ["chn_b"]  # 10:00 in Shanghai (02:00 UTC)
    assert order(req(), snap, dt.datetime(2026, 11, 25, 15, 0, tzinfo=dt.UTC)) == ["chn_u"]
    assert order(req(), snap, dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)) == [
        "chn_a",
        "chn_b",
        "chn_u",
    ]
    with pytest.raises(ValidationError):
        Conditions(time_from="09:00")


def test_first_matching_rule_wins() -> None:
    first = rule({"amount_max": 20_000}, {"type": "pin", "targets": ["chn_b"]}, "first")
    second = rule({}, {"type": "pin", "targets": ["chn_u"]}, "second")
    decision = engine.decide(req(), Snapshot(accounts=[A, B, U], rules=[first, second]), NOW)
    assert [c.account_id for c in decision.order] == ["chn_b"]
    assert decision.explanation["rule"]["name"] == "first"


# ------------------------------------------------------------------ actions
def test_priority_list_then_fallback() -> None:
    r = rule({}, {"type": "priority", "targets": ["unionpay", "chn_b"]})
    snap = Snapshot(accounts=[A, B, U], rules=[r], strategy="priority")
    assert order(req(), snap) == ["chn_u", "chn_b", "chn_a"]
    no_fallback = rule(
        {}, {"type": "priority", "targets": ["unionpay", "chn_b"], "fallback": False}
    )
    decision = engine.decide(req(), Snapshot(accounts=[A, B, U], rules=[no_fallback]), NOW)
    assert [c.account_id for c in decision.order] == ["chn_u", "chn_b"]
    excluded = {c["account"]: c.get("excluded") for c in decision.explanation["candidates"]}
    assert excluded["chn_a"] == "excluded_by_rule"


def test_pin_never_falls_back() -> None:
    r = rule({}, {"type": "pin", "targets": ["unionpay"], "fallback": True})
    assert order(req(), Snapshot(accounts=[A, B, U], rules=[r])) == ["chn_u"]
    assert order(req(), Snapshot(accounts=[A, B], rules=[r])) == []


def test_weighted_split_follows_weights() -> None:
    r = rule({}, {"type": "weighted", "targets": ["chn_a", "chn_b"], "weights": [80, 20]})
    snap = Snapshot(accounts=[A, B, U], rules=[r], strategy="priority")
    rng = random.Random(7)
    firsts = Counter(engine.decide(req(), snap, NOW, rng).order[0].account_id for _ in range(2_000))
    assert set(firsts) == {"chn_a", "chn_b"}
    assert 0.75 < firsts["chn_a"] / 2_000 < 0.85
    # The other target comes next, then the rest.
    assert order(req(), snap, seed=3)[2] == "chn_u"
    with pytest.raises(ValidationError):
        Action(type="weighted", targets=["chn_a"], weights=[1, 2])


def test_score_action_restricts_and_ranks_by_score() -> None:
    r = rule({}, {"type": "score", "targets": ["wechatpay"], "fallback": False})
    assert order(req(), Snapshot(accounts=[A, B, U], rules=[r])) == ["chn_b", "chn_a"]


def test_customer_preferred_and_last_channel_targets() -> None:
    r = rule({}, {"type": "priority", "targets": ["$preferred", "$last"]})
    snap = Snapshot(accounts=[A, B, U], rules=[r], strategy="priority")
    assert order(req(preferred_channel="unionpay"), snap)[0] == "chn_u"
    assert order(req(last_channel="chn_b"), snap)[0] == "chn_b"
    assert order(req(), snap) == ["chn_a", "chn_b", "chn_u"]
    assert engine.needs_history([r]) and not engine.needs_history([])
    with pytest.raises(ValidationError):
        Action(type="pin", targets=["$favourite"])


# ------------------------------------------------------------------ scoring
def test_fee_rate_fixed_min_max() -> None:
    fee = scoring.Fee(rate_bps=60, fixed=10, minimum=50, maximum=2_000)
    assert scoring.fee_of(10_000, fee) == 70
    assert scoring.fee_of(100, fee) == 50
    assert scoring.fee_of(10_000_000, fee) == 2_000
    assert scoring.fee_of(25, scoring.Fee(rate_bps=60)) == 0  # 0.15 fen rounds to 0
    assert scoring.fee_of(84, scoring.Fee(rate_bps=60)) == 1  # 0.504 rounds half up


def test_cost_decides_at_equal_success_and_success_beats_small_savings() -> None:
    good = scoring.Window(accepted=1000, succeeded=950)
    worse = scoring.Window(accepted=1000, succeeded=850)
    windows = {
        ("chn_a", "wechat_native"): good,
        ("chn_b", "wechat_native"): good,
        ("chn_u", "wechat_native"): worse,
    }
    assert order(req(), Snapshot(accounts=[A, B, U], windows=windows)) == [
        "chn_b",
        "chn_a",
        "chn_u",
    ]
    # Weighting cost heavily puts the cheapest first despite its lower success.
    heavy = scoring.Weights(cost=1.0)
    assert order(req(), Snapshot(accounts=[A, B, U], windows=windows, weights=heavy))[0] == "chn_u"


def test_prior_and_exploration_let_a_quiet_account_back_in() -> None:
    busy = scoring.Window(accepted=2000, succeeded=1900)
    quiet = scoring.Window()
    w = scoring.Weights()
    s_busy = scoring.score(
        amount=100, fee=scoring.Fee(), window=busy, total_accepted=2000, weights=w
    )
    s_quiet = scoring.score(
        amount=100, fee=scoring.Fee(), window=quiet, total_accepted=2000, weights=w
    )
    assert s_quiet.components["success"] == scoring.PRIOR_RATE
    assert s_quiet.components["exploration"] > 10 * s_busy.components["exploration"]
    # A few failures cannot sink an estimate; many do.
    assert scoring.success_estimate(scoring.Window(accepted=2, succeeded=0)) > 0.8
    assert scoring.success_estimate(scoring.Window(accepted=500, succeeded=100)) < 0.25
    # Technical errors lower the score.
    flaky = scoring.Window(accepted=100, succeeded=95, recent_accepted=10, recent_errors=10)
    s_flaky = scoring.score(
        amount=100, fee=scoring.Fee(), window=flaky, total_accepted=100, weights=w
    )
    assert s_flaky.total < s_quiet.total


# ------------------------------------------------------------------ breakers
def test_breaker_states_in_the_decision() -> None:
    just_opened = BreakerView(state="open", opened_at=NOW - dt.timedelta(seconds=5))
    cooled = BreakerView(state="open", opened_at=NOW - engine.BREAKER_COOLDOWN)
    probing = BreakerView(state="half_open", probe_started_at=NOW - dt.timedelta(seconds=1))
    snap = Snapshot(
        accounts=[A, B, U],
        strategy="priority",
        breakers={"chn_a": just_opened, "chn_b": cooled, "chn_u": probing},
    )
    decision = engine.decide(req(), snap, NOW)
    assert [(c.account_id, c.probe) for c in decision.order] == [("chn_b", True)]
    reasons = {c["account"]: c.get("excluded") for c in decision.explanation["candidates"]}
    assert reasons["chn_a"] == "breaker_open"
    assert reasons["chn_u"] == "breaker_probe_in_flight"

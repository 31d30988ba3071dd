"""What the routing decision compiles and caches: rule conditions, maintenance windows,
window rates, account views — reused while their inputs are unchanged, never once they change."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm.attributes import flag_modified

from paymux.channel_accounts.models import ChannelAccount
from paymux.routing import engine, scoring
from paymux.routing import service as routing
from paymux.routing.engine import AccountView, Request, RuleView, Snapshot

NOW = dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.UTC)  # Wednesday 10:00 China time


def test_rule_conditions_compile_once_and_keep_their_meaning() -> None:
    conditions: dict[str, Any] = {
        "amount_min": 100, "device_types": ["ios"], "metadata": {"tier": ["gold", "vip"]},
        "time_from": "09:00", "time_to": "11:00", "weekdays": [2],
    }  # fmt: skip
    rule = RuleView(id="rr_1", name="r", conditions=conditions, action={"type": "score"})
    assert rule.holds is rule.holds
    hit = Request(method="m", currency="CNY", amount=100, device_type="ios",
                  metadata={"tier": "vip"})  # fmt: skip
    assert rule.holds(hit, engine.Moment.of(NOW))
    assert engine.matches(conditions, hit, NOW)
    thursday = NOW + dt.timedelta(days=1)
    assert not engine.matches(conditions, hit, thursday)
    for miss in ({"amount": 99}, {"device_type": None}, {"metadata": {"tier": "bronze"}}):
        assert not engine.matches(conditions, Request(**{**hit.__dict__, **miss}), NOW)
    assert engine.matches({}, hit, NOW)


def test_maintenance_parsed_once_per_view_and_checked_against_the_moment() -> None:
    account = AccountView(
        id="chn_a", channel="wechatpay", methods=frozenset({"m"}), currencies=frozenset({"CNY"}),
        maintenance=({"start": "23:00", "end": "01:00", "weekdays": [1]},
                     {"start": "2026-11-25T09:59", "end": "2026-11-25T10:01"}),
    )  # fmt: skip
    assert account.windows is account.windows
    assert engine.in_maintenance(account.maintenance, NOW)  # the one-off window
    tuesday_night = dt.datetime(2026, 11, 24, 16, 30, tzinfo=dt.UTC)  # Wed 00:30 China time
    assert engine.in_maintenance(account.maintenance, tuesday_night)  # started on Tuesday
    assert not engine.in_maintenance(account.maintenance, tuesday_night + dt.timedelta(days=1))


def test_the_explanation_is_rendered_once_and_matches_the_order() -> None:
    accounts = [
        AccountView(id=f"chn_{i}", channel="wechatpay", methods=frozenset({"m"}),
                    currencies=frozenset({"CNY"}), priority=i, fee=scoring.Fee(rate_bps=10 * i))
        for i in range(3)
    ]  # fmt: skip
    window = scoring.Window(accepted=50, succeeded=45, latency_ms=9_000)
    snap = Snapshot(accounts=accounts, windows={("chn_1", "m"): window})
    decision = engine.decide(Request(method="m", currency="CNY", amount=10_000), snap, NOW)
    explanation = decision.explanation
    assert decision.explanation is explanation
    ranks = {c["account"]: c["rank"] for c in explanation["candidates"]}
    assert [choice.account_id for choice in decision.order] == sorted(ranks, key=ranks.get)
    one = next(c for c in explanation["candidates"] if c["account"] == "chn_1")
    alone = scoring.score(amount=10_000, fee=accounts[1].fee, window=window,
                          total_accepted=50, weights=scoring.Weights())  # fmt: skip
    assert (one["score"], one["components"]) == (alone.total, alone.components)


def _row(**kw: Any) -> ChannelAccount:
    fields: dict[str, Any] = {
        "id": "chn_view", "app_id": "app_view", "channel": "wechatpay", "mode": "test",
        "methods": ["m"], "currencies": ["CNY"], "priority": 1, "fee_rate_bps": 30,
        "fee_fixed": 0, "fee_min": None, "fee_max": None, "min_amount": None,
        "max_amount": None, "daily_amount_limit": None, "daily_count_limit": None,
        "maintenance": [{"start": "09:00", "end": "11:00", "weekdays": [2]}],
    }  # fmt: skip
    return ChannelAccount(**{**fields, **kw})


def test_account_views_are_reused_until_a_routing_field_changes() -> None:
    routing.clear_caches()
    row = _row()
    view = routing.cached_view(row)
    assert routing.cached_view(_row()) is view  # the same row read again
    assert engine.in_maintenance(view.maintenance, NOW)
    # Edited in place (the very object cached from): the copy taken tells.
    row.maintenance[0]["weekdays"].append(3)
    flag_modified(row, "maintenance")
    edited = routing.cached_view(row)
    assert edited is not view and edited.maintenance[0]["weekdays"] == [2, 3]
    assert routing.cached_view(_row(priority=2)).priority == 2
    assert routing.cached_view(_row(methods=["m", "n"])).methods == {"m", "n"}
    routing.clear_caches("app_view")
    assert routing.cached_view(_row()) is not view


def test_what_a_snapshot_memoises_is_keyed_by_all_it_depends_on() -> None:
    """One snapshot, decisions that differ in method, gate fields, minute and amount: each
    gets what it would get on a fresh snapshot (the memo never answers for another key)."""
    both = frozenset({"m", "n"})
    accounts = [
        AccountView(id="chn_a", channel="wechatpay", methods=both, currencies=frozenset({"CNY"}),
                    priority=1, maintenance=({"start": "10:00", "end": "10:30"},)),
        AccountView(id="chn_b", channel="alipay", methods=frozenset({"n"}),
                    currencies=frozenset({"CNY"}), priority=2, max_amount=500),
    ]  # fmt: skip
    rules = [RuleView(id="rr_ios", name="ios", conditions={"device_types": ["ios"]},
                      action={"type": "pin", "targets": ["alipay"]})]  # fmt: skip
    shared = Snapshot(accounts=accounts, rules=rules, strategy="priority")

    def order(req: Request, at: dt.datetime) -> list[str]:
        fresh = Snapshot(accounts=accounts, rules=rules, strategy="priority")
        expected = [c.account_id for c in engine.decide(req, fresh, at).order]
        assert [c.account_id for c in engine.decide(req, shared, at).order] == expected
        return expected

    eleven = NOW + dt.timedelta(hours=1)  # 11:00 China time, out of chn_a's window
    assert order(Request(method="n", currency="CNY", amount=100), NOW) == ["chn_b"]
    assert order(Request(method="n", currency="CNY", amount=100), eleven) == ["chn_a", "chn_b"]
    assert order(Request(method="m", currency="CNY", amount=100), eleven) == ["chn_a"]
    assert order(Request(method="n", currency="CNY", amount=900), eleven) == ["chn_a"]
    ios = Request(method="n", currency="CNY", amount=100, device_type="ios")
    assert order(ios, eleven) == ["chn_b"]  # the rule's gate passes for ios only
    assert order(Request(method="n", currency="CNY", amount=100, device_type="android"),
                 eleven) == ["chn_a", "chn_b"]  # fmt: skip
    assert order(Request(method="n", currency="USD", amount=100), eleven) == []
    for i in range(engine._MEMO_LIMIT + 10):  # gates are request values: the memo is bounded
        engine.decide(Request(method="n", currency="CNY", amount=1, device_type=f"d{i}"),
                      shared, eleven)  # fmt: skip
    assert len(shared.memo) <= engine._MEMO_LIMIT
    assert order(ios, eleven) == ["chn_b"]


def test_the_service_reuses_a_snapshot_only_while_its_inputs_are_the_same() -> None:
    routing.clear_caches()
    view = routing.cached_view(_row())
    rules = routing._Rules(version=1, checked_at=NOW, rules=[], strategy="score",
                           weights=scoring.Weights(), needs_history=False)  # fmt: skip
    health = routing._Health(loaded_at=NOW, account_ids=frozenset({view.id}), windows={},
                             breakers={})  # fmt: skip
    key = ("app_view", False)
    first = routing._snapshot(key, [view], rules, health)
    assert routing._snapshot(key, [routing.cached_view(_row())], rules, health) is first
    changed = routing.cached_view(_row(priority=5))
    assert routing._snapshot(key, [changed], rules, health) is not first
    again = routing._snapshot(key, [changed], rules, health)
    fresh = routing._Health(loaded_at=NOW, account_ids=frozenset({view.id}), windows={},
                            breakers={})  # fmt: skip
    assert routing._snapshot(key, [changed], rules, fresh) is not again
    newer = routing._Rules(version=2, checked_at=NOW, rules=[], strategy="score",
                           weights=scoring.Weights(), needs_history=False)  # fmt: skip
    assert routing._snapshot(key, [changed], newer, fresh).version == 2
    routing.clear_caches()


@given(
    amount=st.integers(0, 10**9), rate=st.integers(0, 10_000), fixed=st.integers(-500, 500),
    minimum=st.none() | st.integers(0, 1_000), maximum=st.none() | st.integers(0, 100_000),
)  # fmt: skip
def test_priced_charges_what_fee_of_charges(
    amount: int, rate: int, fixed: int, minimum: int | None, maximum: int | None
) -> None:
    fee = scoring.Fee(rate_bps=rate, fixed=fixed, minimum=minimum, maximum=maximum)
    base = scoring.bases([scoring.Window(accepted=3, succeeded=2)], scoring.Weights())[0]
    ((total, bonus, fee_minor, fee_pct),) = scoring.priced([base], [fee], amount, 0.05)
    assert fee_minor == scoring.fee_of(amount, fee)
    alone = scoring.score(amount=amount, fee=fee, window=scoring.Window(accepted=3, succeeded=2),
                          total_accepted=3, weights=scoring.Weights())  # fmt: skip
    assert total == alone.total and bonus == base.bonus


def test_the_gate_a_snapshot_indexes_by_is_the_membership_conditions_fields() -> None:
    req = Request(method="m", currency="CNY", amount=1, device_type="ios", region="CN-31",
                  preferred_channel="alipay")  # fmt: skip
    assert engine._gate_of(req) == tuple(getattr(req, attr) for _, attr in engine._MEMBERSHIP)

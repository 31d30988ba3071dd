"""Shadow, backtests and the failure policy, on SQLite and PostgreSQL: a draft in shadow is
recorded with every decision and decides nothing; replaying the set that was in force over its
own traffic gives the live outcomes back exactly; a stricter draft reports its hits, amount,
changes and overlap with refunds and reviews; publishing block rules that would have blocked
much of last week's traffic needs confirmation; a rule erring too often moves itself to
shadow; an engine that fails or runs out of time lets money in through (re-screened later)
and sends money out to review."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from paymux.kit import clock
from paymux.risk import breaker, decisions, signals, tasks
from tests.conftest import Stack, Tenant, make_tenant
from tests.money.test_payouts import OPENID, funded_wallet, payout_tenant, request_payout
from tests.payments.test_payments import create
from tests.refunds.test_refunds import refund
from tests.risk.test_decisions import decision, paid, publish, rule


async def draft(stack: Stack, tenant: Tenant, rules: list[dict[str, Any]]) -> dict[str, Any]:
    r = await stack.client.post("/v1/risk/rule_sets", headers=tenant.headers,
                                json={"rules": rules})  # fmt: skip
    assert r.status_code == 201, r.text
    return dict(r.json())


async def backtest(stack: Stack, tenant: Tenant, rule_set: str, start: dt.datetime,
                   **extra: Any) -> dict[str, Any]:  # fmt: skip
    end = clock.now() + dt.timedelta(seconds=1)
    r = await stack.client.post(
        "/v1/risk/backtests",
        headers=tenant.headers,
        json={"rule_set": rule_set, "start": start.isoformat(), "end": end.isoformat(), **extra},
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


LIVE = [
    rule("big", "amount >= 5000", "review"),
    rule("device_burst", "count_payments_device_1h >= 3", "block"),
    rule("scored", "amount >= 3000", "score", score=30),
    rule("scored_more", 'sku == "gift-card"', "score", score=30),
]


async def traffic(stack: Stack, tenant: Tenant) -> list[dict[str, Any]]:
    """Payments of several amounts, SKUs and devices; one device bursts into a block."""
    made = []
    burst = "dev-" + uuid.uuid4().hex[:8]
    for n, (amount, sku) in enumerate(
        [
            (1000, "tee"),
            (3500, "gift-card"),
            (6000, "tee"),
            (2000, "gift-card"),
            (3200, "tee"),
            (800, "mug"),
        ]
    ):
        device = burst if n < 4 else f"dev-{n}"
        r = await create(stack, tenant, amount=amount, customer={"id": f"c{n}"},
                         risk={"device_id": device, "sku": sku})  # fmt: skip
        made.append({**(r.json() if r.status_code == 201 else {}), "http": r.status_code})
    return made


async def test_replaying_the_set_in_force_gives_the_live_outcomes(stack: Stack) -> None:
    shop = await make_tenant(stack)
    start = clock.now() - dt.timedelta(seconds=1)
    live = await publish(stack, shop.headers, LIVE)
    made = await traffic(stack, shop)
    assert [m["http"] for m in made] == [201, 201, 201, 402, 201, 201]  # the 4th: burst
    report = await backtest(stack, shop, live["id"], start)
    assert report["decisions"] == 6 and report["changes"] == {}, report
    assert report["outcomes"] == {"allow": 3, "review": 2, "block": 1}, report
    hits = {r["name"]: r["hits"] for r in report["rules"]}
    assert hits == {"big": 1, "device_burst": 1, "scored": 3, "scored_more": 2}
    # A stricter draft: what it would have changed, and its overlap with refunds and reviews.
    refunded = next(m for m in made if m.get("amount") == 3500)
    await paid(stack, shop, refunded)
    assert (await refund(stack, shop, refunded["id"])).status_code in (200, 201)
    stricter = await draft(stack, shop, [*LIVE, rule("no_gift_cards", 'sku == "gift-card"',
                                                     "block")])  # fmt: skip
    report = await backtest(stack, shop, stricter["id"], start)
    assert report["changes"] == {"review→block": 1}, report  # the burst was blocked already
    assert report["changed_amount"] == 3500 and report["block_share"] == pytest.approx(
        1 / 6, abs=1e-6
    )
    (gift,) = [r for r in report["rules"] if r["name"] == "no_gift_cards"]
    assert (gift["hits"], gift["hit_amount"]) == (2, 3500 + 2000)
    assert report["hits_refunded"] == 1 and report["hits_reviewed"] >= 1
    # Another merchant cannot replay it.
    other = await make_tenant(stack)
    r = await stack.client.post("/v1/risk/backtests", headers=other.headers, json={
        "rule_set": stricter["id"], "start": start.isoformat(),
        "end": (start + dt.timedelta(hours=1)).isoformat()})  # fmt: skip
    assert r.status_code == 404


async def test_a_draft_in_shadow_is_recorded_and_decides_nothing(stack: Stack) -> None:
    shop = await make_tenant(stack)
    await publish(stack, shop.headers, [rule("big", "amount >= 5000", "review")])
    candidate = await draft(stack, shop, [rule("everything", "amount > 0", "block")])
    r = await stack.client.post(f"/v1/risk/rule_sets/{candidate['id']}/shadow",
                                headers=shop.headers, json={"enabled": True})  # fmt: skip
    assert r.status_code == 200 and r.json()["shadow_since"], r.text
    made = await create(stack, shop, amount=100)
    assert made.status_code == 201 and made.json()["risk"]["outcome"] == "allow", made.text
    seen = await decision(stack, shop, made.json()["risk"]["decision"])
    shadowed = [x for x in seen["rules"] if x.get("shadow_set")]
    assert [(x["name"], x["result"], x["mode"]) for x in shadowed] == [
        ("everything", "hit", "shadow")]  # fmt: skip
    assert seen["rule_sets"]["merchant_shadow"]["id"] == candidate["id"]
    await stack.client.post(f"/v1/risk/rule_sets/{candidate['id']}/shadow",
                            headers=shop.headers, json={"enabled": False})  # fmt: skip
    seen = await decision(stack, shop, (await create(stack, shop, amount=100)).json()["risk"][
        "decision"])  # fmt: skip
    assert not [x for x in seen["rules"] if x.get("shadow_set")]


async def test_publishing_a_broad_block_rule_needs_confirmation(stack: Stack) -> None:
    shop = await make_tenant(stack)
    await publish(stack, shop.headers, [rule("watch", "amount >= 100000", "review")])
    for _ in range(25):
        assert (await create(stack, shop, amount=500)).status_code == 201
    broad = await draft(stack, shop, [rule("small", "amount < 1000", "block")])
    r = await stack.client.post(f"/v1/risk/rule_sets/{broad['id']}/publish", headers=shop.headers)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "rule_set_needs_confirmation"
    assert "100.0%" in r.json()["error"]["message"]
    narrow = await draft(stack, shop, [rule("tiny", "amount < 10", "block")])
    r = await stack.client.post(f"/v1/risk/rule_sets/{narrow['id']}/publish", headers=shop.headers)
    assert r.status_code == 200, r.text  # would have blocked nothing
    r = await stack.client.post(f"/v1/risk/rule_sets/{broad['id']}/publish",
                                headers=shop.headers, json={"confirm": True})  # fmt: skip
    assert r.status_code == 200 and r.json()["version"] == 3, r.text


async def test_a_rule_erring_too_often_moves_itself_to_shadow(stack: Stack) -> None:
    breaker.reset()
    shop = await make_tenant(stack)
    live = await publish(stack, shop.headers, [
        rule("needs_sku", 'sku == "banned"', "block", on_error="ignore"),
    ])  # fmt: skip
    for n in range(breaker.MIN_EVALUATIONS):
        signals_ = {"sku": "tee"} if n % 2 else {}  # half of them err (no SKU)
        r = await create(stack, shop, amount=100, risk=signals_ or None)
        assert r.status_code == 201, r.text
    shown = await stack.client.get(f"/v1/risk/rule_sets/{live['id']}", headers=shop.headers)
    assert shown.json()["tripped"] == ["needs_sku"], shown.text
    trail = (await stack.client.get("/v1/risk/changes", headers=shop.headers)).json()["data"]
    assert (trail[0]["action"], trail[0]["actor"], trail[0]["detail"]["rule"]) == (
        "rule.tripped", "system:breaker", "needs_sku")  # fmt: skip
    r = await create(stack, shop, amount=100, risk={"sku": "banned"})
    assert r.status_code == 201, r.text  # in shadow now: it hits and decides nothing
    seen = await decision(stack, shop, r.json()["risk"]["decision"])
    (mine,) = [x for x in seen["rules"] if x["owner"] == "merchant"]
    assert (mine["result"], mine["mode"], mine.get("tripped")) == ("hit", "shadow", True)


async def test_an_engine_failure_lets_money_in_and_sends_money_out_to_review(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await payout_tenant(stack)
    source = await funded_wallet(stack, tenant, 20_000)
    await publish(stack, tenant.headers, [
        rule("big", "amount >= 5000", "review"),
        rule("big_payout", "amount >= 50000", "block", event="payout.create"),
    ])  # fmt: skip

    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("feature store unavailable")

    monkeypatch.setattr(signals, "features", broken)
    r = await create(stack, tenant, amount=6000)
    assert r.status_code == 201, r.text
    assert r.json()["risk"]["unevaluated"] is True and r.json()["risk"]["outcome"] == "allow"
    r = await request_payout(stack, tenant, source, 1_000, {"type": "wechat_openid",
                                                             "account": OPENID})  # fmt: skip
    assert r.status_code == 201 and r.json()["status"] == "review", r.text
    monkeypatch.undo()
    monkeypatch.setattr(decisions, "BUDGET_SECONDS", 0.0)  # over its time budget
    r = await create(stack, tenant, amount=6000)
    assert r.json()["risk"]["unevaluated"] is True, r.text
    monkeypatch.undo()
    # The worker screens the unevaluated payments again: both would have gone to review.
    assert await tasks.reevaluate(stack.runtime) >= 2
    found = (await stack.client.get(f"/v1/payments/{r.json()['id']}",
                                    headers=tenant.headers)).json()  # fmt: skip
    assert found["risk"]["review"], found
    again = await decision(stack, tenant, found["risk"]["decision"])
    assert [x["result"] for x in again["rules"] if x["owner"] == "merchant"][0] == "hit"

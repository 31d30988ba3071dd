"""Risk decisions on real payments through the gateway and the sandboxes, on SQLite and
PostgreSQL: a block creates nothing at the channel and is recorded; review opens a review;
restrict limits methods and channels; hold keeps the money in the merchant's risk-hold
account until a reviewer releases it or declines it (a full refund); precedence between the
platform's and the merchant's rules; velocity over the counters the payments wrote; a rule
that errors applies its on_error; a new version is in force at once.

Platform rule sets are shared by every tenant of the test database: each platform rule here
names its test's merchant, so other tests' payments never hit it."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from tests.conftest import Stack, Tenant, attempt_ids, make_tenant
from tests.money.test_money import books_balance, merchant_balance
from tests.payments.test_payments import create, events_of, pay, wait_for
from tests.refunds.test_refunds import settled
from tests.risk.test_lists import OPERATOR, new_list

PLATFORM = OPERATOR


def rule(name: str, expression: str, action: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "event": extra.pop("event", "payment.create"),
            "expression": expression, "action": action, **extra}  # fmt: skip


async def publish(stack: Stack, headers: dict[str, str], rules: list[dict[str, Any]],
                  **extra: Any) -> dict[str, Any]:  # fmt: skip
    operator = "Paymux-Actor" in headers
    base = "/v1/operator/risk" if operator else "/v1/risk"
    body = {"rules": rules, **({"livemode": False} if operator else {}), **extra}
    r = await stack.client.post(f"{base}/rule_sets", headers=headers, json=body)
    assert r.status_code == 201, r.text
    r = await stack.client.post(f"{base}/rule_sets/{r.json()['id']}/publish", headers=headers,
                                json={"confirm": True})  # fmt: skip
    assert r.status_code == 200, r.text
    return dict(r.json())


async def platform_rules(stack: Stack) -> list[dict[str, Any]]:
    """The platform's rules in force in test mode (the withdrawal limits, at least), to keep
    when a test publishes a platform version of its own: other tests rely on them."""
    r = await stack.client.get("/v1/operator/risk/rule_sets?limit=100", headers=PLATFORM)
    (live,) = [x for x in r.json()["data"]
               if x["state"] == "published" and not x["livemode"]]  # fmt: skip
    keep = ("name", "event", "expression", "action", "score", "mode", "on_error")
    return [{k: x[k] for k in keep} for x in live["rules"] if not x["name"].startswith("t_")]


async def decision(stack: Stack, tenant: Tenant, decision_id: str) -> dict[str, Any]:
    r = await stack.client.get(f"/v1/risk/decisions/{decision_id}", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def payments_of(stack: Stack, tenant: Tenant) -> list[dict[str, Any]]:
    r = await stack.client.get("/v1/payments", headers=tenant.headers)
    return list(r.json()["data"])


async def paid(stack: Stack, tenant: Tenant, payment: dict[str, Any],
               channel: str = "wechatpay") -> dict[str, Any]:  # fmt: skip
    (attempt,) = await attempt_ids(stack, payment["id"])
    await pay(stack, channel, attempt)
    return await wait_for(stack, tenant, payment["id"], "succeeded")


async def test_a_block_creates_nothing_and_is_recorded(stack: Stack) -> None:
    shop = await make_tenant(stack)
    await stack.client.post("/v1/webhook_endpoints", headers=shop.headers,
                            json={"url": f"http://merchant.test/{shop.app_id}",
                                  "events": ["risk.blocked"]})  # fmt: skip
    await publish(stack, shop.headers, [rule("too_big", "amount > 100000", "block")])
    r = await create(stack, shop, amount=100001)
    assert r.status_code == 402, r.text
    error = r.json()["error"]
    assert (error["type"], error["code"]) == ("risk_error", "risk_declined")
    assert "too_big" not in r.text  # generic: the caller learns nothing of the rules
    assert await payments_of(stack, shop) == []
    (event,) = await events_of(stack, shop, "risk.blocked")
    blocked = await decision(stack, shop, event.data["id"])
    assert (blocked["outcome"], blocked["subject_id"], blocked["amount"]) == ("block", None, 100001)
    assert [x for x in blocked["rules"] if x["owner"] == "merchant"] == [
        {"owner": "merchant", "name": "too_big", "action": "block", "mode": "active",
         "result": "hit"}]  # fmt: skip
    assert blocked["rule_sets"]["merchant"]["version"] == 1
    assert blocked["features"]["amount"] == 100001
    # Under the limit it goes through, with its decision on the payment.
    ok = await create(stack, shop, amount=100000)
    assert ok.status_code == 201, ok.text
    risk = ok.json()["risk"]
    assert risk["outcome"] == "allow" and risk["review"] is None
    allowed = await decision(stack, shop, risk["decision"])
    assert allowed["subject_id"] == ok.json()["id"] and allowed["rules"][-1]["result"] == "no_hit"


async def test_no_rules_no_decision(stack: Stack) -> None:
    shop = await make_tenant(stack)
    r = await create(stack, shop)
    assert r.status_code == 201 and r.json()["risk"] is None


async def test_review_opens_a_review_and_the_payment_proceeds(stack: Stack) -> None:
    shop = await make_tenant(stack)
    await publish(stack, shop.headers, [rule("new_big", "amount > 5000 && customer.is_new",
                                             "review")])  # fmt: skip
    r = await create(stack, shop, amount=8000, customer={"id": "c1"})
    assert r.status_code == 201, r.text
    payment = r.json()
    assert payment["next_action"]["type"] == "qr_code"  # the channel order exists
    review_id = payment["risk"]["review"]
    review = (await stack.client.get(f"/v1/risk/reviews/{review_id}", headers=shop.headers)).json()
    assert (review["state"], review["outcome"], review["subject_id"]) == (
        "open", "review", payment["id"])  # fmt: skip
    assert review["on_expiry"] == "approved"
    queue = (await stack.client.get("/v1/risk/reviews?state=open", headers=shop.headers)).json()
    assert [x["id"] for x in queue["data"]] == [review_id]
    # Another merchant sees none of it.
    other = await make_tenant(stack)
    r = await stack.client.get(f"/v1/risk/reviews/{review_id}", headers=other.headers)
    assert r.status_code == 404
    r = await stack.client.get(f"/v1/risk/decisions/{payment['risk']['decision']}",
                               headers=other.headers)  # fmt: skip
    assert r.status_code == 404
    r = await stack.client.post(f"/v1/risk/reviews/{review_id}/approve", headers=shop.headers,
                                json={"reason": "known buyer"})  # fmt: skip
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text
    again = await stack.client.post(
        f"/v1/risk/reviews/{review_id}/decline",
        headers=shop.headers,
        json={"reason": "changed my mind"},
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "review_closed"


async def test_restrict_limits_methods_and_channels(stack: Stack) -> None:
    shop = await make_tenant(stack)
    await publish(stack, shop.headers, [
        rule("big_goods", "amount >= 50000", "restrict", restrict_methods=["alipay_qr"]),
        rule("wechat_only_small", "amount >= 20000", "restrict",
             restrict_channels=["alipay"]),
    ])  # fmt: skip
    r = await create(stack, shop, amount=60000, method="wechat_native")
    assert r.status_code == 400 and r.json()["error"]["code"] == "risk_method_restricted", r.text
    assert "alipay_qr" in r.json()["error"]["message"]
    assert await payments_of(stack, shop) == []
    r = await create(stack, shop, amount=60000, method="alipay_qr")
    assert r.status_code == 201 and r.json()["channel"] == "alipay", r.text
    r = await create(stack, shop, amount=20000, method="wechat_native")
    assert r.status_code == 400 and r.json()["error"]["code"] == "risk_channel_restricted", r.text
    r = await create(stack, shop, amount=60000, method="cashier")
    assert r.status_code == 201 and r.json()["allowed_methods"] == ["alipay_qr"], r.text
    r = await create(stack, shop, amount=100, method="wechat_native")
    assert r.status_code == 201, r.text


async def test_hold_release_moves_the_money_on(stack: Stack) -> None:
    shop = await make_tenant(stack)
    await publish(stack, shop.headers, [rule("hold_big", "amount >= 3000", "hold")])
    payment = (await create(stack, shop, amount=3000)).json()
    assert payment["risk"]["outcome"] == "hold" and payment["risk"]["review"] is None
    done = await paid(stack, shop, payment)
    review_id = done["risk"]["review"]
    assert review_id
    balance = await merchant_balance(stack, shop)
    assert (balance["risk_hold"], balance["pending"]) == (3000, 0)
    funds = done["funds"] if "funds" in done else (await stack.client.get(
        f"/v1/payments/{payment['id']}", headers=shop.headers)).json()["funds"]  # fmt: skip
    assert funds is None or funds.get("settle_due_at") is None
    r = await stack.client.post(f"/v1/risk/reviews/{review_id}/approve", headers=shop.headers,
                                json={"reason": "verified by phone"})  # fmt: skip
    assert r.status_code == 200, r.text
    balance = await merchant_balance(stack, shop)
    assert (balance["risk_hold"], balance["pending"]) == (0, 3000)
    await books_balance(stack)


async def test_hold_decline_refunds_through_the_channel(stack: Stack) -> None:
    shop = await make_tenant(stack)
    await stack.client.post(
        "/v1/webhook_endpoints",
        headers=shop.headers,
        json={
            "url": f"http://merchant.test/{shop.app_id}",
            "events": ["risk.review.opened", "risk.review.closed"],
        },
    )
    await publish(stack, shop.headers, [rule("hold_big", "amount >= 3000", "hold")])
    payment = (await create(stack, shop, amount=4500, customer={"id": "cx"},
                            risk={"device_id": "dev-bad"})).json()  # fmt: skip
    done = await paid(stack, shop, payment)
    review_id = done["risk"]["review"]
    skus = await new_list(stack, shop.headers, "bad_skus", "sku")
    r = await stack.client.post(
        f"/v1/risk/reviews/{review_id}/decline", headers=shop.headers,
        json={"reason": "stolen account",
              "add_to_list": {"list": skus["id"], "attribute": "sku"}},
    )  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["code"] == "attribute_unknown", r.text
    review = await stack.client.get(f"/v1/risk/reviews/{review_id}", headers=shop.headers)
    assert review.json()["state"] == "open"  # a refused close changes nothing
    r = await stack.client.post(f"/v1/risk/reviews/{review_id}/decline", headers=shop.headers,
                                json={"reason": "stolen account"})  # fmt: skip
    assert r.status_code == 200, r.text
    refund_id = r.json()["refund"]
    assert refund_id
    assert (await settled(stack, shop, refund_id))["status"] == "succeeded"
    balance = await merchant_balance(stack, shop)
    assert (balance["risk_hold"], balance["pending"], balance["held"]) == (0, 0, 0)
    await books_balance(stack)
    types = [e.type for e in await events_of(stack, shop) if e.type.startswith("risk.")]
    assert types == ["risk.review.opened", "risk.review.closed"]


async def test_a_declined_review_can_list_what_the_rules_read(stack: Stack) -> None:
    shop = await make_tenant(stack)
    devices = await new_list(stack, shop.headers, "bad_devices", "device_id")
    await publish(stack, shop.headers, [
        rule("listed", 'device_id in list("bad_devices")', "block"),
        rule("watch", "amount >= 1000", "review"),
    ])  # fmt: skip
    device = "dev-" + uuid.uuid4().hex[:8]
    payment = (await create(stack, shop, amount=1000, risk={"device_id": device})).json()
    review_id = payment["risk"]["review"]
    r = await stack.client.post(
        f"/v1/risk/reviews/{review_id}/decline", headers=shop.headers,
        json={"reason": "fraud ring",
              "add_to_list": {"list": devices["id"], "attribute": "device_id"}},
    )  # fmt: skip
    assert r.status_code == 200 and r.json()["refund"] is None, r.text  # not paid: no refund
    r = await create(stack, shop, amount=10, risk={"device_id": device})
    assert r.status_code == 402, r.text  # the device is now on the list


async def test_precedence_platform_blocks_then_allows_then_the_rest(stack: Stack) -> None:
    shop = await make_tenant(stack)
    mine = f'merchant_id == "{shop.merchant_id}"'
    kept = await platform_rules(stack)
    await publish(stack, PLATFORM, [
        *kept,
        rule("t_platform_block", f"{mine} && amount == 777", "block"),
        rule("t_platform_score", f"{mine} && amount >= 600", "score", score=60),
    ])  # fmt: skip
    await publish(stack, shop.headers, [
        rule("vip", 'customer.id == "vip"', "allow"),
        rule("merchant_block", "amount == 666", "block"),
        rule("challenge_it", "amount == 555", "challenge"),
        rule("hold_it", "amount == 555", "hold"),
    ])  # fmt: skip
    vip = {"id": "vip"}
    assert (await create(stack, shop, amount=777, customer=vip)).status_code == 402
    r = await create(stack, shop, amount=666, customer=vip)  # a merchant allow beats its block
    assert r.status_code == 201 and r.json()["risk"]["outcome"] == "allow", r.text
    assert (await create(stack, shop, amount=666)).status_code == 402
    r = await create(stack, shop, amount=555)  # hold outranks challenge
    assert r.json()["risk"]["outcome"] == "hold", r.text
    r = await create(stack, shop, amount=600)  # score 60 ≥ the review threshold 50
    assert r.json()["risk"]["outcome"] == "review", r.text
    seen = await decision(stack, shop, r.json()["risk"]["decision"])
    assert seen["score"] == 60 and set(seen["rule_sets"]) == {"platform", "merchant"}
    # A stricter merchant threshold counts; a looser one could not loosen the platform's.
    await publish(stack, shop.headers, [rule("noop", "amount == 1", "allow")], block_score=60)
    assert (await create(stack, shop, amount=600)).status_code == 402
    await publish(stack, PLATFORM, kept)


async def test_velocity_counts_the_payments_made(stack: Stack) -> None:
    shop = await make_tenant(stack)
    await publish(stack, shop.headers, [
        rule("device_burst", "count_payments_device_1h >= 2", "block"),
        rule("sku_burst", "count_payments_sku_10m >= 3 && quantity > 1", "review"),
    ])  # fmt: skip
    device = "dev-" + uuid.uuid4().hex[:8]
    for _ in range(2):
        r = await create(stack, shop, amount=100, risk={"device_id": device, "sku": "card-1",
                                                        "quantity": 1})  # fmt: skip
        assert r.status_code == 201, r.text
    r = await create(stack, shop, amount=100, risk={"device_id": device})
    assert r.status_code == 402, r.text
    r = await create(stack, shop, amount=100, risk={"device_id": "other", "sku": "card-1",
                                                    "quantity": 5})  # fmt: skip
    assert r.status_code == 201 and r.json()["risk"]["outcome"] == "allow", r.text
    r = await create(stack, shop, amount=100, risk={"device_id": "third", "sku": "card-1",
                                                    "quantity": 5})  # fmt: skip
    seen = await decision(stack, shop, r.json()["risk"]["decision"])
    assert seen["outcome"] == "review" and seen["features"]["count_payments_sku_10m"] == 3


async def test_an_erroring_rule_applies_its_on_error(stack: Stack) -> None:
    shop = await make_tenant(stack)
    await publish(stack, shop.headers, [
        rule("needs_device", 'device_id == "x"', "block"),  # on_error: review
        rule("ignored", 'sku == "x"', "hold", on_error="ignore"),
    ])  # fmt: skip
    r = await create(stack, shop, amount=100)  # no device, no SKU: both rules error
    assert r.json()["risk"]["outcome"] == "review", r.text
    seen = await decision(stack, shop, r.json()["risk"]["decision"])
    mine = [x for x in seen["rules"] if x["owner"] == "merchant"]  # the platform's may run too
    assert [x["result"] for x in mine] == ["error", "error"]
    assert "device_id" in mine[0]["error"]


async def test_a_new_version_is_in_force_at_once_and_shadow_never_decides(stack: Stack) -> None:
    shop = await make_tenant(stack)
    await publish(stack, shop.headers, [rule("strict", "amount > 10", "block", mode="shadow")])
    r = await create(stack, shop, amount=100)
    assert r.status_code == 201, r.text
    seen = await decision(stack, shop, r.json()["risk"]["decision"])
    (strict,) = [x for x in seen["rules"] if x["owner"] == "merchant"]
    assert strict | {"error": None} == {
        "owner": "merchant", "name": "strict", "action": "block", "mode": "shadow",
        "result": "hit", "error": None}  # fmt: skip
    await publish(stack, shop.headers, [rule("strict", "amount > 10", "block")])
    assert (await create(stack, shop, amount=100)).status_code == 402


async def test_reviews_past_their_deadline_close_with_their_default(stack: Stack) -> None:
    from paymux.kit import clock as kit_clock
    from paymux.risk import review_actions

    shop = await make_tenant(stack)
    await publish(stack, shop.headers, [rule("watch", "amount == 1234", "review"),
                                        rule("hold_it", "amount == 4321", "hold")])  # fmt: skip
    watched = (await create(stack, shop, amount=1234)).json()
    held = await paid(stack, shop, (await create(stack, shop, amount=4321)).json())
    shifted = kit_clock.OffsetClock()
    previous = kit_clock.set_clock(shifted)
    try:
        shifted.advance(71 * 3600)
        await review_actions.expire(stack.runtime)
        r = await stack.client.get(f"/v1/risk/reviews/{watched['risk']['review']}",
                                   headers=shop.headers)  # fmt: skip
        assert r.json()["state"] == "open"
        shifted.advance(2 * 3600)
        assert await review_actions.expire(stack.runtime) >= 2
    finally:
        kit_clock.set_clock(previous)
    approved = (await stack.client.get(f"/v1/risk/reviews/{watched['risk']['review']}",
                                       headers=shop.headers)).json()  # fmt: skip
    assert (approved["state"], approved["closed_by"]) == ("approved", "system:deadline")
    declined = (await stack.client.get(f"/v1/risk/reviews/{held['risk']['review']}",
                                       headers=shop.headers)).json()  # fmt: skip
    assert declined["state"] == "declined"
    refunds = (await stack.client.get(f"/v1/refunds?payment={held['id']}",
                                      headers=shop.headers)).json()["data"]  # fmt: skip
    assert [x["out_refund_no"] for x in refunds] == [f"risk_{declined['id']}"]
    assert await review_actions.finish_declines(stack.runtime) == 0  # refunded: nothing to do


async def test_a_list_item_counts_until_it_expires_and_a_change_at_once(stack: Stack) -> None:
    from paymux.kit import cache
    from paymux.kit import clock as kit_clock

    shop = await make_tenant(stack)
    devices = await new_list(stack, shop.headers, "bad_devices", "device_id")
    await publish(stack, shop.headers, [rule("listed", 'device_id in list("bad_devices")',
                                             "block")])  # fmt: skip
    shifted = kit_clock.OffsetClock()
    previous = kit_clock.set_clock(shifted)
    try:
        soon = (kit_clock.now() + dt.timedelta(hours=1)).isoformat()
        r = await stack.client.post(f"/v1/risk/lists/{devices['id']}/items", headers=shop.headers,
                                    json={"items": [{"value": "dev-1", "reason": "farm",
                                                     "expires_at": soon}]})  # fmt: skip
        assert r.status_code == 200, r.text
        assert (await create(stack, shop, risk={"device_id": "dev-1"})).status_code == 402
        shifted.advance(2 * 3600)
        cache.forget_all()  # a second later, as far as the per-process caches go
        assert (await create(stack, shop, risk={"device_id": "dev-1"})).status_code == 201
    finally:
        kit_clock.set_clock(previous)

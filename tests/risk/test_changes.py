"""The risk audit trail and the platform's first rule set, on SQLite and PostgreSQL: every
change to a list, a rule set or a review is recorded with who made it, visible to its owner
only; the withdrawal limits by KYC level are rules in force from the first migration."""

from __future__ import annotations

from typing import Any

from paymux.channels.sandbox_kit import RefundScript
from paymux.wallets.models import Wallet
from tests.conftest import Stack, make_tenant
from tests.money.test_payouts import OPENID, funded_wallet, payout_tenant, request_payout
from tests.payments.test_payments import create
from tests.risk.test_decisions import platform_rules, publish, rule
from tests.risk.test_lists import new_list


async def changes(stack: Stack, headers: dict[str, str]) -> list[dict[str, Any]]:
    base = "/v1/operator/risk" if "Paymux-Actor" in headers else "/v1/risk"
    r = await stack.client.get(f"{base}/changes?limit=100", headers=headers)
    assert r.status_code == 200, r.text
    return list(reversed(r.json()["data"]))  # oldest first


async def test_every_change_is_recorded_for_its_owner(stack: Stack) -> None:
    shop, other = await make_tenant(stack), await make_tenant(stack)
    listed = await new_list(stack, shop.headers, "bad_ips", "ip")
    r = await stack.client.post(
        f"/v1/risk/lists/{listed['id']}/items",
        headers=shop.headers,
        json={"items": [{"value": "203.0.113.5", "reason": "abuse"}]},
    )
    assert r.status_code == 200, r.text
    r = await stack.client.delete(f"/v1/risk/lists/{listed['id']}/items?value=203.0.113.5",
                                  headers=shop.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    published = await publish(stack, shop.headers, [rule("watch", "amount == 4242", "review")])
    review = (await create(stack, shop, amount=4242)).json()["risk"]["review"]
    base = f"/v1/risk/reviews/{review}"
    await stack.client.post(f"{base}/assign", headers=shop.headers, json={"assignee": "ana"})
    await stack.client.post(f"{base}/approve", headers=shop.headers, json={"reason": "fine"})
    seen = await changes(stack, shop.headers)
    assert [c["action"] for c in seen] == [
        "list.created", "list.items_added", "list.item_removed", "rule_set.created",
        "rule_set.published", "review.assigned", "review.approved"]  # fmt: skip
    assert all(c["actor"].startswith(f"merchant:{shop.merchant_id}:") for c in seen)
    assert seen[1]["detail"] == {"how": "api", "count": 1, "values": ["203.0.113.5"]}
    assert seen[4]["object_id"] == published["id"] and seen[4]["detail"]["version"] == 1
    assert seen[5]["detail"] == {"before": None, "after": "ana"}
    assert seen[6]["detail"] == {"reason": "fine"}
    assert await changes(stack, other.headers) == []


async def test_the_withdrawal_limits_are_the_platforms_rules(stack: Stack) -> None:
    kept = {r["name"]: r for r in await platform_rules(stack)}
    assert kept["kyc0_daily_count"]["expression"] == (
        "customer.kyc_level == 0 && count_payouts_customer_24h >= 3")  # fmt: skip
    assert {r["event"] for r in kept.values() if r["name"].startswith("kyc")} == {"payout.create"}
    tenant = await payout_tenant(stack)
    source = await funded_wallet(stack, tenant, 150_000)
    async with stack.runtime.db.transaction() as session:  # unverified: KYC level 0
        (await session.get(Wallet, source)).verification_level = 0  # type: ignore[union-attr]
    to = {"type": "wechat_openid", "account": OPENID}
    r = await request_payout(stack, tenant, source, 50_001, to)  # level 0: 500.00 a payout
    assert r.status_code == 402 and r.json()["error"]["code"] == "risk_declined", r.text
    for n, amount in enumerate((30_000, 40_000, 40_000)):  # and 1,000.00 a day
        stack.sandboxes["wechatpay"].add_transfer_script(RefundScript())
        r = await request_payout(stack, tenant, source, amount, to, speed="standard")
        assert r.status_code == (201 if n < 2 else 402), r.text

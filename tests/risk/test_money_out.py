"""Risk on money out, on SQLite and PostgreSQL: a payout, a wallet transfer or a refund that
the rules send to review is held on its source and not sent until a reviewer approves it;
declined, it is cancelled and the money is back; a block creates nothing. Limits by KYC level
over the payouts' own counters."""

from __future__ import annotations

from typing import Any

from paymux.channels.sandbox_kit import RefundScript
from tests.conftest import Stack, Tenant, run_worker
from tests.money.test_money import balances, books_balance, no, wallet
from tests.money.test_payouts import (
    OPENID,
    eventually,
    funded_wallet,
    payout_of,
    payout_tenant,
    request_payout,
)
from tests.refunds.test_refunds import paid_payment, refund, settled
from tests.risk.test_decisions import publish, rule

TO_WECHAT = {"type": "wechat_openid", "account": OPENID}


async def close(stack: Stack, tenant: Tenant, review_id: str, verb: str) -> dict[str, Any]:
    r = await stack.client.post(f"/v1/risk/reviews/{review_id}/{verb}", headers=tenant.headers,
                                json={"reason": f"{verb} by test"})  # fmt: skip
    assert r.status_code == 200, r.text
    return dict(r.json())


async def review_of(stack: Stack, tenant: Tenant, subject_id: str) -> dict[str, Any]:
    r = await stack.client.get("/v1/risk/reviews?state=open", headers=tenant.headers)
    (found,) = [x for x in r.json()["data"] if x["subject_id"] == subject_id]
    return dict(found)


async def test_a_payout_in_review_waits_then_goes_or_is_cancelled(stack: Stack) -> None:
    tenant = await payout_tenant(stack)
    source = await funded_wallet(stack, tenant, 30_000)
    await publish(stack, tenant.headers, [
        rule("big_payout", "amount >= 5000", "review", event="payout.create"),
        rule("huge_payout", "amount >= 20000", "block", event="payout.create"),
    ])  # fmt: skip
    r = await request_payout(stack, tenant, source, 20_000, TO_WECHAT)
    assert r.status_code == 402 and r.json()["error"]["code"] == "risk_declined", r.text
    assert (await balances(stack, tenant, source))["held"] == 0
    stack.sandboxes["wechatpay"].add_transfer_script(RefundScript())
    waiting = (await request_payout(stack, tenant, source, 5_000, TO_WECHAT)).json()
    assert waiting["status"] == "review"  # express, yet not sent
    assert (await balances(stack, tenant, source))["held"] == 5_000 + 100
    await run_worker(stack)
    assert (await payout_of(stack, tenant, waiting["id"]))["status"] == "review"
    review = await review_of(stack, tenant, waiting["id"])
    await close(stack, tenant, review["id"], "approve")
    await run_worker(stack)
    assert (await eventually(stack, tenant, waiting["id"], "succeeded"))["fee"] == 100
    # Declined: the hold is voided, the money is back.
    other = (await request_payout(stack, tenant, source, 6_000, TO_WECHAT)).json()
    before = await balances(stack, tenant, source)
    await close(stack, tenant, (await review_of(stack, tenant, other["id"]))["id"], "decline")
    failed = await payout_of(stack, tenant, other["id"])
    assert (failed["status"], failed["failure"]["code"] if failed.get("failure") else
            failed.get("failure_code")) == ("failed", "risk_declined")  # fmt: skip
    after = await balances(stack, tenant, source)
    assert after["held"] == before["held"] - 6_100
    assert after["available"] == before["available"] + 6_100
    await books_balance(stack)


async def test_kyc_limits_as_rules(stack: Stack) -> None:
    tenant = await payout_tenant(stack)
    source = await funded_wallet(stack, tenant, 30_000)  # KYC level 1
    await publish(stack, tenant.headers, [
        rule("level1_daily_count", "customer.kyc_level <= 1 && count_payouts_customer_24h >= 2",
             "block", event="payout.create"),
        rule("level1_daily_amount",
             "customer.kyc_level <= 1 && sum_payouts_customer_24h + amount > 9000", "block",
             event="payout.create"),
    ])  # fmt: skip
    for amount in (3_000, 4_000):
        stack.sandboxes["wechatpay"].add_transfer_script(RefundScript())
        r = await request_payout(stack, tenant, source, amount, TO_WECHAT)
        assert r.status_code == 201, r.text
    r = await request_payout(stack, tenant, source, 100, TO_WECHAT)
    assert r.status_code == 402, r.text  # a third payout today
    other = await funded_wallet(stack, tenant, 30_000)
    r = await request_payout(stack, tenant, other, 9_001, TO_WECHAT)
    assert r.status_code == 402, r.text  # over the daily amount at once


async def test_a_transfer_in_review_is_held_on_its_source(stack: Stack) -> None:
    tenant = await payout_tenant(stack)
    source = await funded_wallet(stack, tenant, 10_000)
    dest = (await wallet(stack, tenant))["id"]
    await publish(stack, tenant.headers, [
        rule("big_transfer", "amount >= 1000 && customer.kyc_level < 2", "review",
             event="wallet.transfer"),
    ])  # fmt: skip

    async def send(amount: int) -> dict[str, Any]:
        r = await stack.client.post("/v1/wallet_transfers", headers=tenant.headers,
                                    json={"source": source, "destination": dest,
                                          "amount": amount, "out_transfer_no": no()})  # fmt: skip
        assert r.status_code == 201, r.text
        return dict(r.json())

    small = await send(500)
    assert small["status"] == "succeeded"
    held = await send(2_000)
    assert held["status"] == "review"
    assert (await balances(stack, tenant, source))["held"] == 2_000
    assert (await balances(stack, tenant, dest))["available"] == 500
    await close(stack, tenant, (await review_of(stack, tenant, held["id"]))["id"], "approve")
    assert (await balances(stack, tenant, dest))["available"] == 2_500
    declined = await send(3_000)
    await close(stack, tenant, (await review_of(stack, tenant, declined["id"]))["id"], "decline")
    src = await balances(stack, tenant, source)
    assert (src["held"], src["available"]) == (0, 10_000 - 2_500)
    await books_balance(stack)


async def test_a_refund_in_review_is_asked_for_only_once_approved(stack: Stack) -> None:
    tenant = await payout_tenant(stack)
    payment = await paid_payment(stack, tenant, "wechat_native", "wechatpay", amount=5_000)
    await publish(stack, tenant.headers, [
        rule("big_refund", "amount >= 2000", "review", event="refund.create"),
    ])  # fmt: skip
    waiting = (await refund(stack, tenant, payment["id"], 3_000)).json()
    assert waiting["status"] == "review"
    r = await refund(stack, tenant, payment["id"], 2_500)  # 3,000 of 5,000 are reserved
    assert r.status_code == 409 and r.json()["error"]["code"] == "refund_exceeds_payment"
    await close(stack, tenant, (await review_of(stack, tenant, waiting["id"]))["id"], "approve")
    assert (await settled(stack, tenant, waiting["id"]))["status"] == "succeeded"
    second = (await refund(stack, tenant, payment["id"], 2_000)).json()
    assert second["status"] == "review"
    await close(stack, tenant, (await review_of(stack, tenant, second["id"]))["id"], "decline")
    r = await stack.client.get(f"/v1/refunds/{second['id']}", headers=tenant.headers)
    assert r.json()["status"] == "failed", r.text
    small = (await refund(stack, tenant, payment["id"], 1_000)).json()  # under the rule
    assert (await settled(stack, tenant, small["id"]))["status"] == "succeeded"
    await books_balance(stack)

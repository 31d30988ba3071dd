"""Refunds through the gateway and the real-protocol sandboxes, on SQLite and PostgreSQL:
full, partial and several partial refunds, never beyond the payment even when requested
concurrently, idempotent, by the channel account that took the money, with webhooks."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from tests.conftest import Stack, Tenant, attempt_ids, make_tenant, run_worker
from tests.payments.test_payments import create, pay, wait_for

CHANNELS = [("wechat_native", "wechatpay"), ("alipay_qr", "alipay")]


async def paid_payment(stack: Stack, tenant: Tenant, method: str, channel: str,
                       amount: int = 1000) -> dict[str, Any]:  # fmt: skip
    payment = (await create(stack, tenant, method=method, amount=amount)).json()
    (attempt,) = await attempt_ids(stack, payment["id"])
    await pay(stack, channel, attempt)
    return await wait_for(stack, tenant, payment["id"], "succeeded")


async def refund(
    stack: Stack, tenant: Tenant, payment_id: str, amount: int | None = None,
    out_refund_no: str | None = None, headers: dict[str, str] | None = None,
) -> Any:  # fmt: skip
    number = out_refund_no or "r" + uuid.uuid4().hex[:16]
    body: dict[str, Any] = {"payment": payment_id, "out_refund_no": number}
    if amount is not None:
        body["amount"] = amount
    return await stack.client.post(
        "/v1/refunds", json=body, headers={**tenant.headers, **(headers or {})}
    )


async def settled(stack: Stack, tenant: Tenant, refund_id: str) -> dict[str, Any]:
    """Wait for the refund to be final: notifications come by themselves, queries by the
    janitor."""
    from paymux.kit import clock as kit_clock

    shifted = kit_clock.OffsetClock()
    previous = kit_clock.set_clock(shifted)
    try:
        for _ in range(60):
            r = await stack.client.get(f"/v1/refunds/{refund_id}", headers=tenant.headers)
            if r.json()["status"] != "pending":
                return dict(r.json())
            await asyncio.sleep(0.02)
            shifted.advance(30)
            await run_worker(stack)
    finally:
        kit_clock.set_clock(previous)
    raise AssertionError(f"refund stayed {r.json()['status']}")


@pytest.mark.parametrize(("method", "channel"), CHANNELS)
async def test_full_refund_goes_back_by_the_same_account(
    stack: Stack, method: str, channel: str
) -> None:
    tenant = await make_tenant(stack)
    endpoint = await stack.client.post(
        "/v1/webhook_endpoints", headers=tenant.headers,
        json={"url": f"http://merchant.test/{tenant.app_id}", "events": ["refund.succeeded"]},
    )  # fmt: skip
    assert endpoint.status_code == 201
    payment = await paid_payment(stack, tenant, method, channel)
    r = await refund(stack, tenant, payment["id"])
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["amount"] == 1000 and created["channel"] == channel
    done = await settled(stack, tenant, created["id"])
    assert done["status"] == "succeeded" and done["succeeded_at"]
    after = (await stack.client.get(f"/v1/payments/{payment['id']}", headers=tenant.headers)).json()
    assert after["amount_refunded"] == 1000 and after["status"] == "succeeded"
    await run_worker(stack)
    bodies = [json.loads(x.body) for x in stack.receiver.for_path(f"/{tenant.app_id}")]
    assert [b["type"] for b in bodies] == ["refund.succeeded"]
    assert bodies[0]["data"]["object"]["id"] == created["id"]


@pytest.mark.parametrize(("method", "channel"), CHANNELS)
async def test_partial_refunds_up_to_the_amount(
    stack: Stack, tenant: Tenant, method: str, channel: str
) -> None:
    payment = await paid_payment(stack, tenant, method, channel)
    ids = []
    for amount in (300, 300, 400):
        r = await refund(stack, tenant, payment["id"], amount)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    over = await refund(stack, tenant, payment["id"], 1)
    assert over.status_code == 409 and over.json()["error"]["code"] == "refund_exceeds_payment"
    for refund_id in ids:
        assert (await settled(stack, tenant, refund_id))["status"] == "succeeded"
    after = (await stack.client.get(f"/v1/payments/{payment['id']}", headers=tenant.headers)).json()
    assert after["amount_refunded"] == 1000
    listed = (await stack.client.get(
        f"/v1/refunds?payment={payment['id']}", headers=tenant.headers)).json()  # fmt: skip
    assert sorted(x["id"] for x in listed["data"]) == sorted(ids)


async def test_concurrent_refunds_never_exceed_the_payment(stack: Stack, tenant: Tenant) -> None:
    payment = await paid_payment(stack, tenant, "alipay_qr", "alipay")
    answers = await asyncio.gather(*(refund(stack, tenant, payment["id"], 300) for _ in range(10)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 3 + [409] * 7
    listed = (await stack.client.get(
        f"/v1/refunds?payment={payment['id']}", headers=tenant.headers)).json()  # fmt: skip
    assert sum(x["amount"] for x in listed["data"]) == 900


async def test_refund_requests_are_idempotent(stack: Stack, tenant: Tenant) -> None:
    payment = await paid_payment(stack, tenant, "wechat_native", "wechatpay")
    first = await refund(stack, tenant, payment["id"], 100, out_refund_no="rf-1",
                         headers={"Idempotency-Key": "k-rf-1"})  # fmt: skip
    replay = await refund(stack, tenant, payment["id"], 100, out_refund_no="rf-1",
                          headers={"Idempotency-Key": "k-rf-1"})  # fmt: skip
    assert replay.json()["id"] == first.json()["id"]
    assert replay.headers.get("Idempotent-Replayed") == "true"
    same_no = await refund(stack, tenant, payment["id"], 100, out_refund_no="rf-1")
    assert same_no.status_code == 201 and same_no.json()["id"] == first.json()["id"]
    other = await refund(stack, tenant, payment["id"], 200, out_refund_no="rf-1")
    assert other.status_code == 409 and other.json()["error"]["code"] == "duplicate_out_refund_no"
    listed = (await stack.client.get(
        f"/v1/refunds?payment={payment['id']}", headers=tenant.headers)).json()  # fmt: skip
    assert len(listed["data"]) == 1


async def test_bad_refunds_are_refused_and_change_nothing(stack: Stack, tenant: Tenant) -> None:
    unpaid = (await create(stack, tenant, method="alipay_qr")).json()
    r = await refund(stack, tenant, unpaid["id"])
    assert r.status_code == 409 and r.json()["error"]["code"] == "payment_not_refundable"
    r = await refund(stack, tenant, "pay_missing")
    assert r.status_code == 404
    payment = await paid_payment(stack, tenant, "alipay_qr", "alipay")
    other = await make_tenant(stack)
    r = await refund(stack, other, payment["id"])
    assert r.status_code == 404  # another tenant's payment does not exist for you
    for body in ({"payment": payment["id"], "out_refund_no": "x", "amount": 0},
                 {"payment": payment["id"], "out_refund_no": "x", "amount": 1001},
                 {"payment": payment["id"]}, {"payment": payment["id"], "out_refund_no": "a b"},
                 {"payment": payment["id"], "out_refund_no": "x", "extra": 1}):  # fmt: skip
        r = await stack.client.post("/v1/refunds", json=body, headers=tenant.headers)
        assert 400 <= r.status_code < 500, body
    listed = (await stack.client.get("/v1/refunds", headers=tenant.headers)).json()
    assert listed["data"] == []
    assert (
        await stack.client.get("/v1/refunds/re_missing", headers=tenant.headers)
    ).status_code == 404


async def test_alipay_refund_settles_by_the_trade_notification(
    stack: Stack, tenant: Tenant
) -> None:
    """Alipay announces a refund only through the trade's own notification (out_biz_no,
    gmt_refund): a delayed refund succeeds from it, without any query."""
    from paymux.channels.sandbox_kit import RefundOutcome, RefundScript
    from tests.payments.test_payments import inbox_of

    payment = await paid_payment(stack, tenant, "alipay_qr", "alipay")
    stack.sandboxes["alipay"].core.add_refund_script(
        RefundScript(outcome=RefundOutcome.delayed, delay=5.0))  # fmt: skip
    created = (await refund(stack, tenant, payment["id"], 400)).json()
    assert created["status"] == "pending"
    for _ in range(300):  # no worker runs here: only the notification can settle it
        r = await stack.client.get(f"/v1/refunds/{created['id']}", headers=tenant.headers)
        if r.json()["status"] != "pending":
            break
        await asyncio.sleep(0.01)
    assert r.json()["status"] == "succeeded"
    (attempt,) = await attempt_ids(stack, payment["id"])
    results = [e.result for e in await inbox_of(stack, attempt)]
    assert results.count("applied") == 2  # the payment, then the refund riding on its trade


async def test_a_refund_made_outside_paymux_is_acknowledged_and_ignored(
    stack: Stack, tenant: Tenant
) -> None:
    """A refund made in the merchant's Alipay console rides on a trade notification too; it is
    not ours, so it changes nothing — and Alipay is not made to retry it forever."""
    from paymux.channel_accounts import service as channel_service
    from paymux.channel_accounts.repository import ChannelAccountRepository
    from paymux.channels import base
    from tests.payments.test_payments import inbox_of

    payment = await paid_payment(stack, tenant, "alipay_qr", "alipay")
    (attempt,) = await attempt_ids(stack, payment["id"])
    async with stack.runtime.db.read() as session:
        account = await ChannelAccountRepository(session).get(tenant.accounts["alipay"])
    assert account is not None
    adapter = channel_service.adapter_for(stack.runtime.vault, account, stack.runtime.channel_http)
    await adapter.create_refund(base.CreateRefund(
        out_refund_no="console-" + uuid.uuid4().hex[:8], out_trade_no=attempt,
        channel_trade_no=None, amount=250, total_amount=1000, currency="CNY",
        notify_url="http://unused.test/", reason="console"))  # fmt: skip
    for _ in range(300):
        events = await inbox_of(stack, attempt)
        if len(events) == 2:
            break
        await asyncio.sleep(0.01)
    assert sorted(e.result for e in events) == ["applied", "no_change"]
    after = (await stack.client.get(f"/v1/payments/{payment['id']}", headers=tenant.headers)).json()
    assert after["status"] == "succeeded" and after["amount_refunded"] == 0


async def test_a_refund_the_channel_never_finishes_is_flagged_once(
    stack: Stack, tenant: Tenant, clock: Any
) -> None:
    """Still PROCESSING at WeChat days later: flagged for an operator once
    (``refund.requires_attention``), never failed on our own, and still queried."""
    from paymux.channels.sandbox_kit import RefundOutcome, RefundScript
    from tests.payments.test_payments import events_of

    payment = await paid_payment(stack, tenant, "wechat_native", "wechatpay")
    stack.sandboxes["wechatpay"].core.add_refund_script(
        RefundScript(outcome=RefundOutcome.delayed, delay=1e12))  # fmt: skip
    created = (await refund(stack, tenant, payment["id"], 300)).json()
    assert created["status"] == "pending" and created["requires_attention_since"] is None
    clock.advance(3600)
    await run_worker(stack)
    assert await events_of(stack, tenant, "refund.requires_attention") == []
    clock.advance(stack.runtime.settings.refund_attention_seconds)
    await run_worker(stack)
    got = (await stack.client.get(f"/v1/refunds/{created['id']}", headers=tenant.headers)).json()
    assert got["status"] == "pending" and got["requires_attention_since"] is not None
    clock.advance(3600)
    await run_worker(stack)  # asked again, flagged no second time
    assert len(await events_of(stack, tenant, "refund.requires_attention")) == 1
    # WeChat finally pays it back: the refund succeeds and is no longer flagged.
    core = stack.sandboxes["wechatpay"].core
    (at_wechat,) = [r for r in core.refunds.values() if r.out_refund_no == created["id"]]
    assert core.finish_refund(at_wechat, succeeded=True)
    clock.advance(3600)
    await run_worker(stack)
    done = (await stack.client.get(f"/v1/refunds/{created['id']}", headers=tenant.headers)).json()
    assert done["status"] == "succeeded" and done["requires_attention_since"] is None

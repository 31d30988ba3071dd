"""Stripe end to end through the in-process gateway, on SQLite and PostgreSQL: POST
/v1/payments with a card method → next_action → the customer pays (Stripe.js stand-in: the
official SDK with the publishable key; 3-D Secure challenge or frictionless) → signed webhook →
payment succeeded → refund → refund succeeded (webhook)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import stripe

from paymux.channels.stripe import protocol as p
from paymux.kit import clock
from tests.conftest import GATEWAY, Stack, Tenant, attempt_ids, make_tenant, run_worker
from tests.payments.test_payments import events_of, inbox_of, wait_for
from tests.refunds.test_refunds import refund, settled

RETURN_URL = "http://merchant.test/return"


async def create(
    stack: Stack,
    tenant: Tenant,
    *,
    method: str = "card",
    amount: int = 1999,
    currency: str = "USD",
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "amount": amount,
        "currency": currency,
        "method": method,
        "out_trade_no": "o" + uuid.uuid4().hex[:20],
        "subject": "Sneakers",
        "return_url": RETURN_URL,
        **extra,
    }
    r = await stack.client.post("/v1/payments", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def stripe_js(stack: Stack, publishable_key: str) -> tuple[stripe.StripeClient, httpx.AsyncClient]:
    """What the customer's browser runs: the official client with the publishable key."""
    http = stripe.HTTPXClient()
    inner = httpx.AsyncClient(transport=httpx.ASGITransport(app=stack.app))
    http._client_async = inner
    client = stripe.StripeClient(
        publishable_key,
        http_client=http,
        base_addresses={"api": f"{GATEWAY}/sandbox/stripe"},
        max_network_retries=0,
    )
    return client, inner


async def pass_3ds(stack: Stack, url: str, result: str = "complete") -> httpx.Response:
    path = url.removeprefix(GATEWAY)
    page = await stack.client.get(path)
    assert page.status_code == 200 and "3D Secure" in page.text
    return await stack.client.post(path, data={"result": result})


async def test_client_flow_with_3ds_then_refund(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("stripe",))
    payment = await create(stack, tenant)
    assert payment["channel"] == "stripe" and payment["status"] == "pending"
    action = payment["next_action"]
    assert action["type"] == "sdk_params"
    params = action["params"]
    client, inner = stripe_js(stack, params["publishable_key"])
    try:
        intent = await client.v1.payment_intents.confirm_async(
            params["payment_intent"],
            params={
                "client_secret": params["client_secret"],
                "payment_method": "pm_card_authenticationRequired",
                "return_url": RETURN_URL,
            },
        )
    finally:
        await inner.aclose()
    assert intent.status == "requires_action"
    done = await pass_3ds(stack, intent.next_action.redirect_to_url.url)
    assert done.status_code == 303 and "redirect_status=succeeded" in done.headers["location"]
    paid = await wait_for(stack, tenant, payment["id"], "succeeded")
    assert paid["channel_trade_no"] == params["payment_intent"]
    (attempt,) = await attempt_ids(stack, payment["id"])
    assert {e.result for e in await inbox_of(stack, attempt)} >= {"applied"}
    r = await refund(stack, tenant, payment["id"], amount=999)
    assert r.status_code == 201, r.text
    final = await settled(stack, tenant, r.json()["id"])
    assert final["status"] == "succeeded"
    assert final["channel_refund_no"].startswith("re_")
    types = [e.type for e in await events_of(stack, tenant)]
    assert "payment.succeeded" in types and "refund.succeeded" in types


async def test_server_flow_frictionless_3ds_and_decline(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("stripe",))
    frictionless = await create(
        stack,
        tenant,
        method="apple_pay",
        amount=500,
        currency="JPY",
        customer={"payment_method": "pm_card_visa"},
    )
    assert frictionless["status"] == "succeeded"
    assert frictionless["next_action"] is None

    challenged = await create(
        stack,
        tenant,
        method="google_pay",
        customer={"payment_method": "pm_card_threeDSecure2Required"},
    )
    assert challenged["status"] == "pending"
    assert challenged["next_action"]["type"] == "redirect"
    await pass_3ds(stack, challenged["next_action"]["url"])
    await wait_for(stack, tenant, challenged["id"], "succeeded")

    failed_3ds = await create(
        stack, tenant, customer={"payment_method": "pm_card_authenticationRequired"}
    )
    await pass_3ds(stack, failed_3ds["next_action"]["url"], "fail")
    failed = await wait_for(stack, tenant, failed_3ds["id"], "failed")
    assert failed["failure"]["code"] == "authentication_failed"

    declined = await create(stack, tenant, customer={"payment_method": "pm_card_chargeDeclined"})
    assert declined["status"] == "failed"
    assert declined["failure"]["code"] == "card_declined"

    # a full refund of the yen payment, in yen
    r = await refund(stack, tenant, frictionless["id"])
    assert r.status_code == 201, r.text
    final = await settled(stack, tenant, r.json()["id"])
    assert final["status"] == "succeeded" and final["amount"] == 500


async def test_missed_webhook_resolved_by_the_janitor_and_close(stack: Stack) -> None:
    from paymux.channels.sandbox_kit import NotifyMode, Script

    tenant = await make_tenant(stack, channels=("stripe",))
    subject = f"quiet-{uuid.uuid4().hex[:6]}"
    stack.sandboxes["stripe"].core.add_script(Script(notify=NotifyMode.none, subject=subject))
    payment = await create(
        stack,
        tenant,
        subject=subject,
        customer={"payment_method": "pm_card_authenticationRequired"},
    )
    await pass_3ds(stack, payment["next_action"]["url"])
    from paymux.kit import clock as kit_clock

    shifted = kit_clock.OffsetClock()
    previous = kit_clock.set_clock(shifted)
    try:
        for _ in range(8):
            r = await stack.client.get(f"/v1/payments/{payment['id']}", headers=tenant.headers)
            if r.json()["status"] == "succeeded":
                break
            shifted.advance(60)
            await run_worker(stack)
    finally:
        kit_clock.set_clock(previous)
    assert r.json()["status"] == "succeeded"

    open_payment = await create(stack, tenant)
    closed = await stack.client.post(
        f"/v1/payments/{open_payment['id']}/close", headers=tenant.headers
    )
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed"
    intent = stack.sandboxes["stripe"].intents[
        open_payment["next_action"]["params"]["payment_intent"]
    ]
    assert intent.cancellation_reason == "abandoned"
    await asyncio.sleep(0.05)  # the canceled webhook arrives and changes nothing
    again = await stack.client.get(f"/v1/payments/{open_payment['id']}", headers=tenant.headers)
    assert again.json()["status"] == "closed"


async def test_out_of_order_and_forged_webhooks_change_nothing(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("stripe",))
    payment = await create(stack, tenant, customer={"payment_method": "pm_card_visa"})
    assert payment["status"] == "succeeded"
    sandbox = stack.sandboxes["stripe"]
    intent = sandbox.intents[payment["channel_trade_no"]]
    notify = intent.metadata["paymux_notify_url"].removeprefix(GATEWAY)
    # an older event (the intent still awaiting 3-D Secure) delivered after the success
    older = {**sandbox.intent_json(intent), "status": "requires_action"}
    _, body = sandbox._event("payment_intent.requires_action", older)
    signature = sandbox.signed(intent.account.secret_key, body)
    r = await stack.client.post(notify, content=body, headers={"Stripe-Signature": signature})
    assert r.status_code == 200, r.text
    # a forged one (signed with another secret) is refused and changes nothing
    canceled = {**sandbox.intent_json(intent), "status": "canceled"}
    _, forged = sandbox._event("payment_intent.canceled", canceled)
    bad = p.signature_header(forged, ["whsec_forgedsecret"], int(clock.now().timestamp()))
    r = await stack.client.post(notify, content=forged, headers={"Stripe-Signature": bad})
    assert r.status_code == 400
    again = await stack.client.get(f"/v1/payments/{payment['id']}", headers=tenant.headers)
    assert again.json()["status"] == "succeeded"

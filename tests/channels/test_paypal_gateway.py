"""PayPal end to end through the gateway, on every test database: POST /v1/payments with
method ``paypal`` → redirect → the sandbox's approval page → CHECKOUT.ORDER.APPROVED webhook →
captured → payment.succeeded → refund → refund.succeeded; plus cancel/close, a missed webhook
resolved by the janitor and a declined capture. (A lost create answer is resolved in
test_paypal.py: the in-process transport here cannot time out.)"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from paymux.channels.sandbox_kit import NotifyMode, Outcome, Script
from paymux.inbox.models import ChannelEvent
from paymux.webhooks.models import Event
from tests.conftest import Stack, Tenant, attempt_ids, make_tenant, run_worker

RETURN_URL = "https://shop.example/thanks"


async def create(stack: Stack, tenant: Tenant, **extra: Any) -> dict[str, Any]:
    body = {
        "amount": 2599, "currency": "USD", "method": "paypal",
        "out_trade_no": "o" + uuid.uuid4().hex[:20], "subject": "Book",
        "return_url": RETURN_URL, **extra,
    }  # fmt: skip
    r = await stack.client.post("/v1/payments", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def wait_for(stack: Stack, tenant: Tenant, path: str, status: str) -> dict[str, Any]:
    for _ in range(300):
        r = await stack.client.get(path, headers=tenant.headers)
        if r.json()["status"] == status:
            return dict(r.json())
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} stayed {r.json()['status']}, wanted {status}")


async def buyer(stack: Stack, url: str, result: str) -> str:
    """The customer's browser on the redirect target: open the page, press a button."""
    parts = urlsplit(url)
    path = f"{parts.path}?{parts.query}"
    page = await stack.client.get(path)
    assert page.status_code == 200 and "Pay Now" in page.text
    r = await stack.client.post(path, data={"result": result})
    assert r.status_code == 303, r.text
    return str(r.headers["location"])


async def advance_until(stack: Stack, tenant: Tenant, payment_id: str, status: str) -> None:
    from paymux.kit import clock as kit_clock

    shifted = kit_clock.OffsetClock()
    previous = kit_clock.set_clock(shifted)
    try:
        for _ in range(8):
            r = await stack.client.get(f"/v1/payments/{payment_id}", headers=tenant.headers)
            if r.json()["status"] == status:
                return
            shifted.advance(60)
            await run_worker(stack)
        raise AssertionError(f"payment stayed {r.json()['status']}")
    finally:
        kit_clock.set_clock(previous)


async def test_pay_by_redirect_webhook_capture_and_refund(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("paypal",))
    payment = await create(stack, tenant)
    action = payment["next_action"]
    assert action["type"] == "redirect"
    assert action["url"].startswith("http://gateway.test/sandbox/paypal/checkoutnow?token=")
    (attempt,) = await attempt_ids(stack, payment["id"])
    back = await buyer(stack, action["url"], "approve")
    assert back.startswith(f"http://gateway.test/pay/{payment['id']}/return?token=")
    done = await wait_for(stack, tenant, f"/v1/payments/{payment['id']}", "succeeded")
    order_id = back.split("token=")[1].split("&")[0]
    assert done["channel_trade_no"] == order_id and done["paid_at"]
    async with stack.runtime.db.read() as session:
        inbox = (await session.scalars(
            sa.select(ChannelEvent).where(ChannelEvent.out_trade_no == attempt)
        )).all()  # fmt: skip
    assert {e.result for e in inbox} >= {"applied"}
    sandbox = stack.sandboxes["paypal"]
    assert sandbox.core.find(attempt).status.value == "succeeded"

    r = await stack.client.post("/v1/refunds", headers=tenant.headers, json={
        "payment": payment["id"], "out_refund_no": "r" + uuid.uuid4().hex[:12], "amount": 599,
    })  # fmt: skip
    assert r.status_code in (200, 201), r.text
    refund = await wait_for(stack, tenant, f"/v1/refunds/{r.json()['id']}", "succeeded")
    assert refund["amount"] == 599
    after = await wait_for(stack, tenant, f"/v1/payments/{payment['id']}", "succeeded")
    assert after["amount_refunded"] == 599
    async with stack.runtime.db.read() as session:
        types = set((await session.scalars(
            sa.select(Event.type).where(Event.app_id == tenant.app_id)
        )).all())  # fmt: skip
    assert {"payment.succeeded", "refund.succeeded"} <= types


async def test_buyer_cancels_then_merchant_closes(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("paypal",))
    payment = await create(stack, tenant)
    back = await buyer(stack, payment["next_action"]["url"], "cancel")
    assert back.startswith(f"http://gateway.test/pay/{payment['id']}/return?token=")
    assert "PayerID" not in back
    returned = await stack.client.get(back.removeprefix("http://gateway.test"))
    # A cancel is not a success: the customer is back on the cashier, not the merchant's page.
    assert (returned.status_code, returned.headers["location"]) == (303, f"/pay/{payment['id']}")
    r = await stack.client.post(f"/v1/payments/{payment['id']}/close", headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "closed"
    # Approving the closed order later takes no money.
    await buyer(stack, payment["next_action"]["url"], "approve")
    await asyncio.sleep(0.05)
    (attempt,) = await attempt_ids(stack, payment["id"])
    assert stack.sandboxes["paypal"].core.find(attempt).status.value == "pending"
    r = await stack.client.get(f"/v1/payments/{payment['id']}", headers=tenant.headers)
    assert r.json()["status"] == "closed"


async def test_missing_webhook_is_captured_by_the_janitor(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("paypal",))
    subject = f"silent-{uuid.uuid4().hex[:8]}"
    stack.sandboxes["paypal"].core.add_script(
        Script(outcome=Outcome.succeed, notify=NotifyMode.none, subject=subject)
    )
    payment = await create(stack, tenant, subject=subject)
    assert payment["status"] == "pending"
    await advance_until(stack, tenant, payment["id"], "succeeded")


async def test_the_buyers_return_captures_at_once(stack: Stack) -> None:
    """No webhook, no janitor: the buyer's browser coming back through the gateway is enough —
    the gateway asks PayPal, captures the approved order, then sends the buyer on."""
    tenant = await make_tenant(stack, channels=("paypal",))
    subject = f"quiet-{uuid.uuid4().hex[:8]}"
    stack.sandboxes["paypal"].core.add_script(
        Script(outcome=Outcome.manual, notify=NotifyMode.none, subject=subject)
    )
    payment = await create(stack, tenant, subject=subject)
    back = await buyer(stack, payment["next_action"]["url"], "approve")
    returned = await stack.client.get(back.removeprefix("http://gateway.test"))
    assert (returned.status_code, returned.headers["location"]) == (303, RETURN_URL)
    r = await stack.client.get(f"/v1/payments/{payment['id']}", headers=tenant.headers)
    assert r.json()["status"] == "succeeded"
    missing = await stack.client.get("/pay/pay_nosuchpayment/return")
    assert missing.status_code == 404


async def test_declined_capture_fails_the_payment(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("paypal",))
    subject = f"declined-{uuid.uuid4().hex[:8]}"
    stack.sandboxes["paypal"].core.add_script(
        Script(outcome=Outcome.decline, notify=NotifyMode.none, subject=subject)
    )
    payment = await create(stack, tenant, subject=subject)
    await advance_until(stack, tenant, payment["id"], "failed")

"""Issue 10 item 9: one meaning per final status on every channel (docs/api.md, "Final
statuses"). A customer's decline or a channel's refusal → ``failed`` + ``payment.failed`` with
a failure category (the channel's own code kept on the attempt); the expiry → ``expired``;
the merchant's close → ``closed``. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from paymux.channels.sandbox_kit import NotifyMode, Outcome, Script
from paymux.channels.unionpay import protocol as unionpay_protocol
from paymux.kit import clock as kit_clock
from tests.conftest import Stack, Tenant, attempt_ids, make_tenant, run_worker
from tests.payments.test_payments import events_of

# channel → (method, currency, extra fields of the create request)
CHANNELS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "wechatpay": ("wechat_native", "CNY", {}),
    "alipay": ("alipay_qr", "CNY", {}),
    "unionpay": ("unionpay_qr", "CNY", {}),
    "stripe": ("card", "USD", {"return_url": "https://shop.example/back"}),
    "paypal": ("paypal", "USD", {"return_url": "https://shop.example/back"}),
}

# channel → (failure category, the channel's own code) of a decline on its customer page (or,
# for cards, by the issuer)
DECLINES: dict[str, tuple[str, str]] = {
    "wechatpay": ("payment_declined", "PAYERROR"),
    "alipay": ("customer_declined", "TRADE_CLOSED"),
    "unionpay": ("payment_declined", "01"),
    "stripe": ("card_declined", "generic_decline"),
    "paypal": ("card_declined", "capture_declined"),
}


async def _create(stack: Stack, tenant: Tenant, channel: str, **extra: Any) -> dict[str, Any]:
    method, currency, fields = CHANNELS[channel]
    body = {"amount": 1999, "currency": currency, "method": method, "subject": "Lamp",
            "out_trade_no": "o" + uuid.uuid4().hex[:20], **fields, **extra}  # fmt: skip
    r = await stack.client.post("/v1/payments", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _get(stack: Stack, tenant: Tenant, payment_id: str) -> dict[str, Any]:
    r = await stack.client.get(f"/v1/payments/{payment_id}?expand=attempts",
                               headers=tenant.headers)  # fmt: skip
    return dict(r.json())


async def _advance_until(stack: Stack, tenant: Tenant, payment_id: str,
                         status: str) -> dict[str, Any]:  # fmt: skip
    """Let notifications land and the janitor (query, expiry) run, moving the clock on."""
    shifted = kit_clock.OffsetClock()
    previous = kit_clock.set_clock(shifted)
    try:
        for _ in range(10):
            await run_worker(stack)
            payment = await _get(stack, tenant, payment_id)
            if payment["status"] != "pending":
                assert payment["status"] == status, payment
                return payment
            shifted.advance(60)
        raise AssertionError(f"payment stayed pending, wanted {status}")
    finally:
        kit_clock.set_clock(previous)


async def _decline(stack: Stack, tenant: Tenant, channel: str) -> dict[str, Any]:
    """The customer declines on the sandbox's page (a card issuer declines for Stripe, whose
    page is the merchant's own)."""
    if channel == "stripe":
        return await _create(stack, tenant, channel,
                             customer={"payment_method": "pm_card_chargeDeclined"})  # fmt: skip
    if channel == "paypal":
        subject = f"declined-{uuid.uuid4().hex[:8]}"
        stack.sandboxes["paypal"].core.add_script(
            Script(outcome=Outcome.decline, notify=NotifyMode.none, subject=subject)
        )
        return await _create(stack, tenant, channel, subject=subject)
    payment = await _create(stack, tenant, channel)
    (attempt,) = await attempt_ids(stack, payment["id"])
    order = unionpay_protocol.order_id(attempt) if channel == "unionpay" else attempt
    r = await stack.client.post(f"/sandbox/{channel}/_sandbox/orders/{order}/pay",
                                json={"result": "decline"})  # fmt: skip
    assert r.status_code == 200, r.text
    return payment


@pytest.mark.parametrize("channel", list(CHANNELS))
async def test_a_decline_fails_with_its_category(stack: Stack, channel: str) -> None:
    tenant = await make_tenant(stack, channels=(channel,))
    payment = await _decline(stack, tenant, channel)
    done = await _advance_until(stack, tenant, payment["id"], "failed")
    category, channel_code = DECLINES[channel]
    assert done["failure"]["code"] == category
    assert done["attempts"][-1]["error_code"] == channel_code
    events = await events_of(stack, tenant)
    assert [e.type for e in events] == ["payment.failed"]
    assert events[0].data["failure"]["code"] == category


@pytest.mark.parametrize("channel", list(CHANNELS))
async def test_expiry_expires(stack: Stack, channel: str) -> None:
    tenant = await make_tenant(stack, channels=(channel,))
    payment = await _create(stack, tenant, channel, expires_in=60)
    done = await _advance_until(stack, tenant, payment["id"], "expired")
    assert done["failure"] is None
    assert [e.type for e in await events_of(stack, tenant)] == ["payment.expired"]


@pytest.mark.parametrize("channel", list(CHANNELS))
async def test_the_merchants_close_closes(stack: Stack, channel: str) -> None:
    tenant = await make_tenant(stack, channels=(channel,))
    payment = await _create(stack, tenant, channel)
    r = await stack.client.post(f"/v1/payments/{payment['id']}/close", headers=tenant.headers)
    assert r.status_code == 200 and r.json()["status"] == "closed", r.text
    await _advance_until(stack, tenant, payment["id"], "closed")
    assert [e.type for e in await events_of(stack, tenant)] == ["payment.closed"]


async def test_a_channel_close_racing_our_close_request_is_our_close(stack: Stack) -> None:
    """Alipay says TRADE_CLOSED whoever closed the trade: once we have asked to close, it is
    our close (``closed``), not the customer's decline — even if it lands before the close's
    own answer is recorded."""
    from paymux.payments.lifecycle import _mark_closing

    tenant = await make_tenant(stack, channels=("alipay",))
    payment = await _create(stack, tenant, "alipay")
    (attempt,) = await attempt_ids(stack, payment["id"])
    await _mark_closing(stack.runtime, [attempt])
    r = await stack.client.post(f"/sandbox/alipay/_sandbox/orders/{attempt}/pay",
                                json={"result": "decline"})  # fmt: skip
    assert r.status_code == 200
    done = await _advance_until(stack, tenant, payment["id"], "closed")
    assert done["failure"] is None
    assert [e.type for e in await events_of(stack, tenant)] == ["payment.closed"]


async def test_paypal_cancel_sends_nothing_and_the_payment_expires(stack: Stack) -> None:
    """PayPal tells nobody when the buyer presses Cancel (the buyer only lands back on the hosted
    page, which proves nothing): the order stays payable until the payment expires."""
    tenant = await make_tenant(stack, channels=("paypal",))
    payment = await _create(stack, tenant, "paypal", expires_in=120)
    parts = urlsplit(payment["next_action"]["url"])
    r = await stack.client.post(f"{parts.path}?{parts.query}", data={"result": "cancel"})
    assert r.status_code == 303
    back = str(r.headers["location"]).removeprefix("http://gateway.test")
    # Cancel lands on the hosted page (the other methods), never the success return URL.
    assert back.startswith(f"/pay/{payment['id']}?cancelled=1&token="), back
    await stack.client.get(back)
    assert (await _get(stack, tenant, payment["id"]))["status"] == "pending"
    await _advance_until(stack, tenant, payment["id"], "expired")
    assert [e.type for e in await events_of(stack, tenant)] == ["payment.expired"]

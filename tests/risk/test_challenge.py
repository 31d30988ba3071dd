"""Risk ``challenge`` on payments (issue 14 §5), on SQLite and PostgreSQL, through the gateway
and the sandboxes: a channel that can step up (Stripe) is asked for a 3-D Secure challenge,
even for a card that would pass without one; a channel that cannot (WeChat Pay) gets nothing
until the merchant verifies the customer (``POST /v1/payments/{id}/verify``), which then
routes the payment and answers its usual ``next_action``; the verify route's refusals; an
unverified payment expires; a challenged cashier offers only the methods that step up."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import stripe
from stripe._encode import _api_encode

from paymux.cashier import service as cashier
from paymux.channels import registry
from paymux.channels.base import ChannelPaymentStatus, NextActionType
from paymux.channels.sandbox_kit import SandboxOrder
from paymux.channels.stripe.adapter import StripeAdapter
from paymux.kit.errors import InvalidRequest
from tests.channels.test_stripe import open_env, request
from tests.channels.test_stripe_gateway import RETURN_URL, pass_3ds, stripe_js
from tests.conftest import Stack, Tenant, attempt_ids, make_tenant
from tests.payments.test_payments import _advance_until, create, pay, wait_for
from tests.risk.test_decisions import publish, rule

CHALLENGED = 4321
"""The amount the tenants' rule challenges."""
VISA = {"payment_method": "pm_card_visa"}
"""Server-side confirmation with a card Stripe lets through without 3-D Secure by itself."""


async def challenging(stack: Stack, channels: tuple[str, ...] = ("wechatpay",)) -> Tenant:
    """A tenant whose rules challenge every payment of :data:`CHALLENGED`."""
    shop = await make_tenant(stack, channels=channels)
    await publish(stack, shop.headers, [rule("step_up", f"amount == {CHALLENGED}", "challenge")])
    return shop


def orders_named(stack: Stack, channel: str, subject: str) -> list[SandboxOrder]:
    return [o for o in stack.sandboxes[channel].core.orders.values() if o.subject == subject]


async def verify(stack: Stack, tenant: Tenant, payment_id: str, **body: Any) -> Any:
    return await stack.client.post(f"/v1/payments/{payment_id}/verify", headers=tenant.headers,
                                   json=body or {"method": "sms"})  # fmt: skip


def test_only_stripe_steps_up() -> None:
    assert [c for c in registry.all_channels() if registry.can_step_up(c)] == ["stripe"]
    assert registry.step_up_channels("card") == ["stripe"]
    assert registry.step_up_channels("wechat_native") == []


STEP_UP = {"payment_method_options": {"card": {"request_three_d_secure": "challenge"}}}


async def test_the_adapter_asks_stripe_for_a_challenge_as_the_sdk_would() -> None:
    async with open_env() as env:
        sent: list[bytes] = []
        inner = httpx.ASGITransport(app=env.sandbox.app)

        async def record(req: httpx.Request) -> httpx.Response:
            sent.append(req.content)
            return await inner.handle_async_request(req)

        http = httpx.AsyncClient(transport=httpx.MockTransport(record), timeout=2.0)
        env.clients.append(http)
        adapter = StripeAdapter(env.creds, http)
        created = await adapter.create_payment(
            dataclasses.replace(request(payment_method="pm_card_visa"), step_up=True)
        )
        # What the official client sends for the same parameter, byte for byte.
        assert urlencode(list(_api_encode(STEP_UP))).encode() in sent[0]
        assert created.status is ChannelPaymentStatus.pending
        assert created.next_action is not None
        assert created.next_action.type is NextActionType.redirect
        # Without step_up the parameter is not sent and the card is frictionless.
        plain = await adapter.create_payment(request(payment_method="pm_card_visa"))
        assert b"request_three_d_secure" not in sent[1]
        assert plain.status is ChannelPaymentStatus.succeeded


async def test_the_sandbox_takes_request_three_d_secure_as_stripe_does() -> None:
    async with open_env() as env:
        sdk = env.sdk()
        base = {"amount": 1999, "currency": "usd", "payment_method_types": ["card"],
                "return_url": "http://merchant.test/return", "confirm": True}  # fmt: skip
        for value, status in (("automatic", "succeeded"), ("any", "requires_action"),
                              ("challenge", "requires_action")):  # fmt: skip
            options = {"card": {"request_three_d_secure": value}}
            intent = await sdk.v1.payment_intents.create_async(params={
                **base, "payment_method": "pm_card_visa", "payment_method_options": options})  # type: ignore[typeddict-item]  # fmt: skip
            assert intent.status == status, value
            assert intent.payment_method_options.card.request_three_d_secure == value
        # A declining card is authenticated first and declined after the challenge.
        declining = await sdk.v1.payment_intents.create_async(params={
            **base, "payment_method": "pm_card_chargeDeclined", **STEP_UP})  # type: ignore[typeddict-item]  # fmt: skip
        assert declining.status == "requires_action"
        page = declining.next_action.redirect_to_url.url.removeprefix("http://stripe.test")
        done = await env.client.post(page, data={"result": "complete"})
        assert "redirect_status=failed" in done.headers["location"]
        after = await sdk.v1.payment_intents.retrieve_async(declining.id)
        assert after.status == "requires_payment_method"
        assert after.last_payment_error is not None
        assert after.last_payment_error.decline_code == "generic_decline"
        with pytest.raises(stripe.InvalidRequestError) as bad:
            await sdk.v1.payment_intents.create_async(params={
                **base, "payment_method": "pm_card_visa",
                "payment_method_options": {"card": {"request_three_d_secure": "always"}}})  # type: ignore[typeddict-item]  # fmt: skip
        assert bad.value.param == "payment_method_options[card][request_three_d_secure]"


async def test_a_stripe_card_is_challenged_with_3ds_and_then_paid(stack: Stack) -> None:
    shop = await challenging(stack, ("stripe",))
    r = await create(stack, shop, method="card", amount=CHALLENGED, currency="USD",
                     return_url=RETURN_URL, customer=VISA)  # fmt: skip
    assert r.status_code == 201, r.text
    payment = r.json()
    # pm_card_visa is frictionless without the challenge; with it Stripe asks for 3-D Secure.
    assert (payment["status"], payment["risk"]["outcome"]) == ("pending", "challenge")
    assert payment["next_action"]["type"] == "redirect"
    assert "/_sandbox/3ds/pi_" in payment["next_action"]["url"]
    assert payment["verification"] is None
    intent_id = payment["next_action"]["url"].rsplit("/", 1)[1]
    assert stack.sandboxes["stripe"].intents[intent_id].request_three_d_secure == "challenge"
    done = await pass_3ds(stack, payment["next_action"]["url"])
    assert done.status_code == 303 and "redirect_status=succeeded" in done.headers["location"]
    await wait_for(stack, shop, payment["id"], "succeeded")
    # Not challenged: the same card goes through frictionless.
    plain = await create(stack, shop, method="card", amount=1999, currency="USD",
                         return_url=RETURN_URL, customer=VISA)  # fmt: skip
    assert plain.json()["status"] == "succeeded" and plain.json()["next_action"] is None


async def test_a_stripe_client_side_payment_is_challenged_when_confirmed(stack: Stack) -> None:
    shop = await challenging(stack, ("stripe",))
    r = await create(stack, shop, method="card", amount=CHALLENGED, currency="USD",
                     return_url=RETURN_URL)  # fmt: skip
    params = r.json()["next_action"]["params"]
    client, inner = stripe_js(stack, params["publishable_key"])
    try:  # the customer's browser confirms with a card that needs no 3-D Secure by itself
        intent = await client.v1.payment_intents.confirm_async(
            params["payment_intent"],
            params={"client_secret": params["client_secret"], "payment_method": "pm_card_visa",
                    "return_url": RETURN_URL},
        )  # fmt: skip
    finally:
        await inner.aclose()
    assert intent.status == "requires_action"
    assert intent.payment_method_options.card.request_three_d_secure == "challenge"
    await pass_3ds(stack, intent.next_action.redirect_to_url.url)
    await wait_for(stack, shop, r.json()["id"], "succeeded")


async def test_wechat_waits_for_the_merchants_verification(stack: Stack) -> None:
    shop = await challenging(stack)
    subject = f"challenged {uuid.uuid4().hex[:8]}"
    r = await create(stack, shop, amount=CHALLENGED, subject=subject)
    assert r.status_code == 201, r.text
    payment = r.json()
    assert (payment["status"], payment["channel"]) == ("pending", None)
    assert payment["risk"]["outcome"] == "challenge"
    assert payment["next_action"] == {
        "type": "verify", "verify_url": f"http://gateway.test/v1/payments/{payment['id']}/verify"
    }  # fmt: skip
    assert payment["verification"] == {"status": "required", "method": None, "reference": None,
                                       "verified_at": None}  # fmt: skip
    assert await attempt_ids(stack, payment["id"]) == []
    assert orders_named(stack, "wechatpay", subject) == []  # nothing at the channel

    r = await verify(stack, shop, payment["id"], method="id_document", reference="case-7")
    assert r.status_code == 200, r.text
    verified = r.json()
    assert verified["next_action"]["type"] == "qr_code"
    assert (verified["channel"], verified["status"]) == ("wechatpay", "pending")
    assert verified["verification"]["status"] == "verified"
    assert (verified["verification"]["method"], verified["verification"]["reference"]) == (
        "id_document", "case-7")  # fmt: skip
    (attempt,) = await attempt_ids(stack, payment["id"])
    assert [o.out_trade_no for o in orders_named(stack, "wechatpay", subject)] == [attempt]

    # Verifying again is the same answer, and opens nothing more.
    again = await verify(stack, shop, payment["id"], method="sms")
    assert again.status_code == 200 and again.json() == verified
    assert await attempt_ids(stack, payment["id"]) == [attempt]

    await pay(stack, "wechatpay", attempt)
    paid = await wait_for(stack, shop, payment["id"], "succeeded")
    assert paid["verification"]["status"] == "verified"


async def test_verify_refuses_what_does_not_wait_for_it(stack: Stack) -> None:
    shop = await challenging(stack)
    plain = (await create(stack, shop, amount=1999)).json()
    r = await verify(stack, shop, plain["id"])
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "payment_not_awaiting_verification"

    waiting = (await create(stack, shop, amount=CHALLENGED)).json()
    other = await make_tenant(stack, channels=("wechatpay",))
    r = await verify(stack, other, waiting["id"])
    assert r.status_code == 404, r.text
    r = await stack.client.post(f"/v1/payments/{waiting['id']}/verify", headers=shop.headers,
                                json={"method": "telepathy"})  # fmt: skip
    assert r.status_code == 400, r.text
    assert await attempt_ids(stack, waiting["id"]) == []

    # Closed before verification: closed here (no order anywhere), then nothing to verify.
    r = await stack.client.post(f"/v1/payments/{waiting['id']}/close", headers=shop.headers)
    assert r.status_code == 200 and r.json()["status"] == "closed", r.text
    r = await verify(stack, shop, waiting["id"])
    assert r.status_code == 409 and r.json()["error"]["code"] == "payment_not_awaiting_verification"


async def test_an_unverified_payment_expires(stack: Stack) -> None:
    shop = await challenging(stack)
    payment = (await create(stack, shop, amount=CHALLENGED, expires_in=60)).json()
    expired = await _advance_until(stack, shop, payment["id"], {"expired"})
    assert expired["closed_at"] and expired["verification"]["status"] == "required"
    r = await verify(stack, shop, payment["id"])
    assert r.status_code == 409, r.text
    assert await attempt_ids(stack, payment["id"]) == []


async def test_a_challenged_cashier_offers_only_methods_that_step_up(stack: Stack) -> None:
    shop = await challenging(stack, ("wechatpay", "stripe"))
    r = await create(stack, shop, method="cashier", amount=CHALLENGED,
                     allowed_methods=["wechat_native", "card"])  # fmt: skip
    assert r.status_code == 201, r.text
    payment = r.json()
    assert payment["next_action"]["type"] == "redirect"  # to the cashier, as always
    assert payment["verification"]["status"] == "required"

    async def offered() -> list[str]:
        r = await stack.client.get(f"/v1/payments/{payment['id']}?expand=cashier",
                                   headers=shop.headers)  # fmt: skip
        return [o["method"] for o in r.json()["cashier"]["options"]]

    assert await offered() == ["card"]
    with pytest.raises(InvalidRequest) as refused:
        await cashier.choose(stack.runtime, payment["id"], "wechat_native", user_agent="")
    assert refused.value.code == "method_unavailable"
    assert await attempt_ids(stack, payment["id"]) == []

    # Once the merchant verified the customer, every method is the customer's to choose.
    r = await verify(stack, shop, payment["id"])
    assert r.status_code == 200 and r.json()["next_action"]["type"] == "redirect", r.text
    assert sorted(await offered()) == ["card", "wechat_native"]


async def test_a_challenged_cashier_card_is_stepped_up(stack: Stack) -> None:
    shop = await challenging(stack, ("wechatpay", "stripe"))
    payment = (await create(stack, shop, method="cashier", amount=CHALLENGED,
                            customer={"payment_method": "pm_card_visa"},
                            return_url=RETURN_URL)).json()  # fmt: skip
    chosen = await cashier.choose(stack.runtime, payment["id"], "card", user_agent="")
    assert chosen.next_action is not None and chosen.next_action["type"] == "redirect"
    intent_id = chosen.next_action["url"].rsplit("/", 1)[1]
    assert stack.sandboxes["stripe"].intents[intent_id].request_three_d_secure == "challenge"
    await pass_3ds(stack, chosen.next_action["url"])
    await wait_for(stack, shop, payment["id"], "succeeded")


async def test_two_verifies_at_once_open_one_order(stack: Stack) -> None:
    shop = await challenging(stack)
    payment = (await create(stack, shop, amount=CHALLENGED, channel="wechatpay")).json()
    assert payment["next_action"]["type"] == "verify"  # pinned to a channel that cannot step up
    first, second = await asyncio.gather(verify(stack, shop, payment["id"]),
                                         verify(stack, shop, payment["id"]))  # fmt: skip
    assert {first.status_code, second.status_code} == {200}, (first.text, second.text)
    assert len(await attempt_ids(stack, payment["id"])) == 1
    final = (await stack.client.get(f"/v1/payments/{payment['id']}", headers=shop.headers)).json()
    assert final["next_action"]["type"] == "qr_code" and final["channel"] == "wechatpay"

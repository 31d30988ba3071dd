"""The Stripe sandbox's card form, as Stripe.js drives it: test card numbers become
PaymentMethods (``POST /v1/payment_methods`` with the publishable key, sent by the official
``stripe`` package here), the intent is confirmed with the client secret, a 3-D Secure card goes
``requires_action`` → ``redirect_to_url`` → the challenge page → ``succeeded`` or
``requires_payment_method`` with ``last_payment_error``, and webhooks follow. The adapter names
the script a page mounts the form with (``js_url``), which the sandbox serves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import stripe

from paymux.channels.base import ChannelPaymentStatus, InvalidCredentials, NextActionType
from paymux.channels.sandbox_kit import NotifyMode, Script
from paymux.channels.stripe import protocol as p
from paymux.channels.stripe.adapter import StripeAdapter
from tests.channels.test_stripe import RETURN_URL, Env, open_env, request, wait_for


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with open_env() as environment:
        yield environment


async def _mount(env: Env, method: str = "card") -> tuple[dict[str, Any], stripe.StripeClient]:
    created = await env.adapter.create_payment(request(method))
    assert created.next_action is not None
    assert created.next_action.type is NextActionType.sdk_params
    params = created.next_action.params or {}
    return params, env.sdk(params["publishable_key"])


def _card(number: str, **extra: str) -> dict[str, Any]:
    return {"type": "card", "card": {"number": number, "exp_month": "12", "exp_year": "34",
                                     "cvc": "123", **extra}}  # fmt: skip


async def test_the_page_gets_what_it_needs_and_the_sandbox_serves_its_js(env: Env) -> None:
    params, _ = await _mount(env)
    assert params["js_url"] == env.creds["gateway"] + p.SANDBOX_JS_PATH
    assert params["client_secret"].startswith(params["payment_intent"] + "_secret_")
    js = await env.client.get(p.SANDBOX_JS_PATH)
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "confirmCardPayment" in js.text and "/v1/payment_methods" in js.text
    # a live account loads Stripe.js itself
    live = StripeAdapter({**env.creds, "gateway": p.API_BASE,
                          "secret_key": "sk_live_" + "x" * 20,
                          "publishable_key": "pk_live_" + "x" * 20}, env.clients[-1])  # fmt: skip
    assert live.js_url == "https://js.stripe.com/v3"
    # Stripe.js calls the API from the merchant's page: CORS preflight is allowed
    pre = await env.client.options(
        "/v1/payment_methods",
        headers={"origin": "http://shop.test", "access-control-request-method": "POST",
                 "access-control-request-headers": "authorization,content-type"},
    )  # fmt: skip
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"]


async def test_the_step_names_its_api_and_a_wallet_gets_the_sheets_total(env: Env) -> None:
    """``api_base`` (where Stripe.js connects: a page's CSP allows it) for every account; a
    wallet's ``payment_request`` in Stripe units, as the intent charges."""
    card, _ = await _mount(env)
    assert card["api_base"] == env.creds["gateway"] and "payment_request" not in card
    created = await env.adapter.create_payment(request("apple_pay", currency="JPY", amount=500))
    params = (created.next_action.params or {}) if created.next_action else {}
    assert params["wallet"] == "apple_pay"
    assert params["payment_request"] == {"country": "US", "currency": "jpy",
                                         "total": {"label": "T-shirt", "amount": 500}}  # fmt: skip
    live = StripeAdapter({**env.creds, "gateway": p.API_BASE, "country": "SG",
                          "secret_key": "sk_live_" + "x" * 20,
                          "publishable_key": "pk_live_" + "x" * 20}, env.clients[-1])  # fmt: skip
    assert live.credentials.country == "SG"
    with pytest.raises(InvalidCredentials):
        StripeAdapter({**env.creds, "country": "sg"}, env.clients[-1])


async def test_4242_succeeds_with_one_webhook(env: Env) -> None:
    params, public = await _mount(env)
    pm = await public.v1.payment_methods.create_async(params=_card("4242 4242 4242 4242"))
    assert pm.id.startswith("pm_") and pm.card is not None and pm.card.last4 == "4242"
    assert pm.card.brand == "visa"
    paid = await public.v1.payment_intents.confirm_async(
        params["payment_intent"],
        params={"client_secret": params["client_secret"], "payment_method": pm.id},
    )
    assert paid.status == "succeeded"
    await wait_for(lambda: len(env.receiver.of_type("payment_intent.succeeded")) == 1)
    delivery = env.receiver.of_type("payment_intent.succeeded")[0]
    note = await env.adapter.parse_notification(delivery.headers, delivery.body)
    assert note.payment is not None and note.payment.status is ChannelPaymentStatus.succeeded
    assert note.payment.amount == 1999


async def test_0002_declines_and_the_intent_stays_payable(env: Env) -> None:
    params, public = await _mount(env)
    pm = await public.v1.payment_methods.create_async(params=_card("4000000000000002"))
    with pytest.raises(stripe.CardError) as declined:
        await public.v1.payment_intents.confirm_async(
            params["payment_intent"],
            params={"client_secret": params["client_secret"], "payment_method": pm.id},
        )
    error = declined.value.json_body["error"]
    assert error["code"] == "card_declined" and error["decline_code"] == "generic_decline"
    intent = error["payment_intent"]
    assert intent["status"] == "requires_payment_method"
    assert intent["last_payment_error"]["payment_method"]["id"] == pm.id
    await wait_for(lambda: len(env.receiver.of_type("payment_intent.payment_failed")) == 1)
    again = await public.v1.payment_methods.create_async(params=_card("4242424242424242"))
    paid = await public.v1.payment_intents.confirm_async(
        params["payment_intent"],
        params={"client_secret": params["client_secret"], "payment_method": again.id},
    )
    assert paid.status == "succeeded"


@pytest.mark.parametrize(("result", "status"), [("complete", "succeeded"),
                                                ("fail", "requires_payment_method")])  # fmt: skip
async def test_3184_challenge_passes_or_fails(env: Env, result: str, status: str) -> None:
    params, public = await _mount(env)
    pm = await public.v1.payment_methods.create_async(params=_card("4000002760003184"))
    pending = await public.v1.payment_intents.confirm_async(
        params["payment_intent"],
        params={"client_secret": params["client_secret"], "payment_method": pm.id,
                "return_url": RETURN_URL},
    )  # fmt: skip
    assert pending.status == "requires_action" and pending.next_action is not None
    assert pending.next_action.type == "redirect_to_url"
    url = pending.next_action.redirect_to_url.url  # type: ignore[union-attr]
    assert (await env.client.get(url)).status_code == 200
    done = await env.client.post(url, data={"result": result})
    back = urlsplit(done.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == RETURN_URL
    assert parse_qs(back.query)["redirect_status"] == [
        "succeeded" if result == "complete" else "failed"
    ]
    seen = await public.v1.payment_intents.retrieve_async(
        params["payment_intent"], params={"client_secret": params["client_secret"]}
    )
    assert seen.status == status
    kind = "payment_intent.succeeded" if result == "complete" else "payment_intent.payment_failed"
    await wait_for(lambda: len(env.receiver.of_type(kind)) >= 1)
    if result == "fail":
        assert seen.last_payment_error is not None
        assert seen.last_payment_error.code == "payment_intent_authentication_failure"


@pytest.mark.parametrize("notify", [NotifyMode.normal, NotifyMode.delayed])
async def test_3ds_sends_requires_action_once_then_succeeded_once(
    env: Env, notify: NotifyMode
) -> None:
    """Each event is the intent as it was when it changed, as at Stripe: one
    ``payment_intent.requires_action`` (status ``requires_action``) when the challenge is
    needed, one ``payment_intent.succeeded`` after it — also when the first delivery goes out
    only after the customer has finished the challenge (it used to be built late and went out
    as a second ``succeeded``)."""
    env.sandbox.core.add_script(Script(notify=notify, delay=50.0))  # 50 ms at this time scale
    params, public = await _mount(env)
    pm = await public.v1.payment_methods.create_async(params=_card("4000002760003184"))
    pending = await public.v1.payment_intents.confirm_async(
        params["payment_intent"],
        params={"client_secret": params["client_secret"], "payment_method": pm.id,
                "return_url": RETURN_URL},
    )  # fmt: skip
    url = pending.next_action.redirect_to_url.url  # type: ignore[union-attr]
    await env.client.post(url, data={"result": "complete"})
    await wait_for(lambda: len(env.receiver.got) >= 2)
    for _ in range(20):  # a duplicate would arrive within these rounds
        await asyncio.sleep(0.01)
    events = [stripe.Webhook.construct_event(d.body, d.headers["stripe-signature"],
                                             env.creds["webhook_secret"])
              for d in env.receiver.got]  # fmt: skip
    kinds = sorted(e.type for e in events)
    assert kinds == ["payment_intent.requires_action", "payment_intent.succeeded"]
    by_kind = {e.type: e for e in events}
    assert by_kind["payment_intent.requires_action"].data.object.status == "requires_action"
    assert by_kind["payment_intent.succeeded"].data.object.status == "succeeded"
    assert len({e.id for e in events}) == 2
    notes = [await env.adapter.parse_notification(d.headers, d.body) for d in env.receiver.got]
    statuses = {n.payment.status for n in notes if n.payment is not None}
    assert statuses == {ChannelPaymentStatus.pending, ChannelPaymentStatus.succeeded}


@pytest.mark.parametrize(
    ("card", "code"),
    [({"number": "4242424242424241"}, "incorrect_number"),
     ({"number": "4111111111111111"}, "card_declined"),  # a real-looking, non-test card
     ({"number": "4242424242424242", "exp_year": "19"}, "invalid_expiry_year"),
     ({"number": "4242424242424242", "exp_month": "13"}, "invalid_expiry_month"),
     ({"number": "4242424242424242", "cvc": "1x"}, "invalid_cvc")],
)  # fmt: skip
async def test_bad_cards_are_refused_with_stripes_codes(env: Env, card: dict[str, str],
                                                        code: str) -> None:  # fmt: skip
    params, public = await _mount(env)
    with pytest.raises(stripe.CardError) as refused:
        await public.v1.payment_methods.create_async(params=_card(**card))
    assert refused.value.code == code
    seen = await public.v1.payment_intents.retrieve_async(
        params["payment_intent"], params={"client_secret": params["client_secret"]}
    )
    assert seen.status == "requires_payment_method"


async def test_a_payment_method_needs_a_key(env: Env) -> None:
    response = await env.client.post("/v1/payment_methods", data={"type": "card"})
    assert response.status_code == 401

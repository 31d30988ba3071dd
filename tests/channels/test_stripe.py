"""Stripe channel: codec, adapter and sandbox, checked against each other and against the
official ``stripe`` package as an independent oracle (its ``StripeClient`` pointed at the
sandbox through ``base_addresses``; ``stripe.Webhook`` / ``WebhookSignature`` for signatures).

Everything is in-process: the adapter and the SDK reach the sandbox through
``httpx.ASGITransport`` at http://stripe.test, and the sandbox's webhooks reach a recording
receiver."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import stripe
from fastapi import FastAPI, Request, Response

from paymux.channels import base, registry
from paymux.channels.base import (
    BusinessError,
    ChannelPaymentStatus,
    ChannelRefundStatus,
    CreatePayment,
    CreateRefund,
    InvalidNotification,
    NextActionType,
    RetryableError,
    UnknownOutcome,
)
from paymux.channels.sandbox_kit import (
    NotifyMode,
    Outcome,
    RefundOutcome,
    RefundScript,
    Script,
)
from paymux.channels.stripe import protocol as p
from paymux.channels.stripe.adapter import (
    SEARCH_GRACE,
    StripeAdapter,
    StripeCredentials,
    attempt_created_at,
    classify,
)
from paymux.channels.stripe.sandbox import Sandbox
from paymux.kit import clock, ids

BASE = "http://stripe.test"
NOTIFY_URL = "http://merchant.test/notify"
RETURN_URL = "http://merchant.test/return"


# ---------------------------------------------------------------- fixtures
@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """Records webhooks; answers scripted statuses, then 200."""

    got: list[Delivery] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.app = FastAPI()

        @self.app.post("/notify")
        async def notify(request: Request) -> Response:
            self.got.append(Delivery(dict(request.headers), await request.body()))
            return Response(status_code=self.statuses.popleft() if self.statuses else 200)

    def of_type(self, kind: str) -> list[Delivery]:
        return [d for d in self.got if d.event["type"] == kind]


@dataclass
class Env:
    sandbox: Sandbox
    receiver: Receiver
    client: httpx.AsyncClient
    creds: dict[str, Any]
    adapter: StripeAdapter
    clients: list[httpx.AsyncClient]

    def sdk(self, key: str | None = None) -> stripe.StripeClient:
        """The official client, on the sandbox."""
        http = stripe.HTTPXClient()
        inner = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.sandbox.app))
        http._client_async = inner
        self.clients.append(inner)
        return stripe.StripeClient(
            key or self.creds["secret_key"], http_client=http,
            base_addresses={"api": BASE}, max_network_retries=0,
        )  # fmt: skip

    def adapter_with(self, timeout: float = 2.0, **overrides: Any) -> StripeAdapter:
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.sandbox.app), timeout=timeout
        )
        self.clients.append(http)
        return StripeAdapter({**self.creds, **overrides}, http)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with open_env() as environment:
        yield environment


@contextlib.asynccontextmanager
async def open_env() -> AsyncIterator[Env]:
    receiver = Receiver()
    notifier = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app), timeout=2.0)
    sandbox = Sandbox(http=notifier, time_scale=0.001, hold_timeout_seconds=1.0)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app), base_url=BASE)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app), timeout=2.0)
    creds = sandbox.provision(BASE)
    environment = Env(
        sandbox, receiver, client, creds, StripeAdapter(creds, http), [notifier, client, http]
    )
    try:
        yield environment
    finally:
        await sandbox.core.aclose()
        for c in environment.clients:
            await c.aclose()


def request(method: str = "card", *, no: str | None = None, amount: int = 1999,
            currency: str = "USD", subject: str = "T-shirt", payment_method: str | None = None,
            return_url: str | None = RETURN_URL) -> CreatePayment:  # fmt: skip
    customer = {"payment_method": payment_method} if payment_method else {}
    return CreatePayment(
        out_trade_no=no or ids.new_id("att"), method=method, amount=amount, currency=currency,
        subject=subject, notify_url=NOTIFY_URL,
        expires_at=clock.now() + dt.timedelta(minutes=15), return_url=return_url,
        customer=customer,
    )  # fmt: skip


def refund_request(req: CreatePayment, channel_trade_no: str | None, amount: int,
                   *, no: str | None = None) -> CreateRefund:  # fmt: skip
    return CreateRefund(
        out_refund_no=no or ids.new_id("re"), out_trade_no=req.out_trade_no,
        channel_trade_no=channel_trade_no, amount=amount, total_amount=req.amount,
        currency=req.currency, notify_url=NOTIFY_URL, reason="customer asked",
    )  # fmt: skip


async def wait_for(predicate: Callable[[], bool], rounds: int = 500) -> None:
    for _ in range(rounds):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


# ---------------------------------------------------------------- codec
def test_amounts_in_stripe_units() -> None:
    assert p.to_stripe_amount(1999, "USD") == 1999
    assert p.to_stripe_amount(500, "JPY") == 500  # zero-decimal: whole yen
    assert p.to_stripe_amount(500, "KRW") == 500
    assert p.to_stripe_amount(5, "ISK") == 500  # two-decimal at Stripe, whole krónur
    assert p.to_stripe_amount(5120, "KWD") == 5120  # thousandths, last digit 0
    with pytest.raises(ValueError):
        p.to_stripe_amount(5124, "KWD")
    with pytest.raises(ValueError):
        p.to_stripe_amount(100, "RUB")
    with pytest.raises(ValueError):
        p.to_stripe_amount(0, "USD")
    assert p.from_stripe_amount(500, "ISK") == 5
    with pytest.raises(ValueError):
        p.from_stripe_amount(510, "ISK")
    assert p.from_stripe_amount(500, "JPY") == 500
    assert p.check_charge(50, "USD") == 50
    with pytest.raises(ValueError):
        p.check_charge(49, "USD")  # below Stripe's minimum charge
    with pytest.raises(ValueError):
        p.check_charge(100_000_000, "USD")
    assert p.stripe_exponent("JPY") == 0 and p.stripe_exponent("BHD") == 3
    assert p.stripe_exponent("ISK") == 2


def test_form_encoding_round_trip() -> None:
    params = {"amount": 1999, "confirm": True, "payment_method_types": ["card"],
              "metadata": {"paymux_attempt": "att_1", "note": "a&b=c ü"},
              "expand": ["latest_charge"], "skip": None}  # fmt: skip
    text = p.encode_form(params)
    assert "metadata%5Bpaymux_attempt%5D=att_1" in text and "skip" not in text
    assert p.decode_form(text) == {
        "amount": "1999", "confirm": "true", "payment_method_types": ["card"],
        "metadata": {"paymux_attempt": "att_1", "note": "a&b=c ü"}, "expand": ["latest_charge"],
    }  # fmt: skip
    assert p.decode_form("expand[]=a&expand[]=b&created[gte]=5") == {
        "expand": ["a", "b"], "created": {"gte": "5"}
    }  # fmt: skip
    with pytest.raises(ValueError):
        p.decode_form("a]b=1")


def test_our_signature_is_what_the_sdk_verifies() -> None:
    body = b'{"id":"evt_1","object":"event"}'
    now = int(clock.now().timestamp())
    header = p.signature_header(body, ["whsec_secretA"], now)
    assert stripe.WebhookSignature.verify_header(body.decode(), header, "whsec_secretA", 300)
    # ... and what the SDK signs, we verify
    sdk_header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), "whsec_secretA", timestamp=now
    )
    assert sdk_header == header
    assert p.verify_signature(body, sdk_header, "whsec_secretA", now=clock.now()) == now


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda b, h, s, t: (b + b" ", h, s, t), "bad_signature"),
        (lambda b, h, s, t: (b, h, "whsec_other", t), "bad_signature"),
        (lambda b, h, s, t: (b, None, s, t), "unsigned"),
        (lambda b, h, s, t: (b, "v1=abc", s, t), "malformed_header"),
        (lambda b, h, s, t: (b, h.split(",")[0], s, t), "no_signature"),
        (lambda b, h, s, t: (b, h, s, t + dt.timedelta(seconds=301)), "stale"),
        (lambda b, h, s, t: (b, h, s, t - dt.timedelta(seconds=301)), "stale"),
        (lambda b, h, s, t: (b, h.replace("v1=", "v0="), s, t), "no_signature"),
    ],
)
def test_signature_refusals_agree_with_the_sdk(mutate: Any, code: str) -> None:
    body = b'{"id":"evt_1"}'
    now = clock.now()
    header = p.signature_header(body, ["whsec_secretA"], int(now.timestamp()))
    b, h, s, t = mutate(body, header, "whsec_secretA", now)
    with pytest.raises(p.SignatureError) as info:
        p.verify_signature(b, h, s, now=t)
    assert info.value.code == code
    if code != "stale":  # the SDK only judges age against its own wall clock
        with pytest.raises((stripe.SignatureVerificationError, ValueError)):
            stripe.WebhookSignature.verify_header(b.decode(), h, s, 300)


def test_rotation_signs_with_every_active_secret() -> None:
    body = b"{}"
    now = int(clock.now().timestamp())
    header = p.signature_header(body, ["whsec_new", "whsec_old"], now)
    assert header.count("v1=") == 2
    for secret in ("whsec_new", "whsec_old"):
        assert p.verify_signature(body, header, secret, now=clock.now()) == now
        assert stripe.WebhookSignature.verify_header(body.decode(), header, secret, 300)
    with pytest.raises(p.SignatureError):
        p.verify_signature(body, header, "whsec_third", now=clock.now())


def test_intent_and_refund_states() -> None:
    def intent(status: str, flow: str = "client", error: Any = None) -> dict[str, Any]:
        return {"status": status, "metadata": {"paymux_flow": flow}, "last_payment_error": error}

    assert p.map_intent_status(intent("succeeded")) is ChannelPaymentStatus.succeeded
    assert p.map_intent_status(intent("canceled")) is ChannelPaymentStatus.closed
    assert p.map_intent_status(intent("requires_action")) is ChannelPaymentStatus.pending
    assert p.map_intent_status(intent("processing")) is ChannelPaymentStatus.pending
    declined = {"code": "card_declined"}
    # client-side: the customer may try another card on the same intent
    assert p.map_intent_status(intent("requires_payment_method", "client", declined)) is (
        ChannelPaymentStatus.pending
    )
    assert p.map_intent_status(intent("requires_payment_method", "server", declined)) is (
        ChannelPaymentStatus.failed
    )
    assert p.map_intent_status(intent("requires_payment_method", "server")) is (
        ChannelPaymentStatus.pending
    )
    with pytest.raises(ValueError):
        p.map_intent_status(intent("bogus"))
    assert p.map_refund_status("succeeded") is ChannelRefundStatus.succeeded
    assert p.map_refund_status("requires_action") is ChannelRefundStatus.pending
    assert p.map_refund_status("canceled") is ChannelRefundStatus.failed
    assert p.idempotency_key("att_1") == "att_1"
    assert p.idempotency_key("re_1", "refund") == "re_1:refund"


def test_error_table() -> None:
    def err(status: int, type_: str, code: str = "", decline: str = "") -> p.StripeError:
        body = json.dumps({"error": {"type": type_, "code": code, "decline_code": decline}})
        return p.parse_error(status, body.encode())

    e = classify(err(402, "card_error", "card_declined", "insufficient_funds"))
    assert isinstance(e, BusinessError) and e.code == "insufficient_funds"
    e = classify(err(400, "invalid_request_error", "amount_too_small"))
    assert isinstance(e, BusinessError) and e.code == "amount_too_small"
    assert classify(err(400, "idempotency_error")).code == "idempotency_error"
    assert isinstance(classify(err(401, "invalid_request_error")), RetryableError)
    assert isinstance(classify(err(429, "invalid_request_error", "rate_limit")), RetryableError)
    assert isinstance(classify(err(409, "idempotency_error")), UnknownOutcome)
    assert isinstance(classify(err(500, "api_error")), UnknownOutcome)
    assert isinstance(classify(p.parse_error(502, b"<html>")), UnknownOutcome)


def test_attempt_age_is_read_from_the_id() -> None:
    made = ids.new_id("att")
    when = attempt_created_at(made)
    assert when is not None and abs((clock.now() - when).total_seconds()) < 5
    assert attempt_created_at("order-42") is None
    assert attempt_created_at("att_" + "!" * 26) is None


def test_credentials_and_factory_facts(env: Env) -> None:
    model = StripeCredentials.model_validate({**env.creds, "gateway": BASE + "/"})
    assert model.gateway == BASE and not model.livemode
    for bad in ({"secret_key": "pk_test_abcdefghij"}, {"publishable_key": "pk_live_abcdefghij"},
                {"webhook_secret": "secret"}, {"gateway": "ftp://x"},
                {"currencies": ["XXX"]}, {"extra": 1}):  # fmt: skip
        with pytest.raises(base.InvalidCredentials):
            StripeAdapter({**env.creds, **bad}, env.client)
    default = StripeCredentials.model_validate(
        {k: v for k, v in env.creds.items() if k != "gateway"}
    )
    assert default.gateway == "https://api.stripe.com"
    assert StripeAdapter.production_hosts == frozenset({"api.stripe.com"})
    assert StripeAdapter.methods == {"card", "apple_pay", "google_pay"}
    assert {"USD", "EUR", "JPY", "ISK", "KWD", "CNY"} <= StripeAdapter.currencies
    assert registry.get("stripe") is StripeAdapter


def test_ack(env: Env) -> None:
    assert env.adapter.ack(True).status_code == 200
    assert env.adapter.ack(False).status_code == 400


# ---------------------------------------------------------------- refused before any call
async def test_refused_before_any_call(env: Env) -> None:
    calls: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req)
        return httpx.Response(500)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        adapter = StripeAdapter({**env.creds, "currencies": ["USD", "EUR"]}, http)
        cases = [
            (request(currency="JPY", amount=500), "unsupported_currency"),
            (request(amount=49), "invalid_amount"),
            (request(method="wechat_native"), "unsupported_method"),
        ]
        full = StripeAdapter(env.creds, http)
        cases_full = [
            (request(currency="KWD", amount=5124), "invalid_amount"),
            (request(currency="RUB", amount=5000), "unsupported_currency"),
            (request(payment_method="4242424242424242"), "invalid_payment_method"),
            (request(payment_method="pm_card_visa", return_url=None), "return_url_required"),
        ]
        for which, reqs in ((adapter, cases), (full, cases_full)):
            for req, code in reqs:
                with pytest.raises(BusinessError) as info:
                    await which.create_payment(req)
                assert info.value.code == code, req
        raw = CreatePayment(**{**request().__dict__, "customer": {"number": "4242424242424242"}})
        with pytest.raises(BusinessError) as info:
            await full.create_payment(raw)
        assert info.value.code == "raw_card_data_refused"
    assert calls == []


@pytest.mark.parametrize(
    ("currency", "amount", "wire"),
    [("USD", 1999, 1999), ("JPY", 500, 500), ("ISK", 700, 70000), ("KWD", 5120, 5120),
     ("EUR", 50, 50), ("CNY", 400, 400)],
)  # fmt: skip
async def test_multi_currency_amounts_on_every_path(
    env: Env, currency: str, amount: int, wire: int
) -> None:
    req = request(currency=currency, amount=amount, payment_method="pm_card_visa")
    created = await env.adapter.create_payment(req)
    assert created.status is ChannelPaymentStatus.succeeded
    intent = env.sandbox.intents[created.channel_trade_no or ""]
    assert intent.order.amount == wire and intent.currency == currency.lower()
    state = await env.adapter.query_payment(req.out_trade_no)
    assert (state.amount, state.currency) == (amount, currency)
    await wait_for(lambda: len(env.receiver.got) == 1)
    note = await env.adapter.parse_notification(env.receiver.got[0].headers,
                                                env.receiver.got[0].body)  # fmt: skip
    assert note.payment is not None and note.payment.amount == amount
    refunded = await env.adapter.create_refund(
        refund_request(req, created.channel_trade_no, amount)
    )
    assert refunded.amount == amount and refunded.currency == currency
    lines = await env.adapter.balance_transactions(
        clock.now() - dt.timedelta(hours=1), clock.now() + dt.timedelta(hours=1)
    )
    assert sorted(line["amount"] for line in lines) == [-wire, wire]


# ---------------------------------------------------------------- transport
@pytest.mark.parametrize(
    ("failure", "kind", "code"),
    [
        (httpx.ConnectError("refused"), RetryableError, "connect_failed"),
        (httpx.ConnectTimeout("slow connect"), RetryableError, "connect_failed"),
        (httpx.ReadTimeout("slow answer"), UnknownOutcome, "timeout"),
        (httpx.RemoteProtocolError("cut"), UnknownOutcome, "transport_error"),
        (502, UnknownOutcome, "http_5xx"),
        ("{not json", UnknownOutcome, "unparseable_response"),
    ],
)
async def test_transport_failures(env: Env, failure: Any, kind: type, code: str) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if isinstance(failure, Exception):
            raise failure
        if isinstance(failure, int):
            return httpx.Response(failure, text="bad gateway")
        return httpx.Response(200, text=failure)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        adapter = StripeAdapter(env.creds, http)
        with pytest.raises(kind) as info:
            await adapter.create_payment(request())
        assert info.value.code == code
        with pytest.raises(kind):
            await adapter.query_payment("att_x", channel_trade_no="pi_x")


async def test_every_post_carries_keys_and_version(env: Env) -> None:
    seen: list[httpx.Request] = []
    inner = httpx.ASGITransport(app=env.sandbox.app)

    class Spy(httpx.AsyncBaseTransport):
        async def handle_async_request(self, req: httpx.Request) -> httpx.Response:
            seen.append(req)
            return await inner.handle_async_request(req)

    async with httpx.AsyncClient(transport=Spy()) as http:
        adapter = StripeAdapter(env.creds, http)
        req = request(payment_method="pm_card_visa")
        created = await adapter.create_payment(req)
        refund = refund_request(req, created.channel_trade_no, 500)
        await adapter.create_refund(refund)
        other = request()
        await adapter.create_payment(other)
        await adapter.close_payment(other.out_trade_no)
    posts = [r for r in seen if r.method == "POST"]
    assert [r.headers["idempotency-key"] for r in posts] == [
        req.out_trade_no, f"{refund.out_refund_no}:refund", other.out_trade_no,
        f"{other.out_trade_no}:cancel",
    ]  # fmt: skip
    assert all(r.headers["stripe-version"] == p.API_VERSION for r in seen)
    assert all(r.headers["authorization"] == f"Bearer {env.creds['secret_key']}" for r in seen)
    form = p.decode_form(posts[0].content.decode())
    assert form["metadata"]["paymux_attempt"] == req.out_trade_no
    assert form["confirm"] == "true" and form["payment_method"] == "pm_card_visa"


# ---------------------------------------------------------------- client-side confirmation
async def test_client_flow_with_the_sdk_as_stripe_js(env: Env) -> None:
    req = request("apple_pay")
    created = await env.adapter.create_payment(req)
    action = created.next_action
    assert action is not None and action.type is NextActionType.sdk_params
    params = action.params or {}
    assert params["publishable_key"] == env.creds["publishable_key"]
    assert params["payment_intent"] == created.channel_trade_no
    assert params["wallet"] == "apple_pay" and params["payment_method_types"] == ["card"]
    # What Stripe.js does with the publishable key: read the intent, then confirm it.
    public = env.sdk(params["publishable_key"])
    seen = await public.v1.payment_intents.retrieve_async(
        params["payment_intent"], params={"client_secret": params["client_secret"]}
    )
    assert seen.status == "requires_payment_method" and seen.amount == 1999
    with pytest.raises(stripe.CardError) as declined:
        await public.v1.payment_intents.confirm_async(
            params["payment_intent"],
            params={"client_secret": params["client_secret"],
                    "payment_method": "pm_card_chargeDeclined", "return_url": RETURN_URL},
        )  # fmt: skip
    assert declined.value.code == "card_declined"
    assert declined.value.json_body["error"]["decline_code"] == "generic_decline"
    # A client-side decline leaves the intent payable with another card.
    assert (await env.adapter.query_payment(req.out_trade_no)).status is (
        ChannelPaymentStatus.pending
    )
    paid = await public.v1.payment_intents.confirm_async(
        params["payment_intent"],
        params={"client_secret": params["client_secret"], "payment_method": "pm_card_visa"},
    )
    assert paid.status == "succeeded"
    await wait_for(lambda: len(env.receiver.of_type("payment_intent.succeeded")) == 1)
    failed = env.receiver.of_type("payment_intent.payment_failed")[0]
    note = await env.adapter.parse_notification(failed.headers, failed.body)
    assert note.payment is not None and note.payment.status is ChannelPaymentStatus.pending
    delivery = env.receiver.of_type("payment_intent.succeeded")[0]
    event = stripe.Webhook.construct_event(
        delivery.body, delivery.headers["stripe-signature"], env.creds["webhook_secret"]
    )
    assert event.type == "payment_intent.succeeded"
    note = await env.adapter.parse_notification(delivery.headers, delivery.body)
    assert note.event_key == event.id
    assert note.payment is not None and note.payment.status is ChannelPaymentStatus.succeeded
    assert note.payment.out_trade_no == req.out_trade_no and note.payment.paid_at is not None
    # a wrong client secret reads nothing
    with pytest.raises(stripe.InvalidRequestError):
        await public.v1.payment_intents.retrieve_async(
            params["payment_intent"], params={"client_secret": "pi_x_secret_y"}
        )
    # and a publishable key cannot create
    with pytest.raises(stripe.AuthenticationError):
        await public.v1.payment_intents.create_async(params={"amount": 100, "currency": "usd"})


# ---------------------------------------------------------------- server-side confirmation
async def test_server_flow_frictionless(env: Env) -> None:
    req = request("google_pay", payment_method="pm_card_mastercard")
    created = await env.adapter.create_payment(req)
    assert created.status is ChannelPaymentStatus.succeeded and created.next_action is None
    state = await env.adapter.query_payment(
        req.out_trade_no, channel_trade_no=created.channel_trade_no
    )
    assert state.status is ChannelPaymentStatus.succeeded and state.paid_at is not None


@pytest.mark.parametrize(("result", "status"), [("complete", "succeeded"), ("fail", "failed")])
async def test_server_flow_3ds_challenge(env: Env, result: str, status: str) -> None:
    req = request(payment_method="pm_card_authenticationRequired")
    created = await env.adapter.create_payment(req)
    assert created.status is ChannelPaymentStatus.pending
    assert created.next_action is not None and created.next_action.type is NextActionType.redirect
    url = created.next_action.url or ""
    page = await env.client.get(url)
    assert page.status_code == 200 and "3D Secure" in page.text
    done = await env.client.post(url, data={"result": result})
    assert done.status_code == 303
    back = urlsplit(done.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == RETURN_URL
    query = parse_qs(back.query)
    assert query["payment_intent"] == [created.channel_trade_no]
    assert query["redirect_status"] == [status]
    state = await env.adapter.query_payment(
        req.out_trade_no, channel_trade_no=created.channel_trade_no
    )
    assert state.status.value == status
    if status == "failed":
        assert state.channel_code == "payment_intent_authentication_failure"
        assert state.failure_code == "authentication_failed"
    kind = "payment_intent.succeeded" if status == "succeeded" else "payment_intent.payment_failed"
    await wait_for(lambda: len(env.receiver.of_type(kind)) == 1)
    delivery = env.receiver.of_type(kind)[0]
    note = await env.adapter.parse_notification(delivery.headers, delivery.body)
    assert note.payment is not None and note.payment.status.value == status
    # the challenge is over: completing it again changes nothing
    again = await env.client.post(url, data={"result": "complete"})
    assert parse_qs(urlsplit(again.headers["location"]).query)["redirect_status"] == [status]


@pytest.mark.parametrize(
    ("pm", "code", "category"),
    [("pm_card_chargeDeclined", "generic_decline", "card_declined"),
     ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds", "insufficient_funds"),
     ("pm_card_chargeDeclinedExpiredCard", "expired_card", "card_declined")],
)  # fmt: skip
async def test_server_flow_declines(env: Env, pm: str, code: str, category: str) -> None:
    req = request(payment_method=pm)
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_payment(req)
    assert (info.value.code, info.value.category) == (code, category)
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.status is ChannelPaymentStatus.failed and state.channel_code == code
    assert state.failure_code == category
    # the SDK sees the same 402 card_error
    with pytest.raises(stripe.CardError) as sdk_info:
        await env.sdk().v1.payment_intents.create_async(
            params={"amount": 1000, "currency": "usd", "payment_method": pm, "confirm": True,
                    "return_url": RETURN_URL, "payment_method_types": ["card"]}
        )  # fmt: skip
    assert sdk_info.value.json_body["error"]["decline_code"] == code


async def test_unknown_payment_method_is_refused(env: Env) -> None:
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_payment(request(payment_method="pm_nonexistent"))
    assert info.value.code == "resource_missing"


# ---------------------------------------------------------------- idempotency and lost answers
async def test_idempotency_replay_and_conflict(env: Env) -> None:
    req = request()
    first = await env.adapter.create_payment(req)
    again = await env.adapter.create_payment(req)
    assert again.channel_trade_no == first.channel_trade_no
    assert len(env.sandbox.intents) == 1
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_payment(request(no=req.out_trade_no, amount=2999))
    assert info.value.code == "idempotency_error"
    sdk = env.sdk()
    params: Any = {"amount": 1000, "currency": "usd", "payment_method_types": ["card"]}
    one = await sdk.v1.payment_intents.create_async(params, {"idempotency_key": "k-1"})
    two = await sdk.v1.payment_intents.create_async(params, {"idempotency_key": "k-1"})
    assert one.id == two.id
    assert two.last_response.headers["idempotent-replayed"] == "true"
    with pytest.raises(stripe.IdempotencyError):
        await sdk.v1.payment_intents.create_async(
            {**params, "amount": 1001}, {"idempotency_key": "k-1"}
        )
    # a validation failure is not saved: the key is still free
    with pytest.raises(stripe.InvalidRequestError):
        await sdk.v1.payment_intents.create_async(
            {**params, "amount": 1}, {"idempotency_key": "k-2"}
        )
    ok = await sdk.v1.payment_intents.create_async(params, {"idempotency_key": "k-2"})
    assert ok.status == "requires_payment_method"


async def test_lost_create_answer_is_found_by_search(env: Env) -> None:
    env.sandbox.core.add_script(Script(outcome=Outcome.create_timeout, subject="slow"))
    adapter = env.adapter_with(timeout=0.2)
    req = request(subject="slow")
    with pytest.raises(UnknownOutcome) as info:
        await adapter.create_payment(req)
    assert info.value.code == "timeout"
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.status is ChannelPaymentStatus.pending
    assert state.channel_trade_no in env.sandbox.intents
    found = await env.sdk().v1.payment_intents.search_async(
        {"query": f"metadata['paymux_attempt']:'{req.out_trade_no}'"}
    )
    assert [i.id for i in found.data] == [state.channel_trade_no]


async def test_create_error_is_unknown_then_not_found_after_the_grace(env: Env) -> None:
    env.sandbox.core.add_script(Script(outcome=Outcome.create_error, subject="boom"))
    req = request(subject="boom")
    with pytest.raises(UnknownOutcome) as info:
        await env.adapter.create_payment(req)
    assert info.value.code == "http_5xx"
    # Search is eventually consistent at Stripe: a young attempt's miss proves nothing.
    with pytest.raises(UnknownOutcome) as young:
        await env.adapter.query_payment(req.out_trade_no)
    assert young.value.code == "not_yet_searchable"
    # The saved 500 is what the same key answers (Stripe keeps 500s under the key).
    with pytest.raises(UnknownOutcome):
        await env.adapter.create_payment(req)
    shifted = clock.OffsetClock()
    previous = clock.set_clock(shifted)
    try:
        shifted.advance(SEARCH_GRACE.total_seconds() + 1)
        state = await env.adapter.query_payment(req.out_trade_no)
        assert state.status is ChannelPaymentStatus.not_found
        await env.adapter.close_payment(req.out_trade_no)  # nothing to close is closed
    finally:
        clock.set_clock(previous)


# ---------------------------------------------------------------- close
async def test_close(env: Env) -> None:
    req = request()
    created = await env.adapter.create_payment(req)
    await env.adapter.close_payment(req.out_trade_no, channel_trade_no=created.channel_trade_no)
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.status is ChannelPaymentStatus.closed and state.channel_code == "abandoned"
    assert state.failure_code == "customer_declined"
    await env.adapter.close_payment(req.out_trade_no)  # closing a closed intent is fine
    await wait_for(lambda: len(env.receiver.of_type("payment_intent.canceled")) == 1)
    delivery = env.receiver.of_type("payment_intent.canceled")[0]
    note = await env.adapter.parse_notification(delivery.headers, delivery.body)
    assert note.payment is not None and note.payment.status is ChannelPaymentStatus.closed
    paid = request(payment_method="pm_card_visa")
    made = await env.adapter.create_payment(paid)
    with pytest.raises(BusinessError) as info:
        await env.adapter.close_payment(paid.out_trade_no, channel_trade_no=made.channel_trade_no)
    assert info.value.code == "already_paid"


# ---------------------------------------------------------------- refunds
async def paid(env: Env, amount: int = 1999, subject: str = "T-shirt") -> tuple[CreatePayment, str]:
    req = request(amount=amount, subject=subject, payment_method="pm_card_visa")
    created = await env.adapter.create_payment(req)
    assert created.channel_trade_no is not None
    return req, created.channel_trade_no


async def test_refunds_partial_then_rest_then_too_much(env: Env) -> None:
    req, pi = await paid(env)
    first = await env.adapter.create_refund(refund_request(req, pi, 999))
    assert first.status is ChannelRefundStatus.succeeded and first.amount == 999
    assert first.channel_refund_no and first.channel_refund_no.startswith("re_")
    replay = await env.adapter.create_refund(refund_request(req, pi, 999, no=first.out_refund_no))
    assert replay.channel_refund_no == first.channel_refund_no  # same key, same refund
    rest = await env.adapter.create_refund(refund_request(req, pi, 1000))
    assert rest.status is ChannelRefundStatus.succeeded
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_refund(refund_request(req, pi, 1))
    assert info.value.code == "refund_exceeds_payment"
    queried = await env.adapter.query_refund(first.out_refund_no, req.out_trade_no)
    assert queried.channel_refund_no == first.channel_refund_no
    assert queried.status is ChannelRefundStatus.succeeded
    await wait_for(lambda: len(env.receiver.of_type("refund.created")) == 2)
    delivery = env.receiver.of_type("refund.created")[0]
    note = await env.adapter.parse_notification(delivery.headers, delivery.body)
    assert note.refund is not None and note.refund.status is ChannelRefundStatus.succeeded
    assert note.reference == req.out_trade_no
    # the SDK reads the same refunds
    listed = await env.sdk().v1.refunds.list_async({"payment_intent": pi})
    assert {r.id for r in listed.data} == {first.channel_refund_no, rest.channel_refund_no}


@pytest.mark.parametrize(("outcome", "final", "event"), [
    (RefundOutcome.delayed, ChannelRefundStatus.succeeded, "refund.updated"),
    (RefundOutcome.fail, ChannelRefundStatus.failed, "refund.failed"),
])  # fmt: skip
async def test_slow_refunds(env: Env, outcome: RefundOutcome, final: ChannelRefundStatus,
                            event: str) -> None:  # fmt: skip
    env.sandbox.core.add_refund_script(RefundScript(outcome=outcome, delay=1.0))
    req, pi = await paid(env)
    state = await env.adapter.create_refund(refund_request(req, pi, 500))
    assert state.status is ChannelRefundStatus.pending
    await wait_for(lambda: len(env.receiver.of_type(event)) == 1)
    delivery = env.receiver.of_type(event)[0]
    note = await env.adapter.parse_notification(delivery.headers, delivery.body)
    assert note.refund is not None and note.refund.status is final
    queried = await env.adapter.query_refund(
        state.out_refund_no, req.out_trade_no, channel_refund_no=state.channel_refund_no
    )
    assert queried.status is final


async def test_refunds_refused_and_lost(env: Env) -> None:
    req, pi = await paid(env, subject="refunds")
    env.sandbox.core.add_refund_script(RefundScript(outcome=RefundOutcome.refuse))
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_refund(refund_request(req, pi, 100))
    assert info.value.code == "insufficient_balance"
    env.sandbox.core.add_refund_script(RefundScript(outcome=RefundOutcome.create_timeout))
    slow = refund_request(req, pi, 100)
    with pytest.raises(UnknownOutcome):
        await env.adapter_with(timeout=0.2).create_refund(slow)
    found = await env.adapter.query_refund(slow.out_refund_no, req.out_trade_no)
    assert found.status is ChannelRefundStatus.succeeded and found.amount == 100
    env.sandbox.core.add_refund_script(RefundScript(outcome=RefundOutcome.create_error))
    lost = refund_request(req, pi, 100)
    with pytest.raises(UnknownOutcome):
        await env.adapter.create_refund(lost)
    missing = await env.adapter.query_refund(lost.out_refund_no, req.out_trade_no)
    assert missing.status is ChannelRefundStatus.not_found
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_refund(refund_request(req, pi, 0))
    assert info.value.code == "invalid_amount"
    unpaid = request()
    made = await env.adapter.create_payment(unpaid)
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_refund(refund_request(unpaid, made.channel_trade_no, 100))
    assert info.value.code == "order_not_paid"


# ---------------------------------------------------------------- notifications
async def test_forged_stale_foreign_and_replayed_notifications(env: Env) -> None:
    req = request(payment_method="pm_card_visa")
    await env.adapter.create_payment(req)
    await wait_for(lambda: len(env.receiver.got) == 1)
    good = env.receiver.got[0]
    secret = env.creds["webhook_secret"]
    now = int(clock.now().timestamp())

    async def refused(body: bytes, header: str | None, code: str, at: int | None = None) -> None:
        headers = {"content-type": "application/json"}
        if header is not None:
            headers["stripe-signature"] = header
        shifted = clock.OffsetClock()
        previous = clock.set_clock(shifted)
        try:
            if at is not None:
                shifted.advance(at)
            with pytest.raises(InvalidNotification) as info:
                await env.adapter.parse_notification(headers, body)
        finally:
            clock.set_clock(previous)
        assert info.value.code == code

    forged = good.body.replace(b'"succeeded"', b'"canceled"')
    await refused(forged, good.headers["stripe-signature"], "bad_signature")
    await refused(good.body, p.signature_header(good.body, ["whsec_forged1"], now),
                  "bad_signature")  # fmt: skip
    await refused(good.body, None, "unsigned")
    # replayed after the tolerance: refused by us and by the SDK
    await refused(good.body, good.headers["stripe-signature"], "stale", at=301)
    old = p.signature_header(good.body, [secret], now - 400)
    await refused(good.body, old, "stale")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(good.body, old, secret)
    event = good.event
    for change, code in (({"livemode": True}, "wrong_mode"),
                         ({"type": "charge.succeeded"}, "unhandled_event"),
                         ({"object": "list"}, "malformed")):  # fmt: skip
        body = json.dumps({**event, **change}).encode()
        await refused(body, p.signature_header(body, [secret], now), code)
    foreign = {**event, "data": {"object": {**event["data"]["object"], "metadata": {}}}}
    body = json.dumps(foreign).encode()
    await refused(body, p.signature_header(body, [secret], now), "foreign_object")
    # a replay within the tolerance verifies (same event id: the inbox makes it a no-op)
    again = await env.adapter.parse_notification(good.headers, good.body)
    assert again.event_key == event["id"]


async def test_duplicate_delayed_and_retried_deliveries(env: Env) -> None:
    env.sandbox.core.add_script(Script(notify=NotifyMode.duplicate, subject="dup"))
    req = request(subject="dup", payment_method="pm_card_visa")
    await env.adapter.create_payment(req)
    await wait_for(lambda: len(env.receiver.got) == 2)
    keys = {(await env.adapter.parse_notification(d.headers, d.body)).event_key
            for d in env.receiver.got}  # fmt: skip
    assert len(keys) == 1
    env.receiver.got.clear()
    env.receiver.statuses.extend([500, 503])  # refused twice, then acknowledged
    env.sandbox.core.add_script(Script(notify=NotifyMode.delayed, delay=5, subject="late"))
    late = request(subject="late", payment_method="pm_card_visa")
    await env.adapter.create_payment(late)
    await wait_for(lambda: len(env.receiver.got) == 3)
    for delivery in env.receiver.got:  # each retry is signed afresh, all verify
        note = await env.adapter.parse_notification(delivery.headers, delivery.body)
        assert note.payment is not None and note.payment.out_trade_no == late.out_trade_no
    env.sandbox.core.add_script(Script(notify=NotifyMode.none, subject="quiet"))
    quiet = request(subject="quiet", payment_method="pm_card_visa")
    before = len(env.receiver.got)
    await env.adapter.create_payment(quiet)
    await asyncio.sleep(0.05)
    assert len(env.receiver.got) == before
    assert (await env.adapter.query_payment(quiet.out_trade_no)).status is (
        ChannelPaymentStatus.succeeded
    )


async def test_secret_rotation(env: Env) -> None:
    new = env.sandbox.roll_webhook_secret(env.creds["secret_key"])
    req = request(payment_method="pm_card_visa")
    await env.adapter.create_payment(req)
    await wait_for(lambda: len(env.receiver.got) == 1)
    delivery = env.receiver.got[0]
    assert delivery.headers["stripe-signature"].count("v1=") == 2
    for secret in (env.creds["webhook_secret"], new):
        adapter = env.adapter_with(webhook_secret=secret)
        assert (await adapter.parse_notification(delivery.headers, delivery.body)).payment
        stripe.Webhook.construct_event(delivery.body, delivery.headers["stripe-signature"], secret)


# ---------------------------------------------------------------- statement
async def test_balance_transactions_are_the_days_statement(env: Env) -> None:
    shifted = clock.OffsetClock()
    previous = clock.set_clock(shifted)
    try:
        shifted.advance(-86400)
        await paid(env, amount=5000)  # yesterday's
        shifted.advance(86400)
        req, pi = await paid(env, amount=10000)
        await env.adapter.create_refund(refund_request(req, pi, 2500))
        start = clock.now() - dt.timedelta(hours=1)
        end = clock.now() + dt.timedelta(hours=1)
        lines = await env.adapter.balance_transactions(start, end)
    finally:
        clock.set_clock(previous)
    by_type = {line["type"]: line for line in lines}
    assert set(by_type) == {"charge", "refund"} and len(lines) == 2
    charge = by_type["charge"]
    assert charge["amount"] == 10000 and charge["fee"] == 10000 * 290 // 10000 + 30
    assert charge["net"] == charge["amount"] - charge["fee"]
    assert charge["source"] == env.sandbox.intents[pi].charge["id"]  # type: ignore[index]
    assert by_type["refund"]["amount"] == -2500 and by_type["refund"]["fee"] == 0
    # the SDK pages the same statement
    sdk_page = await env.sdk().v1.balance_transactions.list_async(
        {"created": {"gte": int(start.timestamp()), "lt": int(end.timestamp())}, "limit": 1}
    )
    assert sdk_page.has_more and sdk_page.data[0].id == lines[0]["id"]
    second = await env.sdk().v1.balance_transactions.list_async(
        {
            "created": {"gte": int(start.timestamp()), "lt": int(end.timestamp())},
            "starting_after": sdk_page.data[0].id,
        }  # fmt: skip
    )
    assert [t.id for t in second.data] == [lines[1]["id"]]


async def test_statement_is_the_utc_days_balance_normalised(env: Env) -> None:
    """``statement(day)``: charges are payments with Stripe's fee, refunds negative, each with
    our attempt/refund ids (sources expanded with their PaymentIntent)."""
    req, pi = await paid(env, amount=10000)
    refund = refund_request(req, pi, 2500)
    await env.adapter.create_refund(refund)
    day = clock.now().astimezone(dt.UTC).date()
    with pytest.raises(RetryableError, match="statement_not_ready"):  # the day is not over
        await env.adapter.statement(day)
    shifted = clock.OffsetClock()
    previous = clock.set_clock(shifted)
    shifted.advance(86_400)
    try:
        lines = [x for x in await env.adapter.statement(day) if x.channel_trade_no == pi]
    finally:
        clock.set_clock(previous)
    got = sorted((x.kind, x.reference, x.out_trade_no, x.amount, x.fee, x.currency)
                 for x in lines)  # fmt: skip
    assert got == sorted([
        (base.StatementLineKind.payment, req.out_trade_no, req.out_trade_no, 10000,
         10000 * 290 // 10000 + 30, "USD"),
        (base.StatementLineKind.refund, refund.out_refund_no, req.out_trade_no, -2500, 0, "USD"),
    ])  # fmt: skip
    assert await env.adapter.statement(day - dt.timedelta(days=2)) == []

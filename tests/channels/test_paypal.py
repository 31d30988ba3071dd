"""PayPal Orders v2: codec, adapter ↔ sandbox for every outcome, and webhooks.

Independent checks: the webhook signature is verified in the test with ``cryptography`` and
``zlib.crc32`` following PayPal's published algorithm (developer.paypal.com, "Webhooks →
verify signature": ``transmission_id|transmission_time|webhook_id|crc32(body)``, SHA256withRSA,
certificate at PAYPAL-CERT-URL); amounts follow PayPal's currency-code reference ("HUF, JPY,
TWD: this currency does not support decimals"); the official SDK ``paypal-server-sdk`` talks
to the sandbox in ``test_paypal_oracle.py``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import io
import json
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi import FastAPI, Request, Response

from paymux.channels import base, registry
from paymux.channels.base import (
    BusinessError,
    ChannelPaymentStatus,
    ChannelRefundStatus,
    CreatePayment,
    CreateRefund,
    InvalidCredentials,
    InvalidNotification,
    NextActionType,
    RetryableError,
    UnknownOutcome,
)
from paymux.channels.paypal import adapter as paypal_adapter
from paymux.channels.paypal import protocol
from paymux.channels.paypal.adapter import PayPalAdapter, classify_answer
from paymux.channels.paypal.sandbox import Sandbox
from paymux.channels.sandbox_kit import NotifyMode, Outcome, RefundOutcome, RefundScript, Script
from paymux.kit import clock

BASE = "http://paypal.test"
NOTIFY_URL = "http://merchant.test/notify/paypal/chn_1"
RETURN_URL = "https://shop.example/return"


# ------------------------------------------------------------------ harness
@dataclass
class Receiver:
    """The gateway's notify endpoint: records deliveries, answers scripted statuses."""

    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app = FastAPI()

        @self.app.post("/{path:path}")
        async def receive(request: Request) -> Response:
            self.received.append((dict(request.headers), await request.body()))
            return Response(status_code=self.statuses.pop(0) if self.statuses else 200)

    def events(self) -> list[str]:
        return [json.loads(body)["event_type"] for _, body in self.received]


class TimeoutASGITransport(httpx.AsyncBaseTransport):
    """ASGITransport honouring the client's read timeout."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        read = request.extensions.get("timeout", {}).get("read")
        try:
            return await asyncio.wait_for(self.inner.handle_async_request(request), read)
        except TimeoutError:
            raise httpx.ReadTimeout("read timed out", request=request) from None


class RefusingTransport(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)


@dataclass
class Env:
    sandbox: Sandbox
    receiver: Receiver
    creds: dict[str, Any]
    http: httpx.AsyncClient
    adapter: PayPalAdapter
    sent: list[httpx.Request]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    paypal_adapter.clear_caches()
    receiver = Receiver()
    notifier = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app))
    sandbox = Sandbox(http=notifier, time_scale=0.00001, hold_timeout_seconds=1.0)
    creds = sandbox.provision(BASE)
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    http = httpx.AsyncClient(
        transport=TimeoutASGITransport(sandbox.app), timeout=0.5,
        event_hooks={"request": [record]},
    )  # fmt: skip
    yield Env(sandbox, receiver, creds, http, PayPalAdapter(creds, http), sent)
    await sandbox.core.aclose()
    await http.aclose()
    await notifier.aclose()


def order_no() -> str:
    return "att_" + uuid.uuid4().hex[:20]


def payment(**extra: Any) -> CreatePayment:
    values: dict[str, Any] = {
        "out_trade_no": order_no(), "method": "paypal", "amount": 1999, "currency": "USD",
        "subject": "T-shirt", "notify_url": NOTIFY_URL,
        "expires_at": clock.now() + dt.timedelta(minutes=15), "return_url": RETURN_URL,
        **extra,
    }  # fmt: skip
    return CreatePayment(**values)


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


async def approve(env: Env, order_id: str, result: str = "approve") -> httpx.Response:
    """The buyer on PayPal's approval page (the redirect's target)."""
    r = await env.http.post(f"{BASE}/checkoutnow?token={order_id}", data={"result": result})
    assert r.status_code == 303, r.text
    return r


async def paid(env: Env, **extra: Any) -> tuple[CreatePayment, str]:
    """A created, approved and captured order: (request, order id)."""
    request = payment(**extra)
    created = await env.adapter.create_payment(request)
    assert created.channel_trade_no is not None
    await approve(env, created.channel_trade_no)
    state = await env.adapter.query_payment(
        request.out_trade_no, channel_trade_no=created.channel_trade_no
    )
    assert state.status is ChannelPaymentStatus.succeeded
    return request, created.channel_trade_no


def refund_request(request: CreatePayment, order_id: str | None, amount: int = 500,
                   **extra: Any) -> CreateRefund:  # fmt: skip
    return CreateRefund(
        out_refund_no="re_" + uuid.uuid4().hex[:16], out_trade_no=request.out_trade_no,
        channel_trade_no=order_id, amount=amount, total_amount=request.amount,
        currency=request.currency, notify_url=NOTIFY_URL, **extra,
    )  # fmt: skip


def independent_verify(headers: dict[str, str], body: bytes, webhook_id: str,
                       cert_pem: bytes) -> None:  # fmt: skip
    """PayPal's published algorithm, written out here without our codec."""
    h = {k.lower(): v for k, v in headers.items()}
    message = "|".join([
        h["paypal-transmission-id"], h["paypal-transmission-time"], webhook_id,
        str(zlib.crc32(body)),
    ]).encode()  # fmt: skip
    key = x509.load_pem_x509_certificate(cert_pem).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(base64.b64decode(h["paypal-transmission-sig"]), message, padding.PKCS1v15(),
               hashes.SHA256())  # fmt: skip


# ------------------------------------------------------------------ codec
def test_amounts_are_decimal_strings_per_currency() -> None:
    assert protocol.to_value(1999, "USD") == "19.99"
    assert protocol.to_value(5, "EUR") == "0.05"
    assert protocol.to_value(1000, "JPY") == "1000"  # ISO exponent 0
    assert protocol.to_value(150000, "HUF") == "1500"  # ISO 2, PayPal: no decimals
    assert protocol.to_value(30000, "TWD") == "300"
    for bad, currency in ((150050, "HUF"), (30001, "TWD")):
        with pytest.raises(protocol.ProtocolError) as exc:
            protocol.to_value(bad, currency)
        assert exc.value.code == "invalid_amount"
    with pytest.raises(protocol.ProtocolError) as exc:
        protocol.to_value(100, "KRW")
    assert exc.value.code == "unsupported_currency"
    for bad_amount in (0, -1, True):
        with pytest.raises(protocol.ProtocolError):
            protocol.to_value(bad_amount, "USD")
    assert protocol.from_value("19.99", "USD") == 1999
    assert protocol.from_value("1500", "HUF") == 150000
    assert protocol.from_value("1000", "JPY") == 1000
    for bad_value in ("19.999", "1e3", " 1.00", "", 19.99, "-1.00", "NaN"):
        with pytest.raises(protocol.ProtocolError):
            protocol.from_value(bad_value, "USD")
    with pytest.raises(protocol.ProtocolError):
        protocol.from_value("1.5", "JPY")


def test_signed_message_and_signature_follow_paypals_algorithm() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = b'{"id":"WH-1","event_type":"PAYMENT.CAPTURE.COMPLETED"}'
    crc = zlib.crc32(body)
    assert protocol.signed_message("tid", "2024-01-02T03:04:05Z", "WHID", body) == (
        f"tid|2024-01-02T03:04:05Z|WHID|{crc}".encode()
    )
    signature = protocol.sign_webhook(key, "tid", "2024-01-02T03:04:05Z", "WHID", body)
    message = f"tid|2024-01-02T03:04:05Z|WHID|{crc}".encode()
    key.public_key().verify(base64.b64decode(signature), message, padding.PKCS1v15(),
                            hashes.SHA256())  # fmt: skip
    with pytest.raises(InvalidSignature):
        key.public_key().verify(base64.b64decode(signature), message + b"x",
                                padding.PKCS1v15(), hashes.SHA256())  # fmt: skip


def test_error_bodies_are_classified() -> None:
    def body(name: str, issue: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"name": name, "message": "m", "debug_id": "abc123"}
        if issue:
            data["details"] = [{"issue": issue, "description": "d"}]
        return data

    cases = [
        (500, body("INTERNAL_SERVER_ERROR"), UnknownOutcome, "internal_server_error"),
        (503, body("SERVICE_UNAVAILABLE"), UnknownOutcome, "service_unavailable"),
        (429, body("RATE_LIMIT_REACHED"), RetryableError, "rate_limited"),
        (422, body("UNPROCESSABLE_ENTITY", "ORDER_ALREADY_CAPTURED"), BusinessError,
         "already_captured"),
        (422, body("UNPROCESSABLE_ENTITY", "INSTRUMENT_DECLINED"), BusinessError,
         "instrument_declined"),
        (422, body("UNPROCESSABLE_ENTITY", "REFUND_AMOUNT_EXCEEDED"), BusinessError,
         "refund_exceeds_payment"),
        (422, body("UNPROCESSABLE_ENTITY", "REFUND_FAILED_INSUFFICIENT_FUNDS"), BusinessError,
         "insufficient_balance"),
        (404, body("RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID"), BusinessError, "not_found"),
        (400, body("INVALID_REQUEST", "SOMETHING_NEW"), BusinessError, "something_new"),
        (401, body("AUTHENTICATION_FAILURE"), BusinessError, "invalid_credentials"),
        (502, None, UnknownOutcome, "http_502"),
    ]  # fmt: skip
    for status, payload, kind, code in cases:
        error = classify_answer(status, payload)
        assert type(error) is kind and error.code == code, (status, payload, error)
    assert "abc123" in classify_answer(500, body("INTERNAL_SERVER_ERROR")).message


def test_credentials_and_factory() -> None:
    factory = registry.get("paypal")
    assert factory is PayPalAdapter and factory.methods == {"paypal"}
    assert {"USD", "EUR", "JPY", "TWD"} <= factory.currencies and "KRW" not in factory.currencies
    assert "api-m.paypal.com" in factory.production_hosts
    assert "api-m.sandbox.paypal.com" not in factory.production_hosts
    good = {"client_id": "A", "client_secret": "E", "webhook_id": "8PT597110X687430LKGECATA"}
    PayPalAdapter(good, httpx.AsyncClient())
    for bad in ({**good, "webhook_id": "has space"}, {**good, "gateway": "ftp://x"},
                {**good, "gateway": "http://api-m.paypal.com"}, {**good, "extra": 1},
                {k: v for k, v in good.items() if k != "client_secret"}):  # fmt: skip
        with pytest.raises(InvalidCredentials):
            PayPalAdapter(bad, httpx.AsyncClient())


# ------------------------------------------------------------------ create, approve, capture
async def test_create_redirects_to_approval_and_capture_on_query(env: Env) -> None:
    request = payment(amount=2500, currency="EUR", subject="Mug")
    created = await env.adapter.create_payment(request)
    assert created.next_action is not None
    assert created.next_action.type is NextActionType.redirect
    assert created.next_action.url == f"{BASE}/checkoutnow?token={created.channel_trade_no}"
    create_call = next(r for r in env.sent if r.url.path == "/v2/checkout/orders")
    assert create_call.headers["PayPal-Request-Id"] == f"paymux-order-{request.out_trade_no}"
    assert create_call.headers["Authorization"].startswith("Bearer ")
    body = json.loads(create_call.content)
    unit = body["purchase_units"][0]
    assert body["intent"] == "CAPTURE"
    assert unit["custom_id"] == unit["invoice_id"] == request.out_trade_no
    assert unit["amount"] == {"currency_code": "EUR", "value": "25.00"}
    context = body["payment_source"]["paypal"]["experience_context"]
    assert context["return_url"] == RETURN_URL and context["cancel_url"] == RETURN_URL
    order_id = created.channel_trade_no
    assert order_id is not None

    state = await env.adapter.query_payment(request.out_trade_no, channel_trade_no=order_id)
    assert state.status is ChannelPaymentStatus.pending
    redirect = await approve(env, order_id)
    assert redirect.headers["location"].startswith(f"{RETURN_URL}?token={order_id}&PayerID=")
    state = await env.adapter.query_payment(request.out_trade_no, channel_trade_no=order_id)
    assert state.status is ChannelPaymentStatus.succeeded
    assert (state.amount, state.currency, state.channel_trade_no) == (2500, "EUR", order_id)
    assert state.paid_at is not None
    captures = [r for r in env.sent if r.url.path.endswith("/capture")]
    assert [r.headers["PayPal-Request-Id"] for r in captures] == [f"paymux-capture-{order_id}"]
    # Reading again does not capture again.
    again = await env.adapter.query_payment(request.out_trade_no, channel_trade_no=order_id)
    assert again.status is ChannelPaymentStatus.succeeded
    assert len([r for r in env.sent if r.url.path.endswith("/capture")]) == 1


async def test_token_is_cached_and_renewed_after_expiry(env: Env) -> None:
    await env.adapter.create_payment(payment())
    await env.adapter.create_payment(payment())
    tokens = [r for r in env.sent if r.url.path == "/v1/oauth2/token"]
    assert len(tokens) == 1
    assert tokens[0].headers["Authorization"] == protocol.basic_auth(
        env.creds["client_id"], env.creds["client_secret"]
    )
    env.sandbox.expire_tokens()  # PayPal answers 401: fetch a new token, send once more
    await env.adapter.create_payment(payment())
    assert len([r for r in env.sent if r.url.path == "/v1/oauth2/token"]) == 2
    bad = PayPalAdapter({**env.creds, "client_secret": "wrong"}, env.http)
    paypal_adapter.clear_caches()
    with pytest.raises(BusinessError) as exc:
        await bad.create_payment(payment())
    assert exc.value.code == "invalid_credentials"


async def test_zero_decimal_currencies_and_refusals_before_any_call(env: Env) -> None:
    created = await env.adapter.create_payment(payment(amount=150000, currency="HUF"))
    body = json.loads(next(r for r in env.sent if r.url.path == "/v2/checkout/orders").content)
    assert body["purchase_units"][0]["amount"] == {"currency_code": "HUF", "value": "1500"}
    assert created.channel_trade_no
    env.sent.clear()
    for request, code in (
        (payment(currency="KRW", amount=1000), "unsupported_currency"),
        (payment(currency="HUF", amount=150050), "invalid_amount"),
        (payment(currency="TWD", amount=1), "invalid_amount"),
        (payment(method="card"), "unsupported_method"),
        (payment(return_url=None), "return_url_required"),
    ):
        with pytest.raises(BusinessError) as exc:
            await env.adapter.create_payment(request)
        assert exc.value.code == code
    assert env.sent == []


async def test_webhook_is_pointed_at_the_notify_url_once(env: Env) -> None:
    app = env.sandbox.apps[env.creds["client_id"]]
    assert app.webhook_url is None
    await env.adapter.create_payment(payment())
    await env.adapter.create_payment(payment())
    assert app.webhook_url == NOTIFY_URL
    assert set(paypal_adapter.WEBHOOK_EVENTS) <= set(app.event_types)
    patches = [r for r in env.sent if r.method == "PATCH"]
    assert len(patches) == 1 and patches[0].url.path.endswith(env.creds["webhook_id"])


async def test_buyer_cancels_order_stays_unpaid_and_closes(env: Env) -> None:
    request = payment()
    created = await env.adapter.create_payment(request)
    order_id = created.channel_trade_no
    assert order_id is not None
    r = await approve(env, order_id, "cancel")
    assert r.headers["location"] == f"{RETURN_URL}?token={order_id}"
    state = await env.adapter.query_payment(request.out_trade_no, channel_trade_no=order_id)
    assert state.status is ChannelPaymentStatus.pending
    await env.adapter.close_payment(request.out_trade_no, channel_trade_no=order_id)
    state = await env.adapter.query_payment(request.out_trade_no, channel_trade_no=order_id)
    assert state.status is ChannelPaymentStatus.closed
    # A buyer who approves a closed order pays nothing: it is never captured.
    await approve(env, order_id)
    state = await env.adapter.query_payment(request.out_trade_no, channel_trade_no=order_id)
    assert state.status is ChannelPaymentStatus.closed
    assert not [r for r in env.sent if r.url.path.endswith("/capture")]
    await env.adapter.close_payment(request.out_trade_no, channel_trade_no=order_id)  # again: ok


async def test_close_captured_order_is_already_paid(env: Env) -> None:
    request, order_id = await paid(env)
    with pytest.raises(BusinessError) as exc:
        await env.adapter.close_payment(request.out_trade_no, channel_trade_no=order_id)
    assert exc.value.code == "already_paid"


async def test_declined_capture_is_failed(env: Env) -> None:
    env.sandbox.core.add_script(Script(outcome=Outcome.decline, notify=NotifyMode.none))
    request = payment()
    created = await env.adapter.create_payment(request)
    state = await env.adapter.query_payment(
        request.out_trade_no, channel_trade_no=created.channel_trade_no
    )
    assert state.status is ChannelPaymentStatus.failed
    assert (state.failure_code, state.channel_code) == ("card_declined", "capture_declined")


async def test_create_timeout_then_lost_answer_is_found_by_replay(env: Env) -> None:
    env.sandbox.core.add_script(Script(outcome=Outcome.create_timeout))
    request = payment()
    with pytest.raises(UnknownOutcome) as exc:
        await env.adapter.create_payment(request)
    assert exc.value.code == "read_timeout"
    # The create answer was lost: the replay under the same PayPal-Request-Id finds the order.
    state = await env.adapter.query_payment(request.out_trade_no, channel_trade_no=None)
    assert state.status is ChannelPaymentStatus.pending
    assert state.channel_trade_no == env.sandbox.core.find(request.out_trade_no).channel_trade_no
    assert len(env.sandbox.core.orders) == 1
    await env.adapter.close_payment(request.out_trade_no)
    state = await env.adapter.query_payment(request.out_trade_no)
    assert state.status is ChannelPaymentStatus.closed


async def test_create_error_is_unknown_and_nothing_exists(env: Env) -> None:
    env.sandbox.core.add_script(Script(outcome=Outcome.create_error))
    request = payment()
    with pytest.raises(UnknownOutcome) as exc:
        await env.adapter.create_payment(request)
    assert exc.value.code == "internal_server_error"
    state = await env.adapter.query_payment(request.out_trade_no)
    assert state.status is ChannelPaymentStatus.not_found
    assert env.sandbox.core.orders == {}
    await env.adapter.close_payment(request.out_trade_no)  # nothing to close: success


async def test_connect_error_is_retryable() -> None:
    paypal_adapter.clear_caches()
    http = httpx.AsyncClient(transport=RefusingTransport())
    adapter = PayPalAdapter({"client_id": "A", "client_secret": "E", "webhook_id": "W1",
                             "gateway": BASE}, http)  # fmt: skip
    with pytest.raises(RetryableError):
        await adapter.create_payment(payment())


async def test_duplicate_invoice_id_is_refused(env: Env) -> None:
    request = payment()
    await env.adapter.create_payment(request)
    other = PayPalAdapter(env.creds, env.http)
    # Same out_trade_no under another request id (another process's idea of the attempt).
    body = {"intent": "CAPTURE", "purchase_units": [
        {"invoice_id": request.out_trade_no, "amount": {"currency_code": "USD", "value": "1.00"}}
    ]}  # fmt: skip
    with pytest.raises(BusinessError) as exc:
        await other._call("POST", "/v2/checkout/orders", body, request_id="another")
    assert exc.value.code == "duplicate_out_trade_no"


# ------------------------------------------------------------------ webhooks
async def test_approved_webhook_captures_and_capture_webhook_follows(env: Env) -> None:
    request = payment()
    created = await env.adapter.create_payment(request)
    order_id = created.channel_trade_no
    assert order_id is not None
    await approve(env, order_id)
    await until(lambda: len(env.receiver.received) == 1, "the approval webhook")
    headers, body = env.receiver.received[0]
    independent_verify(headers, body, env.creds["webhook_id"], env.sandbox.cert_pem)
    assert headers["paypal-cert-url"] == f"{BASE}/v1/notifications/certs/{env.sandbox.cert_id}"
    note = await env.adapter.parse_notification(headers, body)
    assert note.payment is not None and note.event_key.startswith("WH-")
    assert note.payment.status is ChannelPaymentStatus.succeeded
    assert note.payment.out_trade_no == request.out_trade_no
    await until(lambda: len(env.receiver.received) == 2, "the capture webhook")
    headers2, body2 = env.receiver.received[1]
    assert env.receiver.events() == ["CHECKOUT.ORDER.APPROVED", "PAYMENT.CAPTURE.COMPLETED"]
    captured = await env.adapter.parse_notification(headers2, body2)
    assert captured.payment is not None
    assert captured.payment.status is ChannelPaymentStatus.succeeded
    assert (captured.payment.amount, captured.payment.channel_trade_no) == (1999, order_id)
    # A redelivery of the approval captures nothing new (same request id → same capture).
    again = await env.adapter.parse_notification(*env.sandbox.build_notification(
        env.sandbox.core.find(request.out_trade_no)))  # fmt: skip
    assert again.payment is not None and again.payment.status is ChannelPaymentStatus.succeeded
    assert len([r for r in env.sent if r.url.path.endswith("/capture")]) == 1


async def test_forged_stale_and_foreign_webhooks_are_rejected(env: Env) -> None:
    _, order_id = await paid(env)
    order = env.sandbox.core.find(next(iter(env.sandbox.core.by_trade_no)))
    headers, body = env.sandbox.build_notification(order)
    await env.adapter.parse_notification(headers, body)  # the genuine one passes
    app = env.sandbox.apps[env.creds["client_id"]]

    async def rejected(h: dict[str, str], b: bytes, code: str) -> None:
        with pytest.raises(InvalidNotification) as exc:
            await env.adapter.parse_notification(h, b)
        assert exc.value.code == code, exc.value

    await rejected(headers, body.replace(b"1999", b"1998").replace(b"19.99", b"19.98"),
                   "bad_signature")  # fmt: skip
    await rejected({**headers, "PAYPAL-TRANSMISSION-ID": "other"}, body, "bad_signature")
    # Signed for another webhook (another merchant's app): the webhook id is in the message.
    await rejected({**headers, **env.sandbox.sign(app, body, webhook_id="OTHERWEBHOOK")}, body,
                   "bad_signature")  # fmt: skip
    stale = env.sandbox.sign(app, body, when=clock.now() - dt.timedelta(hours=1))
    await rejected({**headers, **stale}, body, "stale")
    await rejected({**headers, "PAYPAL-CERT-URL": "https://evil.example/v1/notifications/certs/X"},
                   body, "untrusted_cert_url")  # fmt: skip
    await rejected({**headers, "PAYPAL-CERT-URL": f"{BASE}/elsewhere/cert"}, body,
                   "untrusted_cert_url")  # fmt: skip
    await rejected({**headers, "PAYPAL-AUTH-ALGO": "SHA1withRSA"}, body, "unsupported_algorithm")
    await rejected({k: v for k, v in headers.items() if k != "PAYPAL-TRANSMISSION-SIG"}, body,
                   "missing_header")  # fmt: skip
    # A different key signing with our cert URL (a forger who can't sign as PayPal).
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = protocol.sign_webhook(forger, headers["PAYPAL-TRANSMISSION-ID"],
                                   headers["PAYPAL-TRANSMISSION-TIME"], env.creds["webhook_id"],
                                   body)  # fmt: skip
    await rejected({**headers, "PAYPAL-TRANSMISSION-SIG": forged}, body, "bad_signature")
    assert order_id


def test_cert_hosts_follow_the_environment() -> None:
    def allowed(gateway: str, url: str) -> bool:
        adapter = PayPalAdapter({"client_id": "A", "client_secret": "E", "webhook_id": "W",
                                 "gateway": gateway}, httpx.AsyncClient())  # fmt: skip
        return adapter._cert_allowed(url)

    live = "https://api-m.paypal.com"
    ppsb = "https://api-m.sandbox.paypal.com"
    cert = "/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77"
    assert allowed(live, "https://api.paypal.com" + cert)
    assert not allowed(live, "https://api.sandbox.paypal.com" + cert)
    assert not allowed(live, "http://api.paypal.com" + cert)
    assert not allowed(live, "https://api.paypal.com.evil.example" + cert)
    assert not allowed(live, "https://api.paypal.com/v1/other")
    assert allowed(ppsb, "https://api.sandbox.paypal.com" + cert)
    assert not allowed(ppsb, "https://api.paypal.com" + cert)
    assert allowed(BASE, BASE + cert)
    assert not allowed(BASE, "https://api.paypal.com" + cert)


async def test_postback_verification(env: Env) -> None:
    adapter = PayPalAdapter({**env.creds, "verify_by_postback": True}, env.http)
    request, _ = await paid(env)
    headers, body = env.sandbox.build_notification(env.sandbox.core.find(request.out_trade_no))
    note = await adapter.parse_notification(headers, body)
    assert note.payment is not None
    assert any(r.url.path == "/v1/notifications/verify-webhook-signature" for r in env.sent)


async def test_webhooks_are_retried_signed_afresh_and_duplicates_share_a_key(env: Env) -> None:
    env.receiver.statuses = [500, 503]
    env.sandbox.core.add_script(Script(outcome=Outcome.succeed, notify=NotifyMode.duplicate))
    await env.adapter.create_payment(payment())
    await until(lambda: len(env.receiver.received) >= 3, "retries")
    approvals = [(h, b) for h, b in env.receiver.received
                 if json.loads(b)["event_type"] == "CHECKOUT.ORDER.APPROVED"]  # fmt: skip
    assert len({h["paypal-transmission-id"] for h, _ in approvals}) == len(approvals)
    keys = {(await env.adapter.parse_notification(h, b)).event_key for h, b in approvals}
    assert len(keys) == 1


async def test_delayed_and_missing_webhooks(env: Env) -> None:
    env.sandbox.core.add_script(Script(outcome=Outcome.succeed, notify=NotifyMode.none))
    silent = payment()
    created = await env.adapter.create_payment(silent)
    await asyncio.sleep(0.02)
    assert env.receiver.received == []
    state = await env.adapter.query_payment(
        silent.out_trade_no, channel_trade_no=created.channel_trade_no
    )
    assert state.status is ChannelPaymentStatus.succeeded  # the query captured it
    env.sandbox.core.add_script(Script(outcome=Outcome.succeed, notify=NotifyMode.delayed,
                                       delay=1000))  # fmt: skip
    await env.adapter.create_payment(payment())
    await until(lambda: "CHECKOUT.ORDER.APPROVED" in env.receiver.events(), "the late webhook")


async def test_out_of_order_capture_then_approval(env: Env) -> None:
    """The approval arriving after the capture's webhook changes nothing and captures once."""
    request, order_id = await paid(env)
    order = env.sandbox.core.find(request.out_trade_no)
    capture_note = await env.adapter.parse_notification(*env.sandbox.build_notification(order))
    approved_body = env.sandbox._event(
        "checkout-order", "CHECKOUT.ORDER.APPROVED", "approved",
        {**env.sandbox.order_view(order), "status": "APPROVED"}, order_id,
    )  # fmt: skip
    app = env.sandbox.apps[env.creds["client_id"]]
    late = await env.adapter.parse_notification(env.sandbox.sign(app, approved_body),
                                                approved_body)  # fmt: skip
    assert capture_note.payment is not None and late.payment is not None
    assert capture_note.payment.status is late.payment.status is ChannelPaymentStatus.succeeded
    assert len([r for r in env.sent if r.url.path.endswith("/capture")]) == 1


def test_ack(env: Env) -> None:
    assert env.adapter.ack(True).status_code == 200
    assert env.adapter.ack(False).status_code >= 400


# ------------------------------------------------------------------ refunds
async def test_refund_succeeds_and_is_notified(env: Env) -> None:
    request, order_id = await paid(env)
    env.receiver.received.clear()
    ask = refund_request(request, order_id, 500, reason="Too small")
    state = await env.adapter.create_refund(ask)
    assert state.status is ChannelRefundStatus.succeeded
    assert (state.amount, state.currency, state.out_refund_no) == (500, "USD", ask.out_refund_no)
    call = next(r for r in env.sent if r.url.path.endswith("/refund"))
    assert call.headers["PayPal-Request-Id"] == f"paymux-refund-{ask.out_refund_no}"
    assert json.loads(call.content) == {
        "amount": {"currency_code": "USD", "value": "5.00"}, "invoice_id": ask.out_refund_no,
        "custom_id": request.out_trade_no, "note_to_payer": "Too small",
    }  # fmt: skip
    again = await env.adapter.create_refund(ask)  # same request id: the same refund
    assert again.channel_refund_no == state.channel_refund_no
    assert len(env.sandbox.core.refunds) == 1
    await until(lambda: "PAYMENT.CAPTURE.REFUNDED" in env.receiver.events(), "refund webhook")
    headers, body = next(
        (h, b)
        for h, b in env.receiver.received
        if json.loads(b)["event_type"] == "PAYMENT.CAPTURE.REFUNDED"
    )
    note = await env.adapter.parse_notification(headers, body)
    assert note.refund is not None and note.refund.status is ChannelRefundStatus.succeeded
    assert (note.refund.out_refund_no, note.reference) == (ask.out_refund_no, request.out_trade_no)
    queried = await env.adapter.query_refund(
        ask.out_refund_no, request.out_trade_no, channel_refund_no=state.channel_refund_no
    )
    assert queried.status is ChannelRefundStatus.succeeded


async def test_refund_delay_fail_refuse_and_limits(env: Env) -> None:
    request, order_id = await paid(env)
    env.sandbox.core.add_refund_script(RefundScript(outcome=RefundOutcome.delayed, delay=1000))
    delayed = refund_request(request, order_id, 300)
    state = await env.adapter.create_refund(delayed)
    assert state.status is ChannelRefundStatus.pending
    for _ in range(200):
        state = await env.adapter.query_refund(
            delayed.out_refund_no, request.out_trade_no, channel_refund_no=state.channel_refund_no
        )
        if state.status is not ChannelRefundStatus.pending:
            break
        await asyncio.sleep(0.005)
    assert state.status is ChannelRefundStatus.succeeded

    env.sandbox.core.add_refund_script(RefundScript(outcome=RefundOutcome.fail, delay=1000))
    failing = refund_request(request, order_id, 300)
    state = await env.adapter.create_refund(failing)
    for _ in range(200):
        state = await env.adapter.query_refund(
            failing.out_refund_no, request.out_trade_no, channel_refund_no=state.channel_refund_no
        )
        if state.status is not ChannelRefundStatus.pending:
            break
        await asyncio.sleep(0.005)
    assert state.status is ChannelRefundStatus.failed and state.failure_code == "refund_failed"

    env.sandbox.core.add_refund_script(RefundScript(outcome=RefundOutcome.refuse))
    with pytest.raises(BusinessError) as exc:
        await env.adapter.create_refund(refund_request(request, order_id, 100))
    assert exc.value.code == "insufficient_balance"
    with pytest.raises(BusinessError) as exc:
        await env.adapter.create_refund(refund_request(request, order_id, 1999 - 300 + 1))
    assert exc.value.code == "refund_exceeds_payment"
    env.sandbox.core.add_refund_script(RefundScript(outcome=RefundOutcome.create_error))
    lost = refund_request(request, order_id, 100)
    with pytest.raises(UnknownOutcome):
        await env.adapter.create_refund(lost)
    missing = await env.adapter.query_refund(lost.out_refund_no, request.out_trade_no)
    assert missing.status is ChannelRefundStatus.not_found


async def test_refund_timeout_is_resolved_by_resending(env: Env) -> None:
    request, order_id = await paid(env)
    env.sandbox.core.add_refund_script(RefundScript(outcome=RefundOutcome.create_timeout))
    ask = refund_request(request, order_id, 700)
    with pytest.raises(UnknownOutcome):
        await env.adapter.create_refund(ask)
    # Without PayPal's refund id the query says not_found; the gateway re-sends the refund
    # under the same request id and gets the refund PayPal made, not a second one.
    assert (await env.adapter.query_refund(ask.out_refund_no, request.out_trade_no)).status \
        is ChannelRefundStatus.not_found  # fmt: skip
    state = await env.adapter.create_refund(ask)
    assert state.status is ChannelRefundStatus.succeeded and state.amount == 700
    assert len(env.sandbox.core.refunds) == 1


async def test_refund_of_unpaid_order_is_refused(env: Env) -> None:
    request = payment()
    created = await env.adapter.create_payment(request)
    with pytest.raises(BusinessError) as exc:
        await env.adapter.create_refund(refund_request(request, created.channel_trade_no))
    assert exc.value.code == "order_not_paid"


# ------------------------------------------------------------------ statement
@contextlib.contextmanager
def next_day() -> Iterator[None]:
    """The clock a day on: Transaction Search is complete for today only once PayPal's
    ``last_refreshed_datetime`` has passed the day's end."""
    shifted = clock.OffsetClock()
    previous = clock.set_clock(shifted)
    shifted.advance(86_400)
    try:
        yield
    finally:
        clock.set_clock(previous)


async def test_days_bill_from_transaction_search(env: Env, tmp_path: Path) -> None:
    request, order_id = await paid(env, amount=10000)
    await env.adapter.create_refund(refund_request(request, order_id, 2500))
    day = clock.now().astimezone(dt.UTC).date()
    with pytest.raises(RetryableError) as not_ready:  # the day is not over
        await env.adapter.fetch_bill(day, io.BytesIO())
    assert not_ready.value.code == "statement_not_ready"
    path = tmp_path / "bill.jsonl"
    with next_day():
        with path.open("wb") as handle:
            fetched = await env.adapter.fetch_bill(day, handle, page_size=1)
        empty = await env.adapter.fetch_bill(day - dt.timedelta(days=2), io.BytesIO())
    assert fetched.exists and fetched.filename.endswith(".jsonl") and not empty.exists
    file_lines = path.read_bytes().splitlines()
    assert len(file_lines) == 5  # header, three pages of one row, end
    assert json.loads(file_lines[-1]) == {"object": "end", "pages": 3, "count": 3}
    reader = env.adapter.bill_reader(path, fetched.expected)
    lines = list(reader.lines())
    assert reader.intact, reader.failures()
    assert [(x.raw["transaction_info"]["transaction_event_code"], x.amount, x.currency)
            for x in lines] == [("T0006", 10000, "USD"), ("T1107", -2500, "USD"),
                                ("T0400", -(10000 - 349 - 2500), "USD")]  # fmt: skip
    sale, refund, _withdrawal = lines  # the day's withdrawal to the bank
    assert sale.fee == 10000 * env.sandbox.fee_bps // 10_000
    assert sale.out_trade_no == request.out_trade_no and sale.channel_trade_no == order_id
    assert refund.out_refund_no is not None and refund.out_refund_no.startswith("re_")
    calls = [r for r in env.sent if r.url.path == "/v1/reporting/transactions"]
    assert len(calls) == 5  # not ready (1), page_size 1: three pages, the empty day (1)


async def test_statement_normalises_transaction_search(env: Env) -> None:
    """``statement(day)``: T0006 → payment with PayPal's fee as a positive charge, T1107 →
    negative refund with our refund id (``invoice_id``) and attempt (``custom_field``)."""
    request, order_id = await paid(env, amount=10000)
    refund = refund_request(request, order_id, 2500)
    await env.adapter.create_refund(refund)
    day = clock.now().astimezone(dt.UTC).date()
    with next_day():
        lines = await env.adapter.statement(day)
        assert await env.adapter.statement(day - dt.timedelta(days=2)) == []
    fee = 10000 * env.sandbox.fee_bps // 10_000
    # the last: the day's withdrawal to the bank (T0400), an other line of the trade bill
    assert [(x.kind, x.reference, x.out_trade_no, x.amount, x.fee, x.currency)
            for x in lines] == [
        (base.StatementLineKind.payment, request.out_trade_no, request.out_trade_no, 10000, fee,
         "USD"),
        (base.StatementLineKind.refund, refund.out_refund_no, request.out_trade_no, -2500, 0,
         "USD"),
        (base.StatementLineKind.other, None, None, -(10000 - fee - 2500), 0, "USD"),
    ]  # fmt: skip
    assert lines[0].channel_trade_no == order_id and lines[1].channel_refund_no

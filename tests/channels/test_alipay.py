"""Alipay channel: codec, adapter and sandbox, checked against each other and against the
official ``python-alipay-sdk`` (import name ``alipay``) as an independent oracle.

Everything is in-process: the adapter reaches the sandbox through ``httpx.ASGITransport`` at
http://ali.test, and the sandbox's notifier posts to a small recording receiver."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from alipay import AliPay
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from paymux.channels import base, registry, sandbox_kit
from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.adapter import AlipayAdapter, AlipayCredentials, classify
from paymux.channels.alipay.sandbox import Sandbox
from paymux.channels.base import (
    BusinessError,
    ChannelPaymentStatus,
    CreatePayment,
    InvalidNotification,
    NextActionType,
    RetryableError,
    UnknownOutcome,
)
from paymux.kit import clock

BASE = "http://ali.test"
NOTIFY_URL = "http://merchant.test/notify"


# ---------------------------------------------------------------- fixtures
@dataclass
class Receiver:
    """Records notifications; answers scripted bodies, then ``success``."""

    got: list[bytes] = field(default_factory=list)
    answers: deque[str] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.app = FastAPI()

        @self.app.post("/notify")
        async def notify(request: Request) -> PlainTextResponse:
            self.got.append(await request.body())
            return PlainTextResponse(self.answers.popleft() if self.answers else "success")


@dataclass
class Env:
    sandbox: Sandbox
    receiver: Receiver
    client: httpx.AsyncClient
    creds: dict[str, Any]
    adapter: AlipayAdapter
    clients: list[httpx.AsyncClient]

    def adapter_with(self, timeout: float = 2.0, **overrides: Any) -> AlipayAdapter:
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.sandbox.app), timeout=timeout
        )
        self.clients.append(http)
        return AlipayAdapter({**self.creds, **overrides}, http)

    def sdk(self, *, app_private_key: str | None = None, app_id: str | None = None) -> Any:
        return AliPay(
            appid=app_id or self.creds["app_id"],
            app_notify_url=None,
            app_private_key_string=app_private_key or self.creds["app_private_key"],
            alipay_public_key_string=self.creds["alipay_public_key"],
            sign_type="RSA2",
        )


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with open_env() as environment:
        yield environment


@contextlib.asynccontextmanager
async def open_env() -> AsyncIterator[Env]:
    """An adapter wired to a fresh sandbox, whose notifications reach a recording receiver."""
    receiver = Receiver()
    notifier = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app), timeout=2.0)
    sandbox = Sandbox(http=notifier, time_scale=0.001, hold_timeout_seconds=1.0)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app), base_url=BASE)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app), timeout=2.0)
    creds = sandbox.provision(BASE)
    environment = Env(
        sandbox, receiver, client, creds, AlipayAdapter(creds, http), [notifier, client, http]
    )
    try:
        yield environment
    finally:
        await sandbox.core.aclose()
        for c in environment.clients:
            await c.aclose()


_counter = iter(range(1, 1_000_000))


def order_no() -> str:
    return f"att_{next(_counter):06d}_{id(order_no) % 9973}"


def request(method: str = "alipay_qr", *, no: str | None = None, amount: int = 1999,
            subject: str = "Coffee 咖啡", expires_in: float = 900) -> CreatePayment:  # fmt: skip
    return CreatePayment(
        out_trade_no=no or order_no(),
        method=method,
        amount=amount,
        currency="CNY",
        subject=subject,
        notify_url=NOTIFY_URL,
        expires_at=clock.now() + dt.timedelta(seconds=expires_in),
        return_url="http://merchant.test/return",
    )


async def wait_for(predicate: Callable[[], bool], rounds: int = 500) -> None:
    for _ in range(rounds):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def public_pem_of(private_pem: str) -> str:
    return sandbox_kit.public_key_pem(p.load_private_key(private_pem).public_key())


def new_private_pem() -> str:
    return sandbox_kit.private_key_pem(
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )


# ---------------------------------------------------------------- codec
def test_amounts_times_and_statuses() -> None:
    assert p.to_yuan(1) == "0.01"
    assert p.to_yuan(1999) == "19.99"
    assert p.to_fen("19.99") == 1999
    assert p.to_fen("100") == 10000
    with pytest.raises(ValueError):
        p.to_fen("0.001")
    with pytest.raises(ValueError):
        p.to_fen("abc")
    utc = dt.datetime(2024, 3, 20, 16, 30, 5, tzinfo=dt.UTC)
    assert p.format_time(utc) == "2024-03-21 00:30:05"
    assert p.parse_time("2024-03-21 00:30:05") == utc
    assert p.map_trade_status("WAIT_BUYER_PAY") is ChannelPaymentStatus.pending
    assert p.map_trade_status("TRADE_SUCCESS") is ChannelPaymentStatus.succeeded
    assert p.map_trade_status("TRADE_FINISHED") is ChannelPaymentStatus.succeeded
    assert p.map_trade_status("TRADE_CLOSED") is ChannelPaymentStatus.closed
    with pytest.raises(ValueError):
        p.map_trade_status("WHATEVER")


def test_common_params_use_beijing_time() -> None:
    now = dt.datetime(2024, 1, 1, 20, 0, 0, tzinfo=dt.UTC)
    params = p.request_params(
        app_id="9021000000000001", method="alipay.trade.query",
        biz_content={"out_trade_no": "x"}, now=now,
    )  # fmt: skip
    assert params["timestamp"] == "2024-01-02 04:00:00"
    assert params["format"] == "JSON" and params["charset"] == "utf-8"
    assert params["sign_type"] == "RSA2" and params["version"] == "1.0"
    assert json.loads(params["biz_content"]) == {"out_trade_no": "x"}
    assert "notify_url" not in params and "return_url" not in params


def test_response_text_is_cut_out_raw() -> None:
    inner = '{ "code" : "10000", "odd": "}{\\"", "nested": {"a": [1, {"b": "}"}]} }'
    body = '{"alipay_trade_query_response" : ' + inner + ' ,\n "sign":"c2ln"}'
    raw = p.extract_response(body, "alipay.trade.query")
    assert raw.key == "alipay_trade_query_response"
    assert raw.text == inner
    assert raw.sign == "c2ln"
    assert raw.data["odd"] == '}{"'
    error = p.extract_response('{"error_response":{"code":"40002"}}', "alipay.trade.query")
    assert error.key == "error_response" and error.sign is None
    for bad in ("[]", '{"other_response":{}}', '{"alipay_trade_query_response":{}', "nope"):
        with pytest.raises(ValueError):
            p.extract_response(bad, "alipay.trade.query")


def test_our_request_signature_equals_the_sdks(env: Env) -> None:
    params = p.request_params(
        app_id=env.creds["app_id"], method="alipay.trade.precreate",
        biz_content={"out_trade_no": "o1", "total_amount": "0.01", "subject": "测试"},
        notify_url=NOTIFY_URL,
    )  # fmt: skip
    ours = p.sign_params(params, p.load_private_key(env.creds["app_private_key"]))
    sdk_query = env.sdk().sign_data(dict(params))
    sdk_sign = dict(parse_qsl(sdk_query))["sign"]
    assert ours["sign"] == sdk_sign
    # and the sandbox (the app's public key) accepts it
    app_key = p.load_public_key(public_pem_of(env.creds["app_private_key"]))
    assert p.verify_request(ours, app_key)
    assert not p.verify_request({**ours, "biz_content": "{}"}, app_key)


def test_credentials_model_and_factory_facts(env: Env) -> None:
    def bare(pem: str) -> str:
        return "".join(line for line in pem.splitlines() if not line.startswith("-----"))

    model = AlipayCredentials.model_validate(
        {**env.creds, "app_private_key": bare(env.creds["app_private_key"]),
         "alipay_public_key": bare(env.creds["alipay_public_key"])}
    )  # fmt: skip
    assert model.gateway == f"{BASE}/gateway.do"
    with pytest.raises(base.InvalidCredentials):
        AlipayAdapter({**env.creds, "alipay_public_key": "not a key"}, env.client)
    with pytest.raises(base.InvalidCredentials):
        AlipayAdapter({**env.creds, "gateway": "ftp://x"}, env.client)
    assert (
        AlipayCredentials.model_validate(
            {k: v for k, v in env.creds.items() if k != "gateway"}
        ).gateway
        == "https://openapi.alipay.com/gateway.do"
    )
    assert AlipayAdapter.production_hosts == frozenset({"openapi.alipay.com"})
    assert AlipayAdapter.methods == {
        "alipay_qr", "alipay_page", "alipay_wap", "alipay_app", "alipay_barcode",
        "alipay_jsapi",
    }  # fmt: skip
    assert AlipayAdapter.currencies == {"CNY"}
    assert registry._REGISTRY["alipay"] is AlipayAdapter


def test_ack(env: Env) -> None:
    assert env.adapter.ack(True) == base.Ack(200, b"success", "text/plain")
    assert env.adapter.ack(False) == base.Ack(200, b"fail", "text/plain")


def test_error_table() -> None:
    assert isinstance(classify("20000", "isp.unknow-error", ""), UnknownOutcome)
    assert isinstance(classify("40004", "ACQ.SYSTEM_ERROR", ""), UnknownOutcome)
    err = classify("40004", "ACQ.TOTAL_FEE_EXCEED", "")
    assert isinstance(err, BusinessError) and err.code == "ACQ.TOTAL_FEE_EXCEED"
    err = classify("40002", "isv.invalid-signature", "")
    assert isinstance(err, BusinessError) and err.code == "isv.invalid-signature"
    assert classify("40002", "", "").code == "invalid_parameter"
    assert isinstance(classify("99999", "", ""), UnknownOutcome)


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
        adapter = AlipayAdapter(env.creds, http)
        with pytest.raises(kind) as info:
            await adapter.create_payment(request())
        assert info.value.code == code
        with pytest.raises(kind):
            await adapter.query_payment("x")


# ---------------------------------------------------------------- round trips
async def test_qr_round_trip_and_sdk_oracle(env: Env) -> None:
    req = request()
    created = await env.adapter.create_payment(req)
    assert created.next_action is not None
    assert created.next_action.type is NextActionType.qr_code
    assert created.next_action.code_url == f"{BASE}/_sandbox/pay/{req.out_trade_no}"
    page = await env.client.get(f"/_sandbox/pay/{req.out_trade_no}")
    assert page.status_code == 200 and "19.99" in page.text

    order = env.sandbox.core.find(req.out_trade_no)
    assert order is not None and order.amount == 1999 and order.notify_url == NOTIFY_URL
    assert order.extra["expires_at"] == req.expires_at.replace(microsecond=0)

    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.status is ChannelPaymentStatus.pending
    assert state.amount == 1999 and state.currency == "CNY"
    assert state.channel_trade_no == order.channel_trade_no

    # The official SDK signs a request our sandbox accepts and verifies our signed answer.
    sdk = env.sdk()
    query = sdk.sign_data(sdk.build_body("alipay.trade.query", {"out_trade_no": req.out_trade_no}))
    raw = (await env.client.get(f"/gateway.do?{query}")).text
    answer = sdk._verify_and_return_sync_response(raw, "alipay_trade_query_response")
    assert answer["code"] == "10000" and answer["trade_status"] == "WAIT_BUYER_PAY"
    # ... also sent as a form POST, the way the official Java SDK sends biz_content
    data = dict(parse_qsl(query))
    biz = data.pop("biz_content")
    raw = (await env.client.post("/gateway.do", params=data, data={"biz_content": biz})).text
    assert sdk._verify_and_return_sync_response(raw, "alipay_trade_query_response")["code"] == (
        "10000"
    )


async def test_precreate_is_idempotent_per_order(env: Env) -> None:
    req = request()
    first = await env.adapter.create_payment(req)
    again = await env.adapter.create_payment(req)
    assert first.next_action == again.next_action
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_payment(request(no=req.out_trade_no, amount=1))
    assert info.value.code == "ACQ.CONTEXT_INCONSISTENT"


@pytest.mark.parametrize(
    ("method", "wire", "product"),
    [
        ("alipay_page", "alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
        ("alipay_wap", "alipay.trade.wap.pay", "QUICK_WAP_WAY"),
    ],
)
async def test_browser_redirect_round_trip(env: Env, method: str, wire: str, product: str) -> None:
    req = request(method)
    created = await env.adapter.create_payment(req)
    assert created.next_action is not None
    assert created.next_action.type is NextActionType.redirect
    url = created.next_action.url
    assert url is not None and url.startswith(f"{BASE}/gateway.do?")
    params = dict(parse_qsl(urlsplit(url).query))
    assert params["method"] == wire and params["notify_url"] == NOTIFY_URL
    assert params["return_url"] == "http://merchant.test/return"
    biz = json.loads(params["biz_content"])
    assert biz["product_code"] == product and biz["total_amount"] == "19.99"
    assert biz["time_expire"] == p.format_time(req.expires_at)
    assert p.verify_request(params, p.load_public_key(public_pem_of(env.creds["app_private_key"])))
    # No trade exists at Alipay until the customer's browser opens the cashier.
    assert (await env.adapter.query_payment(req.out_trade_no)).status is (
        ChannelPaymentStatus.not_found
    )
    opened = await env.client.get(url)
    assert opened.status_code == 302
    assert opened.headers["location"] == f"{BASE}/_sandbox/pay/{req.out_trade_no}"
    assert (await env.adapter.query_payment(req.out_trade_no)).status is (
        ChannelPaymentStatus.pending
    )
    # a tampered URL is refused
    bad = url.replace("19.99", "0.01").replace("19.99", "0.01")
    assert (await env.client.get(bad)).status_code == 400


async def test_app_order_string(env: Env) -> None:
    req = request("alipay_app")
    created = await env.adapter.create_payment(req)
    assert created.next_action is not None
    assert created.next_action.type is NextActionType.sdk_params
    assert created.next_action.params is not None
    order_string = created.next_action.params["order_string"]
    params = dict(parse_qsl(order_string))
    assert params["method"] == "alipay.trade.app.pay"
    assert json.loads(params["biz_content"])["product_code"] == "QUICK_MSECURITY_PAY"
    # The sandbox stands in for the Alipay app SDK: the order string opens the cashier.
    opened = await env.client.get(f"/gateway.do?{order_string}")
    assert opened.status_code == 302
    assert (await env.adapter.query_payment(req.out_trade_no)).status is (
        ChannelPaymentStatus.pending
    )


async def test_sdk_built_page_and_wap_urls_accepted(env: Env) -> None:
    sdk = env.sdk()
    for build in (sdk.api_alipay_trade_page_pay, sdk.api_alipay_trade_wap_pay):
        no = order_no()
        query = build(subject="测试", out_trade_no=no, total_amount="0.01",
                      notify_url=NOTIFY_URL, return_url="http://merchant.test/r")  # fmt: skip
        opened = await env.client.get(f"/gateway.do?{query}")
        assert opened.status_code == 302, opened.text
        assert env.sandbox.core.find(no) is not None


async def test_paid_order_notifies_and_sdk_verifies(env: Env) -> None:
    req = request()
    await env.adapter.create_payment(req)
    paid = await env.client.post(f"/_sandbox/orders/{req.out_trade_no}/pay", json={"result": "pay"})
    assert paid.json()["changed"] is True
    await wait_for(lambda: len(env.receiver.got) == 1)
    body = env.receiver.got[0]

    note = await env.adapter.parse_notification(
        {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}, body
    )
    fields = dict(parse_qsl(body.decode()))
    assert note.event_key == fields["notify_id"]
    assert note.payment.out_trade_no == req.out_trade_no
    assert note.payment.status is ChannelPaymentStatus.succeeded
    assert note.payment.amount == 1999 and note.payment.currency == "CNY"
    order = env.sandbox.core.find(req.out_trade_no)
    assert order is not None and note.payment.channel_trade_no == order.channel_trade_no
    assert note.payment.paid_at == order.paid_at.replace(microsecond=0)  # type: ignore[union-attr]
    for name in ("notify_time", "notify_type", "app_id", "trade_no", "trade_status",
                 "total_amount", "receipt_amount", "buyer_id", "gmt_create", "gmt_payment",
                 "subject", "seller_id", "sign_type", "sign", "charset", "version"):  # fmt: skip
        assert fields.get(name), name
    assert fields["notify_type"] == "trade_status_sync" and fields["subject"] == "Coffee 咖啡"

    # Oracle: the official SDK verifies our notification.
    signature = fields.pop("sign")
    assert env.sdk().verify(dict(fields), signature) is True

    await wait_for(lambda: bool(env.sandbox.core.deliveries))
    assert env.sandbox.core.deliveries[-1]["acked"] is True
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.status is ChannelPaymentStatus.succeeded and state.paid_at == note.payment.paid_at


async def test_notification_retried_until_exact_success(env: Env) -> None:
    env.receiver.answers.extend(["fail", "SUCCESS"])
    req = request()
    await env.adapter.create_payment(req)
    await env.client.post(f"/_sandbox/orders/{req.out_trade_no}/pay", json={"result": "pay"})
    await wait_for(lambda: len(env.receiver.got) == 3, rounds=1000)
    assert len(set(env.receiver.got)) == 1  # the same notification (same notify_id) each time
    await wait_for(lambda: any(d.get("acked") for d in env.sandbox.core.deliveries))
    assert [d["acked"] for d in env.sandbox.core.deliveries] == [False, False, True]


async def test_decline_notifies_trade_closed(env: Env) -> None:
    script = {"outcome": "decline", "subject": "declined"}
    assert (await env.client.post("/_sandbox/scripts", json=script)).status_code == 200
    req = request(subject="declined")
    await env.adapter.create_payment(req)
    await wait_for(lambda: len(env.receiver.got) == 1)
    note = await env.adapter.parse_notification({}, env.receiver.got[0])
    assert note.payment.status is ChannelPaymentStatus.closed and note.payment.paid_at is None
    assert (await env.adapter.query_payment(req.out_trade_no)).status is (
        ChannelPaymentStatus.closed
    )


async def test_succeed_script_notifies_without_customer(env: Env) -> None:
    await env.client.post("/_sandbox/scripts", json={"outcome": "succeed"})
    req = request()
    await env.adapter.create_payment(req)
    await wait_for(lambda: len(env.receiver.got) == 1)
    note = await env.adapter.parse_notification({}, env.receiver.got[0])
    assert note.payment.status is ChannelPaymentStatus.succeeded


# ---------------------------------------------------------------- forged notifications
async def _one_notification(env: Env) -> bytes:
    req = request()
    await env.adapter.create_payment(req)
    await env.client.post(f"/_sandbox/orders/{req.out_trade_no}/pay", json={"result": "pay"})
    await wait_for(lambda: len(env.receiver.got) == 1)
    return env.receiver.got[0]


async def test_forged_notifications_rejected(env: Env) -> None:
    body = await _one_notification(env)
    fields = dict(parse_qsl(body.decode()))
    assert (await env.adapter.parse_notification({}, body)).payment.amount == 1999

    def form(**changes: str | None) -> bytes:
        data = {**fields, **changes}
        return urlencode({k: v for k, v in data.items() if v is not None}).encode()

    cases = {
        "tampered amount": (form(total_amount="0.01"), "bad_signature"),
        "tampered order": (form(out_trade_no="att_other"), "bad_signature"),
        "garbage sign": (form(sign="bm9wZQ=="), "bad_signature"),
        "not base64": (form(sign="%%%"), "bad_signature"),
        "no sign": (form(sign=None), "unsigned"),
        "other sign type": (form(sign_type="RSA"), "bad_sign_type"),
        "not a form": (b"\xff\xfe", "malformed"),
        "duplicate field": (body + b"&trade_status=TRADE_SUCCESS", "malformed"),
    }
    for label, (payload, code) in cases.items():
        with pytest.raises(InvalidNotification) as info:
            await env.adapter.parse_notification({}, payload)
        assert info.value.code == code, label

    # Signed by someone else's key (not Alipay's)
    stranger = p.load_private_key(new_private_pem())
    resigned = {k: v for k, v in fields.items() if k != "sign"}
    resigned["sign"] = p.sign(p.notify_sign_content(resigned), stranger)
    with pytest.raises(InvalidNotification) as info:
        await env.adapter.parse_notification({}, urlencode(resigned).encode())
    assert info.value.code == "bad_signature"

    # Genuinely signed by Alipay, but for another app / another seller
    other = env.sandbox.provision(BASE)
    with pytest.raises(InvalidNotification) as info:
        await env.adapter_with(**other).parse_notification({}, body)
    assert info.value.code == "wrong_app"
    with pytest.raises(InvalidNotification) as info:
        await env.adapter_with(seller_id="2088000000000000").parse_notification({}, body)
    assert info.value.code == "wrong_seller"


# ---------------------------------------------------------------- request authentication
async def test_badly_signed_requests_rejected(env: Env) -> None:
    # The SDK signing with a key the sandbox does not know for this app.
    sdk = env.sdk(app_private_key=new_private_pem())
    query = sdk.sign_data(sdk.build_body("alipay.trade.query", {"out_trade_no": "x"}))
    raw = (await env.client.get(f"/gateway.do?{query}")).text
    answer = env.sdk()._verify_and_return_sync_response(raw, "alipay_trade_query_response")
    assert answer["code"] == "40002" and answer["sub_code"] == "isv.invalid-signature"

    # Our adapter with the wrong app key: a business refusal (our configuration is wrong).
    wrong = env.adapter_with(app_private_key=new_private_pem())
    with pytest.raises(BusinessError) as info:
        await wrong.create_payment(request())
    assert info.value.code == "isv.invalid-signature"
    assert not env.sandbox.core.orders

    # Unknown app, missing signature, unknown method
    sdk = env.sdk(app_id="9021999999999999")
    query = sdk.sign_data(sdk.build_body("alipay.trade.query", {"out_trade_no": "x"}))
    raw = (await env.client.get(f"/gateway.do?{query}")).text
    assert json.loads(raw)["alipay_trade_query_response"]["sub_code"] == "isv.invalid-app-id"
    unsigned = {k: v for k, v in parse_qsl(env.sdk().sign_data(
        env.sdk().build_body("alipay.trade.query", {"out_trade_no": "x"})))
        if k != "sign"}  # fmt: skip
    raw = (await env.client.post("/gateway.do", data=unsigned)).text
    assert json.loads(raw)["alipay_trade_query_response"]["sub_code"] == "isv.missing-signature"
    raw = (await env.client.get("/gateway.do?method=alipay.nope")).text
    assert json.loads(raw)["error_response"]["sub_code"] == "isv.invalid-method"


async def test_unverifiable_response_is_unknown(env: Env) -> None:
    stranger = public_pem_of(new_private_pem())
    adapter = env.adapter_with(alipay_public_key=stranger)
    with pytest.raises(UnknownOutcome) as info:
        await adapter.create_payment(request())
    assert info.value.code == "unverifiable_response"


# ---------------------------------------------------------------- scripted failures
async def test_create_timeout_is_unknown_outcome(env: Env) -> None:
    await env.client.post("/_sandbox/scripts", json={"outcome": "create_timeout"})
    impatient = env.adapter_with(timeout=0.05)
    req = request()
    with pytest.raises(UnknownOutcome) as info:
        await impatient.create_payment(req)
    assert info.value.code == "timeout"
    # The order was created nevertheless: a query resolves the unknown outcome.
    assert (await env.adapter.query_payment(req.out_trade_no)).status is (
        ChannelPaymentStatus.pending
    )


async def test_create_error_is_unknown_and_creates_nothing(env: Env) -> None:
    await env.client.post("/_sandbox/scripts", json={"outcome": "create_error"})
    req = request()
    with pytest.raises(UnknownOutcome) as info:
        await env.adapter.create_payment(req)
    assert info.value.code == "http_5xx"
    assert (await env.adapter.query_payment(req.out_trade_no)).status is (
        ChannelPaymentStatus.not_found
    )


# ---------------------------------------------------------------- close
async def test_close(env: Env) -> None:
    req = request()
    await env.adapter.create_payment(req)
    await env.adapter.close_payment(req.out_trade_no)
    assert (await env.adapter.query_payment(req.out_trade_no)).status is (
        ChannelPaymentStatus.closed
    )
    await env.adapter.close_payment(req.out_trade_no)  # closing a closed order is success
    await env.adapter.close_payment("att_never_created")  # so is closing an unknown one
    # a closed order cannot be paid any more, nor re-created
    paid = await env.client.post(f"/_sandbox/orders/{req.out_trade_no}/pay", json={"result": "pay"})
    assert paid.json()["changed"] is False
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_payment(req)
    assert info.value.code == "ACQ.TRADE_HAS_CLOSE"
    assert env.receiver.got == []  # a merchant close is not notified


async def test_close_of_paid_order_is_already_paid(env: Env) -> None:
    req = request()
    await env.adapter.create_payment(req)
    await env.client.post(f"/_sandbox/orders/{req.out_trade_no}/pay", json={"result": "pay"})
    with pytest.raises(BusinessError) as info:
        await env.adapter.close_payment(req.out_trade_no)
    assert info.value.code == "already_paid"
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_payment(req)
    assert info.value.code == "ACQ.TRADE_HAS_SUCCESS"


async def test_expired_order_closes_and_notifies(env: Env) -> None:
    frozen = clock.FrozenClock()
    previous = clock.set_clock(frozen)
    try:
        req = request(expires_in=60)
        await env.adapter.create_payment(req)
        frozen.advance(61)
        state = await env.adapter.query_payment(req.out_trade_no)
        assert state.status is ChannelPaymentStatus.closed
        await wait_for(lambda: len(env.receiver.got) == 1)
        note = await env.adapter.parse_notification({}, env.receiver.got[0])
        assert note.payment.status is ChannelPaymentStatus.closed
    finally:
        clock.set_clock(previous)


# ---------------------------------------------------------------- mounting
async def test_mounted_sandbox_uses_its_base_url() -> None:
    sandbox = Sandbox(time_scale=0.001)
    outer = FastAPI()
    outer.mount("/sandbox/alipay", sandbox.app)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), timeout=2.0)
    try:
        creds = sandbox.provision("http://gw.test/sandbox/alipay")
        assert creds["gateway"] == "http://gw.test/sandbox/alipay/gateway.do"
        adapter = AlipayAdapter(creds, http)
        req = request()
        created = await adapter.create_payment(req)
        assert created.next_action is not None
        code_url = created.next_action.code_url
        assert code_url == f"http://gw.test/sandbox/alipay/_sandbox/pay/{req.out_trade_no}"
        assert (await http.get(code_url)).status_code == 200
        page = await adapter.create_payment(request("alipay_page"))
        assert page.next_action is not None and page.next_action.url is not None
        opened = await http.get(page.next_action.url)
        assert opened.headers["location"].startswith("http://gw.test/sandbox/alipay/_sandbox/pay/")
    finally:
        await sandbox.core.aclose()
        await http.aclose()


def test_provisioned_keys_are_a_matching_rsa2048_pair(env: Env) -> None:
    private = p.load_private_key(env.creds["app_private_key"])
    assert private.key_size == 2048
    registered = env.sandbox.apps[env.creds["app_id"]].public_key
    assert registered.public_numbers() == private.public_key().public_numbers()
    der = base64.b64decode("".join(env.creds["alipay_public_key"].splitlines()[1:-1]))
    assert serialization.load_der_public_key(der).public_numbers() == (  # type: ignore[union-attr]
        p.load_public_key(env.sandbox.alipay_public_key).public_numbers()
    )

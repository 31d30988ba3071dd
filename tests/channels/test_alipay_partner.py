"""Alipay JSAPI / mini-program payments (``alipay.trade.create``, ``JSAPI_PAY``) and ISV mode
(第三方应用授权: ``app_auth_token``): adapter ↔ sandbox, with ``python-alipay-sdk``
(``AliPay``, ``ISVAliPay``) as the oracle for requests and for verifying answers and
notifications."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from alipay import AliPay, ISVAliPay

from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.adapter import AlipayAdapter
from paymux.channels.alipay.sandbox import Sandbox
from paymux.channels.base import (
    BusinessError,
    ChannelPaymentStatus,
    ChannelRefundStatus,
    CreatePayment,
    CreateRefund,
    InvalidCredentials,
    InvalidNotification,
    NextActionType,
)
from paymux.kit import clock
from tests.channels.test_alipay import BASE, NOTIFY_URL, Receiver, order_no, wait_for

BUYER = "2088102122524333"
OPEN_ID = "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5"  # Alipay's documented example
FORM = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}


@dataclass
class Env:
    sandbox: Sandbox
    receiver: Receiver
    client: httpx.AsyncClient
    http: httpx.AsyncClient
    sent: list[httpx.Request]
    creds: dict[str, Any]

    def adapter(self, creds: dict[str, Any] | None = None, **overrides: Any) -> AlipayAdapter:
        return AlipayAdapter({**(creds or self.creds), **overrides}, self.http)

    def sent_params(self, index: int = -1) -> dict[str, str]:
        request = self.sent[index]
        params = dict(parse_qsl(request.url.query.decode()))
        params.update(parse_qsl(request.content.decode()))
        return params

    def isv_sdk(self, creds: dict[str, Any]) -> Any:
        return ISVAliPay(
            appid=creds["app_id"], app_private_key_string=creds["app_private_key"],
            alipay_public_key_string=creds["alipay_public_key"],
            app_auth_token=creds["app_auth_token"],
        )  # fmt: skip

    async def sdk_call(self, sdk: Any, method: str, biz: dict[str, Any]) -> dict[str, Any]:
        """The SDK builds and signs; the sandbox answers; the SDK verifies the answer."""
        query = sdk.sign_data(sdk.build_body(method, biz))
        raw = (await self.client.get(f"/gateway.do?{query}")).text
        key = method.replace(".", "_") + "_response"
        answer: dict[str, Any] = sdk._verify_and_return_sync_response(raw, key)
        return answer


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    receiver = Receiver()
    notifier = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app), timeout=2.0)
    sandbox = Sandbox(http=notifier, time_scale=0.001, hold_timeout_seconds=1.0)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app), base_url=BASE)
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sandbox.app), timeout=2.0,
        event_hooks={"request": [record]},
    )  # fmt: skip
    yield Env(sandbox, receiver, client, http, sent, sandbox.provision_sub_merchant(BASE))
    await sandbox.core.aclose()
    for c in (notifier, client, http):
        await c.aclose()


def jsapi(**customer: str) -> CreatePayment:
    return CreatePayment(
        out_trade_no=order_no(), method="alipay_jsapi", amount=1999, currency="CNY",
        subject="Coffee 咖啡", notify_url=NOTIFY_URL,
        expires_at=clock.now() + dt.timedelta(minutes=15), customer=customer,
    )  # fmt: skip


def qr() -> CreatePayment:
    return CreatePayment(
        out_trade_no=order_no(), method="alipay_qr", amount=1999, currency="CNY",
        subject="Tea", notify_url=NOTIFY_URL, expires_at=clock.now() + dt.timedelta(minutes=15),
    )  # fmt: skip


async def pay(env: Env, out_trade_no: str) -> dict[str, str]:
    """The customer pays; returns the (verified-by-nothing-yet) notification's fields."""
    before = len(env.receiver.got)
    r = await env.client.post(f"/_sandbox/orders/{out_trade_no}/pay", json={"result": "pay"})
    assert r.status_code == 200, r.text
    await wait_for(lambda: len(env.receiver.got) > before)
    return dict(parse_qsl(env.receiver.got[-1].decode()))


# ------------------------------------------------------------------ JSAPI / mini-program
async def test_jsapi_with_buyer_id_creates_the_trade_for_my_trade_pay() -> None:
    receiver = Receiver()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app)) as notifier:
        sandbox = Sandbox(http=notifier, time_scale=0.001, hold_timeout_seconds=1.0)
        sent: list[httpx.Request] = []

        async def record(request: httpx.Request) -> None:
            sent.append(request)

        transport = httpx.ASGITransport(app=sandbox.app)
        async with (
            httpx.AsyncClient(transport=transport, event_hooks={"request": [record]}) as http,
            httpx.AsyncClient(transport=transport, base_url=BASE) as client,
        ):
            env = Env(sandbox, receiver, client, http, sent, sandbox.provision(BASE))
            req = jsapi(buyer_id=BUYER)
            created = await env.adapter().create_payment(req)
            assert created.next_action is not None
            assert created.next_action.type is NextActionType.sdk_params
            order = sandbox.core.find(req.out_trade_no)
            assert order is not None  # the trade exists at once (unlike precreate/page)
            assert created.next_action.params == {"tradeNO": order.channel_trade_no}
            assert created.channel_trade_no == order.channel_trade_no
            params = env.sent_params()
            assert params["method"] == "alipay.trade.create"
            assert params["notify_url"] == NOTIFY_URL and "app_auth_token" not in params
            biz = p.json.loads(params["biz_content"])
            assert biz["product_code"] == "JSAPI_PAY" and biz["buyer_id"] == BUYER
            assert biz["op_app_id"] == env.creds["app_id"]
            state = await env.adapter().query_payment(req.out_trade_no)
            assert state.status is ChannelPaymentStatus.pending

            fields = await pay(env, req.out_trade_no)
            note = await env.adapter().parse_notification(FORM, env.receiver.got[-1])
            assert note.payment is not None
            assert note.payment.status is ChannelPaymentStatus.succeeded
            assert fields["buyer_id"] == BUYER
            assert fields["app_id"] == fields["auth_app_id"] == env.creds["app_id"]
            sdk = AliPay(
                appid=env.creds["app_id"], app_notify_url=None,
                app_private_key_string=env.creds["app_private_key"],
                alipay_public_key_string=env.creds["alipay_public_key"],
            )  # fmt: skip
            signature = fields.pop("sign")
            assert sdk.verify(fields, signature) is True

            # The SDK's own trade.create (its signing) is accepted; it verifies our answer.
            answer = await env.sdk_call(sdk, "alipay.trade.create", {
                "out_trade_no": order_no(), "total_amount": "0.01", "subject": "x",
                "product_code": "JSAPI_PAY", "buyer_open_id": OPEN_ID,
            })  # fmt: skip
            assert answer["code"] == "10000" and answer["trade_no"]
            refused = await env.sdk_call(sdk, "alipay.trade.create", {
                "out_trade_no": order_no(), "total_amount": "0.01", "subject": "x",
                "product_code": "JSAPI_PAY",
            })  # fmt: skip
            assert refused["code"] == "40004"
            await sandbox.core.aclose()


async def test_jsapi_with_open_id(env: Env) -> None:
    req = jsapi(buyer_id=OPEN_ID)  # not a 2088… user id: the newer open id form
    await env.adapter().create_payment(req)
    biz = p.json.loads(env.sent_params()["biz_content"])
    assert biz["buyer_open_id"] == OPEN_ID and "buyer_id" not in biz
    fields = await pay(env, req.out_trade_no)
    assert fields["buyer_open_id"] == OPEN_ID
    explicit = jsapi(buyer_open_id=OPEN_ID)
    await env.adapter().create_payment(explicit)
    assert p.json.loads(env.sent_params()["biz_content"])["buyer_open_id"] == OPEN_ID


async def test_jsapi_without_buyer_fails_before_any_call(env: Env) -> None:
    with pytest.raises(BusinessError) as info:
        await env.adapter().create_payment(jsapi())
    assert info.value.code == "customer_required"
    assert env.sent == []
    # ...and the gateway's pre-check refuses it before anything is created.
    from paymux.channels.base import PaymentRequest

    unnamed = PaymentRequest(method="alipay_jsapi", amount=100, currency="CNY", subject="x")
    assert [x.code for x in AlipayAdapter.check_request(unnamed)] == ["customer_required"]
    named = PaymentRequest(method="alipay_jsapi", amount=100, currency="CNY", subject="x",
                           customer={"buyer_open_id": OPEN_ID})  # fmt: skip
    assert AlipayAdapter.check_request(named) == []
    assert "alipay_jsapi" in AlipayAdapter.methods


# ------------------------------------------------------------------ ISV mode
async def test_isv_sends_app_auth_token_on_every_call(env: Env) -> None:
    c = env.creds
    adapter = env.adapter()
    req = qr()
    await adapter.create_payment(req)
    fields = await pay(env, req.out_trade_no)
    # Notification: app_id is the ISV's app (the caller), auth_app_id the sub-merchant's.
    assert fields["app_id"] == c["app_id"] and fields["auth_app_id"] == c["auth_app_id"]
    assert fields["seller_id"] == c["seller_id"]
    note = await adapter.parse_notification(FORM, env.receiver.got[-1])
    assert note.payment is not None and note.payment.status is ChannelPaymentStatus.succeeded
    signature = fields.pop("sign")
    assert env.isv_sdk(c).verify(fields, signature) is True
    assert (await adapter.query_payment(req.out_trade_no)).status is (
        ChannelPaymentStatus.succeeded
    )
    refund = await adapter.create_refund(
        CreateRefund(
            "re" + req.out_trade_no, req.out_trade_no, None, 500, 1999, "CNY", NOTIFY_URL
        )  # fmt: skip
    )
    assert refund.status is ChannelRefundStatus.succeeded
    queried = await adapter.query_refund("re" + req.out_trade_no, req.out_trade_no)
    assert queried.status is ChannelRefundStatus.succeeded
    unpaid = qr()
    await adapter.create_payment(unpaid)
    await adapter.close_payment(unpaid.out_trade_no)
    assert (await adapter.query_payment(unpaid.out_trade_no)).status is (
        ChannelPaymentStatus.closed
    )
    methods = {env.sent_params(i)["method"] for i in range(len(env.sent))}
    assert methods >= {"alipay.trade.precreate", "alipay.trade.query", "alipay.trade.refund",
                       "alipay.trade.fastpay.refund.query", "alipay.trade.close"}  # fmt: skip
    for i in range(len(env.sent)):
        params = env.sent_params(i)
        assert params["app_auth_token"] == c["app_auth_token"] and params["app_id"] == c["app_id"]
        assert p.verify_request(params, p.load_public_key(_public_of(c["app_private_key"])))

    # The SDK's ISV client (its own app_auth_token handling) reads the sub-merchant's trade.
    answer = await env.sdk_call(
        env.isv_sdk(c), "alipay.trade.query", {"out_trade_no": req.out_trade_no}
    )
    assert answer["trade_status"] == "TRADE_SUCCESS"


async def test_isv_jsapi_uses_the_sub_merchants_mini_program(env: Env) -> None:
    req = jsapi(buyer_id=BUYER)
    created = await env.adapter().create_payment(req)
    params = env.sent_params()
    biz = p.json.loads(params["biz_content"])
    assert biz["op_app_id"] == env.creds["auth_app_id"]
    assert params["app_auth_token"] == env.creds["app_auth_token"]
    order = env.sandbox.core.get_order(env.creds["auth_app_id"], req.out_trade_no)
    assert order is not None and created.channel_trade_no == order.channel_trade_no
    await env.adapter(mini_app_id="2021000000000001").create_payment(jsapi(buyer_id=BUYER))
    assert p.json.loads(env.sent_params()["biz_content"])["op_app_id"] == "2021000000000001"


async def test_bad_app_auth_tokens_are_refused_with_nothing_created(env: Env) -> None:
    other_isv = env.sandbox.provision_sub_merchant(BASE)  # another ISV's sub-merchant
    for token in ("201901BBbogus", other_isv["app_auth_token"]):
        req = qr()
        with pytest.raises(BusinessError) as info:
            await env.adapter(app_auth_token=token).create_payment(req)
        assert info.value.code == "aop.invalid-app-auth-token"
        assert env.sandbox.core.find(req.out_trade_no) is None
    sdk = ISVAliPay(
        appid=env.creds["app_id"], app_private_key_string=env.creds["app_private_key"],
        alipay_public_key_string=env.creds["alipay_public_key"], app_auth_token="201901BBbogus",
    )  # fmt: skip
    answer = await env.sdk_call(sdk, "alipay.trade.query", {"out_trade_no": "x"})
    assert (answer["code"], answer["sub_code"]) == ("20001", "aop.invalid-app-auth-token")

    frozen = clock.FrozenClock(clock.now())
    previous = clock.set_clock(frozen)
    try:
        grant = env.sandbox.authorize(env.creds["app_id"], expires_in=60)
        adapter = env.adapter(
            app_auth_token=grant["app_auth_token"], auth_app_id=grant["auth_app_id"],
            seller_id=grant["user_id"],
        )  # fmt: skip
        frozen.advance(61)
        req = qr()
        with pytest.raises(BusinessError) as info:
            await adapter.create_payment(req)
        assert info.value.code == "aop.app-auth-token-time-out"
        assert env.sandbox.core.find(req.out_trade_no) is None
    finally:
        clock.set_clock(previous)


async def test_another_sub_merchants_notification_is_refused(env: Env) -> None:
    grant = env.sandbox.authorize(env.creds["app_id"])  # a second sub-merchant, same ISV
    sibling = env.adapter(app_auth_token=grant["app_auth_token"],
                          auth_app_id=grant["auth_app_id"], seller_id=grant["user_id"])  # fmt: skip
    req = qr()
    await sibling.create_payment(req)
    await pay(env, req.out_trade_no)
    body = env.receiver.got[-1]
    assert (await sibling.parse_notification(FORM, body)).payment is not None
    with pytest.raises(InvalidNotification) as info:  # signed for the ISV, but not for us
        await env.adapter(seller_id=grant["user_id"]).parse_notification(FORM, body)
    assert info.value.code == "wrong_app"


async def test_control_api_authorizes_a_sub_merchant(env: Env) -> None:
    r = await env.client.post("/_sandbox/app_auths", json={"isv_app_id": env.creds["app_id"]})
    assert r.status_code == 200
    grant = r.json()
    assert set(grant) == {"app_auth_token", "auth_app_id", "user_id"}
    assert p.USER_ID.fullmatch(grant["user_id"])
    r = await env.client.post("/_sandbox/app_auths", json={"isv_app_id": "nope"})
    assert r.status_code == 404


def test_isv_credentials_are_checked(env: Env) -> None:
    with pytest.raises(InvalidCredentials):
        env.adapter(auth_app_id=None)
    plain = {k: v for k, v in env.creds.items() if k not in ("app_auth_token", "auth_app_id")}
    with pytest.raises(InvalidCredentials):
        env.adapter(plain, auth_app_id="2021000000000001")
    assert "app_auth_token" not in env.adapter(plain)._cert_params


def _public_of(private_pem: str) -> str:
    from paymux.channels import sandbox_kit

    return sandbox_kit.public_key_pem(p.load_private_key(private_pem).public_key())

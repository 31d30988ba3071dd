"""WeChat Pay API v3: codec, adapter and sandbox, checked against the official SDK.

The independent oracle is ``wechatpayv3`` (minibear2021/wechatpayv3): its signing, signature
verification and AEAD decryption must agree with ours in both directions. Everything runs in
process: the adapter reaches the sandbox through ``httpx.ASGITransport`` at http://wx.test, and
the sandbox's notifier reaches a small recording receiver the same way.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import types
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import wechatpayv3.utils as wx_utils
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request, Response
from wechatpayv3.core import Core as WxCore

from paymux.channels import registry
from paymux.channels.base import (
    BusinessError,
    ChannelPaymentStatus,
    CreatePayment,
    InvalidCredentials,
    InvalidNotification,
    NextActionType,
    RetryableError,
    UnknownOutcome,
)
from paymux.channels.sandbox_kit import NotifyMode, Outcome, Script
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.adapter import WechatPayAdapter
from paymux.channels.wechatpay.sandbox import RETRY_SCHEDULE, Sandbox
from paymux.kit import clock

BASE = "http://wx.test"
NOTIFY_URL = "http://merchant.test/notify/wechatpay"


# ------------------------------------------------------------------ harness
@dataclass
class Receiver:
    """The merchant's notification endpoint: records deliveries, answers scripted statuses."""

    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    received_at: list[dt.datetime] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)
    after_each: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        self.app = FastAPI()

        @self.app.post("/{path:path}")
        async def receive(request: Request) -> Response:
            self.received.append((dict(request.headers), await request.body()))
            self.received_at.append(clock.now())
            if self.after_each is not None:
                self.after_each()
            return Response(status_code=self.statuses.popleft() if self.statuses else 204)


class TimeoutASGITransport(httpx.AsyncBaseTransport):
    """ASGITransport honouring the client's read timeout (the plain one ignores timeouts)."""

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
    adapter: WechatPayAdapter
    sent: list[httpx.Request]

    def official(self, creds: dict[str, Any] | None = None) -> WxCore:
        """The official SDK's core for a merchant, in platform public-key mode."""
        c = creds or self.creds
        return WxCore(
            mchid=c["mchid"],
            cert_serial_no=c["merchant_serial_no"],
            private_key=c["merchant_private_key"],
            apiv3_key=c["apiv3_key"],
            public_key=c["platform_public_key"],
            public_key_id=c["platform_public_key_id"],
        )

    def client(self, timeout: float = 5.0) -> httpx.AsyncClient:
        return client_for(self.sandbox, self.sent, timeout)


def client_for(
    sandbox: Sandbox, sent: list[httpx.Request], timeout: float = 5.0
) -> httpx.AsyncClient:
    """A client reaching the sandbox at http://wx.test, recording every request it sends."""

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    return httpx.AsyncClient(
        transport=TimeoutASGITransport(sandbox.app),
        timeout=timeout,
        event_hooks={"request": [record]},
    )


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    receiver = Receiver()
    notifier = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app))
    sandbox = Sandbox(http=notifier, time_scale=0.00001, hold_timeout_seconds=1.0)
    creds = sandbox.provision(BASE)
    sent: list[httpx.Request] = []
    http = client_for(sandbox, sent)
    yield Env(sandbox, receiver, creds, http, WechatPayAdapter(creds, http), sent)
    await sandbox.core.aclose()
    await http.aclose()
    await notifier.aclose()


def order_no() -> str:
    return "wx" + uuid.uuid4().hex[:24]


def payment(method: str = "wechat_native", **extra: Any) -> CreatePayment:
    values: dict[str, Any] = {
        "out_trade_no": order_no(),
        "method": method,
        "amount": 1999,
        "currency": "CNY",
        "subject": "T-shirt",
        "notify_url": NOTIFY_URL,
        "expires_at": clock.now() + dt.timedelta(minutes=15),
        **extra,
    }
    return CreatePayment(**values)


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


async def settle_tasks() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def merchant_public_key(creds: dict[str, Any]) -> rsa.RSAPublicKey:
    return protocol.load_private_key(creds["merchant_private_key"]).public_key()


async def pay(env: Env, out_trade_no: str, result: str = "pay") -> None:
    r = await env.http.post(f"{BASE}/_sandbox/orders/{out_trade_no}/pay", json={"result": result})
    assert r.status_code == 200, r.text


async def paid_notification(env: Env) -> tuple[str, dict[str, str], bytes]:
    created = payment()
    await env.adapter.create_payment(created)
    await pay(env, created.out_trade_no)
    await until(lambda: len(env.receiver.received) == 1, "the notification")
    headers, body = env.receiver.received[0]
    return created.out_trade_no, headers, body


# ------------------------------------------------------------------ codec vs the official SDK
def test_request_signature_equals_official_sdk(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    key = protocol.load_private_key(env.creds["merchant_private_key"])
    monkeypatch.setattr(wx_utils, "time", types.SimpleNamespace(time=lambda: 1_700_000_000.5))
    data = {"mchid": env.creds["mchid"], "out_trade_no": "abc123456"}
    for method, path, body in (
        ("POST", "/v3/pay/transactions/native", json.dumps(data)),
        ("GET", "/v3/pay/transactions/out-trade-no/abc123456?mchid=1", ""),
    ):
        theirs = wx_utils.build_authorization(
            path, method, env.creds["mchid"], env.creds["merchant_serial_no"], key,
            data=body or None, nonce_str="NONCE123",
        )  # fmt: skip
        ours = protocol.build_authorization(
            mchid=env.creds["mchid"], serial_no=env.creds["merchant_serial_no"],
            private_key=key, method=method, path_with_query=path, body=body.encode(),
            timestamp=1_700_000_000, nonce="NONCE123",
        )  # fmt: skip
        assert ours == theirs
        parsed = protocol.parse_authorization(theirs)
        assert parsed.header() == theirs
        assert (parsed.mchid, parsed.timestamp, parsed.nonce_str) == (
            env.creds["mchid"], "1700000000", "NONCE123",
        )  # fmt: skip


def test_aead_and_platform_signature_agree_with_official_sdk(env: Env) -> None:
    apiv3 = env.creds["apiv3_key"]
    plaintext = json.dumps({"hello": "世界"}, ensure_ascii=False).encode()
    resource = protocol.encrypt_resource(apiv3, plaintext)
    decrypted = wx_utils.aes_decrypt(
        resource["nonce"], resource["ciphertext"], resource["associated_data"], apiv3
    )
    assert decrypted == plaintext.decode()
    assert protocol.decrypt_resource(apiv3, resource) == plaintext
    with pytest.raises(protocol.DecryptionError):
        protocol.decrypt_resource("x" * 32, resource)
    with pytest.raises(protocol.DecryptionError):
        protocol.decrypt_resource(apiv3, {**resource, "associated_data": "certificate"})

    body = b'{"a":1}'
    headers = env.sandbox.sign(body)
    assert env.official()._verify_signature(headers, body.decode())
    keys = {env.creds["platform_public_key_id"]: protocol.load_public_key(
        env.creds["platform_public_key"])}  # fmt: skip
    assert (
        protocol.verify_response(headers, body, public_keys=keys) == headers[protocol.HEADER_SERIAL]
    )
    with pytest.raises(protocol.SignatureError):
        protocol.verify_response(headers, body + b" ", public_keys=keys)


def test_codec_vocabulary_and_time() -> None:
    assert protocol.map_trade_state("SUCCESS") is ChannelPaymentStatus.succeeded
    assert protocol.map_trade_state("NOTPAY") is ChannelPaymentStatus.pending
    assert protocol.map_trade_state("USERPAYING") is ChannelPaymentStatus.pending
    assert protocol.map_trade_state("CLOSED") is ChannelPaymentStatus.closed
    assert protocol.map_trade_state("REVOKED") is ChannelPaymentStatus.closed
    assert protocol.map_trade_state("PAYERROR") is ChannelPaymentStatus.failed
    assert protocol.map_trade_state("REFUND") is ChannelPaymentStatus.succeeded  # refunds are
    with pytest.raises(ValueError):  # their own objects; the order stays paid
        protocol.map_trade_state("UNKNOWN_STATE")
    when = dt.datetime(2024, 1, 31, 4, 0, 5, 123, tzinfo=dt.UTC)
    assert protocol.rfc3339(when) == "2024-01-31T12:00:05+08:00"
    assert protocol.parse_rfc3339("2024-01-31T12:00:05+08:00") == when.replace(microsecond=0)
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    ts = int(now.timestamp())
    protocol.check_fresh(ts - 300, now=now)
    protocol.check_fresh(ts + 300, now=now)
    for bad in (ts - 301, ts + 301, "soon"):
        with pytest.raises(protocol.StaleTimestamp):
            protocol.check_fresh(bad, now=now)
    with pytest.raises(protocol.SignatureError):
        protocol.parse_authorization('WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="x"')
    with pytest.raises(protocol.SignatureError):
        protocol.parse_authorization("Bearer abc")


# ------------------------------------------------------------------ request authentication
async def test_sandbox_accepts_official_sdk_request_and_its_sdk_verifies_answer(env: Env) -> None:
    key = protocol.load_private_key(env.creds["merchant_private_key"])
    no = order_no()
    data = {
        "appid": env.creds["appid"], "mchid": env.creds["mchid"], "description": "Mug",
        "out_trade_no": no, "notify_url": NOTIFY_URL, "amount": {"total": 100},
    }  # fmt: skip
    body = json.dumps(data)  # the SDK's own serialisation, with spaces
    path = "/v3/pay/transactions/native"
    auth = wx_utils.build_authorization(
        path, "POST", env.creds["mchid"], env.creds["merchant_serial_no"], key, data=body
    )
    r = await env.http.post(
        BASE + path,
        content=body,
        headers={"Authorization": auth, "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"code_url": f"{BASE}/_sandbox/pay/{no}"}
    assert env.official()._verify_signature(r.headers, r.text)

    query = f"/v3/pay/transactions/out-trade-no/{no}?mchid={env.creds['mchid']}"
    auth = wx_utils.build_authorization(
        query, "GET", env.creds["mchid"], env.creds["merchant_serial_no"], key
    )
    r = await env.http.get(BASE + query, headers={"Authorization": auth})
    assert r.status_code == 200
    assert r.json()["trade_state"] == "NOTPAY"
    assert env.official()._verify_signature(r.headers, r.text)


async def test_adapter_authorization_verifies_with_both_codecs(env: Env) -> None:
    created = payment()
    await env.adapter.create_payment(created)
    await env.adapter.query_payment(created.out_trade_no)
    assert len(env.sent) == 2
    public_key = merchant_public_key(env.creds)
    for request in env.sent:
        auth = protocol.parse_authorization(request.headers["Authorization"])
        assert auth.mchid == env.creds["mchid"]
        assert auth.serial_no == env.creds["merchant_serial_no"]
        path = request.url.raw_path.decode()
        body = request.content
        # The official verifier builds "A\nB\nC\n": fold METHOD\nPATH\nTIMESTAMP into A.
        assert wx_utils.rsa_verify(
            f"{request.method}\n{path}\n{auth.timestamp}", auth.nonce_str, body.decode(),
            auth.signature, public_key,
        )  # fmt: skip
        protocol.verify_request(
            auth, public_key=public_key, method=request.method, path_with_query=path, body=body
        )
        with pytest.raises(protocol.SignatureError):
            protocol.verify_request(
                auth, public_key=public_key, method=request.method,
                path_with_query=path + "x", body=body,
            )  # fmt: skip


async def test_sandbox_rejects_badly_signed_requests(env: Env) -> None:
    key = protocol.load_private_key(env.creds["merchant_private_key"])
    other = env.sandbox.provision(BASE)
    other_key = protocol.load_private_key(other["merchant_private_key"])
    path = "/v3/pay/transactions/native"
    body = protocol.encode_json({
        "appid": env.creds["appid"], "mchid": env.creds["mchid"], "description": "Mug",
        "out_trade_no": order_no(), "notify_url": NOTIFY_URL, "amount": {"total": 100},
    })  # fmt: skip

    def signed(**overrides: Any) -> str:
        args: dict[str, Any] = {
            "mchid": env.creds["mchid"], "serial_no": env.creds["merchant_serial_no"],
            "private_key": key, "method": "POST", "path_with_query": path, "body": body,
        }  # fmt: skip
        return protocol.build_authorization(**{**args, **overrides})

    cases = {
        "missing": None,
        "other merchant's key": signed(private_key=other_key),
        "wrong serial": signed(serial_no=other["merchant_serial_no"]),
        "body differs": signed(body=body + b" "),
        "path differs": signed(path_with_query="/v3/pay/transactions/h5"),
        "stale": signed(timestamp=protocol.unix_now() - 600),
        "unknown merchant": signed(mchid="1999999999"),
        "garbage": "WECHATPAY2-SHA256-RSA2048 nonsense",
    }
    for case, auth in cases.items():
        headers = {"Content-Type": "application/json"}
        if auth is not None:
            headers["Authorization"] = auth
        r = await env.http.post(BASE + path, content=body, headers=headers)
        assert r.status_code == 401, case
        assert r.json()["code"] == "SIGN_ERROR", case
        assert env.official()._verify_signature(r.headers, r.text), case  # errors are signed
    assert env.sandbox.core.orders == {}

    r = await env.http.post(BASE + path, content=body, headers={"Authorization": signed()})
    assert r.status_code == 200


async def test_sandbox_validates_bodies(env: Env) -> None:
    key = protocol.load_private_key(env.creds["merchant_private_key"])
    good = {
        "appid": env.creds["appid"], "mchid": env.creds["mchid"], "description": "Mug",
        "out_trade_no": order_no(), "notify_url": NOTIFY_URL, "amount": {"total": 100},
    }  # fmt: skip
    bad_bodies: list[tuple[str, Any, str]] = [
        ("native", {**good, "amount": {"total": "100"}}, "PARAM_ERROR"),
        ("native", {**good, "amount": {"total": 0}}, "PARAM_ERROR"),
        ("native", {k: v for k, v in good.items() if k != "description"}, "PARAM_ERROR"),
        ("native", {**good, "out_trade_no": "a/b"}, "PARAM_ERROR"),
        ("native", {**good, "time_expire": "tomorrow"}, "PARAM_ERROR"),
        ("native", {**good, "mchid": "1600000000"}, "PARAM_ERROR"),
        ("native", {**good, "appid": "wx0000"}, "APPID_MCHID_NOT_MATCH"),
        ("jsapi", good, "PARAM_ERROR"),
        ("h5", good, "PARAM_ERROR"),
        ("native", "not json", "PARAM_ERROR"),
    ]
    for kind, data, code in bad_bodies:
        body = data.encode() if isinstance(data, str) else protocol.encode_json(data)
        path = f"/v3/pay/transactions/{kind}"
        auth = protocol.build_authorization(
            mchid=env.creds["mchid"], serial_no=env.creds["merchant_serial_no"],
            private_key=key, method="POST", path_with_query=path, body=body,
        )  # fmt: skip
        r = await env.http.post(BASE + path, content=body, headers={"Authorization": auth})
        assert r.status_code == 400, (kind, data, r.text)
        assert r.json()["code"] == code, (kind, data)
    assert env.sandbox.core.orders == {}


# ------------------------------------------------------------------ create / query round trips
async def test_create_native_and_query(env: Env) -> None:
    created = payment()
    result = await env.adapter.create_payment(created)
    assert result.status is ChannelPaymentStatus.pending
    assert result.next_action is not None
    assert result.next_action.type is NextActionType.qr_code
    assert result.next_action.code_url == f"{BASE}/_sandbox/pay/{created.out_trade_no}"
    sent = json.loads(env.sent[0].content)
    assert env.sent[0].url.path == "/v3/pay/transactions/native"
    assert sent["appid"] == env.creds["appid"] and sent["mchid"] == env.creds["mchid"]
    assert sent["description"] == "T-shirt"
    assert sent["amount"] == {"total": 1999, "currency": "CNY"}
    assert sent["notify_url"] == NOTIFY_URL
    assert sent["time_expire"] == protocol.rfc3339(created.expires_at)
    assert sent["time_expire"].endswith("+08:00")
    assert "payer" not in sent and "scene_info" not in sent

    page = await env.http.get(result.next_action.code_url)
    assert page.status_code == 200 and created.out_trade_no in page.text

    state = await env.adapter.query_payment(created.out_trade_no)
    assert state.status is ChannelPaymentStatus.pending
    assert state.out_trade_no == created.out_trade_no
    assert state.amount == 1999 and state.currency == "CNY"
    assert state.channel_trade_no is None and state.paid_at is None
    assert state.raw["trade_state"] == "NOTPAY"

    missing = await env.adapter.query_payment(order_no())
    assert missing.status is ChannelPaymentStatus.not_found


async def test_create_is_idempotent_per_out_trade_no(env: Env) -> None:
    created = payment()
    first = await env.adapter.create_payment(created)
    again = await env.adapter.create_payment(created)
    assert first.next_action == again.next_action
    assert len(env.sandbox.core.orders) == 1
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_payment(
            payment(out_trade_no=created.out_trade_no, amount=created.amount + 1)
        )
    assert info.value.code == "duplicate_out_trade_no"


async def test_create_jsapi_signs_pay_params_like_official_sdk(env: Env) -> None:
    created = payment("wechat_jsapi", customer={"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"})
    result = await env.adapter.create_payment(created)
    assert result.next_action is not None
    assert result.next_action.type is NextActionType.sdk_params
    params = result.next_action.params
    assert params is not None
    assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    order = env.sandbox.core.get_order(env.creds["mchid"], created.out_trade_no)
    assert order is not None
    assert params["appId"] == env.creds["appid"]
    assert params["package"] == f"prepay_id={order.extra['prepay_id']}"
    assert params["signType"] == "RSA"
    expected = env.official().sign(
        [params["appId"], params["timeStamp"], params["nonceStr"], params["package"]]
    )
    assert params["paySign"] == expected
    sent = json.loads(env.sent[0].content)
    assert env.sent[0].url.path == "/v3/pay/transactions/jsapi"
    assert sent["payer"] == {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}
    state = await env.adapter.query_payment(created.out_trade_no)
    assert state.status is ChannelPaymentStatus.pending


async def test_create_jsapi_without_openid_fails_before_any_call(env: Env) -> None:
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_payment(payment("wechat_jsapi"))
    assert info.value.code == "customer_required"
    assert env.sent == []
    assert WechatPayAdapter.required_customer["wechat_jsapi"] == ("openid",)


async def test_create_app_signs_pay_params_like_official_sdk(env: Env) -> None:
    created = payment("wechat_app")
    result = await env.adapter.create_payment(created)
    assert result.next_action is not None
    params = result.next_action.params
    assert result.next_action.type is NextActionType.sdk_params and params is not None
    order = env.sandbox.core.get_order(env.creds["mchid"], created.out_trade_no)
    assert order is not None
    assert params["appid"] == env.creds["appid"]
    assert params["partnerid"] == env.creds["mchid"]
    assert params["prepayid"] == order.extra["prepay_id"]
    assert params["package"] == "Sign=WXPay"
    expected = env.official().sign(
        [params["appid"], params["timestamp"], params["noncestr"], params["prepayid"]]
    )
    assert params["sign"] == expected
    assert env.sent[0].url.path == "/v3/pay/transactions/app"


async def test_create_h5(env: Env) -> None:
    created = payment("wechat_h5", client_ip="203.0.113.9")
    result = await env.adapter.create_payment(created)
    assert result.next_action is not None
    assert result.next_action.type is NextActionType.redirect
    assert result.next_action.url == f"{BASE}/_sandbox/pay/{created.out_trade_no}"
    sent = json.loads(env.sent[0].content)
    assert sent["scene_info"] == {"payer_client_ip": "203.0.113.9", "h5_info": {"type": "Wap"}}
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_payment(payment("wechat_h5"))
    assert info.value.code == "client_ip_required"


async def test_unsupported_method_and_currency(env: Env) -> None:
    with pytest.raises(BusinessError):
        await env.adapter.create_payment(payment("alipay_qr"))
    with pytest.raises(BusinessError):
        await env.adapter.create_payment(payment(currency="USD"))
    assert env.sent == []


async def test_mounted_under_a_root_path(env: Env) -> None:
    parent = FastAPI()
    parent.mount("/sandbox/wechatpay", env.sandbox.app)
    gateway = "http://gw.test/sandbox/wechatpay"
    creds = env.sandbox.provision(gateway)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=parent)) as http:
        adapter = WechatPayAdapter(creds, http)
        created = payment()
        result = await adapter.create_payment(created)
        assert result.next_action is not None
        assert result.next_action.code_url == f"{gateway}/_sandbox/pay/{created.out_trade_no}"
        assert (await http.get(result.next_action.code_url)).status_code == 200
        r = await http.post(
            f"{gateway}/_sandbox/orders/{created.out_trade_no}/pay", json={"result": "pay"}
        )
        assert r.status_code == 200
        state = await adapter.query_payment(created.out_trade_no)
        assert state.status is ChannelPaymentStatus.succeeded
        await adapter.close_payment(order_no())


# ------------------------------------------------------------------ pay → notification
async def test_paid_order_notifies_and_queries_succeeded(env: Env) -> None:
    no, headers, body = await paid_notification(env)
    note = await env.adapter.parse_notification(headers, body)
    envelope = json.loads(body)
    assert envelope["event_type"] == "TRANSACTION.SUCCESS"
    assert envelope["resource_type"] == "encrypt-resource"
    assert envelope["resource"]["algorithm"] == "AEAD_AES_256_GCM"
    assert note.event_key == envelope["id"]
    state = note.payment
    assert state.out_trade_no == no
    assert state.status is ChannelPaymentStatus.succeeded
    assert state.amount == 1999 and state.currency == "CNY"
    assert state.paid_at is not None and state.paid_at.tzinfo is not None
    order = env.sandbox.core.find(no)
    assert order is not None and state.channel_trade_no == order.channel_trade_no

    # The official SDK verifies the same notification and decrypts the same transaction.
    official = env.official().callback(headers, body)
    assert official is not None
    assert official["resource"] == state.raw
    assert official["resource"]["transaction_id"] == state.channel_trade_no
    assert official["resource"]["trade_state"] == "SUCCESS"

    queried = await env.adapter.query_payment(no)
    assert queried.status is ChannelPaymentStatus.succeeded
    assert queried.channel_trade_no == state.channel_trade_no
    assert queried.paid_at == state.paid_at
    assert queried.raw["payer"]["openid"]
    assert env.sandbox.core.deliveries[-1]["acked"] is True


async def test_notification_is_retried_until_acknowledged(env: Env) -> None:
    env.receiver.statuses.extend([500, 404])
    await paid_notification(env)
    await until(lambda: len(env.receiver.received) == 3, "the retries")
    bodies = {body for _, body in env.receiver.received}
    assert len(bodies) == 1
    assert [d["acked"] for d in env.sandbox.core.deliveries] == [False, False, True]
    assert list(RETRY_SCHEDULE) == [
        15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
    ]  # fmt: skip
    assert env.sandbox.core.retry_schedule == list(RETRY_SCHEDULE)
    assert env.sandbox.core.is_ack(httpx.Response(200))
    assert not env.sandbox.core.is_ack(httpx.Response(202))


async def test_retries_are_signed_afresh(env: Env) -> None:
    """Hours between retries: each delivery must pass the receiver's 5-minute freshness check."""
    frozen = clock.FrozenClock(clock.now())
    previous = clock.set_clock(frozen)
    try:
        env.receiver.statuses.extend([503, 503])
        env.receiver.after_each = lambda: frozen.advance(3 * 3600)
        await paid_notification(env)
        await until(lambda: len(env.receiver.received) == 3, "the retries")
        assert len({body for _, body in env.receiver.received}) == 1
        for (headers, body), at in zip(env.receiver.received, env.receiver.received_at):
            frozen.set(at)
            note = await env.adapter.parse_notification(headers, body)
            assert note.payment.status is ChannelPaymentStatus.succeeded
        frozen.set(env.receiver.received_at[-1])
        headers, body = env.receiver.received[0]
        with pytest.raises(InvalidNotification):  # the first copy is stale by then
            await env.adapter.parse_notification(headers, body)
    finally:
        clock.set_clock(previous)


async def test_duplicate_notifications_share_an_event_key(env: Env) -> None:
    env.sandbox.core.add_script(Script(outcome=Outcome.succeed, notify=NotifyMode.duplicate))
    created = payment()
    await env.adapter.create_payment(created)
    await until(lambda: len(env.receiver.received) == 2, "both copies")
    keys = {
        (await env.adapter.parse_notification(h, b)).event_key for h, b in env.receiver.received
    }
    assert len(keys) == 1


async def test_declined_order_is_not_notified_and_queries_failed(env: Env) -> None:
    r = await env.http.post(f"{BASE}/_sandbox/scripts", json={"outcome": "decline"})
    assert r.status_code == 200
    created = payment()
    await env.adapter.create_payment(created)
    await settle_tasks()
    assert env.receiver.received == []
    state = await env.adapter.query_payment(created.out_trade_no)
    assert state.status is ChannelPaymentStatus.failed
    assert (state.failure_code, state.channel_code) == ("payment_declined", "PAYERROR")
    assert state.failure_message
    assert state.paid_at is None

    manual = payment()
    await env.adapter.create_payment(manual)
    await pay(env, manual.out_trade_no, "decline")
    await settle_tasks()
    assert env.receiver.received == []
    assert (await env.adapter.query_payment(manual.out_trade_no)).status is (
        ChannelPaymentStatus.failed
    )


async def test_invalid_notifications_are_rejected(env: Env) -> None:
    _, headers, body = await paid_notification(env)
    adapter = env.adapter

    async def rejected(h: dict[str, str], b: bytes) -> str:
        with pytest.raises(InvalidNotification) as info:
            await adapter.parse_notification(h, b)
        return info.value.code

    # tampered body
    envelope = json.loads(body)
    envelope["id"] = str(uuid.uuid4())
    assert await rejected(headers, protocol.encode_json(envelope)) == "bad_signature"
    # signature by another platform key under our key id
    impostor = Sandbox()
    forged = {k.lower(): v for k, v in impostor.sign(body).items()}
    forged["wechatpay-serial"] = env.creds["platform_public_key_id"]
    assert await rejected(forged, body) == "bad_signature"
    # unknown platform key id
    assert await rejected({**headers, "wechatpay-serial": "PUB_KEY_ID_0000"}, body) == (
        "unknown_serial"
    )
    # unsigned
    assert await rejected({"content-type": "application/json"}, body) == "unsigned"
    # stale timestamp, correctly signed
    stale = {
        k.lower(): v for k, v in env.sandbox.sign(body, timestamp=protocol.unix_now() - 400).items()
    }
    assert await rejected(stale, body) == "stale_timestamp"
    # the original, but our clock is six minutes later
    previous = clock.set_clock(clock.FrozenClock(clock.now() + dt.timedelta(minutes=6)))
    try:
        assert await rejected(headers, body) == "stale_timestamp"
    finally:
        clock.set_clock(previous)
    # still valid as delivered
    assert (await adapter.parse_notification(headers, body)).payment.status is (
        ChannelPaymentStatus.succeeded
    )


async def test_other_merchants_notification_is_rejected(env: Env) -> None:
    _, headers, body = await paid_notification(env)
    # Another merchant of the same platform: its APIv3 key cannot decrypt our resource.
    other_creds = env.sandbox.provision(BASE)
    other = WechatPayAdapter(other_creds, env.http)
    with pytest.raises(InvalidNotification) as info:
        await other.parse_notification(headers, body)
    assert info.value.code == "decrypt_failed"
    # Same APIv3 key but a different merchant id in the decrypted transaction.
    same_key = WechatPayAdapter({**other_creds, "apiv3_key": env.creds["apiv3_key"]}, env.http)
    with pytest.raises(InvalidNotification) as info:
        await same_key.parse_notification(headers, body)
    assert info.value.code == "wrong_merchant"
    # Same merchant id, different appid.
    other_app = WechatPayAdapter({**env.creds, "appid": "wx0123456789abcdef"}, env.http)
    with pytest.raises(InvalidNotification) as info:
        await other_app.parse_notification(headers, body)
    assert info.value.code == "wrong_merchant"


def test_ack(env: Env) -> None:
    ok = env.adapter.ack(True)
    assert (ok.status_code, ok.body) == (204, b"")
    assert env.sandbox.core.is_ack(httpx.Response(ok.status_code))
    fail = env.adapter.ack(False)
    assert fail.status_code == 500 and fail.media_type == "application/json"
    assert json.loads(fail.body)["code"] == "FAIL"
    assert not env.sandbox.core.is_ack(httpx.Response(fail.status_code))


# ------------------------------------------------------------------ close
async def test_close(env: Env) -> None:
    created = payment()
    await env.adapter.create_payment(created)
    await env.adapter.close_payment(created.out_trade_no)
    assert env.sent[-1].url.path.endswith(f"/{created.out_trade_no}/close")
    assert json.loads(env.sent[-1].content) == {"mchid": env.creds["mchid"]}
    state = await env.adapter.query_payment(created.out_trade_no)
    assert state.status is ChannelPaymentStatus.closed
    await env.adapter.close_payment(created.out_trade_no)  # closing twice is fine
    await env.adapter.close_payment(order_no())  # so is closing an unknown order
    r = await env.http.post(
        f"{BASE}/_sandbox/orders/{created.out_trade_no}/pay", json={"result": "pay"}
    )
    assert r.json()["changed"] is False
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_payment(created)
    assert info.value.code == "order_closed"


async def test_close_paid_order_is_already_paid(env: Env) -> None:
    no, _, _ = await paid_notification(env)
    with pytest.raises(BusinessError) as info:
        await env.adapter.close_payment(no)
    assert info.value.code == "already_paid"
    assert (await env.adapter.query_payment(no)).status is ChannelPaymentStatus.succeeded


# ------------------------------------------------------------------ failures and their classes
async def test_create_timeout_is_unknown_outcome_and_order_exists(env: Env) -> None:
    env.sandbox.core.add_script(Script(outcome=Outcome.create_timeout))
    created = payment()
    async with env.client(timeout=0.05) as impatient:
        adapter = WechatPayAdapter(env.creds, impatient)
        with pytest.raises(UnknownOutcome) as info:
            await adapter.create_payment(created)
    assert info.value.code == "read_timeout"
    state = await env.adapter.query_payment(created.out_trade_no)
    assert state.status is ChannelPaymentStatus.pending
    # Retrying the same attempt gets the same order's answer.
    again = await env.adapter.create_payment(created)
    assert again.next_action is not None
    assert again.next_action.code_url == f"{BASE}/_sandbox/pay/{created.out_trade_no}"


async def test_create_error_is_unknown_outcome_and_nothing_exists(env: Env) -> None:
    env.sandbox.core.add_script(Script(outcome=Outcome.create_error))
    created = payment()
    with pytest.raises(UnknownOutcome) as info:
        await env.adapter.create_payment(created)
    assert info.value.code == "system_error"
    state = await env.adapter.query_payment(created.out_trade_no)
    assert state.status is ChannelPaymentStatus.not_found
    result = await env.adapter.create_payment(created)  # the script was used once
    assert result.next_action is not None


async def test_connect_error_is_retryable(env: Env) -> None:
    async with httpx.AsyncClient(transport=RefusingTransport()) as refused:
        adapter = WechatPayAdapter(env.creds, refused)
        with pytest.raises(RetryableError):
            await adapter.create_payment(payment())
        with pytest.raises(RetryableError):
            await adapter.query_payment(order_no())


async def test_unverifiable_answer_is_unknown_outcome(env: Env) -> None:
    impostor = Sandbox()
    wrong_key = {**env.creds, "platform_public_key": impostor.platform_public_key_pem}
    adapter = WechatPayAdapter(wrong_key, env.http)
    created = payment()
    with pytest.raises(UnknownOutcome) as info:
        await adapter.create_payment(created)
    assert info.value.code == "unverified_response"
    # The order was created all the same: exactly why this is not a retryable error.
    assert (await env.adapter.query_payment(created.out_trade_no)).status is (
        ChannelPaymentStatus.pending
    )
    with pytest.raises(UnknownOutcome):
        await adapter.query_payment(created.out_trade_no)
    with pytest.raises(UnknownOutcome):
        await adapter.close_payment(created.out_trade_no)

    async def unsigned(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"code_url": "weixin://x"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(unsigned)) as http:
        with pytest.raises(UnknownOutcome):
            await WechatPayAdapter(env.creds, http).create_payment(payment())


async def test_error_classification_table() -> None:
    from paymux.channels.wechatpay.adapter import classify_answer

    cases = [
        (500, {"code": "SYSTEM_ERROR"}, UnknownOutcome, "system_error"),
        (502, None, UnknownOutcome, "channel_error"),
        (429, {"code": "FREQUENCY_LIMITED"}, RetryableError, "frequency_limited"),
        (400, {"code": "ORDER_PAID"}, BusinessError, "already_paid"),
        (400, {"code": "PARAM_ERROR"}, BusinessError, "invalid_request"),
        (403, {"code": "SOMETHING_NEW"}, BusinessError, "something_new"),
    ]
    for status, payload, kind, code in cases:
        error = classify_answer(status, payload)
        assert type(error) is kind and error.code == code, (status, payload)


# ------------------------------------------------------------------ credentials and registry
def test_credentials_are_validated(env: Env) -> None:
    assert registry._REGISTRY["wechatpay"] is WechatPayAdapter
    assert WechatPayAdapter.methods == {
        "wechat_native", "wechat_jsapi", "wechat_h5", "wechat_app", "wechat_barcode",
        "wechat_mini",
    }  # fmt: skip
    assert WechatPayAdapter.currencies == {"CNY"}
    assert "api.mch.weixin.qq.com" in WechatPayAdapter.production_hosts
    model = WechatPayAdapter.credentials_model.model_validate(
        {k: v for k, v in env.creds.items() if k != "gateway"}
    )
    assert model.model_dump()["gateway"] == "https://api.mch.weixin.qq.com"
    for bad in (
        {"apiv3_key": "x" * 31},
        {"apiv3_key": "x" * 33},
        {"merchant_private_key": "not a key"},
        {"platform_public_key": env.creds["merchant_private_key"]},
        {"platform_public_key_id": "ABCDEF"},
        {"gateway": "ftp://example"},
        {"mchid": ""},
    ):
        with pytest.raises(InvalidCredentials):
            WechatPayAdapter({**env.creds, **bad}, env.http)

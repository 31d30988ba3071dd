"""WeChat Pay mini-program payments and 服务商 (partner) mode: adapter ↔ sandbox, with the
official SDK ``wechatpayv3`` in ``partner_mode=True`` as the oracle.

The SDK talks ``requests``; :class:`SdkBridge` hands its calls to the in-process sandbox on the
test's event loop, so the SDK's own partner requests (its bodies, its signatures) reach the
sandbox, and the SDK verifies the sandbox's answers and notifications itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import wechatpayv3.core as wx_core
from wechatpayv3 import WeChatPay, WeChatPayType

from paymux.channels.base import (
    BusinessError,
    ChannelPaymentStatus,
    ChannelRefundStatus,
    CreateRefund,
    CreateTransfer,
    InvalidCredentials,
    InvalidNotification,
    NextActionType,
    PayeeType,
)
from paymux.channels.sandbox_kit import RefundOutcome, RefundScript
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.adapter import (
    WechatPayAccountCredentials,
    WechatPayAdapter,
    WechatPayPartnerAdapter,
)
from paymux.channels.wechatpay.sandbox import Sandbox
from tests.channels.test_wechatpay import (
    BASE,
    NOTIFY_URL,
    Receiver,
    client_for,
    order_no,
    payment,
    until,
)


class SdkBridge:
    """A stand-in for the ``requests`` module inside ``wechatpayv3.core``: each call runs on the
    test's event loop against the sandbox (the SDK runs in a worker thread meanwhile)."""

    def __init__(self, http: httpx.AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        self.http, self.loop = http, loop

    def _send(self, method: str, url: str, headers: dict[str, str], json_body: Any) -> Any:
        # requests' json= serialises like the SDK's signer (json.dumps defaults).
        content = json.dumps(json_body).encode() if json_body is not None else None
        call = self.http.request(method, url, headers=headers, content=content)
        return asyncio.run_coroutine_threadsafe(call, self.loop).result(10)

    def get(self, url: str, headers: dict[str, str], **_: Any) -> Any:
        return self._send("GET", url, headers, None)

    def post(self, url: str, json: Any = None, headers: dict[str, str] | None = None,
             **_: Any) -> Any:  # fmt: skip
        return self._send("POST", url, headers or {}, json)


@dataclass
class Env:
    sandbox: Sandbox
    receiver: Receiver
    creds: dict[str, Any]
    http: httpx.AsyncClient
    adapter: WechatPayAdapter
    sent: list[httpx.Request]

    def sdk(self, pay_type: WeChatPayType = WeChatPayType.NATIVE) -> WeChatPay:
        """The official SDK as the service provider, in partner mode."""
        c = self.creds
        sdk = WeChatPay(
            wechatpay_type=pay_type, mchid=c["sp_mchid"], private_key=c["merchant_private_key"],
            cert_serial_no=c["merchant_serial_no"], appid=c["sp_appid"],
            apiv3_key=c["apiv3_key"], notify_url=NOTIFY_URL, partner_mode=True,
            public_key=c["platform_public_key"], public_key_id=c["platform_public_key_id"],
        )  # fmt: skip
        sdk._core._gate_way = BASE
        return sdk

    def adapter_for(self, creds: dict[str, Any]) -> WechatPayAdapter:
        return WechatPayAdapter(creds, self.http)


@pytest.fixture
async def env(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    receiver = Receiver()
    notifier = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app))
    sandbox = Sandbox(http=notifier, time_scale=0.00001, hold_timeout_seconds=1.0)
    creds = sandbox.provision_sub_merchant(BASE)
    sent: list[httpx.Request] = []
    http = client_for(sandbox, sent)
    bridge = SdkBridge(client_for(sandbox, []), asyncio.get_running_loop())
    monkeypatch.setattr(wx_core, "requests", bridge)
    yield Env(sandbox, receiver, creds, http, WechatPayAdapter(creds, http), sent)
    await sandbox.core.aclose()
    await http.aclose()
    await bridge.http.aclose()
    await notifier.aclose()


async def pay(env: Env, out_trade_no: str) -> None:
    r = await env.http.post(f"{BASE}/_sandbox/orders/{out_trade_no}/pay", json={"result": "pay"})
    assert r.status_code == 200, r.text


def sent_json(env: Env, index: int = -1) -> dict[str, Any]:
    return json.loads(env.sent[index].content)


# ------------------------------------------------------------------ credentials and dispatch
def test_partner_credentials_pick_the_partner_adapter(env: Env) -> None:
    assert type(env.adapter) is WechatPayPartnerAdapter
    assert isinstance(env.adapter, WechatPayAdapter)
    direct = env.sandbox.provision(BASE)
    assert type(WechatPayAdapter(direct, env.http)) is WechatPayAdapter
    # The channel account's model takes either shape and keeps it as given.
    for creds in (env.creds, direct):
        dumped = WechatPayAccountCredentials.model_validate(creds).model_dump(mode="json")
        assert set(dumped) >= set(creds) and ("sp_mchid" in dumped) == (creds is env.creds)
        assert {k: v.strip() for k, v in creds.items()} == {k: dumped[k] for k in creds}
    for bad in ({"sub_mchid": ""}, {"apiv3_key": "short"}, {"mchid": "1"}, {"sp_appid": ""}):
        with pytest.raises(InvalidCredentials):
            WechatPayAdapter({**env.creds, **bad}, env.http)
    missing = {k: v for k, v in env.creds.items() if k != "sub_mchid"}
    with pytest.raises(InvalidCredentials):
        WechatPayAdapter(missing, env.http)


async def test_payouts_are_not_offered_in_partner_mode(env: Env) -> None:
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_transfer(  # type: ignore[attr-defined]
            CreateTransfer("po1", 100, "CNY", PayeeType.wechat_openid, "o1", None, "x", NOTIFY_URL)
        )
    assert info.value.code == "unsupported_in_partner_mode"
    assert env.sent == []


# ------------------------------------------------------------------ the SDK as oracle
async def test_sdk_partner_requests_are_accepted_and_it_verifies_the_answers(env: Env) -> None:
    c = env.creds
    sdk = env.sdk(WeChatPayType.NATIVE)
    no = order_no()
    code, text = await asyncio.to_thread(
        sdk.pay, description="Mug", out_trade_no=no, amount={"total": 100},
        sub_mchid=c["sub_mchid"],
    )  # fmt: skip
    assert code == 200, text
    assert json.loads(text) == {"code_url": f"{BASE}/_sandbox/pay/{no}"}
    code, text = await asyncio.to_thread(sdk.query, out_trade_no=no, sub_mchid=c["sub_mchid"])
    assert code == 200, text
    answer = json.loads(text)
    assert (answer["sp_mchid"], answer["sub_mchid"], answer["sp_appid"]) == (
        c["sp_mchid"], c["sub_mchid"], c["sp_appid"],
    )  # fmt: skip
    assert answer["trade_state"] == "NOTPAY" and "mchid" not in answer
    # Our adapter reads what the SDK created.
    assert (await env.adapter.query_payment(no)).status is ChannelPaymentStatus.pending
    code, _ = await asyncio.to_thread(sdk.close, out_trade_no=no, sub_mchid=c["sub_mchid"])
    assert code == 204
    assert (await env.adapter.query_payment(no)).status is ChannelPaymentStatus.closed

    # A sub-merchant of another service provider is refused, to the SDK as to us.
    other = env.sandbox.provision_sub_merchant(BASE)
    code, text = await asyncio.to_thread(
        sdk.pay, description="Mug", out_trade_no=order_no(), amount={"total": 100},
        sub_mchid=other["sub_mchid"],
    )  # fmt: skip
    assert code == 400 and json.loads(text)["code"] == "INVALID_REQUEST"


async def test_adapter_sends_the_body_the_sdk_sends(env: Env) -> None:
    c = env.sandbox.provision_sub_merchant(BASE, sub_appid=True)
    env.creds = c
    adapter = env.adapter_for(c)
    created = payment("wechat_jsapi", customer={"openid": "oSubOpenid123"})
    result = await adapter.create_payment(created)
    ours = sent_json(env)
    assert env.sent[-1].url.path == "/v3/pay/partner/transactions/jsapi"
    assert ours == {
        "sp_appid": c["sp_appid"], "sp_mchid": c["sp_mchid"], "sub_appid": c["sub_appid"],
        "sub_mchid": c["sub_mchid"], "description": "T-shirt",
        "out_trade_no": created.out_trade_no, "time_expire": ours["time_expire"],
        "notify_url": NOTIFY_URL, "amount": {"total": 1999, "currency": "CNY"},
        "payer": {"sub_openid": "oSubOpenid123"},
    }  # fmt: skip

    captured: list[tuple[str, Any]] = []

    def capture(path: str, method: Any = None, data: Any = None, **_: Any) -> tuple[int, str]:
        captured.append((path, data))
        return 200, "{}"

    sdk = env.sdk(WeChatPayType.JSAPI)
    sdk._core.request = capture  # type: ignore[method-assign]
    sdk.pay(
        description="T-shirt", out_trade_no=created.out_trade_no,
        amount={"total": 1999, "currency": "CNY"}, payer={"sub_openid": "oSubOpenid123"},
        time_expire=ours["time_expire"], sub_mchid=c["sub_mchid"], sub_appid=c["sub_appid"],
    )  # fmt: skip
    assert captured == [("/v3/pay/partner/transactions/jsapi", ours)]

    # JSAPI pay params: signed by the service provider with the sub-merchant's appid (the
    # payer's openid is under it), exactly the getBrandWCPayRequest fields.
    assert result.next_action is not None and result.next_action.params is not None
    params = result.next_action.params
    assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    order = env.sandbox.core.get_order(c["sub_mchid"], created.out_trade_no)
    assert order is not None
    assert params["appId"] == c["sub_appid"]
    assert params["package"] == f"prepay_id={order.extra['prepay_id']}"
    assert params["paySign"] == sdk.sign(
        [params["appId"], params["timeStamp"], params["nonceStr"], params["package"]]
    )


async def test_sdk_refunds_a_partner_order_and_reads_our_refund(env: Env) -> None:
    c = env.creds
    created = payment()
    await env.adapter.create_payment(created)
    await pay(env, created.out_trade_no)
    sdk = env.sdk()
    code, text = await asyncio.to_thread(
        sdk.refund, out_refund_no="rf" + created.out_trade_no,
        amount={"refund": 500, "total": 1999, "currency": "CNY"},
        out_trade_no=created.out_trade_no, sub_mchid=c["sub_mchid"],
    )  # fmt: skip
    assert code == 200, text
    assert json.loads(text)["status"] == "SUCCESS"
    state = await env.adapter.query_refund("rf" + created.out_trade_no, created.out_trade_no)
    assert state.status is ChannelRefundStatus.succeeded and state.amount == 500
    ours = await env.adapter.create_refund(
        CreateRefund(
            "re" + created.out_trade_no, created.out_trade_no, None, 300, 1999, "CNY", NOTIFY_URL
        )  # fmt: skip
    )
    assert ours.status is ChannelRefundStatus.succeeded
    assert sent_json(env)["sub_mchid"] == c["sub_mchid"]
    code, text = await asyncio.to_thread(
        sdk.query_refund, out_refund_no="re" + created.out_trade_no, sub_mchid=c["sub_mchid"]
    )
    assert code == 200 and json.loads(text)["amount"]["refund"] == 300
    assert env.sent[-1].url.path == "/v3/refund/domestic/refunds"


# ------------------------------------------------------------------ adapter ↔ sandbox
async def test_native_pay_notify_query_close_refund(env: Env) -> None:
    c = env.creds
    created = payment()
    result = await env.adapter.create_payment(created)
    assert result.next_action is not None and result.next_action.type is NextActionType.qr_code
    assert env.sent[0].url.path == "/v3/pay/partner/transactions/native"
    auth = protocol.parse_authorization(env.sent[0].headers["Authorization"])
    assert auth.mchid == c["sp_mchid"]  # the service provider signs
    await pay(env, created.out_trade_no)
    await until(lambda: len(env.receiver.received) == 1, "the notification")
    headers, body = env.receiver.received[0]
    note = await env.adapter.parse_notification(headers, body)
    assert note.payment is not None
    assert note.payment.status is ChannelPaymentStatus.succeeded
    assert note.payment.out_trade_no == created.out_trade_no and note.payment.amount == 1999
    resource = note.raw["resource"]
    assert (resource["sp_mchid"], resource["sub_mchid"]) == (c["sp_mchid"], c["sub_mchid"])
    # The SDK (as the service provider) verifies and decrypts the same notification.
    official = env.sdk().callback(headers, body)
    assert official is not None and official["resource"] == resource
    state = await env.adapter.query_payment(created.out_trade_no)
    assert state.status is ChannelPaymentStatus.succeeded
    assert state.channel_trade_no == note.payment.channel_trade_no
    assert env.sent[-1].url.query.decode() == f"sp_mchid={c['sp_mchid']}&sub_mchid={c['sub_mchid']}"
    with pytest.raises(BusinessError) as info:
        await env.adapter.close_payment(created.out_trade_no)
    assert info.value.code == "already_paid"
    assert sent_json(env) == {"sp_mchid": c["sp_mchid"], "sub_mchid": c["sub_mchid"]}

    env.sandbox.core.add_refund_script(RefundScript(outcome=RefundOutcome.delayed, delay=1.0))
    refund = await env.adapter.create_refund(
        CreateRefund(
            "re" + created.out_trade_no,
            created.out_trade_no,
            note.payment.channel_trade_no,
            1999,
            1999,
            "CNY",
            NOTIFY_URL,
        )  # fmt: skip
    )
    assert refund.status is ChannelRefundStatus.pending
    await until(lambda: len(env.receiver.received) == 2, "the refund notification")
    headers, body = env.receiver.received[1]
    note = await env.adapter.parse_notification(headers, body)
    assert note.refund is not None and note.refund.status is ChannelRefundStatus.succeeded
    assert note.refund.out_trade_no == created.out_trade_no
    assert note.raw["resource"]["sub_mchid"] == c["sub_mchid"]
    assert env.sdk().callback(headers, body)["resource"]["refund_status"] == "SUCCESS"
    queried = await env.adapter.query_refund("re" + created.out_trade_no, created.out_trade_no)
    assert queried.status is ChannelRefundStatus.succeeded
    assert env.sent[-1].url.query.decode() == f"sub_mchid={c['sub_mchid']}"


async def test_close_unpaid_and_unknown_orders(env: Env) -> None:
    created = payment()
    await env.adapter.create_payment(created)
    await env.adapter.close_payment(created.out_trade_no)
    assert (await env.adapter.query_payment(created.out_trade_no)).status is (
        ChannelPaymentStatus.closed
    )
    await env.adapter.close_payment(order_no())  # unknown: nothing to close
    assert (await env.adapter.query_payment(order_no())).status is ChannelPaymentStatus.not_found


async def test_wrong_sub_merchant_is_refused_with_nothing_created(env: Env) -> None:
    other = env.sandbox.provision_sub_merchant(BASE)
    forged = {**env.creds, "sub_mchid": other["sub_mchid"]}  # another provider's sub-merchant
    created = payment()
    with pytest.raises(BusinessError) as info:
        await env.adapter_for(forged).create_payment(created)
    assert info.value.code == "sub_merchant_not_bound"
    assert env.sandbox.core.find(created.out_trade_no) is None
    with pytest.raises(BusinessError) as info:
        await env.adapter_for(forged).query_payment(created.out_trade_no)
    assert info.value.code == "sub_merchant_not_bound"
    with pytest.raises(BusinessError) as info:  # an appid the sub-merchant does not own
        await env.adapter_for({**env.creds, "sub_appid": "wx0000000000000000"}).create_payment(
            payment("wechat_jsapi", customer={"openid": "o1"})
        )
    assert info.value.code == "invalid_credentials"


async def test_another_sub_merchants_notification_is_refused(env: Env) -> None:
    sibling_ids = env.sandbox.partners.add_sub_merchant(env.creds["sp_mchid"])
    sibling = env.adapter_for({**env.creds, **sibling_ids})
    created = payment()
    await sibling.create_payment(created)
    await pay(env, created.out_trade_no)
    await until(lambda: len(env.receiver.received) == 1, "the notification")
    headers, body = env.receiver.received[0]
    assert (await sibling.parse_notification(headers, body)).payment is not None
    with pytest.raises(InvalidNotification) as info:  # same provider, same key: not ours
        await env.adapter.parse_notification(headers, body)
    assert info.value.code == "wrong_merchant"
    with pytest.raises(InvalidNotification):  # forged signature
        await env.adapter.parse_notification({**headers, protocol.HEADER_SIGNATURE: "AAAA"}, body)


async def test_mini_program_of_the_sub_merchant(env: Env) -> None:
    c = env.sandbox.provision_sub_merchant(BASE, sub_mini_appid=True)
    env.creds = c
    adapter = env.adapter_for(c)
    created = payment("wechat_mini", customer={"openid": "oMini1"})
    result = await adapter.create_payment(created)
    sent = sent_json(env)
    assert env.sent[-1].url.path == "/v3/pay/partner/transactions/jsapi"
    assert (sent["sp_appid"], sent["sub_appid"]) == (c["sp_appid"], c["sub_mini_appid"])
    assert sent["payer"] == {"sub_openid": "oMini1"}
    assert result.next_action is not None and result.next_action.params is not None
    params = result.next_action.params
    assert tuple(params) == protocol.MINI_PAY_FIELDS  # exactly what wx.requestPayment takes
    assert params["signType"] == "RSA"
    expected = env.sdk().sign(
        [c["sub_mini_appid"], params["timeStamp"], params["nonceStr"], params["package"]]
    )
    assert params["paySign"] == expected


async def test_mini_program_of_the_service_provider(env: Env) -> None:
    c = env.creds
    created = payment("wechat_mini", customer={"openid": "oSpMini"})
    result = await env.adapter.create_payment(created)
    sent = sent_json(env)
    assert sent["sp_appid"] == c["sp_mini_appid"] and "sub_appid" not in sent
    assert sent["payer"] == {"sp_openid": "oSpMini"}
    params = result.next_action.params if result.next_action else None
    assert params is not None
    assert params["paySign"] == env.sdk().sign(
        [c["sp_mini_appid"], params["timeStamp"], params["nonceStr"], params["package"]]
    )
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_payment(payment("wechat_mini"))
    assert info.value.code == "customer_required"
    assert len(env.sent) == 1


async def test_app_and_h5_in_partner_mode(env: Env) -> None:
    c = env.creds
    result = await env.adapter.create_payment(payment("wechat_app"))
    params = result.next_action.params if result.next_action else None
    assert params is not None
    assert params["partnerid"] == c["sub_mchid"] and params["appid"] == c["sp_appid"]
    assert params["sign"] == env.sdk().sign(
        [params["appid"], params["timestamp"], params["noncestr"], params["prepayid"]]
    )
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_payment(payment("wechat_h5"))
    assert info.value.code == "client_ip_required"
    result = await env.adapter.create_payment(payment("wechat_h5", client_ip="203.0.113.7"))
    assert result.next_action is not None and result.next_action.type is NextActionType.redirect
    assert sent_json(env)["scene_info"] == {
        "payer_client_ip": "203.0.113.7", "h5_info": {"type": "Wap"},
    }  # fmt: skip
    assert len(env.sent) == 2


# ------------------------------------------------------------------ direct-mode mini-program
async def test_direct_mini_program_signs_wx_request_payment_params(env: Env) -> None:
    creds = env.sandbox.provision(BASE)
    creds["mini_appid"] = env.sandbox.bind_mini_appid(creds["mchid"])
    adapter = env.adapter_for(creds)
    created = payment("wechat_mini", customer={"openid": "oDirectMini"})
    result = await adapter.create_payment(created)
    sent = sent_json(env)
    assert env.sent[-1].url.path == "/v3/pay/transactions/jsapi"
    assert sent["appid"] == creds["mini_appid"] and sent["payer"] == {"openid": "oDirectMini"}
    params = result.next_action.params if result.next_action else None
    assert params is not None and tuple(params) == protocol.MINI_PAY_FIELDS
    order = env.sandbox.core.get_order(creds["mchid"], created.out_trade_no)
    assert order is not None and params["package"] == f"prepay_id={order.extra['prepay_id']}"
    official = wx_core.Core(
        mchid=creds["mchid"], cert_serial_no=creds["merchant_serial_no"],
        private_key=creds["merchant_private_key"], apiv3_key=creds["apiv3_key"],
        public_key=creds["platform_public_key"], public_key_id=creds["platform_public_key_id"],
    )  # fmt: skip
    assert params["paySign"] == official.sign(
        [creds["mini_appid"], params["timeStamp"], params["nonceStr"], params["package"]]
    )
    # Without a mini_appid the merchant's appid is the mini-program's.
    plain = env.sandbox.provision(BASE)
    await env.adapter_for(plain).create_payment(payment("wechat_mini", customer={"openid": "o"}))
    assert sent_json(env)["appid"] == plain["appid"]
    assert WechatPayAdapter.required_customer["wechat_mini"] == ("openid",)


async def test_each_sub_merchant_reads_only_its_own_statement(env: Env) -> None:
    """A service provider's trade bill covers every sub-merchant unless ``sub_mchid`` names one:
    each sub-merchant's account asks for its own, so reconciliation never sees a sibling's."""
    from paymux.kit import clock as kit_clock

    sibling_ids = env.sandbox.partners.add_sub_merchant(env.creds["sp_mchid"])
    sibling = env.adapter_for({**env.creds, **sibling_ids})
    mine, theirs = payment(), payment()
    await env.adapter.create_payment(mine)
    await sibling.create_payment(theirs)
    for order in (mine, theirs):
        await pay(env, order.out_trade_no)
    day = kit_clock.now().astimezone(dt.timezone(dt.timedelta(hours=8))).date()
    shifted = kit_clock.OffsetClock()
    previous = kit_clock.set_clock(shifted)
    try:
        shifted.advance(2 * 86_400)  # the bill is made the next day
        own = await env.adapter.statement(day)
        siblings = await sibling.statement(day)
    finally:
        kit_clock.set_clock(previous)
    assert [line.out_trade_no for line in own] == [mine.out_trade_no]
    assert [line.out_trade_no for line in siblings] == [theirs.out_trade_no]
    asked = [r.url.params.get("sub_mchid") for r in env.sent if r.url.path == "/v3/bill/tradebill"]
    assert asked == [env.creds["sub_mchid"], sibling_ids["sub_mchid"]]

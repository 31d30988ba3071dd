"""WeChat Pay 付款码支付 (APIv3 ``/v3/pay/transactions/codepay`` and ``…/reverse``): adapter ↔
sandbox for every scripted outcome, and the official ``wechatpayv3`` SDK's own requests.

Sources for the protocol facts: pay.weixin.qq.com/docs/merchant/apis/code-payment-v3/direct/
code-pay.html and …/reverse.html (v3 code payment, 2024); wechatpayv3 ``transaction.pay(
pay_type=CODEPAY)`` (no notify_url) and ``codepay_reverse``; the v2 付款码支付 page for the
USERPAYING → query → reverse flow (pay.weixin.qq.com/doc/v2/merchant/4011937125)."""

from __future__ import annotations

import json
import types
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import wechatpayv3.transaction as wx_transaction
import wechatpayv3.utils as wx_utils
from wechatpayv3.type import WeChatPayType

from paymux.channels import base, registry
from paymux.channels.base import BusinessError, ChannelPaymentStatus, UnknownOutcome
from paymux.channels.sandbox_kit import BarcodeOutcome, BarcodeScript
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.adapter import WechatPayAdapter, classify_codepay_answer
from paymux.channels.wechatpay.sandbox import Sandbox
from tests.channels.test_wechatpay import (
    BASE,
    Env,
    Receiver,
    client_for,
    payment,
    until,
)
from tests.channels.test_wechatpay import (
    WechatPayAdapter as _Adapter,
)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    receiver = Receiver()
    notifier = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app))
    sandbox = Sandbox(http=notifier, time_scale=0.00001, hold_timeout_seconds=1.0)
    creds = sandbox.provision(BASE)
    sent: list[httpx.Request] = []
    http = client_for(sandbox, sent)
    yield Env(sandbox, receiver, creds, http, _Adapter(creds, http), sent)
    await sandbox.core.aclose()
    await http.aclose()
    await notifier.aclose()


CODE = "134567890123456789"  # 18 digits, 13…: a WeChat payment code


def code_payment(code: str = CODE, **extra: Any) -> base.CreatePayment:
    return payment("wechat_barcode", customer={"auth_code": code, "store_id": "S01"}, **extra)


def script(env: Env, outcome: BarcodeOutcome, delay: float = 1.0) -> None:
    env.sandbox.add_barcode_script(BarcodeScript(outcome=outcome, delay=delay))


def sent_bodies(env: Env) -> list[dict[str, Any]]:
    return [json.loads(r.content) for r in env.sent if r.content]


# ------------------------------------------------------------------ rules and classification
def test_payment_code_rule_is_declared_by_the_channel() -> None:
    (rule,) = WechatPayAdapter.payment_codes
    assert rule.method == "wechat_barcode"
    assert rule.matches(CODE) and rule.matches("104567890123456789")
    for bad in ("164567890123456789", "13456789012345678", "13456789012345678x", "２" * 18):
        assert not rule.matches(bad), bad
    assert "wechat_barcode" in registry.methods_for_payment_code(CODE)
    assert WechatPayAdapter.barcode_terms.reverse_after_seconds >= 15  # WeChat: ≥ 15 s


def test_codepay_error_classification() -> None:
    cases = [
        (500, {"code": "SYSTEM_ERROR"}, UnknownOutcome, "system_error"),
        (403, {"code": "NOT_ENOUGH", "message": "余额不足"}, BusinessError, "insufficient_funds"),
        (400, {"code": "PARAM_ERROR", "message": "付款码无效"}, BusinessError, "invalid_auth_code"),
        (400, {"code": "PARAM_ERROR", "message": "缺少description"}, BusinessError,
         "invalid_request"),
        (403, {"code": "TRADE_ERROR"}, BusinessError, "payment_declined"),
        (400, {"code": "ORDER_PAID"}, BusinessError, "already_paid"),
        (503, {}, UnknownOutcome, "channel_error"),
    ]  # fmt: skip
    for status, payload, kind, code in cases:
        error = classify_codepay_answer(status, payload)
        assert type(error) is kind and error.code == code, (status, payload)


# ------------------------------------------------------------------ outcomes
async def test_paid_at_once(env: Env) -> None:
    req = code_payment()
    created = await env.adapter.create_payment(req)
    assert created.status is ChannelPaymentStatus.succeeded and created.next_action is None
    order = env.sandbox.core.find(req.out_trade_no)
    assert order is not None and created.channel_trade_no == order.channel_trade_no
    (body,) = sent_bodies(env)
    assert body["payer"] == {"auth_code": CODE} and "notify_url" not in body
    assert body["scene_info"]["store_info"] == {"out_id": "S01"}
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.status is ChannelPaymentStatus.succeeded and state.raw["trade_type"] == "MICROPAY"
    # The same charge again is never a second charge: it answers the paid order.
    again = await env.adapter.create_payment(req)
    assert again.status is ChannelPaymentStatus.succeeded


async def test_password_then_paid(env: Env) -> None:
    script(env, BarcodeOutcome.password_paid, delay=100)
    req = code_payment()
    created = await env.adapter.create_payment(req)
    assert created.status is ChannelPaymentStatus.pending
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.status is ChannelPaymentStatus.pending and state.raw["trade_state"] == "USERPAYING"
    order = env.sandbox.core.find(req.out_trade_no)
    assert order is not None
    await until(lambda: order.status.value == "succeeded", "the customer's password")
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.status is ChannelPaymentStatus.succeeded and state.amount == 1999


async def test_password_then_declined(env: Env) -> None:
    script(env, BarcodeOutcome.password_declined, delay=100)
    req = code_payment()
    assert (await env.adapter.create_payment(req)).status is ChannelPaymentStatus.pending
    order = env.sandbox.core.find(req.out_trade_no)
    assert order is not None
    await until(lambda: order.status.value == "failed", "the customer giving up")
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.status is ChannelPaymentStatus.failed and state.channel_code == "PAYERROR"


async def test_waiting_forever_is_reversed_and_closed(env: Env) -> None:
    script(env, BarcodeOutcome.password_forever)
    req = code_payment()
    assert (await env.adapter.create_payment(req)).status is ChannelPaymentStatus.pending
    reversed_ = await env.adapter.reverse_payment(req.out_trade_no)
    assert reversed_.out_trade_no == req.out_trade_no
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.status is ChannelPaymentStatus.closed and state.raw["trade_state"] == "REVOKED"
    shown = (await env.http.get(f"{BASE}/_sandbox/barcode/{req.out_trade_no}")).json()
    assert shown["reversed"] and not shown["refunded"]
    # A reversed order cannot be paid any more, and reversing again is harmless.
    await env.http.post(f"{BASE}/_sandbox/orders/{req.out_trade_no}/pay", json={"result": "pay"})
    assert (await env.adapter.query_payment(req.out_trade_no)).status is ChannelPaymentStatus.closed
    await env.adapter.reverse_payment(req.out_trade_no)
    with pytest.raises(BusinessError) as refused:
        await env.adapter.create_payment(req)
    assert refused.value.code == "order_closed"


async def test_reversing_a_paid_order_refunds_it(env: Env) -> None:
    req = code_payment()
    await env.adapter.create_payment(req)
    await env.adapter.reverse_payment(req.out_trade_no)
    shown = (await env.http.get(f"{BASE}/_sandbox/barcode/{req.out_trade_no}")).json()
    assert shown["reversed"] and shown["refunded"] and shown["trade_state"] == "REVOKED"


async def test_reversing_an_unknown_order_has_nothing_to_do(env: Env) -> None:
    reversed_ = await env.adapter.reverse_payment("wxneverexisted0001")
    assert reversed_.refunded is False


@pytest.mark.parametrize(
    ("outcome", "code"),
    [(BarcodeOutcome.insufficient_balance, "insufficient_funds"),
     (BarcodeOutcome.invalid_code, "invalid_auth_code")],
)  # fmt: skip
async def test_refusals_charge_nothing(env: Env, outcome: BarcodeOutcome, code: str) -> None:
    script(env, outcome)
    req = code_payment()
    with pytest.raises(BusinessError) as refused:
        await env.adapter.create_payment(req)
    assert refused.value.code == code
    assert env.sandbox.core.find(req.out_trade_no) is None


async def test_malformed_code_is_refused_before_any_call(env: Env) -> None:
    with pytest.raises(BusinessError) as refused:
        await env.adapter.create_payment(code_payment("284567890123456789"))
    assert refused.value.code == "invalid_auth_code" and env.sent == []


async def test_create_timeout_and_error_are_unknown(env: Env) -> None:
    script(env, BarcodeOutcome.create_timeout)
    adapter = WechatPayAdapter(env.creds, env.client(timeout=0.2))
    req = code_payment()
    with pytest.raises(UnknownOutcome):
        await adapter.create_payment(req)
    assert (await env.adapter.query_payment(req.out_trade_no)).status is (
        ChannelPaymentStatus.succeeded
    )
    script(env, BarcodeOutcome.create_error)
    req = code_payment()
    with pytest.raises(UnknownOutcome):
        await env.adapter.create_payment(req)
    assert (await env.adapter.query_payment(req.out_trade_no)).status is (
        ChannelPaymentStatus.not_found
    )


# ------------------------------------------------------------------ the official SDK as oracle
class _Capture:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def request(self, path: str, method: Any = None, data: Any = None, **_: Any) -> Any:
        self.calls.append((path, data))
        return 0, ""


def _sdk(env: Env) -> Any:
    """wechatpayv3's transaction functions bound to a recorder: what the SDK would send."""
    core = _Capture()
    return types.SimpleNamespace(
        _core=core, _partner_mode=False, _appid=env.creds["appid"], _mchid=env.creds["mchid"],
        _notify_url=None, _type=None,
    ), core  # fmt: skip


async def _send_as_sdk(env: Env, path: str, data: dict[str, Any]) -> Any:
    body = json.dumps(data)  # the SDK's own serialisation
    key = protocol.load_private_key(env.creds["merchant_private_key"])
    auth = wx_utils.build_authorization(
        path, "POST", env.creds["mchid"], env.creds["merchant_serial_no"], key, data=body
    )
    return await env.http.post(
        BASE + path, content=body,
        headers={"Authorization": auth, "Content-Type": "application/json"},
    )  # fmt: skip


async def test_sandbox_takes_official_sdk_codepay_and_reverse(env: Env) -> None:
    sdk, core = _sdk(env)
    no = "wx" + CODE
    wx_transaction.pay(
        sdk, description="Mug", out_trade_no=no, amount={"total": 100, "currency": "CNY"},
        payer={"auth_code": CODE}, scene_info={"store_info": {"out_id": "S01"}},
        pay_type=WeChatPayType.CODEPAY,
    )  # fmt: skip
    path, data = core.calls[-1]
    assert path == protocol.CODEPAY_PATH and "notify_url" not in data
    r = await _send_as_sdk(env, path, data)
    assert r.status_code == 200, r.text
    assert env.official()._verify_signature(r.headers, r.text)
    assert r.json()["trade_state"] == "SUCCESS" and r.json()["out_trade_no"] == no

    wx_transaction.codepay_reverse(sdk, no)
    path, data = core.calls[-1]
    assert path == protocol.reverse_path(no)
    r = await _send_as_sdk(env, path, data)
    assert r.status_code == 200, r.text
    assert env.official()._verify_signature(r.headers, r.text)
    assert (await env.adapter.query_payment(no)).raw["trade_state"] == "REVOKED"


async def test_official_sdk_sees_userpaying_as_a_signed_202(env: Env) -> None:
    script(env, BarcodeOutcome.password_forever)
    sdk, core = _sdk(env)
    wx_transaction.pay(
        sdk, description="Mug", out_trade_no="wx2" + CODE, amount={"total": 100},
        payer={"auth_code": CODE}, scene_info={"store_info": {"out_id": "S01"}},
        pay_type=WeChatPayType.CODEPAY,
    )  # fmt: skip
    r = await _send_as_sdk(env, *core.calls[-1])
    assert r.status_code == 202 and r.json() == {"trade_state": "USERPAYING"}
    assert env.official()._verify_signature(r.headers, r.text)

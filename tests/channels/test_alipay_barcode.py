"""Alipay 条码支付: ``alipay.trade.pay`` (scene ``bar_code``) and ``alipay.trade.cancel``, adapter
↔ sandbox for every scripted outcome and the official ``python-alipay-sdk`` as oracle.

Sources: python-alipay-sdk ``api_alipay_trade_pay`` / ``api_alipay_trade_cancel`` (request
fields, 10000 answer, ``retry_flag``); Alipay barcode best practice (docs.antom.com/ac/barcode_cn/
practice: poll every 3–5 s, cancel at the merchant's timeout, cancel refunds a paid trade)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

import pytest

from paymux.channels.base import BusinessError, ChannelPaymentStatus, UnknownOutcome
from paymux.channels.sandbox_kit import BarcodeOutcome, BarcodeScript
from tests.channels.test_alipay import Env, open_env, request, wait_for

CODE = "284567890123456789"


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with open_env() as opened:
        yield opened


def code_request(code: str = CODE):  # type: ignore[no-untyped-def]
    req = request("alipay_barcode")
    return type(req)(**{**req.__dict__, "customer": {"auth_code": code}})


def script(env: Env, outcome: BarcodeOutcome, delay: float = 1.0) -> None:
    env.sandbox.add_barcode_script(BarcodeScript(outcome=outcome, delay=delay))


async def test_paid_at_once_and_cancel_refunds(env: Env) -> None:
    req = code_request()
    created = await env.adapter.create_payment(req)
    assert created.status is ChannelPaymentStatus.succeeded and created.channel_trade_no
    assert (await env.adapter.query_payment(req.out_trade_no)).status is (
        ChannelPaymentStatus.succeeded
    )
    reversed_ = await env.adapter.reverse_payment(req.out_trade_no)
    assert reversed_.refunded is True  # action=refund
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.raw["trade_status"] == "TRADE_CLOSED"


async def test_waiting_then_paid_or_cancelled(env: Env) -> None:
    script(env, BarcodeOutcome.password_paid, delay=100)
    req = code_request()
    assert (await env.adapter.create_payment(req)).status is ChannelPaymentStatus.pending
    order = env.sandbox.core.find(req.out_trade_no)
    assert order is not None
    await wait_for(lambda: order.status.value == "succeeded")
    assert (await env.adapter.query_payment(req.out_trade_no)).status is (
        ChannelPaymentStatus.succeeded
    )
    script(env, BarcodeOutcome.password_forever)
    req = code_request()
    assert (await env.adapter.create_payment(req)).status is ChannelPaymentStatus.pending
    assert (await env.adapter.reverse_payment(req.out_trade_no)).refunded is False  # close
    assert (await env.adapter.query_payment(req.out_trade_no)).status is (
        ChannelPaymentStatus.closed
    )


@pytest.mark.parametrize(
    ("outcome", "code"),
    [(BarcodeOutcome.insufficient_balance, "insufficient_funds"),
     (BarcodeOutcome.invalid_code, "invalid_auth_code")],
)  # fmt: skip
async def test_refusals(env: Env, outcome: BarcodeOutcome, code: str) -> None:
    script(env, outcome)
    req = code_request()
    with pytest.raises(BusinessError) as refused:
        await env.adapter.create_payment(req)
    assert refused.value.code == code and env.sandbox.core.find(req.out_trade_no) is None


async def test_create_error_is_unknown_and_cancel_of_nothing_is_fine(env: Env) -> None:
    script(env, BarcodeOutcome.create_error)
    req = code_request()
    with pytest.raises(UnknownOutcome):
        await env.adapter.create_payment(req)
    assert (await env.adapter.reverse_payment(req.out_trade_no)).refunded is False


async def test_sdk_pay_and_cancel_are_accepted_and_verified(env: Env) -> None:
    sdk = env.sdk()
    for method, biz, key in (
        ("alipay.trade.pay", {"out_trade_no": "sdk-code-1", "scene": "bar_code",
                              "auth_code": CODE, "subject": "Mug", "total_amount": "1.00"},
         "alipay_trade_pay_response"),
        ("alipay.trade.cancel", {"out_trade_no": "sdk-code-1"}, "alipay_trade_cancel_response"),
    ):  # fmt: skip
        query = sdk.sign_data(sdk.build_body(method, biz))
        data = dict(parse_qsl(query))
        content = data.pop("biz_content")
        raw = await env.client.post("/gateway.do", params=data, data={"biz_content": content})
        answer = sdk._verify_and_return_sync_response(raw.text, key)
        assert answer["code"] == "10000", answer
    assert answer["action"] == "refund" and answer["retry_flag"] == "N"

"""云闪付 payment codes through UnionPay 全渠道: 二维码消费 被扫 and 冲正, adapter ↔ sandbox
for every scripted outcome, every request and answer checked with the independent signature
oracle of tests/channels/test_unionpay.py.

Sources for the wire facts asserted here (no official Python SDK exists):

- consume: ``txnType 01 / txnSubType 06 / bizType 000000``, ``accessType 0``, ``qrNo`` (C2B码),
  ``termId``, ``backUrl``, ``currencyCode 156`` on ``backTransReq.do``; answered at once, the
  result by back notification or query — 《二维码支付产品接口规范》2.3 §5.2.1 as ported in the
  demos (e.g. ``com/emis/vi/pay/unionpay/PayAction.java``; jifuwei/lol ``QRCodeBackConsumeReq``;
  ``channelType 08`` in the Kasite ``UnionPayGateWayServiceImpl.sweepCodePay``);
- query schedule: at most 6 queries 1, 2, 4, 8, 16, 32 s apart, 03/04/05 still open, 00 paid
  (same spec, §5.5.1; the ACP SDK demos' ``Form_6_5_Query``);
- 冲正: ``txnType 99 / txnSubType 01 / bizType 000000``, ``orderId`` + ``txnTime`` "同原消费" (the
  QRC demo ``ConsumeReversal``, 2017-03); only for timeouts / unknown outcomes, within the
  original's day "昨日23:00至本日23:00"; a paid order reversed is refunded (jifuwei/lol
  ``IUnionpayQRCodeClient.reversal``, Kasite ``revoke``, SyPay ``NoJump/Reverse``);
- the code: 19 digits starting 62 (jeepay ``getPayWayCodeByBarCode``; PROTOCOLS.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from paymux.channels import base, registry
from paymux.channels.base import BusinessError, ChannelPaymentStatus, UnknownOutcome
from paymux.channels.sandbox_kit import BarcodeOutcome, BarcodeScript
from paymux.channels.unionpay import protocol as p
from paymux.channels.unionpay.adapter import UnionPayAdapter
from paymux.kit import clock as kit_clock
from paymux.kit.ids import new_id
from tests.channels.test_unionpay import (
    BASE,
    Env,
    open_env,
    oracle_signature_ok,
    request,
    wait_for,
)

CODE = "6222021234567890123"


class Recorder(httpx.AsyncBaseTransport):
    """Keeps every request form and raw answer the adapter exchanges with the sandbox."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: list[dict[str, str]] = []
        self.answers: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(dict(parse_qsl((await request.aread()).decode(), keep_blank_values=True)))
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        self.answers.append(body.decode())
        return httpx.Response(response.status_code, headers=response.headers, content=body)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with open_env() as opened:
        yield opened


def recording(env: Env) -> tuple[UnionPayAdapter, Recorder]:
    recorder = Recorder(httpx.ASGITransport(app=env.sandbox.app))
    http = httpx.AsyncClient(transport=recorder, timeout=2.0)
    env.clients.append(http)
    return UnionPayAdapter(env.creds, http), recorder


def code_request(code: str = CODE, **customer: str):  # type: ignore[no-untyped-def]
    req = request(p.BARCODE_METHOD)
    return type(req)(**{**req.__dict__, "customer": {"auth_code": code, **customer}})


def script(env: Env, outcome: BarcodeOutcome, delay: float = 1.0) -> None:
    env.sandbox.add_barcode_script(BarcodeScript(outcome=outcome, delay=delay))


def merchant_key(env: Env) -> rsa.RSAPublicKey:
    key = env.sandbox.merchants[env.creds["mer_id"]].certificate.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def order(env: Env, out_trade_no: str) -> Any:
    found = env.sandbox.core.find(p.order_id(out_trade_no))
    assert found is not None
    return found


# ---------------------------------------------------------------- the code and the declaration
def test_payment_code_rule_and_declaration() -> None:
    assert p.is_payment_code(CODE)
    for bad in ("622202123456789012", "62220212345678901234", "6322021234567890123",
                "622202123456789012a", "６２22021234567890123"):  # fmt: skip
        assert not p.is_payment_code(bad), bad
    factory = registry.get("unionpay")
    assert p.BARCODE_METHOD in factory.methods
    assert registry.methods_for_payment_code(CODE) == [p.BARCODE_METHOD]
    # The wallets' rules do not overlap: WeChat 10–15/18, Alipay 25–30/16–24, 云闪付 62/19.
    assert registry.methods_for_payment_code("134567890123456789") == ["wechat_barcode"]
    terms = UnionPayAdapter.barcode_terms
    assert terms.reverse_after_seconds == 1 + 2 + 4 + 8 + 16 + 32


def test_reverse_deadline_is_23_00_china_time() -> None:
    assert p.reverse_deadline("20240301225959") == dt.datetime(2024, 3, 1, 15, tzinfo=dt.UTC)
    assert p.reverse_deadline("20240301230000") == dt.datetime(2024, 3, 2, 15, tzinfo=dt.UTC)
    assert p.reverse_deadline("20240302000100") == dt.datetime(2024, 3, 2, 15, tzinfo=dt.UTC)


# ---------------------------------------------------------------- outcomes
async def test_paid_at_once_wire_fields_signatures_and_notification(env: Env) -> None:
    adapter, rec = recording(env)
    req = code_request(device_id="00000011")
    created = await adapter.create_payment(req)
    assert created.status is ChannelPaymentStatus.succeeded and created.channel_trade_no
    sent = rec.sent[0]
    assert {k: sent[k] for k in ("txnType", "txnSubType", "bizType", "channelType",
                                 "accessType", "qrNo", "termId", "currencyCode", "txnAmt",
                                 "backUrl", "orderId", "txnTime")} == {  # fmt: skip
        "txnType": "01", "txnSubType": "06", "bizType": "000000", "channelType": "08",
        "accessType": "0", "qrNo": CODE, "termId": "00000011", "currencyCode": "156",
        "txnAmt": "1999", "backUrl": req.notify_url, "orderId": p.order_id(req.out_trade_no),
        "txnTime": p.txn_time_of(req.out_trade_no),
    }  # fmt: skip
    assert oracle_signature_ok(sent, merchant_key(env))
    answer = p.parse_response(rec.answers[0])
    assert answer["respCode"] == "00"
    assert oracle_signature_ok(answer, env.sandbox.signer.public_key())
    # The sandbox checked the signature too: a forged one is refused with 11.
    forged = {**sent, "txnAmt": "1"}
    refused = await env.client.post(p.BACK_PATH, data=forged)
    assert p.parse_response(refused.text)["respCode"] == "11"

    await wait_for(lambda: len(env.receiver.got) == 1)
    note = await env.adapter.parse_notification({}, env.receiver.got[0])
    assert note.payment is not None and note.payment.status is ChannelPaymentStatus.succeeded
    assert note.payment.channel_trade_no == created.channel_trade_no
    assert note.payment.raw["txnSubType"] == "06"


async def test_no_term_id_unless_it_is_eight_digits(env: Env) -> None:
    adapter, rec = recording(env)
    await adapter.create_payment(code_request(device_id="SMQ01"))
    assert "termId" not in rec.sent[0]


async def test_password_then_paid(env: Env) -> None:
    script(env, BarcodeOutcome.password_paid, delay=100)
    req = code_request()
    created = await env.adapter.create_payment(req)
    assert created.status is ChannelPaymentStatus.pending
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.status is ChannelPaymentStatus.pending and state.raw["origRespCode"] == "05"
    await wait_for(lambda: order(env, req.out_trade_no).status.value == "succeeded")
    paid = await env.adapter.query_payment(req.out_trade_no)
    assert paid.status is ChannelPaymentStatus.succeeded and paid.amount == 1999
    await wait_for(lambda: len(env.receiver.got) == 1)


async def test_password_then_declined_is_failed_and_not_notified(env: Env) -> None:
    script(env, BarcodeOutcome.password_declined, delay=100)
    req = code_request()
    assert (await env.adapter.create_payment(req)).status is ChannelPaymentStatus.pending
    await wait_for(lambda: order(env, req.out_trade_no).status.value == "failed")
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.status is ChannelPaymentStatus.failed and state.channel_code == "01"
    assert env.receiver.got == []  # "失败的交易银联不会发送后台通知"


async def test_waiting_forever_is_reversed_by_chongzheng(env: Env) -> None:
    script(env, BarcodeOutcome.password_forever)
    adapter, rec = recording(env)
    req = code_request()
    assert (await adapter.create_payment(req)).status is ChannelPaymentStatus.pending
    reversed_ = await adapter.reverse_payment(req.out_trade_no)
    assert reversed_.out_trade_no == req.out_trade_no
    sent = rec.sent[-1]
    assert (sent["txnType"], sent["txnSubType"], sent["bizType"]) == ("99", "01", "000000")
    assert sent["orderId"] == p.order_id(req.out_trade_no)
    assert sent["txnTime"] == rec.sent[0]["txnTime"]  # 同原消费
    assert "txnAmt" not in sent and "qrNo" not in sent
    assert oracle_signature_ok(sent, merchant_key(env))
    assert oracle_signature_ok(p.parse_response(rec.answers[-1]), env.sandbox.signer.public_key())
    shown = (await env.client.get(f"/_sandbox/barcode/{req.out_trade_no}")).json()
    assert shown == {"orderId": p.order_id(req.out_trade_no), "status": "closed",
                     "reversed": True, "refunded": False}  # fmt: skip
    # The customer confirms too late: the order can no longer be paid.
    late = await env.client.post(
        f"/_sandbox/orders/{p.order_id(req.out_trade_no)}/pay", json={"result": "pay"}
    )
    assert order(env, req.out_trade_no).status.value == "closed", late.text
    assert (await adapter.query_payment(req.out_trade_no)).status is ChannelPaymentStatus.failed
    # A repeat (its answer lost, say) is confirmed again.
    assert (await adapter.reverse_payment(req.out_trade_no)).out_trade_no == req.out_trade_no


async def test_reversing_a_paid_order_refunds_it(env: Env) -> None:
    req = code_request()
    created = await env.adapter.create_payment(req)
    assert created.status is ChannelPaymentStatus.succeeded
    await env.adapter.reverse_payment(req.out_trade_no)
    shown = (await env.client.get(f"/_sandbox/barcode/{p.order_id(req.out_trade_no)}")).json()
    assert shown["reversed"] is True and shown["refunded"] is True
    # Its money is gone from the day's bill, and nothing is left to refund.
    today = kit_clock.now().astimezone(p.CHINA).date()
    assert p.order_id(req.out_trade_no).encode() not in env.sandbox.bill(env.creds["mer_id"], today)
    refund = base.CreateRefund(
        out_refund_no=new_id("re"),
        out_trade_no=req.out_trade_no, channel_trade_no=created.channel_trade_no, amount=1999,
        total_amount=1999, currency="CNY", reason=None, notify_url=req.notify_url,
    )  # fmt: skip
    with pytest.raises(BusinessError):
        await env.adapter.create_refund(refund)


@pytest.mark.parametrize(
    ("outcome", "code"),
    [(BarcodeOutcome.insufficient_balance, "unionpay_01"),
     (BarcodeOutcome.invalid_code, "unionpay_30")],
)  # fmt: skip
async def test_refusals(env: Env, outcome: BarcodeOutcome, code: str) -> None:
    script(env, outcome)
    req = code_request()
    with pytest.raises(BusinessError) as caught:
        await env.adapter.create_payment(req)
    assert caught.value.code == code
    assert env.receiver.got == []


async def test_a_code_of_another_shape_is_refused_before_sending(env: Env) -> None:
    adapter, rec = recording(env)
    with pytest.raises(BusinessError) as caught:
        await adapter.create_payment(code_request("134567890123456789"))
    assert caught.value.code == "invalid_auth_code" and rec.sent == []
    # The sandbox, too, refuses a qrNo that is not a 云闪付 code.
    req = code_request()
    form = adapter._signed(  # the adapter's own signing, with a wrong code
        p.CONSUME_CODE, orderId=p.order_id(req.out_trade_no),
        txnTime=p.txn_time_of(req.out_trade_no), txnAmt="1", currencyCode="156",
        backUrl=req.notify_url, qrNo="1234",
    )  # fmt: skip
    answer = p.parse_response((await env.client.post(p.BACK_PATH, data=form)).text)
    assert answer["respCode"] == "30"


async def test_create_timeout_is_unknown_and_the_query_finds_it_paid(env: Env) -> None:
    script(env, BarcodeOutcome.create_timeout)
    req = code_request()
    with pytest.raises(UnknownOutcome):
        await env.adapter_with(timeout=0.2).create_payment(req)
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.status is ChannelPaymentStatus.succeeded


async def test_create_error_is_unknown_and_reversing_nothing_is_fine(env: Env) -> None:
    script(env, BarcodeOutcome.create_error)
    req = code_request()
    with pytest.raises(UnknownOutcome):
        await env.adapter.create_payment(req)
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.status is ChannelPaymentStatus.not_found
    # 冲正 is refused (no such order); the query confirms nothing was taken.
    reversed_ = await env.adapter.reverse_payment(req.out_trade_no)
    assert reversed_.refunded is False and reversed_.raw["respCode"] == "35"


async def test_chongzheng_after_23_00_is_refused_without_sending(env: Env, clock: Any) -> None:
    script(env, BarcodeOutcome.password_forever)
    adapter, rec = recording(env)
    req = code_request()
    await adapter.create_payment(req)
    deadline = p.reverse_deadline(p.txn_time_of(req.out_trade_no))
    clock.advance((deadline - kit_clock.now()).total_seconds() + 1)
    sent = len(rec.sent)
    with pytest.raises(BusinessError) as caught:
        await adapter.reverse_payment(req.out_trade_no)
    assert caught.value.code == "reverse_window_closed" and len(rec.sent) == sent
    assert order(env, req.out_trade_no).status.value == "pending"


async def test_sandbox_takes_barcode_scripts_over_http(env: Env) -> None:
    r = await env.client.post("/_sandbox/barcode_scripts", json={"outcome": "password_forever"})
    assert r.status_code == 200 and r.json() == {"queued": 1}
    req = code_request()
    assert (await env.adapter.create_payment(req)).status is ChannelPaymentStatus.pending
    assert (await env.client.get("/_sandbox/barcode/nope")).status_code == 404
    assert BASE.startswith("http")

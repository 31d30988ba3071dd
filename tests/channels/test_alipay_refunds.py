"""Alipay refunds: ``alipay.trade.refund`` and ``alipay.trade.fastpay.refund.query`` through the
adapter against the sandbox, with the official ``python-alipay-sdk`` as an independent oracle
for what goes over the wire (request signatures, answer signatures, notifications)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.adapter import AlipayAdapter
from paymux.channels.base import (
    BusinessError,
    ChannelPaymentStatus,
    ChannelRefundStatus,
    CreatePayment,
    CreateRefund,
    RetryableError,
    UnknownOutcome,
)
from paymux.channels.sandbox_kit import RefundStatus
from tests.channels.test_alipay import Env, open_env, request, wait_for

_refund_counter = iter(range(1, 1_000_000))


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with open_env() as environment:
        yield environment


def refund_no() -> str:
    return f"re_{next(_refund_counter):06d}"


async def paid(env: Env, amount: int = 10000, subject: str = "Tea 茶") -> CreatePayment:
    """A paid QR order (its payment notification delivered and acknowledged)."""
    req = request(amount=amount, subject=subject)
    await env.adapter.create_payment(req)
    answer = await env.client.post(
        f"/_sandbox/orders/{req.out_trade_no}/pay", json={"result": "pay"}
    )
    assert answer.json()["changed"] is True
    await wait_for(lambda: any(d.get("acked") for d in env.sandbox.core.deliveries))
    env.receiver.got.clear()
    env.sandbox.core.deliveries.clear()
    return req


def refund(pay: CreatePayment, amount: int, *, no: str | None = None,
           reason: str | None = "退货 return") -> CreateRefund:  # fmt: skip
    return CreateRefund(
        out_refund_no=no or refund_no(),
        out_trade_no=pay.out_trade_no,
        channel_trade_no=None,
        amount=amount,
        total_amount=pay.amount,
        currency="CNY",
        notify_url="http://merchant.test/notify",
        reason=reason,
    )


async def script(env: Env, **fields: Any) -> None:
    answer = await env.client.post("/_sandbox/refund_scripts", json=fields)
    assert answer.status_code == 200


def sandbox_refunds(env: Env, pay: CreatePayment) -> list[tuple[str, int, RefundStatus]]:
    order = env.sandbox.core.find(pay.out_trade_no)
    assert order is not None
    return [(r.out_refund_no, r.amount, r.status) for r in env.sandbox.core.refunds_of(order)]


def form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode()))


# ---------------------------------------------------------------- codec
def test_refund_codec() -> None:
    utc = dt.datetime(2015, 4, 28, 7, 45, 57, 320000, tzinfo=dt.UTC)
    assert p.parse_time("2015-04-28 15:45:57.320") == utc  # gmt_refund: yyyy-MM-dd HH:mm:ss.S
    assert p.parse_time("2015-04-28 15:45:57.3") == utc.replace(microsecond=300000)
    for bad in ("2015-04-28 15:45:57.", "2015-04-28 15:45:57.x", "2015-04-28 15:45:57.1234567"):
        with pytest.raises(ValueError):
            p.parse_time(bad)
    assert p.map_refund_status("REFUND_SUCCESS") is ChannelRefundStatus.succeeded
    assert p.map_refund_status("") is ChannelRefundStatus.not_found
    assert p.map_refund_status("REFUND_FAIL") is ChannelRefundStatus.failed
    with pytest.raises(ValueError):
        p.map_refund_status("WHATEVER")
    with pytest.raises(ValueError):
        p.to_fen("Infinity")


# ---------------------------------------------------------------- happy paths
async def test_full_refund_closes_the_trade_but_not_the_payment(env: Env) -> None:
    pay = await paid(env, amount=1999)
    req = refund(pay, 1999)
    state = await env.adapter.create_refund(req)
    assert state.status is ChannelRefundStatus.succeeded
    assert state.out_refund_no == req.out_refund_no and state.out_trade_no == pay.out_trade_no
    assert state.amount is None  # refund_fee is the trade's total, not this refund's amount
    assert state.raw["fund_change"] == "Y" and state.raw["refund_fee"] == "19.99"
    refunded = env.sandbox.core.get_refund(env.creds["app_id"], req.out_refund_no)
    assert refunded is not None and refunded.finished_at is not None
    assert state.refunded_at == refunded.finished_at.replace(microsecond=0)

    queried = await env.adapter.query_refund(req.out_refund_no, pay.out_trade_no)
    assert queried.status is ChannelRefundStatus.succeeded
    assert queried.amount == 1999 and queried.currency == "CNY"
    assert queried.refunded_at == state.refunded_at
    assert queried.raw["refund_status"] == "REFUND_SUCCESS"

    # Alipay closes a fully refunded trade and notifies the trade's notify_url.
    assert (await env.adapter.query_payment(pay.out_trade_no)).status is (
        ChannelPaymentStatus.closed
    )
    await wait_for(lambda: len(env.receiver.got) == 1)
    body = env.receiver.got[0]
    fields = form(body)
    assert fields["trade_status"] == "TRADE_CLOSED" and fields["out_biz_no"] == req.out_refund_no
    assert fields["refund_fee"] == "19.99" and fields["gmt_close"] and fields["gmt_payment"]
    signature = fields.pop("sign")
    assert env.sdk().verify(dict(fields), signature) is True  # oracle

    note = await env.adapter.parse_notification({}, body)
    # The payment was paid; a refund never turns it into a closed payment.
    assert note.payment is not None
    assert note.payment.status is ChannelPaymentStatus.succeeded
    assert note.payment.amount == 1999 and note.payment.paid_at is not None
    assert note.reference == pay.out_trade_no
    assert note.refund is not None and note.refund.out_refund_no == req.out_refund_no
    assert note.refund.status is ChannelRefundStatus.succeeded and note.refund.amount is None
    assert note.refund.refunded_at == refunded.finished_at.replace(
        microsecond=refunded.finished_at.microsecond // 1000 * 1000
    )

    # Nothing is left to refund: the trade is closed.
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_refund(refund(pay, 1))
    assert info.value.code == "order_not_paid"


async def test_several_partial_refunds(env: Env) -> None:
    pay = await paid(env, amount=10000)
    first, second = refund(pay, 3000), refund(pay, 2000, reason=None)
    for req in (first, second):
        assert (await env.adapter.create_refund(req)).status is ChannelRefundStatus.succeeded
    assert (await env.adapter.query_refund(first.out_refund_no, pay.out_trade_no)).amount == 3000
    assert (await env.adapter.query_refund(second.out_refund_no, pay.out_trade_no)).amount == 2000

    with pytest.raises(BusinessError) as info:  # 60.00 of the 50.00 left
        await env.adapter.create_refund(refund(pay, 6000))
    assert info.value.code == "refund_exceeds_payment"
    assert "ACQ.REASON_TRADE_REFUND_FEE_ERR" in info.value.message
    assert (await env.adapter.query_payment(pay.out_trade_no)).status is (
        ChannelPaymentStatus.succeeded
    )

    last = refund(pay, 5000)
    assert (await env.adapter.create_refund(last)).status is ChannelRefundStatus.succeeded
    await wait_for(lambda: len(env.receiver.got) == 3)
    notes = sorted((form(b) for b in env.receiver.got), key=lambda f: p.to_fen(f["refund_fee"]))
    assert [(f["trade_status"], f["refund_fee"], f["out_biz_no"]) for f in notes] == [
        ("TRADE_SUCCESS", "30.00", first.out_refund_no),
        ("TRADE_SUCCESS", "50.00", second.out_refund_no),
        ("TRADE_CLOSED", "100.00", last.out_refund_no),
    ]
    for body in env.receiver.got:
        note = await env.adapter.parse_notification({}, body)
        assert note.payment is not None and note.payment.status is ChannelPaymentStatus.succeeded
        assert note.payment.amount == 10000  # total_amount, which the gateway cross-checks
        assert note.refund is not None and note.refund.status is ChannelRefundStatus.succeeded
    assert [a for _, a, _ in sandbox_refunds(env, pay)] == [3000, 2000, 5000]


async def test_replay_is_idempotent(env: Env) -> None:
    pay = await paid(env)
    req = refund(pay, 2500)
    assert (await env.adapter.create_refund(req)).status is ChannelRefundStatus.succeeded
    again = await env.adapter.create_refund(req)
    # Alipay answers a repeated out_request_no with fund_change=N; the adapter asks the query.
    assert again.status is ChannelRefundStatus.succeeded and again.amount == 2500
    assert sandbox_refunds(env, pay) == [(req.out_refund_no, 2500, RefundStatus.succeeded)]

    # The official SDK repeating the same request sees the same: accepted, no money moved.
    sdk = env.sdk()
    biz = {"out_trade_no": pay.out_trade_no, "refund_amount": "25.00",
           "out_request_no": req.out_refund_no}  # fmt: skip
    query = sdk.sign_data(sdk.build_body(p.METHOD_REFUND, biz))
    raw = (await env.client.get(f"/gateway.do?{query}")).text
    answer = sdk._verify_and_return_sync_response(raw, "alipay_trade_refund_response")
    assert answer["code"] == "10000" and answer["fund_change"] == "N"
    assert answer["refund_fee"] == "25.00"

    # The same number with another amount is a different request: refused, nothing moves.
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_refund(refund(pay, 100, no=req.out_refund_no))
    assert info.value.code == "duplicate_out_refund_no"
    assert "ACQ.DISCORDANT_REPEAT_REQUEST" in info.value.message
    assert len(sandbox_refunds(env, pay)) == 1


async def test_query_of_unknown_refund_is_not_found(env: Env) -> None:
    pay = await paid(env)
    state = await env.adapter.query_refund("re_never_sent", pay.out_trade_no)
    assert state.status is ChannelRefundStatus.not_found
    assert state.out_refund_no == "re_never_sent" and state.amount is None
    assert state.raw == {"code": "10000", "msg": "Success"}
    # No such trade, so no such refund either.
    state = await env.adapter.query_refund("re_never_sent", "att_never_created")
    assert state.status is ChannelRefundStatus.not_found


# ---------------------------------------------------------------- scripted outcomes
async def test_delayed_refund_is_pending_until_it_succeeds(env: Env) -> None:
    pay = await paid(env)
    await script(env, outcome="delayed", delay=200)  # 0.2 s at the test's time scale
    req = refund(pay, 1000)
    state = await env.adapter.create_refund(req)
    assert state.status is ChannelRefundStatus.pending
    assert state.raw["fund_change"] == "N"
    # Until it succeeds the query shows nothing ("not received, or not successful") ...
    assert (await env.adapter.query_refund(req.out_refund_no, pay.out_trade_no)).status is (
        ChannelRefundStatus.not_found
    )
    # ... and sending the same number again, as the janitor then does, refunds nothing twice.
    assert (await env.adapter.create_refund(req)).status is ChannelRefundStatus.pending
    assert sandbox_refunds(env, pay) == [(req.out_refund_no, 1000, RefundStatus.pending)]

    for _ in range(300):  # the janitor's later query
        state = await env.adapter.query_refund(req.out_refund_no, pay.out_trade_no)
        if state.status is ChannelRefundStatus.succeeded:
            break
        await asyncio.sleep(0.01)
    assert state.status is ChannelRefundStatus.succeeded and state.amount == 1000
    await wait_for(lambda: len(env.receiver.got) == 1)
    note = await env.adapter.parse_notification({}, env.receiver.got[0])
    assert note.refund is not None and note.refund.out_refund_no == req.out_refund_no


async def test_failed_refund_never_succeeds(env: Env) -> None:
    pay = await paid(env)
    await script(env, outcome="fail", delay=1)
    req = refund(pay, 1000)
    assert (await env.adapter.create_refund(req)).status is ChannelRefundStatus.pending
    await wait_for(lambda: sandbox_refunds(env, pay)[0][2] is RefundStatus.failed)
    # Alipay's query shows no REFUND_SUCCESS; the janitor re-sends the same number, which stays
    # accepted-but-not-done: never succeeded, never a second refund, never notified.
    assert (await env.adapter.query_refund(req.out_refund_no, pay.out_trade_no)).status is (
        ChannelRefundStatus.not_found
    )
    assert (await env.adapter.create_refund(req)).status is ChannelRefundStatus.pending
    assert sandbox_refunds(env, pay) == [(req.out_refund_no, 1000, RefundStatus.failed)]
    assert (await env.adapter.query_payment(pay.out_trade_no)).status is (
        ChannelPaymentStatus.succeeded
    )
    assert env.receiver.got == []
    # The money it did not move can still be refunded under another number.
    assert (await env.adapter.create_refund(refund(pay, 10000))).status is (
        ChannelRefundStatus.succeeded
    )


async def test_refused_for_balance_is_insufficient_balance(env: Env) -> None:
    pay = await paid(env)
    await script(env, outcome="refuse")
    req = refund(pay, 1000)
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_refund(req)
    assert info.value.code == "insufficient_balance"
    assert "ACQ.SELLER_BALANCE_NOT_ENOUGH" in info.value.message
    assert sandbox_refunds(env, pay) == []
    # Nothing was made: once the balance is topped up the same number goes through.
    assert (await env.adapter.create_refund(req)).status is ChannelRefundStatus.succeeded


async def test_system_error_is_unknown_then_resolved(env: Env) -> None:
    pay = await paid(env)
    await script(env, outcome="create_error")
    req = refund(pay, 1000)
    with pytest.raises(UnknownOutcome) as info:
        await env.adapter.create_refund(req)
    assert info.value.code == "ACQ.SYSTEM_ERROR"
    assert sandbox_refunds(env, pay) == []
    # The janitor asks, learns nothing was made, and sends the same number again.
    assert (await env.adapter.query_refund(req.out_refund_no, pay.out_trade_no)).status is (
        ChannelRefundStatus.not_found
    )
    assert (await env.adapter.create_refund(req)).status is ChannelRefundStatus.succeeded
    assert sandbox_refunds(env, pay) == [(req.out_refund_no, 1000, RefundStatus.succeeded)]


async def test_timeout_is_unknown_and_the_query_finds_the_refund(env: Env) -> None:
    pay = await paid(env)
    await script(env, outcome="create_timeout")
    req = refund(pay, 1000)
    with pytest.raises(UnknownOutcome) as info:
        await env.adapter_with(timeout=0.05).create_refund(req)
    assert info.value.code == "timeout"
    state = await env.adapter.query_refund(req.out_refund_no, pay.out_trade_no)
    assert state.status is ChannelRefundStatus.succeeded and state.amount == 1000


# ---------------------------------------------------------------- refusals
async def test_refunds_the_channel_refuses(env: Env) -> None:
    pending = request()
    await env.adapter.create_payment(pending)
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_refund(refund(pending, 100))
    assert info.value.code == "order_not_paid"
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_refund(refund(request(no="att_never_created"), 100))
    assert info.value.code == "order_not_found"


async def test_refunds_refused_before_any_call(env: Env) -> None:
    calls: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req)
        return httpx.Response(500)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        adapter = AlipayAdapter(env.creds, http)
        pay = request(amount=1000)
        cases = {
            "refund_exceeds_payment": refund(pay, 1001),
            "invalid_amount": refund(pay, 0),
            "unsupported_currency": CreateRefund(
                out_refund_no=refund_no(),
                out_trade_no=pay.out_trade_no,
                channel_trade_no=None,
                amount=1,
                total_amount=1000,
                currency="USD",
                notify_url="http://x",
            ),
        }
        for code, req in cases.items():
            with pytest.raises(BusinessError) as info:
                await adapter.create_refund(req)
            assert info.value.code == code
    assert calls == []


@pytest.mark.parametrize(
    ("failure", "kind", "code"),
    [
        (httpx.ConnectError("refused"), RetryableError, "connect_failed"),
        (httpx.ReadTimeout("slow answer"), UnknownOutcome, "timeout"),
        (503, UnknownOutcome, "http_5xx"),
    ],
)
async def test_refund_transport_failures(env: Env, failure: Any, kind: type, code: str) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if isinstance(failure, Exception):
            raise failure
        return httpx.Response(failure, text="unavailable")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        adapter = AlipayAdapter(env.creds, http)
        with pytest.raises(kind) as info:
            await adapter.create_refund(refund(request(amount=1000), 100))
        assert info.value.code == code
        with pytest.raises(kind):
            await adapter.query_refund("re_x", "att_x")


# ---------------------------------------------------------------- the SDK as oracle
async def test_refund_requests_match_the_sdk(env: Env) -> None:
    pay = await paid(env, amount=5000)
    sent: list[dict[str, str]] = []

    async def record(req: httpx.Request) -> None:
        params = dict(req.url.params)
        params.update(parse_qsl(req.content.decode()))
        sent.append(params)

    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=env.sandbox.app), timeout=2.0,
        event_hooks={"request": [record]},
    )  # fmt: skip
    env.clients.append(http)
    adapter = AlipayAdapter(env.creds, http)
    req = refund(pay, 1234, reason="尺码不合适 & wrong size")
    await adapter.create_refund(req)
    await adapter.query_refund(req.out_refund_no, pay.out_trade_no)

    (made, asked) = sent
    assert made["method"] == "alipay.trade.refund"
    assert json.loads(made["biz_content"]) == {
        "out_trade_no": pay.out_trade_no,
        "refund_amount": "12.34",
        "out_request_no": req.out_refund_no,
        "refund_reason": "尺码不合适 & wrong size",
    }
    assert asked["method"] == "alipay.trade.fastpay.refund.query"
    assert json.loads(asked["biz_content"]) == {
        "out_trade_no": pay.out_trade_no,
        "out_request_no": req.out_refund_no,
        "query_options": ["gmt_refund_pay"],
    }
    sdk = env.sdk()
    for params in (made, asked):
        ours = params.pop("sign")
        assert dict(parse_qsl(sdk.sign_data(dict(params))))["sign"] == ours

    # And the SDK's own refund query, sent to the sandbox, verifies the sandbox's answer.
    body = sdk.build_body(
        p.METHOD_REFUND_QUERY,
        {"out_trade_no": pay.out_trade_no, "out_request_no": req.out_refund_no},
    )
    raw = (await env.client.post("/gateway.do", data=dict(parse_qsl(sdk.sign_data(body))))).text
    answer = sdk._verify_and_return_sync_response(raw, "alipay_trade_fastpay_refund_query_response")
    assert answer["refund_status"] == "REFUND_SUCCESS" and answer["refund_amount"] == "12.34"
    assert "gmt_refund_pay" not in answer  # only when query_options asks for it


async def test_sdk_full_refund_without_request_number(env: Env) -> None:
    """Alipay's own default: no out_request_no means one full refund numbered by the trade."""
    pay = await paid(env, amount=800)
    sdk = env.sdk()
    for amount, expected in (("1.00", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"), ("8.00", None)):
        query = sdk.sign_data(
            sdk.build_body(p.METHOD_REFUND, {"out_trade_no": pay.out_trade_no,
                                             "refund_amount": amount})
        )  # fmt: skip
        raw = (await env.client.get(f"/gateway.do?{query}")).text
        answer = sdk._verify_and_return_sync_response(raw, "alipay_trade_refund_response")
        assert answer.get("sub_code") == expected
    state = await env.adapter.query_refund(pay.out_trade_no, pay.out_trade_no)
    assert state.status is ChannelRefundStatus.succeeded and state.amount == 800

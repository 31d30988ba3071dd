"""WeChat Pay refunds: adapter ↔ sandbox end to end, checked against the official SDK.

``POST /v3/refund/domestic/refunds``, ``GET /v3/refund/domestic/refunds/{out_refund_no}`` and the
``REFUND.*`` notifications. The harness (sandbox at http://wx.test, recording receiver) is the one
of ``test_wechatpay``; ``wechatpayv3`` independently verifies and decrypts what the sandbox sends.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import wechatpayv3.utils as wx_utils

from paymux.channels.base import (
    BusinessError,
    ChannelRefundStatus,
    CreatePayment,
    CreateRefund,
    InvalidNotification,
    RetryableError,
    UnknownOutcome,
)
from paymux.channels.sandbox_kit import NotifyMode, RefundOutcome, RefundScript
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.adapter import WechatPayAdapter, classify_refund_answer
from paymux.channels.wechatpay.sandbox import Sandbox
from tests.channels.test_wechatpay import (
    BASE,
    Env,
    Receiver,
    RefusingTransport,
    client_for,
    pay,
    payment,
    settle_tasks,
    until,
)

REFUND_NOTIFY_URL = "http://merchant.test/notify/wechatpay/refunds"
REFUND_RESOURCE_FIELDS = {
    "mchid", "out_trade_no", "transaction_id", "out_refund_no", "refund_id", "refund_status",
    "success_time", "user_received_account", "amount",
}  # fmt: skip


# ------------------------------------------------------------------ harness
@contextlib.asynccontextmanager
async def open_env() -> AsyncIterator[Env]:
    """A sandbox at http://wx.test, one provisioned merchant, its adapter and a receiver."""
    receiver = Receiver()
    notifier = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app))
    sandbox = Sandbox(http=notifier, time_scale=0.00001, hold_timeout_seconds=1.0)
    creds = sandbox.provision(BASE)
    sent: list[httpx.Request] = []
    http = client_for(sandbox, sent)
    try:
        yield Env(sandbox, receiver, creds, http, WechatPayAdapter(creds, http), sent)
    finally:
        await sandbox.core.aclose()
        await http.aclose()
        await notifier.aclose()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with open_env() as opened:
        yield opened


# ------------------------------------------------------------------ helpers
async def paid(env: Env, amount: int = 1999, subject: str = "T-shirt") -> CreatePayment:
    """A created and paid order (its payment notification already delivered)."""
    created = payment(amount=amount, subject=subject)
    await env.adapter.create_payment(created)
    before = len(env.receiver.received)
    await pay(env, created.out_trade_no)
    await until(lambda: len(env.receiver.received) > before, "the payment notification")
    return created


def refund_no() -> str:
    return "re_" + uuid.uuid4().hex[:20]


def refund_of(created: CreatePayment, amount: int | None = None, **extra: Any) -> CreateRefund:
    values: dict[str, Any] = {
        "out_refund_no": refund_no(),
        "out_trade_no": created.out_trade_no,
        "channel_trade_no": None,
        "amount": created.amount if amount is None else amount,
        "total_amount": created.amount,
        "currency": "CNY",
        "notify_url": REFUND_NOTIFY_URL,
        "reason": "customer changed their mind",
        **extra,
    }
    return CreateRefund(**values)


def refund_notifications(env: Env) -> list[tuple[dict[str, str], bytes]]:
    return [
        (h, b) for h, b in env.receiver.received
        if json.loads(b)["event_type"].startswith("REFUND.")
    ]  # fmt: skip


async def refund_notified(env: Env, count: int = 1) -> list[tuple[dict[str, str], bytes]]:
    await until(lambda: len(refund_notifications(env)) >= count, "refund notifications")
    return refund_notifications(env)


def signed_call(env: Env, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    key = protocol.load_private_key(env.creds["merchant_private_key"])
    auth = protocol.build_authorization(
        mchid=env.creds["mchid"], serial_no=env.creds["merchant_serial_no"], private_key=key,
        method=method, path_with_query=path, body=body,
    )  # fmt: skip
    return {"Authorization": auth, "Content-Type": "application/json"}


# ------------------------------------------------------------------ full and partial refunds
async def test_full_refund_succeeds_notifies_and_queries(env: Env) -> None:
    created = await paid(env)
    request = refund_of(created)
    state = await env.adapter.create_refund(request)
    assert state.status is ChannelRefundStatus.succeeded
    assert state.out_refund_no == request.out_refund_no
    assert state.out_trade_no == created.out_trade_no
    assert state.amount == created.amount and state.currency == "CNY"
    assert state.refunded_at is not None and state.channel_refund_no

    sent = env.sent[-1]
    assert (sent.method, sent.url.path) == ("POST", "/v3/refund/domestic/refunds")
    body = json.loads(sent.content)
    assert body == {
        "out_trade_no": created.out_trade_no,
        "out_refund_no": request.out_refund_no,
        "reason": "customer changed their mind",
        "notify_url": REFUND_NOTIFY_URL,
        "amount": {"refund": 1999, "total": 1999, "currency": "CNY"},
    }

    [(headers, raw)] = await refund_notified(env)
    envelope = json.loads(raw)
    assert envelope["event_type"] == "REFUND.SUCCESS"
    assert envelope["summary"] == "退款成功"
    assert envelope["resource"]["original_type"] == "refund"
    assert envelope["resource"]["associated_data"] == "refund"
    assert env.receiver.received[-1][0]["content-type"] == "application/json"
    note = await env.adapter.parse_notification(headers, raw)
    assert note.payment is None and note.refund is not None
    assert note.reference == created.out_trade_no
    assert note.refund.status is ChannelRefundStatus.succeeded
    assert note.refund.channel_refund_no == state.channel_refund_no
    assert note.refund.amount == 1999 and note.refund.refunded_at == state.refunded_at
    assert set(note.refund.raw) == REFUND_RESOURCE_FIELDS
    assert set(note.refund.raw["amount"]) == {"total", "refund", "payer_total", "payer_refund"}
    assert note.refund.raw["mchid"] == env.creds["mchid"]

    # The official SDK verifies the notification and decrypts the same refund resource.
    official = env.official().callback(headers, raw)
    assert official is not None and official["resource"] == note.refund.raw
    assert official["resource"]["refund_status"] == "SUCCESS"
    order = env.sandbox.core.find(created.out_trade_no)
    assert order is not None
    assert official["resource"]["transaction_id"] == order.channel_trade_no

    queried = await env.adapter.query_refund(request.out_refund_no, created.out_trade_no)
    assert queried.status is ChannelRefundStatus.succeeded
    assert queried.channel_refund_no == state.channel_refund_no
    assert queried.raw["status"] == "SUCCESS" and queried.raw["channel"] == "ORIGINAL"
    assert env.sent[-1].url.path == f"/v3/refund/domestic/refunds/{request.out_refund_no}"
    assert env.sent[-1].content == b""


async def test_several_partial_refunds_then_exceeding_is_refused(env: Env) -> None:
    created = await paid(env, amount=1000)
    for amount in (300, 300, 399):
        state = await env.adapter.create_refund(refund_of(created, amount))
        assert state.status is ChannelRefundStatus.succeeded and state.amount == amount
    order = env.sandbox.core.find(created.out_trade_no)
    assert order is not None and env.sandbox.core.refundable(order) == 1
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_refund(refund_of(created, 2))
    assert info.value.code == "refund_exceeds_payment"
    assert info.value.raw["code"] == "INVALID_REQUEST"
    last = await env.adapter.create_refund(refund_of(created, 1))
    assert last.status is ChannelRefundStatus.succeeded
    assert len(env.sandbox.core.refunds_of(order)) == 4
    await refund_notified(env, 4)
    for headers, raw in refund_notifications(env):
        note = await env.adapter.parse_notification(headers, raw)
        assert note.refund is not None and note.refund.status is ChannelRefundStatus.succeeded


async def test_refund_above_the_order_total_fails_before_any_call(env: Env) -> None:
    created = await paid(env, amount=500)
    calls = len(env.sent)
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_refund(refund_of(created, 501))
    assert info.value.code == "refund_exceeds_payment"
    for bad in ({"amount": 0}, {"currency": "USD"}):
        with pytest.raises(BusinessError):
            await env.adapter.create_refund(refund_of(created, **bad))
    assert len(env.sent) == calls


async def test_refund_replay_is_idempotent(env: Env) -> None:
    created = await paid(env)
    request = refund_of(created, 500)
    first = await env.adapter.create_refund(request)
    again = await env.adapter.create_refund(request)
    assert again.channel_refund_no == first.channel_refund_no
    assert again.status is ChannelRefundStatus.succeeded
    order = env.sandbox.core.find(created.out_trade_no)
    assert order is not None and len(env.sandbox.core.refunds_of(order)) == 1
    assert env.sandbox.core.refundable(order) == created.amount - 500
    with pytest.raises(BusinessError) as info:  # same number, another amount
        await env.adapter.create_refund(
            refund_of(created, 600, out_refund_no=request.out_refund_no)
        )
    assert info.value.code == "duplicate_out_refund_no"
    other = await paid(env)
    with pytest.raises(BusinessError) as info:  # same number, another order
        await env.adapter.create_refund(refund_of(other, 500, out_refund_no=request.out_refund_no))
    assert info.value.code == "duplicate_out_refund_no"


async def test_refund_by_transaction_id(env: Env) -> None:
    created = await paid(env)
    order = env.sandbox.core.find(created.out_trade_no)
    assert order is not None
    body = protocol.encode_json({
        "transaction_id": order.channel_trade_no, "out_refund_no": refund_no(),
        "amount": {"refund": 100, "total": created.amount, "currency": "CNY"},
    })  # fmt: skip
    path = "/v3/refund/domestic/refunds"
    r = await env.http.post(BASE + path, content=body, headers=signed_call(env, "POST", path, body))
    assert r.status_code == 200, r.text
    assert r.json()["out_trade_no"] == created.out_trade_no
    assert r.json()["amount"]["refund"] == 100
    await settle_tasks()
    assert refund_notifications(env) == []  # no notify_url: nothing is sent


async def test_query_unknown_refund_is_not_found(env: Env) -> None:
    state = await env.adapter.query_refund(refund_no(), "wxnothing")
    assert state.status is ChannelRefundStatus.not_found
    assert state.raw["code"] == "RESOURCE_NOT_EXISTS"


async def test_refund_of_unpaid_or_unknown_order_is_refused(env: Env) -> None:
    unpaid = payment()
    await env.adapter.create_payment(unpaid)
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_refund(refund_of(unpaid))
    assert info.value.code == "order_not_paid"
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_refund(refund_of(payment()))
    assert info.value.code == "order_not_found"
    assert env.sandbox.core.refunds == {}


# ------------------------------------------------------------------ scripted outcomes
async def test_delayed_refund_is_pending_then_succeeds_by_query(env: Env) -> None:
    created = await paid(env)
    env.sandbox.core.add_refund_script(RefundScript(outcome=RefundOutcome.delayed, delay=1e9))
    request = refund_of(created)
    state = await env.adapter.create_refund(request)
    assert state.status is ChannelRefundStatus.pending
    assert state.raw["status"] == "PROCESSING" and state.refunded_at is None
    queried = await env.adapter.query_refund(request.out_refund_no, created.out_trade_no)
    assert queried.status is ChannelRefundStatus.pending
    await settle_tasks()
    assert refund_notifications(env) == []  # not final: not notified
    order = env.sandbox.core.find(created.out_trade_no)
    assert order is not None and env.sandbox.core.refundable(order) == 0  # pending counts

    refund = env.sandbox.core.get_refund(env.creds["mchid"], request.out_refund_no)
    assert refund is not None
    assert env.sandbox.core.finish_refund(refund, succeeded=True)  # the bank comes back
    queried = await env.adapter.query_refund(request.out_refund_no, created.out_trade_no)
    assert queried.status is ChannelRefundStatus.succeeded and queried.refunded_at is not None


async def test_delayed_refund_succeeds_by_notification(env: Env) -> None:
    created = await paid(env)
    r = await env.http.post(f"{BASE}/_sandbox/refund_scripts", json={"outcome": "delayed"})
    assert r.status_code == 200
    state = await env.adapter.create_refund(refund_of(created))
    assert state.status is ChannelRefundStatus.pending
    [(headers, raw)] = await refund_notified(env)
    note = await env.adapter.parse_notification(headers, raw)
    assert note.refund is not None
    assert note.refund.status is ChannelRefundStatus.succeeded
    assert note.refund.out_refund_no == state.out_refund_no
    assert env.official().callback(headers, raw)["resource"]["refund_status"] == "SUCCESS"


@pytest.mark.parametrize("ending", ["ABNORMAL", "CLOSED"])
async def test_failed_refund_is_notified_and_frees_the_amount(env: Env, ending: str) -> None:
    created = await paid(env)
    env.sandbox.refund_fail_status = ending
    env.sandbox.core.add_refund_script(RefundScript(outcome=RefundOutcome.fail))
    request = refund_of(created)
    state = await env.adapter.create_refund(request)
    assert state.status is ChannelRefundStatus.pending
    [(headers, raw)] = await refund_notified(env)
    assert json.loads(raw)["event_type"] == f"REFUND.{ending}"
    note = await env.adapter.parse_notification(headers, raw)
    assert note.refund is not None
    assert note.refund.status is ChannelRefundStatus.failed
    assert note.refund.failure_code == ending
    assert note.refund.failure_message == protocol.REFUND_STATE_DESC[ending]
    assert note.refund.refunded_at is None and "success_time" not in note.refund.raw
    official = env.official().callback(headers, raw)
    assert official["resource"]["refund_status"] == ending
    queried = await env.adapter.query_refund(request.out_refund_no, created.out_trade_no)
    assert queried.status is ChannelRefundStatus.failed and queried.failure_code == ending
    # A failed refund gives its amount back: a new refund number may take it.
    again = await env.adapter.create_refund(refund_of(created))
    assert again.status is ChannelRefundStatus.succeeded
    with pytest.raises(ValueError):
        env.sandbox.refund_fail_status = "PROCESSING"


async def test_refused_refund_is_insufficient_balance_and_nothing_exists(env: Env) -> None:
    created = await paid(env)
    env.sandbox.core.add_refund_script(RefundScript(outcome=RefundOutcome.refuse))
    request = refund_of(created)
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_refund(request)
    assert info.value.code == "insufficient_balance"
    assert info.value.raw["code"] == "NOT_ENOUGH"
    missing = await env.adapter.query_refund(request.out_refund_no, created.out_trade_no)
    assert missing.status is ChannelRefundStatus.not_found


async def test_create_error_is_unknown_outcome_then_not_found(env: Env) -> None:
    created = await paid(env)
    env.sandbox.core.add_refund_script(RefundScript(outcome=RefundOutcome.create_error))
    request = refund_of(created)
    with pytest.raises(UnknownOutcome) as info:
        await env.adapter.create_refund(request)
    assert info.value.code == "system_error"
    missing = await env.adapter.query_refund(request.out_refund_no, created.out_trade_no)
    assert missing.status is ChannelRefundStatus.not_found
    retried = await env.adapter.create_refund(request)  # the script was used once
    assert retried.status is ChannelRefundStatus.succeeded


async def test_create_timeout_is_unknown_outcome_and_the_refund_exists(env: Env) -> None:
    created = await paid(env)
    env.sandbox.core.add_refund_script(RefundScript(outcome=RefundOutcome.create_timeout))
    request = refund_of(created)
    async with env.client(timeout=0.05) as impatient:
        with pytest.raises(UnknownOutcome) as info:
            await WechatPayAdapter(env.creds, impatient).create_refund(request)
    assert info.value.code == "read_timeout"
    queried = await env.adapter.query_refund(request.out_refund_no, created.out_trade_no)
    assert queried.status is ChannelRefundStatus.succeeded
    again = await env.adapter.create_refund(request)  # the retry meets the same refund
    assert again.channel_refund_no == queried.channel_refund_no


async def test_refund_connect_error_is_retryable(env: Env) -> None:
    created = await paid(env)
    async with httpx.AsyncClient(transport=RefusingTransport()) as refused:
        adapter = WechatPayAdapter(env.creds, refused)
        with pytest.raises(RetryableError):
            await adapter.create_refund(refund_of(created))
        with pytest.raises(RetryableError):
            await adapter.query_refund(refund_no(), created.out_trade_no)


async def test_refund_notify_none_is_learnt_by_query(env: Env) -> None:
    created = await paid(env)
    env.sandbox.core.add_refund_script(
        RefundScript(outcome=RefundOutcome.delayed, notify=NotifyMode.none)
    )
    request = refund_of(created)
    await env.adapter.create_refund(request)
    refund = env.sandbox.core.get_refund(env.creds["mchid"], request.out_refund_no)
    assert refund is not None
    await until(lambda: refund.finished_at is not None, "the refund to finish")
    await settle_tasks()
    assert refund_notifications(env) == []
    state = await env.adapter.query_refund(request.out_refund_no, created.out_trade_no)
    assert state.status is ChannelRefundStatus.succeeded


async def test_refund_notifications_are_retried_and_duplicates_share_a_key(env: Env) -> None:
    created = await paid(env)
    env.receiver.statuses.extend([500, 503])
    await env.adapter.create_refund(refund_of(created, 100))
    await refund_notified(env, 3)
    assert len({raw for _, raw in refund_notifications(env)}) == 1
    env.sandbox.core.add_refund_script(RefundScript(notify=NotifyMode.duplicate))
    await env.adapter.create_refund(refund_of(created, 100))
    await refund_notified(env, 5)
    keys = {
        (await env.adapter.parse_notification(h, b)).event_key
        for h, b in refund_notifications(env)[3:]
    }
    assert len(keys) == 1


# ------------------------------------------------------------------ the wire, checked independently
async def test_sandbox_accepts_official_sdk_refund_and_its_sdk_verifies_answers(env: Env) -> None:
    created = await paid(env)
    key = protocol.load_private_key(env.creds["merchant_private_key"])
    no = refund_no()
    data = {
        "out_trade_no": created.out_trade_no, "out_refund_no": no, "reason": "broken",
        "amount": {"refund": 999, "total": created.amount, "currency": "CNY"},
        "notify_url": REFUND_NOTIFY_URL,
    }  # fmt: skip
    body = json.dumps(data)  # the SDK's own serialisation, with spaces
    path = "/v3/refund/domestic/refunds"
    auth = wx_utils.build_authorization(
        path, "POST", env.creds["mchid"], env.creds["merchant_serial_no"], key, data=body
    )
    r = await env.http.post(
        BASE + path, content=body,
        headers={"Authorization": auth, "Content-Type": "application/json"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert env.official()._verify_signature(r.headers, r.text)
    assert r.json()["status"] == "SUCCESS" and r.json()["amount"]["refund"] == 999
    query = f"{path}/{no}"
    auth = wx_utils.build_authorization(
        query, "GET", env.creds["mchid"], env.creds["merchant_serial_no"], key
    )
    r = await env.http.get(BASE + query, headers={"Authorization": auth})
    assert r.status_code == 200 and r.json()["out_refund_no"] == no
    assert env.official()._verify_signature(r.headers, r.text)
    r = await env.http.get(BASE + f"{path}/{refund_no()}", headers={"Authorization": auth})
    assert r.status_code == 401  # signed for another path


async def test_sandbox_validates_refund_requests(env: Env) -> None:
    created = await paid(env)
    path = "/v3/refund/domestic/refunds"
    good = {
        "out_trade_no": created.out_trade_no, "out_refund_no": refund_no(),
        "amount": {"refund": 100, "total": created.amount, "currency": "CNY"},
    }  # fmt: skip
    cases: list[tuple[Any, int, str]] = [
        ({**good, "out_refund_no": "bad/number"}, 400, "PARAM_ERROR"),
        ({**good, "out_refund_no": "x" * 65}, 400, "PARAM_ERROR"),
        ({k: v for k, v in good.items() if k != "out_trade_no"}, 400, "PARAM_ERROR"),
        ({**good, "amount": {"refund": 100, "total": created.amount}}, 400, "PARAM_ERROR"),
        ({**good, "amount": {"refund": "1", "total": created.amount, "currency": "CNY"}},
         400, "PARAM_ERROR"),
        ({**good, "amount": {"refund": 100, "total": created.amount, "currency": "USD"}},
         400, "PARAM_ERROR"),
        ({**good, "amount": {"refund": 100, "total": created.amount + 1, "currency": "CNY"}},
         400, "PARAM_ERROR"),
        ({**good, "reason": "x" * 81}, 400, "PARAM_ERROR"),
        ({**good, "notify_url": "ftp://merchant.test/x"}, 400, "PARAM_ERROR"),
        ({**good, "out_trade_no": "wxunknown123"}, 404, "RESOURCE_NOT_EXISTS"),
        ("not json", 400, "PARAM_ERROR"),
    ]  # fmt: skip
    for data, status, code in cases:
        body = data.encode() if isinstance(data, str) else protocol.encode_json(data)
        r = await env.http.post(
            BASE + path, content=body, headers=signed_call(env, "POST", path, body)
        )
        assert (r.status_code, r.json()["code"]) == (status, code), (data, r.text)
        assert env.official()._verify_signature(r.headers, r.text)  # errors are signed
    body = protocol.encode_json(good)
    r = await env.http.post(BASE + path, content=body, headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (401, "SIGN_ERROR")
    r = await env.http.get(BASE + path + "/" + refund_no())
    assert r.status_code == 401
    assert env.sandbox.core.refunds == {}


# ------------------------------------------------------------------ notifications that must fail
async def test_forged_and_foreign_refund_notifications_are_rejected(env: Env) -> None:
    created = await paid(env)
    await env.adapter.create_refund(refund_of(created))
    [(headers, raw)] = await refund_notified(env)

    async def rejected(adapter: WechatPayAdapter, h: dict[str, str], b: bytes) -> str:
        with pytest.raises(InvalidNotification) as info:
            await adapter.parse_notification(h, b)
        return info.value.code

    # Signed by another platform key under our key id.
    impostor = Sandbox()
    forged = {**headers, **{k.lower(): v for k, v in impostor.sign(raw).items()}}
    forged["wechatpay-serial"] = env.creds["platform_public_key_id"]
    assert await rejected(env.adapter, forged, raw) == "bad_signature"
    assert not env.official()._verify_signature(forged, raw.decode())
    # Tampered after signing.
    tampered = json.loads(raw)
    tampered["event_type"] = "REFUND.CLOSED"
    assert await rejected(env.adapter, headers, protocol.encode_json(tampered)) == "bad_signature"
    # Another merchant of the same platform cannot decrypt it…
    other_creds = env.sandbox.provision(BASE)
    assert await rejected(WechatPayAdapter(other_creds, env.http), headers, raw) == (
        "decrypt_failed"
    )
    # …and with our APIv3 key it still names another merchant.
    same_key = WechatPayAdapter({**other_creds, "apiv3_key": env.creds["apiv3_key"]}, env.http)
    assert await rejected(same_key, headers, raw) == "wrong_merchant"

    # Correctly signed and encrypted, but the status contradicts the event type.
    resource = json.loads(protocol.decrypt_resource(env.creds["apiv3_key"],
                                                    json.loads(raw)["resource"]))  # fmt: skip
    lying = {
        **json.loads(raw), "event_type": "REFUND.CLOSED",
        "resource": protocol.encrypt_resource(
            env.creds["apiv3_key"], protocol.encode_json(resource),
            original_type="refund", associated_data="refund"),
    }  # fmt: skip
    body = protocol.encode_json(lying)
    assert await rejected(env.adapter, env.sandbox.sign(body), body) == "malformed"
    # A refund resource without out_refund_no, or under an unknown REFUND.* event.
    for event_type, data in (
        ("REFUND.SUCCESS", {k: v for k, v in resource.items() if k != "out_refund_no"}),
        ("REFUND.SOMETHING", resource),
    ):
        envelope = {
            **json.loads(raw), "event_type": event_type,
            "resource": protocol.encrypt_resource(
                env.creds["apiv3_key"], protocol.encode_json(data),
                original_type="refund", associated_data="refund"),
        }  # fmt: skip
        body = protocol.encode_json(envelope)
        assert await rejected(env.adapter, env.sandbox.sign(body), body) in (
            "malformed", "unsupported_event",
        )  # fmt: skip
    # The genuine notification still parses.
    note = await env.adapter.parse_notification(headers, raw)
    assert note.refund is not None and note.refund.status is ChannelRefundStatus.succeeded


def test_refund_error_classification_table() -> None:
    cases: list[tuple[int, Any, type[Exception], str]] = [
        (500, {"code": "SYSTEM_ERROR", "message": "系统超时"}, UnknownOutcome, "system_error"),
        (429, {"code": "FREQUENCY_LIMITED", "message": "频率限制"}, UnknownOutcome,
         "frequency_limited"),
        (403, {"code": "NOT_ENOUGH", "message": "余额不足"}, BusinessError, "insufficient_balance"),
        (400, {"code": "INVALID_REQUEST", "message": "申请退款金额超过订单可退金额"},
         BusinessError, "refund_exceeds_payment"),
        (400, {"code": "INVALID_REQUEST", "message": "订单已全额退款"}, BusinessError,
         "refund_exceeds_payment"),
        (400, {"code": "INVALID_REQUEST", "message": "订单未支付"}, BusinessError,
         "order_not_paid"),
        (400, {"code": "INVALID_REQUEST", "message": "退款参数与原请求不一致"}, BusinessError,
         "duplicate_out_refund_no"),
        (404, {"code": "RESOURCE_NOT_EXISTS", "message": "订单不存在"}, BusinessError,
         "order_not_found"),
        (403, {"code": "USER_ACCOUNT_ABNORMAL"}, BusinessError, "user_account_abnormal"),
        (502, None, UnknownOutcome, "channel_error"),
        (403, {"code": "SOMETHING_NEW"}, BusinessError, "something_new"),
    ]  # fmt: skip
    for status, payload, kind, code in cases:
        error = classify_refund_answer(status, payload)
        assert type(error) is kind and error.code == code, (status, payload)

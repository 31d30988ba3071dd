"""Issue 10 item 6: a success the channel signed but whose amount is missing, or differs from
the order in amount or currency, is refused on every channel — the payment stays unpaid, the
ledger untouched, the channel gets its failure acknowledgement (so it retries) and the inbox
keeps what it was sent (``rejected``) when it got that far. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
import sqlalchemy as sa

from paymux.channels.sandbox_kit import NotifyMode, OrderStatus, Outcome, SandboxOrder, Script
from paymux.channels.stripe import protocol as stripe_protocol
from paymux.channels.wechatpay import protocol as wechat_protocol
from paymux.kit import clock
from paymux.ledger.models import LedgerTransaction
from tests.conftest import GATEWAY, Stack, Tenant, attempt_ids, make_tenant
from tests.payments.test_payments import events_of, inbox_of

Edit = Callable[[dict[str, Any]], None]

# channel → (method, currency, how to drop the amount, set another amount, another currency)
WIRE: dict[str, tuple[str, str, Edit, Edit, Edit]] = {
    "wechatpay": (
        "wechat_native", "CNY", lambda tx: tx.pop("amount"),
        lambda tx: tx["amount"].update(total=1), lambda tx: tx["amount"].update(currency="USD"),
    ),
    "wechatpay_partner": (
        "wechat_native", "CNY", lambda tx: tx.pop("amount"),
        lambda tx: tx["amount"].update(total=1), lambda tx: tx["amount"].update(currency="USD"),
    ),
    "alipay": (
        "alipay_qr", "CNY",
        lambda f: [f.pop(k) for k in ("total_amount", "receipt_amount", "buyer_pay_amount")],
        lambda f: f.update(total_amount="0.01"), lambda f: f.update(trans_currency="USD"),
    ),
    "unionpay": (
        "unionpay_qr", "CNY", lambda f: [f.pop(k) for k in ("txnAmt", "settleAmt")],
        lambda f: f.update(txnAmt="1"), lambda f: f.update(currencyCode="840"),
    ),
    "stripe": (
        "card", "USD", lambda i: [i.pop(k) for k in ("amount", "currency", "amount_received")],
        lambda i: i.update(amount=1, amount_received=1), lambda i: i.update(currency="eur"),
    ),
    "paypal": (
        "paypal", "USD", lambda c: c.pop("amount"),
        lambda c: c["amount"].update(value="0.01"),
        lambda c: c["amount"].update(currency_code="EUR"),
    ),
}  # fmt: skip


def channel_of(variant: str) -> str:
    return variant.removesuffix("_partner")


def forge(stack: Stack, variant: str, order: SandboxOrder, edit: Edit) -> tuple[dict[str, str],
                                                                               bytes]:  # fmt: skip
    """A success notification for ``order``, edited on the wire, then correctly signed with the
    sandbox's (the channel's) own keys."""
    channel = channel_of(variant)
    sb = stack.sandboxes[channel]
    order.status = OrderStatus.succeeded
    order.paid_at = clock.now()
    if channel == "wechatpay":
        partner = variant == "wechatpay_partner"
        tx = sb.partners.transaction(order) if partner else sb.transaction(order)
        edit(tx)
        key = sb.merchants[order.extra["sp_mchid"] if partner else order.merchant_id].apiv3_key
        resource = wechat_protocol.encrypt_resource(key, wechat_protocol.encode_json(tx))
        headers, body = sb._signed_event(str(uuid.uuid4()), "TRANSACTION.SUCCESS", "支付成功",
                                         resource)  # fmt: skip
        return dict(headers), body
    if channel == "alipay":
        fields = sb._trade_notification(order)
        edit(fields)
        headers, body = sb._signed_form(fields)
        return dict(headers), body
    if channel == "unionpay":
        headers, body = sb.build_notification(order)
        fields = dict(parse_qsl(body.decode()))
        fields.pop("signature", None)
        edit(fields)
        return dict(headers), urlencode(sb.signed(fields)).encode()
    if channel == "stripe":
        intent = sb.intent_of(order)
        obj = sb.intent_json(intent)
        obj["status"] = "succeeded"
        edit(obj)
        _, body = sb._event("payment_intent.succeeded", obj)
        now = int(clock.now().timestamp())
        signature = stripe_protocol.signature_header(body, intent.account.webhook_secrets, now)
        return {"Stripe-Signature": signature, "Content-Type": "application/json"}, body
    assert channel == "paypal"
    order.extra.setdefault("capture_id", "CAP" + uuid.uuid4().hex[:14].upper())
    order.extra.setdefault("captured_at", clock.now())
    capture = sb.capture_view(order)
    edit(capture)
    body = sb._event("capture", "PAYMENT.CAPTURE.COMPLETED", "Payment capture completed",
                     capture, str(order.extra["capture_id"]))  # fmt: skip
    return sb.sign(sb.apps[order.merchant_id], body), body


async def _ledger_count(stack: Stack) -> int:
    async with stack.runtime.db.read() as session:
        return int(await session.scalar(sa.select(sa.func.count(LedgerTransaction.id))) or 0)


async def _tenant(stack: Stack, variant: str) -> Tenant:
    channel = channel_of(variant)
    if variant != "wechatpay_partner":
        return await make_tenant(stack, channels=(channel,))
    creds = stack.sandboxes[channel].provision_sub_merchant(f"{GATEWAY}/sandbox/wechatpay")
    return await make_tenant(stack, channels=(channel,), credentials={channel: creds})


async def _pending(stack: Stack, tenant: Tenant, variant: str) -> tuple[dict[str, Any], str]:
    method, currency = WIRE[variant][:2]
    channel = channel_of(variant)
    subject = f"forge-{uuid.uuid4().hex[:8]}"
    stack.sandboxes[channel].core.add_script(
        Script(outcome=Outcome.manual, notify=NotifyMode.none, subject=subject)
    )
    body = {"amount": 1999, "currency": currency, "method": method, "subject": subject,
            "out_trade_no": "o" + uuid.uuid4().hex[:20],
            "return_url": "https://shop.example/back"}  # fmt: skip
    r = await stack.client.post("/v1/payments", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    (attempt,) = await attempt_ids(stack, r.json()["id"])
    return r.json(), attempt


@pytest.mark.parametrize("variant", list(WIRE))
@pytest.mark.parametrize("forgery", ["no_amount", "wrong_amount", "wrong_currency"])
async def test_signed_success_without_the_orders_amount_is_refused(
    stack: Stack, variant: str, forgery: str
) -> None:
    tenant = await _tenant(stack, variant)
    channel = channel_of(variant)
    payment, attempt = await _pending(stack, tenant, variant)
    core = stack.sandboxes[channel].core
    order = core.find(attempt)
    assert order is not None
    edit = WIRE[variant][{"no_amount": 2, "wrong_amount": 3, "wrong_currency": 4}[forgery]]
    before = await _ledger_count(stack)
    headers, body = forge(stack, variant, order, edit)
    url = f"/notify/{channel}/{tenant.accounts[channel]}"
    r = await stack.client.post(url, content=body, headers=headers)
    # the channel's own failure acknowledgement (it will send the notification again)
    assert not 200 <= r.status_code < 300, r.text
    again = await stack.client.post(url, content=body, headers=headers)  # the redelivery
    assert not 200 <= again.status_code < 300
    now = await stack.client.get(f"/v1/payments/{payment['id']}", headers=tenant.headers)
    assert now.json()["status"] == "pending"
    assert await events_of(stack, tenant) == []
    assert await _ledger_count(stack) == before
    assert {e.result for e in await inbox_of(stack, attempt)} <= {"rejected"}


async def test_the_janitors_query_then_decides(stack: Stack) -> None:
    """After a refused success, the query (which reports the real amount) settles it."""
    tenant = await make_tenant(stack, channels=("wechatpay",))
    payment, attempt = await _pending(stack, tenant, "wechatpay")
    order = stack.sandboxes["wechatpay"].core.find(attempt)
    assert order is not None
    headers, body = forge(stack, "wechatpay", order, WIRE["wechatpay"][2])
    r = await stack.client.post(f"/notify/wechatpay/{tenant.accounts['wechatpay']}",
                                content=body, headers=headers)  # fmt: skip
    assert r.status_code >= 400
    (event,) = await inbox_of(stack, attempt)
    assert event.result == "rejected" and json.loads(event.body)["id"]
    from paymux.payments.lifecycle import resolve_attempt

    await resolve_attempt(stack.runtime, attempt)
    now = await stack.client.get(f"/v1/payments/{payment['id']}", headers=tenant.headers)
    assert now.json()["status"] == "succeeded"


def test_a_success_state_without_amount_is_refused_by_the_rule() -> None:
    from paymux.channels import base
    from paymux.payments.models import Attempt
    from paymux.payments.transitions import amount_problem

    attempt = Attempt(id="att_x", amount=100, currency="CNY")
    ok = base.ChannelPaymentStatus.succeeded
    assert amount_problem(base.PaymentState("att_x", ok), attempt) == "amount_missing"
    assert amount_problem(base.PaymentState("att_x", ok, amount=100), attempt) == "amount_missing"
    assert amount_problem(base.PaymentState("att_x", ok, amount=100, currency="CNY"),
                          attempt) is None  # fmt: skip
    assert amount_problem(base.PaymentState("att_x", ok, amount=99, currency="CNY"),
                          attempt) == "amount_mismatch"  # fmt: skip
    closed = base.PaymentState("att_x", base.ChannelPaymentStatus.closed)
    assert amount_problem(closed, attempt) is None


@pytest.mark.parametrize("forgery", ["no_amount", "wrong_amount", "wrong_currency"])
async def test_a_refund_success_without_its_amount_is_refused(stack: Stack, forgery: str) -> None:
    """Refunds that the channel notifies on their own (WeChat ``REFUND.SUCCESS``) obey the same
    rule: the refund stays pending until the channel's query answers."""
    from paymux.channels.sandbox_kit import RefundOutcome, RefundScript, RefundStatus
    from tests.refunds.test_refunds import paid_payment, refund

    tenant = await make_tenant(stack, channels=("wechatpay",))
    sb = stack.sandboxes["wechatpay"]
    paid = await paid_payment(stack, tenant, "wechat_native", "wechatpay")
    sb.core.add_refund_script(RefundScript(outcome=RefundOutcome.delayed,
                                           notify=NotifyMode.none, delay=3600))  # fmt: skip
    r = await refund(stack, tenant, paid["id"], amount=400)
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    (attempt,) = await attempt_ids(stack, paid["id"])
    order = sb.core.find(attempt)
    assert order is not None
    (channel_refund,) = sb.core.refunds_of(order)
    channel_refund.status = RefundStatus.succeeded
    resource_data = sb.refund_resource(channel_refund)
    {
        "no_amount": lambda d: d.pop("amount"),
        "wrong_amount": lambda d: d["amount"].update(refund=1),
        "wrong_currency": lambda d: d["amount"].update(currency="USD"),
    }[forgery](resource_data)
    key = sb.merchants[order.merchant_id].apiv3_key
    resource = wechat_protocol.encrypt_resource(
        key,
        wechat_protocol.encode_json(resource_data),
        original_type=wechat_protocol.REFUND_RESOURCE_TYPE,
        associated_data=wechat_protocol.REFUND_RESOURCE_TYPE,
    )
    headers, body = sb._signed_event(str(uuid.uuid4()), "REFUND.SUCCESS", "退款成功", resource)
    before = await _ledger_count(stack)
    sent = await stack.client.post(f"/notify/wechatpay/{tenant.accounts['wechatpay']}",
                                   content=body, headers=headers)  # fmt: skip
    assert sent.status_code >= 400, sent.text
    now = await stack.client.get(f"/v1/refunds/{r.json()['id']}", headers=tenant.headers)
    assert now.json()["status"] == "pending"
    assert await _ledger_count(stack) == before
    assert "refund.succeeded" not in {e.type for e in await events_of(stack, tenant)}

"""Payment codes (付款码) end to end through the gateway and the channel sandboxes, on every
database: the request waits for the customer, a code no configured wallet takes changes nothing,
and an outcome that stays unknown is reversed at the channel and never counted as paid — even
when a success notification arrives afterwards. Time moves only through the test clock and the
sandboxes' time_scale."""

from __future__ import annotations

from typing import Any

import pytest

from paymux.channels.sandbox_kit import BarcodeOutcome, BarcodeScript, OrderStatus
from paymux.kit import clock as kit_clock
from tests.conftest import Stack, attempt_ids, make_tenant, run_worker
from tests.payments.test_payments import order_no

WECHAT_CODE = "134567890123456789"
ALIPAY_CODE = "284567890123456789"


@pytest.fixture(autouse=True)
def quick_polls(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll the sandboxes (whose customers act at time_scale) every 10 ms instead of 5 s."""
    monkeypatch.setattr(stack.runtime.settings, "barcode_poll_seconds", 0.01)
    monkeypatch.setattr(stack.runtime.settings, "barcode_wait_seconds", 2.0)


async def charge(stack: Stack, tenant: Any, code: str, method: str = "barcode",
                 subject: str = "Coffee", **extra: Any) -> Any:  # fmt: skip
    body = {
        "amount": 1200, "currency": "CNY", "method": method, "out_trade_no": order_no(),
        "subject": subject, "customer": {"auth_code": code}, **extra,
    }  # fmt: skip
    return await stack.client.post("/v1/payments", json=body, headers=tenant.headers)


async def test_wechat_code_paid_at_once(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    r = await charge(stack, tenant, WECHAT_CODE, method="wechat_barcode")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "succeeded" and body["channel"] == "wechatpay"
    assert body["method"] == "wechat_barcode" and body["next_action"] is None
    assert body["customer"]["auth_code"] == "13************6789"
    assert WECHAT_CODE not in r.text
    funds = (await stack.client.get(f"/v1/payments/{body['id']}", headers=tenant.headers)).json()
    assert funds["funds"] is not None  # the books hold the money


async def test_aggregate_alipay_code_waits_for_the_password(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    stack.sandboxes["alipay"].add_barcode_script(
        BarcodeScript(outcome=BarcodeOutcome.password_paid, delay=5, subject="Latte")
    )
    r = await charge(stack, tenant, ALIPAY_CODE, subject="Latte")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "succeeded", body
    assert body["method"] == "alipay_barcode" and body["channel"] == "alipay"
    assert body["customer"]["auth_code"] == "28************6789"


async def test_aggregate_routes_by_prefix(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    wx = (await charge(stack, tenant, WECHAT_CODE)).json()
    ali = (await charge(stack, tenant, ALIPAY_CODE)).json()
    assert (wx["channel"], wx["method"]) == ("wechatpay", "wechat_barcode")
    assert (ali["channel"], ali["method"]) == ("alipay", "alipay_barcode")


async def test_declined_code_fails_and_is_not_retried_elsewhere(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    stack.sandboxes["wechatpay"].add_barcode_script(
        BarcodeScript(outcome=BarcodeOutcome.insufficient_balance, subject="Tea")
    )
    r = await charge(stack, tenant, WECHAT_CODE, subject="Tea")
    body = r.json()
    assert body["status"] == "failed" and body["failure"]["code"] == "insufficient_funds"
    assert len(await attempt_ids(stack, body["id"])) == 1


async def test_bad_codes_are_refused_and_change_nothing(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    cases = [
        ("barcode", "994567890123456789", "unsupported_auth_code"),
        ("barcode", "62345678901234567890", "unsupported_auth_code"),  # 云闪付: no channel yet
        ("barcode", "1345678901234567ab", "invalid_auth_code"),
        ("wechat_barcode", ALIPAY_CODE, "invalid_auth_code"),
        ("alipay_barcode", WECHAT_CODE, "invalid_auth_code"),
        ("barcode", "", "customer_required"),
    ]
    for method, code, error in cases:
        r = await charge(stack, tenant, code, method=method)
        assert r.status_code == 400, (method, code, r.text)
        assert r.json()["error"]["code"] == error, (method, code, r.json())
        assert r.json()["error"]["param"] == "customer.auth_code"
    only_alipay = await make_tenant(stack, channels=("alipay",))
    r = await charge(stack, only_alipay, WECHAT_CODE)
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_auth_code"
    for who in (tenant, only_alipay):
        listed = await stack.client.get("/v1/payments", headers=who.headers)
        assert listed.json()["data"] == []


@pytest.mark.parametrize("channel", ["wechatpay", "alipay"])
async def test_unknown_outcome_is_reversed_and_never_paid(
    stack: Stack, clock: kit_clock.OffsetClock, monkeypatch: pytest.MonkeyPatch, channel: str
) -> None:
    monkeypatch.setattr(stack.runtime.settings, "barcode_wait_seconds", 0.05)
    tenant = await make_tenant(stack)
    sandbox = stack.sandboxes[channel]
    sandbox.add_barcode_script(
        BarcodeScript(outcome=BarcodeOutcome.password_forever, subject="Cake"))  # fmt: skip
    code = WECHAT_CODE if channel == "wechatpay" else ALIPAY_CODE
    r = await charge(stack, tenant, code, subject="Cake")
    body = r.json()
    assert body["status"] == "pending", body  # the budget ran out; the janitor carries on
    (attempt,) = await attempt_ids(stack, body["id"])

    await run_worker(stack)  # before the channel's limit: only queries, still waiting
    assert (await _payment(stack, tenant, body["id"]))["status"] == "pending"

    clock.advance(61)  # past WeChat's 45 s and Alipay's 60 s
    await run_worker(stack)
    payment = await _payment(stack, tenant, body["id"])
    assert payment["status"] == "failed" and payment["failure"]["code"] == "payment_reversed"
    assert payment["funds"] is None
    shown = (await stack.client.get(f"/sandbox/{channel}/_sandbox/barcode/{attempt}")).json()
    assert shown["reversed"] is True

    # The customer's late confirmation reaches us as a signed success notification (Alipay
    # notifies; WeChat code payments are not notified): acknowledged, and it changes nothing.
    if channel == "alipay":
        order = sandbox.core.find(attempt)
        order.status, order.paid_at = OrderStatus.succeeded, kit_clock.now()
        headers, raw = sandbox.build_notification(order)
        url = f"/notify/alipay/{tenant.accounts['alipay']}"
        ack = await stack.client.post(url, content=raw, headers=headers)
        assert ack.status_code == 200 and ack.text == "success"
        payment = await _payment(stack, tenant, body["id"])
        assert payment["status"] == "failed" and payment["funds"] is None
    events = await stack.client.get("/v1/payments?status=succeeded", headers=tenant.headers)
    assert events.json()["data"] == []


async def _payment(stack: Stack, tenant: Any, payment_id: str) -> dict[str, Any]:
    r = await stack.client.get(f"/v1/payments/{payment_id}", headers=tenant.headers)
    return dict(r.json())


async def test_closing_a_waiting_code_payment_reverses_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merchant gives up while the customer is still being asked for the password: the
    order is reversed (not closed) at the channel, so a later confirmation cannot take money."""
    monkeypatch.setattr(stack.runtime.settings, "barcode_wait_seconds", 0.05)
    tenant = await make_tenant(stack)
    stack.sandboxes["wechatpay"].add_barcode_script(
        BarcodeScript(outcome=BarcodeOutcome.password_forever, subject="Tea"))  # fmt: skip
    body = (await charge(stack, tenant, WECHAT_CODE, subject="Tea")).json()
    assert body["status"] == "pending"
    (attempt,) = await attempt_ids(stack, body["id"])
    r = await stack.client.post(f"/v1/payments/{body['id']}/close", headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["failure"]["code"]) == ("failed", "payment_reversed")
    shown = (await stack.client.get(f"/sandbox/wechatpay/_sandbox/barcode/{attempt}")).json()
    assert shown["reversed"] is True

"""云闪付 payment codes end to end through the gateway and the UnionPay sandbox, on every database:
the aggregate ``barcode`` routes a 19-digit 62-code to UnionPay, the request waits for the
customer, a code of no wallet changes nothing, and an outcome that stays unknown is reversed
(冲正) and never counted as paid, even when a success notification arrives afterwards. Sources
for the UnionPay facts: tests/channels/test_unionpay_barcode.py."""

from __future__ import annotations

from typing import Any

import pytest

from paymux.channels.sandbox_kit import BarcodeOutcome, BarcodeScript, OrderStatus
from paymux.channels.unionpay import protocol as p
from paymux.kit import clock as kit_clock
from tests.conftest import Stack, attempt_ids, make_tenant, run_worker
from tests.payments.test_payments import order_no

CODE = "6222021234567890123"
CHANNELS = ("wechatpay", "alipay", "unionpay")


@pytest.fixture(autouse=True)
def quick_polls(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll the sandbox (whose customers act at time_scale) every 10 ms instead of 4 s."""
    monkeypatch.setattr(stack.runtime.settings, "barcode_poll_seconds", 0.01)
    monkeypatch.setattr(stack.runtime.settings, "barcode_wait_seconds", 2.0)


def script(stack: Stack, outcome: BarcodeOutcome, delay: float = 2.0) -> None:
    stack.sandboxes["unionpay"].add_barcode_script(BarcodeScript(outcome=outcome, delay=delay))


async def charge(stack: Stack, tenant: Any, code: str = CODE, method: str = "barcode") -> Any:
    body = {
        "amount": 1200, "currency": "CNY", "method": method, "out_trade_no": order_no(),
        "subject": "Coffee", "customer": {"auth_code": code},
    }  # fmt: skip
    return await stack.client.post("/v1/payments", json=body, headers=tenant.headers)


async def _payment(stack: Stack, tenant: Any, payment_id: str) -> dict[str, Any]:
    r = await stack.client.get(f"/v1/payments/{payment_id}", headers=tenant.headers)
    return dict(r.json())


async def test_aggregate_routes_a_62_code_to_unionpay_paid_at_once(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=CHANNELS)
    r = await charge(stack, tenant)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["status"], body["channel"], body["method"]) == (
        "succeeded",
        "unionpay",
        "unionpay_barcode",
    )
    assert body["next_action"] is None
    assert body["customer"]["auth_code"] == "62*************0123"
    assert CODE not in r.text
    assert (await _payment(stack, tenant, body["id"]))["funds"] is not None


async def test_own_method_waits_for_the_password_then_paid(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("unionpay",))
    script(stack, BarcodeOutcome.password_paid, delay=5)
    r = await charge(stack, tenant, method="unionpay_barcode")
    body = r.json()
    assert body["status"] == "succeeded", body
    assert body["channel"] == "unionpay"


async def test_declined_code_fails_once(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=CHANNELS)
    script(stack, BarcodeOutcome.insufficient_balance)
    body = (await charge(stack, tenant)).json()
    assert body["status"] == "failed" and body["failure"]["code"] == "payment_declined", body
    assert len(await attempt_ids(stack, body["id"])) == 1


async def test_bad_codes_are_refused_and_change_nothing(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=CHANNELS)
    orders_before = len(stack.sandboxes["unionpay"].core.orders)
    cases = [
        ("barcode", "62220212345678901234", "unsupported_auth_code"),  # 20 digits
        ("barcode", "6322021234567890123", "unsupported_auth_code"),
        ("barcode", "622202123456789012a", "invalid_auth_code"),
        ("unionpay_barcode", "134567890123456789", "invalid_auth_code"),
        ("wechat_barcode", CODE, "invalid_auth_code"),
        ("unionpay_barcode", "", "customer_required"),
    ]
    for method, code, error in cases:
        r = await charge(stack, tenant, code, method=method)
        assert r.status_code == 400, (method, code, r.text)
        assert r.json()["error"]["code"] == error, (method, code, r.json())
    without = await make_tenant(stack)  # WeChat and Alipay only
    r = await charge(stack, without)
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_auth_code"
    for who in (tenant, without):
        listed = await stack.client.get("/v1/payments", headers=who.headers)
        assert listed.json()["data"] == []
    assert len(stack.sandboxes["unionpay"].core.orders) == orders_before  # nothing was sent


async def test_unknown_outcome_is_reversed_and_never_paid(
    stack: Stack, clock: kit_clock.OffsetClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack.runtime.settings, "barcode_wait_seconds", 0.05)
    tenant = await make_tenant(stack, channels=CHANNELS)
    script(stack, BarcodeOutcome.password_forever)
    body = (await charge(stack, tenant)).json()
    assert body["status"] == "pending", body
    (attempt,) = await attempt_ids(stack, body["id"])

    await run_worker(stack)  # before 63 s: only queries
    assert (await _payment(stack, tenant, body["id"]))["status"] == "pending"
    sandbox = stack.sandboxes["unionpay"]
    order = sandbox.core.find(p.order_id(attempt))
    assert order is not None and not order.extra.get("reversed")

    clock.advance(p.BARCODE_REVERSE_AFTER_SECONDS + 1)
    await run_worker(stack)
    payment = await _payment(stack, tenant, body["id"])
    assert payment["status"] == "failed" and payment["failure"]["code"] == "payment_reversed"
    assert payment["funds"] is None
    shown = (await stack.client.get(f"/sandbox/unionpay/_sandbox/barcode/{attempt}")).json()
    assert shown["reversed"] is True and shown["status"] == "closed"

    # A signed success notification arriving afterwards is acknowledged and changes nothing.
    order.status, order.paid_at = OrderStatus.succeeded, kit_clock.now()
    headers, raw = sandbox.build_notification(order)
    url = f"/notify/unionpay/{tenant.accounts['unionpay']}"
    ack = await stack.client.post(url, content=raw, headers=headers)
    assert ack.status_code == 200, ack.text
    payment = await _payment(stack, tenant, body["id"])
    assert payment["status"] == "failed" and payment["funds"] is None
    paid = await stack.client.get("/v1/payments?status=succeeded", headers=tenant.headers)
    assert paid.json()["data"] == []


async def test_closing_a_waiting_code_payment_reverses_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack.runtime.settings, "barcode_wait_seconds", 0.05)
    tenant = await make_tenant(stack, channels=("unionpay",))
    script(stack, BarcodeOutcome.password_forever)
    body = (await charge(stack, tenant)).json()
    assert body["status"] == "pending"
    (attempt,) = await attempt_ids(stack, body["id"])
    r = await stack.client.post(f"/v1/payments/{body['id']}/close", headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["failure"]["code"]) == ("failed", "payment_reversed")
    shown = (await stack.client.get(f"/sandbox/unionpay/_sandbox/barcode/{attempt}")).json()
    assert shown["reversed"] is True

"""Partner (服务商 / ISV) channel accounts and the wallet-in-app methods (``wechat_mini``,
``alipay_jsapi``) end to end through the gateway: create → sdk_params → the sandbox customer
pays → notification → succeeded → refund, on both databases."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from paymux.payments.models import Attempt, Payment
from tests.conftest import GATEWAY, Stack, Tenant, make_tenant
from tests.payments.test_payments import create, pay, wait_for
from tests.refunds.test_refunds import refund, settled


async def paid_and_refunded(
    stack: Stack, tenant: Tenant, channel: str, payment: dict[str, Any]
) -> None:
    attempt = payment["attempts"][-1] if payment.get("attempts") else None
    out_trade_no = attempt["id"] if attempt else await _attempt_of(stack, payment["id"])
    await pay(stack, channel, out_trade_no)
    paid = await wait_for(stack, tenant, payment["id"], "succeeded")
    assert paid["amount"] == 1999
    r = await refund(stack, tenant, payment["id"], amount=500)
    assert r.status_code == 201, r.text
    final = await settled(stack, tenant, r.json()["id"])
    assert final["status"] == "succeeded"


async def _attempt_of(stack: Stack, payment_id: str) -> str:
    async with stack.runtime.db.read() as session:
        stmt = sa.select(Attempt.id).where(Attempt.payment_id == payment_id)
        return str((await session.scalars(stmt)).one())


async def test_wechat_sub_merchant_account_takes_a_mini_program_payment(stack: Stack) -> None:
    sandbox = stack.sandboxes["wechatpay"]
    creds = sandbox.provision_sub_merchant(f"{GATEWAY}/sandbox/wechatpay", sub_mini_appid=True)
    tenant = await make_tenant(stack, channels=("wechatpay",), credentials={"wechatpay": creds})
    r = await create(stack, tenant, method="wechat_mini", customer={"openid": "oMiniBuyer1"})
    assert r.status_code == 201, r.text
    body = r.json()
    action = body["next_action"]
    assert action["type"] == "sdk_params"
    assert list(action["params"]) == ["timeStamp", "nonceStr", "package", "signType", "paySign"]
    out_trade_no = await _attempt_of(stack, body["id"])
    order = sandbox.core.get_order(creds["sub_mchid"], out_trade_no)
    assert order is not None  # the sub-merchant's order, placed by its service provider
    assert order.extra["sp_mchid"] == creds["sp_mchid"]
    assert order.extra["sub_openid"] == "oMiniBuyer1"
    await paid_and_refunded(stack, tenant, "wechatpay", body)


async def test_wechat_sub_merchant_native_payment(stack: Stack) -> None:
    creds = stack.sandboxes["wechatpay"].provision_sub_merchant(f"{GATEWAY}/sandbox/wechatpay")
    tenant = await make_tenant(stack, channels=("wechatpay",), credentials={"wechatpay": creds})
    r = await create(stack, tenant, method="wechat_native")
    assert r.status_code == 201, r.text
    assert r.json()["next_action"]["type"] == "qr_code"
    await paid_and_refunded(stack, tenant, "wechatpay", r.json())


async def test_alipay_isv_sub_merchant_takes_a_jsapi_payment(stack: Stack) -> None:
    sandbox = stack.sandboxes["alipay"]
    creds = sandbox.provision_sub_merchant(f"{GATEWAY}/sandbox/alipay")
    tenant = await make_tenant(stack, channels=("alipay",), credentials={"alipay": creds})
    r = await create(
        stack, tenant, method="alipay_jsapi", customer={"buyer_id": "2088102122524333"}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    out_trade_no = await _attempt_of(stack, body["id"])
    order = sandbox.core.get_order(creds["auth_app_id"], out_trade_no)
    assert order is not None and order.extra["isv_app_id"] == creds["app_id"]
    assert body["next_action"] == {
        "type": "sdk_params",
        "params": {"tradeNO": order.channel_trade_no},
    }
    await paid_and_refunded(stack, tenant, "alipay", body)


async def test_missing_customer_fields_are_refused_with_nothing_created(
    stack: Stack, tenant: Tenant
) -> None:
    orders_before = _order_count(stack)
    for method, field in (("wechat_mini", "openid"), ("alipay_jsapi", "buyer_id")):
        r = await create(stack, tenant, method=method, customer={"ip": "203.0.113.9"})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert (error["code"], error["param"]) == ("customer_required", f"customer.{field}")
    async with stack.runtime.db.read() as session:
        payments = await session.scalar(
            sa.select(sa.func.count()).select_from(Payment).where(Payment.app_id == tenant.app_id)
        )
    assert payments == 0
    assert _order_count(stack) == orders_before  # no channel was asked
    r = await create(
        stack, tenant, method="alipay_jsapi", customer={"buyer_id": "2088102122524333"}
    )
    assert r.status_code == 201, r.text


def _order_count(stack: Stack) -> int:
    return sum(len(stack.sandboxes[name].core.orders) for name in ("wechatpay", "alipay"))

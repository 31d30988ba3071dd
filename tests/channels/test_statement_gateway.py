"""Every channel's statement shows what happened through the gateway: for each registered
channel (so a new one is covered without editing this file), a payment paid through its sandbox
and fully refunded appears in the next day's statement as a payment line and a refund line with
our numbers, the amounts and the channel's ids — what reconciliation will match on. SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from paymux.channel_accounts import service as channel_service
from paymux.channel_accounts.repository import ChannelAccountRepository
from paymux.channels import base, registry
from tests.conftest import Stack, attempt_ids, make_tenant
from tests.payments.test_payments import order_no, wait_for
from tests.refunds.test_refunds import refund, settled

CURRENCY = {"stripe": "USD", "paypal": "USD"}


def plain_method(name: str) -> str:
    """A method of the channel that needs no customer identifier and is not a payment code,
    preferring one whose order the channel makes at once (a QR code), not when a browser
    arrives."""
    factory = registry.all_channels()[name]
    needs = getattr(factory, "required_customer", {})
    codes = {rule.method for rule in getattr(factory, "payment_codes", ())}
    usable = sorted(m for m in factory.methods if m not in needs and m not in codes)
    return min(usable, key=lambda m: (not m.endswith(("_qr", "_native")), m))


@pytest.mark.parametrize("name", sorted(registry.all_channels()))
async def test_paid_and_refunded_payment_is_in_the_statement(
    stack: Stack, clock: Any, name: str
) -> None:
    tenant = await make_tenant(stack, channels=(name,))
    body = {"amount": 2_500, "currency": CURRENCY.get(name, "CNY"), "method": plain_method(name),
            "out_trade_no": order_no(), "subject": "Statement",
            "return_url": "https://shop.example/back"}  # fmt: skip
    r = await stack.client.post("/v1/payments", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    payment = r.json()
    (attempt,) = await attempt_ids(stack, payment["id"])
    paid = await stack.client.post(f"/sandbox/{name}/_sandbox/orders/{attempt}/pay",
                                   json={"result": "pay"})  # fmt: skip
    assert paid.status_code == 200, paid.text
    payment = await wait_for(stack, tenant, payment["id"], "succeeded")
    back = (await refund(stack, tenant, payment["id"])).json()
    assert (await settled(stack, tenant, back["id"]))["status"] == "succeeded"

    async with stack.runtime.db.read() as session:
        account = await ChannelAccountRepository(session).get(tenant.accounts[name])
    assert account is not None
    adapter = channel_service.adapter_for(stack.runtime.vault, account, stack.runtime.channel_http)
    zone = adapter.statement_timezone  # type: ignore[attr-defined]
    day = dt.datetime.fromisoformat(payment["paid_at"]).astimezone(zone).date()
    clock.advance(86_400 * 2)  # the channels make a day's bill the next day
    lines = await adapter.statement(day)  # type: ignore[attr-defined]
    ours = [
        line
        for line in lines
        if line.out_trade_no == attempt or line.channel_trade_no == payment["channel_trade_no"]
    ]
    kinds = {line.kind: line for line in ours}
    assert set(kinds) >= {base.StatementLineKind.payment, base.StatementLineKind.refund}, lines
    paid_line, refund_line = kinds[base.StatementLineKind.payment], kinds[
        base.StatementLineKind.refund]  # fmt: skip
    assert (paid_line.amount, paid_line.currency) == (2_500, body["currency"])
    assert refund_line.amount == -2_500
    assert paid_line.channel_trade_no == payment["channel_trade_no"]

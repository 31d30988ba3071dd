"""Risk on the payments that cannot be challenged, on SQLite and PostgreSQL: a payment code at
the till (blocked: nothing charged; challenged: it goes through and a review opens) and a
payment from a wallet balance (held: the money waits in the merchant's risk-hold account)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Stack, make_tenant
from tests.money.test_money import merchant_balance
from tests.payments.test_barcode import WECHAT_CODE, charge
from tests.payments.test_payments import create
from tests.risk.test_decisions import publish, rule
from tests.wallets.test_wallet_pay import funded_wallet


@pytest.fixture(autouse=True)
def quick_polls(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack.runtime.settings, "barcode_poll_seconds", 0.01)
    monkeypatch.setattr(stack.runtime.settings, "barcode_wait_seconds", 2.0)


async def test_a_payment_code_is_screened(stack: Stack) -> None:
    shop = await make_tenant(stack)
    await publish(stack, shop.headers, [
        rule("big_code", "amount >= 5000", "block"),
        rule("check_code", "amount == 1300", "challenge"),
    ])  # fmt: skip
    r = await charge(stack, shop, WECHAT_CODE, method="wechat_barcode", amount=5000)
    assert r.status_code == 402 and r.json()["error"]["code"] == "risk_declined", r.text
    listed = await stack.client.get("/v1/payments", headers=shop.headers)
    assert listed.json()["data"] == []  # nothing created, nothing charged
    r = await charge(stack, shop, WECHAT_CODE, method="wechat_barcode", amount=1300)
    assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text
    risk: dict[str, Any] = r.json()["risk"]
    assert risk["outcome"] == "review" and risk["review"], risk


async def test_a_wallet_payment_can_be_held(stack: Stack) -> None:
    shop = await make_tenant(stack)
    wallet_id = await funded_wallet(stack, shop, 5_000)
    await publish(stack, shop.headers, [rule("hold_wallet", 'method == "wallet"', "hold")])
    r = await create(stack, shop, method="wallet", amount=2_000, customer={"wallet": wallet_id})
    assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text
    assert r.json()["risk"]["outcome"] == "hold" and r.json()["risk"]["review"], r.text
    assert (await merchant_balance(stack, shop))["risk_hold"] == 2_000
    review = r.json()["risk"]["review"]
    ok = await stack.client.post(f"/v1/risk/reviews/{review}/approve", headers=shop.headers,
                                 json={"reason": "regular"})  # fmt: skip
    assert ok.status_code == 200, ok.text
    balance = await merchant_balance(stack, shop)
    assert (balance["risk_hold"], balance["pending"]) == (0, 2_000)

"""Paying from the balance (余额支付) in a real browser on a phone: Debian's chromium over a
loopback gateway provisioned like ``paymux demo`` (its demo customer's wallet holds ¥500.00).
The customer double-clicks "余额"; the payment ends ``succeeded`` with exactly one debit and one
``payment.succeeded`` event. axe-core and the CSP probe check each page. Skipped without
chromium (``make browser``); ``PAYMUX_DOCS_SCREENSHOTS=1`` saves docs/cashier.md's screenshot."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from paymux.demo import DEMO_WALLET_BALANCE
from tests.cashier.conftest import DemoGateway
from tests.cashier.test_pages_browser import CHROMIUM, CSP_PROBE, _check_page, _in_browser, _shot

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: make browser")

ANDROID = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/120.0 Mobile Safari/537.36")  # fmt: skip


@pytest.fixture(scope="module")
def wallet_gateway(demo_gateway: DemoGateway) -> tuple[str, str, str]:
    assert demo_gateway.demo.wallet_id is not None
    return demo_gateway.base, demo_gateway.key, demo_gateway.demo.wallet_id


def test_paying_from_the_balance_on_a_phone(wallet_gateway: tuple[str, str, str]) -> None:
    _in_browser(lambda browser: _pay_from_balance(wallet_gateway, browser))


def _pay_from_balance(gateway: tuple[str, str, str], browser: Any) -> None:
    base, key, wallet_id = gateway
    auth = {"Authorization": f"Bearer {key}"}
    body = {"amount": 1999, "currency": "CNY", "subject": "Desk lamp", "method": "cashier",
            "out_trade_no": uuid.uuid4().hex[:20], "allowed_methods": ["wallet", "alipay_qr"],
            "customer": {"wallet": wallet_id}}  # fmt: skip
    r = httpx.post(f"{base}/v1/payments", json=body, headers=auth)
    assert r.status_code == 201, r.text
    p = r.json()
    context = browser.new_context(viewport={"width": 360, "height": 640}, locale="zh-CN",
                                  user_agent=ANDROID)  # fmt: skip
    context.add_init_script(CSP_PROBE)
    phone = context.new_page()
    phone.goto(p["cashier_url"])
    assert phone.locator("[data-state=choose]").is_visible()
    option = phone.locator("button[data-method=wallet]")
    assert option.is_visible()
    assert "余额" in option.inner_text() and "¥500.00" in option.inner_text()
    assert phone.locator("[data-wallet-balance]").get_attribute("data-wallet-balance") == str(
        DEMO_WALLET_BALANCE
    )
    _check_page(phone)
    _shot(phone, "cashier-balance-zh-CN-mobile")
    option.dblclick()  # an impatient double click: one debit all the same
    phone.wait_for_selector("[data-status=succeeded]", timeout=20_000)
    assert phone.locator("#status").inner_text() == "支付成功"
    _check_page(phone)
    paid = httpx.get(f"{base}/v1/payments/{p['id']}", headers=auth).json()
    assert (paid["status"], paid["method"]) == ("succeeded", "wallet")
    wallet = httpx.get(f"{base}/v1/wallets/{wallet_id}", headers=auth).json()
    assert wallet["balances"]["available"] == DEMO_WALLET_BALANCE - 1999
    # a reload (or a second tab) pays nothing more
    phone.reload()
    phone.wait_for_selector("[data-status=succeeded]")
    time.sleep(0.5)  # let a stray second submit land, if there were one
    events = httpx.get(f"{base}/v1/events?type=payment.succeeded&limit=100", headers=auth).json()
    assert [e["data"]["object"]["id"] for e in events["data"]].count(p["id"]) == 1
    wallet = httpx.get(f"{base}/v1/wallets/{wallet_id}", headers=auth).json()
    assert wallet["balances"]["available"] == DEMO_WALLET_BALANCE - 1999
    context.close()

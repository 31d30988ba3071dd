"""Every QR and redirect method the demo offers, paid in Debian's chromium from ``cashier_url``
as a customer would: the method is chosen on the cashier, the customer pays on the channel's
(sandbox) page — scanning the QR with another device, or going there and coming back through
``/pay/{id}/return`` — and the payment ends ``succeeded`` with exactly one
``payment.succeeded`` event. Also the method list's order in the five environments the issue
names, read off the rendered page."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import re
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests.cashier.test_pages_browser import CSP_PROBE, _check_page, _create, _in_browser

DESKTOP = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36"
)
IOS_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Mobile Safari/537.36"
)
WECHAT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47 NetType/WIFI Language/zh_CN"
)
ALIPAY = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Mobile Safari/537.36 AlipayClient/10.5.90 Language/zh-Hans"
)

QR_METHODS = ("wechat_native", "alipay_qr", "unionpay_qr")
REDIRECT_METHODS = {
    # method: (user agent of a device that can complete it, currency)
    "alipay_page": (DESKTOP, "CNY"),
    "alipay_wap": (ANDROID, "CNY"),
    "unionpay_gateway": (DESKTOP, "CNY"),
    "unionpay_wap": (ANDROID, "CNY"),
    "wechat_h5": (ANDROID, "CNY"),
    "paypal": (DESKTOP, "USD"),
}


def _succeeded_events(base: str, key: str, payment_id: str) -> int:
    r = httpx.get(
        f"{base}/v1/events", params={"type": "payment.succeeded", "limit": 100},
        headers={"Authorization": f"Bearer {key}"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    return sum(1 for e in r.json()["data"] if e["data"]["object"]["id"] == payment_id)


def _payment(base: str, key: str, payment_id: str) -> dict[str, Any]:
    r = httpx.get(f"{base}/v1/payments/{payment_id}", headers={"Authorization": f"Bearer {key}"})
    return dict(r.json())


def _open_cashier(browser: Any, base: str, key: str, method: str, ua: str, currency: str) -> Any:
    context = browser.new_context(viewport={"width": 390, "height": 800}, user_agent=ua)
    context.add_init_script(CSP_PROBE)
    page = context.new_page()
    p = _create(base, key, method="cashier", allowed_methods=[method], currency=currency,
                return_url=f"{base}/healthz?shop=1")  # fmt: skip
    page.goto(p["cashier_url"])
    _check_page(page)
    page.locator(f"button[data-method={method}]").click()
    # The pending page, or already the channel's page (a form that submits itself).
    page.wait_for_selector("[data-state=pending], #pay, #approve")
    if page.url.startswith(f"{base}/pay/"):
        _check_page(page)
    return context, page, p


@pytest.mark.parametrize("method", QR_METHODS)
def test_a_qr_method_is_scanned_and_paid(gateway: tuple[str, str], method: str) -> None:
    base, key = gateway

    def run(browser: Any) -> None:
        context, page, p = _open_cashier(browser, base, key, method, DESKTOP, "CNY")
        page.wait_for_selector(".qr svg")
        code_url = page.locator(".qr + p a").get_attribute("href")
        # The customer's phone scans the QR and pays on the wallet's (sandbox) page.
        phone = browser.new_context(viewport={"width": 360, "height": 640}, user_agent=ANDROID)
        wallet = phone.new_page()
        wallet.goto(code_url)
        wallet.locator("#pay").click()
        wallet.wait_for_load_state()
        phone.close()
        # The cashier's status poll notices and hands the customer back to the shop.
        page.wait_for_url(f"{base}/healthz?shop=1", timeout=20_000)
        assert _payment(base, key, p["id"])["status"] == "succeeded"
        assert _succeeded_events(base, key, p["id"]) == 1
        context.close()

    _in_browser(run)


@pytest.mark.parametrize("method", sorted(REDIRECT_METHODS))
def test_a_redirect_method_goes_and_comes_back_paid(gateway: tuple[str, str], method: str) -> None:
    base, key = gateway
    ua, currency = REDIRECT_METHODS[method]

    def run(browser: Any) -> None:
        context, page, p = _open_cashier(browser, base, key, method, ua, currency)
        go = page.locator("[data-state=pending] a.button.primary, #pay-form button, "
                          "#pay-form input[type=submit]")  # fmt: skip
        if page.url.startswith(f"{base}/pay/") and go.count():
            go.first.click()  # a form that did not submit itself, or the "continue" link
        pay = page.locator("#pay, #approve")  # the channel's page (PayPal: "Pay Now")
        pay.first.wait_for(timeout=20_000)
        pay.first.click()
        page.wait_for_url(f"{base}/healthz?shop=1", timeout=20_000)
        assert _payment(base, key, p["id"])["status"] == "succeeded"
        assert _succeeded_events(base, key, p["id"]) == 1
        context.close()

    _in_browser(run)


def test_a_cancel_at_the_channel_comes_back_to_the_methods(gateway: tuple[str, str]) -> None:
    """PayPal's "Cancel" (and any unfinished return) lands on the cashier with the methods,
    never on the merchant's success URL."""
    base, key = gateway

    def run(browser: Any) -> None:
        context = browser.new_context(viewport={"width": 390, "height": 800}, user_agent=DESKTOP)
        context.add_init_script(CSP_PROBE)
        page = context.new_page()
        p = _create(base, key, method="cashier", allowed_methods=["paypal", "card"],
                    currency="USD", return_url=f"{base}/healthz?shop=1")  # fmt: skip
        page.goto(p["cashier_url"])
        page.locator("button[data-method=paypal]").click()
        page.wait_for_selector("[data-state=pending]")
        page.locator("[data-state=pending] a.button.primary").click()
        page.wait_for_selector("#cancel", timeout=20_000)
        page.locator("#cancel").click()
        page.wait_for_url(f"{base}/pay/{p['id']}*", timeout=20_000)
        assert "shop=1" not in page.url
        page.wait_for_selector("[data-cancelled]")
        shown = page.locator("button[data-method]").evaluate_all(
            "bs => bs.map(b => b.dataset.method)"
        )
        assert sorted(shown) == ["card", "paypal"], shown  # PayPal again, or another method
        assert _payment(base, key, p["id"])["status"] != "succeeded"
        _check_page(page)
        context.close()

    _in_browser(run)


ORDER = {
    # environment: (user agent, currency, what the list starts with, what it must not offer)
    "wechat": (WECHAT, "CNY", ["wechat_jsapi"], {"alipay_qr", "card", "wechat_native"}),
    "alipay": (ALIPAY, "CNY", ["alipay_jsapi", "alipay_wap"], {"wechat_native", "card"}),
    "ios_safari": (IOS_SAFARI, "USD", ["apple_pay"], {"google_pay", "wechat_jsapi"}),
    "android": (ANDROID, "USD", ["google_pay"], {"apple_pay", "wechat_jsapi"}),
    "desktop": (DESKTOP, "CNY", [], {"apple_pay", "google_pay", "wechat_jsapi", "alipay_wap"}),
}


@pytest.mark.parametrize("environment", sorted(ORDER))
def test_the_method_list_and_its_order_per_environment(
    gateway: tuple[str, str], environment: str
) -> None:
    base, key = gateway
    ua, currency, first, absent = ORDER[environment]

    def run(browser: Any) -> None:
        context = browser.new_context(viewport={"width": 390, "height": 800}, user_agent=ua)
        context.add_init_script(CSP_PROBE)
        page = context.new_page()
        p = _create(base, key, method="cashier", currency=currency)
        # Inside a wallet the cashier goes straight to the wallet's sign-in for its JSAPI
        # method (tests/cashier/test_inwallet_browser.py); ?switch=1 is the list it comes back to.
        wallet = environment in ("wechat", "alipay")
        page.goto(p["cashier_url"] + ("?switch=1" if wallet else ""))
        shown = page.locator("button[data-method]").evaluate_all(
            "bs => bs.map(b => b.dataset.method)"
        )
        assert shown[: len(first)] == first, shown
        assert not absent & set(shown), shown
        if environment == "desktop":
            assert shown and shown[0] in QR_METHODS, shown  # desktop: scan with a phone
        _check_page(page)
        context.close()

    _in_browser(run)


def test_expiry_is_shown_and_enforced(gateway: tuple[str, str], database_url: str) -> None:
    """The countdown runs on the page; once the payment's time is up the open page turns to
    "expired" by itself (its status poll) with nothing left to choose, and a choice sent anyway
    is refused. The clock is moved by setting the payment's expiry in the past."""
    base, key = gateway
    p = _create(base, key, method="cashier", allowed_methods=["wechat_native", "alipay_qr"])

    async def expire() -> None:
        engine = create_async_engine(database_url)
        try:
            async with engine.begin() as conn:
                past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
                await conn.execute(
                    sa.text("UPDATE payments SET expires_at = :t WHERE id = :id"),
                    {"t": past, "id": p["id"]},
                )
        finally:
            await engine.dispose()

    def run(browser: Any) -> None:
        context = browser.new_context(viewport={"width": 360, "height": 640}, user_agent=ANDROID)
        context.add_init_script(CSP_PROBE)
        page = context.new_page()
        page.goto(p["cashier_url"])
        page.locator("button[data-method=wechat_native]").click()
        page.wait_for_selector("[data-state=pending] [data-countdown]")
        assert re.fullmatch(r"\d+:\d\d", page.locator("[data-countdown]").inner_text())
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, expire()).result()
        page.wait_for_selector("[data-state=expired]", timeout=20_000)
        assert page.locator("button[data-method]").count() == 0
        _check_page(page)
        context.close()

    _in_browser(run)
    refused = httpx.post(f"{base}/pay/{p['id']}/method", data={"method": "alipay_qr"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "payment_expired"
    assert _payment(base, key, p["id"])["status"] in ("pending", "expired")

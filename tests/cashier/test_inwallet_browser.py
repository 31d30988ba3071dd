"""Paying inside WeChat and Alipay, and the app-only methods, in a real browser (Debian's
chromium, as in ``test_pages_browser.py``) over a loopback gateway with the demo's sandboxes:
the user agent makes the cashier believe it is inside the wallet app; the sandboxes stand in
for the wallet's silent OAuth, its JS bridge and its payment sheet. Each payment must end
``succeeded`` with exactly one ``payment.succeeded`` event in the database.

``PAYMUX_DOCS_SCREENSHOTS=1`` also saves the screenshots of docs/cashier.md under docs/img/."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import time
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from paymux.webhooks.models import Event
from tests.cashier.test_pages_browser import (
    CHROMIUM,
    CSP_PROBE,
    _check_page,
    _create,
    _in_browser,
    _shot,
)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: make browser")

WECHAT_UA = (
    "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 MMWEBSDK/20231202 "
    "MicroMessenger/8.0.47.2560(0x28002F30) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN"
)
ALIPAY_UA = (
    "Mozilla/5.0 (Linux; U; Android 13; zh-CN; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 AlipayChannelId/5136 "
    "AliApp(AP/10.5.36.8000) AlipayClient/10.5.36.8000 Language/zh-Hans"
)
DESKTOP_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


def _status(base: str, key: str, payment_id: str) -> str:
    r = httpx.get(f"{base}/v1/payments/{payment_id}", headers={"Authorization": f"Bearer {key}"})
    return str(r.json()["status"])


def _succeeded_events(database_url: str, payment_id: str) -> int:
    """``payment.succeeded`` rows of the payment in the gateway's database."""

    async def count() -> int:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    sa.select(Event.data).where(Event.type == "payment.succeeded")
                )
                return sum(1 for data in rows.scalars() if data.get("id") == payment_id)
        finally:
            await engine.dispose()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, count()).result()


def _settled(base: str, key: str, database_url: str, payment_id: str) -> None:
    """The payment succeeded, and once the channel's notification has been applied too (a
    second path to the same result), there is still one event."""
    assert _status(base, key, payment_id) == "succeeded"
    time.sleep(1.0)  # let a notification racing the query arrive; it must change nothing
    assert _succeeded_events(database_url, payment_id) == 1


def _phone(browser: Any, user_agent: str, locale: str = "zh-CN") -> Any:
    context = browser.new_context(
        viewport={"width": 360, "height": 740}, locale=locale, user_agent=user_agent
    )
    context.add_init_script(CSP_PROBE)
    return context


# ------------------------------------------------------------------ aggregate QR (一码付)
def test_the_aggregate_qr_leads_each_wallet_to_its_own_flow(gateway: tuple[str, str]) -> None:
    base, key = gateway
    p = _create(base, key, method="cashier")
    html = {"Accept": "text/html"}
    desktop = httpx.get(p["cashier_url"], headers={**html, "User-Agent": DESKTOP_UA})
    assert desktop.status_code == 200
    assert "data-aggregate-qr" in desktop.text and "<svg" in desktop.text
    # wechat_app / wechat_mini / alipay_app are for native apps: never in a list.
    methods = set(re.findall(r'data-method="([a-z_]+)"', desktop.text))
    assert methods and not methods & {"wechat_app", "wechat_mini", "alipay_app"}
    for ua, method, authorize in (
        (WECHAT_UA, "wechat_jsapi", "/sandbox/wechatpay/connect/oauth2/authorize?"),
        (ALIPAY_UA, "alipay_jsapi", "/sandbox/alipay/oauth2/publicAppAuthorize.htm?"),
    ):
        opened = httpx.get(p["cashier_url"], headers={**html, "User-Agent": ua})
        assert opened.status_code == 303
        assert opened.headers["location"] == f"/pay/{p['id']}/oauth/start?method={method}"
        start = httpx.get(base + opened.headers["location"], headers={**html, "User-Agent": ua})
        assert start.status_code == 303 and authorize in start.headers["location"]
        assert "paymux_wallet_oauth" in start.headers["set-cookie"]
    unionpay = httpx.get(
        p["cashier_url"],
        headers={
            **html,
            "User-Agent": "Mozilla/5.0 "
            "(Linux; Android 13) Mobile Safari/537.36 UnionPay/1.0 CloudPay",
        },
    )
    assert unionpay.status_code == 200 and "data-aggregate-qr" not in unionpay.text
    listed = set(re.findall(r'data-method="([a-z_]+)"', unionpay.text))
    assert listed and listed <= {"unionpay_qr", "unionpay_wap"}
    # Nothing was chosen by looking: the payment still waits for a method.
    assert httpx.get(f"{base}/pay/{p['id']}/status").json()["status"] == "pending"


def test_a_forged_state_or_a_bad_code_is_explained_and_changes_nothing(
    gateway: tuple[str, str],
) -> None:
    base, key = gateway
    p = _create(base, key, method="cashier")
    headers = {"Accept": "text/html", "User-Agent": WECHAT_UA}
    with httpx.Client(base_url=base, headers=headers) as client:
        start = client.get(f"/pay/{p['id']}/oauth/start?method=wechat_jsapi")
        assert start.status_code == 303
        state = re.search(r"[?&]state=([0-9a-f]+)", start.headers["location"])
        assert state is not None
        forged = client.get(f"/pay/{p['id']}/oauth/return?code=x&state={'0' * 64}")
        assert forged.status_code == 400 and 'data-code="oauth_state_invalid"' in forged.text
        # Another payment's return with this browser's state: refused too.
        other = _create(base, key, method="cashier")
        client.cookies.set("paymux_wallet_oauth", start.cookies["paymux_wallet_oauth"],
                           path=f"/pay/{other['id']}/oauth")  # fmt: skip
        crossed = client.get(f"/pay/{other['id']}/oauth/return?code=x&state={state.group(1)}")
        assert crossed.status_code == 400 and "oauth_state_invalid" in crossed.text
        # A refused return ends that round trip (its cookie is dropped): start again. The
        # right state with a code WeChat never issued: explained, with a way to try again.
        again = client.get(f"/pay/{p['id']}/oauth/start?method=wechat_jsapi")
        state = re.search(r"[?&]state=([0-9a-f]+)", again.headers["location"])
        assert state is not None
        bad = client.get(f"/pay/{p['id']}/oauth/return?code=nope&state={state.group(1)}")
        assert bad.status_code == 400 and 'data-code="oauth_code_invalid"' in bad.text
        assert "oauth/start?method=wechat_jsapi" in bad.text
        api = httpx.get(f"{base}/pay/{p['id']}/oauth/return?code=x&state=y")
        assert api.status_code == 400
        assert api.json()["error"]["code"] == "oauth_state_invalid"
    for payment in (p, other):
        got = httpx.get(f"{base}/v1/payments/{payment['id']}",
                        headers={"Authorization": f"Bearer {key}"}).json()  # fmt: skip
        assert got["status"] == "pending" and got["method"] == "cashier"


# ------------------------------------------------------------------ WeChat
def test_inside_wechat_oauth_then_the_bridge_pays(
    gateway: tuple[str, str], database_url: str
) -> None:
    _in_browser(lambda browser: _wechat(gateway, database_url, browser))


def _wechat(gateway: tuple[str, str], database_url: str, browser: Any) -> None:
    base, key = gateway
    p = _create(base, key, method="cashier")
    context = _phone(browser, WECHAT_UA)
    page = context.new_page()
    # Opened: silent OAuth, the order for that openid, the bridge opens the payment sheet.
    page.goto(p["cashier_url"])
    page.wait_for_url(re.compile(r"/sandbox/wechatpay/_sandbox/wallet/jsapi\?"))
    assert page.locator("[data-problem]").count() == 0
    assert page.locator("[data-amount]").inner_text() == "¥19.99"
    _check_page(page)
    _shot(page, "inwallet-wechat-sheet")
    # The customer cancels in the sheet: back to the method list, WeChat Pay offered again.
    page.locator("button[data-result=cancel]").click()
    page.wait_for_selector("[data-state=choose] button[data-method=wechat_jsapi]")
    _check_page(page)
    # Again, and this time pays: the same order (no second OAuth), then the result.
    page.locator("button[data-method=wechat_jsapi]").click()
    page.wait_for_url(re.compile(r"/_sandbox/wallet/jsapi\?"))
    page.locator("button[data-result=pay]").click()
    page.wait_for_selector("[data-state=succeeded]", timeout=20_000)
    _check_page(page)
    _settled(base, key, database_url, p["id"])
    got = httpx.get(f"{base}/v1/payments/{p['id']}", headers={"Authorization": f"Bearer {key}"})
    assert got.json()["method"] == "wechat_jsapi"
    context.close()


def test_declined_in_the_sheet_the_page_asks_the_channel(gateway: tuple[str, str]) -> None:
    _in_browser(lambda browser: _wechat_declined(gateway, browser))


def _wechat_declined(gateway: tuple[str, str], browser: Any) -> None:
    base, key = gateway
    p = _create(base, key, method="cashier")
    context = _phone(browser, WECHAT_UA, locale="en-US")
    page = context.new_page()
    page.goto(p["cashier_url"])
    page.wait_for_url(re.compile(r"/_sandbox/wallet/jsapi\?"))
    page.locator("button[data-result=decline]").click()
    # get_brand_wcpay_request:fail → /pay/{id}/return asks WeChat, which says PAYERROR.
    # The declined order stays failed; the payment waits for a method again (a new order).
    page.wait_for_selector("[data-state=choose] button[data-method=wechat_jsapi]")
    _check_page(page)
    assert _status(base, key, p["id"]) == "pending"
    page.locator("button[data-method=wechat_jsapi]").click()
    page.wait_for_url(re.compile(r"/_sandbox/wallet/jsapi\?"))
    page.locator("button[data-result=pay]").click()
    page.wait_for_selector("[data-state=succeeded]", timeout=20_000)
    assert _status(base, key, p["id"]) == "succeeded"
    context.close()


def test_the_pending_jsapi_page_inside_wechat(gateway: tuple[str, str]) -> None:
    """The page between OAuth and the sheet: its bridge button, axe- and CSP-clean."""
    _in_browser(lambda browser: _wechat_pending_page(gateway, browser))


def _wechat_pending_page(gateway: tuple[str, str], browser: Any) -> None:
    base, key = gateway
    p = _create(base, key, method="cashier")
    context = _phone(browser, WECHAT_UA)
    # Keep the stand-in bridge from loading: the page must explain where to pay instead.
    context.route(re.compile(r".*/weixin-jsbridge\.js$"), lambda route: route.abort())
    page = context.new_page()
    page.goto(p["cashier_url"])
    page.wait_for_selector("[data-wallet-bridge=wechat] [data-launch]")
    page.wait_for_selector("[data-wallet-message]:not(:empty)")
    assert "微信" in page.locator("[data-wallet-message]").inner_text()
    _check_page(page)
    _shot(page, "inwallet-wechat-pending")
    # A sign-in return that is not this browser's: the explained page, clean too.
    forged = page.goto(f"{base}/pay/{p['id']}/oauth/return?code=x&state={'1' * 64}")
    assert forged is not None and forged.status == 400
    assert page.locator("[data-state=oauth-failed]").is_visible()
    _check_page(page)
    context.close()


# ------------------------------------------------------------------ Alipay
def test_inside_alipay_oauth_then_the_bridge_pays(
    gateway: tuple[str, str], database_url: str
) -> None:
    _in_browser(lambda browser: _alipay(gateway, database_url, browser))


def _alipay(gateway: tuple[str, str], database_url: str, browser: Any) -> None:
    base, key = gateway
    p = _create(base, key, method="cashier")
    context = _phone(browser, ALIPAY_UA, locale="en-US")
    page = context.new_page()
    page.goto(p["cashier_url"])
    page.wait_for_url(re.compile(r"/sandbox/alipay/_sandbox/wallet/trade_pay\?"))
    assert page.locator("[data-problem]").count() == 0
    _check_page(page)
    _shot(page, "inwallet-alipay-sheet")
    page.locator("button[data-result=cancel]").click()
    page.wait_for_selector("[data-state=choose] button[data-method=alipay_jsapi]")
    _check_page(page)
    page.locator("button[data-method=alipay_jsapi]").click()
    page.wait_for_url(re.compile(r"/_sandbox/wallet/trade_pay\?"))
    page.locator("button[data-result=pay]").click()
    page.wait_for_selector("[data-state=succeeded]", timeout=20_000)
    _check_page(page)
    _settled(base, key, database_url, p["id"])
    got = httpx.get(f"{base}/v1/payments/{p['id']}", headers={"Authorization": f"Bearer {key}"})
    assert got.json()["method"] == "alipay_jsapi"
    assert re.fullmatch(r"2088\d{12}", got.json()["customer"]["buyer_id"])
    context.close()


# ------------------------------------------------------------------ app / mini-program methods
@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("wechat_app", {}),
        ("wechat_mini", {"customer": {"openid": "oMiniProgramPayer000000000001"}}),
        ("alipay_app", {}),
    ],
)
def test_app_methods_complete_through_the_sandbox_stand_in(
    gateway: tuple[str, str], database_url: str, method: str, extra: dict[str, Any]
) -> None:
    _in_browser(lambda browser: _app_method(gateway, database_url, browser, method, extra))


def _app_method(
    gateway: tuple[str, str], database_url: str, browser: Any, method: str,
    extra: dict[str, Any],
) -> None:  # fmt: skip
    base, key = gateway
    p = _create(base, key, method=method, **extra)
    assert p["next_action"]["type"] == "sdk_params"
    context = _phone(browser, DESKTOP_UA)
    page = context.new_page()
    page.goto(p["cashier_url"])
    page.wait_for_selector("form[data-sandbox-app] button")
    _check_page(page)
    if method == "wechat_app":
        _shot(page, "inwallet-wechat_app")
    page.locator("form[data-sandbox-app] button").click()
    if method == "alipay_app":  # the app SDK made the trade; the sandbox's customer page pays
        page.wait_for_selector("#pay")
        page.locator("#pay").click()
    else:
        page.wait_for_url(re.compile(r"/_sandbox/wallet/(app|mini)\?"))
        assert page.locator("[data-problem]").count() == 0
        _check_page(page)
        page.locator("button[data-result=pay]").click()
    page.wait_for_selector("[data-state=succeeded]", timeout=20_000)
    _settled(base, key, database_url, p["id"])
    context.close()

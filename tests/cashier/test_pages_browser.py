"""The cashier in a real browser: Debian's chromium driven by pytest-playwright over a loopback
gateway (API + worker + sandboxes, as ``paymux demo`` runs it). axe-core (vendored) runs in each
page: no serious or critical violation. Skipped when chromium is missing (``make browser``).

``PAYMUX_DOCS_SCREENSHOTS=1`` also saves the screenshots of docs/cashier.md under docs/img/."""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from paymux.web import VENDOR

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
AXE = next(VENDOR.glob("axe-core-*/axe.min.js"), None)
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: make browser")

CSP_PROBE = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


_CHROMIUM_THREAD = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chromium")
_RUNNING: list[Any] = []  # [playwright, browser] once launched, used by that thread only


def _in_browser(fn: Callable[[Any], None]) -> None:
    """Run ``fn(browser)`` with Debian's chromium, in a thread of its own: Playwright's sync
    API marks its thread's event loop as running, which would break the suite's asyncio tests.
    One chromium serves the whole session (launching one per test cost minutes); each test
    works in contexts of its own, closed after it."""

    def run() -> None:
        if not _RUNNING or not _RUNNING[1].is_connected():
            from playwright.sync_api import sync_playwright

            pw = sync_playwright().start()
            args = ["--no-sandbox", "--disable-dev-shm-usage"]
            _RUNNING[:] = [pw, pw.chromium.launch(executable_path=CHROMIUM, args=args)]
        browser = _RUNNING[1]
        before = set(browser.contexts)
        try:
            fn(browser)
        finally:
            for context in browser.contexts:
                if context not in before:
                    context.close()

    _CHROMIUM_THREAD.submit(run).result()


def close_browser() -> None:
    """End the session's chromium (called once the session ends)."""

    def stop() -> None:
        if _RUNNING:
            pw, browser = _RUNNING
            browser.close()
            pw.stop()
            _RUNNING.clear()

    _CHROMIUM_THREAD.submit(stop).result()
    _CHROMIUM_THREAD.shutdown()


def _create(base: str, key: str, **extra: Any) -> dict[str, Any]:
    body = {"amount": 1999, "currency": "CNY", "subject": "Desk lamp",
            "out_trade_no": uuid.uuid4().hex[:20], **extra}  # fmt: skip
    r = httpx.post(f"{base}/v1/payments", json=body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _check_page(page: Any) -> None:
    """No horizontal overflow, no CSP violation, no serious/critical axe violation."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.evaluate("window.__csp") == []
    assert AXE is not None, "axe-core is not vendored (scripts/vendor.py sync)"
    page.evaluate(AXE.read_text())
    violations = page.evaluate(
        "axe.run(document).then(r => r.violations.filter(v => ['serious', 'critical']"
        ".includes(v.impact)).map(v => v.id + ': ' + v.nodes.map(n => n.target).join(' ')))"
    )
    assert violations == []


def _shot(page: Any, name: str) -> None:
    if os.environ.get("PAYMUX_DOCS_SCREENSHOTS"):
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMG / f"{name}.png"), full_page=True)


def test_a_cashier_payment_chosen_and_paid_in_zh_cn_on_a_phone(gateway: tuple[str, str]) -> None:
    _in_browser(lambda browser: _pay_on_a_phone(gateway, browser))


def test_english_on_desktop_and_a_friendly_404(gateway: tuple[str, str]) -> None:
    _in_browser(lambda browser: _desktop_en_and_404(gateway, browser))


def _pay_on_a_phone(gateway: tuple[str, str], browser: Any) -> None:
    base, key = gateway
    context = browser.new_context(viewport={"width": 360, "height": 640}, locale="zh-CN")
    context.add_init_script(CSP_PROBE)
    phone = context.new_page()
    p = _create(base, key, method="cashier", return_url=f"{base}/healthz")
    response = phone.goto(p["cashier_url"])
    csp = response.headers["content-security-policy"]
    assert "'nonce-" in csp and "frame-ancestors 'none'" in csp
    assert phone.locator("[data-amount]").inner_text() == "¥19.99"
    assert phone.locator("[data-state=choose]").is_visible()
    _check_page(phone)
    _shot(phone, "cashier-methods-zh-CN-mobile")
    phone.locator("button[data-method=wechat_native]").click()
    phone.wait_for_selector("[data-state=pending] .qr svg")
    assert re.fullmatch(r"\d+:\d\d", phone.locator("[data-countdown]").inner_text())
    _check_page(phone)
    _shot(phone, "cashier-qr-zh-CN-mobile")
    # The customer scans and pays on the sandbox's own page.
    code_url = phone.locator(".qr + p a").get_attribute("href")
    sandbox = httpx.get(code_url, follow_redirects=True)
    form = re.search(r'<form[^>]*action="([^"]*)"', sandbox.text)
    target = httpx.URL(str(sandbox.url)).join(form.group(1) if form else "")
    assert httpx.post(target, data={"result": "pay"}).status_code in (200, 303)
    # htmx polling re-renders the page, which sends the customer back to the shop.
    phone.wait_for_url(f"{base}/healthz", timeout=20_000)
    status = httpx.get(f"{base}/v1/payments/{p['id']}", headers={"Authorization": f"Bearer {key}"})
    assert status.json()["status"] == "succeeded"
    context.close()


def _desktop_en_and_404(gateway: tuple[str, str], browser: Any) -> None:
    base, key = gateway
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    context.add_init_script(CSP_PROBE)
    page = context.new_page()
    p = _create(base, key, method="wechat_native")
    page.goto(p["cashier_url"])
    assert page.locator("[data-amount]").inner_text() == "CN¥19.99"
    assert page.locator("html").get_attribute("lang") == "en"
    _check_page(page)
    _shot(page, "cashier-qr-en-desktop")
    missing = page.goto(f"{base}/pay/pay_does_not_exist")
    assert missing.status == 404
    assert page.locator("h1").inner_text() == "Payment not found"
    _check_page(page)
    page.goto(f"{base}/pay/pay_does_not_exist?lang=zh_CN")
    assert page.locator("h1").inner_text() == "未找到该笔支付"
    _check_page(page)
    context.close()

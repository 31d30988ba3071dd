"""The store-code page in a real browser (Debian's chromium, as tests/cashier's browser tests):
a customer on a phone in zh-CN enters an amount, lands on the cashier and pays."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import struct
import zlib
from typing import Any

import httpx

from paymux.config import Environment, Settings
from paymux.kit.crypto import hash_api_key
from paymux.merchants import service as merchant_service
from paymux.merchants.repository import MerchantRepository
from paymux.runtime import Runtime
from tests.cashier.conftest import demo_gateway, gateway
from tests.cashier.test_pages_browser import CSP_PROBE, _check_page, _in_browser, _shot, pytestmark

assert demo_gateway and gateway and pytestmark  # the module's fixtures; skipped w/o chromium


def _disc_png(size: int = 96) -> bytes:
    """A small RGBA PNG (a green disc), written by hand: any real PNG will do as a logo."""
    rows = b""
    for y in range(size):
        row = b"\x00"  # filter: none
        for x in range(size):
            inside = (x - size / 2 + 0.5) ** 2 + (y - size / 2 + 0.5) ** 2 <= (size / 2 - 2) ** 2
            row += b"\x2e\x90\x5a\xff" if inside else b"\x00\x00\x00\x00"
        rows += row

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))  # fmt: skip


def _brand(database_url: str, key: str) -> None:
    """Give the demo app a display name and a logo (the operator API is off on this gateway)."""

    async def go() -> None:
        rt = Runtime.build(Settings(env=Environment.test, database_url=database_url))
        try:
            async with rt.db.transaction() as session:
                found = await MerchantRepository(session).find_key(hash_api_key(key))
                assert found is not None
                await merchant_service.update_app(
                    session, app_id=found[1].id, display_name="莲花茶铺", logo=_disc_png()
                )
        finally:
            await rt.aclose()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, go()).result()


def test_a_store_code_paid_in_zh_cn_on_a_phone(gateway: tuple[str, str], database_url: str) -> None:
    _brand(database_url, gateway[1])
    _in_browser(lambda browser: _store_code_on_a_phone(gateway, browser))


def _store_code_on_a_phone(gateway: tuple[str, str], browser: Any) -> None:
    base, key = gateway
    auth = {"Authorization": f"Bearer {key}"}
    r = httpx.post(f"{base}/v1/store_codes", headers=auth,
                   json={"name": "南京路店", "store_id": "nanjing-rd"})  # fmt: skip
    assert r.status_code == 201, r.text
    code = r.json()
    context = browser.new_context(viewport={"width": 360, "height": 640}, locale="zh-CN")
    context.add_init_script(CSP_PROBE)
    phone = context.new_page()
    response = phone.goto(code["url"])
    csp = response.headers["content-security-policy"]
    assert "script-src 'none'" in csp and "form-action 'self'" in csp
    assert phone.locator("html").get_attribute("lang") == "zh-CN"
    assert phone.locator("[data-store]").inner_text() == "南京路店"
    assert phone.locator("h1.merchant").inner_text() == "莲花茶铺"
    logo = phone.locator("img.logo")
    assert logo.get_attribute("alt") == "莲花茶铺 的标志"
    assert phone.evaluate("document.querySelector('img.logo').naturalWidth") > 0  # it loaded
    _check_page(phone)
    _shot(phone, "store-code-zh-CN-mobile")
    # a wrong amount first: explained in Chinese, nothing made
    phone.fill("#amount", "12.345")
    phone.locator("button[type=submit]").click()
    assert phone.locator("#amount-error").inner_text() == "金额的小数位数超过了该币种允许的位数。"
    _check_page(phone)
    phone.fill("#amount", "12.50")
    phone.locator("button[type=submit]").click()
    phone.wait_for_url(re.compile(r".*/pay/pay_\w+$"))
    assert phone.locator("[data-amount]").inner_text() == "¥12.50"
    assert phone.locator("[data-state=choose]").is_visible()
    assert phone.locator("h1.merchant").inner_text() == "莲花茶铺"
    assert phone.locator("img.logo").get_attribute("alt") == "莲花茶铺 的标志"
    _check_page(phone)
    payment_id = phone.url.rsplit("/", 1)[1]
    phone.locator("button[data-method=wechat_native]").click()
    phone.wait_for_selector("[data-state=pending] .qr svg")
    code_url = phone.locator(".qr + p a").get_attribute("href")
    sandbox = httpx.get(code_url, follow_redirects=True)
    form = re.search(r'<form[^>]*action="([^"]*)"', sandbox.text)
    target = httpx.URL(str(sandbox.url)).join(form.group(1) if form else "")
    assert httpx.post(target, data={"result": "pay"}).status_code in (200, 303)
    phone.wait_for_selector("[data-state=succeeded]", timeout=20_000)
    _check_page(phone)
    paid = httpx.get(f"{base}/v1/payments/{payment_id}", headers=auth).json()
    assert paid["status"] == "succeeded" and paid["amount"] == 1250
    assert paid["metadata"] == {"store_code": code["id"], "store_id": "nanjing-rd"}
    listed = httpx.get(f"{base}/v1/payments", params={"store_code": code["id"]}, headers=auth)
    assert [p["id"] for p in listed.json()["data"]] == [payment_id]
    context.close()

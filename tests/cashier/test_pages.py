"""The hosted cashier pages over HTTP: formats, languages, headers, final screens, friendly 404."""

from __future__ import annotations

import re
import uuid
from typing import Any

from paymux.kit import clock as kit_clock
from tests.conftest import Stack, Tenant, attempt_ids, make_tenant, run_worker
from tests.payments.test_payments import wait_for


async def _create(stack: Stack, tenant: Tenant, **extra: Any) -> dict[str, Any]:
    body = {"amount": 1999, "currency": "CNY", "method": "wechat_native", "subject": "Lamp",
            "out_trade_no": "o" + uuid.uuid4().hex[:20],
            "return_url": "https://shop.example/back", **extra}  # fmt: skip
    r = await stack.client.post("/v1/payments", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_a_qr_page_in_zh_cn_and_en(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("wechatpay",))
    p = await _create(stack, tenant)
    zh = await stack.client.get(f"/pay/{p['id']}", headers={"Accept-Language": "zh-CN"})
    assert zh.status_code == 200
    assert "¥19.99" in zh.text and "Test shop" in zh.text and "<svg" in zh.text
    assert "请使用钱包 App 扫描二维码" in zh.text and 'lang="zh-CN"' in zh.text
    assert f'hx-get="/pay/{p["id"]}/live"' in zh.text and p["id"] in zh.text
    en = await stack.client.get(f"/pay/{p['id']}?lang=en")
    assert "CN¥19.99" in en.text and "Scan the QR code" in en.text
    assert en.cookies.get("paymux_lang") == "en"
    stack.client.cookies.clear()
    csp = en.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    scripts = re.findall(r"<script[^>]*>", en.text)
    assert scripts and all(f'nonce="{nonce}"' in s for s in scripts)
    assert "frame-ancestors 'none'" in csp
    assert en.headers["x-content-type-options"] == "nosniff"
    # the assets it names are served locally
    for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', en.text):
        r = await stack.client.get(src)
        assert r.status_code == 200, src
    live = await stack.client.get(f"/pay/{p['id']}/live")
    assert live.status_code == 204


async def test_paid_through_the_sandbox_ends_succeeded(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("wechatpay",))
    p = await _create(stack, tenant)
    (attempt,) = await attempt_ids(stack, p["id"])
    r = await stack.client.post(f"/sandbox/wechatpay/_sandbox/orders/{attempt}/pay",
                                json={"result": "pay"})  # fmt: skip
    assert r.status_code == 200, r.text
    await wait_for(stack, tenant, p["id"], "succeeded")  # the sandbox notifies asynchronously
    live = await stack.client.get(f"/pay/{p['id']}/live")
    assert live.headers.get("hx-refresh") == "true"
    page = await stack.client.get(f"/pay/{p['id']}?lang=en")
    assert 'data-status="succeeded"' in page.text
    assert 'data-return-url="https://shop.example/back"' in page.text


async def test_a_decline_explains_and_leads_back_to_the_shop(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("wechatpay",))
    p = await _create(stack, tenant)
    (attempt,) = await attempt_ids(stack, p["id"])
    await stack.client.post(f"/sandbox/wechatpay/_sandbox/orders/{attempt}/pay",
                            json={"result": "decline"})  # fmt: skip
    shifted = kit_clock.OffsetClock()
    previous = kit_clock.set_clock(shifted)
    try:
        for _ in range(10):
            page = await stack.client.get(f"/pay/{p['id']}?lang=zh_CN")
            if 'data-status="failed"' in page.text:
                break
            await run_worker(stack)
            shifted.advance(60)
    finally:
        kit_clock.set_clock(previous)
    assert 'data-status="failed"' in page.text
    assert "支付未能完成" in page.text  # PAYERROR → the generic message
    assert 'href="https://shop.example/back"' in page.text
    assert p["id"] in page.text
    stack.client.cookies.clear()


async def test_a_bad_link_is_a_friendly_page(stack: Stack) -> None:
    for path in ("/pay/pay_nope", "/pay/pay_nope/return", "/pay/pay_nope/status"):
        stack.client.cookies.clear()  # the language cookie of an earlier test
        r = await stack.client.get(path, headers={"Accept-Language": "en", "Accept": "text/html"})
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("text/html")
        assert "Payment not found" in r.text
        assert "content-security-policy" in r.headers
        api = await stack.client.get(path)  # an API client gets the machine-readable error
        assert api.status_code == 404 and api.json()["error"]["code"] == "resource_missing"
    r = await stack.client.get("/static/vendor/../../config.py")
    assert r.status_code == 404


async def test_a_cashier_payment_lists_methods_and_switches(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("wechatpay", "alipay"))
    p = await _create(stack, tenant, method="cashier")
    stack.client.cookies.clear()
    page = await stack.client.get(f"/pay/{p['id']}?lang=en")
    assert 'data-state="choose"' in page.text
    methods = re.findall(r'data-method="([a-z_]+)"', page.text)
    assert "wechat_native" in methods and "alipay_qr" in methods
    chosen = await stack.client.post(f"/pay/{p['id']}/method", data={"method": "wechat_native"})
    assert chosen.status_code == 303 and chosen.headers["location"] == f"/pay/{p['id']}"
    page = await stack.client.get(f"/pay/{p['id']}?lang=en")
    assert 'data-state="pending"' in page.text and "<svg" in page.text
    assert f'href="/pay/{p["id"]}?switch=1"' in page.text
    switch = await stack.client.get(f"/pay/{p['id']}?switch=1&lang=en")
    others = re.findall(r'data-method="([a-z_]+)"', switch.text)
    assert "alipay_qr" in others and "wechat_native" not in others
    moved = await stack.client.post(f"/pay/{p['id']}/method", data={"method": "alipay_qr"})
    assert moved.status_code == 303
    bad = await stack.client.post(f"/pay/{p['id']}/method", data={"method": "nope"})
    assert 400 <= bad.status_code < 500 and bad.json()["error"]["code"]
    shown = await stack.client.post(f"/pay/{p['id']}/method?lang=en", data={"method": "nope"},
                                    headers={"Accept": "text/html"})  # fmt: skip
    assert 400 <= shown.status_code < 500 and 'data-state="refused"' in shown.text
    assert f'href="/pay/{p["id"]}"' in shown.text
    still = await stack.client.get(f"/pay/{p['id']}?lang=en")  # nothing changed
    assert 'data-state="pending"' in still.text
    stack.client.cookies.clear()

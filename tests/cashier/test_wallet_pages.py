"""The cashier page's "Balance" (余额) option over HTTP: shown with the available balance only
when enabled and the wallet is named, paying ends on the success screen, a short balance is an
explained page with the other methods (zh-CN and en) and changes nothing."""

from __future__ import annotations

import re

from tests.conftest import Stack, make_tenant
from tests.wallets.test_wallet_pay import balances, cashier_payment, funded_wallet

HTML = {"Accept": "text/html"}


async def test_the_balance_option_pays_and_shows_success(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    wallet_id = await funded_wallet(stack, tenant, 2_345)
    p = await cashier_payment(stack, tenant, wallet_id, amount=1_999,
                              return_url="https://shop.example/back")  # fmt: skip
    stack.client.cookies.clear()
    zh = await stack.client.get(f"/pay/{p['id']}?lang=zh_CN")
    assert zh.status_code == 200
    methods = re.findall(r'data-method="([a-z_]+)"', zh.text)
    assert methods[0] == "wallet" and "alipay_qr" in methods
    assert "余额" in zh.text and 'data-wallet-balance="2345"' in zh.text and "¥23.45" in zh.text
    en = await stack.client.get(f"/pay/{p['id']}?lang=en")
    assert "Balance" in en.text and "Available" in en.text
    paid = await stack.client.post(f"/pay/{p['id']}/method", data={"method": "wallet"},
                                   headers=HTML)  # fmt: skip
    assert paid.status_code == 303 and paid.headers["location"] == f"/pay/{p['id']}"
    done = await stack.client.get(f"/pay/{p['id']}?lang=en")
    assert 'data-status="succeeded"' in done.text
    assert 'data-return-url="https://shop.example/back"' in done.text
    assert (await balances(stack, tenant, wallet_id))["available"] == 346
    stack.client.cookies.clear()


async def test_no_balance_option_unless_enabled_and_named(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    wallet_id = await funded_wallet(stack, tenant, 500)
    for p in (await cashier_payment(stack, tenant, wallet_id, allowed=["alipay_qr"]),
              await cashier_payment(stack, tenant, None)):  # fmt: skip
        page = await stack.client.get(f"/pay/{p['id']}?lang=en")
        assert 'data-method="wallet"' not in page.text and "data-wallet-balance" not in page.text
        refused = await stack.client.post(f"/pay/{p['id']}/method?lang=zh_CN",
                                          data={"method": "wallet"}, headers=HTML)  # fmt: skip
        assert refused.status_code == 400
        assert 'data-notice="wallet_not_allowed"' in refused.text
        assert "此笔付款不能使用余额支付" in refused.text
        assert 'data-method="alipay_qr"' in refused.text
    stack.client.cookies.clear()


async def test_a_short_balance_is_explained_with_the_other_methods(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    wallet_id = await funded_wallet(stack, tenant, 100)
    p = await cashier_payment(stack, tenant, wallet_id, amount=1_000)
    stack.client.cookies.clear()
    zh = await stack.client.post(f"/pay/{p['id']}/method?lang=zh_CN", data={"method": "wallet"},
                                 headers=HTML)  # fmt: skip
    assert zh.status_code == 409
    assert 'data-notice="insufficient_funds"' in zh.text and "余额不足" in zh.text
    others = re.findall(r'data-method="([a-z_]+)"', zh.text)
    assert "alipay_qr" in others and "wallet" not in others
    assert "content-security-policy" in zh.headers
    en = await stack.client.post(f"/pay/{p['id']}/method?lang=en", data={"method": "wallet"},
                                 headers=HTML)  # fmt: skip
    assert "not enough" in en.text and "choose another payment method" in en.text
    # nothing changed: the payment is open, the balance whole, the page offers Balance again
    r = await stack.client.get(f"/v1/payments/{p['id']}", headers=tenant.headers)
    assert r.json()["status"] == "pending"
    assert (await balances(stack, tenant, wallet_id))["available"] == 100
    page = await stack.client.get(f"/pay/{p['id']}?lang=en")
    assert 'data-state="choose"' in page.text and 'data-method="wallet"' in page.text
    stack.client.cookies.clear()

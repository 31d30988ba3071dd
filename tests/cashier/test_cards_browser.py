"""Cards, Apple Pay and Google Pay paid from the hosted cashier in a real browser (Debian's
chromium through Playwright, in a thread of its own) over a loopback gateway with the demo's
sandboxes, on SQLite and PostgreSQL: the card form mounted by the script the payment's step
names (the Stripe sandbox's stand-in for Stripe.js), test cards 4242 (paid), 0002 (declined:
the cashier's message and the other methods), 3184 (3-D Secure challenge), and the wallet
buttons shown only where the device offers them. Each page passes ``_check_page`` (no overflow
at 360 px, no CSP violation, axe clean), and its CSP names the SDK's origins and no others.

``PAYMUX_DOCS_SCREENSHOTS=1`` also saves docs/img/cashier-card-*.png (docs/cashier.md)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from paymux.cashier.sdk_policy import sdk_policy
from paymux.payments.models import Attempt
from paymux.web import SecurityPolicy
from paymux.webhooks.models import Event
from tests.cashier.conftest import DemoGateway
from tests.cashier.test_pages_browser import CHROMIUM, CSP_PROBE, _check_page, _in_browser, _shot

IPHONE_SAFARI = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")  # fmt: skip
ANDROID_CHROME = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like "
                  "Gecko) Chrome/126.0.0.0 Mobile Safari/537.36")  # fmt: skip
PHONE = {"width": 360, "height": 640}
browser_only = pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: make browser")


@dataclass
class Gateway:
    base: str
    key: str
    database_url: str
    sandboxes: dict[str, Any]

    def create(self, **extra: Any) -> dict[str, Any]:
        body = {"amount": 1999, "currency": "USD", "subject": "Desk lamp",
                "out_trade_no": uuid.uuid4().hex[:20], **extra}  # fmt: skip
        r = httpx.post(f"{self.base}/v1/payments", json=body, headers=self._auth)
        assert r.status_code == 201, r.text
        return dict(r.json())

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def payment(self, payment_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.base}/v1/payments/{payment_id}", headers=self._auth)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def _query(self, fn: Callable[[Any], Any]) -> Any:
        async def run() -> Any:
            engine = create_async_engine(self.database_url)
            try:
                async with engine.connect() as conn:
                    return await fn(conn)
            finally:
                await engine.dispose()

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, run()).result()

    def succeeded_events(self, payment_id: str) -> int:
        """``payment.succeeded`` rows of the outbox about this payment."""

        async def rows(conn: Any) -> list[Any]:
            stmt = sa.select(Event.data).where(Event.type == "payment.succeeded")
            return list((await conn.execute(stmt)).scalars())

        return sum(payment_id in json.dumps(data) for data in self._query(rows))

    def attempts(self, payment_id: str) -> list[tuple[str, str]]:
        async def rows(conn: Any) -> list[Any]:
            stmt = (sa.select(Attempt.method, Attempt.status)
                    .where(Attempt.payment_id == payment_id).order_by(Attempt.id))  # fmt: skip
            return [tuple(r) for r in (await conn.execute(stmt)).all()]

        return list(self._query(rows))

    def settled(self, payment_id: str) -> None:
        """Wait until Stripe's webhook of the payment's last attempt was acknowledged, so that a
        second ``payment.succeeded`` would have been recorded by now."""
        deadline = time.monotonic() + 20
        stripe = self.sandboxes["stripe"].core
        last = self.attempt_ids(payment_id)[-1]
        while time.monotonic() < deadline:
            if any(d.get("out_trade_no") == last and d.get("acked") for d in stripe.deliveries):
                time.sleep(0.5)  # the inbox applies it; the worker has no more to do
                return
            time.sleep(0.1)
        raise AssertionError(f"no acknowledged webhook for {last}")

    def attempt_ids(self, payment_id: str) -> list[str]:
        async def rows(conn: Any) -> list[Any]:
            stmt = sa.select(Attempt.id).where(Attempt.payment_id == payment_id)
            return list((await conn.execute(stmt.order_by(Attempt.id))).scalars())

        return [str(i) for i in self._query(rows)]


@pytest.fixture(scope="module")
def gateway(demo_gateway: DemoGateway) -> Gateway:
    d = demo_gateway
    return Gateway(d.base, d.key, d.database_url, d.sandboxes)


def _directives(csp: str) -> dict[str, list[str]]:
    parts = (d.strip().split() for d in csp.split(";") if d.strip())
    return {p[0]: p[1:] for p in parts}


def _assert_sdk_csp(csp: str, *, script: str, api: str) -> None:
    """Exactly the SDK's origins on top of the page's own policy."""
    d = _directives(csp)
    assert [s for s in d["script-src"] if not s.startswith("'nonce-")] == ["'self'", script]
    assert d["connect-src"] == ["'self'", api]
    assert d["frame-src"] == [script]
    assert d["default-src"] == ["'self'"] and d["frame-ancestors"] == ["'none'"]


# ---------------------------------------------------------------- the policy, without a browser
def test_a_live_card_step_allows_stripe_js_and_api_only() -> None:
    action = {"type": "sdk_params", "params": {
        "client_secret": "pi_1_secret_2", "publishable_key": "pk_live_x",
        "js_url": "https://js.stripe.com/v3", "api_base": "https://api.stripe.com"}}  # fmt: skip
    policy = sdk_policy(action, SecurityPolicy(frame_ancestors=()))
    assert policy is not None
    _assert_sdk_csp(policy.csp("n0nce"), script="https://js.stripe.com",
                    api="https://api.stripe.com")  # fmt: skip


@pytest.mark.parametrize("js_url", [
    None, "javascript:alert(1)", "https://user@js.example.com/v3", "ftp://js.example.com/v3",
    "//js.example.com", "https://js.exa mple.com/v3", "https://js.example.com:99999/v3",
])  # fmt: skip
def test_no_policy_from_a_url_that_is_not_an_http_origin(js_url: str | None) -> None:
    action = {"type": "sdk_params", "params": {"js_url": js_url}}
    assert sdk_policy(action, SecurityPolicy(frame_ancestors=())) is None


def test_only_the_origin_of_a_url_reaches_the_policy() -> None:
    """A path, query or directive-looking text never widens the policy."""
    action = {"type": "sdk_params", "params": {
        "js_url": "https://JS.example.com:8443/v3; script-src *?x='unsafe-inline'",
        "api_base": "https://api.example.com/v1;connect-src *"}}  # fmt: skip
    policy = sdk_policy(action, SecurityPolicy(frame_ancestors=()))
    assert policy is not None
    _assert_sdk_csp(policy.csp("n0nce"), script="https://js.example.com:8443",
                    api="https://api.example.com")  # fmt: skip


def test_a_step_without_an_sdk_keeps_the_strict_policy() -> None:
    base = SecurityPolicy(frame_ancestors=())
    assert sdk_policy({"type": "qr_code", "code_url": "weixin://x"}, base) is None
    assert sdk_policy({"type": "redirect", "url": "https://pay.example.com"}, base) is None


# ---------------------------------------------------------------- in the browser
def _context(browser: Any, *, locale: str, user_agent: str | None = None,
             viewport: dict[str, int] | None = None) -> Any:  # fmt: skip
    options: dict[str, Any] = {"viewport": viewport or PHONE, "locale": locale}
    if user_agent:
        options["user_agent"] = user_agent
    context = browser.new_context(**options)
    context.add_init_script(CSP_PROBE)
    return context


def _fill_card(page: Any, number: str) -> None:
    page.wait_for_selector("[data-sandbox-card=number]")
    page.locator("[data-card-pay]").wait_for(state="visible")
    page.fill("[data-sandbox-card=number]", number)
    page.fill("[data-sandbox-card=exp]", "12 / 34")
    page.fill("[data-sandbox-card=cvc]", "123")
    _no_early_return(page)


def _open_card_step(gw: Gateway, page: Any, payment: dict[str, Any]) -> None:
    page.goto(payment["cashier_url"])
    page.locator("button[data-method=card]").click()
    page.wait_for_selector("[data-sdk=card] [data-sandbox-card=number]")
    assert not page.locator("[data-card-pay]").is_disabled()
    _no_early_return(page)


def _no_early_return(page: Any) -> None:
    """pay.js sends the customer on from any [data-return-url] (the success screen's button):
    a step still waiting for the customer must not carry one, or it leaves by itself."""
    assert page.locator("[data-return-url]").count() == 0


def _card_csp(gw: Gateway, page: Any) -> None:
    response = page.reload()
    page.wait_for_selector("[data-sandbox-card=number]")
    _assert_sdk_csp(response.headers["content-security-policy"], script=gw.base, api=gw.base)


@browser_only
def test_4242_pays_with_one_succeeded_event(gateway: Gateway) -> None:
    _in_browser(lambda browser: _pay_4242(gateway, browser))


def _pay_4242(gw: Gateway, browser: Any) -> None:
    context = _context(browser, locale="zh-CN")
    page = context.new_page()
    payment = gw.create(method="cashier", return_url=f"{gw.base}/healthz")
    _open_card_step(gw, page, payment)
    _card_csp(gw, page)
    assert page.locator("legend").inner_text() == "银行卡信息"
    assert page.locator("label", has_text="卡号").count() == 1
    assert page.locator("[data-card-pay]").inner_text() == "支付 US$19.99"
    _check_page(page)
    _shot(page, "cashier-card-form-zh-CN-mobile")
    _fill_card(page, "4242 4242 4242 4242")
    page.locator("[data-card-pay]").click()
    page.wait_for_url(f"{gw.base}/healthz", timeout=20_000)
    assert gw.payment(payment["id"])["status"] == "succeeded"
    gw.settled(payment["id"])
    assert gw.succeeded_events(payment["id"]) == 1
    context.close()


@browser_only
def test_a_declined_card_shows_why_and_the_other_methods(gateway: Gateway) -> None:
    _in_browser(lambda browser: _decline_then_switch(gateway, browser))


def _decline_then_switch(gw: Gateway, browser: Any) -> None:
    context = _context(browser, locale="en-US", user_agent=IPHONE_SAFARI)
    page = context.new_page()
    payment = gw.create(method="cashier")
    _open_card_step(gw, page, payment)
    error = page.locator("[data-card-error]")
    _fill_card(page, "4000 0000 0000 9995")
    page.locator("[data-card-pay]").click()
    page.locator("[data-card-error][data-error-code=insufficient_funds]").wait_for()
    assert page.locator("[data-error-message]").inner_text() == (
        "The balance of the account or card is not enough for this payment."
    )
    _fill_card(page, "4000 0000 0000 0002")  # another card on the same form
    page.locator("[data-card-pay]").click()
    page.locator("[data-card-error][data-error-code=card_declined]").wait_for()
    assert error.is_visible()
    message = page.locator("[data-error-message]").inner_text()
    assert message == "Your card was declined by its bank."
    assert page.locator("[data-card-error] button[data-method=apple_pay]").is_visible()
    assert gw.payment(payment["id"])["status"] == "pending"  # the intent stays payable
    _check_page(page)
    _shot(page, "cashier-card-declined-en-mobile")
    # the customer switches to Apple Pay, offered on this iPhone
    page.locator("[data-card-error] button[data-method=apple_pay]").click()
    page.locator("[data-sandbox-wallet=open]").click()
    page.locator("[data-sandbox-wallet=pay]").click()
    page.wait_for_selector("[data-state=succeeded]", timeout=20_000)
    assert page.locator("#status").inner_text() == "Payment succeeded"
    _check_page(page)
    assert gw.payment(payment["id"])["status"] == "succeeded"
    gw.settled(payment["id"])
    assert gw.succeeded_events(payment["id"]) == 1
    attempts = gw.attempts(payment["id"])
    assert attempts == [("card", "closed"), ("apple_pay", "succeeded")]
    first = [i for i in gw.sandboxes["stripe"].intents.values()
             if i.metadata.get("paymux_attempt") == gw.attempt_ids(payment["id"])[0]]  # fmt: skip
    assert [gw.sandboxes["stripe"].status_of(i) for i in first] == ["canceled"]
    context.close()


@browser_only
def test_3ds_challenge_failed_then_completed(gateway: Gateway) -> None:
    _in_browser(lambda browser: _three_d_secure(gateway, browser))


def _three_d_secure(gw: Gateway, browser: Any) -> None:
    context = _context(browser, locale="en-US")
    page = context.new_page()
    payment = gw.create(method="card")
    page.goto(payment["cashier_url"])
    _check_page(page)
    for result in ("fail", "complete"):
        _fill_card(page, "4000 0027 6000 3184")
        page.locator("[data-card-pay]").click()
        page.wait_for_url("**/_sandbox/3ds/**")
        page.locator(f"#{result}").click()
        page.wait_for_url(f"{gw.base}/pay/{payment['id']}", timeout=20_000)
        if result == "fail":
            error = page.locator("[data-card-error]")
            error.wait_for(state="visible")
            assert error.get_attribute("data-error-code") == "authentication_failed"
            assert gw.payment(payment["id"])["status"] == "pending"
            _check_page(page)
    page.wait_for_selector("[data-state=succeeded]")
    _check_page(page)
    assert gw.payment(payment["id"])["status"] == "succeeded"
    gw.settled(payment["id"])
    assert gw.succeeded_events(payment["id"]) == 1
    context.close()


@browser_only
@pytest.mark.parametrize(("wallet", "user_agent", "absent"), [
    ("apple_pay", IPHONE_SAFARI, "google_pay"), ("google_pay", ANDROID_CHROME, "apple_pay"),
])  # fmt: skip
def test_the_wallet_the_device_offers_pays(gateway: Gateway, wallet: str, user_agent: str,
                                           absent: str) -> None:  # fmt: skip
    _in_browser(lambda browser: _pay_by_wallet(gateway, browser, wallet, user_agent, absent))


def _pay_by_wallet(gw: Gateway, browser: Any, wallet: str, user_agent: str, absent: str) -> None:
    context = _context(browser, locale="en-US", user_agent=user_agent)
    page = context.new_page()
    payment = gw.create(method="cashier", return_url=f"{gw.base}/healthz")
    page.goto(payment["cashier_url"])
    methods = page.locator("[data-state=choose] button[data-method]")
    assert methods.first.get_attribute("data-method") == wallet
    assert page.locator(f"button[data-method={absent}]").count() == 0
    page.locator(f"button[data-method={wallet}]").click()
    button = page.locator("[data-sandbox-wallet=open]")
    button.wait_for(state="visible")
    assert page.locator("[data-wallet-checking]").is_hidden()
    _no_early_return(page)
    _assert_sdk_csp(
        page.request.get(page.url).headers["content-security-policy"],
        script=gw.base,
        api=gw.base,
    )
    _check_page(page)
    button.click()
    page.locator("[data-sandbox-wallet=sheet]").wait_for(state="visible")
    _check_page(page)
    if wallet == "apple_pay":
        _shot(page, "cashier-card-apple-pay-en-mobile")
    page.locator("[data-sandbox-wallet=pay]").click()
    page.wait_for_url(f"{gw.base}/healthz", timeout=20_000)
    assert gw.payment(payment["id"])["status"] == "succeeded"
    gw.settled(payment["id"])
    assert gw.succeeded_events(payment["id"]) == 1
    context.close()


@browser_only
@pytest.mark.parametrize(("wallet", "user_agent"), [
    ("apple_pay", ANDROID_CHROME), ("google_pay", IPHONE_SAFARI),
])  # fmt: skip
def test_no_wallet_button_where_the_device_lacks_it(gateway: Gateway, wallet: str,
                                                    user_agent: str) -> None:  # fmt: skip
    _in_browser(lambda browser: _no_wallet(gateway, browser, wallet, user_agent))


def _no_wallet(gw: Gateway, browser: Any, wallet: str, user_agent: str) -> None:
    """A payment made for one wallet, opened on a device without it: no button, the reason."""
    context = _context(browser, locale="zh-CN", user_agent=user_agent)
    page = context.new_page()
    payment = gw.create(method=wallet)
    page.goto(payment["cashier_url"])
    error = page.locator("[data-card-error]")
    error.wait_for(state="visible")
    assert error.get_attribute("data-error-code") == "wallet_unavailable"
    assert page.locator("[data-sandbox-wallet=open]").count() == 0
    name = {"apple_pay": "Apple Pay", "google_pay": "Google Pay"}[wallet]
    assert page.locator("[data-error-message]").inner_text() == f"此设备或浏览器不支持 {name}。"
    assert page.locator("[data-error-next]").inner_text() == "请返回商户重新选择支付方式。"
    _check_page(page)
    assert gw.payment(payment["id"])["status"] == "pending"
    context.close()

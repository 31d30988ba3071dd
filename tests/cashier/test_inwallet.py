"""The in-wallet pieces that need no browser: the OAuth ``state`` (HMAC of the payment and the
browser's cookie), which methods need the payer's wallet id, the app-only methods kept out of
every list, and the page's CSP for a stand-in script on another origin."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from paymux.cashier import inwallet, ordering
from paymux.channels.base import SdkStandIn
from paymux.kit import clock

KEY = base64.b64encode(b"k" * 32).decode()


@pytest.fixture
def rt() -> Any:
    return SimpleNamespace(settings=SimpleNamespace(master_key_bytes=b"k" * 32))


@pytest.fixture
def frozen() -> Iterator[clock.FrozenClock]:
    fake = clock.FrozenClock()
    previous = clock.set_clock(fake)
    yield fake
    clock.set_clock(previous)


class TestState:
    def test_the_state_sent_comes_back_with_its_cookie(self, rt: Any, frozen: Any) -> None:
        cookie = inwallet.new_cookie("wechat_jsapi", "ca_1")
        state = inwallet.state_for(rt, "pay_1", cookie)
        assert len(state) == 64 and state.isalnum()  # WeChat: [a-zA-Z0-9], at most 128
        assert inwallet.check_state(rt, "pay_1", cookie, state) == ("wechat_jsapi", "ca_1")

    def test_another_payment_a_tampered_cookie_or_no_cookie_fail(self, rt: Any) -> None:
        cookie = inwallet.new_cookie("wechat_jsapi", "ca_1")
        state = inwallet.state_for(rt, "pay_1", cookie)
        assert inwallet.check_state(rt, "pay_2", cookie, state) is None
        forged = cookie.replace("ca_1", "ca_other")
        assert inwallet.check_state(rt, "pay_1", forged, state) is None
        assert inwallet.check_state(rt, "pay_1", None, state) is None
        assert inwallet.check_state(rt, "pay_1", cookie, None) is None
        assert inwallet.check_state(rt, "pay_1", cookie, state.upper()) is None

    def test_another_key_does_not_make_the_same_state(self, rt: Any) -> None:
        cookie = inwallet.new_cookie("alipay_jsapi", "ca_1")
        other = SimpleNamespace(settings=SimpleNamespace(master_key_bytes=b"x" * 32))
        assert inwallet.state_for(rt, "pay_1", cookie) != inwallet.state_for(other, "pay_1", cookie)

    def test_a_state_expires(self, rt: Any, frozen: clock.FrozenClock) -> None:
        cookie = inwallet.new_cookie("wechat_jsapi", "ca_1")
        state = inwallet.state_for(rt, "pay_1", cookie)
        frozen.advance(inwallet.STATE_SECONDS - 1)
        assert inwallet.check_state(rt, "pay_1", cookie, state) is not None
        frozen.advance(2)
        assert inwallet.check_state(rt, "pay_1", cookie, state) is None


def _payment(**customer: str) -> Any:
    return SimpleNamespace(amount=1999, currency="CNY", subject="Lamp", description=None,
                           client_ip="203.0.113.9", customer=customer)  # fmt: skip


class TestPayerNeeded:
    def test_jsapi_without_the_payer_id_needs_the_oauth(self) -> None:
        assert inwallet.payer_needed(_payment(), "wechat_jsapi")
        assert inwallet.payer_needed(_payment(), "alipay_jsapi")

    def test_with_the_payer_id_or_for_other_methods_it_does_not(self) -> None:
        assert not inwallet.payer_needed(_payment(openid="o123"), "wechat_jsapi")
        assert not inwallet.payer_needed(_payment(buyer_id="2088000000000001"), "alipay_jsapi")
        assert not inwallet.payer_needed(_payment(), "wechat_native")
        assert not inwallet.payer_needed(_payment(), "alipay_wap")
        assert not inwallet.payer_needed(_payment(), "no_such_method")


class TestOrdering:
    @pytest.mark.parametrize("environment", ordering.ENVIRONMENTS)
    def test_app_and_mini_program_methods_are_never_listed(self, environment: str) -> None:
        methods = ["wechat_app", "wechat_mini", "alipay_app", "wechat_jsapi", "alipay_jsapi",
                   "alipay_wap", "wechat_native", "unionpay_qr"]  # fmt: skip
        listed = {r.method for r in ordering.order(methods, environment=environment)}
        assert not listed & {"wechat_app", "wechat_mini", "alipay_app"}
        assert listed  # something is left everywhere

    def test_in_wallet(self) -> None:
        assert ordering.in_wallet(ordering.WECHAT) and ordering.in_wallet(ordering.ALIPAY)
        assert not ordering.in_wallet(ordering.DESKTOP)


def _request(host: str = "gw.test") -> Request:
    scope = {"type": "http", "method": "GET", "path": "/pay/pay_1", "scheme": "https",
             "headers": [(b"host", host.encode())], "query_string": b"",
             "server": (host, 443)}  # fmt: skip
    return Request(scope)


class TestPolicy:
    def test_a_script_on_the_page_origin_needs_nothing(self) -> None:
        sdk = SdkStandIn(script_url="https://gw.test/sandbox/wechatpay/_sandbox/x.js")
        assert inwallet.policy_for(_request(), sdk) is None
        assert inwallet.policy_for(_request(), None) is None
        assert inwallet.policy_for(_request(), SdkStandIn(page_url="https://sbx.test/p")) is None

    def test_a_script_on_another_origin_is_allowed_by_origin_only(self) -> None:
        sdk = SdkStandIn(script_url="https://sbx.test:8443/_sandbox/weixin-jsbridge.js")
        policy = inwallet.policy_for(_request(), sdk)
        assert policy is not None
        csp = policy.csp("n0nce")
        assert "script-src 'self' 'nonce-n0nce' https://sbx.test:8443" in csp


class TestAppOnlyPage:
    """The page of an app/mini-program payment: the sandbox's stand-in, or (live) the way back
    to the merchant's app with the reference."""

    def _render(self, sdk: SdkStandIn | None) -> str:
        template = inwallet.site.env.get_template("sdk_wechat_app.html")
        return template.render(
            _=lambda s: s, sdk=sdk, merchant_name="Demo shop", cashier_url="https://gw.test/pay/p1",
            payment=SimpleNamespace(id="pay_123"), action={"params": {"prepayid": "wx1"}},
        )  # fmt: skip

    def test_live(self) -> None:
        html = self._render(None)
        assert "data-app-only" in html and "Return to Demo shop’s app to pay." in html
        assert "pay_123" in html and "<form" not in html

    def test_sandbox(self) -> None:
        html = self._render(SdkStandIn(page_url="https://sbx.test/_sandbox/wallet/app"))
        assert 'action="https://sbx.test/_sandbox/wallet/app"' in html
        assert 'name="prepayid" value="wx1"' in html
        assert 'name="return_url" value="https://gw.test/pay/p1/return"' in html

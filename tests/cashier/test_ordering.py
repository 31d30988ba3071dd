"""The cashier's pure ordering: environments from user agents, and the order with its reasons."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymux.cashier import ordering
from paymux.cashier.ordering import environment_of, order

ALL = (
    "wechat_native", "wechat_jsapi", "wechat_h5", "alipay_qr", "alipay_page", "alipay_wap",
    "alipay_jsapi", "unionpay_qr", "unionpay_wap", "card", "apple_pay", "google_pay", "paypal",
)  # fmt: skip

UAS = {
    "wechat": "Mozilla/5.0 (Linux; Android 13) Mobile Safari/537.36 MicroMessenger/8.0.44",
    "alipay": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AlipayClient/10.5.0",
    "unionpay": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) UnionPay/1.0 CloudPay",
    "ios_safari": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    "android": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Mobile Safari/537.36",
    "desktop": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari/537.36",
    "mobile_other": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) CriOS/120 Mobile Safari",
}


@pytest.mark.parametrize(("env", "ua"), UAS.items())
def test_environment_of_user_agents(env: str, ua: str) -> None:
    assert environment_of(ua) == env


def test_environment_of_empty_is_desktop() -> None:
    assert environment_of("") == "desktop"


def _methods(env: str, **kw: object) -> list[str]:
    return [r.method for r in order(ALL, environment=env, **kw)]  # type: ignore[arg-type]


def test_in_wechat_only_wechat_jsapi() -> None:
    assert _methods("wechat") == ["wechat_jsapi"]
    assert order(ALL, environment="wechat")[0].reasons == ("environment:wechat",)


def test_in_alipay_only_alipay_and_in_unionpay_only_unionpay() -> None:
    assert set(_methods("alipay")) == {"alipay_jsapi", "alipay_wap"}
    assert _methods("alipay")[0] == "alipay_jsapi"
    assert {ordering.family(m) for m in _methods("unionpay")} == {"unionpay"}


def test_ios_safari_apple_pay_first_android_google_pay_first() -> None:
    assert _methods("ios_safari")[0] == "apple_pay"
    assert "google_pay" not in _methods("ios_safari")
    assert _methods("android")[0] == "google_pay"
    assert "apple_pay" not in _methods("android")


def test_desktop_qr_methods_first_and_no_in_app_methods() -> None:
    methods = _methods("desktop")
    qr = [m for m in methods if ordering.is_qr(m)]
    assert methods[: len(qr)] == qr and len(qr) == 3
    assert not {"apple_pay", "google_pay", "wechat_jsapi", "alipay_jsapi"} & set(methods)


def test_then_last_used_then_merchant_order_then_region() -> None:
    ranked = order(["card", "paypal", "alipay_page", "wechat_h5"], environment="mobile_other",
                   last_used="paypal", merchant_order=["card", "alipay_page"], region="cn")  # fmt: skip
    assert [(r.method, r.reasons) for r in ranked] == [
        ("paypal", ("last_used",)),
        ("card", ("merchant_order:1",)),
        ("alipay_page", ("merchant_order:2", "region:CN")),
        ("wechat_h5", ("region:CN",)),
    ]
    assert order(["paypal"], environment="desktop")[0].reasons == ("default",)


def test_environment_beats_last_used() -> None:
    assert _methods("ios_safari", last_used="card")[:2] == ["apple_pay", "card"]


envs = st.sampled_from(ordering.ENVIRONMENTS)
method_sets = st.lists(st.sampled_from(ALL), unique=True)


@given(method_sets, envs, st.none() | st.sampled_from(ALL), st.lists(st.sampled_from(ALL)),
       st.none() | st.sampled_from(["CN", "US", "hk"]))  # fmt: skip
def test_properties(
    methods: list[str], env: str, last: str | None, merchant: list[str], region: str | None
) -> None:
    ranked = order(methods, environment=env, last_used=last, merchant_order=merchant,
                   region=region)  # fmt: skip
    out = [r.method for r in ranked]
    # only offered methods, each once, every one explained
    assert len(out) == len(set(out)) and set(out) <= set(methods)
    assert all(r.reasons for r in ranked)
    # deterministic and independent of the input order
    assert order(list(reversed(methods)), environment=env, last_used=last,
                 merchant_order=merchant, region=region) == ranked  # fmt: skip
    # the environment's methods come first
    env_flags = [any(x.startswith("environment:") for x in r.reasons) for r in ranked]
    assert env_flags == sorted(env_flags, reverse=True)
    # in a wallet app only that wallet's methods
    if env in ("wechat", "alipay", "unionpay"):
        assert {ordering.family(m) for m in out} <= {env}
    # the last used method leads whenever no environment method is ahead of it
    if last in out and not any(env_flags):
        assert out[0] == last

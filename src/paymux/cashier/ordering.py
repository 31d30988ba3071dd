"""The cashier's order of methods as a pure function: environment, the customer's habit, the
merchant's order, region — every position explained by machine-readable reasons.

No I/O: :mod:`paymux.cashier.service` gathers the eligible methods (routing's eligibility), the
customer's last successful method and the merchant's order, and this decides the list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

WECHAT, ALIPAY, UNIONPAY = "wechat", "alipay", "unionpay"
IOS_SAFARI, ANDROID, DESKTOP, MOBILE_OTHER = "ios_safari", "android", "desktop", "mobile_other"
ENVIRONMENTS = (WECHAT, ALIPAY, UNIONPAY, IOS_SAFARI, ANDROID, DESKTOP, MOBILE_OTHER)

_IN_WALLET = {
    # inside a wallet app only that wallet's in-app payment works
    WECHAT: frozenset({"wechat_jsapi"}),
    ALIPAY: frozenset({"alipay_jsapi", "alipay_wap"}),
    UNIONPAY: frozenset({"unionpay_qr", "unionpay_wap"}),
}
_IN_WALLET_PREFERENCE = {
    WECHAT: ("wechat_jsapi",),
    ALIPAY: ("alipay_jsapi", "alipay_wap"),
    UNIONPAY: ("unionpay_wap", "unionpay_qr"),
}
_FIRST_ON = {IOS_SAFARI: "apple_pay", ANDROID: "google_pay"}
_NOT_ON = {
    # the device or browser cannot complete these
    DESKTOP: frozenset({"apple_pay", "google_pay", "wechat_jsapi", "wechat_mini", "wechat_app",
                        "alipay_app", "alipay_jsapi", "alipay_wap", "unionpay_wap", "wechat_h5"}),
    IOS_SAFARI: frozenset({"google_pay", "wechat_jsapi", "wechat_mini", "wechat_app",
                           "alipay_jsapi"}),
    ANDROID: frozenset({"apple_pay", "wechat_jsapi", "wechat_mini", "wechat_app", "alipay_jsapi"}),
    MOBILE_OTHER: frozenset({"apple_pay", "google_pay", "wechat_jsapi", "wechat_mini",
                             "wechat_app", "alipay_jsapi"}),
}  # fmt: skip
_NATIVE_APP = frozenset({"wechat_app", "wechat_mini", "alipay_app"})
"""Paid by the merchant's own app or mini-program through the wallet's SDK, never from a web
page: no cashier offers them (a payment created with one still gets a page, see
``sdk_wallet_app.html``)."""
_CN_REGIONS = frozenset({"CN", "HK", "MO"})
_CN_FAMILIES = (WECHAT, ALIPAY, UNIONPAY)


def environment_of(user_agent: str) -> str:
    """Where the customer is, from the user agent: a wallet app, a device, or a desktop."""
    ua = user_agent or ""
    low = ua.lower()
    if "micromessenger" in low:
        return WECHAT
    if "alipayclient" in low or "alipay" in low:
        return ALIPAY
    if "unionpay" in low or "云闪付" in ua or "cloudpay" in low:
        return UNIONPAY
    if re.search(r"iphone|ipad|ipod", low):
        if "safari" in low and not re.search(r"crios|fxios|edgios|opios", low):
            return IOS_SAFARI
        return MOBILE_OTHER
    if "android" in low:
        return ANDROID
    if "mobile" in low:
        return MOBILE_OTHER
    return DESKTOP


def in_wallet(environment: str) -> bool:
    """The customer is inside a wallet app, where only that wallet's in-app payment works."""
    return environment in _IN_WALLET


def is_qr(method: str) -> bool:
    return method.endswith(("_native", "_qr"))


def family(method: str) -> str:
    return method.split("_", 1)[0]


@dataclass(frozen=True)
class Ranked:
    method: str
    reasons: tuple[str, ...]


def order(
    methods: Sequence[str],
    *,
    environment: str,
    last_used: str | None = None,
    merchant_order: Sequence[str] = (),
    region: str | None = None,
) -> tuple[Ranked, ...]:
    """``methods`` (eligible now, any order, no duplicates) filtered by what works in
    ``environment`` and ordered best first: the environment's own method, the customer's last
    successful method, the merchant's order, then (in China) the domestic wallets, then the
    rest by name. Each entry's reasons name every criterion that lifted it."""
    unique = [m for m in dict.fromkeys(methods) if m not in _NATIVE_APP]
    only = _IN_WALLET.get(environment)
    if only is not None:
        unique = [m for m in unique if m in only]
    else:
        hidden = _NOT_ON.get(environment, frozenset())
        unique = [m for m in unique if m not in hidden]
    merchant_rank = {m: i for i, m in enumerate(dict.fromkeys(merchant_order))}
    cn = region is not None and region.upper() in _CN_REGIONS

    def key(method: str) -> tuple[int, int, int, int, int, str]:
        env = 1
        preference = _IN_WALLET_PREFERENCE.get(environment)
        if preference is not None and method in preference:
            env = 0
        elif _FIRST_ON.get(environment) == method:
            env = 0
        elif environment == DESKTOP and is_qr(method):
            env = 0
        wallet_rank = preference.index(method) if preference and method in preference else 0
        last = 0 if method == last_used else 1
        merchant = merchant_rank.get(method, len(merchant_rank))
        local = 0 if cn and family(method) in _CN_FAMILIES else 1
        return (env, wallet_rank, last, merchant, local, method)

    ranked = []
    for method in sorted(unique, key=key):
        reasons: list[str] = []
        env, _, last, merchant, local, _ = key(method)
        if env == 0:
            reasons.append(f"environment:{environment}")
        if last == 0:
            reasons.append("last_used")
        if method in merchant_rank:
            reasons.append(f"merchant_order:{merchant + 1}")
        if local == 0:
            reasons.append(f"region:{region.upper() if region else ''}")
        ranked.append(Ranked(method, tuple(reasons) or ("default",)))
    return tuple(ranked)

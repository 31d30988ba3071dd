"""What a browser uses in place of the WeChat app when the account is on the paymux sandbox
(:class:`~paymux.channels.base.SdkStandIn`): the sandbox serves a ``WeixinJSBridge`` stand-in
script for JSAPI payments and pages that take the app / mini-program parameters. A live account
(``api.mch.weixin.qq.com``) has none: WeChat's own webview, app SDK or mini-program pays."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paymux.channels.base import SdkStandIn
from paymux.channels.wechatpay.keys import DEFAULT_GATEWAY

BRIDGE_JS_PATH = "/_sandbox/weixin-jsbridge.js"
"""The sandbox's ``WeixinJSBridge`` (``invoke('getBrandWCPayRequest', …)``)."""
SHEET_PATHS = {
    "wechat_jsapi": "/_sandbox/wallet/jsapi",
    "wechat_app": "/_sandbox/wallet/app",
    "wechat_mini": "/_sandbox/wallet/mini",
}
"""The sandbox's stand-in of the wallet's payment sheet, per method: it takes that method's
``sdk_params`` (and ``return_url``) as a query, checks the signature as WeChat would and pays."""


class WalletStandIn:
    """Mixin of :class:`~paymux.channels.wechatpay.adapter.WechatPayAdapter`
    (:class:`~paymux.channels.base.SdkStandInCapable`)."""

    credentials: Any

    def sdk_stand_in(self, method: str, params: Mapping[str, Any]) -> SdkStandIn | None:
        gateway = str(getattr(self.credentials, "gateway", DEFAULT_GATEWAY)).rstrip("/")
        if gateway == DEFAULT_GATEWAY.rstrip("/") or method not in SHEET_PATHS:
            return None
        script = gateway + BRIDGE_JS_PATH if method == "wechat_jsapi" else None
        return SdkStandIn(script_url=script, page_url=gateway + SHEET_PATHS[method])

"""What a browser uses in place of the Alipay app when the account is on the paymux sandbox
(:class:`~paymux.channels.base.SdkStandIn`): an ``AlipayJSBridge`` stand-in script for
``alipay_jsapi`` (``AlipayJSBridge.call('tradePay', {tradeNO}, cb)``) and a page that takes the
app SDK's ``order_string`` for ``alipay_app``. An account on Alipay itself has none."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from paymux.channels.alipay.oauth import _ALIPAY_HOSTS
from paymux.channels.base import SdkStandIn

BRIDGE_JS_PATH = "/_sandbox/alipay-jsbridge.js"
SHEET_PATHS = {"alipay_jsapi": "/_sandbox/wallet/trade_pay", "alipay_app": "/_sandbox/wallet/app"}
"""The sandbox's stand-in of the Alipay app's payment sheet: ``tradeNO`` (JSAPI) or
``order_string`` (app SDK), plus ``return_url``, as a query."""


class WalletStandIn:
    """Mixin of :class:`~paymux.channels.alipay.adapter.AlipayAdapter`
    (:class:`~paymux.channels.base.SdkStandInCapable`)."""

    credentials: Any

    def sdk_stand_in(self, method: str, params: Mapping[str, Any]) -> SdkStandIn | None:
        gateway = urlsplit(self.credentials.gateway)
        if (gateway.hostname or "") in _ALIPAY_HOSTS or method not in SHEET_PATHS:
            return None
        root = f"{gateway.scheme}://{gateway.netloc}{gateway.path.rsplit('/', 1)[0]}"
        script = root + BRIDGE_JS_PATH if method == "alipay_jsapi" else None
        return SdkStandIn(script_url=script, page_url=root + SHEET_PATHS[method])

"""The Alipay sandbox's stand-in for the Alipay app: its web OAuth and its payment sheets.

- ``GET /oauth2/publicAppAuthorize.htm?app_id&scope&redirect_uri&state`` (the openauth host's
  page): ``auth_base`` is silent, so it sends the browser straight back to ``redirect_uri`` with
  ``app_id``, ``source=alipay_wallet``, ``scope``, ``auth_code`` and ``state``;
  ``sandbox_user`` picks the Alipay user (the real one is whoever is logged in to the app).
- ``alipay.system.oauth.token`` (gateway method, ``grant_type=authorization_code`` and ``code``
  as common parameters): the user's ``user_id`` (2088…) and ``open_id`` under the app, an
  auth_code once and within :data:`CODE_SECONDS`; errors in ``error_response`` (``40002
  isv.code-invalid``, ``isv.grant-type-invalid`` [the latter's sub_code is the sandbox's own]).
- ``GET /_sandbox/alipay-jsbridge.js``: defines ``window.AlipayJSBridge``;
  ``call('tradePay', {tradeNO}, cb)`` opens the sheet below and, back on the page, calls
  ``cb({resultCode: '9000' | '6001' | '4000'})``.
- ``GET /_sandbox/wallet/trade_pay?tradeNO&return_url``: the sheet of an ``alipay_jsapi``
  trade (``alipay.trade.create``); ``POST`` ``result`` = ``pay`` / ``decline`` / ``cancel``
  → back to ``return_url#sandbox_result=<resultCode>&tradeNO=…``.
- ``GET /_sandbox/wallet/app?order_string&return_url``: what the app SDK does with the signed
  ``alipay.trade.app.pay`` order string: its signature checked like the gateway's, the trade
  made, then the customer page (which returns to ``return_url``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from paymux.channels.alipay import oauth
from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.sandbox_apps import SandboxApp, _Fail
from paymux.channels.alipay.sandbox_trades import TradesBase
from paymux.channels.alipay.wallet import BRIDGE_JS_PATH, SHEET_PATHS
from paymux.channels.sandbox_kit import OrderStatus, SandboxOrder
from paymux.kit import clock

_HERE = Path(__file__).resolve().parent
_pages = Environment(
    loader=FileSystemLoader(_HERE / "templates"), autoescape=select_autoescape(["html"])
)
CODE_SECONDS = 300
"""How long an auth_code is good for in the sandbox [Alipay's own limit is unverified]."""
_RESULT_CODES = {"pay": "9000", "decline": "4000", "cancel": "6001"}


def _web_url(value: str | None) -> str | None:
    if value and value.startswith(("https://", "http://")):
        return value.split("#", 1)[0]
    return None


class WalletMethods(TradesBase):
    """Mixin of :class:`~paymux.channels.alipay.sandbox.Sandbox`."""

    oauth_codes: dict[str, tuple[str, str, dt.datetime]]
    oauth_used: set[str]

    if TYPE_CHECKING:

        def _authenticate(
            self, params: dict[str, str], method: str
        ) -> tuple[SandboxApp, dict[str, Any]]: ...

    # ------------------------------------------------------------ users
    @staticmethod
    def user_id_of(user: str = "payer") -> str:
        """The 2088… user id of the sandbox's Alipay user ``user``."""
        digest = int(hashlib.sha256(f"alipay-user:{user}".encode()).hexdigest(), 16)
        return "2088" + str(digest)[-12:].rjust(12, "0")

    @staticmethod
    def open_id_of(app_id: str, user: str = "payer") -> str:
        """The open_id the user ``user`` has under ``app_id``."""
        return "074" + hashlib.sha256(f"{app_id}:{user}".encode()).hexdigest()[:28]

    # ------------------------------------------------------------ alipay.system.oauth.token
    async def _oauth_token(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        if params.get("grant_type") != "authorization_code":
            raise _Fail("40002", "isv.grant-type-invalid", "grant_type 参数无效")
        code = params.get("code", "")
        signer = app.isv_app_id or app.app_id
        issued = self.oauth_codes.get(code)
        if issued is None or issued[0] != signer:  # another app's code stays its own
            raise _Fail("40002", "isv.code-invalid", "授权码code无效")
        del self.oauth_codes[code]  # one use, even if it has expired
        if (clock.now() - issued[2]).total_seconds() > CODE_SECONDS:
            raise _Fail("40002", "isv.code-invalid", "授权码code无效")
        self.oauth_used.add(code)
        user = issued[1]
        return {
            "user_id": self.user_id_of(user), "open_id": self.open_id_of(signer, user),
            "access_token": "authbseB" + secrets.token_hex(16), "expires_in": 1296000,
            "refresh_token": "authbseB" + secrets.token_hex(16), "re_expires_in": 2592000,
            "auth_start": p.format_time(clock.now()),
        }  # fmt: skip

    # ------------------------------------------------------------ pages
    def _wallet_router(self) -> APIRouter:
        router = APIRouter()

        @router.get(oauth.AUTHORIZE_PATH)
        async def authorize(
            app_id: str = "", scope: str = "", redirect_uri: str = "", state: str = "",
            sandbox_user: str = "payer",
        ) -> Response:  # fmt: skip
            if app_id not in self.apps:
                return HTMLResponse(_error_page("app_id 无效"), status_code=400)
            if scope not in ("auth_base", "auth_user"):
                return HTMLResponse(_error_page("scope 无效"), status_code=400)
            if _web_url(redirect_uri) is None:
                return HTMLResponse(_error_page("redirect_uri 无效"), status_code=400)
            code = secrets.token_hex(16)
            self.oauth_codes[code] = (app_id, sandbox_user, clock.now())
            query = urlencode({"app_id": app_id, "source": "alipay_wallet", "scope": scope,
                               "auth_code": code, "state": state})  # fmt: skip
            sep = "&" if "?" in redirect_uri else "?"
            return RedirectResponse(f"{redirect_uri}{sep}{query}", status_code=302)

        @router.get(BRIDGE_JS_PATH)
        async def bridge_js() -> Response:
            body = (_HERE / "static" / "alipay-jsbridge-sandbox.js").read_bytes()
            return Response(body, media_type="text/javascript; charset=utf-8")

        @router.get(SHEET_PATHS["alipay_jsapi"], response_class=HTMLResponse)
        async def trade_pay(tradeNO: str = "", return_url: str = "") -> HTMLResponse:
            order, problem = self._jsapi_trade(tradeNO)
            html = _pages.get_template("wallet_sheet.html").render(
                order=order, problem=problem, trade_no=tradeNO, return_url=_web_url(return_url),
                amount=f"{order.amount / 100:.2f}" if order else "",
            )  # fmt: skip
            return HTMLResponse(html, status_code=400 if problem else 200)

        @router.post(SHEET_PATHS["alipay_jsapi"])
        async def trade_pay_act(
            tradeNO: str = Form(""), result: str = Form("cancel"),
            return_url: str = Form(""),
        ) -> Response:  # fmt: skip
            if result not in _RESULT_CODES:
                return HTMLResponse(_error_page("result 无效"), status_code=400)
            order, problem = self._jsapi_trade(tradeNO)
            if result != "cancel":
                if problem or order is None:
                    result = "decline"
                elif order.status is OrderStatus.pending:
                    await self.core.customer_action(order, paid=result == "pay")
            back = _web_url(return_url)
            if back is None:
                return HTMLResponse(_error_page(_RESULT_CODES[result]))
            fragment = urlencode({"sandbox_result": _RESULT_CODES[result], "tradeNO": tradeNO})
            return RedirectResponse(f"{back}#{fragment}", status_code=303)

        @router.get(SHEET_PATHS["alipay_app"])
        async def app_pay(request: Request, order_string: str = "",
                          return_url: str = "") -> Response:  # fmt: skip
            params = dict(parse_qsl(order_string, keep_blank_values=True))
            if params.get("method") != p.METHOD_APP_PAY:
                return HTMLResponse(_error_page("order_string 不是 alipay.trade.app.pay"), 400)
            try:
                app, biz = self._authenticate(params, p.METHOD_APP_PAY)
                product = biz.get("product_code")
                if product and product != p.PRODUCT_APP:
                    raise _Fail("40004", "ACQ.PRODUCT_CODE_ERROR", f"不支持的产品码 {product}")
                order = await self._create(app, params, biz, "alipay_app")
            except _Fail as fail:
                return HTMLResponse(_error_page(f"{fail.sub_code}: {fail.sub_msg}"), 400)
            root = str(request.scope.get("root_path", "")).rstrip("/")
            target = f"{root}/_sandbox/pay/{order.out_trade_no}"
            back = _web_url(return_url)
            if back:
                target += "?" + urlencode({"redirect_url": back})
            return RedirectResponse(target, status_code=303)

        return router

    def _jsapi_trade(self, trade_no: str) -> tuple[SandboxOrder | None, str]:
        order = next((o for o in self.core.orders.values()
                      if o.channel_trade_no == trade_no and trade_no), None)  # fmt: skip
        if order is None or order.method != "alipay_jsapi":
            return None, "交易不存在 (ACQ.TRADE_NOT_EXIST)"
        self._expire_if_due(order)
        if order.status is not OrderStatus.pending:
            return order, f"交易状态不合法 ({self.wire_status(order)})"
        return order, ""


def _error_page(message: str) -> str:
    from markupsafe import escape

    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>支付宝 sandbox'
        f"</title></head><body><main><h1>支付宝 sandbox</h1><p>{escape(message)}</p></main>"
        "</body></html>"
    )

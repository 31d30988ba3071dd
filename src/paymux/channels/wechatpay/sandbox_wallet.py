"""The WeChat sandbox's stand-in for the WeChat app, so a browser can finish every WeChat
method (:mod:`.wallet` names the paths):

- ``GET /_sandbox/weixin-jsbridge.js``: defines ``window.WeixinJSBridge`` in the page (as
  WeChat's webview does, then fires ``WeixinJSBridgeReady``). ``invoke('getBrandWCPayRequest',
  params, cb)`` opens the payment sheet below for those params; the sheet comes back to the page
  with the result in the fragment, and the next ``invoke`` with the same ``package`` calls
  ``cb({err_msg: 'get_brand_wcpay_request:ok|cancel|fail'})``.
- ``GET /_sandbox/wallet/{jsapi,app,mini}``: the payment sheet for JSAPI
  (``appId timeStamp nonceStr package signType paySign``), app SDK (``appid partnerid prepayid
  package noncestr timestamp sign``) or mini-program (``timeStamp nonceStr package signType
  paySign``; the appid is the order's) parameters, plus ``return_url``. It finds the order by
  its prepay id and checks the signature with the merchant's key, as WeChat does (a bad one:
  "支付验证签名失败", nothing paid). ``POST`` the same path with ``result`` = ``pay`` /
  ``decline`` / ``cancel``: paid (and notified) or declined like the customer page, then back
  to ``return_url`` with ``#sandbox_result=<err_msg>&package=<package>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from paymux.channels.sandbox_kit import OrderStatus, SandboxCore, SandboxOrder
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.sandbox_base import SandboxMerchant
from paymux.channels.wechatpay.wallet import BRIDGE_JS_PATH, SHEET_PATHS

_HERE = Path(__file__).resolve().parent
_pages = Environment(
    loader=FileSystemLoader(_HERE / "templates"), autoescape=select_autoescape(["html"])
)
_FIELDS = {
    "jsapi": ("appId", "timeStamp", "nonceStr", "package", "signType", "paySign"),
    "app": ("appid", "partnerid", "prepayid", "package", "noncestr", "timestamp", "sign"),
    "mini": ("timeStamp", "nonceStr", "package", "signType", "paySign"),
}
_RESULT = {"pay": "ok", "decline": "fail", "cancel": "cancel"}
BAD_SIGN = "支付验证签名失败"
"""What WeChat shows for a paySign it cannot verify."""


def _web_url(value: str | None) -> str | None:
    if value and value.startswith(("https://", "http://")):
        return value.split("#", 1)[0]
    return None


class WalletEndpoints:
    """Mixin of :class:`~paymux.channels.wechatpay.sandbox.Sandbox`."""

    core: SandboxCore
    merchants: dict[str, SandboxMerchant]

    def order_by_prepay_id(self, prepay_id: str) -> SandboxOrder | None:
        return next(
            (o for o in self.core.orders.values() if o.extra.get("prepay_id") == prepay_id), None
        )

    def check_sheet(self, kind: str, params: dict[str, str]) -> tuple[SandboxOrder | None, str]:
        """The order the parameters pay and "" if WeChat would open its sheet; else why not."""
        missing = [name for name in _FIELDS[kind] if not params.get(name)]
        if missing:
            return None, f"缺少参数 {', '.join(missing)}"
        if kind == "app":
            prepay_id = params["prepayid"]
            if params["package"] != "Sign=WXPay":
                return None, "package 参数错误"
        else:
            package = params["package"]
            if not package.startswith("prepay_id=") or params["signType"] != "RSA":
                return None, "package 或 signType 参数错误"
            prepay_id = package.removeprefix("prepay_id=")
        order = self.order_by_prepay_id(prepay_id)
        if order is None:
            return None, "prepay_id 不存在或已过期"
        merchant = self.merchants.get(str(order.extra.get("sp_mchid") or order.merchant_id))
        appids = {order.extra.get(k) for k in ("appid", "sp_appid", "sub_appid")} - {None}
        if merchant is None:
            return order, BAD_SIGN
        if kind == "app":
            appid, stamp, nonce, signature = (
                params["appid"], params["timestamp"], params["noncestr"], params["sign"]
            )  # fmt: skip
            message = f"{appid}\n{stamp}\n{nonce}\n{prepay_id}\n"
            if params["partnerid"] != merchant.mchid:
                return order, "partnerid 与订单商户号不一致"
        else:
            appid = params.get("appId") or str(order.extra.get("appid") or "")
            message = f"{appid}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
            signature = params["paySign"]
        if appid not in appids:
            return order, "appid 与下单 appid 不一致"
        if not protocol.rsa_verify(merchant.public_key, message.encode(), signature):
            return order, BAD_SIGN
        return order, ""

    def _wallet_router(self) -> APIRouter:
        router = APIRouter()

        @router.get(BRIDGE_JS_PATH)
        async def bridge_js() -> Response:
            """The sandbox's ``WeixinJSBridge`` (see the module docstring)."""
            body = (_HERE / "static" / "weixin-jsbridge-sandbox.js").read_bytes()
            return Response(body, media_type="text/javascript; charset=utf-8")

        for method, path in SHEET_PATHS.items():
            kind = method.removeprefix("wechat_")
            router.add_api_route(path, self._sheet_page(kind), methods=["GET"],
                                 response_class=HTMLResponse)  # fmt: skip
            router.add_api_route(path, self._sheet_act(kind), methods=["POST"])
        return router

    def _sheet_page(self, kind: str) -> Any:
        async def page(request: Request) -> HTMLResponse:
            params = dict(request.query_params)
            order, problem = self.check_sheet(kind, params)
            html = _pages.get_template("wallet_sheet.html").render(
                kind=kind, order=order, problem=problem, fields=_FIELDS[kind],
                params=params, return_url=_web_url(params.get("return_url")),
                amount=f"{order.amount / 100:.2f}" if order else "",
            )  # fmt: skip
            return HTMLResponse(html, status_code=400 if problem else 200)

        return page

    def _sheet_act(self, kind: str) -> Any:
        async def act(request: Request, result: str = Form("cancel")) -> Response:
            form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
            order, problem = self.check_sheet(kind, form)
            if result not in _RESULT:
                return HTMLResponse("result must be pay, decline or cancel", status_code=400)
            if problem and result != "cancel":
                result = "decline" if order is not None else "cancel"
            elif order is not None and result != "cancel":
                if order.status is OrderStatus.pending:
                    await self.core.customer_action(order, paid=result == "pay")
                elif order.status is not OrderStatus.succeeded:
                    result = "decline"
            back = _web_url(form.get("return_url"))
            if back is None:
                status = order.status.value if order else "unknown"
                return HTMLResponse(f"<!doctype html><title>WeChat Pay sandbox</title>"
                                    f"<p>{status}</p>")  # fmt: skip
            err_msg = f"get_brand_wcpay_request:{_RESULT[result]}"
            package = form.get("package") if kind != "app" else form.get("prepayid")
            fragment = urlencode({"sandbox_result": err_msg, "package": package or ""})
            return RedirectResponse(f"{back}#{fragment}", status_code=303)

        return act

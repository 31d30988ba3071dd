"""An Alipay OpenAPI sandbox that speaks the real wire protocol (RSA2; public-key mode and
public-key certificate mode).

``POST``/``GET /gateway.do`` dispatches on ``method`` as Alipay does; parameters come from the
query string and/or an ``application/x-www-form-urlencoded`` body. Every request's signature is
checked against the registered app's public key (failures answer ``40002
isv.invalid-signature``), and every JSON answer ``{"<method>_response": {...}, "sign": "..."}``
is signed, with the sandbox's own "Alipay" key, over the exact text of the response object.

Certificate mode (``provision(..., cert_mode=True)``): the sandbox plays Alipay's certificate
authority; the app gets its public-key certificate, the "Alipay" certificate and the root
bundle. Its requests must carry ``app_cert_sn`` and ``alipay_root_cert_sn`` (the sub_codes for
a wrong or missing one are the sandbox's own), its answers carry ``alipay_cert_sn``. The
payout methods answer only certificate-mode apps (``40006 isv.insufficient-isv-permissions``
otherwise), as Alipay requires.

Methods, each with its feature (see those modules):

- :mod:`.sandbox_trades`: ``alipay.trade.precreate`` / ``page.pay`` / ``wap.pay`` /
  ``app.pay`` / ``query`` / ``close``, and the notifications;
- :mod:`.sandbox_refunds`: ``alipay.trade.refund`` / ``fastpay.refund.query``;
- :mod:`.sandbox_transfers`: ``alipay.fund.trans.uni.transfer`` / ``common.query`` and the
  payee directory's control API;
- :mod:`.sandbox_settles`: ``alipay.trade.royalty.relation.bind`` / ``order.settle`` /
  ``order.settle.query``;
- :mod:`.sandbox_codes`: ``alipay.trade.pay`` / ``alipay.trade.cancel`` (payment codes);
- :mod:`.sandbox_isv`: ISV mode (``app_auth_token``) and ``alipay.trade.create`` (JSAPI);
- :mod:`.sandbox_bills`: ``alipay.data.dataservice.bill.downloadurl.query`` and the day's
  zip (the trade bill, or the 账务明细 with ``bill_type=signcustomer``), with the bill
  tweaks of ``POST /_sandbox/bill_tweaks`` (each one's effect is listed there);
- :mod:`.sandbox_apps`: the apps (public-key and certificate mode) and the payees;
- :mod:`.sandbox_wallet`: ``alipay.system.oauth.token``, the ``auth_base`` authorize page and the
  stand-ins of the Alipay app's payment sheets (JSAPI ``tradePay``, app SDK).

This module is the gateway: it reads a request, checks its app, signature and
certificates, dispatches on ``method`` and signs the answer.

Notifications (form POST, ``notify_type=trade_status_sync``, signed over the sorted fields
minus ``sign``/``sign_type``; acknowledged only by a 200 whose body is exactly ``success``;
retried 4m 10m 10m 1h 2h 6h 15h like Alipay):

- ``TRADE_SUCCESS`` when the order is paid.
- ``TRADE_CLOSED`` when an unpaid order is closed by Alipay: the sandbox's "decline" stands
  for a customer who gives up (Alipay has no failed trade state; its docs list "unpaid trade
  closed on timeout" as a TRADE_CLOSED trigger that notifies by default). The sandbox closes
  such a trade at once rather than at its timeout, so the gateway sees a close it did not ask
  for, before the expiry: ``failed``, ``customer_declined`` (docs/api.md "Final statuses").
  A pending order found past its ``time_expire`` is closed and notified too (lazily, when the
  order is next touched through the API): ``expired``.
- No notification for a close the merchant asked for via ``alipay.trade.close`` (its answer
  is authoritative) and none for ``WAIT_BUYER_PAY`` (Alipay does not notify it by default).
- After each refund that succeeds, to the trade's notify_url: ``TRADE_SUCCESS`` (partial) or
  ``TRADE_CLOSED`` (now fully refunded) with ``out_biz_no`` = the refund request number,
  ``refund_fee`` = total refunded, ``gmt_refund`` (``yyyy-MM-dd HH:mm:ss.S``). None for a
  refund that fails (it changes no trade).

Divergences from Alipay, on purpose: one sandbox "Alipay" key pair signs for every app (Alipay
issues one per app); refund request numbers are unique per app, not per trade; the
``timestamp`` is checked for format, not freshness; the customer page (from the shared kit) can
still pay an order past ``time_expire`` and redirects to ``return_url`` without Alipay's signed
return parameters.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import parse_qsl

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from markupsafe import escape

from paymux.channels import sandbox_kit
from paymux.channels.alipay import oauth
from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.sandbox_apps import (
    Payee,
    SandboxApp,
    ServerMethod,
    _Authority,
    _CreateError,
    _Fail,
    _invalid,
    _missing,
)
from paymux.channels.alipay.sandbox_bills import BillMethods
from paymux.channels.alipay.sandbox_codes import PaymentCodeMethods
from paymux.channels.alipay.sandbox_isv import AppAuth as AppAuth
from paymux.channels.alipay.sandbox_isv import AppAuthIn as AppAuthIn
from paymux.channels.alipay.sandbox_isv import IsvMethods
from paymux.channels.alipay.sandbox_refunds import RefundMethods
from paymux.channels.alipay.sandbox_settles import RoyaltyLine as RoyaltyLine
from paymux.channels.alipay.sandbox_settles import SandboxSettle as SandboxSettle
from paymux.channels.alipay.sandbox_settles import SettleMethods
from paymux.channels.alipay.sandbox_trades import _BROWSER_METHODS
from paymux.channels.alipay.sandbox_transfers import PayeeIn as PayeeIn
from paymux.channels.alipay.sandbox_transfers import (
    SandboxTransfer,
    TransferMethods,
    TransferScript,
)
from paymux.channels.alipay.sandbox_wallet import WalletMethods
from paymux.channels.sandbox_bills import bill_router
from paymux.channels.sandbox_kit import BarcodeOutcome, BarcodeScript, SandboxCore, customer_router

RETRY_SCHEDULE: tuple[float, ...] = (240, 600, 600, 3600, 7200, 21600, 54000)

_CERT_ONLY = frozenset({p.METHOD_TRANSFER, p.METHOD_TRANSFER_QUERY})
"""Methods that move money out: Alipay takes them in certificate mode only."""


def _base_url(request: Request) -> str:
    root = str(request.scope.get("root_path", ""))
    return f"{request.url.scheme}://{request.url.netloc}{root}".rstrip("/")


def is_ack(response: httpx.Response) -> bool:
    """Alipay stops retrying only when the merchant prints exactly ``success``."""
    return response.status_code == 200 and response.content == b"success"


class Sandbox(
    PaymentCodeMethods,
    IsvMethods,
    BillMethods,
    SettleMethods,
    TransferMethods,
    RefundMethods,
    WalletMethods,
):
    """The Alipay sandbox: ``.core`` (orders, scripts, notifier) and ``.app`` (ASGI)."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient | None = None,
        time_scale: float = 1.0,
        hold_timeout_seconds: float = 30.0,
    ) -> None:
        self._alipay_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.alipay_public_key = sandbox_kit.public_key_pem(self._alipay_key.public_key())
        """The sandbox's "Alipay public key" (PEM), as given to every app."""
        self.apps: dict[str, SandboxApp] = {}
        self._authority: _Authority | None = None
        self.alipay_cert: str | None = None
        """Certificate mode: the sandbox's "Alipay public-key certificate" (PEM)."""
        self.alipay_cert_sn: str | None = None
        self.payees: list[Payee] = []
        self.transfers: dict[tuple[str, str], SandboxTransfer] = {}
        self.transfer_scripts: list[TransferScript] = []
        self.relations: dict[str, dict[tuple[str, str], Payee]] = {}
        """Per app: the bound split receivers, by (type, account)."""
        self.settles: dict[tuple[str, str, str], SandboxSettle] = {}
        """By (app_id, trade_no, out_request_no)."""
        self.settle_scripts: list[TransferScript] = []
        self.core = SandboxCore(
            channel="alipay",
            retry_schedule=RETRY_SCHEDULE,
            build_notification=self.build_notification,
            build_refund_notification=self.build_refund_notification,
            is_ack=is_ack,
            http=http,
            time_scale=time_scale,
            hold_timeout_seconds=hold_timeout_seconds,
        )
        self._server_methods: dict[str, ServerMethod] = {
            p.METHOD_PRECREATE: self._precreate,
            p.METHOD_QUERY: self._query,
            p.METHOD_CLOSE: self._close,
            p.METHOD_REFUND: self._refund,
            p.METHOD_REFUND_QUERY: self._refund_query,
            p.METHOD_TRANSFER: self._transfer,
            p.METHOD_TRANSFER_QUERY: self._transfer_query,
            p.METHOD_ROYALTY_BIND: self._bind,
            p.METHOD_SETTLE: self._settle,
            p.METHOD_SETTLE_QUERY: self._settle_query,
        }
        self._server_methods[p.METHOD_PAY] = self._pay_code
        self._server_methods[p.METHOD_CANCEL] = self._cancel
        self.barcode_scripts: list[BarcodeScript] = []
        self._server_methods[p.METHOD_CREATE] = self._trade_create
        self._server_methods[oauth.METHOD_OAUTH_TOKEN] = self._oauth_token
        self.oauth_codes: dict[str, tuple[str, str, dt.datetime]] = {}
        """auth_codes of the web OAuth (``auth_base``): app, sandbox user, issued at."""
        self.oauth_used: set[str] = set()
        self.app_auths: dict[str, AppAuth] = {}
        """ISV authorisations (第三方应用授权) by ``app_auth_token``."""
        self.app = self._build_app()
        self.app.include_router(self._isv_router())
        self.app.include_router(self._wallet_router())

    # ------------------------------------------------------------ request handling
    @staticmethod
    async def _read_params(request: Request) -> dict[str, str]:
        pairs = list(request.query_params.multi_items())
        if request.method == "POST":
            body = await request.body()
            ctype = request.headers.get("content-type", "")
            if body and (not ctype or "application/x-www-form-urlencoded" in ctype):
                try:
                    pairs += parse_qsl(
                        body.decode("utf-8"), keep_blank_values=True, errors="strict"
                    )
                except (UnicodeDecodeError, ValueError):
                    raise _invalid("parameter", "请求体不是 UTF-8 表单") from None
        params: dict[str, str] = {}
        for key, value in pairs:
            if key in params and params[key] != value:
                raise _invalid("parameter", f"参数 {key} 重复")
            params[key] = value
        return params

    def _authenticate(
        self, params: dict[str, str], method: str
    ) -> tuple[SandboxApp, dict[str, Any]]:
        """Common parameters and the request signature; returns the app and biz_content."""
        for name, wire in (("app-id", "app_id"), ("signature", "sign")):
            if not params.get(wire):
                raise _missing(name)
        app = self.apps.get(params["app_id"])
        if app is None:
            raise _invalid("app-id", "无效的AppID参数")
        sign_type = params.get("sign_type")
        if not sign_type:
            raise _missing("signature-type")
        if sign_type != p.SIGN_TYPE:
            raise _invalid("signature-type", "无效的签名类型")
        if params.get("charset", p.CHARSET).lower() != p.CHARSET:
            raise _invalid("charset", "字符集错误")
        if not p.verify_request(params, app.public_key):
            raise _invalid("signature", "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配")
        self._check_certificates(app, params, method)
        if not params.get("timestamp"):
            raise _missing("timestamp")
        try:
            p.parse_time(params["timestamp"])
        except ValueError:
            raise _invalid("timestamp", "非法的时间戳参数") from None
        if params.get("version", "") != p.VERSION:
            raise (
                _invalid("version", "无效的版本号")
                if params.get("version")
                else _missing("version")
            )
        if params.get("format", p.FORMAT).upper() != p.FORMAT:
            raise _invalid("format", "无效的数据格式")
        try:
            biz = json.loads(params.get("biz_content") or "{}")
        except json.JSONDecodeError:
            raise _invalid("parameter", "biz_content 不是合法的 JSON") from None
        if not isinstance(biz, dict):
            raise _invalid("parameter", "biz_content 不是 JSON 对象")
        return self._acting_app(app, params), biz

    def _check_certificates(self, app: SandboxApp, params: dict[str, str], method: str) -> None:
        """Certificate mode: the request names the app's and the root certificates by SN.
        [The sub_codes for a wrong or missing SN are the sandbox's own; unverified.]"""
        if app.cert_sn is None:
            if method in _CERT_ONLY:
                raise _Fail(
                    "40006", "isv.insufficient-isv-permissions", "资金支出类接口须使用公钥证书模式"
                )
            return
        if not params.get("app_cert_sn"):
            raise _missing("app-cert-sn")
        if params["app_cert_sn"] != app.cert_sn:
            raise _invalid("app-cert-sn", "应用公钥证书序列号不匹配")
        if params.get("alipay_root_cert_sn") != self.authority.root_sn:
            raise _invalid("alipay-root-cert-sn", "支付宝根证书序列号不匹配")

    def _respond(
        self, key: str, payload: dict[str, Any], app: SandboxApp | None = None
    ) -> Response:
        cert_sn = self.alipay_cert_sn if app is not None and app.cert_sn else None
        text = p.build_response(key, payload, self._alipay_key, alipay_cert_sn=cert_sn)
        return Response(text.encode("utf-8"), media_type="application/json;charset=utf-8")

    async def _server_call(
        self, app: SandboxApp, method: str, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        return await self._server_methods[method](app, params, biz, base)

    async def handle(self, request: Request) -> Response:
        base = _base_url(request)
        try:
            params = await self._read_params(request)
        except _Fail as fail:
            return self._respond("error_response", fail.payload())
        method = params.get("method", "")
        browser = method in _BROWSER_METHODS
        known = browser or method in self._server_methods
        key = p.response_key(method) if known else "error_response"
        app: SandboxApp | None = None
        try:
            if not method:
                raise _missing("method")
            if not known:
                raise _invalid("method", "不存在的方法名")
            app, biz = self._authenticate(params, method)
            if browser:
                return await self._browser_call(app, method, params, biz, base)
            answer = await self._server_call(app, method, params, biz, base)
            return self._respond(key, answer, app)
        except _CreateError:
            return Response(b"Internal Server Error", status_code=500, media_type="text/plain")
        except _Fail as fail:
            if browser:
                return HTMLResponse(
                    f"<!doctype html><title>支付宝 - 错误</title><h1>{escape(fail.code)}</h1>"
                    f"<p>{escape(fail.sub_code)}: {escape(fail.sub_msg)}</p>",
                    status_code=400,
                )
            if method == oauth.METHOD_OAUTH_TOKEN:  # its errors come as error_response
                key = "error_response"
            return self._respond(key, fail.payload(), app)

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="Alipay sandbox", docs_url=None, redoc_url=None, openapi_url=None)
        app.add_api_route("/gateway.do", self.handle, methods=["GET", "POST"])
        app.include_router(
            customer_router(self.core, title="Alipay sandbox", brand_color="#1677ff")
        )
        app.include_router(bill_router(self.core))
        app.include_router(self._control_router())
        app.include_router(self._settle_router())
        app.include_router(self._barcode_router())
        self._install_bills(app)
        return app


__all__ = [
    "RETRY_SCHEDULE",
    "BarcodeOutcome",
    "BarcodeScript",
    "Payee",
    "Sandbox",
    "SandboxApp",
    "SandboxTransfer",
    "TransferScript",
    "is_ack",
]

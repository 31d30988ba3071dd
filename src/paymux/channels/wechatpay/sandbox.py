"""An in-process WeChat Pay API v3 sandbox speaking the real wire protocol.

Serves the real paths — payments (``/v3/pay/transactions/{native,jsapi,h5,app}``, query by
out-trade-no, close), refunds (``/v3/refund/domestic/refunds``), payouts
(``/v3/fund-app/mch-transfer/transfer-bills``) and profit sharing (``/v3/profitsharing/
receivers/add``, ``/v3/profitsharing/orders``) — verifies each request's merchant signature,
decrypts sensitive fields sent under ``Wechatpay-Serial``, signs every answer with its platform
key (public-key mode, ``PUB_KEY_ID_…``) and delivers signed, AEAD-encrypted notifications with
WeChat's retry schedule. Orders, refunds, scripted outcomes and the customer page come from
:mod:`paymux.channels.sandbox_kit`; transfers and splits take the same kind of scripts
(:class:`~paymux.channels.sandbox_kit.RefundScript`) from their own queues
(``/_sandbox/transfer_scripts``, ``/_sandbox/split_scripts``).

What is notified, like WeChat: a successful payment (``TRANSACTION.SUCCESS``; a declined or
closed order is learnt by querying), a final refund (``REFUND.SUCCESS``, ``REFUND.CLOSED``,
``REFUND.ABNORMAL``: a failed refund ends ``ABNORMAL`` unless :attr:`Sandbox.refund_fail_status`
says ``CLOSED``) and a final transfer bill (``MCHTRANSFER.BILL.FINISHED``). Splits are learnt by
querying (WeChat's ``PROFITSHARING.*`` notifications are not modelled).

Trade bills (``/v3/bill/tradebill`` and the download it points to) list each day's payments and
refunds from :func:`paymux.channels.sandbox_bills.day_bill`; discrepancies are scripted through
``POST /_sandbox/bill_tweaks`` (:func:`paymux.channels.sandbox_bills.bill_router`). In the
ALL bill, ``amount`` shows another 应结订单金额/订单金额, ``fee`` another 手续费, ``duplicate``
writes the row twice, ``next_day`` moves the row to the next day's bill, ``drop`` leaves it out,
``extra_payment`` adds a SUCCESS row of an order never made, ``extra_refund`` a REFUND row with a
refund number never issued, ``corrupt_summary`` puts 应结订单总金额 off (the SHA1 is of that file)
and ``bad_row`` adds a row cut short (10 fields) outside the summary: see
:mod:`.sandbox_bills`. The fund-flow bill (``/v3/bill/fundflowbill``, BASIC) lists the same
day's money, the 商家转账 bills that succeeded and the day's 提现 from
:func:`paymux.channels.sandbox_bills.day_funds` (tweaks with ``"bill": "funds"``).

Profit sharing enforces what WeChat does: only orders created with
``settle_info.profit_sharing`` split, receivers must be added first, at most
:attr:`Sandbox.max_split_ratio` (30 % by default) of an order may be split away, nothing once
``unfreeze_unsplit`` released the rest, and money split away can no longer be refunded.

Deliberate divergence: WeChat reports a refunded order's ``trade_state`` as ``REFUND``; the
sandbox keeps ``SUCCESS`` because the adapter does not map ``REFUND`` yet.

This module holds the app, the merchants and the orders; each other feature is a mixin of its
own module (:mod:`.sandbox_refunds`, :mod:`.sandbox_transfers`, :mod:`.sandbox_profitsharing`,
:mod:`.sandbox_codepay`, :mod:`.sandbox_bills`) over :class:`.sandbox_base.SandboxBase`; the
partner desk is :mod:`.partner_sandbox`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import string
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import PlainTextResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from paymux.channels import sandbox_bills, sandbox_kit
from paymux.channels.sandbox_kit import (
    BarcodeScript,
    OrderStatus,
    Outcome,
    RefundScript,
    SandboxCore,
    SandboxOrder,
    customer_router,
)
from paymux.channels.wechatpay import oauth, protocol
from paymux.channels.wechatpay.partner_sandbox import PartnerDesk
from paymux.channels.wechatpay.sandbox_base import (
    _ALNUM,
    _TRADE_TYPES,
    _WIRE_STATE,
    RETRY_SCHEDULE,
    SandboxMerchant,
    WxError,
    _Amount,
    _random,
    _SettleInfo,
    _WechatCore,
)
from paymux.channels.wechatpay.sandbox_bills import BillEndpoints
from paymux.channels.wechatpay.sandbox_codepay import CodePayEndpoints
from paymux.channels.wechatpay.sandbox_profitsharing import ProfitSharingEndpoints, SandboxSplit
from paymux.channels.wechatpay.sandbox_refunds import RefundEndpoints
from paymux.channels.wechatpay.sandbox_transfers import SandboxTransfer, TransferEndpoints
from paymux.channels.wechatpay.sandbox_wallet import WalletEndpoints
from paymux.kit import clock

__all__ = [
    "RETRY_SCHEDULE",
    "Sandbox",
    "SandboxMerchant",
    "SandboxSplit",
    "SandboxTransfer",
    "WxError",
]


class _Payer(BaseModel):
    openid: str = Field(min_length=1, max_length=128)


class _H5Info(BaseModel):
    type: str = Field(min_length=1, max_length=32)


class _SceneInfo(BaseModel):
    payer_client_ip: str = Field(min_length=1, max_length=45)
    h5_info: _H5Info | None = None


class _CreateBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    appid: str = Field(min_length=1, max_length=32)
    mchid: str = Field(min_length=1, max_length=32)
    description: str = Field(min_length=1, max_length=127)
    out_trade_no: str = Field(pattern=r"^[A-Za-z0-9_\-|*]{6,32}$")
    time_expire: str | None = None
    attach: str | None = Field(default=None, max_length=128)
    notify_url: str = Field(min_length=1, max_length=255)
    amount: _Amount
    payer: _Payer | None = None
    scene_info: _SceneInfo | None = None
    settle_info: _SettleInfo | None = None


class _CloseBody(BaseModel):
    mchid: str = Field(min_length=1, max_length=32)


class Sandbox(
    RefundEndpoints,
    TransferEndpoints,
    ProfitSharingEndpoints,
    CodePayEndpoints,
    BillEndpoints,
    WalletEndpoints,
):
    """The WeChat Pay sandbox: ``.core`` (orders, scripts, notifier) and ``.app`` (ASGI)."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient | None = None,
        time_scale: float = 1.0,
        hold_timeout_seconds: float = 30.0,
    ) -> None:
        self._platform_key = protocol.generate_private_key()
        self.platform_public_key_id = (
            protocol.PUBLIC_KEY_ID_PREFIX + "01" + _random(string.digits, 26)
        )
        self.platform_public_key_pem = sandbox_kit.public_key_pem(self._platform_key.public_key())
        self.merchants: dict[str, SandboxMerchant] = {}
        self.app_secrets: dict[str, str] = {}
        self.oauth_codes: dict[str, tuple[str, str, dt.datetime]] = {}
        self.oauth_used: set[str] = set()
        self.transfers: dict[tuple[str, str], SandboxTransfer] = {}
        self.transfer_scripts: list[RefundScript] = []
        self.transfer_fail_reason = "PAYEE_ACCOUNT_ABNORMAL"
        self.split_receivers: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.splits: dict[tuple[str, str], SandboxSplit] = {}
        self.split_scripts: list[RefundScript] = []
        self.max_split_ratio = 0.30
        self.barcode_scripts: list[BarcodeScript] = []
        """WeChat's default ceiling on what may be split away from an order."""
        core = _WechatCore(
            channel="wechatpay",
            retry_schedule=RETRY_SCHEDULE,
            build_notification=self.build_notification,
            build_refund_notification=self.build_refund_notification,
            is_ack=lambda response: response.status_code in (200, 204),
            http=http,
            time_scale=time_scale,
            hold_timeout_seconds=hold_timeout_seconds,
        )
        core.resign = self.sign
        self._core = core
        self.core: SandboxCore = core
        self.app = self._build_app()
        self.partners: PartnerDesk = PartnerDesk(self)
        """Service providers (服务商) and their sub-merchants: the partner-mode paths."""
        self.partners.install(self.app)

    @property
    def platform_private_key(self) -> rsa.RSAPrivateKey:
        """The platform key pair's private half: what decrypts sensitive request fields (tests
        use it to check encryption independently)."""
        return self._platform_key

    @property
    def refund_fail_status(self) -> str:
        """How a scripted ``fail`` refund ends: ``ABNORMAL`` (default) or ``CLOSED``."""
        return self._core.refund_fail_status

    @refund_fail_status.setter
    def refund_fail_status(self, value: str) -> None:
        if value not in ("ABNORMAL", "CLOSED"):
            raise ValueError("a failed refund ends ABNORMAL or CLOSED")
        self._core.refund_fail_status = value

    # ------------------------------------------------------------ merchants
    def provision(self, base_url: str) -> dict[str, Any]:
        """Register a new merchant; return its complete adapter credentials."""
        key = protocol.generate_private_key()
        merchant = SandboxMerchant(
            mchid="16" + _random(string.digits, 8),
            appid="wx" + secrets.token_hex(8),
            serial_no=secrets.token_hex(20).upper(),
            public_key=key.public_key(),
            apiv3_key=_random(_ALNUM, 32),
        )
        self.merchants[merchant.mchid] = merchant
        self.app_secrets[merchant.appid] = secrets.token_hex(16)
        return {
            "mchid": merchant.mchid,
            "appid": merchant.appid,
            "oauth_app_secret": self.app_secrets[merchant.appid],
            "merchant_serial_no": merchant.serial_no,
            "merchant_private_key": sandbox_kit.private_key_pem(key),
            "apiv3_key": merchant.apiv3_key,
            "platform_public_key_id": self.platform_public_key_id,
            "platform_public_key": self.platform_public_key_pem,
            "gateway": base_url.rstrip("/"),
        }

    def provision_demo(self, base_url: str) -> dict[str, Any]:
        """A merchant with everything enabled, for the demo: payouts need a transfer scene
        (转账场景) WeChat grants the merchant, with the report fields it requires."""
        return {
            **self.provision(base_url),
            "transfer_scene_id": "1000",
            "transfer_scene_report_infos": [
                {"info_type": "活动名称", "info_content": "提现"},
                {"info_type": "奖励说明", "info_content": "余额提现"},
            ],
        }

    def bind_mini_appid(self, mchid: str) -> str:
        """Bind a new mini-program to a direct merchant (商户号绑定APPID): its appid, for the
        credentials' ``mini_appid``."""
        appid = "wx" + secrets.token_hex(8)
        self.merchants[mchid].mini_appids.add(appid)
        return appid

    def provision_partner(self, base_url: str) -> dict[str, Any]:
        """A new service provider (服务商): its credentials, no sub-merchant yet (add them with
        ``partners.add_sub_merchant``)."""
        return self.partners.provision_partner(base_url)

    def provision_sub_merchant(self, base_url: str, **options: bool) -> dict[str, Any]:
        """Complete partner-mode credentials: a new service provider's plus one new
        sub-merchant's ids (``sub_appid`` / ``sub_mini_appid`` options give it its own apps)."""
        return self.partners.provision(base_url, **options)

    # ------------------------------------------------------------ order views
    def transaction(self, order: SandboxOrder) -> dict[str, Any]:
        """The order as WeChat's transaction object (query answer, notification resource)."""
        if order.method == protocol.CODEPAY_KIND:
            return self.codepay_transaction(order)
        trade_state = _WIRE_STATE[order.status]
        amount: dict[str, Any] = {
            "total": order.amount,
            "currency": order.currency,
            "payer_currency": order.currency,
        }
        data: dict[str, Any] = {
            "appid": order.extra["appid"],
            "mchid": order.merchant_id,
            "out_trade_no": order.out_trade_no,
            "trade_state": trade_state,
            "trade_state_desc": protocol.TRADE_STATE_DESC[trade_state],
            "attach": order.extra.get("attach") or "",
            "amount": amount,
            "scene_info": {"device_id": ""},
            "promotion_detail": [],
        }
        if order.status in (OrderStatus.succeeded, OrderStatus.failed):
            data["transaction_id"] = order.channel_trade_no
            data["trade_type"] = _TRADE_TYPES[order.method]
            data["bank_type"] = "OTHERS"
            data["payer"] = {"openid": order.extra["openid"]}
        if order.status is OrderStatus.succeeded and order.paid_at is not None:
            data["success_time"] = protocol.rfc3339(order.paid_at)
            amount["payer_total"] = order.amount
        return data

    def build_notification(self, order: SandboxOrder) -> tuple[dict[str, str], bytes]:
        """The signed, encrypted ``TRANSACTION.SUCCESS`` notification for a paid order."""
        if order.extra.get("sp_mchid"):  # a sub-merchant's order: partner mode
            return self.partners.build_notification(order)
        merchant = self.merchants[order.merchant_id]
        resource = protocol.encrypt_resource(
            merchant.apiv3_key, protocol.encode_json(self.transaction(order))
        )
        event_id = uuid.uuid5(
            uuid.NAMESPACE_URL,
            f"wechatpay:{order.merchant_id}:{order.channel_trade_no}:TRANSACTION.SUCCESS",
        )
        return self._signed_event(str(event_id), "TRANSACTION.SUCCESS", "支付成功", resource)

    @staticmethod
    def _create_answer(order: SandboxOrder) -> dict[str, Any]:
        kind = order.method
        if kind == "native":
            return {"code_url": order.extra["page_url"]}
        if kind == "h5":
            return {"h5_url": order.extra["page_url"]}
        return {"prepay_id": order.extra["prepay_id"]}

    # ------------------------------------------------------------ endpoints
    async def _create(self, request: Request, kind: str) -> Response:
        raw = await request.body()
        merchant = self._authenticate(request, raw)
        body = self._parse(_CreateBody, raw)
        if body.mchid != merchant.mchid:
            raise WxError(400, "PARAM_ERROR", "mchid与请求的商户号不一致")
        if body.appid != merchant.appid and body.appid not in merchant.mini_appids:
            raise WxError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        if body.amount.currency != "CNY":
            raise WxError(400, "PARAM_ERROR", "不支持的货币类型")
        notify = urlsplit(body.notify_url)
        if notify.scheme not in ("http", "https") or not notify.netloc:
            raise WxError(400, "PARAM_ERROR", "notify_url格式错误")
        expires_at: dt.datetime | None = None
        if body.time_expire is not None:
            try:
                expires_at = protocol.parse_rfc3339(body.time_expire)
            except ValueError as exc:
                raise WxError(400, "PARAM_ERROR", "time_expire格式错误") from exc
        if kind == "jsapi" and body.payer is None:
            raise WxError(400, "PARAM_ERROR", "JSAPI下单缺少payer.openid")
        if kind == "h5" and (body.scene_info is None or body.scene_info.h5_info is None):
            raise WxError(400, "PARAM_ERROR", "H5下单缺少scene_info.h5_info")

        existing = self.core.get_order(merchant.mchid, body.out_trade_no)
        if existing is not None:
            return self._replay(existing, body, kind)

        script = self.core.take_script(body.description)
        if script.outcome is Outcome.create_error:
            raise WxError(500, "SYSTEM_ERROR", "系统错误")
        now = clock.now()
        order = SandboxOrder(
            out_trade_no=body.out_trade_no,
            channel_trade_no="4200" + _random(string.digits, 24),
            merchant_id=merchant.mchid,
            amount=body.amount.total,
            currency=body.amount.currency,
            subject=body.description,
            notify_url=body.notify_url,
            method=kind,
            script=script,
            created_at=now,
            extra={
                "appid": body.appid,
                "attach": body.attach,
                "time_expire": expires_at,
                "openid": body.payer.openid if body.payer else "o" + _random(_ALNUM, 27),
                "prepay_id": "wx" + now.strftime("%d%H%M%S") + secrets.token_hex(12),
                "page_url": f"{self._base_url(request)}/_sandbox/pay/{body.out_trade_no}",
                "profit_sharing": bool(body.settle_info and body.settle_info.profit_sharing),
            },
        )
        self.core.add_order(order)
        await self.core.after_create(order)
        return self._respond(200, self._create_answer(order))

    def _replay(self, order: SandboxOrder, body: _CreateBody, kind: str) -> Response:
        """A create for an existing out_trade_no: same request → same answer."""
        if order.status is OrderStatus.succeeded:
            raise WxError(400, "ORDER_PAID", "该订单已支付")
        if order.status is OrderStatus.closed:
            raise WxError(400, "ORDER_CLOSED", "该订单已关闭")
        if order.status is OrderStatus.failed:
            raise WxError(400, "INVALID_REQUEST", "该订单支付失败，请重新下单")
        if (order.method, order.amount, order.subject) != (
            kind,
            body.amount.total,
            body.description,
        ):
            raise WxError(403, "OUT_TRADE_NO_USED", "商户订单号重复")
        return self._respond(200, self._create_answer(order))

    def _own_order(self, merchant: SandboxMerchant, mchid: str, no: str) -> SandboxOrder:
        if mchid != merchant.mchid:
            raise WxError(400, "PARAM_ERROR", "mchid与请求的商户号不一致")
        order = self.core.get_order(merchant.mchid, no)
        if order is None:
            raise WxError(404, "ORDER_NOT_EXIST", "订单不存在")
        return order

    async def _query(self, request: Request, out_trade_no: str) -> Response:
        merchant = self._authenticate(request, await request.body())
        mchid = request.query_params.get("mchid")
        if not mchid:
            raise WxError(400, "PARAM_ERROR", "缺少参数mchid")
        order = self._own_order(merchant, mchid, out_trade_no)
        return self._respond(200, self.transaction(order))

    async def _close(self, request: Request, out_trade_no: str) -> Response:
        raw = await request.body()
        merchant = self._authenticate(request, raw)
        body = self._parse(_CloseBody, raw)
        order = self._own_order(merchant, body.mchid, out_trade_no)
        if not self.core.close(order):
            raise WxError(400, "ORDER_PAID", "订单已支付")
        return self._respond(204)

    def _create_endpoint(self, kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def create(request: Request) -> Response:
            return await self._create(request, kind)

        return create

    def openid_of(self, appid: str, user: str = "payer") -> str:
        """The openid the sandbox's WeChat user ``user`` has under ``appid``."""
        digest = hashlib.sha256(f"{appid}:{user}".encode()).hexdigest()
        return "o" + digest[:27]

    def _oauth_router(self) -> APIRouter:
        """Web OAuth of the official accounts (``snsapi_base``: silent, no consent page)."""
        router = APIRouter()

        @router.get(oauth.AUTHORIZE_PATH)
        async def authorize(
            appid: str = "", redirect_uri: str = "", response_type: str = "",
            scope: str = "", state: str = "", sandbox_user: str = "payer",
        ) -> Response:  # fmt: skip
            """``sandbox_user`` picks the WeChat user in the sandbox (the real one is whoever
            is logged in to WeChat)."""
            if appid not in self.app_secrets:
                return PlainTextResponse("appid 参数错误 (errcode 10003)", status_code=400)
            if response_type != "code" or scope not in ("snsapi_base", "snsapi_userinfo"):
                return PlainTextResponse("scope 参数错误或没有 scope 权限", status_code=400)
            if not redirect_uri.startswith(("https://", "http://")):
                return PlainTextResponse("redirect_uri 参数错误 (errcode 10003)", status_code=400)
            code = secrets.token_hex(16)
            self.oauth_codes[code] = (appid, self.openid_of(appid, sandbox_user), clock.now())
            sep = "&" if "?" in redirect_uri else "?"
            query = urlencode({"code": code, "state": state})
            return RedirectResponse(f"{redirect_uri}{sep}{query}", status_code=302)

        @router.get(oauth.TOKEN_PATH)
        async def token(appid: str = "", secret: str = "", code: str = "",
                        grant_type: str = "") -> dict[str, Any]:  # fmt: skip
            if self.app_secrets.get(appid) != secret or not secret:
                return {"errcode": 40125, "errmsg": "invalid appsecret"}
            if grant_type != "authorization_code":
                return {"errcode": 40002, "errmsg": "invalid grant_type"}
            if not code:
                return {"errcode": 41008, "errmsg": "missing code"}
            if code in self.oauth_used:
                return {"errcode": 40163, "errmsg": "code been used"}
            issued = self.oauth_codes.get(code)
            age = (clock.now() - issued[2]).total_seconds() if issued else None
            if issued is None or issued[0] != appid or age is None or age > 300:
                return {"errcode": 40029, "errmsg": "invalid code"}
            self.oauth_used.add(code)
            del self.oauth_codes[code]
            return {"access_token": secrets.token_hex(32), "expires_in": 7200,
                    "refresh_token": secrets.token_hex(32), "openid": issued[1],
                    "scope": "snsapi_base"}  # fmt: skip

        return router

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="WeChat Pay sandbox", docs_url=None, redoc_url=None)

        async def on_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, WxError)
            return self._respond(exc.status, {"code": exc.code, "message": exc.message})

        app.add_exception_handler(WxError, on_error)
        app.include_router(self._oauth_router())
        app.include_router(self._wallet_router())

        for kind in _TRADE_TYPES:
            app.add_api_route(
                f"/v3/pay/transactions/{kind}",
                self._create_endpoint(kind),
                methods=["POST"],
                name=f"create_{kind}",
            )

        @app.get("/v3/pay/transactions/out-trade-no/{out_trade_no}")
        async def query(request: Request, out_trade_no: str) -> Response:
            return await self._query(request, out_trade_no)

        @app.post("/v3/pay/transactions/out-trade-no/{out_trade_no}/close")
        async def close(request: Request, out_trade_no: str) -> Response:
            return await self._close(request, out_trade_no)

        @app.post("/v3/refund/domestic/refunds")
        async def refund(request: Request) -> Response:
            return await self._refund(request)

        @app.get("/v3/refund/domestic/refunds/{out_refund_no}")
        async def query_refund(request: Request, out_refund_no: str) -> Response:
            return await self._query_refund(request, out_refund_no)

        @app.post("/v3/fund-app/mch-transfer/transfer-bills")
        async def transfer(request: Request) -> Response:
            return await self._transfer(request)

        @app.get("/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}")
        async def query_transfer(request: Request, out_bill_no: str) -> Response:
            return await self._query_transfer(request, out_bill_no)

        app.include_router(self._control_router())
        app.include_router(self._split_control_router())

        @app.post("/v3/profitsharing/receivers/add")
        async def add_receiver(request: Request) -> Response:
            return await self._add_receiver(request)

        @app.post("/v3/profitsharing/orders")
        async def split(request: Request) -> Response:
            return await self._split(request)

        @app.get("/v3/profitsharing/orders/{out_order_no}")
        async def query_split(request: Request, out_order_no: str) -> Response:
            return await self._query_split(request, out_order_no)

        app.include_router(self._barcode_router())
        app.include_router(self._bill_router())
        app.include_router(
            customer_router(self.core, title="WeChat Pay sandbox", brand_color="#07c160")
        )
        app.include_router(sandbox_bills.bill_router(self.core))
        return app

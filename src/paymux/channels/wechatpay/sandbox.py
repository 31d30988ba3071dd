"""An in-process WeChat Pay API v3 sandbox speaking the real wire protocol.

Serves the real paths (``/v3/pay/transactions/{native,jsapi,h5,app}``, query by out-trade-no,
close), verifies each request's merchant signature, signs every answer with its platform key
(public-key mode, ``PUB_KEY_ID_…``) and delivers signed, AEAD-encrypted ``TRANSACTION.SUCCESS``
notifications with WeChat's retry schedule. Orders, scripted outcomes and the customer page
come from :mod:`paymux.channels.sandbox_kit`.

Like WeChat, only a successful payment is notified; a declined order (``PAYERROR``) or a closed
one (``CLOSED``) is learnt by querying.
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from paymux.channels import sandbox_kit
from paymux.channels.sandbox_kit import (
    OrderStatus,
    Outcome,
    SandboxCore,
    SandboxOrder,
    customer_router,
)
from paymux.channels.wechatpay import protocol
from paymux.kit import clock

#: WeChat's notification retry schedule, seconds: 15s 15s 30s 3m 10m 20m 30m 30m 30m 60m 3h 3h
#: 3h 6h 6h.
RETRY_SCHEDULE: tuple[float, ...] = (
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
)  # fmt: skip

_WIRE_STATE: dict[OrderStatus, str] = {
    OrderStatus.pending: "NOTPAY",
    OrderStatus.succeeded: "SUCCESS",
    OrderStatus.failed: "PAYERROR",
    OrderStatus.closed: "CLOSED",
}
_TRADE_TYPES = {kind: trade_type for kind, trade_type in protocol.METHOD_ENDPOINTS.values()}
_ALNUM = string.ascii_letters + string.digits


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


class WxError(Exception):
    """An error answer, rendered like WeChat: ``{"code", "message"}``, signed."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


# ---------------------------------------------------------------- request bodies
class _Amount(BaseModel):
    total: StrictInt = Field(ge=1)
    currency: str = "CNY"


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


class _CloseBody(BaseModel):
    mchid: str = Field(min_length=1, max_length=32)


_Body = TypeVar("_Body", bound=BaseModel)


@dataclass
class SandboxMerchant:
    mchid: str
    appid: str
    serial_no: str
    public_key: rsa.RSAPublicKey
    apiv3_key: str


class _WechatCore(SandboxCore):
    """WeChat notifies successful payments only, and signs every delivery afresh (a retry hours
    later carries a current timestamp, or no receiver's freshness check would accept it)."""

    resign: Callable[[bytes], dict[str, str]] | None = None

    async def _post(self, order: SandboxOrder, headers: dict[str, str], body: bytes) -> bool:
        if self.resign is not None:
            headers = {**headers, **self.resign(body)}
        return await super()._post(order, headers, body)

    async def notify(self, order: SandboxOrder) -> None:
        if order.status is OrderStatus.succeeded:
            await super().notify(order)

    async def _deliver_once_then_retry(self, order: SandboxOrder) -> None:
        if order.status is OrderStatus.succeeded:
            await super()._deliver_once_then_retry(order)


class Sandbox:
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
        core = _WechatCore(
            channel="wechatpay",
            retry_schedule=RETRY_SCHEDULE,
            build_notification=self.build_notification,
            is_ack=lambda response: response.status_code in (200, 204),
            http=http,
            time_scale=time_scale,
            hold_timeout_seconds=hold_timeout_seconds,
        )
        core.resign = self.sign
        self.core: SandboxCore = core
        self.app = self._build_app()

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
        return {
            "mchid": merchant.mchid,
            "appid": merchant.appid,
            "merchant_serial_no": merchant.serial_no,
            "merchant_private_key": sandbox_kit.private_key_pem(key),
            "apiv3_key": merchant.apiv3_key,
            "platform_public_key_id": self.platform_public_key_id,
            "platform_public_key": self.platform_public_key_pem,
            "gateway": base_url.rstrip("/"),
        }

    # ------------------------------------------------------------ wire helpers
    def sign(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        """Platform signature headers for ``body`` (answers and notifications)."""
        return protocol.sign_response(
            self._platform_key, self.platform_public_key_id, body, timestamp=timestamp
        )

    def _respond(self, status: int, payload: Any | None = None) -> Response:
        body = protocol.encode_json(payload) if payload is not None else b""
        headers = self.sign(body)
        headers["Request-ID"] = secrets.token_hex(16)
        media_type = "application/json" if body else None
        return Response(content=body, status_code=status, headers=headers, media_type=media_type)

    @staticmethod
    def _base_url(request: Request) -> str:
        """The sandbox's public base: scheme, host and the mount point (``root_path``)."""
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return f"{request.url.scheme}://{request.url.netloc}{root}"

    @staticmethod
    def _signed_path(request: Request) -> str:
        """The path+query the client signed: relative to the sandbox's mount point."""
        raw = request.scope.get("raw_path")
        path = raw.decode("latin-1").split("?")[0] if raw else str(request.scope["path"])
        root = str(request.scope.get("root_path", "")).rstrip("/")
        if root and path.startswith(root):
            path = path[len(root) :]
        query = request.scope.get("query_string", b"").decode("latin-1")
        return f"{path}?{query}" if query else path

    def _authenticate(self, request: Request, body: bytes) -> SandboxMerchant:
        header = request.headers.get("authorization")
        if not header:
            raise WxError(401, "SIGN_ERROR", "缺少Authorization请求头")
        try:
            auth = protocol.parse_authorization(header)
        except protocol.ProtocolError as exc:
            raise WxError(401, "SIGN_ERROR", f"Authorization格式错误: {exc.message}") from exc
        merchant = self.merchants.get(auth.mchid)
        if merchant is None:
            raise WxError(401, "SIGN_ERROR", "商户号不存在")
        if auth.serial_no != merchant.serial_no:
            raise WxError(401, "SIGN_ERROR", "商户证书序列号有误")
        try:
            protocol.verify_request(
                auth,
                public_key=merchant.public_key,
                method=request.method,
                path_with_query=self._signed_path(request),
                body=body,
            )
        except protocol.ProtocolError as exc:
            raise WxError(401, "SIGN_ERROR", f"签名错误: {exc.message}") from exc
        return merchant

    @staticmethod
    def _parse(model: type[_Body], body: bytes) -> _Body:
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise WxError(400, "PARAM_ERROR", f"输入源“/body/{where}”映射到值字段失败") from exc

    # ------------------------------------------------------------ order views
    def transaction(self, order: SandboxOrder) -> dict[str, Any]:
        """The order as WeChat's transaction object (query answer, notification resource)."""
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
        merchant = self.merchants[order.merchant_id]
        resource = protocol.encrypt_resource(
            merchant.apiv3_key, protocol.encode_json(self.transaction(order))
        )
        event_id = uuid.uuid5(
            uuid.NAMESPACE_URL,
            f"wechatpay:{order.merchant_id}:{order.channel_trade_no}:TRANSACTION.SUCCESS",
        )
        envelope = {
            "id": str(event_id),
            "create_time": protocol.rfc3339(clock.now()),
            "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": resource,
        }
        body = protocol.encode_json(envelope)
        headers = self.sign(body)
        headers["Content-Type"] = "application/json"
        return headers, body

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
        if body.appid != merchant.appid:
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

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="WeChat Pay sandbox", docs_url=None, redoc_url=None)

        async def on_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, WxError)
            return self._respond(exc.status, {"code": exc.code, "message": exc.message})

        app.add_exception_handler(WxError, on_error)

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

        app.include_router(
            customer_router(self.core, title="WeChat Pay sandbox", brand_color="#07c160")
        )
        return app

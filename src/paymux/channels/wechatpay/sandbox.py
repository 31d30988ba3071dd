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

Profit sharing enforces what WeChat does: only orders created with
``settle_info.profit_sharing`` split, receivers must be added first, at most
:attr:`Sandbox.max_split_ratio` (30 % by default) of an order may be split away, nothing once
``unfreeze_unsplit`` released the rest, and money split away can no longer be refunded.

Deliberate divergence: WeChat reports a refunded order's ``trade_state`` as ``REFUND``; the
sandbox keeps ``SUCCESS`` because the adapter does not map ``REFUND`` yet.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import gzip
import secrets
import string
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from paymux.channels import sandbox_kit
from paymux.channels.sandbox_kit import (
    BarcodeOutcome,
    BarcodeScript,
    NotifyMode,
    OrderStatus,
    Outcome,
    RefundOutcome,
    RefundScript,
    RefundStatus,
    SandboxCore,
    SandboxOrder,
    SandboxRefund,
    customer_router,
)
from paymux.channels.wechatpay import bill, protocol
from paymux.channels.wechatpay.partner_sandbox import PartnerDesk
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


class _SettleInfo(BaseModel):
    profit_sharing: StrictBool = False


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


class _RefundAmount(BaseModel):
    refund: StrictInt = Field(ge=1)
    total: StrictInt = Field(ge=1)
    currency: str = Field(min_length=1, max_length=16)


class _RefundBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    transaction_id: str | None = Field(default=None, min_length=1, max_length=32)
    out_trade_no: str | None = Field(default=None, min_length=1, max_length=32)
    out_refund_no: str = Field(pattern=r"^[0-9A-Za-z_\-|*@]{1,64}$")
    reason: str | None = Field(default=None, max_length=80)
    notify_url: str | None = Field(default=None, min_length=1, max_length=256)
    funds_account: str | None = None
    amount: _RefundAmount


class _ReportInfo(BaseModel):
    info_type: str = Field(min_length=1)
    info_content: str = Field(min_length=1)


class _TransferBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    appid: str = Field(min_length=1, max_length=32)
    out_bill_no: str = Field(pattern=r"^[0-9A-Za-z]{1,32}$")
    transfer_scene_id: str = Field(min_length=1, max_length=36)
    openid: str = Field(min_length=1, max_length=64)
    user_name: str | None = Field(default=None, min_length=1)
    transfer_amount: StrictInt = Field(ge=1)
    transfer_remark: str = Field(min_length=1, max_length=32)
    notify_url: str | None = Field(default=None, min_length=1, max_length=256)
    user_recv_perception: str | None = None
    transfer_scene_report_infos: list[_ReportInfo] = Field(min_length=1)


class _Confirm(BaseModel):
    result: str = "confirm"
    """``confirm`` (the payee accepts: SUCCESS) or ``decline`` (FAIL)."""


@dataclass
class SandboxTransfer:
    """One 商家转账 bill."""

    out_bill_no: str
    transfer_bill_no: str
    merchant_id: str
    appid: str
    openid: str
    amount: int
    remark: str
    scene_id: str
    user_name: str | None
    """Decrypted, as the sandbox checked it."""
    notify_url: str | None
    script: RefundScript
    created_at: dt.datetime
    updated_at: dt.datetime
    state: str = "ACCEPTED"
    fail_reason: str | None = None
    package_info: str = ""
    notifications_sent: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


_RelationType = Literal[
    "SERVICE_PROVIDER", "STORE", "STAFF", "STORE_OWNER", "PARTNER", "HEADQUARTER", "BRAND",
    "DISTRIBUTOR", "USER", "SUPPLIER", "CUSTOM",
]  # fmt: skip
_ReceiverType = Literal["MERCHANT_ID", "PERSONAL_OPENID"]


class _AddReceiverBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    appid: str = Field(min_length=1, max_length=32)
    type: _ReceiverType
    account: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, min_length=1, max_length=1024)
    relation_type: _RelationType
    custom_relation: str | None = Field(default=None, min_length=1, max_length=10)


class _SplitReceiverBody(BaseModel):
    type: _ReceiverType
    account: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, min_length=1, max_length=1024)
    amount: StrictInt = Field(ge=1)
    description: str = Field(min_length=1, max_length=80)


class _SplitBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    appid: str | None = Field(default=None, min_length=1, max_length=32)
    transaction_id: str = Field(min_length=1, max_length=32)
    out_order_no: str = Field(pattern=r"^[0-9A-Za-z_\-|*@]{1,64}$")
    receivers: list[_SplitReceiverBody] = Field(min_length=1, max_length=50)
    unfreeze_unsplit: StrictBool


@dataclass
class SandboxSplit:
    """One 分账 order: a split of a paid order to registered receivers."""

    out_order_no: str
    order_id: str
    order: SandboxOrder
    receivers: list[dict[str, Any]]
    """Wire receiver details (``type account amount description result detail_id …``)."""
    unfreeze_unsplit: bool
    unfrozen_amount: int
    """What ``unfreeze_unsplit`` releases to the merchant itself."""
    script: RefundScript
    created_at: dt.datetime
    state: str = "PROCESSING"
    request: tuple[Any, ...] = ()


_Body = TypeVar("_Body", bound=BaseModel)


# ---------------------------------------------------------------- payment codes: models
class _CodepayPayer(BaseModel):
    auth_code: str = Field(min_length=1, max_length=128)


class _StoreInfo(BaseModel):
    id: str | None = Field(default=None, max_length=32)
    out_id: str | None = Field(default=None, max_length=32)


class _CodepayScene(BaseModel):
    device_id: str | None = Field(default=None, max_length=32)
    device_ip: str | None = Field(default=None, max_length=45)
    store_info: _StoreInfo


class _CodepayBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    appid: str = Field(min_length=1, max_length=32)
    mchid: str = Field(min_length=1, max_length=32)
    description: str = Field(min_length=1, max_length=127)
    out_trade_no: str = Field(pattern=r"^[A-Za-z0-9_\-|*]{6,32}$")
    attach: str | None = Field(default=None, max_length=128)
    payer: _CodepayPayer
    amount: _Amount
    scene_info: _CodepayScene
    settle_info: _SettleInfo | None = None


class _ReverseBody(BaseModel):
    appid: str = Field(min_length=1, max_length=32)
    mchid: str = Field(min_length=1, max_length=32)


@dataclass
class SandboxMerchant:
    mchid: str
    appid: str
    serial_no: str
    public_key: rsa.RSAPublicKey
    apiv3_key: str
    mini_appids: set[str] = field(default_factory=set)
    """Mini-programs bound to the merchant besides ``appid`` (:meth:`Sandbox.bind_mini_appid`)."""


class _WechatCore(SandboxCore):
    """WeChat notifies successful payments only, and signs every delivery afresh (a retry hours
    later carries a current timestamp, or no receiver's freshness check would accept it)."""

    resign: Callable[[bytes], dict[str, str]] | None = None
    refund_fail_status: str = "ABNORMAL"

    async def _post(
        self, subject: SandboxOrder | SandboxRefund, headers: dict[str, str], body: bytes
    ) -> bool:
        if self.resign is not None:
            headers = {**headers, **self.resign(body)}
        return await super()._post(subject, headers, body)

    async def notify(self, order: SandboxOrder) -> None:
        if order.status is OrderStatus.succeeded:
            await super().notify(order)

    async def _deliver_once_then_retry(self, order: SandboxOrder) -> None:
        if order.status is OrderStatus.succeeded:
            await super()._deliver_once_then_retry(order)

    def finish_refund(self, refund: SandboxRefund, *, succeeded: bool) -> bool:
        # Fix the wire status at the moment the refund fails: CLOSED or ABNORMAL.
        if not super().finish_refund(refund, succeeded=succeeded):
            return False
        refund.extra["wire_status"] = "SUCCESS" if succeeded else self.refund_fail_status
        return True

    async def notify_refund(self, refund: SandboxRefund) -> None:
        # WeChat notifies a refund's final result only.
        if refund.status is not RefundStatus.pending:
            await super().notify_refund(refund)


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
        self.partners = PartnerDesk(self)
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

    # ------------------------------------------------------------ refund views
    @staticmethod
    def _refund_status(refund: SandboxRefund) -> str:
        if refund.status is RefundStatus.pending:
            return "PROCESSING"
        if refund.status is RefundStatus.succeeded:
            return "SUCCESS"
        return str(refund.extra.get("wire_status", "ABNORMAL"))

    def refund_object(self, refund: SandboxRefund) -> dict[str, Any]:
        """The refund as WeChat's refund object (create and query answers)."""
        order, status = refund.order, self._refund_status(refund)
        data: dict[str, Any] = {
            "refund_id": refund.refund_no,
            "out_refund_no": refund.out_refund_no,
            "transaction_id": order.channel_trade_no,
            "out_trade_no": order.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": protocol.rfc3339(refund.created_at),
            "status": status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": order.amount,
                "refund": refund.amount,
                "from": [],
                "payer_total": order.amount,
                "payer_refund": refund.amount,
                "settlement_refund": refund.amount,
                "settlement_total": order.amount,
                "discount_refund": 0,
                "currency": order.currency,
            },
            "promotion_detail": [],
        }
        if status == "SUCCESS" and refund.finished_at is not None:
            data["success_time"] = protocol.rfc3339(refund.finished_at)
        return data

    def refund_resource(self, refund: SandboxRefund) -> dict[str, Any]:
        """The decrypted resource of a ``REFUND.*`` notification."""
        order, status = refund.order, self._refund_status(refund)
        data: dict[str, Any] = {
            "mchid": order.merchant_id,
            "out_trade_no": order.out_trade_no,
            "transaction_id": order.channel_trade_no,
            "out_refund_no": refund.out_refund_no,
            "refund_id": refund.refund_no,
            "refund_status": status,
            "user_received_account": "支付用户零钱",
            "amount": {
                "total": order.amount,
                "refund": refund.amount,
                "payer_total": order.amount,
                "payer_refund": refund.amount,
            },
        }
        if status == "SUCCESS" and refund.finished_at is not None:
            data["success_time"] = protocol.rfc3339(refund.finished_at)
        return data

    def build_refund_notification(self, refund: SandboxRefund) -> tuple[dict[str, str], bytes]:
        """The signed, encrypted ``REFUND.{SUCCESS,CLOSED,ABNORMAL}`` notification."""
        status = self._refund_status(refund)
        event_type = f"REFUND.{status}"
        assert event_type in protocol.REFUND_EVENTS, "only final refunds are notified"
        if refund.order.extra.get("sp_mchid"):  # a sub-merchant's order: partner mode
            return self.partners.build_refund_notification(refund)
        merchant = self.merchants[refund.order.merchant_id]
        resource = protocol.encrypt_resource(
            merchant.apiv3_key,
            protocol.encode_json(self.refund_resource(refund)),
            original_type=protocol.REFUND_RESOURCE_TYPE,
            associated_data=protocol.REFUND_RESOURCE_TYPE,
        )
        event_id = uuid.uuid5(
            uuid.NAMESPACE_URL, f"wechatpay:{merchant.mchid}:{refund.refund_no}:{event_type}"
        )
        return self._signed_event(str(event_id), event_type, protocol.REFUND_STATE_DESC[status],
                                  resource)  # fmt: skip

    def _signed_event(
        self, event_id: str, event_type: str, summary: str, resource: dict[str, str]
    ) -> tuple[dict[str, str], bytes]:
        envelope = {
            "id": event_id,
            "create_time": protocol.rfc3339(clock.now()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": resource,
        }
        body = protocol.encode_json(envelope)
        headers = self.sign(body)
        headers["Content-Type"] = "application/json"
        return headers, body

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

    # ------------------------------------------------------------ refund endpoints
    def _paid_order(self, merchant: SandboxMerchant, body: _RefundBody) -> SandboxOrder:
        """The order a refund names by ``out_trade_no`` or ``transaction_id``."""
        order: SandboxOrder | None = None
        if body.transaction_id is not None:
            order = next(
                (o for o in self.core.orders.values()
                 if o.merchant_id == merchant.mchid and o.channel_trade_no == body.transaction_id
                 and o.status in (OrderStatus.succeeded, OrderStatus.failed)),
                None,
            )  # fmt: skip
        elif body.out_trade_no is not None:
            order = self.core.get_order(merchant.mchid, body.out_trade_no)
        else:
            raise WxError(400, "PARAM_ERROR", "transaction_id和out_trade_no必须填写一个")
        if order is None:
            raise WxError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        return order

    def refundable(self, order: SandboxOrder) -> int:
        """What of a paid order the merchant can still refund: money split away is gone
        (WeChat wants it returned from the receivers first)."""
        return self.core.refundable(order) - self._split_away(order)

    async def _refund(self, request: Request) -> Response:
        raw = await request.body()
        merchant = self._authenticate(request, raw)
        body = self._parse(_RefundBody, raw)
        sub_mchid = (body.model_extra or {}).get("sub_mchid")  # partner mode: a sub-merchant's
        merchant = self.partners.refund_merchant(merchant, sub_mchid)
        if body.amount.currency != "CNY":
            raise WxError(400, "PARAM_ERROR", "不支持的货币类型")
        if body.notify_url is not None:
            notify = urlsplit(body.notify_url)
            if notify.scheme not in ("http", "https") or not notify.netloc or notify.query:
                raise WxError(400, "PARAM_ERROR", "notify_url格式错误")
        order = self._paid_order(merchant, body)
        existing = self.core.get_refund(merchant.mchid, body.out_refund_no)
        if existing is not None:
            # Same number, same request: the same refund; WeChat refunds once per number.
            if existing.order is not order or (existing.amount, order.amount) != (
                body.amount.refund, body.amount.total,
            ):  # fmt: skip
                raise WxError(400, "INVALID_REQUEST", "商户退款单号对应的退款参数与原请求不一致")
            return self._respond(200, self.refund_object(existing))
        if order.status is not OrderStatus.succeeded:
            raise WxError(400, "INVALID_REQUEST", "订单未支付，不能发起退款")
        if body.amount.total != order.amount:
            raise WxError(400, "PARAM_ERROR", "订单金额total与原订单实际支付金额不符")
        if body.amount.refund > self.refundable(order):
            raise WxError(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        script = self.core.take_refund_script(order.subject)
        if script.outcome is RefundOutcome.refuse:
            raise WxError(403, "NOT_ENOUGH", "基本账户余额不足，请充值后重新发起")
        if script.outcome is RefundOutcome.create_error:
            raise WxError(500, "SYSTEM_ERROR", "系统超时，请使用相同参数稍后重新调用")
        refund = SandboxRefund(
            out_refund_no=body.out_refund_no,
            refund_no="50" + _random(string.digits, 27),
            order=order,
            amount=body.amount.refund,
            reason=body.reason,
            notify_url=body.notify_url,
            script=script,
            created_at=clock.now(),
        )
        self.core.add_refund(refund)
        await self.core.after_refund(refund)
        return self._respond(200, self.refund_object(refund))

    async def _query_refund(self, request: Request, out_refund_no: str) -> Response:
        merchant = self._authenticate(request, await request.body())
        merchant = self.partners.refund_merchant(merchant, request.query_params.get("sub_mchid"))
        refund = self.core.get_refund(merchant.mchid, out_refund_no)
        if refund is None:
            raise WxError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return self._respond(200, self.refund_object(refund))

    # ------------------------------------------------------------ transfers (商家转账)
    def add_transfer_script(self, script: RefundScript) -> None:
        """Queue an outcome for the next transfer whose remark matches ``script.subject``:
        ``succeed`` (the payee accepts at once), ``delayed`` (WAIT_USER_CONFIRM, accepted after
        ``delay``), ``fail`` (WAIT_USER_CONFIRM, FAIL after ``delay``), ``refuse`` (403
        NOT_ENOUGH), ``create_timeout`` (made and accepted, answer held), ``create_error``
        (500, nothing made)."""
        self.transfer_scripts.append(script)

    def _take_transfer_script(self, remark: str) -> RefundScript:
        return sandbox_kit.take_matching(self.transfer_scripts, remark, RefundScript)

    def transfer_bill(self, transfer: SandboxTransfer) -> dict[str, Any]:
        """The bill as the query answer shows it (``mch_id``, as WeChat's document spells it)."""
        data: dict[str, Any] = {
            "mch_id": transfer.merchant_id,
            "out_bill_no": transfer.out_bill_no,
            "transfer_bill_no": transfer.transfer_bill_no,
            "appid": transfer.appid,
            "state": transfer.state,
            "transfer_amount": transfer.amount,
            "transfer_remark": transfer.remark,
            "openid": transfer.openid,
            "create_time": protocol.rfc3339(transfer.created_at),
            "update_time": protocol.rfc3339(transfer.updated_at),
        }
        if transfer.fail_reason:
            data["fail_reason"] = transfer.fail_reason
        return data

    @staticmethod
    def _transfer_answer(transfer: SandboxTransfer) -> dict[str, Any]:
        data: dict[str, Any] = {
            "out_bill_no": transfer.out_bill_no,
            "transfer_bill_no": transfer.transfer_bill_no,
            "create_time": protocol.rfc3339(transfer.created_at),
            "state": transfer.state,
        }
        if transfer.state == "WAIT_USER_CONFIRM":
            data["package_info"] = transfer.package_info
        if transfer.fail_reason:
            data["fail_reason"] = transfer.fail_reason
        return data

    def transfer_resource(self, transfer: SandboxTransfer) -> dict[str, Any]:
        """The decrypted resource of ``MCHTRANSFER.BILL.FINISHED``."""
        data: dict[str, Any] = {
            "mchid": transfer.merchant_id,
            "out_bill_no": transfer.out_bill_no,
            "transfer_bill_no": transfer.transfer_bill_no,
            "state": transfer.state,
            "transfer_amount": transfer.amount,
            "openid": transfer.openid,
            "create_time": protocol.rfc3339(transfer.created_at),
            "update_time": protocol.rfc3339(transfer.updated_at),
        }
        if transfer.fail_reason:
            data["fail_reason"] = transfer.fail_reason
        return data

    def build_transfer_notification(
        self, transfer: SandboxTransfer
    ) -> tuple[dict[str, str], bytes]:
        merchant = self.merchants[transfer.merchant_id]
        resource = protocol.encrypt_resource(
            merchant.apiv3_key,
            protocol.encode_json(self.transfer_resource(transfer)),
            original_type=protocol.TRANSFER_RESOURCE_TYPE,
            associated_data=protocol.TRANSFER_RESOURCE_TYPE,
        )
        event_id = uuid.uuid5(
            uuid.NAMESPACE_URL,
            f"wechatpay:{merchant.mchid}:{transfer.transfer_bill_no}:{protocol.TRANSFER_EVENT}",
        )
        return self._signed_event(
            str(event_id), protocol.TRANSFER_EVENT, "商家转账单据终态通知", resource
        )

    def finish_transfer(self, transfer: SandboxTransfer, *, succeeded: bool) -> bool:
        """Move a bill awaiting the payee to SUCCESS or FAIL and notify. False if already final."""
        if transfer.state in protocol.TRANSFER_FINAL_STATES:
            return False
        transfer.state = "SUCCESS" if succeeded else "FAIL"
        transfer.fail_reason = None if succeeded else self.transfer_fail_reason
        transfer.updated_at = clock.now()
        self.core.spawn(self._notify_transfer(transfer))
        return True

    async def _post_transfer(self, transfer: SandboxTransfer, body: bytes) -> bool:
        core = self.core
        if not transfer.notify_url or core.http is None:
            return False
        # Signed afresh per delivery, like every WeChat notification.
        headers = {"Content-Type": "application/json", **self.sign(body)}
        try:
            response = await core.http.post(transfer.notify_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            core.deliveries.append({"out_bill_no": transfer.out_bill_no, "error": repr(exc)})
            return False
        transfer.notifications_sent += 1
        ok = core.is_ack(response)
        core.deliveries.append(
            {"out_bill_no": transfer.out_bill_no, "status": response.status_code, "acked": ok}
        )
        return ok

    async def _notify_transfer(self, transfer: SandboxTransfer) -> None:
        """Deliver ``MCHTRANSFER.BILL.FINISHED`` per the bill's script, retrying until acked."""
        mode = transfer.script.notify
        if mode is NotifyMode.none or transfer.state not in protocol.TRANSFER_FINAL_STATES:
            return
        if mode is NotifyMode.delayed:
            await asyncio.sleep(transfer.script.delay * self.core.time_scale)
        _, body = self.build_transfer_notification(transfer)
        copies = 2 if mode is NotifyMode.duplicate else 1
        results = await asyncio.gather(
            *(self._post_transfer(transfer, body) for _ in range(copies))
        )
        if any(results):
            return
        for wait in self.core.retry_schedule:
            await asyncio.sleep(wait * self.core.time_scale)
            if await self._post_transfer(transfer, body):
                return

    def _sensitive(self, request: Request, ciphertext: str | None) -> str | None:
        """Decrypt a sensitive field sent under ``Wechatpay-Serial`` (our platform key)."""
        if ciphertext is None:
            return None
        if request.headers.get(protocol.HEADER_SERIAL) != self.platform_public_key_id:
            raise WxError(400, "PARAM_ERROR", "Wechatpay-Serial与加密敏感信息所用的公钥不匹配")
        try:
            return protocol.decrypt_sensitive(self._platform_key, ciphertext)
        except protocol.ProtocolError as exc:
            raise WxError(400, "PARAM_ERROR", "敏感信息解密失败，请使用微信支付公钥加密") from exc

    async def _transfer(self, request: Request) -> Response:
        raw = await request.body()
        merchant = self._authenticate(request, raw)
        body = self._parse(_TransferBody, raw)
        if body.appid != merchant.appid:
            raise WxError(400, "INVALID_REQUEST", "appid与商户号不匹配")
        if body.notify_url is not None:
            notify = urlsplit(body.notify_url)
            if notify.scheme not in ("http", "https") or not notify.netloc or notify.query:
                raise WxError(400, "PARAM_ERROR", "notify_url格式错误")
        user_name = self._sensitive(request, body.user_name)
        if body.transfer_amount >= 200_000 and user_name is None:
            raise WxError(400, "PARAM_ERROR", "转账金额>=2000元时，收款用户姓名必填")
        existing = self.transfers.get((merchant.mchid, body.out_bill_no))
        if existing is not None:
            # Same number, same bill: WeChat pays once per out_bill_no.
            if (existing.openid, existing.amount, existing.remark, existing.scene_id) != (
                body.openid, body.transfer_amount, body.transfer_remark, body.transfer_scene_id,
            ):  # fmt: skip
                raise WxError(400, "INVALID_REQUEST", "商户单号重复，请核实转账参数")
            return self._respond(200, self._transfer_answer(existing))
        script = self._take_transfer_script(body.transfer_remark)
        if script.outcome is RefundOutcome.refuse:
            raise WxError(403, "NOT_ENOUGH", "商户运营账户资金不足，充值后可以原单号发起重试，"
                          "请勿更换商户单号")  # fmt: skip
        if script.outcome is RefundOutcome.create_error:
            raise WxError(500, "SYSTEM_ERROR", "系统繁忙，请使用原单号重试")
        now = clock.now()
        transfer = SandboxTransfer(
            out_bill_no=body.out_bill_no,
            transfer_bill_no="1330" + _random(string.digits, 30),
            merchant_id=merchant.mchid,
            appid=body.appid,
            openid=body.openid,
            amount=body.transfer_amount,
            remark=body.transfer_remark,
            scene_id=body.transfer_scene_id,
            user_name=user_name,
            notify_url=body.notify_url,
            script=script,
            created_at=now,
            updated_at=now,
            state="WAIT_USER_CONFIRM",
            package_info=base64.b64encode(secrets.token_bytes(72)).decode(),
            extra={"report_infos": [i.model_dump() for i in body.transfer_scene_report_infos],
                   "user_recv_perception": body.user_recv_perception},
        )  # fmt: skip
        self.transfers[(merchant.mchid, body.out_bill_no)] = transfer
        await self.core.play(script, lambda ok: self.finish_transfer(transfer, succeeded=ok))
        return self._respond(200, self._transfer_answer(transfer))

    async def _query_transfer(self, request: Request, out_bill_no: str) -> Response:
        merchant = self._authenticate(request, await request.body())
        transfer = self.transfers.get((merchant.mchid, out_bill_no))
        if transfer is None:
            raise WxError(404, "NOT_FOUND", "记录不存在")
        return self._respond(200, self.transfer_bill(transfer))

    def _find_transfer(self, out_bill_no: str) -> SandboxTransfer:
        for (_, no), transfer in self.transfers.items():
            if no == out_bill_no:
                return transfer
        raise HTTPException(404, "no such transfer")

    def _control_router(self) -> APIRouter:
        """Control API for transfers and splits (next to sandbox_kit's ``/_sandbox`` routes)."""
        router = APIRouter(prefix="/_sandbox")

        @router.post("/transfer_scripts")
        async def add_transfer_script(script: RefundScript) -> dict[str, Any]:
            """Control API: queue a scripted outcome for the next matching transfer."""
            self.add_transfer_script(script)
            return {"queued": len(self.transfer_scripts)}

        @router.post("/split_scripts")
        async def add_split_script(script: RefundScript) -> dict[str, Any]:
            """Control API: queue a scripted outcome for the next matching split."""
            self.add_split_script(script)
            return {"queued": len(self.split_scripts)}

        @router.delete("/transfer_scripts")
        async def clear_transfer_scripts() -> dict[str, Any]:
            self.transfer_scripts.clear()
            return {"queued": 0}

        @router.delete("/split_scripts")
        async def clear_split_scripts() -> dict[str, Any]:
            self.split_scripts.clear()
            return {"queued": 0}

        @router.get("/transfers/{out_bill_no}")
        async def show_transfer(out_bill_no: str) -> dict[str, Any]:
            transfer = self._find_transfer(out_bill_no)
            return {**self.transfer_bill(transfer), "user_name": transfer.user_name,
                    "notifications_sent": transfer.notifications_sent}  # fmt: skip

        @router.post("/transfers/{out_bill_no}/confirm")
        async def confirm(out_bill_no: str, body: _Confirm) -> dict[str, Any]:
            """Control API: the payee accepts (``confirm``) or declines a bill in WeChat."""
            transfer = self._find_transfer(out_bill_no)
            changed = self.finish_transfer(transfer, succeeded=body.result == "confirm")
            return {"out_bill_no": out_bill_no, "state": transfer.state, "changed": changed}

        return router

    # ------------------------------------------------------------ profit sharing (分账)
    def add_split_script(self, script: RefundScript) -> None:
        """Queue an outcome for the next split of an order whose subject matches:
        ``succeed`` (FINISHED, every receiver SUCCESS), ``delayed`` (PROCESSING, then SUCCESS
        after ``delay``), ``fail`` (PROCESSING, then every receiver CLOSED), ``refuse`` (403
        NOT_ENOUGH), ``create_timeout`` (made, answer held), ``create_error`` (500)."""
        self.split_scripts.append(script)

    def _take_split_script(self, subject: str) -> RefundScript:
        return sandbox_kit.take_matching(self.split_scripts, subject, RefundScript)

    def _split_away(self, order: SandboxOrder) -> int:
        """What splits of an order took or will take (every receiver not CLOSED)."""
        return sum(
            r["amount"] for split in self.splits.values() if split.order is order
            for r in split.receivers if r["result"] != "CLOSED"
        )  # fmt: skip

    def split_answer(self, split: SandboxSplit) -> dict[str, Any]:
        """The split order as the create and query answers show it."""
        receivers = list(split.receivers)
        if split.state == "FINISHED" and split.unfreeze_unsplit and split.unfrozen_amount > 0:
            # What unfreeze_unsplit released shows as a detail paid to the merchant itself.
            receivers.append({
                "amount": split.unfrozen_amount, "description": "解冻给分账方",
                "type": "MERCHANT_ID", "account": split.order.merchant_id, "result": "SUCCESS",
                "detail_id": split.order_id + "U",
                "create_time": protocol.rfc3339(split.created_at),
                "finish_time": protocol.rfc3339(split.created_at),
            })  # fmt: skip
        return {
            "transaction_id": split.order.channel_trade_no,
            "out_order_no": split.out_order_no,
            "order_id": split.order_id,
            "state": split.state,
            "receivers": receivers,
        }

    def finish_split(self, split: SandboxSplit, *, succeeded: bool) -> bool:
        """Settle every PENDING receiver (SUCCESS, or CLOSED with ACCOUNT_ABNORMAL)."""
        if split.state == "FINISHED":
            return False
        finished = protocol.rfc3339(clock.now())
        for receiver in split.receivers:
            if receiver["result"] == "PENDING":
                receiver["result"] = "SUCCESS" if succeeded else "CLOSED"
                receiver["finish_time"] = finished
                if not succeeded:
                    receiver["fail_reason"] = "ACCOUNT_ABNORMAL"
        split.state = "FINISHED"
        return True

    async def _add_receiver(self, request: Request) -> Response:
        raw = await request.body()
        merchant = self._authenticate(request, raw)
        body = self._parse(_AddReceiverBody, raw)
        if body.appid != merchant.appid:
            raise WxError(400, "INVALID_REQUEST", "appid与商户号不匹配")
        if body.type == "MERCHANT_ID" and body.name is None:
            raise WxError(400, "PARAM_ERROR", "分账接收方类型为MERCHANT_ID时，name必填")
        if body.relation_type == "CUSTOM" and body.custom_relation is None:
            raise WxError(400, "PARAM_ERROR", "relation_type为CUSTOM时，custom_relation必填")
        name = self._sensitive(request, body.name)
        # Adding a receiver again updates it: the call is idempotent.
        self.split_receivers[(merchant.mchid, body.type, body.account)] = {
            "name": name, "relation_type": body.relation_type,
            "custom_relation": body.custom_relation,
        }  # fmt: skip
        answer: dict[str, Any] = {
            "type": body.type,
            "account": body.account,
            "relation_type": body.relation_type,
        }
        if name is not None:
            # Sensitive answer fields come back encrypted for the merchant's own key.
            answer["name"] = protocol.encrypt_sensitive(merchant.public_key, name)
        if body.custom_relation is not None:
            answer["custom_relation"] = body.custom_relation
        return self._respond(200, answer)

    def _split_order(self, merchant: SandboxMerchant, transaction_id: str) -> SandboxOrder:
        order = next(
            (o for o in self.core.orders.values()
             if o.merchant_id == merchant.mchid and o.channel_trade_no == transaction_id
             and o.status in (OrderStatus.succeeded, OrderStatus.failed)),
            None,
        )  # fmt: skip
        if order is None:
            raise WxError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        return order

    async def _split(self, request: Request) -> Response:
        raw = await request.body()
        merchant = self._authenticate(request, raw)
        body = self._parse(_SplitBody, raw)
        personal = any(r.type == "PERSONAL_OPENID" for r in body.receivers)
        if (personal and body.appid is None) or body.appid not in (None, merchant.appid):
            raise WxError(400, "PARAM_ERROR", "appid有误：含个人接收方时须传入与商户号绑定的appid")
        order = self._split_order(merchant, body.transaction_id)
        wanted = (
            body.transaction_id,
            tuple((r.type, r.account, r.amount) for r in body.receivers),
            body.unfreeze_unsplit,
        )
        existing = self.splits.get((merchant.mchid, body.out_order_no))
        if existing is not None:
            # The same out_order_no is the same split.
            if existing.request != wanted:
                raise WxError(400, "INVALID_REQUEST", "商户分账单号重复，与原分账请求参数不一致")
            return self._respond(200, self.split_answer(existing))
        if not order.extra.get("profit_sharing"):
            raise WxError(400, "INVALID_REQUEST", "非分账订单不支持分账")
        if order.status is not OrderStatus.succeeded:
            raise WxError(400, "INVALID_REQUEST", "订单未支付成功，不能分账")
        for receiver in body.receivers:
            known = self.split_receivers.get((merchant.mchid, receiver.type, receiver.account))
            if known is None:
                raise WxError(400, "PARAM_ERROR",
                              "分账接收方关系不存在，请检查参数中每个接收方的关系")  # fmt: skip
            if receiver.name is not None:
                if receiver.type != "PERSONAL_OPENID":
                    raise WxError(400, "PARAM_ERROR", "仅个人接收方可传入name")
                name = self._sensitive(request, receiver.name)
                if known["name"] is not None and name != known["name"]:
                    raise WxError(400, "PARAM_ERROR", "分账接收方姓名校验失败")
        total = sum(r.amount for r in body.receivers)
        taken = self._split_away(order)
        if order.extra.get("unfrozen") or total > self.refundable(order):
            raise WxError(403, "NOT_ENOUGH", "分账金额不足")
        if taken + total > int(order.amount * self.max_split_ratio):
            raise WxError(403, "RULE_LIMIT", "分账金额超出最大分账比例")
        script = self._take_split_script(order.subject)
        if script.outcome is RefundOutcome.refuse:
            raise WxError(403, "NOT_ENOUGH", "分账金额不足")
        if script.outcome is RefundOutcome.create_error:
            raise WxError(500, "SYSTEM_ERROR", "系统错误，请使用相同参数稍后重新调用")
        now = clock.now()
        order_id = "3008" + _random(string.digits, 24)
        split = SandboxSplit(
            out_order_no=body.out_order_no,
            order_id=order_id,
            order=order,
            receivers=[
                {"amount": r.amount, "description": r.description, "type": r.type,
                 "account": r.account, "result": "PENDING",
                 "detail_id": f"{order_id}{i:02d}", "create_time": protocol.rfc3339(now)}
                for i, r in enumerate(body.receivers)
            ],
            unfreeze_unsplit=body.unfreeze_unsplit,
            unfrozen_amount=self.refundable(order) - total if body.unfreeze_unsplit else 0,
            script=script,
            created_at=now,
            request=wanted,
        )  # fmt: skip
        self.splits[(merchant.mchid, body.out_order_no)] = split
        if body.unfreeze_unsplit:
            order.extra["unfrozen"] = True
        await self.core.play(script, lambda ok: self.finish_split(split, succeeded=ok))
        return self._respond(200, self.split_answer(split))

    async def _query_split(self, request: Request, out_order_no: str) -> Response:
        merchant = self._authenticate(request, await request.body())
        transaction_id = request.query_params.get("transaction_id")
        if not transaction_id:
            raise WxError(400, "PARAM_ERROR", "缺少参数transaction_id")
        split = self.splits.get((merchant.mchid, out_order_no))
        if split is None or split.order.channel_trade_no != transaction_id:
            raise WxError(404, "RESOURCE_NOT_EXISTS", "记录不存在")
        return self._respond(200, self.split_answer(split))

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
        return app

    # ------------------------------------------------------------ payment codes (付款码支付)
    def add_barcode_script(self, script: BarcodeScript) -> None:
        """Queue the outcome of the next code charge whose description matches."""
        self.barcode_scripts.append(script)

    def _take_barcode_script(self, subject: str) -> BarcodeScript:
        return sandbox_kit.take_matching(self.barcode_scripts, subject, BarcodeScript)

    def codepay_transaction(self, order: SandboxOrder) -> dict[str, Any]:
        """A code order as the codepay answer and queries show it: USERPAYING while the
        customer has not confirmed, REVOKED once reversed (whether or not it had been paid)."""
        if order.extra.get("reversed"):
            trade_state = "REVOKED"
        elif order.status is OrderStatus.pending:
            trade_state = "USERPAYING"
        else:
            trade_state = _WIRE_STATE[order.status]
        data: dict[str, Any] = {
            "appid": order.extra["appid"],
            "mchid": order.merchant_id,
            "out_trade_no": order.out_trade_no,
            "trade_state": trade_state,
            "trade_state_desc": protocol.TRADE_STATE_DESC[trade_state],
            "amount": {"total": order.amount, "currency": order.currency,
                       "payer_currency": order.currency},
        }  # fmt: skip
        if trade_state != "USERPAYING":
            data["transaction_id"] = order.channel_trade_no
            data["trade_type"] = protocol.CODEPAY_TRADE_TYPE
            data["bank_type"] = "OTHERS"
            data["payer"] = {"openid": order.extra["openid"]}
        if order.paid_at is not None and order.status is OrderStatus.succeeded:
            data["success_time"] = protocol.rfc3339(order.paid_at)
            data["amount"]["payer_total"] = order.amount
        return data

    async def _codepay(self, request: Request) -> Response:
        raw = await request.body()
        merchant = self._authenticate(request, raw)
        body = self._parse(_CodepayBody, raw)
        if body.mchid != merchant.mchid:
            raise WxError(400, "PARAM_ERROR", "mchid与请求的商户号不一致")
        if body.appid != merchant.appid:
            raise WxError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        if body.amount.currency != "CNY":
            raise WxError(400, "PARAM_ERROR", "不支持的货币类型")
        existing = self.core.get_order(merchant.mchid, body.out_trade_no)
        if existing is not None:
            return self._codepay_replay(existing, body)
        script = self._take_barcode_script(body.description)
        if not protocol.is_payment_code(body.payer.auth_code) or (
            script.outcome is BarcodeOutcome.invalid_code
        ):
            raise WxError(400, "PARAM_ERROR", "付款码无效或已过期，请刷新付款码后重新扫码")
        if script.outcome is BarcodeOutcome.insufficient_balance:
            raise WxError(403, "NOT_ENOUGH", "用户账户余额不足")
        if script.outcome is BarcodeOutcome.create_error:
            raise WxError(500, "SYSTEM_ERROR", "系统错误")
        order = self._code_order(merchant, body)
        outcome = script.outcome
        if outcome in (BarcodeOutcome.paid, BarcodeOutcome.create_timeout):
            self.core.settle(order, paid=True)
        elif outcome in (BarcodeOutcome.password_paid, BarcodeOutcome.password_declined):
            paid = outcome is BarcodeOutcome.password_paid
            self.core.spawn(self._confirm_later(order, script.delay, paid=paid))
        if outcome is BarcodeOutcome.create_timeout:
            await asyncio.sleep(self.core.hold_timeout_seconds)
        return self._codepay_respond(order)

    def _code_order(self, merchant: SandboxMerchant, body: _CodepayBody) -> SandboxOrder:
        now = clock.now()
        order = SandboxOrder(
            out_trade_no=body.out_trade_no,
            channel_trade_no="4200" + _random(string.digits, 24),
            merchant_id=merchant.mchid, amount=body.amount.total, currency=body.amount.currency,
            subject=body.description, notify_url=None, method=protocol.CODEPAY_KIND,
            script=sandbox_kit.Script(), created_at=now,
            extra={"appid": body.appid, "attach": body.attach,
                   "openid": "o" + _random(_ALNUM, 27),
                   "auth_code_tail": body.payer.auth_code[-4:],
                   "profit_sharing": bool(body.settle_info and body.settle_info.profit_sharing)},
        )  # fmt: skip
        return self.core.add_order(order)

    def _codepay_respond(self, order: SandboxOrder) -> Response:
        """SUCCESS → 200 with the transaction; still waiting for the customer → 202 with only
        ``trade_state`` (what WeChat answers while the password prompt is open)."""
        if order.status is OrderStatus.pending and not order.extra.get("reversed"):
            return self._respond(202, {"trade_state": "USERPAYING"})
        if order.status is OrderStatus.failed:
            raise WxError(403, "TRADE_ERROR", "支付失败，请撤销订单")
        return self._respond(200, self.codepay_transaction(order))

    def _codepay_replay(self, order: SandboxOrder, body: _CodepayBody) -> Response:
        """The same out_trade_no again: the same charge, never a second one."""
        if order.amount != body.amount.total:
            raise WxError(400, "INVALID_REQUEST", "商户订单号重复，与原订单参数不一致")
        if order.extra.get("reversed") or order.status is OrderStatus.closed:
            raise WxError(400, "ORDER_CLOSED", "订单已撤销")
        if order.status is OrderStatus.succeeded:
            raise WxError(400, "ORDER_PAID", "订单已支付")
        return self._codepay_respond(order)

    async def _confirm_later(self, order: SandboxOrder, delay: float, *, paid: bool) -> None:
        await asyncio.sleep(delay * self.core.time_scale)
        if not order.extra.get("reversed"):
            self.core.settle(order, paid=paid)

    async def _reverse(self, request: Request, out_trade_no: str) -> Response:
        """撤销: close an unpaid code order, refund a paid one; the order ends REVOKED."""
        raw = await request.body()
        merchant = self._authenticate(request, raw)
        body = self._parse(_ReverseBody, raw)
        if body.mchid != merchant.mchid or body.appid != merchant.appid:
            raise WxError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        order = self.core.get_order(merchant.mchid, out_trade_no)
        if order is None:
            raise WxError(404, "ORDER_NOT_EXIST", "订单不存在")
        if order.method != protocol.CODEPAY_KIND:
            raise WxError(400, "INVALID_REQUEST", "该订单不是付款码支付订单，不支持撤销")
        if not order.extra.get("reversed"):
            order.extra["reversed"] = True
            order.extra["refunded"] = order.status is OrderStatus.succeeded
            if order.status is OrderStatus.pending:
                self.core.close(order)
            order.closed_at = clock.now()
        answer = {"appid": merchant.appid, "mchid": merchant.mchid, "out_trade_no": out_trade_no}
        return self._respond(200, answer)

    def _barcode_router(self) -> APIRouter:
        router = APIRouter()

        @router.post(protocol.CODEPAY_PATH)
        async def codepay(request: Request) -> Response:
            return await self._codepay(request)

        @router.post("/v3/pay/transactions/out-trade-no/{out_trade_no}/reverse")
        async def reverse(request: Request, out_trade_no: str) -> Response:
            return await self._reverse(request, out_trade_no)

        @router.post("/_sandbox/barcode_scripts")
        async def add_barcode_script(script: BarcodeScript) -> dict[str, Any]:
            """Control API: queue the outcome of the next payment-code charge."""
            self.add_barcode_script(script)
            return {"queued": len(self.barcode_scripts)}

        @router.get("/_sandbox/barcode/{out_trade_no}")
        async def show_code_order(out_trade_no: str) -> dict[str, Any]:
            order = self.core.find(out_trade_no)
            if order is None or order.method != protocol.CODEPAY_KIND:
                raise HTTPException(404, "no such code order")
            return {**self.codepay_transaction(order),
                    "reversed": bool(order.extra.get("reversed")),
                    "refunded": bool(order.extra.get("refunded"))}  # fmt: skip

        return router

    # ------------------------------------------------------------ trade bills (交易账单)
    # ``GET /v3/bill/tradebill`` → a download URL valid 30 s and the SHA1 of the uncompressed
    # file; ``GET /v3/billdownload/file?token=…`` (signed by the same merchant) → the file,
    # unsigned, gzipped when ``tar_type=GZIP``. A day's bill holds the payments paid and the
    # refunds completed that day (China time) with the fee at :attr:`bill_fee_bps`; today's
    # is STATEMENT_CREATING, a day without any is NO_STATEMENT_EXIST (both 400).
    bill_fee_bps: int = 60
    """The merchants' fee rate in basis points (0.60 %, WeChat's common rate)."""
    bill_url_seconds: float = 30.0
    _bill_downloads: dict[str, tuple[str, bytes, dt.datetime]] | None = None

    def bill_rows(self, mchid: str, day: dt.date, bill_type: str = "ALL") -> list[dict[str, str]]:
        """The rows of one merchant's trade bill for ``day`` (China time), in time order."""

        def on_day(moment: dt.datetime | None) -> bool:
            return moment is not None and moment.astimezone(bill.CHINA).date() == day

        rate = bill.rate_text(self.bill_fee_bps)
        rows: list[tuple[dt.datetime, dict[str, str]]] = []
        for order in self.core.orders.values():
            if order.merchant_id != mchid or order.status is not OrderStatus.succeeded \
                    or order.paid_at is None or not on_day(order.paid_at):  # fmt: skip
                continue
            amount = bill.yuan(order.amount)
            rows.append((order.paid_at, {
                **self._bill_order_fields(order, order.paid_at), "交易状态": bill.STATE_PAID,
                "应结订单金额": amount, "微信退款单号": "0", "商户退款单号": "0",
                "退款金额": "0.00",
                "手续费": bill.fee_text(bill.fee_of(order.amount, self.bill_fee_bps)),
                "费率": rate, "订单金额": amount, "申请退款金额": "0.00",
            }))  # fmt: skip
        for refund in self.core.refunds.values():
            done = refund.finished_at
            if refund.order.merchant_id != mchid or refund.status is not RefundStatus.succeeded \
                    or done is None or not on_day(done):  # fmt: skip
                continue
            rows.append((done, {
                **self._bill_order_fields(refund.order, done), "交易状态": bill.STATE_REFUND,
                "应结订单金额": "0.00", "微信退款单号": refund.refund_no,
                "商户退款单号": refund.out_refund_no, "退款金额": bill.yuan(refund.amount),
                "退款类型": "ORIGINAL", "退款状态": "SUCCESS",
                "手续费": bill.fee_text(-bill.fee_of(refund.amount, self.bill_fee_bps)),
                "费率": rate, "订单金额": "0.00", "申请退款金额": bill.yuan(refund.amount),
            }))  # fmt: skip
        rows.sort(key=lambda row: row[0])
        wanted = {"ALL": None, "SUCCESS": bill.STATE_PAID, "REFUND": bill.STATE_REFUND}[bill_type]
        return [row for _, row in rows if wanted is None or row["交易状态"] == wanted]

    @staticmethod
    def _bill_order_fields(order: SandboxOrder, when: dt.datetime) -> dict[str, str]:
        trade_type = (
            protocol.CODEPAY_TRADE_TYPE if order.method == protocol.CODEPAY_KIND
            else _TRADE_TYPES.get(order.method, "")
        )  # fmt: skip
        return {
            "交易时间": when.astimezone(bill.CHINA).strftime(bill.TIME_FORMAT),
            "公众账号ID": str(order.extra.get("appid", "")), "商户号": order.merchant_id,
            "特约商户号": str(order.extra.get("sub_mchid") or "0"), "设备号": "",
            "微信订单号": order.channel_trade_no, "商户订单号": order.out_trade_no,
            "用户标识": str(order.extra.get("openid", "")), "交易类型": trade_type,
            "付款银行": "OTHERS", "货币种类": order.currency, "代金券金额": "0.00",
            "充值券退款金额": "0.00", "商品名称": order.subject.replace(",", " "),
            "商户数据包": str(order.extra.get("attach") or "").replace(",", " "),
        }  # fmt: skip

    def trade_bill(self, mchid: str, day: dt.date, bill_type: str = "ALL") -> bytes:
        """The bill file (uncompressed) as WeChat would serve it."""
        return bill.render(self.bill_rows(mchid, day, bill_type))

    async def _tradebill(self, request: Request) -> Response:
        merchant = self._authenticate(request, b"")
        params = request.query_params
        try:
            day = dt.date.fromisoformat(params.get("bill_date", ""))
        except ValueError:
            raise WxError(400, "PARAM_ERROR", "bill_date 格式应为 yyyy-MM-DD") from None
        bill_type = params.get("bill_type", "ALL")
        if bill_type not in ("ALL", "SUCCESS", "REFUND"):
            raise WxError(400, "PARAM_ERROR", "bill_type 无效")
        tar_type = params.get("tar_type")
        if tar_type not in (None, bill.TAR_GZIP):
            raise WxError(400, "PARAM_ERROR", "tar_type 无效")
        today = clock.now().astimezone(bill.CHINA).date()
        if day >= today:
            raise WxError(400, "STATEMENT_CREATING", "账单生成中")
        if day < today - dt.timedelta(days=90):
            raise WxError(400, "INVALID_REQUEST", "仅支持三个月内的账单下载申请")
        rows = self.bill_rows(merchant.mchid, day, bill_type)
        if not rows:
            raise WxError(400, "NO_STATEMENT_EXIST", "账单文件不存在")
        data = bill.render(rows)
        payload = gzip.compress(data, mtime=0) if tar_type == bill.TAR_GZIP else data
        token = secrets.token_urlsafe(32)
        if self._bill_downloads is None:
            self._bill_downloads = {}
        expires = clock.now() + dt.timedelta(seconds=self.bill_url_seconds)
        self._bill_downloads[token] = (merchant.mchid, payload, expires)
        return self._respond(200, {
            "hash_type": bill.HASH_TYPE, "hash_value": bill.sha1_hex(data),
            "download_url": f"{self._base_url(request)}{bill.DOWNLOAD_PATH}?token={token}",
        })  # fmt: skip

    async def _bill_download(self, request: Request) -> Response:
        merchant = self._authenticate(request, b"")
        found = (self._bill_downloads or {}).get(request.query_params.get("token", ""))
        if found is None or clock.now() >= found[2]:
            raise WxError(400, "INVALID_REQUEST", "请重新申请账单获取下载地址")
        if found[0] != merchant.mchid:
            raise WxError(403, "NO_AUTH", "请求商户与申请账单的商户不一致")
        return Response(content=found[1], media_type="application/octet-stream")

    def _bill_router(self) -> APIRouter:
        router = APIRouter()

        @router.get(bill.BILL_PATH)
        async def tradebill(request: Request) -> Response:
            return await self._tradebill(request)

        @router.get(bill.DOWNLOAD_PATH)
        async def download(request: Request) -> Response:
            return await self._bill_download(request)

        return router

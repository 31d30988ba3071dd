"""WeChat Pay API v3 adapter (direct merchant, platform public-key mode).

Payments, refunds (``/v3/refund/domestic/refunds``), payouts and profit sharing.

Payouts use 商家转账 in its 2025 form, "user-confirmation mode":
``POST /v3/fund-app/mch-transfer/transfer-bills`` creates one bill per payout (``out_bill_no``,
``transfer_scene_id``, ``openid``, ``transfer_amount``, ``transfer_remark``, ``user_name``
encrypted with the platform public key, ``transfer_scene_report_infos``, ``notify_url``) and
``GET …/transfer-bills/out-bill-no/{out_bill_no}`` reads it back. The older batch API
(``/v3/transfer/batches``, 商家转账到零钱) is closed to merchants who did not use it before the
2025 switch and pays many people per batch with batch-level states; the bill API pays one person,
is idempotent per ``out_bill_no`` and is what WeChat documents and the official SDKs
(``wechatpayv3.mch_transfer_bills``) call today. A bill usually answers ``WAIT_USER_CONFIRM``:
the payee must accept it in WeChat; its ``package_info`` (kept in ``TransferState.raw``) is what
the platform's app hands to ``wx.requestMerchantTransfer``. Until then the payout is pending.
The final state arrives as ``MCHTRANSFER.BILL.FINISHED`` (a transfer :class:`Notification`
about our payout id) or by querying.

Profit sharing registers each receiver (``POST /v3/profitsharing/receivers/add``, idempotent),
then ``POST /v3/profitsharing/orders`` splits a paid order created with
``settle_info.profit_sharing``; ``GET /v3/profitsharing/orders/{out_order_no}?transaction_id=``
reads the result. Receiver names travel encrypted (RSAES-OAEP) under ``Wechatpay-Serial``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import quote, urlsplit

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
    ValidationError,
    field_validator,
)

from paymux.channels import base
from paymux.channels.base import (
    Ack,
    BusinessError,
    ChannelError,
    ChannelPaymentStatus,
    ChannelRefundStatus,
    ChannelSplitStatus,
    ChannelTransferStatus,
    CreatedPayment,
    CreatePayment,
    CreateRefund,
    CreateSplit,
    CreateTransfer,
    InvalidCredentials,
    InvalidNotification,
    NextAction,
    NextActionType,
    Notification,
    PayeeType,
    PaymentState,
    RefundState,
    RetryableError,
    RoutableDecline,
    SplitReceiver,
    SplitReceiverResult,
    SplitReceiverType,
    SplitState,
    TransferState,
    UnknownOutcome,
)
from paymux.channels.wechatpay import bill, protocol
from paymux.channels.wechatpay.partner import WechatPayPartnerCredentials

DEFAULT_GATEWAY = "https://api.mch.weixin.qq.com"
_DESCRIPTION_MAX = 127
_REFUND_REASON_MAX = 80
_REFUNDS_PATH = "/v3/refund/domestic/refunds"
_TRANSFER_BILLS_PATH = "/v3/fund-app/mch-transfer/transfer-bills"
_TRANSFER_REMARK_MAX = 32
#: Fen. From 2,000 yuan WeChat requires the payee's real name; below 0.30 yuan the official SDK
#: (like the older batch API, which refused it) never sends one.
_USER_NAME_REQUIRED_FROM = 200_000
_USER_NAME_ALLOWED_FROM = 30


_SPLIT_ORDERS_PATH = "/v3/profitsharing/orders"
_SPLIT_RECEIVERS_PATH = "/v3/profitsharing/receivers/add"
_SPLIT_DESCRIPTION_MAX = 80

#: How a receiver relates to the merchant (``relation_type`` of receivers/add); WeChat reviews it.
SplitRelation = Literal[
    "SERVICE_PROVIDER", "STORE", "STAFF", "STORE_OWNER", "PARTNER", "HEADQUARTER", "BRAND",
    "DISTRIBUTOR", "USER", "SUPPLIER",
]  # fmt: skip


class TransferReportInfo(BaseModel):
    """One ``transfer_scene_report_infos`` entry WeChat requires for the configured scene
    (e.g. scene 1000 现金营销: ``活动名称`` and ``奖励说明``). Without ``info_content`` the
    payout's remark is reported."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    info_type: str = Field(min_length=1, max_length=32)
    info_content: str | None = Field(default=None, min_length=1, max_length=32)


class WechatPayCredentials(BaseModel):
    """A WeChat Pay direct merchant in platform public-key mode."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    mchid: str = Field(min_length=1, max_length=32)
    appid: str = Field(min_length=1, max_length=32)
    merchant_serial_no: str = Field(min_length=1, max_length=64)
    merchant_private_key: str = Field(min_length=1)
    """PEM (PKCS#8 ``BEGIN PRIVATE KEY``, as in ``apiclient_key.pem``)."""
    apiv3_key: str = Field(min_length=32, max_length=32)
    platform_public_key_id: str = Field(min_length=len(protocol.PUBLIC_KEY_ID_PREFIX) + 1)
    platform_public_key: str = Field(min_length=1)
    """PEM (``BEGIN PUBLIC KEY``), downloaded from the merchant platform."""
    gateway: str = DEFAULT_GATEWAY
    transfer_scene_id: str | None = Field(default=None, min_length=1, max_length=36)
    """The 商家转账 scene the merchant platform granted (e.g. ``1000`` 现金营销, ``1005`` 佣金报酬);
    payouts are refused until it is set."""
    transfer_scene_report_infos: list[TransferReportInfo] = Field(default_factory=list)
    transfer_user_recv_perception: str | None = Field(default=None, min_length=1, max_length=32)
    """What the payee is told the money is for; WeChat shows the scene's default without it."""
    split_relation_merchant: SplitRelation = "PARTNER"
    """``relation_type`` registered for merchant split receivers."""
    split_relation_person: SplitRelation = "DISTRIBUTOR"
    """``relation_type`` registered for personal (openid) split receivers."""
    mini_appid: str | None = Field(default=None, min_length=1, max_length=32)
    """The mini-program bound to ``mchid`` that takes ``wechat_mini`` payments (its payers'
    openids are under it); ``appid`` when not set."""

    @field_validator("merchant_private_key")
    @classmethod
    def _private_key(cls, value: str) -> str:
        try:
            protocol.load_private_key(value)
        except (ValueError, TypeError) as exc:
            raise ValueError("merchant_private_key is not an RSA private key PEM") from exc
        return value

    @field_validator("platform_public_key")
    @classmethod
    def _public_key(cls, value: str) -> str:
        try:
            protocol.load_public_key(value)
        except (ValueError, TypeError) as exc:
            raise ValueError("platform_public_key is not an RSA public key PEM") from exc
        return value

    @field_validator("platform_public_key_id")
    @classmethod
    def _public_key_id(cls, value: str) -> str:
        if not value.startswith(protocol.PUBLIC_KEY_ID_PREFIX):
            raise ValueError(
                f"platform_public_key_id must start with {protocol.PUBLIC_KEY_ID_PREFIX}"
            )
        return value

    @field_validator("apiv3_key")
    @classmethod
    def _apiv3_key(cls, value: str) -> str:
        if len(value.encode()) != 32:
            raise ValueError("apiv3_key must be 32 ASCII characters")
        return value

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("gateway must be an http(s) base URL")
        return value.rstrip("/")


def _account_mode(value: Any) -> str:
    """Direct merchant, or a sub-merchant of a service provider (服务商: ``sp_mchid``)."""
    fields = value if isinstance(value, Mapping) else vars(value)
    return "partner" if "sp_mchid" in fields else "direct"


class WechatPayAccountCredentials(
    RootModel[
        Annotated[
            Annotated[WechatPayCredentials, Tag("direct")]
            | Annotated[WechatPayPartnerCredentials, Tag("partner")],
            Discriminator(_account_mode),
        ]
    ]
):
    """What a WeChat Pay channel account holds: a direct merchant's credentials, or (partner
    mode, told by ``sp_mchid``) a service provider's plus one sub-merchant's ids."""


# ---------------------------------------------------------------- error classification
# The one table deciding what a failure means for the gateway (see base.py). Transport errors
# are matched in order by type; answered errors by WeChat error code, then by HTTP status.
_TRANSPORT_ERRORS: tuple[tuple[type[Exception], type[ChannelError], str], ...] = (
    # The request never left: safe to retry or fail over.
    (httpx.ConnectError, RetryableError, "connect_error"),
    (httpx.ConnectTimeout, RetryableError, "connect_timeout"),
    (httpx.PoolTimeout, RetryableError, "pool_timeout"),
    (httpx.ProxyError, RetryableError, "proxy_error"),
    (httpx.UnsupportedProtocol, RetryableError, "unsupported_protocol"),
    (httpx.LocalProtocolError, RetryableError, "local_protocol_error"),
    # The request may have been processed.
    (httpx.ReadTimeout, UnknownOutcome, "read_timeout"),
    (httpx.WriteTimeout, UnknownOutcome, "write_timeout"),
    (httpx.TransportError, UnknownOutcome, "transport_error"),
)

_ERROR_CODES: dict[str, tuple[type[ChannelError], str]] = {
    "SYSTEM_ERROR": (UnknownOutcome, "system_error"),  # 500: retry with the same parameters
    "BANK_ERROR": (UnknownOutcome, "bank_error"),
    "FREQUENCY_LIMITED": (RetryableError, "frequency_limited"),  # 429: rejected unprocessed
    "ORDER_PAID": (BusinessError, "already_paid"),
    "ORDERPAID": (BusinessError, "already_paid"),
    "ORDER_CLOSED": (BusinessError, "order_closed"),
    "ORDER_NOT_EXIST": (BusinessError, "order_not_exist"),
    "OUT_TRADE_NO_USED": (BusinessError, "duplicate_out_trade_no"),
    "PARAM_ERROR": (BusinessError, "invalid_request"),
    "INVALID_REQUEST": (BusinessError, "invalid_request"),
    "APPID_MCHID_NOT_MATCH": (BusinessError, "invalid_credentials"),
    "MCH_NOT_EXISTS": (BusinessError, "invalid_credentials"),
    "SIGN_ERROR": (BusinessError, "sign_error"),
    "NO_AUTH": (BusinessError, "not_authorized"),
    "NOT_ENOUGH": (BusinessError, "insufficient_funds"),
    # The merchant account's own restrictions, not the customer's: another account may take it.
    "RULE_LIMIT": (RoutableDecline, "channel_limit"),  # 403 业务规则限制
    "TRADE_ERROR": (RoutableDecline, "channel_risk_declined"),  # 403 交易错误 (risk control)
}


def classify_transport_error(exc: httpx.HTTPError) -> ChannelError:
    for kind, error, code in _TRANSPORT_ERRORS:
        if isinstance(exc, kind):
            return error(code, f"{type(exc).__name__}: {exc}")
    return UnknownOutcome("http_error", f"{type(exc).__name__}: {exc}")


def classify_answer(status: int, payload: Any) -> ChannelError:
    """A verified non-2xx answer → error."""
    wx_code = str(payload.get("code", "")) if isinstance(payload, dict) else ""
    message = str(payload.get("message", "")) if isinstance(payload, dict) else ""
    if wx_code in _ERROR_CODES:
        error, code = _ERROR_CODES[wx_code]
        return error(code, message or wx_code, raw=payload)
    if status >= 500:
        return UnknownOutcome(wx_code.lower() or "channel_error", message, raw=payload)
    if status == 429:
        return RetryableError("frequency_limited", message, raw=payload)
    return BusinessError(wx_code.lower() or f"http_{status}", message, raw=payload)


# Refunds (``/v3/refund/domestic/refunds``) answer with their own codes. A refund is idempotent
# per ``out_refund_no``, so every answer that may hide an accepted refund is UnknownOutcome: the
# janitor queries, and a retry with the same number can never refund twice. That includes
# FREQUENCY_LIMITED, which WeChat also uses for "orders older than a month: retry with the same
# parameters later".
_REFUND_ERROR_CODES: dict[str, tuple[type[ChannelError], str]] = {
    "SYSTEM_ERROR": (UnknownOutcome, "system_error"),  # 500: retry with the same out_refund_no
    "BANK_ERROR": (UnknownOutcome, "bank_error"),
    "FREQUENCY_LIMITED": (UnknownOutcome, "frequency_limited"),  # 429
    "NOT_ENOUGH": (BusinessError, "insufficient_balance"),  # 403: the merchant account is short
    "NOTENOUGH": (BusinessError, "insufficient_balance"),
    "RESOURCE_NOT_EXISTS": (BusinessError, "order_not_found"),  # 404: no such (paid) order
    "ORDER_NOT_EXIST": (BusinessError, "order_not_found"),
    "USER_ACCOUNT_ABNORMAL": (BusinessError, "user_account_abnormal"),  # 403
    "NO_AUTH": (BusinessError, "not_authorized"),  # 403: no refund permission
    "MCH_NOT_EXISTS": (BusinessError, "invalid_credentials"),
    "APPID_MCHID_NOT_MATCH": (BusinessError, "invalid_credentials"),
    "SIGN_ERROR": (BusinessError, "sign_error"),
    "PARAM_ERROR": (BusinessError, "invalid_request"),
    "INVALID_REQUEST": (BusinessError, "invalid_request"),
}

# INVALID_REQUEST ("valid format, breaks a business rule") is refined by its message.
_REFUND_REFUSALS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("超过", "全额退款", "可退金额"), "refund_exceeds_payment"),
    (("未支付", "已关闭", "订单状态"), "order_not_paid"),
    (("不一致",), "duplicate_out_refund_no"),
)


def classify_refund_answer(status: int, payload: Any) -> ChannelError:
    """A verified non-2xx answer to a refund call → error."""
    wx_code = str(payload.get("code", "")) if isinstance(payload, dict) else ""
    message = str(payload.get("message", "")) if isinstance(payload, dict) else ""
    if wx_code in ("INVALID_REQUEST", "PARAM_ERROR"):
        for fragments, code in _REFUND_REFUSALS:
            if any(fragment in message for fragment in fragments):
                return BusinessError(code, message, raw=payload)
    if wx_code in _REFUND_ERROR_CODES:
        error, code = _REFUND_ERROR_CODES[wx_code]
        return error(code, message or wx_code, raw=payload)
    if status >= 500 or status == 429:
        return UnknownOutcome(wx_code.lower() or "channel_error", message, raw=payload)
    return BusinessError(wx_code.lower() or f"http_{status}", message, raw=payload)


# Transfer bills (``/v3/fund-app/mch-transfer/transfer-bills``). WeChat: after any non-200 answer
# never switch to a new out_bill_no until a query shows the bill failed, and treat an unknown
# error code the same way. So only the codes known to mean "nothing was created" are final;
# everything else is UnknownOutcome and the janitor queries.
_TRANSFER_ERROR_CODES: dict[str, tuple[type[ChannelError], str]] = {
    "SYSTEM_ERROR": (UnknownOutcome, "system_error"),  # 500
    "FREQUENCY_LIMITED": (UnknownOutcome, "frequency_limited"),  # 429
    "NOT_ENOUGH": (BusinessError, "insufficient_balance"),  # 403: operating account short
    "PARAM_ERROR": (BusinessError, "invalid_request"),  # 400
    "INVALID_REQUEST": (BusinessError, "invalid_request"),  # 400: scene, appid, IP whitelist…
    "NO_AUTH": (BusinessError, "not_authorized"),  # 403: product not enabled
    "SIGN_ERROR": (BusinessError, "sign_error"),  # 401
    "APPID_MCHID_NOT_MATCH": (BusinessError, "invalid_credentials"),
    "MCH_NOT_EXISTS": (BusinessError, "invalid_credentials"),
    "NOT_FOUND": (BusinessError, "not_found"),  # 404 on query
    "RESOURCE_NOT_EXISTS": (BusinessError, "not_found"),
}


def classify_transfer_answer(status: int, payload: Any) -> ChannelError:
    """A verified non-2xx answer to a transfer call → error."""
    wx_code = str(payload.get("code", "")) if isinstance(payload, dict) else ""
    message = str(payload.get("message", "")) if isinstance(payload, dict) else ""
    if wx_code == "INVALID_REQUEST" and any(f in message for f in ("重复", "不一致")):
        return BusinessError("duplicate_out_biz_no", message, raw=payload)
    if wx_code in _TRANSFER_ERROR_CODES:
        error, code = _TRANSFER_ERROR_CODES[wx_code]
        return error(code, message or wx_code, raw=payload)
    return UnknownOutcome(wx_code.lower() or f"http_{status}", message, raw=payload)


# Profit sharing. ``out_order_no`` is idempotent at WeChat ("同一分账单号多次请求等同一次"), so a
# 5xx or 429 is UnknownOutcome (query, or retry with the same number). INVALID_REQUEST and
# PARAM_ERROR are refined by message (WeChat's own FAQ wording).
_SPLIT_ERROR_CODES: dict[str, tuple[type[ChannelError], str]] = {
    "SYSTEM_ERROR": (UnknownOutcome, "system_error"),  # 500
    "FREQUENCY_LIMITED": (UnknownOutcome, "frequency_limited"),  # 429
    "RULE_LIMIT": (BusinessError, "split_ratio_exceeded"),  # 403 分账金额超出最大分账比例
    "NOT_ENOUGH": (BusinessError, "insufficient_splittable"),  # 403 分账金额不足
    "NO_AUTH": (BusinessError, "not_authorized"),  # 403 no profit-sharing permission
    "PARAM_ERROR": (BusinessError, "invalid_request"),
    "INVALID_REQUEST": (BusinessError, "invalid_request"),
    "RESOURCE_NOT_EXISTS": (BusinessError, "not_found"),
    "NOT_FOUND": (BusinessError, "not_found"),
    "SIGN_ERROR": (BusinessError, "sign_error"),
    "APPID_MCHID_NOT_MATCH": (BusinessError, "invalid_credentials"),
    "MCH_NOT_EXISTS": (BusinessError, "invalid_credentials"),
}

_SPLIT_REFUSALS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("最大分账比例",), "split_ratio_exceeded"),
    (("非分账订单",), "order_not_splittable"),
    (("关系不存在",), "receiver_not_added"),
    (("金额不足",), "insufficient_splittable"),
    (("分账单号重复",), "duplicate_out_order_no"),
)


def classify_split_answer(status: int, payload: Any) -> ChannelError:
    """A verified non-2xx answer to a profit-sharing call → error."""
    wx_code = str(payload.get("code", "")) if isinstance(payload, dict) else ""
    message = str(payload.get("message", "")) if isinstance(payload, dict) else ""
    if wx_code in ("INVALID_REQUEST", "PARAM_ERROR"):
        if "处理中" in message:  # "订单处理中，请稍后重试": just paid, nothing was done
            return RetryableError("order_processing", message, raw=payload)
        for fragments, code in _SPLIT_REFUSALS:
            if any(fragment in message for fragment in fragments):
                return BusinessError(code, message, raw=payload)
    if wx_code in _SPLIT_ERROR_CODES:
        error, code = _SPLIT_ERROR_CODES[wx_code]
        return error(code, message or wx_code, raw=payload)
    if status >= 500 or status == 429:
        return UnknownOutcome(wx_code.lower() or "channel_error", message, raw=payload)
    return BusinessError(wx_code.lower() or f"http_{status}", message, raw=payload)


_Classifier = Callable[[int, Any], ChannelError]


# Payment codes (``/v3/pay/transactions/codepay`` and ``…/reverse``). A code charge is idempotent
# per out_trade_no, so anything that may hide a charge is UnknownOutcome: the gateway queries and,
# if the outcome stays unknown, reverses. USERPAYING ("the customer must confirm") is not an
# error at all: :meth:`WechatPayAdapter._codepay` answers it as a pending order. The business
# codes below follow WeChat's v2 micropay vocabulary in v3 spelling; WeChat's v3 page lists them
# only in part, so both spellings are recognised [partly unverified].
_CODEPAY_ERROR_CODES: dict[str, tuple[type[ChannelError], str]] = {
    "SYSTEM_ERROR": (UnknownOutcome, "system_error"),
    "SYSTEMERROR": (UnknownOutcome, "system_error"),
    "BANK_ERROR": (UnknownOutcome, "bank_error"),
    "BANKERROR": (UnknownOutcome, "bank_error"),
    "FREQUENCY_LIMITED": (UnknownOutcome, "frequency_limited"),
    "NOT_ENOUGH": (BusinessError, "insufficient_balance"),
    "NOTENOUGH": (BusinessError, "insufficient_balance"),
    "AUTH_CODE_EXPIRE": (BusinessError, "invalid_auth_code"),
    "AUTHCODEEXPIRE": (BusinessError, "invalid_auth_code"),
    "AUTH_CODE_ERROR": (BusinessError, "invalid_auth_code"),
    "AUTH_CODE_INVALID": (BusinessError, "invalid_auth_code"),
    "TRADE_ERROR": (BusinessError, "payment_declined"),
    "ORDER_PAID": (BusinessError, "already_paid"),
    "ORDERPAID": (BusinessError, "already_paid"),
    "ORDER_CLOSED": (BusinessError, "order_closed"),
    "ORDERCLOSED": (BusinessError, "order_closed"),
    "ORDER_REVERSED": (BusinessError, "order_closed"),
    "ORDERREVERSED": (BusinessError, "order_closed"),
    "ORDER_NOT_EXIST": (BusinessError, "order_not_exist"),
    "RESOURCE_NOT_EXISTS": (BusinessError, "order_not_exist"),
    "OUT_TRADE_NO_USED": (BusinessError, "duplicate_out_trade_no"),
    "APPID_MCHID_NOT_MATCH": (BusinessError, "invalid_credentials"),
    "MCH_NOT_EXISTS": (BusinessError, "invalid_credentials"),
    "SIGN_ERROR": (BusinessError, "sign_error"),
    "NO_AUTH": (BusinessError, "not_authorized"),
    "PARAM_ERROR": (BusinessError, "invalid_request"),
    "INVALID_REQUEST": (BusinessError, "invalid_request"),
}


def classify_codepay_answer(status: int, payload: Any) -> ChannelError:
    """A verified non-2xx answer to a code charge or reverse → error. A parameter error about
    the payment code itself is ``invalid_auth_code`` (the customer must show a fresh code)."""
    wx_code = str(payload.get("code", "")) if isinstance(payload, dict) else ""
    message = str(payload.get("message", "")) if isinstance(payload, dict) else ""
    if wx_code in ("PARAM_ERROR", "INVALID_REQUEST") and (
        "auth_code" in message or "付款码" in message
    ):
        return BusinessError("invalid_auth_code", message, raw=payload)
    if wx_code in _CODEPAY_ERROR_CODES:
        error, code = _CODEPAY_ERROR_CODES[wx_code]
        return error(code, message or wx_code, raw=payload)
    if status >= 500 or status == 429:
        return UnknownOutcome(wx_code.lower() or "channel_error", message, raw=payload)
    return BusinessError(wx_code.lower() or f"http_{status}", message, raw=payload)


# ---------------------------------------------------------------- the adapter
@base.register
class WechatPayAdapter:
    name: ClassVar[str] = "wechatpay"
    methods: ClassVar[frozenset[str]] = frozenset(protocol.METHOD_ENDPOINTS) | {
        protocol.BARCODE_METHOD
    }
    currencies: ClassVar[frozenset[str]] = frozenset({"CNY"})
    credentials_model: ClassVar[type[BaseModel]] = WechatPayAccountCredentials
    production_hosts: ClassVar[frozenset[str]] = frozenset(
        {"api.mch.weixin.qq.com", "api2.mch.weixin.qq.com"}
    )
    required_customer: ClassVar[Mapping[str, tuple[str, ...]]] = {"wechat_jsapi": ("openid",)}
    payee_types: ClassVar[frozenset[PayeeType]] = frozenset({PayeeType.wechat_openid})
    payment_codes: ClassVar[tuple[base.PaymentCodeRule, ...]] = (
        base.PaymentCodeRule(
            protocol.BARCODE_METHOD, protocol.PAYMENT_CODE_LENGTHS, protocol.PAYMENT_CODE_PREFIXES
        ),
    )
    barcode_terms: ClassVar[base.BarcodeTerms] = base.BarcodeTerms(
        protocol.BARCODE_POLL_SECONDS, protocol.BARCODE_REVERSE_AFTER_SECONDS
    )
    # Mini-programs pay JSAPI orders: the payer's openid under the mini-program's appid.
    required_customer = {**required_customer, "wechat_mini": ("openid",)}

    def __init__(self, credentials: Mapping[str, Any], http: httpx.AsyncClient) -> None:
        try:
            self.credentials = WechatPayCredentials.model_validate(dict(credentials))
        except ValidationError as exc:
            raise InvalidCredentials(str(exc)) from None
        creds = self.credentials
        self._http = http
        self._private_key = protocol.load_private_key(creds.merchant_private_key)
        self._platform_key = protocol.load_public_key(creds.platform_public_key)
        self._platform_keys = {creds.platform_public_key_id: self._platform_key}

    def __new__(cls, credentials: Mapping[str, Any], http: httpx.AsyncClient) -> WechatPayAdapter:
        """A sub-merchant's account (credentials with ``sp_mchid``) gets the partner-mode
        adapter (:mod:`paymux.channels.wechatpay.partner_adapter`)."""
        if cls is WechatPayAdapter and "sp_mchid" in credentials:
            from paymux.channels.wechatpay.partner_adapter import WechatPayPartnerAdapter

            return super().__new__(WechatPayPartnerAdapter)
        return super().__new__(cls)

    # ------------------------------------------------------------ transport
    async def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        classify: _Classifier = classify_answer,
    ) -> tuple[int, Any]:
        """Send one signed request; return (status, parsed JSON or None) of a verified 2xx
        answer, raise the classified ChannelError otherwise."""
        creds = self.credentials
        content = protocol.encode_json(body) if body is not None else b""
        headers = {
            "Accept": "application/json",
            "User-Agent": "paymux-wechatpay/1",
            protocol.HEADER_SERIAL: creds.platform_public_key_id,
            "Authorization": protocol.build_authorization(
                mchid=creds.mchid,
                serial_no=creds.merchant_serial_no,
                private_key=self._private_key,
                method=method,
                path_with_query=path,
                body=content,
            ),
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = await self._http.request(
                method, creds.gateway + path, content=content or None, headers=headers
            )
        except httpx.HTTPError as exc:
            raise classify_transport_error(exc) from exc
        raw = response.content
        try:
            protocol.verify_response(response.headers, raw, public_keys=self._platform_keys)
        except protocol.ProtocolError as exc:
            raise UnknownOutcome(
                "unverified_response",
                f"HTTP {response.status_code} answer failed verification: {exc}",
                raw=raw[:2000],
            ) from exc
        payload: Any = None
        if raw:
            try:
                payload = json.loads(raw)
            except ValueError:
                raise UnknownOutcome("malformed_response", "answer is not JSON", raw=raw) from None
        if 200 <= response.status_code < 300:
            return response.status_code, payload
        raise classify(response.status_code, payload)

    @staticmethod
    def _order_path(out_trade_no: str) -> str:
        return f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}"

    # ------------------------------------------------------------ payments
    async def create_payment(self, request: CreatePayment) -> CreatedPayment:
        if request.method == protocol.BARCODE_METHOD:
            return await self._codepay(request)
        creds = self.credentials
        endpoint = protocol.METHOD_ENDPOINTS.get(request.method)
        if endpoint is None:
            raise BusinessError("unsupported_method", f"wechatpay does not do {request.method}")
        if request.currency != "CNY":
            raise BusinessError("unsupported_currency", "wechatpay only takes CNY")
        if request.amount <= 0:
            raise BusinessError("invalid_amount", "amount must be a positive number of fen")
        kind = endpoint[0]
        body: dict[str, Any] = {
            "appid": creds.appid,
            "mchid": creds.mchid,
            "description": request.subject[:_DESCRIPTION_MAX],
            "out_trade_no": request.out_trade_no,
            "time_expire": protocol.rfc3339(request.expires_at),
            "notify_url": request.notify_url,
            "amount": {"total": request.amount, "currency": request.currency},
        }
        if request.method == "wechat_mini":
            body["appid"] = creds.mini_appid or creds.appid
        if request.profit_sharing:
            # Keeps the money frozen and splittable (the default is to settle it all to us).
            body["settle_info"] = {"profit_sharing": True}
        if kind == "jsapi":
            openid = request.customer.get("openid")
            if not openid:
                raise BusinessError("customer_required", "JSAPI payments need customer.openid")
            body["payer"] = {"openid": str(openid)}
        if kind == "h5":
            if not request.client_ip:
                raise BusinessError("client_ip_required", "H5 payments need the payer's IP")
            body["scene_info"] = {
                "payer_client_ip": request.client_ip,
                "h5_info": {"type": "Wap"},
            }
        _, payload = await self._call("POST", f"/v3/pay/transactions/{kind}", body)
        if not isinstance(payload, dict):
            raise UnknownOutcome("malformed_response", "create answer has no body", raw=payload)
        if request.method == "wechat_mini":
            return CreatedPayment(None, self._mini_action(body["appid"], payload), raw=payload)
        return CreatedPayment(
            channel_trade_no=None, next_action=self._next_action(kind, payload), raw=payload
        )

    def _mini_action(self, appid: str, payload: Mapping[str, Any]) -> NextAction:
        """``wx.requestPayment``'s parameters, signed with the mini-program's ``appid``."""
        prepay_id = payload.get("prepay_id")
        if not isinstance(prepay_id, str) or not prepay_id:
            raise UnknownOutcome("malformed_response", "create answer lacks prepay_id")
        params = protocol.mini_pay_params(self._private_key, appid=appid, prepay_id=prepay_id)
        return NextAction(NextActionType.sdk_params, params=dict(params))

    def _next_action(self, kind: str, payload: Mapping[str, Any]) -> NextAction:
        creds = self.credentials

        def field(name: str) -> str:
            value = payload.get(name)
            if not isinstance(value, str) or not value:
                raise UnknownOutcome("malformed_response", f"create answer lacks {name}")
            return value

        if kind == "native":
            return NextAction(NextActionType.qr_code, code_url=field("code_url"))
        if kind == "h5":
            return NextAction(NextActionType.redirect, url=field("h5_url"))
        prepay_id = field("prepay_id")
        timestamp = str(protocol.unix_now())
        nonce = protocol.make_nonce()
        if kind == "jsapi":
            package = f"prepay_id={prepay_id}"
            pay_sign = protocol.jsapi_pay_sign(
                self._private_key,
                appid=creds.appid,
                timestamp=timestamp,
                nonce=nonce,
                package=package,
            )
            params = {
                "appId": creds.appid,
                "timeStamp": timestamp,
                "nonceStr": nonce,
                "package": package,
                "signType": "RSA",
                "paySign": pay_sign,
            }
        else:
            sign = protocol.app_pay_sign(
                self._private_key,
                appid=creds.appid,
                timestamp=timestamp,
                nonce=nonce,
                prepay_id=prepay_id,
            )
            params = {
                "appid": creds.appid,
                "partnerid": creds.mchid,
                "prepayid": prepay_id,
                "package": "Sign=WXPay",
                "noncestr": nonce,
                "timestamp": timestamp,
                "sign": sign,
            }
        return NextAction(NextActionType.sdk_params, params=params)

    async def query_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> PaymentState:
        path = f"{self._order_path(out_trade_no)}?mchid={quote(self.credentials.mchid, safe='')}"
        try:
            _, payload = await self._call("GET", path)
        except BusinessError as exc:
            if exc.code == "order_not_exist":
                return PaymentState(out_trade_no, ChannelPaymentStatus.not_found, raw=exc.raw)
            raise
        if not isinstance(payload, dict):
            raise UnknownOutcome("malformed_response", "query answer has no body", raw=payload)
        try:
            state = self._state(payload)
        except ValueError as exc:
            raise UnknownOutcome("malformed_response", str(exc), raw=payload) from exc
        if state.out_trade_no != out_trade_no:
            raise UnknownOutcome("malformed_response", "answer is about another order")
        return state

    async def close_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> None:
        try:
            await self._call(
                "POST", f"{self._order_path(out_trade_no)}/close", {"mchid": self.credentials.mchid}
            )
        except BusinessError as exc:
            if exc.code in ("order_closed", "order_not_exist"):
                return
            raise

    # ------------------------------------------------------------ refunds
    async def create_refund(self, request: CreateRefund) -> RefundState:
        """``POST /v3/refund/domestic/refunds``. The answer is the refund object: usually
        PROCESSING (pending), SUCCESS for instant refunds to the payer's balance."""
        if request.currency != "CNY":
            raise BusinessError("unsupported_currency", "wechatpay only refunds CNY")
        if request.amount <= 0:
            raise BusinessError("invalid_amount", "refund amount must be a positive number of fen")
        if request.amount > request.total_amount:
            raise BusinessError("refund_exceeds_payment", "refund exceeds the order's amount")
        body: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "out_refund_no": request.out_refund_no,
        }
        if request.reason:
            body["reason"] = request.reason[:_REFUND_REASON_MAX]
        body["notify_url"] = request.notify_url
        body["amount"] = {
            "refund": request.amount,
            "total": request.total_amount,
            "currency": request.currency,
        }
        _, payload = await self._call("POST", _REFUNDS_PATH, body, classify=classify_refund_answer)
        return self._checked_refund(payload, request.out_refund_no, request.out_trade_no)

    async def query_refund(
        self, out_refund_no: str, out_trade_no: str, *, channel_refund_no: str | None = None
    ) -> RefundState:
        """``GET /v3/refund/domestic/refunds/{out_refund_no}``; 404 RESOURCE_NOT_EXISTS →
        ``not_found``."""
        path = f"{_REFUNDS_PATH}/{quote(out_refund_no, safe='')}"
        try:
            _, payload = await self._call("GET", path, classify=classify_refund_answer)
        except BusinessError as exc:
            wx_code = exc.raw.get("code") if isinstance(exc.raw, dict) else None
            if wx_code == "RESOURCE_NOT_EXISTS":
                return RefundState(
                    out_refund_no,
                    ChannelRefundStatus.not_found,
                    out_trade_no=out_trade_no,
                    raw=exc.raw,
                )
            raise
        return self._checked_refund(payload, out_refund_no, out_trade_no)

    def _checked_refund(self, payload: Any, out_refund_no: str, out_trade_no: str) -> RefundState:
        if not isinstance(payload, dict):
            raise UnknownOutcome("malformed_response", "refund answer has no body", raw=payload)
        try:
            state = self._refund_state(payload, status_field="status")
        except ValueError as exc:
            raise UnknownOutcome("malformed_response", str(exc), raw=payload) from exc
        if state.out_refund_no != out_refund_no or state.out_trade_no not in (None, out_trade_no):
            raise UnknownOutcome("malformed_response", "answer is about another refund")
        return state

    @staticmethod
    def _refund_state(refund: Mapping[str, Any], *, status_field: str) -> RefundState:
        """A refund object (answer: ``status``) or refund resource (notification:
        ``refund_status``) → RefundState."""
        out_refund_no = refund.get("out_refund_no")
        if not isinstance(out_refund_no, str) or not out_refund_no:
            raise ValueError("refund lacks out_refund_no")
        wire_status = str(refund.get(status_field, ""))
        status = protocol.map_refund_state(wire_status)
        amount = refund.get("amount")
        amount = amount if isinstance(amount, dict) else {}
        refunded = amount.get("refund")
        currency = amount.get("currency")
        success_time = refund.get("success_time")
        refunded_at = (
            protocol.parse_rfc3339(success_time)
            if status is ChannelRefundStatus.succeeded
            and isinstance(success_time, str)
            and success_time
            else None
        )
        out_trade_no = refund.get("out_trade_no")
        refund_id = refund.get("refund_id")
        failed = status is ChannelRefundStatus.failed
        return RefundState(
            out_refund_no=out_refund_no,
            status=status,
            out_trade_no=str(out_trade_no) if out_trade_no else None,
            channel_refund_no=str(refund_id) if refund_id else None,
            amount=refunded if isinstance(refunded, int) else None,
            currency=str(currency) if currency else ("CNY" if refunded is not None else None),
            refunded_at=refunded_at,
            failure_code=wire_status if failed else None,
            failure_message=protocol.REFUND_STATE_DESC[wire_status] if failed else None,
            raw=dict(refund),
        )

    # ------------------------------------------------------------ payouts (商家转账)
    async def create_transfer(self, request: CreateTransfer) -> TransferState:
        """``POST /v3/fund-app/mch-transfer/transfer-bills``: one bill per payout, idempotent
        per ``out_bill_no`` (derived from ``out_biz_no``: :func:`protocol.transfer_bill_no`).
        Usually answers ``WAIT_USER_CONFIRM`` (pending; ``raw["package_info"]`` lets the payee
        confirm in WeChat)."""
        creds = self.credentials
        if request.payee_type not in self.payee_types:
            raise BusinessError(
                "unsupported_payee_type", f"wechatpay cannot pay a {request.payee_type}"
            )
        if request.currency != "CNY":
            raise BusinessError("unsupported_currency", "wechatpay only pays out CNY")
        if request.amount <= 0:
            raise BusinessError("invalid_amount", "amount must be a positive number of fen")
        if not request.payee_account:
            raise BusinessError("invalid_payee", "the payee's openid is required")
        if creds.transfer_scene_id is None:
            raise BusinessError("transfer_not_configured", "no transfer_scene_id is configured")
        if request.amount >= _USER_NAME_REQUIRED_FROM and not request.payee_name:
            raise BusinessError(
                "payee_name_required", "from 2,000 yuan WeChat requires the payee's real name"
            )
        bill_no = self._bill_no(request.out_biz_no)
        remark = request.remark[:_TRANSFER_REMARK_MAX]
        body: dict[str, Any] = {
            "appid": creds.appid,
            "out_bill_no": bill_no,
            "transfer_scene_id": creds.transfer_scene_id,
            "openid": request.payee_account,
            "transfer_amount": request.amount,
            "transfer_remark": remark,
            "notify_url": request.notify_url,
            "transfer_scene_report_infos": [
                {"info_type": info.info_type, "info_content": info.info_content or remark}
                for info in creds.transfer_scene_report_infos
            ],
        }
        if request.payee_name and request.amount >= _USER_NAME_ALLOWED_FROM:
            body["user_name"] = protocol.encrypt_sensitive(self._platform_key, request.payee_name)
        if creds.transfer_user_recv_perception:
            body["user_recv_perception"] = creds.transfer_user_recv_perception
        _, payload = await self._call(
            "POST", _TRANSFER_BILLS_PATH, body, classify=classify_transfer_answer
        )
        return self._checked_transfer(payload, request.out_biz_no, bill_no, request.amount)

    async def query_transfer(self, out_biz_no: str) -> TransferState:
        """``GET /v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}``; 404 →
        ``not_found``."""
        bill_no = self._bill_no(out_biz_no)
        path = f"{_TRANSFER_BILLS_PATH}/out-bill-no/{quote(bill_no, safe='')}"
        try:
            _, payload = await self._call("GET", path, classify=classify_transfer_answer)
        except BusinessError as exc:
            if exc.code == "not_found":
                return TransferState(out_biz_no, ChannelTransferStatus.not_found, raw=exc.raw)
            raise
        return self._checked_transfer(payload, out_biz_no, bill_no, None)

    def _transfer_notification(
        self, event_key: str, envelope: Mapping[str, Any], bill: Any
    ) -> Notification:
        """A decrypted ``MCHTRANSFER.BILL.FINISHED`` resource (a bill reached SUCCESS, FAIL or
        CANCELLED) → Notification(transfer=…) about our payout id."""
        if not isinstance(bill, dict) or "state" not in bill:
            raise InvalidNotification("malformed", "resource is not a transfer bill")
        if bill.get("mchid") != self.credentials.mchid:
            raise InvalidNotification("wrong_merchant", "notification is for another merchant")
        out_bill_no = bill.get("out_bill_no")
        if not isinstance(out_bill_no, str) or not out_bill_no:
            raise InvalidNotification("malformed", "transfer lacks out_bill_no")
        if bill["state"] not in protocol.TRANSFER_FINAL_STATES:
            raise InvalidNotification("malformed", "a transfer notification must be final")
        try:
            state = self._transfer_state(bill, protocol.payout_id_of(out_bill_no), None)
        except ValueError as exc:
            raise InvalidNotification("malformed", str(exc)) from exc
        return Notification(event_key=event_key, transfer=state, raw={**envelope, "resource": bill})

    @staticmethod
    def _bill_no(out_biz_no: str) -> str:
        try:
            return protocol.transfer_bill_no(out_biz_no)
        except ValueError as exc:
            raise BusinessError("invalid_request", str(exc)) from None

    def _checked_transfer(
        self, payload: Any, out_biz_no: str, bill_no: str, amount: int | None
    ) -> TransferState:
        if not isinstance(payload, dict):
            raise UnknownOutcome("malformed_response", "transfer answer has no body", raw=payload)
        mchid = payload.get("mch_id", payload.get("mchid"))
        if payload.get("out_bill_no") != bill_no or mchid not in (None, self.credentials.mchid):
            raise UnknownOutcome(
                "malformed_response", "answer is about another transfer", raw=payload
            )
        try:
            return self._transfer_state(payload, out_biz_no, amount)
        except ValueError as exc:
            raise UnknownOutcome("malformed_response", str(exc), raw=payload) from exc

    @staticmethod
    def _transfer_state(
        bill: Mapping[str, Any], out_biz_no: str, amount: int | None
    ) -> TransferState:
        """A transfer bill (create or query answer, notification resource) → TransferState."""
        wire_state = str(bill.get("state", ""))
        status = protocol.map_transfer_state(wire_state)
        transferred = bill.get("transfer_amount")
        update_time = bill.get("update_time")
        finished_at = (
            protocol.parse_rfc3339(update_time)
            if wire_state in protocol.TRANSFER_FINAL_STATES
            and isinstance(update_time, str)
            and update_time
            else None
        )
        bill_id = bill.get("transfer_bill_no")
        failed = status is ChannelTransferStatus.failed
        fail_reason = bill.get("fail_reason")
        return TransferState(
            out_biz_no=out_biz_no,
            status=status,
            channel_transfer_no=str(bill_id) if bill_id else None,
            amount=transferred if isinstance(transferred, int) else amount,
            finished_at=finished_at,
            failure_code=(str(fail_reason) if fail_reason else wire_state) if failed else None,
            failure_message=protocol.TRANSFER_STATE_DESC[wire_state] if failed else None,
            raw=dict(bill),
        )

    # ------------------------------------------------------------ profit sharing (分账)
    async def create_split(self, request: CreateSplit) -> SplitState:
        """Register every receiver (``receivers/add``, idempotent), then
        ``POST /v3/profitsharing/orders``. The order must have been created with
        ``profit_sharing``; WeChat answers PROCESSING (pending) or FINISHED."""
        receivers = request.receivers
        if not 1 <= len(receivers) <= protocol.MAX_SPLIT_RECEIVERS:
            raise BusinessError("invalid_request", "a split names 1 to 50 receivers")
        if not protocol.SPLIT_ORDER_NO.fullmatch(request.out_order_no):
            raise BusinessError("invalid_request", "out_order_no must be 1-64 of [0-9A-Za-z_-|*@]")
        if not request.channel_trade_no:
            raise BusinessError("invalid_request", "a split needs the order's transaction_id")
        for receiver in receivers:
            if receiver.amount <= 0:
                raise BusinessError("invalid_amount", "every receiver's amount must be positive")
            if not receiver.account:
                raise BusinessError("invalid_request", "every receiver needs an account")
            if receiver.type is SplitReceiverType.merchant and not receiver.name:
                raise BusinessError(
                    "receiver_name_required", "WeChat requires a merchant receiver's full name"
                )
        registered: set[tuple[str, str]] = set()
        for receiver in receivers:
            key = (receiver.type.value, receiver.account)
            if key not in registered:
                await self._add_receiver(receiver)
                registered.add(key)
        body: dict[str, Any] = {
            "appid": self.credentials.appid,
            "transaction_id": request.channel_trade_no,
            "out_order_no": request.out_order_no,
            "receivers": [self._split_receiver(r) for r in receivers],
            "unfreeze_unsplit": request.finish,
        }
        _, payload = await self._call(
            "POST", _SPLIT_ORDERS_PATH, body, classify=classify_split_answer
        )
        return self._checked_split(payload, request.out_order_no)

    async def query_split(
        self, out_order_no: str, out_trade_no: str, channel_trade_no: str
    ) -> SplitState:
        """``GET /v3/profitsharing/orders/{out_order_no}?transaction_id=…``; 404 →
        ``not_found``."""
        if not channel_trade_no:
            raise BusinessError("invalid_request", "a split query needs the transaction_id")
        path = (
            f"{_SPLIT_ORDERS_PATH}/{quote(out_order_no, safe='')}"
            f"?transaction_id={quote(channel_trade_no, safe='')}"
        )
        try:
            _, payload = await self._call("GET", path, classify=classify_split_answer)
        except BusinessError as exc:
            if exc.code == "not_found":
                return SplitState(out_order_no, ChannelSplitStatus.not_found, raw=exc.raw)
            raise
        return self._checked_split(payload, out_order_no)

    async def _add_receiver(self, receiver: SplitReceiver) -> None:
        creds = self.credentials
        merchant = receiver.type is SplitReceiverType.merchant
        body: dict[str, Any] = {
            "appid": creds.appid,
            "type": protocol.SPLIT_RECEIVER_TYPES[receiver.type.value],
            "account": receiver.account,
            "relation_type": (
                creds.split_relation_merchant if merchant else creds.split_relation_person
            ),
        }
        if receiver.name:
            body["name"] = protocol.encrypt_sensitive(self._platform_key, receiver.name)
        try:
            await self._call("POST", _SPLIT_RECEIVERS_PATH, body, classify=classify_split_answer)
        except BusinessError as exc:
            if "已存在" not in exc.message:  # an existing relation is what we wanted
                raise

    def _split_receiver(self, receiver: SplitReceiver) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "type": protocol.SPLIT_RECEIVER_TYPES[receiver.type.value],
            "account": receiver.account,
            "amount": receiver.amount,
            "description": receiver.description[:_SPLIT_DESCRIPTION_MAX] or "分账",
        }
        if receiver.name and receiver.type is SplitReceiverType.person:
            # Optional for a person; when sent WeChat checks it against their real name.
            wire["name"] = protocol.encrypt_sensitive(self._platform_key, receiver.name)
        return wire

    def _checked_split(self, payload: Any, out_order_no: str) -> SplitState:
        if not isinstance(payload, dict):
            raise UnknownOutcome("malformed_response", "split answer has no body", raw=payload)
        if payload.get("out_order_no") != out_order_no:
            raise UnknownOutcome("malformed_response", "answer is about another split")
        try:
            return self._split_state(payload)
        except ValueError as exc:
            raise UnknownOutcome("malformed_response", str(exc), raw=payload) from exc

    def _split_state(self, split: Mapping[str, Any]) -> SplitState:
        """A split order (create or query answer) → SplitState. Details paid to this merchant
        itself (what ``unfreeze_unsplit`` released) are not receivers of the split."""
        receivers = split.get("receivers") or []
        if not isinstance(receivers, list) or not all(isinstance(r, dict) for r in receivers):
            raise ValueError("split receivers are malformed")
        own = self.credentials.mchid
        details = [
            r for r in receivers if not (r.get("type") == "MERCHANT_ID" and r.get("account") == own)
        ]
        status = protocol.split_status(
            str(split.get("state", "")), [str(r.get("result", "")) for r in details]
        )
        closed = [r for r in details if r.get("result") == "CLOSED"]
        failure_code = failure_message = None
        if closed:
            reasons = [str(r.get("fail_reason") or "CLOSED") for r in closed]
            failure_code = reasons[0] if status is ChannelSplitStatus.failed else "PARTIALLY_CLOSED"
            failure_message = "; ".join(
                f"{r.get('account')}: {protocol.SPLIT_FAIL_REASONS.get(reason, reason)}"
                for r, reason in zip(closed, reasons, strict=True)
            )
        order_id = split.get("order_id")
        results = tuple(
            SplitReceiverResult(
                account=str(r.get("account", "")),
                status=protocol.SPLIT_RESULT_STATUS[str(r.get("result"))],
                amount=r["amount"] if isinstance(r.get("amount"), int) else None,
                failure_code=str(r["fail_reason"]) if r.get("fail_reason") else None,
            )
            for r in details
        )
        return SplitState(
            out_order_no=str(split["out_order_no"]),
            status=status,
            channel_split_no=str(order_id) if order_id else None,
            failure_code=failure_code,
            failure_message=failure_message,
            receivers=results,
            raw=dict(split),
        )

    # ------------------------------------------------------------ notifications
    def _open(self, headers: Mapping[str, str], body: bytes) -> tuple[dict[str, Any], str, Any]:
        """Verify a notification's signature and decrypt its resource: (envelope, id, the
        decrypted JSON resource)."""
        try:
            protocol.verify_response(headers, body, public_keys=self._platform_keys)
        except protocol.ProtocolError as exc:
            raise InvalidNotification(exc.code, exc.message) from exc
        try:
            envelope = json.loads(body)
        except ValueError:
            raise InvalidNotification("malformed", "notification is not JSON") from None
        if not isinstance(envelope, dict):
            raise InvalidNotification("malformed", "notification is not a JSON object")
        event_key, resource = envelope.get("id"), envelope.get("resource")
        if not isinstance(event_key, str) or not event_key or not isinstance(resource, dict):
            raise InvalidNotification("malformed", "notification lacks id or resource")
        if envelope.get("resource_type", "encrypt-resource") != "encrypt-resource":
            raise InvalidNotification("malformed", "unexpected resource_type")
        try:
            plaintext = protocol.decrypt_resource(self.credentials.apiv3_key, resource)
            decrypted = json.loads(plaintext)
        except protocol.ProtocolError as exc:
            raise InvalidNotification(exc.code, exc.message) from exc
        except ValueError:
            raise InvalidNotification("malformed", "resource is not JSON") from None
        return envelope, event_key, decrypted

    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Payment (``TRANSACTION.SUCCESS``), refund (``REFUND.*``) and payout
        (``MCHTRANSFER.BILL.FINISHED``) notifications."""
        creds = self.credentials
        envelope, event_key, transaction = self._open(headers, body)
        event_type = envelope.get("event_type")
        if isinstance(event_type, str) and event_type.startswith("REFUND."):
            return self._refund_notification(event_key, event_type, envelope, transaction)
        if event_type == protocol.TRANSFER_EVENT:
            return self._transfer_notification(event_key, envelope, transaction)
        if not isinstance(transaction, dict) or "trade_state" not in transaction:
            raise InvalidNotification("unsupported_event", "resource is not a transaction")
        if transaction.get("mchid") != creds.mchid or transaction.get("appid") != creds.appid:
            raise InvalidNotification("wrong_merchant", "notification is for another merchant")
        try:
            state = self._state(transaction)
        except ValueError as exc:
            raise InvalidNotification("malformed", str(exc)) from exc
        return Notification(
            event_key=event_key, payment=state, raw={**envelope, "resource": transaction}
        )

    def _refund_notification(
        self, event_key: str, event_type: str, envelope: Mapping[str, Any], refund: Any
    ) -> Notification:
        """A decrypted ``REFUND.*`` resource → Notification(refund=…)."""
        announced = protocol.REFUND_EVENTS.get(event_type)
        if announced is None:
            raise InvalidNotification("unsupported_event", f"unknown event {event_type!r}")
        if not isinstance(refund, dict) or "refund_status" not in refund:
            raise InvalidNotification("unsupported_event", "resource is not a refund")
        if refund.get("mchid") != self.credentials.mchid:
            raise InvalidNotification("wrong_merchant", "notification is for another merchant")
        if refund.get("refund_status") != announced:
            raise InvalidNotification("malformed", "refund_status contradicts event_type")
        try:
            state = self._refund_state(refund, status_field="refund_status")
        except ValueError as exc:
            raise InvalidNotification("malformed", str(exc)) from exc
        if state.out_trade_no is None:
            raise InvalidNotification("malformed", "refund lacks out_trade_no")
        return Notification(event_key=event_key, refund=state, raw={**envelope, "resource": refund})

    def ack(self, ok: bool) -> Ack:
        if ok:
            return Ack(204, b"", "application/json")
        body = protocol.encode_json({"code": "FAIL", "message": "notification not processed"})
        return Ack(500, body, "application/json")

    # ------------------------------------------------------------ decoding
    @staticmethod
    def _state(transaction: Mapping[str, Any]) -> PaymentState:
        """A transaction object (query answer or decrypted notification) → PaymentState."""
        out_trade_no = transaction.get("out_trade_no")
        if not isinstance(out_trade_no, str) or not out_trade_no:
            raise ValueError("transaction lacks out_trade_no")
        trade_state = str(transaction.get("trade_state", ""))
        status = protocol.map_trade_state(trade_state)
        amount = transaction.get("amount") or {}
        total = amount.get("total") if isinstance(amount, dict) else None
        currency = amount.get("currency") if isinstance(amount, dict) else None
        success_time = transaction.get("success_time")
        paid_at = (
            protocol.parse_rfc3339(success_time)
            if isinstance(success_time, str) and success_time
            else None
        )
        transaction_id = transaction.get("transaction_id")
        failed = status is ChannelPaymentStatus.failed
        return PaymentState(
            out_trade_no=out_trade_no,
            status=status,
            channel_trade_no=str(transaction_id) if transaction_id else None,
            amount=int(total) if isinstance(total, int) else None,
            currency=str(currency) if currency else ("CNY" if total is not None else None),
            paid_at=paid_at,
            failure_code=trade_state if failed else None,
            failure_message=str(transaction.get("trade_state_desc") or "") or None
            if failed
            else None,
            raw=dict(transaction),
        )

    # ------------------------------------------------------------ payment codes (付款码支付)
    async def _codepay(self, request: CreatePayment) -> CreatedPayment:
        """``POST /v3/pay/transactions/codepay``: charge the customer's payment code. SUCCESS →
        ``succeeded``; USERPAYING → ``pending`` (the customer confirms; query, then reverse if
        it stays unknown); PAYERROR and refusals → BusinessError. A repeat of a charge WeChat
        already took (ORDER_PAID) answers the order's current state."""
        creds = self.credentials
        if request.currency != "CNY":
            raise BusinessError("unsupported_currency", "wechatpay only takes CNY")
        if request.amount <= 0:
            raise BusinessError("invalid_amount", "amount must be a positive number of fen")
        auth_code = str(request.customer.get("auth_code") or "")
        if not protocol.is_payment_code(auth_code):
            raise BusinessError("invalid_auth_code", "not a WeChat payment code")
        scene: dict[str, Any] = {
            "store_info": {
                "out_id": str(request.customer.get("store_id") or protocol.DEFAULT_STORE_OUT_ID)
            }
        }
        if request.customer.get("device_id"):
            scene["device_id"] = str(request.customer["device_id"])
        if request.client_ip:
            scene["device_ip"] = request.client_ip
        body: dict[str, Any] = {
            "appid": creds.appid,
            "mchid": creds.mchid,
            "description": request.subject[:_DESCRIPTION_MAX],
            "out_trade_no": request.out_trade_no,
            "payer": {"auth_code": auth_code},
            "amount": {"total": request.amount, "currency": request.currency},
            "scene_info": scene,
        }
        if request.profit_sharing:
            body["settle_info"] = {"profit_sharing": True}
        try:
            status, payload = await self._call(
                "POST", protocol.CODEPAY_PATH, body, classify=classify_codepay_answer
            )
        except BusinessError as exc:
            if exc.code != "already_paid":
                raise
            state = await self.query_payment(request.out_trade_no)
            return CreatedPayment(state.channel_trade_no, None, status=state.status, raw=state.raw)
        return self._codepay_answer(status, payload, request)

    def _codepay_answer(self, status: int, payload: Any, request: CreatePayment) -> CreatedPayment:
        trade_state = str(payload.get("trade_state", "")) if isinstance(payload, dict) else ""
        if trade_state == "USERPAYING" or (status == 202 and not trade_state):
            # Only trade_state comes back while the customer has not confirmed.
            return CreatedPayment(None, None, status=ChannelPaymentStatus.pending, raw=payload)
        if not isinstance(payload, dict) or payload.get("out_trade_no") != request.out_trade_no:
            raise UnknownOutcome("malformed_response", "codepay answer is about another order")
        try:
            state = self._state(payload)
        except ValueError as exc:
            raise UnknownOutcome("malformed_response", str(exc), raw=payload) from exc
        if state.amount is not None and state.amount != request.amount:
            raise UnknownOutcome("malformed_response", "codepay answer has another amount")
        if state.status is ChannelPaymentStatus.failed:
            raise BusinessError("payment_failed", state.failure_message or trade_state, raw=payload)
        return CreatedPayment(state.channel_trade_no, None, status=state.status, raw=payload)

    async def reverse_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> base.ReversedPayment:
        """``POST /v3/pay/transactions/out-trade-no/{no}/reverse`` (``appid``, ``mchid``): an
        unpaid order is closed, a paid one refunded to the customer. An order WeChat never got
        has nothing to reverse. Raises UnknownOutcome/RetryableError until WeChat confirms."""
        creds = self.credentials
        body = {"appid": creds.appid, "mchid": creds.mchid}
        try:
            _, payload = await self._call(
                "POST", protocol.reverse_path(out_trade_no), body, classify=classify_codepay_answer
            )
        except BusinessError as exc:
            if exc.code == "order_not_exist":
                return base.ReversedPayment(out_trade_no, refunded=False, raw=exc.raw)
            raise
        if isinstance(payload, dict) and payload.get("out_trade_no") not in (None, out_trade_no):
            raise UnknownOutcome("malformed_response", "reverse answer is about another order")
        return base.ReversedPayment(out_trade_no, refunded=None, raw=payload)

    # ------------------------------------------------------------ statement (交易账单)
    # ``GET /v3/bill/tradebill`` answers a download URL (valid 30 s) and the SHA1 of the bill;
    # the download is a signed GET whose answer is the file itself, NOT signed (the official
    # SDK skips verification for it), so the hash is what proves the file: it is taken over
    # the uncompressed bill.
    statement_timezone: ClassVar[dt.tzinfo] = bill.CHINA

    async def statement(self, day: dt.date) -> list[base.StatementLine]:
        """The day's (China time) ALL trade bill: every payment and refund with its fee. A day
        WeChat has no bill for (NO_STATEMENT_EXIST: nothing happened) is ``[]``; today's or a
        bill still being made (STATEMENT_CREATING, until ~10:00 the next day) raises
        RetryableError ``statement_not_ready``."""
        query = f"bill_date={day:%Y-%m-%d}&bill_type=ALL&tar_type={bill.TAR_GZIP}"
        try:
            _, answer = await self._call(
                "GET", f"{bill.BILL_PATH}?{query}", classify=self._classify_bill_answer
            )
        except BusinessError as exc:
            if exc.code == "no_statement":
                return []
            raise
        if not isinstance(answer, dict) or not isinstance(answer.get("download_url"), str):
            raise UnknownOutcome("malformed_response", "tradebill answer without download_url")
        if answer.get("hash_type") != bill.HASH_TYPE or not answer.get("hash_value"):
            raise UnknownOutcome("malformed_response", "tradebill answer without a SHA1 hash")
        data = bill.unpack(await self._download(answer["download_url"]), bill.TAR_GZIP)
        if bill.sha1_hex(data) != str(answer["hash_value"]).lower():
            raise UnknownOutcome("bill_hash_mismatch", "downloaded bill does not match its SHA1")
        try:
            return bill.statement_lines(bill.parse(data).rows)
        except bill.BillError as exc:
            raise UnknownOutcome("unparseable_bill", str(exc)) from exc

    @staticmethod
    def _classify_bill_answer(status: int, payload: Any) -> ChannelError:
        code = str(payload.get("code", "")) if isinstance(payload, dict) else ""
        message = str(payload.get("message", "")) if isinstance(payload, dict) else ""
        if code == "NO_STATEMENT_EXIST":
            return BusinessError("no_statement", message, raw=payload)
        if code == "STATEMENT_CREATING":
            return RetryableError("statement_not_ready", message, raw=payload)
        return classify_answer(status, payload)

    async def _download(self, url: str) -> bytes:
        """The signed GET of a bill download URL. Our signature only ever goes to our own
        gateway: a URL elsewhere is refused."""
        creds = self.credentials
        if not url.startswith(creds.gateway + "/"):
            raise UnknownOutcome("malformed_response", f"download_url {url!r} is off the gateway")
        path = url[len(creds.gateway) :]
        headers = {
            "Accept": "application/json",
            "User-Agent": "paymux-wechatpay/1",
            "Authorization": protocol.build_authorization(
                mchid=creds.mchid, serial_no=creds.merchant_serial_no,
                private_key=self._private_key, method="GET", path_with_query=path, body=b"",
            ),
        }  # fmt: skip
        try:
            response = await self._http.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise classify_transport_error(exc) from exc
        if response.status_code != 200:
            try:
                payload: Any = response.json()
            except ValueError:
                payload = None
            raise classify_answer(response.status_code, payload)
        return response.content

"""Alipay OpenAPI (RSA2; public-key or public-key certificate mode) adapter.

- ``alipay_qr``: ``alipay.trade.precreate`` over HTTP → a QR code for the Alipay app to scan.
- ``alipay_page`` / ``alipay_wap``: no server call; a signed GET URL of the gateway
  (``alipay.trade.page.pay`` / ``alipay.trade.wap.pay``) the customer's browser is sent to.
- ``alipay_app``: the signed ``alipay.trade.app.pay`` order string for the Alipay app SDK.

Alipay only creates the trade when the customer scans the QR code or opens the cashier, so a
query before that answers ``ACQ.TRADE_NOT_EXIST`` (→ ``not_found``) even though the create
"succeeded"; the order stays payable until ``time_expire``, which is therefore always sent.

Refunds: ``alipay.trade.refund`` (``out_request_no`` = our refund id, so a repeat can never
refund twice) and ``alipay.trade.fastpay.refund.query``. Alipay sends no refund notification of
its own: a refund changes the *trade*, which it notifies as ``trade_status_sync`` (partial →
``TRADE_SUCCESS``, full → ``TRADE_CLOSED``) carrying ``out_biz_no`` / ``refund_fee`` /
``gmt_refund``. :meth:`AlipayAdapter.parse_notification` keeps such a trade a *paid* payment
and adds the refund as ``Notification.refund``.

Payouts (:class:`~paymux.channels.base.TransferCapable`): ``alipay.fund.trans.uni.transfer`` /
``alipay.fund.trans.common.query``, which Alipay serves only to apps in public-key
*certificate* mode (credentials ``app_cert``, ``alipay_cert``, ``alipay_root_cert``).
Profit sharing (:class:`~paymux.channels.base.SplitCapable`):
``alipay.trade.royalty.relation.bind`` then ``alipay.trade.order.settle`` (sync), read back
with ``alipay.trade.order.settle.query``.

Every sync response's signature is verified; a response we cannot verify is an
:class:`~paymux.channels.base.UnknownOutcome`. Errors are classified by :func:`classify`, with
per-API tables (:data:`REFUND_ERRORS`, …) for the sub_codes an API documents.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from paymux.channels import base
from paymux.channels.alipay import bill
from paymux.channels.alipay import protocol as p
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
from paymux.kit import clock

PRODUCTION_GATEWAY = "https://openapi.alipay.com/gateway.do"
SUBJECT_MAX = 256
REFUND_REASON_MAX = 256
ORDER_TITLE_MAX = 128
REMARK_MAX = 200
ROYALTY_DESC_MAX = 128
IDENTITY_TYPES: Mapping[PayeeType, str] = {
    PayeeType.alipay_login_id: "ALIPAY_LOGON_ID",
    PayeeType.alipay_user_id: "ALIPAY_USER_ID",
    PayeeType.alipay_open_id: "ALIPAY_OPEN_ID",
}
"""``payee_info.identity_type`` per payee type."""


ROYALTY_LINE_STATUS: dict[str, ChannelSplitStatus] = {
    "SUCCESS": ChannelSplitStatus.succeeded,
    "FAIL": ChannelSplitStatus.failed,
    "PROCESSING": ChannelSplitStatus.pending,
}
"""A ``royalty_detail_list`` line's ``state`` → its receiver's normalised status."""


class AlipayCredentials(BaseModel):
    """One Alipay app, in public-key mode or in public-key *certificate* mode (公钥证书: the
    three certificate fields instead of ``alipay_public_key``). Alipay requires certificate
    mode for payouts (``alipay.fund.trans.uni.transfer``)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    app_id: str = Field(min_length=1, max_length=32)
    app_private_key: str = Field(min_length=1)
    """The app's RSA private key (PEM, or Alipay's bare base64 PKCS#8)."""
    alipay_public_key: str | None = None
    """Alipay's public key for this app (PEM, or bare base64), verifies responses/notifies.
    Public-key mode only."""
    app_cert: str | None = None
    """Certificate mode: the app's public-key certificate (``appCertPublicKey_<app_id>.crt``)."""
    alipay_cert: str | None = None
    """Certificate mode: Alipay's public-key certificate (``alipayCertPublicKey_RSA2.crt``)."""
    alipay_root_cert: str | None = None
    """Certificate mode: Alipay's root certificate bundle (``alipayRootCert.crt``)."""
    gateway: str = PRODUCTION_GATEWAY
    seller_id: str | None = None
    """The merchant's PID (2088…); when set, notifications must carry it."""
    app_auth_token: str | None = Field(default=None, min_length=1, max_length=128)
    """ISV mode (第三方应用授权): the sub-merchant's authorisation of this (the ISV's) app, sent
    as the common parameter ``app_auth_token`` on every call."""
    auth_app_id: str | None = Field(default=None, min_length=1, max_length=32)
    """ISV mode: the sub-merchant's own app (``auth_app_id`` of the token); its notifications
    must name it."""
    mini_app_id: str | None = Field(default=None, min_length=1, max_length=32)
    """The mini-program where ``alipay_jsapi`` payments are made (``op_app_id``); the
    sub-merchant's app in ISV mode, else ``app_id``, when not set."""

    @model_validator(mode="after")
    def _isv(self) -> AlipayCredentials:
        if self.app_auth_token and not self.auth_app_id:
            raise ValueError("ISV mode (app_auth_token) needs the sub-merchant's auth_app_id")
        if self.auth_app_id and not self.app_auth_token:
            raise ValueError("auth_app_id is only for ISV mode (with app_auth_token)")
        return self

    @field_validator("app_private_key")
    @classmethod
    def _private_key(cls, value: str) -> str:
        p.load_private_key(value)  # ProtocolError is a ValueError → ValidationError
        return value

    @field_validator("alipay_public_key")
    @classmethod
    def _public_key(cls, value: str | None) -> str | None:
        if value:
            p.load_public_key(value)
        return value or None

    @field_validator("app_cert", "alipay_cert")
    @classmethod
    def _certificate(cls, value: str | None) -> str | None:
        if value:
            p.certificate_key(value, "certificate")
        return value or None

    @field_validator("alipay_root_cert")
    @classmethod
    def _root(cls, value: str | None) -> str | None:
        if value:
            p.root_cert_sn(value)
        return value or None

    @model_validator(mode="after")
    def _mode(self) -> AlipayCredentials:
        certs = (self.app_cert, self.alipay_cert, self.alipay_root_cert)
        if any(certs) and not all(certs):
            raise ValueError("certificate mode needs app_cert, alipay_cert and alipay_root_cert")
        if not any(certs) and not self.alipay_public_key:
            raise ValueError("alipay_public_key (or the three certificates) is required")
        if self.app_cert:
            app_key, _ = p.certificate_key(self.app_cert, "app_cert")
            own = p.load_private_key(self.app_private_key).public_key()
            if app_key.public_numbers() != own.public_numbers():
                raise ValueError("app_cert does not certify the key of app_private_key")
        return self

    @property
    def cert_mode(self) -> bool:
        return self.app_cert is not None

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("gateway must be an http(s) URL")
        if parts.query or parts.fragment:
            raise ValueError("gateway must not carry a query or fragment")
        return value

    @field_validator("seller_id")
    @classmethod
    def _seller(cls, value: str | None) -> str | None:
        return value or None


# ---------------------------------------------------------------- error classification
_UNKNOWN_SUB_CODES = frozenset(
    {
        "ACQ.SYSTEM_ERROR",
        "aop.ACQ.SYSTEM_ERROR",
        "AQC.SYSTEM_ERROR",  # sic: listed so in Alipay's refund/cancel error tables
        "isp.unknow-error",
        "isp.unknown-error",
    }
)
# Refusals by the merchant account's own quota or risk status (alipay.trade.precreate/create/
# pay/page/wap error tables): another channel account may take the payment.
_ROUTABLE_SUB_CODES = {
    "ACQ.BEYOND_PAY_RESTRICTION": "channel_limit",  # 商户收款额度超限
    "ACQ.BEYOND_PER_RECEIPT_RESTRICTION": "channel_limit",  # 商户收款金额超过月限额
    "ACQ.MERCHANT_PERM_RECEIPT_DAY_LIMIT": "channel_limit",
    "ACQ.MERCHANT_PERM_RECEIPT_SINGLE_LIMIT": "channel_limit",
    "ACQ.MERCHANT_PERM_RECEIPT_SUSPEND_LIMIT": "channel_risk_declined",
    "ACQ.SELLER_BEEN_BLOCKED": "channel_risk_declined",  # 商家账号被冻结
    "ACQ.PAYMENT_REQUEST_HAS_RISK": "channel_risk_declined",
}
_DEFAULT_BUSINESS_CODES = {
    "20001": "insufficient_authorization",
    "40001": "missing_parameter",
    "40002": "invalid_parameter",
    "40004": "business_failed",
    "40006": "insufficient_permissions",
}


def classify(code: str, sub_code: str, message: str, *, raw: Any = None) -> ChannelError:
    """The one table mapping an Alipay error answer to our error kinds.

    ======================================  =================================
    code / sub_code                          error
    ======================================  =================================
    20000 (ISP unknown), ACQ.SYSTEM_ERROR    UnknownOutcome (retry via query)
    40004 + quota/risk sub_code              RoutableDecline (another account may take it)
    40004 + sub_code                         BusinessError(sub_code)
    40001 / 40002 / 40006 / 20001            BusinessError(sub_code or kind)
    anything else                            UnknownOutcome
    ======================================  =================================

    Transport failures are classified in :meth:`AlipayAdapter._send`: connect refused or
    timed out → RetryableError; read timeout, 5xx, unparseable or unverifiable → UnknownOutcome.
    """
    if code == "20000" or sub_code in _UNKNOWN_SUB_CODES:
        return UnknownOutcome(sub_code or "isp_unknown_error", message, raw=raw)
    if code == "40004" and sub_code in _ROUTABLE_SUB_CODES:
        return RoutableDecline(_ROUTABLE_SUB_CODES[sub_code], f"{sub_code}: {message}", raw=raw)
    if code in _DEFAULT_BUSINESS_CODES:
        return BusinessError(sub_code or _DEFAULT_BUSINESS_CODES[code], message, raw=raw)
    return UnknownOutcome("unexpected_response", f"code {code!r}: {message}", raw=raw)


ErrorTable = Mapping[str, tuple[type[ChannelError], str]]

# alipay.trade.refund's documented sub_codes ("业务错误码" of the API page). A refund is idempotent
# per ``out_request_no`` (our out_refund_no), so every answer that may hide an accepted refund is
# UnknownOutcome (ACQ.SYSTEM_ERROR: "请使用相同的参数再次调用"): the janitor queries and may send
# the same number again, which can never refund twice. The rest are final for this request.
REFUND_ERRORS: ErrorTable = {
    "ACQ.SELLER_BALANCE_NOT_ENOUGH": (BusinessError, "insufficient_balance"),
    # Exceeds what is left: REFUND_AMT_NOT_EQUAL_TOTAL ("退款金额超限"), and what Alipay answers
    # when out_request_no is set and the amount is too high (REASON_TRADE_REFUND_FEE_ERR).
    "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL": (BusinessError, "refund_exceeds_payment"),
    "ACQ.REASON_TRADE_REFUND_FEE_ERR": (BusinessError, "refund_exceeds_payment"),
    "ACQ.REFUND_FEE_ERROR": (BusinessError, "refund_exceeds_payment"),
    "ACQ.TRADE_NOT_EXIST": (BusinessError, "order_not_found"),
    "ACQ.TRADE_STATUS_ERROR": (BusinessError, "order_not_paid"),
    "ACQ.TRADE_HAS_FINISHED": (BusinessError, "refund_window_closed"),  # TRADE_FINISHED
    "ACQ.TRADE_NOT_ALLOW_REFUND": (BusinessError, "refund_not_allowed"),
    "ACQ.REASON_TRADE_BEEN_FREEZEN": (BusinessError, "order_frozen"),
    "ACQ.DISCORDANT_REPEAT_REQUEST": (BusinessError, "duplicate_out_refund_no"),
    "ACQ.INVALID_PARAMETER": (BusinessError, "invalid_request"),
}


# alipay.fund.trans.uni.transfer sub_codes (its "业务错误码", shared with the older
# toaccount.transfer). SYSTEM_ERROR: "无法判定准确的转账结果 … 采用相同的out_biz_no重发请求，或者
# … 查询" → UnknownOutcome; the same out_biz_no never pays twice.
TRANSFER_ERRORS: ErrorTable = {
    "SYSTEM_ERROR": (UnknownOutcome, "system_error"),
    "PAYER_BALANCE_NOT_ENOUGH": (BusinessError, "insufficient_balance"),
    "PAYEE_NOT_EXIST": (BusinessError, "payee_not_found"),
    "PAYEE_USER_INFO_ERROR": (BusinessError, "payee_name_mismatch"),
    "PAYEE_ACC_OCUPIED": (BusinessError, "payee_ambiguous"),  # login id of several accounts
    "PAYMENT_INFO_INCONSISTENCY": (BusinessError, "duplicate_out_biz_no"),
    "EXCEED_LIMIT_SM_MIN_AMOUNT": (BusinessError, "amount_below_minimum"),
    "EXCEED_LIMIT_SM_AMOUNT": (BusinessError, "limit_exceeded"),
    "EXCEED_LIMIT_PERSONAL_SM_AMOUNT": (BusinessError, "limit_exceeded"),
    "EXCEED_LIMIT_ENT_SM_AMOUNT": (BusinessError, "limit_exceeded"),
    "EXCEED_LIMIT_DM_MAX_AMOUNT": (BusinessError, "limit_exceeded"),
    "EXCEED_LIMIT_UNRN_DM_AMOUNT": (BusinessError, "limit_exceeded"),
    "PERM_AML_NOT_REALNAME_REV": (BusinessError, "payee_restricted"),
    "PERMIT_NON_BANK_LIMIT_PAYEE": (BusinessError, "payee_restricted"),
    "PAYER_STATUS_ERROR": (BusinessError, "payer_restricted"),
    "PAYCARD_UNABLE_PAYMENT": (BusinessError, "payer_restricted"),
    "PAYER_DATA_INCOMPLETE": (BusinessError, "payer_restricted"),
    "PERMIT_CHECK_PERM_LIMITED": (BusinessError, "payer_restricted"),
    "PERMIT_PAYER_LOWEST_FORBIDDEN": (BusinessError, "payer_restricted"),
    "PERMIT_PAYER_FORBIDDEN": (BusinessError, "payer_restricted"),
    "CERT_MISS_TRANS_LIMIT": (BusinessError, "payer_restricted"),
    "CERT_MISS_ACC_LIMIT": (BusinessError, "payer_restricted"),
    "PAYER_CERT_EXPIRED": (BusinessError, "payer_restricted"),
    "ACCOUNT_NOT_EXIST": (BusinessError, "payer_restricted"),
    "MEMO_REQUIRED_IN_TRANSFER_ERROR": (BusinessError, "remark_required"),
    "REMARK_HAS_SENSITIVE_WORD": (BusinessError, "remark_rejected"),
    "INVALID_PARAMETER": (BusinessError, "invalid_request"),
}


# alipay.trade.royalty.relation.bind / alipay.trade.order.settle sub_codes. Settle's own page:
# after a timeout, ACQ.SYSTEM_ERROR or ACQ.TRADE_SETTLE_ERROR "当前请求可能成功也可能失败。
# 请使用相同的参数再次重试调用" → UnknownOutcome; the same out_request_no settles at most once.
SPLIT_ERRORS: ErrorTable = {
    "ACQ.TRADE_SETTLE_ERROR": (UnknownOutcome, "settle_error"),
    "FREQUENCY_LIMIT": (UnknownOutcome, "frequency_limited"),
    "ACQ.TRADE_NOT_EXIST": (BusinessError, "order_not_found"),
    "ACQ.ALLOC_AMOUNT_VALIDATE_ERROR": (BusinessError, "split_exceeds_available"),
    "ACQ.ROYALTY_RECEIVER_INVALID": (BusinessError, "receiver_not_bound"),
    "ACQ.USER_NOT_EXIST": (BusinessError, "receiver_not_found"),
    "ACQ.RELATION_QUANTITY_LIMIT": (BusinessError, "receiver_limit_reached"),
    "ACQ.PRODUCT_UNSIGN": (BusinessError, "not_authorized"),
    "ACQ.RECEIVER_LIST_EMPTY": (BusinessError, "invalid_request"),
    "ACQ.INVALID_RECEIVER_TYPE": (BusinessError, "invalid_request"),
    "ACQ.INVALID_PARAMETER": (BusinessError, "invalid_request"),
}
SPLIT_RECEIVERS_MAX = 20


# alipay.trade.pay (条码支付) sub_codes. Every refusal below charged nothing: the customer may show
# another code (a new attempt). ACQ.SYSTEM_ERROR stays UnknownOutcome (classify's table).
PAY_CODE_ERRORS: ErrorTable = {
    "ACQ.PAYMENT_AUTH_CODE_INVALID": (BusinessError, "invalid_auth_code"),
    "ACQ.AUTH_CODE_INVALID": (BusinessError, "invalid_auth_code"),
    "ACQ.BUYER_BALANCE_NOT_ENOUGH": (BusinessError, "insufficient_balance"),
    "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH": (BusinessError, "insufficient_balance"),
    "ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR": (BusinessError, "limit_exceeded"),
    "ACQ.BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR": (BusinessError, "limit_exceeded"),
    "ACQ.PAYMENT_FAIL": (BusinessError, "payment_failed"),
    "ACQ.PAYMENT_REQUEST_HAS_RISK": (BusinessError, "payment_declined"),
    "ACQ.ERROR_BUYER_CERTIFY_LEVEL_LIMIT": (BusinessError, "payment_declined"),
    "ACQ.BUYER_ENABLE_STATUS_FORBID": (BusinessError, "payment_declined"),
    "ACQ.TRADE_HAS_SUCCESS": (BusinessError, "already_paid"),
    "ACQ.TRADE_HAS_CLOSE": (BusinessError, "order_closed"),
    "ACQ.TRADE_BUYER_NOT_MATCH": (BusinessError, "invalid_auth_code"),
    "ACQ.CONTEXT_INCONSISTENT": (BusinessError, "duplicate_out_trade_no"),
    "ACQ.TOTAL_FEE_EXCEED": (BusinessError, "invalid_amount"),
    "ACQ.INVALID_PARAMETER": (BusinessError, "invalid_request"),
}

# alipay.trade.cancel sub_codes. A cancel that may or may not have happened is UnknownOutcome:
# the gateway calls it again (cancelling twice is harmless).
CANCEL_ERRORS: ErrorTable = {
    "ACQ.TRADE_NOT_EXIST": (BusinessError, "order_not_exist"),
    "ACQ.REASON_TRADE_STATUS_INVALID": (UnknownOutcome, "cancel_refused"),
    "ACQ.TRADE_CANCEL_TIME_OUT": (BusinessError, "cancel_window_closed"),
    "ACQ.SELLER_BALANCE_NOT_ENOUGH": (UnknownOutcome, "insufficient_balance"),
    "ACQ.INVALID_PARAMETER": (BusinessError, "invalid_request"),
}
"""receiver_list takes at most 20 receivers per bind."""


def _backstop(timeout: httpx.Timeout) -> float | None:
    """A deadline over the whole exchange, for transports that do not enforce timeouts
    themselves (in-process ASGI transports)."""
    if timeout.read is None:
        return None
    return timeout.read + (timeout.connect or 0.0)


@base.register
class AlipayAdapter:
    name: ClassVar[str] = "alipay"
    methods: ClassVar[frozenset[str]] = frozenset(
        {"alipay_qr", "alipay_page", "alipay_wap", "alipay_app", p.BARCODE_METHOD}
    )
    currencies: ClassVar[frozenset[str]] = frozenset({"CNY"})
    credentials_model: ClassVar[type[BaseModel]] = AlipayCredentials
    production_hosts: ClassVar[frozenset[str]] = frozenset({"openapi.alipay.com"})
    """``openapi-sandbox.dl.alipaydev.com`` is Alipay's own sandbox: fine for test mode."""
    required_customer: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """No Alipay method here needs a customer identifier (``buyer_id`` is optional)."""
    payee_types: ClassVar[frozenset[PayeeType]] = frozenset(IDENTITY_TYPES)
    """Payouts reach an Alipay account by login id, user id (2088…) or open id."""
    payment_codes: ClassVar[tuple[base.PaymentCodeRule, ...]] = (
        base.PaymentCodeRule(p.BARCODE_METHOD, p.PAYMENT_CODE_LENGTHS, p.PAYMENT_CODE_PREFIXES),
    )
    barcode_terms: ClassVar[base.BarcodeTerms] = base.BarcodeTerms(
        p.BARCODE_POLL_SECONDS, p.BARCODE_REVERSE_AFTER_SECONDS
    )
    # JSAPI / mini-program payments (see ``_create_jsapi``): the payer must be named.
    methods = methods | {"alipay_jsapi"}
    required_customer = {**required_customer, "alipay_jsapi": ("buyer_id",)}

    def __init__(self, credentials: Mapping[str, Any], http: httpx.AsyncClient) -> None:
        try:
            self.credentials = AlipayCredentials.model_validate(dict(credentials))
        except ValidationError as exc:
            raise base.InvalidCredentials(f"alipay credentials: {exc.errors()[0]['msg']}") from None
        self.http = http
        creds = self.credentials
        self._private_key = p.load_private_key(creds.app_private_key)
        self._cert_params: dict[str, str] = {}
        self._alipay_cert_sn: str | None = None
        if creds.app_cert and creds.alipay_cert and creds.alipay_root_cert:
            _, app_cert_sn = p.certificate_key(creds.app_cert, "app_cert")
            self._alipay_key, self._alipay_cert_sn = p.certificate_key(
                creds.alipay_cert, "alipay_cert"
            )
            self._cert_params = {
                "app_cert_sn": app_cert_sn,
                "alipay_root_cert_sn": p.root_cert_sn(creds.alipay_root_cert),
            }
        else:
            assert creds.alipay_public_key is not None  # the model guarantees one or the other
            self._alipay_key = p.load_public_key(creds.alipay_public_key)
        if creds.app_auth_token:  # ISV mode: a common parameter of every request, like the SNs
            self._cert_params["app_auth_token"] = creds.app_auth_token

    # ------------------------------------------------------------ requests
    def _signed(
        self,
        method: str,
        biz: Mapping[str, Any],
        *,
        notify_url: str | None = None,
        return_url: str | None = None,
    ) -> dict[str, str]:
        params = p.request_params(
            app_id=self.credentials.app_id,
            method=method,
            biz_content=biz,
            notify_url=notify_url,
            return_url=return_url,
            extra=self._cert_params,
        )
        return p.sign_params(params, self._private_key)

    async def _send(self, params: Mapping[str, str]) -> httpx.Response:
        # Common parameters in the query string, biz_content in the form body (as the
        # official SDKs do).
        query = {k: v for k, v in params.items() if k != "biz_content"}
        form = {"biz_content": params["biz_content"]}
        request = self.http.post(
            self.credentials.gateway,
            params=query,
            data=form,
            headers={"Accept": "application/json"},
        )
        deadline = _backstop(self.http.timeout)
        try:
            if deadline is None:
                return await request
            return await asyncio.wait_for(request, timeout=deadline)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryableError("connect_failed", repr(exc)) from exc
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise UnknownOutcome("timeout", repr(exc)) from exc
        except httpx.HTTPError as exc:
            raise UnknownOutcome("transport_error", repr(exc)) from exc

    async def _call(
        self, method: str, biz: Mapping[str, Any], **extra: str | None
    ) -> p.RawResponse:
        """POST one request; return the verified response (any code)."""
        response = await self._send(self._signed(method, biz, **extra))
        if response.status_code >= 500:
            raise UnknownOutcome("http_5xx", f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise UnknownOutcome("http_status", f"HTTP {response.status_code}")
        try:
            text = response.content.decode("utf-8")
            raw = p.extract_response(text, method)
        except (UnicodeDecodeError, ValueError) as exc:
            raise UnknownOutcome("unparseable_response", str(exc)) from exc
        if not raw.sign or not p.verify(raw.text, raw.sign, self._alipay_key):
            why = "response signature invalid or missing"
            if raw.alipay_cert_sn and raw.alipay_cert_sn != self._alipay_cert_sn:
                why = f"signed with Alipay certificate {raw.alipay_cert_sn}: update alipay_cert"
            raise UnknownOutcome("unverifiable_response", why)
        return raw

    @staticmethod
    def _check(raw: p.RawResponse, errors: ErrorTable | None = None) -> dict[str, Any]:
        """The answer's data when it succeeded; otherwise the error it stands for (an API's own
        ``errors`` table first, then :func:`classify`)."""
        data = raw.data
        code = str(data.get("code", ""))
        if code == p.SUCCESS_CODE and raw.key != "error_response":
            return data
        sub_code = str(data.get("sub_code") or "")
        message = str(data.get("sub_msg") or data.get("msg") or "")
        if errors is not None and sub_code in errors and sub_code not in _UNKNOWN_SUB_CODES:
            kind, normalised = errors[sub_code]
            raise kind(normalised, f"{sub_code}: {message}", raw=data)
        raise classify(code, sub_code, message, raw=data)

    # ------------------------------------------------------------ payments
    def _biz(self, request: CreatePayment, product_code: str) -> dict[str, Any]:
        biz: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "total_amount": p.to_yuan(request.amount),
            "subject": request.subject[:SUBJECT_MAX],
            "product_code": product_code,
            "time_expire": p.format_time(request.expires_at),
        }
        if request.description:
            biz["body"] = request.description[:128]
        if self.credentials.seller_id:
            biz["seller_id"] = self.credentials.seller_id
        buyer_id = request.customer.get("buyer_id")
        if buyer_id:
            biz["buyer_id"] = str(buyer_id)
        return biz

    async def create_payment(self, request: CreatePayment) -> CreatedPayment:
        if request.method not in self.methods:
            raise BusinessError("unsupported_method", f"alipay does not offer {request.method}")
        if request.currency not in self.currencies:
            raise BusinessError("unsupported_currency", f"alipay does not take {request.currency}")
        if request.method == p.BARCODE_METHOD:
            return await self._pay_code(request)
        if request.method == "alipay_jsapi":
            return await self._create_jsapi(request)
        if request.method == "alipay_qr":
            return await self._precreate(request)
        if request.method == "alipay_app":
            params = self._signed(
                p.METHOD_APP_PAY,
                self._biz(request, p.PRODUCT_APP),
                notify_url=request.notify_url,
            )
            return CreatedPayment(
                channel_trade_no=None,
                next_action=NextAction(
                    NextActionType.sdk_params, params={"order_string": p.query_string(params)}
                ),
            )
        if request.method == "alipay_page":
            method, biz = p.METHOD_PAGE_PAY, self._biz(request, p.PRODUCT_PAGE)
        else:
            method, biz = p.METHOD_WAP_PAY, self._biz(request, p.PRODUCT_WAP)
            if request.return_url:
                biz["quit_url"] = request.return_url
        params = self._signed(
            method, biz, notify_url=request.notify_url, return_url=request.return_url
        )
        url = f"{self.credentials.gateway}?{p.query_string(params)}"
        return CreatedPayment(
            channel_trade_no=None, next_action=NextAction(NextActionType.redirect, url=url)
        )

    async def _precreate(self, request: CreatePayment) -> CreatedPayment:
        biz = self._biz(request, p.PRODUCT_QR)
        raw = await self._call(p.METHOD_PRECREATE, biz, notify_url=request.notify_url)
        data = self._check(raw)
        qr_code = data.get("qr_code")
        if data.get("out_trade_no") != request.out_trade_no or not isinstance(qr_code, str):
            raise UnknownOutcome("inconsistent_response", "precreate answer does not match")
        return CreatedPayment(
            channel_trade_no=None,
            next_action=NextAction(NextActionType.qr_code, code_url=qr_code),
            raw=data,
        )

    async def _create_jsapi(self, request: CreatePayment) -> CreatedPayment:
        """``alipay.trade.create`` (``product_code=JSAPI_PAY``) for the payer: ``buyer_id``
        (a 2088… user id; any other value is taken as the newer ``buyer_open_id``, which may
        also be given as ``customer.buyer_open_id``). Alipay makes the trade at once and
        answers its ``trade_no``, which the mini-program hands to ``my.tradePay``."""
        creds = self.credentials
        buyer = str(request.customer.get("buyer_id") or "")
        open_id = str(request.customer.get("buyer_open_id") or "")
        if not buyer and not open_id:
            raise BusinessError("customer_required", "alipay_jsapi needs customer.buyer_id")
        biz = self._biz(request, p.PRODUCT_JSAPI)
        biz.pop("buyer_id", None)
        if buyer and p.USER_ID.fullmatch(buyer):
            biz["buyer_id"] = buyer
        else:
            biz["buyer_open_id"] = open_id or buyer
        biz["op_app_id"] = creds.mini_app_id or creds.auth_app_id or creds.app_id
        raw = await self._call(p.METHOD_CREATE, biz, notify_url=request.notify_url)
        data = self._check(raw)
        trade_no = data.get("trade_no")
        if data.get("out_trade_no") != request.out_trade_no or not isinstance(trade_no, str):
            raise UnknownOutcome("inconsistent_response", "create answer does not match")
        return CreatedPayment(
            channel_trade_no=trade_no,
            next_action=NextAction(NextActionType.sdk_params, params={"tradeNO": trade_no}),
            raw=data,
        )

    async def query_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> PaymentState:
        raw = await self._call(p.METHOD_QUERY, {"out_trade_no": out_trade_no})
        try:
            data = self._check(raw)
        except BusinessError as exc:
            if exc.code == "ACQ.TRADE_NOT_EXIST":
                return PaymentState(out_trade_no, ChannelPaymentStatus.not_found, raw=raw.data)
            raise
        if data.get("out_trade_no") != out_trade_no:
            raise UnknownOutcome("inconsistent_response", "query answered for another order")
        try:
            status = p.map_trade_status(str(data.get("trade_status", "")))
            amount = p.to_fen(str(data["total_amount"])) if data.get("total_amount") else None
            paid_at = (
                p.parse_time(str(data["send_pay_date"]))
                if status is ChannelPaymentStatus.succeeded and data.get("send_pay_date")
                else None
            )
        except ValueError as exc:
            raise UnknownOutcome("unparseable_response", str(exc), raw=data) from exc
        return PaymentState(
            out_trade_no=out_trade_no,
            status=status,
            channel_trade_no=str(data["trade_no"]) if data.get("trade_no") else None,
            amount=amount,
            currency=p.CURRENCY,
            paid_at=paid_at,
            raw=data,
        )

    async def close_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> None:
        raw = await self._call(p.METHOD_CLOSE, {"out_trade_no": out_trade_no})
        try:
            self._check(raw)
            return
        except BusinessError as exc:
            if exc.code == "ACQ.TRADE_NOT_EXIST":
                return
            if exc.code != "ACQ.TRADE_STATUS_ERROR":
                raise
        # TRADE_STATUS_ERROR: the trade is paid, finished or already closed; ask which.
        state = await self.query_payment(out_trade_no)
        if state.status is ChannelPaymentStatus.succeeded:
            raise BusinessError("already_paid", "the order was paid", raw=state.raw)
        if state.status in (ChannelPaymentStatus.closed, ChannelPaymentStatus.not_found):
            return
        raise UnknownOutcome("close_refused", f"close refused while {state.status}")

    # ------------------------------------------------------------ refunds
    async def create_refund(self, request: CreateRefund) -> RefundState:
        """``alipay.trade.refund`` with ``out_request_no`` = our refund id (required by Alipay
        for partial refunds; we always send it, so every refund is idempotent per number).

        ``fund_change=Y`` means the money went back in this call → ``succeeded``. ``N`` is what
        Alipay answers to a repeated number (or a refund it has accepted but not executed):
        the refund query decides, once, at once → ``succeeded`` if it already shows
        ``REFUND_SUCCESS``, otherwise ``pending`` (the janitor asks again later)."""
        if request.currency != p.CURRENCY:
            raise BusinessError("unsupported_currency", "alipay only refunds CNY")
        if request.amount <= 0:
            raise BusinessError("invalid_amount", "refund amount must be a positive number of fen")
        if request.amount > request.total_amount:
            raise BusinessError("refund_exceeds_payment", "refund exceeds the order's amount")
        biz: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "refund_amount": p.to_yuan(request.amount),
            "out_request_no": request.out_refund_no,
        }
        if request.reason:
            biz["refund_reason"] = request.reason[:REFUND_REASON_MAX]
        raw = await self._call(p.METHOD_REFUND, biz)
        data = self._check(raw, REFUND_ERRORS)
        if data.get("out_trade_no") not in (None, request.out_trade_no):
            raise UnknownOutcome("inconsistent_response", "refund answered for another order")
        if data.get("fund_change") != p.FUND_CHANGED:
            try:
                state = await self.query_refund(request.out_refund_no, request.out_trade_no)
            except ChannelError:
                state = None
            if state is not None and state.status is ChannelRefundStatus.succeeded:
                return state
            # Accepted (code 10000): whatever the query said, the refund is not "not found".
            return RefundState(
                request.out_refund_no,
                ChannelRefundStatus.pending,
                out_trade_no=request.out_trade_no,
                raw=data,
            )
        try:
            refunded_at = (
                p.parse_time(str(data["gmt_refund_pay"])) if data.get("gmt_refund_pay") else None
            )
        except ValueError as exc:
            raise UnknownOutcome("unparseable_response", str(exc), raw=data) from exc
        # ``refund_fee`` is the trade's *total* refunded so far, not this refund's amount.
        return RefundState(
            out_refund_no=request.out_refund_no,
            status=ChannelRefundStatus.succeeded,
            out_trade_no=request.out_trade_no,
            refunded_at=refunded_at,
            raw=data,
        )

    async def query_refund(
        self, out_refund_no: str, out_trade_no: str, *, channel_refund_no: str | None = None
    ) -> RefundState:
        """``alipay.trade.fastpay.refund.query`` (``out_trade_no`` + ``out_request_no``).

        ``refund_status=REFUND_SUCCESS`` → ``succeeded``. An answer without ``refund_status``
        means, in Alipay's words, "the refund request was not received, or the refund did not
        succeed", and its remedy for both is the same: send the refund again with the same
        ``out_request_no`` and amount, which can never refund twice. The query cannot tell the
        two apart, so we answer ``not_found`` and the janitor does exactly that; a refund that
        is merely slow answers the repeat with ``fund_change=N`` and stays ``pending``.
        ``ACQ.TRADE_NOT_EXIST`` (no such trade, so no such refund) is ``not_found`` too."""
        biz = {
            "out_trade_no": out_trade_no,
            "out_request_no": out_refund_no,
            "query_options": ["gmt_refund_pay"],
        }
        raw = await self._call(p.METHOD_REFUND_QUERY, biz)
        try:
            data = self._check(raw)
        except BusinessError as exc:
            if exc.code == "ACQ.TRADE_NOT_EXIST":
                return RefundState(
                    out_refund_no,
                    ChannelRefundStatus.not_found,
                    out_trade_no=out_trade_no,
                    raw=raw.data,
                )
            raise
        if data.get("out_request_no") not in (None, "", out_refund_no) or data.get(
            "out_trade_no"
        ) not in (None, "", out_trade_no):
            raise UnknownOutcome("inconsistent_response", "answer is about another refund")
        try:
            status = p.map_refund_status(str(data.get("refund_status") or ""))
            succeeded = status is ChannelRefundStatus.succeeded
            amount = (
                p.to_fen(str(data["refund_amount"]))
                if succeeded and data.get("refund_amount")
                else None
            )
            refunded_at = (
                p.parse_time(str(data["gmt_refund_pay"]))
                if succeeded and data.get("gmt_refund_pay")
                else None
            )
        except ValueError as exc:
            raise UnknownOutcome("unparseable_response", str(exc), raw=data) from exc
        failed = status is ChannelRefundStatus.failed
        return RefundState(
            out_refund_no=out_refund_no,
            status=status,
            out_trade_no=out_trade_no,
            amount=amount,
            currency=p.CURRENCY if amount is not None else None,
            refunded_at=refunded_at,
            failure_code=str(data.get("error_code") or "REFUND_FAIL") if failed else None,
            failure_message="refund failed at alipay" if failed else None,
            raw=data,
        )

    # ------------------------------------------------------------ payouts
    async def create_transfer(self, request: CreateTransfer) -> TransferState:
        """``alipay.fund.trans.uni.transfer`` (TRANS_ACCOUNT_NO_PWD / DIRECT_TRANSFER) with
        ``out_biz_no`` = our payout id: repeating it pays at most once. Needs certificate-mode
        credentials, as Alipay does. No ``notify_url`` is sent: Alipay reports transfers
        through its own subscribed messages (alipay.fund.trans.order.changed), which this
        adapter does not parse; the query settles every ``pending``/unknown one."""
        if request.currency != p.CURRENCY:
            raise BusinessError("unsupported_currency", "alipay only pays out CNY")
        identity_type = IDENTITY_TYPES.get(request.payee_type)
        if identity_type is None:
            raise BusinessError(
                "unsupported_payee_type", f"alipay cannot pay a {request.payee_type}"
            )
        if request.amount < p.TRANSFER_MIN:
            raise BusinessError("amount_below_minimum", "alipay transfers start at 0.10 CNY")
        if request.payee_type is PayeeType.alipay_login_id and not request.payee_name:
            raise BusinessError("payee_name_required", "a login id payee needs the real name")
        self._require_cert_mode()
        payee: dict[str, str] = {"identity": request.payee_account, "identity_type": identity_type}
        if request.payee_name:
            payee["name"] = request.payee_name
        biz: dict[str, Any] = {
            "out_biz_no": request.out_biz_no,
            "trans_amount": p.to_yuan(request.amount),
            "product_code": p.PRODUCT_TRANSFER,
            "biz_scene": p.SCENE_TRANSFER,
            "payee_info": payee,
        }
        if request.remark:
            biz["order_title"] = request.remark[:ORDER_TITLE_MAX]
            biz["remark"] = request.remark[:REMARK_MAX]
        raw = await self._call(p.METHOD_TRANSFER, biz)
        data = self._check(raw, TRANSFER_ERRORS)
        return self._transfer_state(data, request.out_biz_no, amount=None)

    async def query_transfer(self, out_biz_no: str) -> TransferState:
        """``alipay.fund.trans.common.query`` by ``out_biz_no`` (+ product code and scene);
        ``ORDER_NOT_EXIST`` → ``not_found`` (then sending the same out_biz_no is safe)."""
        self._require_cert_mode()
        biz = {
            "out_biz_no": out_biz_no,
            "product_code": p.PRODUCT_TRANSFER,
            "biz_scene": p.SCENE_TRANSFER,
        }
        raw = await self._call(p.METHOD_TRANSFER_QUERY, biz)
        try:
            data = self._check(raw)
        except BusinessError as exc:
            if exc.code == "ORDER_NOT_EXIST":
                return TransferState(out_biz_no, ChannelTransferStatus.not_found, raw=raw.data)
            raise
        amount_text = data.get("trans_amount")
        try:
            amount = p.to_fen(str(amount_text)) if amount_text else None
        except ValueError as exc:
            raise UnknownOutcome("unparseable_response", str(exc), raw=data) from exc
        return self._transfer_state(data, out_biz_no, amount=amount)

    def _require_cert_mode(self) -> None:
        if not self.credentials.cert_mode:
            raise BusinessError(
                "cert_mode_required",
                "alipay pays out only to apps in public-key certificate mode "
                "(app_cert, alipay_cert, alipay_root_cert)",
            )

    @staticmethod
    def _transfer_state(
        data: Mapping[str, Any], out_biz_no: str, *, amount: int | None
    ) -> TransferState:
        if data.get("out_biz_no") not in (None, out_biz_no):
            raise UnknownOutcome("inconsistent_response", "answer is about another transfer")
        wire = str(data.get("status") or "")
        try:
            status = p.map_transfer_status(wire)
            when = data.get("trans_date") or data.get("pay_date")
            finished_at = (
                p.parse_time(str(when))
                if status is ChannelTransferStatus.succeeded and when
                else None
            )
        except ValueError as exc:
            raise UnknownOutcome("unparseable_response", str(exc), raw=dict(data)) from exc
        failed = status is ChannelTransferStatus.failed
        order_id = data.get("order_id")
        return TransferState(
            out_biz_no=out_biz_no,
            status=status,
            channel_transfer_no=str(order_id) if order_id else None,
            amount=amount,
            finished_at=finished_at,
            failure_code=str(data.get("error_code") or wire) if failed else None,
            failure_message=(str(data.get("fail_reason") or "") or None) if failed else None,
            raw=dict(data),
        )

    # ------------------------------------------------------------ profit sharing
    async def create_split(self, request: CreateSplit) -> SplitState:
        """Bind the receivers (``alipay.trade.royalty.relation.bind``: binding a bound receiver
        again succeeds), then ``alipay.trade.order.settle`` with ``out_request_no`` = our
        split id, ``royalty_mode=sync`` and ``royalty_finish`` when ``finish``. A settle may
        still fail per receiver (e.g. the seller's balance), so its result comes from one
        ``alipay.trade.order.settle.query``: see :meth:`query_split`."""
        if not request.receivers or len(request.receivers) > SPLIT_RECEIVERS_MAX:
            raise BusinessError("invalid_request", "1 to 20 receivers per alipay split")
        if any(r.amount <= 0 for r in request.receivers):
            raise BusinessError("invalid_amount", "every receiver needs a positive amount")
        if not request.channel_trade_no:
            raise BusinessError("invalid_request", "alipay splits need the trade_no")
        entities = [self._royalty_entity(r) for r in request.receivers]
        bind = await self._call(
            p.METHOD_ROYALTY_BIND,
            {"receiver_list": entities, "out_request_no": _bind_request_no(request)},
        )
        bound = self._check(bind, SPLIT_ERRORS)
        if bound.get("result_code") != "SUCCESS":
            raise BusinessError(
                "receiver_bind_failed", f"result_code {bound.get('result_code')!r}", raw=bound
            )
        biz: dict[str, Any] = {
            "out_request_no": request.out_order_no,
            "trade_no": request.channel_trade_no,
            "royalty_parameters": [
                {
                    "royalty_type": p.ROYALTY_TRANSFER,
                    "trans_in_type": entity["type"],
                    "trans_in": entity["account"],
                    "amount": p.to_yuan(receiver.amount),
                    "desc": receiver.description[:ROYALTY_DESC_MAX],
                }
                for receiver, entity in zip(request.receivers, entities, strict=True)
            ],
            "royalty_mode": "sync",
        }
        if request.finish:
            biz["extend_params"] = {"royalty_finish": "true"}
        settled = self._check(await self._call(p.METHOD_SETTLE, biz), SPLIT_ERRORS)
        if settled.get("trade_no") not in (None, request.channel_trade_no):
            raise UnknownOutcome("inconsistent_response", "settle answered for another trade")
        settle_no = str(settled["settle_no"]) if settled.get("settle_no") else None
        try:
            state = await self.query_split(
                request.out_order_no, request.out_trade_no, request.channel_trade_no
            )
        except ChannelError:
            state = None
        if state is None or state.status is ChannelSplitStatus.not_found:
            # Accepted (code 10000) but not yet visible: the janitor asks again.
            return SplitState(
                request.out_order_no, ChannelSplitStatus.pending, settle_no, raw=settled
            )
        return state

    async def query_split(
        self, out_order_no: str, out_trade_no: str, channel_trade_no: str
    ) -> SplitState:
        """``alipay.trade.order.settle.query`` by ``out_request_no`` + ``trade_no``; the
        ``transfer`` lines of ``royalty_detail_list`` decide: all SUCCESS → ``succeeded``, all
        FAIL → ``failed``, any PROCESSING → ``pending``, some SUCCESS and some FAIL →
        ``partial`` (``receivers`` says which; a failed line's money stays with the seller).
        No such trade, or an answer without lines, → ``not_found``."""
        biz = {"out_request_no": out_order_no, "trade_no": channel_trade_no}
        raw = await self._call(p.METHOD_SETTLE_QUERY, biz)
        try:
            data = self._check(raw, SPLIT_ERRORS)
        except BusinessError as exc:
            if exc.code == "order_not_found":
                return SplitState(out_order_no, ChannelSplitStatus.not_found, raw=raw.data)
            raise
        if data.get("out_request_no") not in (None, "", out_order_no):
            raise UnknownOutcome("inconsistent_response", "answer is about another split")
        details = data.get("royalty_detail_list") or []
        if not isinstance(details, list):
            raise UnknownOutcome("unparseable_response", "royalty_detail_list is not a list")
        lines = [
            d for d in details
            if isinstance(d, dict) and d.get("operation_type", p.ROYALTY_TRANSFER) == "transfer"
        ]  # fmt: skip
        if not lines:
            return SplitState(out_order_no, ChannelSplitStatus.not_found, raw=data)
        states = {str(d.get("state") or "") for d in lines}
        if not states <= p.ROYALTY_STATES:
            raise UnknownOutcome("unparseable_response", f"royalty states {sorted(states)}")
        failures = [d for d in lines if d.get("state") == "FAIL"]
        failure_code = str(failures[0].get("error_code") or "FAIL") if failures else None
        failure_message = (str(failures[0].get("error_desc") or "") or None) if failures else None
        if states == {"SUCCESS"}:
            status = ChannelSplitStatus.succeeded
        elif states == {"FAIL"}:
            status = ChannelSplitStatus.failed
        elif "PROCESSING" in states:
            status = ChannelSplitStatus.pending
        else:
            status = ChannelSplitStatus.partial
        try:
            results = tuple(
                SplitReceiverResult(
                    account=str(d.get("trans_in") or ""),
                    status=ROYALTY_LINE_STATUS[str(d["state"])],
                    amount=p.to_fen(str(d["amount"])) if d.get("amount") else None,
                    failure_code=str(d["error_code"]) if d.get("error_code") else None,
                )
                for d in lines
            )
        except ValueError as exc:
            raise UnknownOutcome("unparseable_response", str(exc)) from exc
        return SplitState(
            out_order_no=out_order_no,
            status=status,
            channel_split_no=str(data["settle_no"]) if data.get("settle_no") else None,
            failure_code=failure_code,
            failure_message=failure_message,
            raw=data,
            receivers=results,
        )

    @staticmethod
    def _royalty_entity(receiver: SplitReceiver) -> dict[str, str]:
        """A receiver as a ``receiver_list`` entry: a company is bound by user id; a person by
        user id when the account is one (2088…), else by login name, which needs the name."""
        if receiver.type is SplitReceiverType.merchant or p.is_user_id(receiver.account):
            if not p.is_user_id(receiver.account):
                raise BusinessError("invalid_receiver", "a merchant receiver needs a 2088… id")
            kind = p.SPLIT_USER_ID
        else:
            if not receiver.name:
                raise BusinessError("invalid_receiver", "a login-name receiver needs its name")
            kind = p.SPLIT_LOGIN_NAME
        entity = {"type": kind, "account": receiver.account}
        if receiver.name:
            entity["name"] = receiver.name
        entity["memo"] = receiver.description[:ROYALTY_DESC_MAX]
        return entity

    # ------------------------------------------------------------ notifications
    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        try:
            text = body.decode("utf-8")
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise InvalidNotification("malformed", "not a UTF-8 form body") from None
        fields: dict[str, str] = {}
        for key, value in pairs:
            if key in fields:
                raise InvalidNotification("malformed", f"duplicate field {key!r}")
            fields[key] = value
        signature = fields.get("sign")
        if not signature:
            raise InvalidNotification("unsigned", "no sign field")
        if fields.get("sign_type", p.SIGN_TYPE) != p.SIGN_TYPE:
            raise InvalidNotification("bad_sign_type", f"sign_type {fields.get('sign_type')!r}")
        if not p.verify(p.notify_sign_content(fields), signature, self._alipay_key):
            raise InvalidNotification("bad_signature", "notification signature does not verify")
        if fields.get("app_id") != self.credentials.app_id:
            raise InvalidNotification("wrong_app", "notification is for another app_id")
        # ISV mode: app_id is ours (the ISV's app), auth_app_id the sub-merchant it acted for.
        isv_for = self.credentials.auth_app_id
        if isv_for and fields.get("auth_app_id") != isv_for:
            raise InvalidNotification("wrong_app", "notification is for another sub-merchant")
        seller = self.credentials.seller_id
        if seller and fields.get("seller_id") != seller:
            raise InvalidNotification("wrong_seller", "notification is for another seller_id")
        notify_id = fields.get("notify_id")
        out_trade_no = fields.get("out_trade_no")
        if not notify_id or not out_trade_no:
            raise InvalidNotification("malformed", "notify_id or out_trade_no missing")
        try:
            status = p.map_trade_status(fields.get("trade_status", ""))
            # A refund changes the trade and notifies like a payment: partial → TRADE_SUCCESS,
            # full → TRADE_CLOSED ("支付完成后全额退款"), with out_biz_no / refund_fee /
            # gmt_refund. A trade that was paid stays a paid *payment*; its refunds are
            # refunds' business, never a reason to close the payment.
            refund_no = fields.get("out_biz_no") or ""
            refunded = bool(refund_no and fields.get("gmt_refund"))
            if status is ChannelPaymentStatus.closed and (refunded or fields.get("gmt_payment")):
                status = ChannelPaymentStatus.succeeded
            amount = p.to_fen(fields["total_amount"]) if fields.get("total_amount") else None
            paid_at = (
                p.parse_time(fields["gmt_payment"])
                if status is ChannelPaymentStatus.succeeded and fields.get("gmt_payment")
                else None
            )
            refunded_at = p.parse_time(fields["gmt_refund"]) if refunded else None
        except ValueError as exc:
            raise InvalidNotification("malformed", str(exc)) from None
        if status is ChannelPaymentStatus.succeeded and amount is None:
            raise InvalidNotification("malformed", "paid notification without total_amount")
        trade_no = fields.get("trade_no") or None
        payment = PaymentState(
            out_trade_no=out_trade_no,
            status=status,
            channel_trade_no=trade_no,
            amount=amount,
            currency=p.CURRENCY,
            paid_at=paid_at,
            raw=fields,
        )
        # The refund part rides along for whoever wants it: ``refund_fee`` is the trade's total
        # refunded, not this refund's amount, so the amount stays unknown.
        refund = (
            RefundState(
                out_refund_no=refund_no,
                status=ChannelRefundStatus.succeeded,
                out_trade_no=out_trade_no,
                refunded_at=refunded_at,
                raw=fields,
            )
            if refunded
            else None
        )
        return Notification(event_key=notify_id, payment=payment, refund=refund, raw=fields)

    def ack(self, ok: bool) -> Ack:
        return Ack(200, b"success" if ok else b"fail", "text/plain")

    # ------------------------------------------------------------ payment codes (条码支付)
    async def _pay_code(self, request: CreatePayment) -> CreatedPayment:
        """``alipay.trade.pay`` (``scene=bar_code``): 10000 → ``succeeded``; 10003 →
        ``pending`` (the customer confirms in the app); refusals → BusinessError
        (:data:`PAY_CODE_ERRORS`); 20000 / ACQ.SYSTEM_ERROR → UnknownOutcome. A repeat of a
        charge already taken (ACQ.TRADE_HAS_SUCCESS) answers the trade's current state."""
        auth_code = str(request.customer.get("auth_code") or "")
        if not p.is_payment_code(auth_code):
            raise BusinessError("invalid_auth_code", "not an Alipay payment code")
        biz = self._biz(request, p.PRODUCT_QR)
        del biz["time_expire"]  # a code charge is settled or cancelled within a minute
        biz["scene"] = p.SCENE_BAR_CODE
        biz["auth_code"] = auth_code
        if request.customer.get("store_id"):
            biz["store_id"] = str(request.customer["store_id"])[:32]
        if request.customer.get("device_id"):
            biz["terminal_id"] = str(request.customer["device_id"])[:32]
        raw = await self._call(p.METHOD_PAY, biz, notify_url=request.notify_url)
        data = raw.data
        if str(data.get("code")) == p.WAIT_BUYER_PAY_CODE and raw.key != "error_response":
            if data.get("out_trade_no") not in (None, request.out_trade_no):
                raise UnknownOutcome("inconsistent_response", "pay answered for another order")
            trade_no = str(data["trade_no"]) if data.get("trade_no") else None
            return CreatedPayment(trade_no, None, status=ChannelPaymentStatus.pending, raw=data)
        try:
            data = self._check(raw, PAY_CODE_ERRORS)
        except BusinessError as exc:
            if exc.code != "already_paid":
                raise
            state = await self.query_payment(request.out_trade_no)
            return CreatedPayment(state.channel_trade_no, None, status=state.status, raw=state.raw)
        if data.get("out_trade_no") != request.out_trade_no:
            raise UnknownOutcome("inconsistent_response", "pay answered for another order")
        try:
            if data.get("total_amount") and p.to_fen(str(data["total_amount"])) != request.amount:
                raise UnknownOutcome("inconsistent_response", "pay answered another amount")
        except ValueError as exc:
            raise UnknownOutcome("unparseable_response", str(exc), raw=data) from exc
        trade_no = str(data["trade_no"]) if data.get("trade_no") else None
        return CreatedPayment(trade_no, None, status=ChannelPaymentStatus.succeeded, raw=data)

    async def reverse_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> base.ReversedPayment:
        """``alipay.trade.cancel``: closes an unpaid trade, refunds a paid one. ``retry_flag=Y``
        (or any unknown answer) raises UnknownOutcome: call again. A trade Alipay never got has
        nothing to cancel."""
        raw = await self._call(p.METHOD_CANCEL, {"out_trade_no": out_trade_no})
        try:
            data = self._check(raw, CANCEL_ERRORS)
        except BusinessError as exc:
            if exc.code == "order_not_exist":
                return base.ReversedPayment(out_trade_no, refunded=False, raw=exc.raw)
            raise
        if data.get("retry_flag") == "Y":
            raise UnknownOutcome("cancel_retry", "Alipay asks to cancel again", raw=data)
        if data.get("out_trade_no") not in (None, out_trade_no):
            raise UnknownOutcome("inconsistent_response", "cancel answered for another order")
        action = str(data.get("action") or "")
        refunded = action == "refund" if action in p.CANCEL_ACTIONS else None
        return base.ReversedPayment(out_trade_no, refunded=refunded, raw=data)

    # ------------------------------------------------------------ statement (业务账单)
    # alipay.data.dataservice.bill.downloadurl.query (bill_type=trade) answers a URL valid for
    # 30 s; the zip behind it is fetched without credentials (the URL carries its own token)
    # and is trusted because the URL came in a verified answer. Alipay makes a day's bill
    # the next morning (T+1, usually before 09:00 China time) and never today's.
    statement_timezone: ClassVar[dt.tzinfo] = bill.CHINA

    async def statement(self, day: dt.date) -> list[base.StatementLine]:
        """The day's (China time) trade bill: every trade and refund with its service fee. A
        day without a bill (``isp.bill_not_exist``: nothing happened, or fetched before Alipay
        made it) is ``[]``; today or later raises RetryableError ``statement_not_ready``."""
        if day >= clock.now().astimezone(bill.CHINA).date():
            raise RetryableError("statement_not_ready", f"Alipay has no bill for {day} yet")
        biz = {"bill_type": bill.BILL_TYPE, "bill_date": f"{day:%Y-%m-%d}"}
        raw = await self._call(bill.METHOD_BILL, biz)
        if raw.data.get("sub_code") == bill.NOT_EXIST:
            return []
        url = self._check(raw).get("bill_download_url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise UnknownOutcome("unparseable_response", "no bill_download_url")
        try:
            response = await self.http.get(url)
        except httpx.HTTPError as exc:
            raise UnknownOutcome("transport_error", repr(exc)) from exc
        if response.status_code != 200:
            raise UnknownOutcome("http_status", f"bill download: HTTP {response.status_code}")
        try:
            return bill.statement_lines(bill.parse_zip(response.content).rows)
        except bill.BillError as exc:
            raise UnknownOutcome("unparseable_bill", str(exc)) from exc


def _bind_request_no(request: CreateSplit) -> str:
    """The bind's ``out_request_no`` (≤ 32 letters, digits, ``_``), derived from the split id so
    a retried split binds with the same number."""
    return ("b" + request.out_order_no)[:32]


if TYPE_CHECKING:  # the adapter honours the optional capabilities' contracts

    def _capabilities(adapter: AlipayAdapter) -> tuple[base.TransferCapable, base.SplitCapable]:
        return adapter, adapter


__all__ = ["AlipayAdapter", "AlipayCredentials", "classify"]

"""Alipay OpenAPI (RSA2, public-key mode) adapter.

- ``alipay_qr``: ``alipay.trade.precreate`` over HTTP → a QR code for the Alipay app to scan.
- ``alipay_page`` / ``alipay_wap``: no server call; a signed GET URL of the gateway
  (``alipay.trade.page.pay`` / ``alipay.trade.wap.pay``) the customer's browser is sent to.
- ``alipay_app``: the signed ``alipay.trade.app.pay`` order string for the Alipay app SDK.

Alipay only creates the trade when the customer scans the QR code or opens the cashier, so a
query before that answers ``ACQ.TRADE_NOT_EXIST`` (→ ``not_found``) even though the create
"succeeded"; the order stays payable until ``time_expire``, which is therefore always sent.

Every sync response's signature is verified; a response we cannot verify is an
:class:`~paymux.channels.base.UnknownOutcome`. Errors are classified in one place,
:func:`classify`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from paymux.channels import base
from paymux.channels.alipay import protocol as p
from paymux.channels.base import (
    Ack,
    BusinessError,
    ChannelError,
    ChannelPaymentStatus,
    CreatedPayment,
    CreatePayment,
    InvalidNotification,
    NextAction,
    NextActionType,
    Notification,
    PaymentState,
    RetryableError,
    UnknownOutcome,
)

PRODUCTION_GATEWAY = "https://openapi.alipay.com/gateway.do"
SUBJECT_MAX = 256


class AlipayCredentials(BaseModel):
    """One Alipay app in public-key mode."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    app_id: str = Field(min_length=1, max_length=32)
    app_private_key: str = Field(min_length=1)
    """The app's RSA private key (PEM, or Alipay's bare base64 PKCS#8)."""
    alipay_public_key: str = Field(min_length=1)
    """Alipay's public key for this app (PEM, or bare base64), verifies responses/notifies."""
    gateway: str = PRODUCTION_GATEWAY
    seller_id: str | None = None
    """The merchant's PID (2088…); when set, notifications must carry it."""

    @field_validator("app_private_key")
    @classmethod
    def _private_key(cls, value: str) -> str:
        p.load_private_key(value)  # ProtocolError is a ValueError → ValidationError
        return value

    @field_validator("alipay_public_key")
    @classmethod
    def _public_key(cls, value: str) -> str:
        p.load_public_key(value)
        return value

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
    {"ACQ.SYSTEM_ERROR", "aop.ACQ.SYSTEM_ERROR", "isp.unknow-error", "isp.unknown-error"}
)
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
    40004 + sub_code                         BusinessError(sub_code)
    40001 / 40002 / 40006 / 20001            BusinessError(sub_code or kind)
    anything else                            UnknownOutcome
    ======================================  =================================

    Transport failures are classified in :meth:`AlipayAdapter._send`: connect refused or
    timed out → RetryableError; read timeout, 5xx, unparseable or unverifiable → UnknownOutcome.
    """
    if code == "20000" or sub_code in _UNKNOWN_SUB_CODES:
        return UnknownOutcome(sub_code or "isp_unknown_error", message, raw=raw)
    if code in _DEFAULT_BUSINESS_CODES:
        return BusinessError(sub_code or _DEFAULT_BUSINESS_CODES[code], message, raw=raw)
    return UnknownOutcome("unexpected_response", f"code {code!r}: {message}", raw=raw)


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
        {"alipay_qr", "alipay_page", "alipay_wap", "alipay_app"}
    )
    currencies: ClassVar[frozenset[str]] = frozenset({"CNY"})
    credentials_model: ClassVar[type[BaseModel]] = AlipayCredentials
    production_hosts: ClassVar[frozenset[str]] = frozenset({"openapi.alipay.com"})
    """``openapi-sandbox.dl.alipaydev.com`` is Alipay's own sandbox: fine for test mode."""
    required_customer: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """No Alipay method here needs a customer identifier (``buyer_id`` is optional)."""

    def __init__(self, credentials: Mapping[str, Any], http: httpx.AsyncClient) -> None:
        try:
            self.credentials = AlipayCredentials.model_validate(dict(credentials))
        except ValidationError as exc:
            raise base.InvalidCredentials(f"alipay credentials: {exc.errors()[0]['msg']}") from None
        self.http = http
        self._private_key = p.load_private_key(self.credentials.app_private_key)
        self._alipay_key = p.load_public_key(self.credentials.alipay_public_key)

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
            raise UnknownOutcome("unverifiable_response", "response signature invalid or missing")
        return raw

    @staticmethod
    def _check(raw: p.RawResponse) -> dict[str, Any]:
        data = raw.data
        code = str(data.get("code", ""))
        if code == p.SUCCESS_CODE and raw.key != "error_response":
            return data
        raise classify(
            code,
            str(data.get("sub_code") or ""),
            str(data.get("sub_msg") or data.get("msg") or ""),
            raw=data,
        )

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

    async def query_payment(self, out_trade_no: str) -> PaymentState:
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

    async def close_payment(self, out_trade_no: str) -> None:
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
        seller = self.credentials.seller_id
        if seller and fields.get("seller_id") != seller:
            raise InvalidNotification("wrong_seller", "notification is for another seller_id")
        notify_id = fields.get("notify_id")
        out_trade_no = fields.get("out_trade_no")
        if not notify_id or not out_trade_no:
            raise InvalidNotification("malformed", "notify_id or out_trade_no missing")
        try:
            status = p.map_trade_status(fields.get("trade_status", ""))
            amount = p.to_fen(fields["total_amount"]) if fields.get("total_amount") else None
            paid_at = (
                p.parse_time(fields["gmt_payment"])
                if status is ChannelPaymentStatus.succeeded and fields.get("gmt_payment")
                else None
            )
        except ValueError as exc:
            raise InvalidNotification("malformed", str(exc)) from None
        if status is ChannelPaymentStatus.succeeded and amount is None:
            raise InvalidNotification("malformed", "paid notification without total_amount")
        payment = PaymentState(
            out_trade_no=out_trade_no,
            status=status,
            channel_trade_no=fields.get("trade_no") or None,
            amount=amount,
            currency=p.CURRENCY,
            paid_at=paid_at,
            raw=fields,
        )
        return Notification(event_key=notify_id, payment=payment, raw=fields)

    def ack(self, ok: bool) -> Ack:
        return Ack(200, b"success" if ok else b"fail", "text/plain")


__all__ = ["AlipayAdapter", "AlipayCredentials", "classify"]

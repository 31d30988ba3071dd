"""WeChat Pay API v3 adapter (direct merchant, platform public-key mode)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from paymux.channels import base
from paymux.channels.base import (
    Ack,
    BusinessError,
    ChannelError,
    ChannelPaymentStatus,
    CreatedPayment,
    CreatePayment,
    InvalidCredentials,
    InvalidNotification,
    NextAction,
    NextActionType,
    Notification,
    PaymentState,
    RetryableError,
    UnknownOutcome,
)
from paymux.channels.wechatpay import protocol

DEFAULT_GATEWAY = "https://api.mch.weixin.qq.com"
_DESCRIPTION_MAX = 127


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


# ---------------------------------------------------------------- the adapter
@base.register
class WechatPayAdapter:
    name: ClassVar[str] = "wechatpay"
    methods: ClassVar[frozenset[str]] = frozenset(protocol.METHOD_ENDPOINTS)
    currencies: ClassVar[frozenset[str]] = frozenset({"CNY"})
    credentials_model: ClassVar[type[BaseModel]] = WechatPayCredentials
    production_hosts: ClassVar[frozenset[str]] = frozenset(
        {"api.mch.weixin.qq.com", "api2.mch.weixin.qq.com"}
    )
    required_customer: ClassVar[Mapping[str, tuple[str, ...]]] = {"wechat_jsapi": ("openid",)}

    def __init__(self, credentials: Mapping[str, Any], http: httpx.AsyncClient) -> None:
        try:
            self.credentials = WechatPayCredentials.model_validate(dict(credentials))
        except ValidationError as exc:
            raise InvalidCredentials(str(exc)) from None
        creds = self.credentials
        self._http = http
        self._private_key = protocol.load_private_key(creds.merchant_private_key)
        self._platform_keys = {
            creds.platform_public_key_id: protocol.load_public_key(creds.platform_public_key)
        }

    # ------------------------------------------------------------ transport
    async def _call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
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
        raise classify_answer(response.status_code, payload)

    @staticmethod
    def _order_path(out_trade_no: str) -> str:
        return f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}"

    # ------------------------------------------------------------ payments
    async def create_payment(self, request: CreatePayment) -> CreatedPayment:
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
        return CreatedPayment(
            channel_trade_no=None, next_action=self._next_action(kind, payload), raw=payload
        )

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

    async def query_payment(self, out_trade_no: str) -> PaymentState:
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

    async def close_payment(self, out_trade_no: str) -> None:
        try:
            await self._call(
                "POST", f"{self._order_path(out_trade_no)}/close", {"mchid": self.credentials.mchid}
            )
        except BusinessError as exc:
            if exc.code in ("order_closed", "order_not_exist"):
                return
            raise

    # ------------------------------------------------------------ notifications
    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        creds = self.credentials
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
            plaintext = protocol.decrypt_resource(creds.apiv3_key, resource)
            transaction = json.loads(plaintext)
        except protocol.ProtocolError as exc:
            raise InvalidNotification(exc.code, exc.message) from exc
        except ValueError:
            raise InvalidNotification("malformed", "resource is not JSON") from None
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

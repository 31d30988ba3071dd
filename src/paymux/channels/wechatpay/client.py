"""The core of the WeChat Pay API v3 adapter: what every feature stands on.

The credentials and keys, the signed and verified transport (:meth:`WechatPayClient._call`),
the one table that decides what a failure means for the gateway, the opening (signature check
and AEAD decryption) of notifications and the decoding of a transaction object. The feature
modules (:mod:`.refunds`, :mod:`.transfers`, :mod:`.profitsharing`, :mod:`.codepay`,
:mod:`.statement`) are mixins over :class:`WechatPayClient`; :mod:`.adapter` composes them into
the registered :class:`~paymux.channels.wechatpay.adapter.WechatPayAdapter`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from paymux.channels.base import (
    BusinessError,
    ChannelError,
    ChannelPaymentStatus,
    InvalidCredentials,
    InvalidNotification,
    PaymentState,
    RetryableError,
    RoutableDecline,
    UnknownOutcome,
)
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.credentials import WechatPayCredentials

_DESCRIPTION_MAX = 127


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


_Classifier = Callable[[int, Any], ChannelError]


class WechatPayClient:
    """The credentials, the injected httpx client and the keys, with the transport and
    decoders every feature of the adapter uses."""

    credentials: WechatPayCredentials
    _http: httpx.AsyncClient
    _private_key: rsa.RSAPrivateKey
    _platform_key: rsa.RSAPublicKey
    _platform_keys: dict[str, rsa.RSAPublicKey]

    credentials_class: ClassVar[type[Any]] = WechatPayCredentials
    """What :meth:`__init__` validates the credentials as (the partner adapter's differ)."""

    def __init__(self, credentials: Mapping[str, Any], http: httpx.AsyncClient) -> None:
        try:
            self.credentials = self.credentials_class.model_validate(dict(credentials))
        except ValidationError as exc:
            raise InvalidCredentials(str(exc)) from None
        creds = self.credentials
        self._http = http
        self._private_key = protocol.load_private_key(creds.merchant_private_key)
        self._platform_key = protocol.load_public_key(creds.platform_public_key)
        self._platform_keys = {creds.platform_public_key_id: self._platform_key}

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
        unpaid = status in (ChannelPaymentStatus.failed, ChannelPaymentStatus.closed)
        return PaymentState(
            out_trade_no=out_trade_no,
            status=status,
            channel_trade_no=str(transaction_id) if transaction_id else None,
            amount=int(total) if isinstance(total, int) else None,
            currency=str(currency) if currency else None,
            paid_at=paid_at,
            failure_code=protocol.TRADE_FAILURES.get(trade_state) if unpaid else None,
            failure_message=str(transaction.get("trade_state_desc") or "") or None
            if unpaid
            else None,
            channel_code=trade_state if unpaid else None,
            raw=dict(transaction),
        )

"""PayPal Orders v2 adapter: create order → buyer approves at PayPal → capture → refunds.

The flow, as PayPal runs it:

1. ``POST /v2/checkout/orders`` (intent CAPTURE; ``purchase_units[0].custom_id`` and
   ``invoice_id`` are our ``out_trade_no``) answers an order in ``CREATED`` or
   ``PAYER_ACTION_REQUIRED`` with a ``payer-action`` (or ``approve``) link: the customer's
   browser is redirected there (``next_action: redirect``).
2. The buyer approves; PayPal sends them to ``return_url`` and sends the webhook
   ``CHECKOUT.ORDER.APPROVED``. Nothing is paid yet: the merchant must capture.
3. ``POST /v2/checkout/orders/{id}/capture`` takes the money. **Side effect of reading**: this
   adapter captures an APPROVED order both when the APPROVED webhook arrives and when a query
   (the janitor, a close) finds the order APPROVED. That is safe because the capture always
   carries the same ``PayPal-Request-Id`` (derived from the order id): however often it is sent,
   PayPal captures at most once and answers every repeat with that capture.
4. ``PAYMENT.CAPTURE.COMPLETED`` / ``PENDING`` / ``DECLINED`` webhooks and reads of the order
   tell the capture's fate; ``PAYMENT.CAPTURE.REFUNDED`` tells a completed refund.

Lost create answers: query and close receive the order id when the create answered. When it
did not, the adapter sends the create again with the same ``PayPal-Request-Id`` and a body PayPal
would refuse as a new order (no purchase units): PayPal answers a known request id with the order
the first request made; an unknown one is refused, so nothing is created and the order is
``not_found``. Either way no customer can have approved an order whose approval link nobody saw.

Closing: Orders v2 has no call that cancels an order. ``close_payment`` marks it ours-closed by
replacing its ``custom_id`` with ``closed:<out_trade_no>`` (``PATCH /v2/checkout/orders/{id}``);
an order so marked is reported ``closed`` and never captured, so a buyer who still approves it
pays nothing, and PayPal expires it.

Webhooks: PayPal delivers them to the URL of a webhook registered for the REST app; its id (the
``webhook_id`` credential) is part of what PayPal signs. The adapter keeps that webhook's URL
pointed at paymux's notify URL for the account (``GET`` then, if needed, ``PATCH
/v1/notifications/webhooks/{id}``, once per process).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import IO, Any, ClassVar
from urllib.parse import quote, urlencode, urlsplit

import httpx
import structlog
from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from paymux.channels import base, bills, registry
from paymux.channels.base import (
    Ack,
    BusinessError,
    ChannelError,
    ChannelPaymentStatus,
    ChannelRefundStatus,
    CreatedPayment,
    CreatePayment,
    CreateRefund,
    FailureCategory,
    InvalidCredentials,
    InvalidNotification,
    NextAction,
    NextActionType,
    Notification,
    PaymentState,
    RefundState,
    RetryableError,
    RoutableDecline,
    UnknownOutcome,
)
from paymux.channels.bills import BillKind, FetchedBill
from paymux.channels.paypal import bill as paypal_bill
from paymux.channels.paypal import protocol
from paymux.kit import clock
from paymux.kit.money import EXPONENTS

log = structlog.get_logger(__name__)

LIVE_GATEWAY = "https://api-m.paypal.com"
LIVE_HOSTS = frozenset({"api-m.paypal.com", "api.paypal.com"})
PAYPAL_SANDBOX_HOSTS = frozenset({"api-m.sandbox.paypal.com", "api.sandbox.paypal.com"})
CERT_PATH = "/v1/notifications/certs/"
CLOSED_MARK = "closed:"
#: What the adapter subscribes its webhook to.
WEBHOOK_EVENTS = (
    "CHECKOUT.ORDER.APPROVED",
    "PAYMENT.CAPTURE.COMPLETED",
    "PAYMENT.CAPTURE.PENDING",
    "PAYMENT.CAPTURE.DECLINED",
    "PAYMENT.CAPTURE.DENIED",
    "PAYMENT.CAPTURE.REFUNDED",
)
_CAPTURE_EVENTS = frozenset(e for e in WEBHOOK_EVENTS if e.startswith("PAYMENT.CAPTURE.")) - {
    "PAYMENT.CAPTURE.REFUNDED"
}
_TOKEN_MARGIN = dt.timedelta(seconds=120)
_SUBJECT_MAX = 127
_NOTE_MAX = 255


class PayPalCredentials(BaseModel):
    """A PayPal REST app (Developer Dashboard → Apps & Credentials) and one of its webhooks."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    client_id: str = Field(min_length=1, max_length=128)
    client_secret: str = Field(min_length=1, max_length=256)
    webhook_id: str = Field(pattern=r"^[A-Za-z0-9]{1,50}$")
    """The id of the app's webhook that paymux owns (its URL is kept at paymux's notify URL)."""
    gateway: str = LIVE_GATEWAY
    """``https://api-m.paypal.com`` (live), ``https://api-m.sandbox.paypal.com`` (PayPal's
    sandbox) or a paymux sandbox."""
    brand_name: str | None = Field(default=None, max_length=127)
    verify_by_postback: bool = False
    """Also ask PayPal (``/v1/notifications/verify-webhook-signature``) about each webhook."""
    webhook_tolerance_seconds: int = Field(default=900, ge=60, le=86_400)
    """How far ``PAYPAL-TRANSMISSION-TIME`` may be from now."""

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("gateway must be an http(s) base URL")
        host = parts.hostname or ""
        if host in LIVE_HOSTS | PAYPAL_SANDBOX_HOSTS and parts.scheme != "https":
            raise ValueError("PayPal's own hosts are https only")
        return value.rstrip("/")


# ---------------------------------------------------------------- error classification
_TRANSPORT_ERRORS: tuple[tuple[type[Exception], type[ChannelError], str], ...] = (
    (httpx.ConnectError, RetryableError, "connect_error"),
    (httpx.ConnectTimeout, RetryableError, "connect_timeout"),
    (httpx.PoolTimeout, RetryableError, "pool_timeout"),
    (httpx.ProxyError, RetryableError, "proxy_error"),
    (httpx.UnsupportedProtocol, RetryableError, "unsupported_protocol"),
    (httpx.LocalProtocolError, RetryableError, "local_protocol_error"),
    (httpx.ReadTimeout, UnknownOutcome, "read_timeout"),
    (httpx.WriteTimeout, UnknownOutcome, "write_timeout"),
    (httpx.TransportError, UnknownOutcome, "transport_error"),
)

#: PayPal ``details[].issue`` (or error ``name``) → our code; all final (BusinessError).
_ISSUES: dict[str, str] = {
    "ORDER_ALREADY_CAPTURED": "already_captured",
    "ORDER_NOT_APPROVED": "order_not_approved",
    "ORDER_EXPIRED": "order_expired",
    "INSTRUMENT_DECLINED": "instrument_declined",
    "TRANSACTION_REFUSED": "declined",
    "PAYER_ACTION_REQUIRED": "payer_action_required",
    "DUPLICATE_INVOICE_ID": "duplicate_out_trade_no",
    "CURRENCY_NOT_SUPPORTED": "unsupported_currency",
    "DECIMAL_PRECISION": "invalid_amount",
    "AMOUNT_MISMATCH": "invalid_amount",
    "REFUND_AMOUNT_EXCEEDED": "refund_exceeds_payment",
    "CAPTURE_FULLY_REFUNDED": "refund_exceeds_payment",
    "REFUND_FAILED_INSUFFICIENT_FUNDS": "insufficient_balance",
    "REFUND_TIME_LIMIT_EXCEEDED": "refund_window_closed",
    "REFUND_NOT_ALLOWED": "refund_not_allowed",
    "PERMISSION_DENIED": "not_authorized",
    "NOT_AUTHORIZED": "not_authorized",
    "AUTHENTICATION_FAILURE": "invalid_credentials",
    "RESOURCE_NOT_FOUND": "not_found",
    "INVALID_RESOURCE_ID": "not_found",
}


#: Refusals by the payee (merchant) account's own restrictions or limits: another channel
#: account may take the payment (RoutableDecline).
_ROUTABLE_ISSUES: dict[str, str] = {
    "PAYEE_ACCOUNT_RESTRICTED": "channel_risk_declined",
    "PAYEE_ACCOUNT_LOCKED_OR_CLOSED": "channel_risk_declined",
    "PAYEE_BLOCKED_TRANSACTION": "channel_risk_declined",
    "TRANSACTION_BLOCKED_BY_PAYEE": "channel_risk_declined",
    "TRANSACTION_LIMIT_EXCEEDED": "channel_limit",
    "TRANSACTION_RECEIVING_LIMIT_EXCEEDED": "channel_limit",
}


#: Our codes of PayPal's refusals of a capture → failure category (docs/api.md "Final
#: statuses"): the buyer's funding source was declined, or PayPal's risk refused it.
_DECLINES: dict[str, FailureCategory] = {
    "instrument_declined": FailureCategory.card_declined,
    "declined": FailureCategory.risk_declined,
}


def classify_transport_error(exc: httpx.HTTPError) -> ChannelError:
    for kind, error, code in _TRANSPORT_ERRORS:
        if isinstance(exc, kind):
            return error(code, f"{type(exc).__name__}: {exc}")
    return UnknownOutcome("http_error", f"{type(exc).__name__}: {exc}")


def classify_answer(status: int, payload: Any) -> ChannelError:
    """A PayPal non-2xx answer → error. 5xx may hide an effect (UnknownOutcome; the request id
    makes the retry or query safe); 429 ``RATE_LIMIT_REACHED`` was refused unprocessed; every
    other 4xx is PayPal's final word."""
    err = protocol.parse_error(payload)
    message = err.message + (f" (debug_id {err.debug_id})" if err.debug_id else "")
    if status >= 500:
        return UnknownOutcome((err.name or f"http_{status}").lower(), message, raw=payload)
    if status == 429 or err.name == "RATE_LIMIT_REACHED":
        return RetryableError("rate_limited", message, raw=payload)
    if err.issue in _ROUTABLE_ISSUES:
        return RoutableDecline(_ROUTABLE_ISSUES[err.issue], message or err.issue, raw=payload)
    code = _ISSUES.get(err.issue) or _ISSUES.get(err.name)
    if code is None:
        code = (err.issue or err.name).lower() or f"http_{status}"
    return BusinessError(code, message or code, raw=payload)


# ---------------------------------------------------------------- process-local caches
#: (base URL, client id) → (access token, refresh after). PayPal tokens live ``expires_in``
#: seconds (hours); every call would otherwise cost a token round trip.
_TOKENS: dict[tuple[str, str], tuple[str, dt.datetime]] = {}
#: Certificate URL → PayPal's signing certificate.
_CERTS: OrderedDict[str, x509.Certificate] = OrderedDict()
_CERT_CACHE_SIZE = 64
#: (base URL, client id, webhook id) → the notify URL the webhook was seen pointing at.
_WEBHOOKS: dict[tuple[str, str, str], str] = {}


def clear_caches() -> None:
    """Forget tokens, certificates and webhook checks (tests; credential rotation)."""
    _TOKENS.clear()
    _CERTS.clear()
    _WEBHOOKS.clear()


_Classifier = Callable[[int, Any], ChannelError]


# ---------------------------------------------------------------- the adapter
@registry.register
class PayPalAdapter:
    name: ClassVar[str] = "paypal"
    methods: ClassVar[frozenset[str]] = frozenset({"paypal"})
    # PayPal's currencies that paymux's money table knows (CZK, HUF, ILS join when it does).
    currencies: ClassVar[frozenset[str]] = frozenset(protocol.CURRENCY_EXPONENTS) & frozenset(
        EXPONENTS
    )
    credentials_model: ClassVar[type[BaseModel]] = PayPalCredentials
    production_hosts: ClassVar[frozenset[str]] = LIVE_HOSTS
    required_customer: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    @staticmethod
    def check_request(request: base.PaymentRequest) -> list[base.RequestProblem]:
        """What PayPal refuses before acting (besides its currency list): an amount with
        decimals in a currency PayPal takes whole (JPY, HUF, TWD). The buyer comes back to
        the gateway's return URL, so no ``return_url`` is needed from the merchant."""
        try:
            protocol.money(request.amount, request.currency)
        except protocol.ProtocolError as exc:
            return [base.RequestProblem("amount_invalid", exc.message, "amount")]
        return []

    def __init__(self, credentials: Mapping[str, Any], http: httpx.AsyncClient) -> None:
        try:
            self.credentials = PayPalCredentials.model_validate(dict(credentials))
        except ValidationError as exc:
            raise InvalidCredentials(str(exc)) from None
        self._http = http

    # ------------------------------------------------------------ transport
    @property
    def _token_key(self) -> tuple[str, str]:
        return (self.credentials.gateway, self.credentials.client_id)

    async def _token(self) -> str:
        """A cached OAuth2 client-credentials token, fetched anew shortly before it expires.
        Failing to get one never moved money: RetryableError (or BusinessError for bad
        credentials)."""
        cached = _TOKENS.get(self._token_key)
        if cached is not None and clock.now() < cached[1]:
            return cached[0]
        creds = self.credentials
        try:
            response = await self._http.post(
                creds.gateway + "/v1/oauth2/token",
                content=urlencode({"grant_type": "client_credentials"}).encode(),
                headers={
                    "Authorization": protocol.basic_auth(creds.client_id, creds.client_secret),
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Accept": "application/json",
                },
            )
        except httpx.HTTPError as exc:
            raise RetryableError("token_unavailable", f"{type(exc).__name__}: {exc}") from exc
        payload = _json(response.content)
        if response.status_code in (400, 401, 403):
            err = protocol.parse_error(payload)
            raise BusinessError("invalid_credentials", err.message or err.name, raw=payload)
        token = payload.get("access_token") if isinstance(payload, dict) else None
        expires_in = payload.get("expires_in") if isinstance(payload, dict) else None
        if response.status_code != 200 or not isinstance(token, str) or not token:
            raise RetryableError("token_unavailable", f"HTTP {response.status_code}", raw=payload)
        lifetime = dt.timedelta(seconds=expires_in if isinstance(expires_in, int) else 0)
        _TOKENS[self._token_key] = (token, clock.now() + lifetime - _TOKEN_MARGIN)
        return token

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        request_id: str | None = None,
        classify: _Classifier = classify_answer,
    ) -> Any:
        """One authenticated call; the parsed JSON of a 2xx answer, else the classified error."""
        _raw, payload = await self._exchange(method, path, body, request_id=request_id,
                                             classify=classify)  # fmt: skip
        return payload

    async def _exchange(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        request_id: str | None = None,
        classify: _Classifier = classify_answer,
        fresh_token: bool = False,
    ) -> tuple[bytes, Any]:
        """One authenticated call: the bytes and the parsed JSON of a 2xx answer, else the
        classified error. An expired token (401) is dropped and the call sent once more."""
        token = await self._token()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        content = None
        if body is not None:
            content = protocol.encode_json(body)
            headers["Content-Type"] = "application/json"
        if method == "POST":
            headers["Prefer"] = "return=representation"
            if request_id is not None:
                headers["PayPal-Request-Id"] = request_id
        try:
            response = await self._http.request(
                method, self.credentials.gateway + path, content=content, headers=headers
            )
        except httpx.HTTPError as exc:
            raise classify_transport_error(exc) from exc
        payload = _json(response.content)
        if response.status_code == 401 and not fresh_token:
            _TOKENS.pop(self._token_key, None)
            return await self._exchange(method, path, body, request_id=request_id,
                                        classify=classify, fresh_token=True)  # fmt: skip
        if 200 <= response.status_code < 300:
            if payload is _MALFORMED:
                raise UnknownOutcome("malformed_response", "answer is not JSON")
            return response.content, payload
        if payload is _MALFORMED:
            payload = None
        raise classify(response.status_code, payload)

    # ------------------------------------------------------------ webhook registration
    async def _ensure_webhook(self, notify_url: str) -> None:
        """Point the credentials' webhook at ``notify_url`` with the events we read. Best
        effort: without it payments still resolve by querying."""
        creds = self.credentials
        key = (creds.gateway, creds.client_id, creds.webhook_id)
        if _WEBHOOKS.get(key) == notify_url:
            return
        path = f"/v1/notifications/webhooks/{quote(creds.webhook_id, safe='')}"
        try:
            hook = await self._call("GET", path)
            names = {e.get("name") for e in hook.get("event_types") or [] if isinstance(e, dict)}
            if hook.get("url") != notify_url or not (set(WEBHOOK_EVENTS) <= names or "*" in names):
                patch = [
                    {"op": "replace", "path": "/url", "value": notify_url},
                    {"op": "replace", "path": "/event_types",
                     "value": [{"name": n} for n in WEBHOOK_EVENTS]},
                ]  # fmt: skip
                await self._call("PATCH", path, patch)
        except (ChannelError, AttributeError) as exc:
            log.warning("paypal_webhook_not_ensured", webhook=creds.webhook_id, why=str(exc))
            return
        _WEBHOOKS[key] = notify_url

    # ------------------------------------------------------------ payments
    async def create_payment(self, request: CreatePayment) -> CreatedPayment:
        if request.method not in self.methods:
            raise BusinessError("unsupported_method", f"paypal does not do {request.method}")
        try:
            amount = protocol.money(request.amount, request.currency)
        except protocol.ProtocolError as exc:
            raise BusinessError(exc.code, exc.message) from None
        if not request.return_url:
            raise BusinessError(
                "return_url_required", "PayPal sends the buyer back to return_url after approval"
            )
        await self._ensure_webhook(request.notify_url)
        context: dict[str, Any] = {
            "return_url": request.return_url,
            "cancel_url": request.cancel_url or request.return_url,
            "user_action": "PAY_NOW",
            "shipping_preference": "NO_SHIPPING",
        }
        if self.credentials.brand_name:
            context["brand_name"] = self.credentials.brand_name
        body = {
            "intent": "CAPTURE",
            "purchase_units": [
                {
                    "reference_id": "default",
                    "custom_id": request.out_trade_no,
                    "invoice_id": request.out_trade_no,
                    "description": request.subject[:_SUBJECT_MAX],
                    "amount": amount,
                }
            ],
            "payment_source": {"paypal": {"experience_context": context}},
        }
        order = await self._call(
            "POST", "/v2/checkout/orders", body, request_id=self._order_request_id(request)
        )
        order_id = order.get("id") if isinstance(order, dict) else None
        if not isinstance(order_id, str) or not order_id:
            raise UnknownOutcome("malformed_response", "order lacks id")
        approve = protocol.link(order, "payer-action", "approve")
        if approve:
            action = NextAction(NextActionType.redirect, url=approve)
        elif order.get("status") in ("APPROVED", "COMPLETED"):
            action = None  # approved already (e.g. a vaulted payer): nothing for the buyer
        else:
            raise UnknownOutcome("malformed_response", "order lacks an approval link")
        return CreatedPayment(channel_trade_no=order_id, next_action=action, raw=order)

    @staticmethod
    def _order_request_id(request: CreatePayment) -> str:
        return protocol.request_id("order", request.out_trade_no)

    async def _find_order(self, out_trade_no: str) -> str | None:
        """The id of the order our create made, when its answer was lost: the create again
        under its request id, with a body PayPal refuses as a new order."""
        stub = {"intent": "CAPTURE", "purchase_units": []}
        try:
            order = await self._call(
                "POST", "/v2/checkout/orders", stub,
                request_id=protocol.request_id("order", out_trade_no),
            )  # fmt: skip
        except BusinessError:
            return None
        order_id = order.get("id") if isinstance(order, dict) else None
        if not isinstance(order_id, str) or not order_id:
            raise UnknownOutcome("malformed_response", "order lacks id")
        return order_id

    async def _get_order(self, order_id: str) -> dict[str, Any] | None:
        try:
            order = await self._call("GET", f"/v2/checkout/orders/{quote(order_id, safe='')}")
        except BusinessError as exc:
            if exc.code == "not_found":
                return None
            raise
        if not isinstance(order, dict):
            raise UnknownOutcome("malformed_response", "order is not an object")
        return order

    async def query_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> PaymentState:
        """Read the order; an APPROVED one is captured (see the module docstring)."""
        order_id = channel_trade_no or await self._find_order(out_trade_no)
        order = await self._get_order(order_id) if order_id else None
        if order is None:
            return PaymentState(out_trade_no, ChannelPaymentStatus.not_found)
        return await self._settle(order, out_trade_no)

    async def _settle(self, order: Mapping[str, Any], out_trade_no: str) -> PaymentState:
        """An order → its state, capturing it first if it is APPROVED and not closed by us."""
        closed = self._check_order(order, out_trade_no)
        status = order.get("status")
        if status == "COMPLETED" or _captures(order):
            return self._order_state(order, out_trade_no)
        if closed or status == "VOIDED":
            return self._simple(order, out_trade_no, ChannelPaymentStatus.closed)
        if status != "APPROVED":
            return self._simple(order, out_trade_no, ChannelPaymentStatus.pending)
        order_id = str(order["id"])
        try:
            captured = await self._call(
                "POST", f"/v2/checkout/orders/{quote(order_id, safe='')}/capture", {},
                request_id=protocol.request_id("capture", order_id),
            )  # fmt: skip
        except BusinessError as exc:
            if exc.code == "already_captured":
                again = await self._get_order(order_id)
                if again is None:
                    raise UnknownOutcome("order_vanished", "captured order not found") from exc
                return self._order_state(again, out_trade_no)
            if exc.code in _DECLINES:
                return self._simple(order, out_trade_no, ChannelPaymentStatus.failed,
                                    failure=(exc.code, exc.message))  # fmt: skip
            raise
        if not isinstance(captured, dict):
            raise UnknownOutcome("malformed_response", "capture answer is not an object")
        return self._order_state(captured, out_trade_no)

    @staticmethod
    def _check_order(order: Mapping[str, Any], out_trade_no: str) -> bool:
        """Is this order ours for ``out_trade_no``? Returns whether we closed it."""
        units = order.get("purchase_units")
        unit = units[0] if isinstance(units, list) and units else None
        custom_id = unit.get("custom_id") if isinstance(unit, dict) else None
        if custom_id == out_trade_no:
            return False
        if custom_id == CLOSED_MARK + out_trade_no:
            return True
        raise UnknownOutcome("malformed_response", "the order is not this attempt's")

    @staticmethod
    def _simple(
        order: Mapping[str, Any], out_trade_no: str, status: ChannelPaymentStatus,
        *, failure: tuple[str, str] | None = None,
    ) -> PaymentState:  # fmt: skip
        return PaymentState(
            out_trade_no=out_trade_no, status=status, channel_trade_no=str(order.get("id")),
            failure_code=_DECLINES[failure[0]] if failure else None,
            failure_message=failure[1] if failure else None,
            channel_code=failure[0] if failure else None, raw=dict(order),
        )  # fmt: skip

    def _order_state(self, order: Mapping[str, Any], out_trade_no: str) -> PaymentState:
        """A captured (COMPLETED) order → the state of its capture."""
        captures = _captures(order)
        if not captures:
            raise UnknownOutcome("malformed_response", "completed order has no capture")
        state = self._capture_state(captures[-1], out_trade_no, str(order.get("id")))
        return dataclasses.replace(state, raw=dict(order))

    @staticmethod
    def _capture_state(capture: Mapping[str, Any], out_trade_no: str,
                       order_id: str | None) -> PaymentState:  # fmt: skip
        try:
            status = protocol.capture_status(str(capture.get("status", "")))
            amount, currency = protocol.parse_money(capture.get("amount"))
            created = protocol.parse_time(capture.get("create_time"))
        except protocol.ProtocolError as exc:
            raise UnknownOutcome("malformed_response", exc.message, raw=capture) from exc
        failed = status is ChannelPaymentStatus.failed
        details = capture.get("status_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return PaymentState(
            out_trade_no=out_trade_no, status=status, channel_trade_no=order_id,
            amount=amount, currency=currency,
            paid_at=created if status is ChannelPaymentStatus.succeeded else None,
            failure_code=FailureCategory.card_declined if failed else None,
            channel_code=f"capture_{str(capture.get('status')).lower()}" if failed else None,
            failure_message=(str(reason) if reason else "PayPal declined the capture")
            if failed else None,
            raw=dict(capture),
        )  # fmt: skip

    async def close_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> None:
        """Mark the order closed by us (``custom_id`` → ``closed:<out_trade_no>``); it is then
        never captured. A captured order raises ``already_paid``."""
        order_id = channel_trade_no or await self._find_order(out_trade_no)
        order = await self._get_order(order_id) if order_id else None
        if order is None:
            return
        closed = self._check_order(order, out_trade_no)
        if order.get("status") == "COMPLETED" or _captures(order):
            state = self._order_state(order, out_trade_no)
            if state.status is not ChannelPaymentStatus.failed:
                raise BusinessError("already_paid", "the PayPal order was captured")
            return
        if closed or order.get("status") == "VOIDED":
            return
        patch = [{
            "op": "replace", "path": "/purchase_units/@reference_id=='default'/custom_id",
            "value": CLOSED_MARK + out_trade_no,
        }]  # fmt: skip
        await self._call("PATCH", f"/v2/checkout/orders/{quote(str(order['id']), safe='')}", patch)

    # ------------------------------------------------------------ refunds
    async def create_refund(self, request: CreateRefund) -> RefundState:
        """``POST /v2/payments/captures/{capture_id}/refund`` with the order's capture."""
        try:
            amount = protocol.money(request.amount, request.currency)
        except protocol.ProtocolError as exc:
            raise BusinessError(exc.code, exc.message) from None
        if request.amount > request.total_amount:
            raise BusinessError("refund_exceeds_payment", "refund exceeds the order's amount")
        order_id = request.channel_trade_no or await self._find_order(request.out_trade_no)
        order = await self._get_order(order_id) if order_id else None
        if order is None:
            raise BusinessError("order_not_found", "PayPal has no order for this payment")
        self._check_order(order, request.out_trade_no)
        paid = [c for c in _captures(order) if c.get("status") in
                ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED")]  # fmt: skip
        if not paid:
            raise BusinessError("order_not_paid", "the PayPal order has no completed capture")
        body: dict[str, Any] = {
            "amount": amount,
            "invoice_id": request.out_refund_no,
            "custom_id": request.out_trade_no,
        }
        if request.reason:
            body["note_to_payer"] = request.reason[:_NOTE_MAX]
        capture_id = quote(str(paid[-1].get("id")), safe="")
        refund = await self._call(
            "POST", f"/v2/payments/captures/{capture_id}/refund", body,
            request_id=protocol.request_id("refund", request.out_refund_no),
        )  # fmt: skip
        return self._refund_state(refund, request.out_refund_no, request.out_trade_no)

    async def query_refund(
        self, out_refund_no: str, out_trade_no: str, *, channel_refund_no: str | None = None
    ) -> RefundState:
        """``GET /v2/payments/refunds/{id}``. Without PayPal's refund id (its answer was lost)
        the refund is ``not_found``: the gateway then sends it again under the same
        ``PayPal-Request-Id``, which PayPal answers with the refund it made, if any."""
        if not channel_refund_no:
            return RefundState(out_refund_no, ChannelRefundStatus.not_found,
                               out_trade_no=out_trade_no)  # fmt: skip
        try:
            refund = await self._call("GET", f"/v2/payments/refunds/{quote(channel_refund_no)}")
        except BusinessError as exc:
            if exc.code == "not_found":
                return RefundState(out_refund_no, ChannelRefundStatus.not_found,
                                   out_trade_no=out_trade_no, raw=exc.raw)  # fmt: skip
            raise
        return self._refund_state(refund, out_refund_no, out_trade_no)

    @staticmethod
    def _refund_state(refund: Any, out_refund_no: str, out_trade_no: str | None) -> RefundState:
        if not isinstance(refund, dict) or not isinstance(refund.get("id"), str):
            raise UnknownOutcome("malformed_response", "refund answer lacks id", raw=refund)
        if refund.get("invoice_id") not in (None, out_refund_no):
            raise UnknownOutcome("malformed_response", "answer is about another refund")
        try:
            status = protocol.refund_status(str(refund.get("status", "")))
            amount = currency = None
            if refund.get("amount") is not None:
                amount, currency = protocol.parse_money(refund["amount"])
            finished = protocol.parse_time(refund.get("update_time") or refund.get("create_time"))
        except protocol.ProtocolError as exc:
            raise UnknownOutcome("malformed_response", exc.message, raw=refund) from exc
        failed = status is ChannelRefundStatus.failed
        details = refund.get("status_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return RefundState(
            out_refund_no=out_refund_no, status=status, out_trade_no=out_trade_no,
            channel_refund_no=refund["id"], amount=amount, currency=currency,
            refunded_at=finished if status is ChannelRefundStatus.succeeded else None,
            failure_code=f"refund_{str(refund['status']).lower()}" if failed else None,
            failure_message=str(reason) if failed and reason else None, raw=dict(refund),
        )  # fmt: skip

    # ------------------------------------------------------------ webhooks
    def _cert_allowed(self, cert_url: str) -> bool:
        """PAYPAL-CERT-URL may only name PayPal's certificate service for this account's
        environment: live → api(-m).paypal.com, PayPal's sandbox → api(-m).sandbox.paypal.com,
        a paymux sandbox → the configured gateway itself."""
        gateway = urlsplit(self.credentials.gateway)
        url = urlsplit(cert_url)
        if url.query or url.fragment or url.username or url.password:
            return False
        if gateway.hostname in LIVE_HOSTS:
            hosts: frozenset[str | None] = frozenset(LIVE_HOSTS)
        elif gateway.hostname in PAYPAL_SANDBOX_HOSTS:
            hosts = frozenset(PAYPAL_SANDBOX_HOSTS)
        else:
            prefix = self.credentials.gateway + CERT_PATH
            return cert_url.startswith(prefix) and ".." not in url.path
        return (
            url.scheme == "https" and url.hostname in hosts and url.port is None
            and url.path.startswith(CERT_PATH) and ".." not in url.path
        )  # fmt: skip

    async def _certificate(self, cert_url: str) -> x509.Certificate:
        cert = _CERTS.get(cert_url)
        if cert is not None:
            _CERTS.move_to_end(cert_url)
            return cert
        try:
            response = await self._http.get(cert_url)
        except httpx.HTTPError as exc:
            raise InvalidNotification("cert_unavailable", f"{type(exc).__name__}") from exc
        if response.status_code != 200:
            raise InvalidNotification("cert_unavailable", f"HTTP {response.status_code}")
        try:
            cert = protocol.load_certificate(response.content)
        except protocol.ProtocolError as exc:
            raise InvalidNotification(exc.code, exc.message) from exc
        _CERTS[cert_url] = cert
        if len(_CERTS) > _CERT_CACHE_SIZE:
            _CERTS.popitem(last=False)
        return cert

    async def _verify(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        creds = self.credentials
        try:
            sent = protocol.transmission(headers)
        except protocol.ProtocolError as exc:
            raise InvalidNotification(exc.code, exc.message) from exc
        now = clock.now()
        if abs((now - sent.sent_at).total_seconds()) > creds.webhook_tolerance_seconds:
            raise InvalidNotification("stale", "PAYPAL-TRANSMISSION-TIME is out of tolerance")
        if not self._cert_allowed(sent.cert_url):
            raise InvalidNotification("untrusted_cert_url", "PAYPAL-CERT-URL is not PayPal's")
        cert = await self._certificate(sent.cert_url)
        try:
            protocol.verify_webhook(sent, creds.webhook_id, body, cert, now=now)
        except protocol.ProtocolError as exc:
            raise InvalidNotification(exc.code, exc.message) from exc
        event = _json(body)
        if not isinstance(event, dict):
            raise InvalidNotification("malformed", "webhook body is not a JSON object")
        if creds.verify_by_postback:
            await self._postback(sent, event)
        return event

    async def _postback(self, sent: protocol.Transmission, event: dict[str, Any]) -> None:
        body = {
            "auth_algo": sent.auth_algo, "cert_url": sent.cert_url,
            "transmission_id": sent.transmission_id, "transmission_sig": sent.signature,
            "transmission_time": sent.transmission_time,
            "webhook_id": self.credentials.webhook_id, "webhook_event": event,
        }  # fmt: skip
        try:
            answer = await self._call("POST", "/v1/notifications/verify-webhook-signature", body)
        except ChannelError as exc:
            raise InvalidNotification("postback_failed", exc.message) from exc
        if not isinstance(answer, dict) or answer.get("verification_status") != "SUCCESS":
            raise InvalidNotification("bad_signature", "PayPal did not confirm the signature")

    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify a webhook as PayPal specifies and decode it. ``CHECKOUT.ORDER.APPROVED``
        captures the order (idempotently); if PayPal cannot be reached the webhook is refused
        so PayPal delivers it again."""
        event = await self._verify(headers, body)
        event_id, event_type = event.get("id"), event.get("event_type")
        resource = event.get("resource")
        if not isinstance(event_id, str) or not event_id or not isinstance(resource, dict):
            raise InvalidNotification("malformed", "webhook lacks id or resource")
        try:
            if event_type == "CHECKOUT.ORDER.APPROVED":
                state = await self._approved(resource)
                return Notification(event_key=event_id, payment=state, raw=event)
            if event_type in _CAPTURE_EVENTS:
                return Notification(event_key=event_id, payment=self._captured(resource),
                                    raw=event)  # fmt: skip
            if event_type == "PAYMENT.CAPTURE.REFUNDED":
                return Notification(event_key=event_id, refund=self._refunded(resource),
                                    raw=event)  # fmt: skip
        except InvalidNotification:
            raise
        except UnknownOutcome as exc:
            if exc.code == "malformed_response":
                raise InvalidNotification("malformed", exc.message) from exc
            raise InvalidNotification("capture_unavailable", exc.message) from exc
        except ChannelError as exc:
            raise InvalidNotification("capture_unavailable", exc.message) from exc
        raise InvalidNotification("unsupported_event", f"unexpected event {event_type!r}")

    async def _approved(self, order: Mapping[str, Any]) -> PaymentState:
        order_id = order.get("id")
        out_trade_no = _unit_field(order, "custom_id")
        if not isinstance(order_id, str) or not out_trade_no:
            raise InvalidNotification("malformed", "approved order lacks id or custom_id")
        out_trade_no = out_trade_no.removeprefix(CLOSED_MARK)
        fresh = await self._get_order(order_id)  # the webhook may be old; close may have run
        if fresh is None:
            raise InvalidNotification("unknown_order", "PayPal does not know this order")
        return await self._settle(fresh, out_trade_no)

    def _captured(self, capture: Mapping[str, Any]) -> PaymentState:
        out_trade_no = capture.get("custom_id")
        if not isinstance(out_trade_no, str) or not out_trade_no:
            raise InvalidNotification("malformed", "capture lacks custom_id")
        related = (capture.get("supplementary_data") or {}).get("related_ids") or {}
        order_id = related.get("order_id") if isinstance(related, dict) else None
        return self._capture_state(capture, out_trade_no.removeprefix(CLOSED_MARK),
                                   str(order_id) if order_id else None)  # fmt: skip

    def _refunded(self, refund: Mapping[str, Any]) -> RefundState:
        out_refund_no, out_trade_no = refund.get("invoice_id"), refund.get("custom_id")
        if not isinstance(out_refund_no, str) or not isinstance(out_trade_no, str):
            raise InvalidNotification("malformed", "refund lacks invoice_id or custom_id")
        return self._refund_state(dict(refund), out_refund_no, out_trade_no)

    def ack(self, ok: bool) -> Ack:
        """PayPal wants any 2xx; anything else is delivered again (up to 25 times, 3 days)."""
        if ok:
            return Ack(200, b"", "text/plain")
        return Ack(500, b"not processed", "text/plain")

    # ------------------------------------------------------------ bill
    statement_timezone: ClassVar[dt.tzinfo] = dt.UTC
    bill_ready_after: ClassVar[dt.timedelta] = dt.timedelta(hours=3)
    """Transaction Search lists a transaction up to three hours after it happened."""

    async def transaction_pages(
        self, day: dt.date, *, page_size: int = 500
    ) -> AsyncIterator[tuple[bytes, dict[str, Any]]]:
        """The UTC day's Transaction Search answers, page 1 to ``total_pages``: each answer's
        bytes as received and its decoded object."""
        start = dt.datetime.combine(day, dt.time(0, 0), tzinfo=dt.UTC)
        end = start + dt.timedelta(days=1) - dt.timedelta(seconds=1)
        page = 1
        while True:
            query = urlencode({
                "start_date": protocol.rfc3339(start), "end_date": protocol.rfc3339(end),
                "fields": "transaction_info", "page_size": page_size, "page": page,
            })  # fmt: skip
            raw, answer = await self._exchange("GET", f"/v1/reporting/transactions?{query}")
            if not isinstance(answer, dict):
                raise UnknownOutcome("malformed_response", "statement is not an object")
            yield raw, answer
            total_pages = answer.get("total_pages")
            if not isinstance(total_pages, int) or page >= total_pages:
                return
            page += 1

    bills: ClassVar[frozenset[BillKind]] = frozenset({BillKind.trade, BillKind.funds})
    """One file holds both: Transaction Search lists every movement of the balance."""

    async def fetch_bill(
        self, day: dt.date, into: IO[bytes], bill: BillKind = BillKind.trade, *,
        page_size: int = 500,
    ) -> FetchedBill:  # fmt: skip
        """The UTC day's Transaction Search rows, written page by page as :mod:`.bill`
        describes; the trade and the funds bill are the same file. Refused as
        ``statement_not_ready`` while PayPal's data is older than the day's end
        (``last_refreshed_datetime``); a day without any transaction is no bill."""
        _bill_kind(bill)
        name = f"paypal_transactions_{day.isoformat()}.jsonl"
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)
        pages = count = 0
        async for raw, answer in self.transaction_pages(day, page_size=page_size):
            rows = answer.get("transaction_details") or []
            if not pages:
                refreshed = _refreshed(answer)
                if refreshed is not None and refreshed < end:
                    raise RetryableError(
                        "statement_not_ready", f"PayPal's data is as of {refreshed.isoformat()}"
                    )
                if not rows and answer.get("total_items") in (0, None):
                    return FetchedBill(name, exists=False)
                into.write(paypal_bill.header(day))
            into.write(paypal_bill.page_line(raw))
            pages += 1
            count += len(rows) if isinstance(rows, list) else 0
        into.write(paypal_bill.trailer(pages, count))
        return FetchedBill(name, {"count": str(count)})

    def bill_reader(
        self, path: Path, expected: Mapping[str, str], bill: BillKind = BillKind.trade
    ) -> paypal_bill.PayPalBillReader:
        """The file read for the ``bill`` kind's lines (funds: withdrawals as settlement)."""
        funds = _bill_kind(bill) is BillKind.funds
        return paypal_bill.PayPalBillReader(path, expected, funds=funds)

    async def statement(self, day: dt.date) -> list[base.StatementLine]:
        """The UTC day's Transaction Search rows as statement lines (:mod:`.bill`)."""
        return await bills.statement_of(self, day)


def _bill_kind(bill: BillKind | str) -> BillKind:
    """``bill`` as a kind this channel publishes (both are the one listing); ValueError else."""
    if bill not in PayPalAdapter.bills:
        raise ValueError(f"paypal has no {bill} bill")
    return BillKind(bill)


def _refreshed(answer: Mapping[str, Any]) -> dt.datetime | None:
    try:
        return protocol.parse_time(answer.get("last_refreshed_datetime"))
    except protocol.ProtocolError:
        return None


_MALFORMED: Any = object()


def _json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return _MALFORMED


def _unit_field(order: Mapping[str, Any], name: str) -> str | None:
    units = order.get("purchase_units")
    unit = units[0] if isinstance(units, list) and units else None
    value = unit.get(name) if isinstance(unit, dict) else None
    return value if isinstance(value, str) and value else None


def _captures(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    units = order.get("purchase_units")
    unit = units[0] if isinstance(units, list) and units else None
    payments = unit.get("payments") if isinstance(unit, dict) else None
    captures = payments.get("captures") if isinstance(payments, dict) else None
    return [c for c in captures if isinstance(c, dict)] if isinstance(captures, list) else []

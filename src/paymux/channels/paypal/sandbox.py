"""An in-process PayPal REST sandbox speaking the real wire protocol.

Serves PayPal's paths: OAuth2 (``/v1/oauth2/token``), Orders v2 (create, show, patch, capture),
Payments v2 refunds (``/v2/payments/captures/{id}/refund``, ``/v2/payments/refunds/{id}``),
Transaction Search (``/v1/reporting/transactions``), webhook management
(``/v1/notifications/webhooks/{id}``, show and patch), the certificate service
(``/v1/notifications/certs/{id}``) and the postback check
(``/v1/notifications/verify-webhook-signature``); the buyer's approval page is
``/checkoutnow?token=<order id>``. Every POST honours ``PayPal-Request-Id``: a known id is
answered with the current state of what its first request made, before the body is looked at.

Webhooks go to the URL of the app's webhook, signed like PayPal's (SHA256withRSA over
``transmission_id|time|webhook_id|crc32``, certificate at ``PAYPAL-CERT-URL``), signed afresh
for every delivery and retried until a 2xx. What is notified: ``CHECKOUT.ORDER.APPROVED``
when the buyer approves, ``PAYMENT.CAPTURE.COMPLETED`` / ``DECLINED`` after a capture,
``PAYMENT.CAPTURE.REFUNDED`` when a refund completes (a pending or failed refund is learnt by
reading it). A cancelled approval sends nothing, like PayPal: the buyer just lands on
``cancel_url``.

Scripts (:mod:`paymux.channels.sandbox_kit`), matched by the order's description: ``manual``
(the buyer approves or cancels on the page), ``succeed`` (approved at once), ``decline``
(approved at once; its capture is DECLINED), ``create_timeout`` (order made, answer held) and
``create_error`` (HTTP 500, nothing made); notify modes as in the kit. Refund scripts:
``succeed``, ``delayed``, ``fail``, ``refuse`` (422 REFUND_FAILED_INSUFFICIENT_FUNDS),
``create_timeout``, ``create_error``.

Deliberate simplifications: one purchase unit per order, intent CAPTURE only, one capture per
order; the statement's fee is a flat :attr:`Sandbox.fee_bps` of the gross.

Transaction Search is the bill: each UTC day's rows are rendered from the shared day bill
(:func:`~paymux.channels.sandbox_bills.day_bill`) — T0006 per completed capture (fee negative),
T1107 per completed refund (gross negative, no fee returned), in time order;
``last_refreshed_datetime`` is now (no three-hour lag here). Bill tweaks (``POST
/_sandbox/bill_tweaks``, amounts in minor units), as they show in the tweaked day's rows:

- ``amount``: the T0006 row's ``transaction_amount`` is ``amount``;
- ``fee``: its ``fee_amount`` is ``-amount``;
- ``duplicate``: the T0006 row is listed twice (same ``transaction_id``);
- ``next_day``: the row is in the next day's rows, at that day's 00:00:00 UTC;
- ``drop``: no row;
- ``extra_payment``: a T0006 row of a payment made at PayPal only (``invoice_id`` and
  ``custom_field`` are the tweak's ``out_trade_no`` when it names one, else empty), at 12:00;
- ``extra_refund``: a T1107 row on the order's capture without ``invoice_id`` (refunded in the
  PayPal account, not through the API), a minute after the payment;
- ``corrupt_summary``: ``total_items`` is off by ``amount`` (the listing's own count);
- ``bad_row``: a T0006 row without ``transaction_amount``, at 23:59 UTC.

Rows the sandbox holds no object for get ids derived from the app, the day and their place, so
a day listed twice (or paged) is the same listing.

Withdrawals (the funds bill is the same listing): each UTC day the app's balance of each
currency is withdrawn to its bank at 23:59:59 UTC, the shared rule of
:func:`~paymux.channels.sandbox_bills.day_funds` applied to the day's rows as rendered here (a
refund gives no fee back): a T0400 row, ``transaction_amount`` negative, no fee, status S, a
``bank_reference_id``, no invoice or custom field. Funds tweaks (``"bill": "funds"``):
``settlement_amount`` makes the day's withdrawal of each currency ``amount`` (what it leaves
is withdrawn the next day); ``extra_payout`` (and ``amount``/``drop``/``duplicate`` of a
payout) is not a movement the gateway makes through PayPal here and is **not supported** (it
would only lower the withdrawal); ``corrupt_summary`` and ``bad_row`` of the funds bill have
no effect (use the trade ones: it is the same listing). A negative balance (refunds outweigh
the day's sales) is listed as a T0400 with a positive amount, money taken back from the bank
[unverified: PayPal would rather leave the balance negative or debit the bank as a T03xx].
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import html
import secrets
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, FastAPI, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from paymux.channels.paypal import protocol
from paymux.channels.sandbox_bills import (
    BillTweakKind,
    DayFunds,
    FundsEntry,
    bill_router,
    day_bill,
    day_funds,
    tweaks_of,
)
from paymux.channels.sandbox_kit import (
    NotifyMode,
    OrderStatus,
    Outcome,
    RefundOutcome,
    RefundStatus,
    SandboxCore,
    SandboxOrder,
    SandboxRefund,
    customer_router,
)
from paymux.kit import clock

#: PayPal retries an undelivered webhook up to 25 times over three days [interval unverified].
RETRY_SCHEDULE: tuple[float, ...] = (
    30, 60, 120, 300, 600, 900, 1800, 1800, 3600, 3600, 7200, 7200, 10800, 10800, 10800,
    14400, 14400, 14400, 14400, 21600, 21600, 21600, 21600, 21600, 21600,
)  # fmt: skip
TOKEN_LIFETIME = 32_400
_ID_ALPHABET = string.ascii_uppercase + string.digits


Row = tuple[dt.datetime, dict[str, Any]]
"""A Transaction Search row and when it happened."""


def _funds_entry(row: Row) -> FundsEntry | None:
    """A rendered payment or refund row as a line of the day's fund flow (its ``channel_ref``
    is ``<currency>:<transaction_id>``); None for a row without an amount (``bad_row``)."""
    when, detail = row
    try:
        line = protocol.statement_line(detail)
    except protocol.ProtocolError:
        return None
    ref = f"{line.currency}:{line.transaction_id}"
    if line.event_code == "T1107":
        return FundsEntry("refund", line.amount, -line.fee, when, None, ref)
    return FundsEntry("payment", line.amount, -line.fee, when, None, ref)


def _synthetic_id(seed: str) -> str:
    """A PayPal-like 17-character id from a hex seed (rows the sandbox has no object for)."""
    return "".join(_ID_ALPHABET[int(seed[i : i + 2], 16) % 36] for i in range(0, 34, 2))


def _paypal_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(17))


class PayPalError(Exception):
    """An error answer, rendered like PayPal's."""

    def __init__(self, status: int, name: str, message: str, issue: str | None = None,
                 description: str = "") -> None:  # fmt: skip
        super().__init__(f"{status} {name}: {message}")
        self.status, self.name, self.message = status, name, message
        self.issue, self.description = issue, description

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name, "message": self.message, "debug_id": secrets.token_hex(7),
        }  # fmt: skip
        if self.issue:
            data["details"] = [{"issue": self.issue, "description": self.description or
                                self.issue.replace("_", " ").capitalize()}]  # fmt: skip
        data["links"] = [{"href": "https://developer.paypal.com/docs/api/orders/v2/#error-"
                          + (self.issue or self.name), "rel": "information_link"}]  # fmt: skip
        return data


def _unprocessable(issue: str, description: str = "") -> PayPalError:
    return PayPalError(422, "UNPROCESSABLE_ENTITY", "The requested action could not be "
                       "performed, semantically incorrect, or failed business validation.",
                       issue, description)  # fmt: skip


def _invalid(issue: str, description: str = "") -> PayPalError:
    return PayPalError(400, "INVALID_REQUEST", "Request is not well-formed, syntactically "
                       "incorrect, or violates schema.", issue, description)  # fmt: skip


def _not_found() -> PayPalError:
    return PayPalError(404, "RESOURCE_NOT_FOUND", "The specified resource does not exist.",
                       "INVALID_RESOURCE_ID", "Specified resource ID does not exist.")  # fmt: skip


# ---------------------------------------------------------------- request bodies
class _Money(BaseModel):
    currency_code: str = Field(pattern=r"^[A-Z]{3}$")
    value: str = Field(pattern=r"^((-?[0-9]+)|(-?([0-9]+)?[.][0-9]+))$", max_length=32)


class _Unit(BaseModel):
    model_config = ConfigDict(extra="allow")

    reference_id: str = Field(default="default", max_length=256)
    custom_id: str | None = Field(default=None, max_length=127)
    invoice_id: str | None = Field(default=None, max_length=127)
    description: str | None = Field(default=None, max_length=127)
    amount: _Money


class _Context(BaseModel):
    model_config = ConfigDict(extra="allow")

    return_url: str | None = None
    cancel_url: str | None = None
    brand_name: str | None = None
    user_action: str | None = None


class _OrderBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    intent: str = Field(pattern="^(CAPTURE|AUTHORIZE)$")
    purchase_units: list[_Unit] = Field(min_length=1, max_length=10)
    payment_source: dict[str, Any] | None = None


class _RefundBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    amount: _Money | None = None
    invoice_id: str | None = Field(default=None, max_length=127)
    custom_id: str | None = Field(default=None, max_length=127)
    note_to_payer: str | None = Field(default=None, max_length=255)


class _PatchOp(BaseModel):
    op: str = Field(pattern="^(add|remove|replace|move|copy|test)$")
    path: str
    value: Any = None


@dataclass
class SandboxApp:
    """A REST app (client id and secret) with its one webhook."""

    client_id: str
    secret: str
    webhook_id: str
    base_url: str
    payer_id: str
    webhook_url: str | None = None
    event_types: list[str] = field(default_factory=lambda: ["*"])


class _PayPalCore(SandboxCore):
    """PayPal's order life: approval (by the buyer) and capture (by the merchant) are two
    steps; the kit's ``pending`` covers CREATED and APPROVED, ``succeeded``/``failed`` the
    capture's outcome."""

    resign: Callable[[SandboxOrder | SandboxRefund, bytes], dict[str, str]] | None = None

    async def _post(
        self, subject: SandboxOrder | SandboxRefund, headers: dict[str, str], body: bytes
    ) -> bool:
        if self.resign is not None:
            headers = {**headers, **self.resign(subject, body)}
        return await super()._post(subject, headers, body)

    def approve(self, order: SandboxOrder) -> bool:
        if order.status is not OrderStatus.pending or order.extra.get("approved"):
            return False
        order.extra["approved"] = True
        order.extra["updated_at"] = clock.now()
        return True

    async def customer_action(self, order: SandboxOrder, *, paid: bool) -> bool:
        """The buyer approves (webhook CHECKOUT.ORDER.APPROVED) or cancels (nothing sent)."""
        if not paid:
            order.extra["cancelled"] = True
            return order.status is OrderStatus.pending
        if not self.approve(order):
            return False
        self.spawn(self.notify(order))
        return True

    async def after_create(self, order: SandboxOrder) -> None:
        """``succeed``/``decline``: the buyer approves at once (a declined order's capture will
        be DECLINED); ``create_timeout``: the answer is held."""
        script = order.script
        if script.outcome in (Outcome.succeed, Outcome.decline):
            self.approve(order)
            if script.notify is NotifyMode.before_response:
                await self._deliver_once_then_retry(order)
            else:
                self.spawn(self.notify(order))
        if script.outcome is Outcome.create_timeout:
            await asyncio.sleep(self.hold_timeout_seconds)

    async def notify_refund(self, refund: SandboxRefund) -> None:
        if refund.status is RefundStatus.succeeded:  # PAYMENT.CAPTURE.REFUNDED only
            await super().notify_refund(refund)


class Sandbox:
    """The PayPal sandbox: ``.core`` (orders, scripts, notifier) and ``.app`` (ASGI)."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient | None = None,
        time_scale: float = 1.0,
        hold_timeout_seconds: float = 30.0,
    ) -> None:
        self._signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.cert_id = "CERT-" + "-".join(secrets.token_hex(4) for _ in range(3))
        self.certificate = _self_signed(self._signing_key)
        self.apps: dict[str, SandboxApp] = {}
        self.tokens: dict[str, tuple[str, dt.datetime]] = {}
        self.request_ids: dict[tuple[str, str], tuple[str, str]] = {}
        """(client id, PayPal-Request-Id) → (kind, resource id) of what it made."""
        self.fee_bps = 349
        core = _PayPalCore(
            channel="paypal",
            retry_schedule=RETRY_SCHEDULE,
            build_notification=self.build_notification,
            build_refund_notification=self.build_refund_notification,
            is_ack=lambda response: 200 <= response.status_code < 300,
            http=http,
            time_scale=time_scale,
            hold_timeout_seconds=hold_timeout_seconds,
        )
        core.resign = self._sign_delivery
        self._core = core
        self.core: SandboxCore = core
        self.app = self._build_app()

    # ------------------------------------------------------------ apps
    def provision(self, base_url: str) -> dict[str, Any]:
        """Create a REST app with a webhook; return its complete adapter credentials."""
        app = SandboxApp(
            client_id="A" + secrets.token_urlsafe(40).replace("-", "x").replace("_", "y"),
            secret="E" + secrets.token_urlsafe(40).replace("-", "x").replace("_", "y"),
            webhook_id=_paypal_id(),
            base_url=base_url.rstrip("/"),
            payer_id="".join(secrets.choice(_ID_ALPHABET) for _ in range(13)),
        )
        self.apps[app.client_id] = app
        return {
            "client_id": app.client_id,
            "client_secret": app.secret,
            "webhook_id": app.webhook_id,
            "gateway": app.base_url,
        }

    def expire_tokens(self) -> None:
        """Make every issued access token expired (the next call answers 401)."""
        self.tokens.clear()

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def cert_url(self, app: SandboxApp) -> str:
        return f"{app.base_url}/v1/notifications/certs/{self.cert_id}"

    # ------------------------------------------------------------ signing
    def sign(self, app: SandboxApp, body: bytes, *, when: dt.datetime | None = None,
             webhook_id: str | None = None) -> dict[str, str]:  # fmt: skip
        """The PAYPAL-* headers of one delivery of ``body`` to ``app``'s webhook."""
        transmission_id = str(uuid.uuid4())
        sent = protocol.rfc3339(when or clock.now())
        signature = protocol.sign_webhook(self._signing_key, transmission_id, sent,
                                          webhook_id or app.webhook_id, body)  # fmt: skip
        return {
            "PAYPAL-TRANSMISSION-ID": transmission_id,
            "PAYPAL-TRANSMISSION-TIME": sent,
            "PAYPAL-TRANSMISSION-SIG": signature,
            "PAYPAL-CERT-URL": self.cert_url(app),
            "PAYPAL-AUTH-ALGO": protocol.AUTH_ALGO,
            "Content-Type": "application/json",
        }

    def _sign_delivery(self, subject: SandboxOrder | SandboxRefund, body: bytes) -> dict[str, str]:
        order = subject.order if isinstance(subject, SandboxRefund) else subject
        return self.sign(self.apps[order.merchant_id], body)

    # ------------------------------------------------------------ views
    @staticmethod
    def _order_status(order: SandboxOrder) -> str:
        if order.extra.get("capture_id"):
            return "COMPLETED"
        if order.extra.get("approved"):
            return "APPROVED"
        return "PAYER_ACTION_REQUIRED" if order.extra.get("experience") else "CREATED"

    def _money(self, amount: int, currency: str, *, sign: str = "") -> dict[str, str]:
        return {"currency_code": currency, "value": sign + protocol.to_value(amount, currency)}

    def capture_view(self, order: SandboxOrder) -> dict[str, Any]:
        app = self.apps[order.merchant_id]
        capture_id = str(order.extra["capture_id"])
        status = "COMPLETED" if order.status is OrderStatus.succeeded else "DECLINED"
        refunded = sum(r.amount for r in self.core.refunds_of(order)
                       if r.status is RefundStatus.succeeded)  # fmt: skip
        if status == "COMPLETED" and refunded:
            status = "REFUNDED" if refunded >= order.amount else "PARTIALLY_REFUNDED"
        captured_at = order.extra["captured_at"]
        view: dict[str, Any] = {
            "id": capture_id,
            "status": status,
            "amount": self._money(order.amount, order.currency),
            "final_capture": True,
            "seller_protection": {"status": "ELIGIBLE"},
            "custom_id": order.extra["custom_id"],
            "invoice_id": order.extra.get("invoice_id"),
            "supplementary_data": {"related_ids": {"order_id": order.channel_trade_no}},
            "create_time": protocol.rfc3339(captured_at),
            "update_time": protocol.rfc3339(captured_at),
            "links": [
                {"href": f"{app.base_url}/v2/payments/captures/{capture_id}", "rel": "self",
                 "method": "GET"},
                {"href": f"{app.base_url}/v2/payments/captures/{capture_id}/refund",
                 "rel": "refund", "method": "POST"},
                {"href": f"{app.base_url}/v2/checkout/orders/{order.channel_trade_no}",
                 "rel": "up", "method": "GET"},
            ],
        }  # fmt: skip
        if status == "COMPLETED":
            fee = order.amount * self.fee_bps // 10_000
            view["seller_receivable_breakdown"] = {
                "gross_amount": self._money(order.amount, order.currency),
                "paypal_fee": self._money(fee, order.currency) if fee else
                {"currency_code": order.currency, "value": "0"},
                "net_amount": self._money(order.amount - fee, order.currency),
            }  # fmt: skip
        return view

    def order_view(self, order: SandboxOrder) -> dict[str, Any]:
        """The order as ``GET /v2/checkout/orders/{id}`` shows it."""
        app = self.apps[order.merchant_id]
        order_id = order.channel_trade_no
        status = self._order_status(order)
        unit: dict[str, Any] = {
            "reference_id": order.extra["reference_id"],
            "amount": self._money(order.amount, order.currency),
            "payee": {"merchant_id": app.payer_id},
            "custom_id": order.extra["custom_id"],
        }
        for name in ("invoice_id", "description"):
            if order.extra.get(name):
                unit[name] = order.extra[name]
        if order.extra.get("capture_id"):
            unit["payments"] = {"captures": [self.capture_view(order)]}
        self_link = f"{app.base_url}/v2/checkout/orders/{order_id}"
        links = [{"href": self_link, "rel": "self", "method": "GET"}]
        if status in ("CREATED", "PAYER_ACTION_REQUIRED"):
            rel = "payer-action" if status == "PAYER_ACTION_REQUIRED" else "approve"
            links.append({"href": order.extra["approve_url"], "rel": rel, "method": "GET"})
        if status == "APPROVED":
            links.append({"href": self_link + "/capture", "rel": "capture", "method": "POST"})
        if status != "COMPLETED":
            links.append({"href": self_link, "rel": "update", "method": "PATCH"})
        view: dict[str, Any] = {
            "id": order_id,
            "intent": "CAPTURE",
            "status": status,
            "purchase_units": [unit],
            "create_time": protocol.rfc3339(order.created_at),
            "links": links,
        }
        if order.extra.get("approved"):
            view["payer"] = {"payer_id": order.extra["payer_id"],
                             "email_address": "buyer@example.com"}  # fmt: skip
            view["payment_source"] = {"paypal": {"account_id": order.extra["payer_id"],
                                                 "email_address": "buyer@example.com"}}  # fmt: skip
        view["update_time"] = protocol.rfc3339(order.extra.get("updated_at") or order.created_at)
        return view

    @staticmethod
    def _refund_status(refund: SandboxRefund) -> str:
        return {RefundStatus.pending: "PENDING", RefundStatus.succeeded: "COMPLETED",
                RefundStatus.failed: "FAILED"}[refund.status]  # fmt: skip

    def refund_view(self, refund: SandboxRefund) -> dict[str, Any]:
        app = self.apps[refund.order.merchant_id]
        order = refund.order
        view: dict[str, Any] = {
            "id": refund.refund_no,
            "status": self._refund_status(refund),
            "amount": self._money(refund.amount, order.currency),
            "create_time": protocol.rfc3339(refund.created_at),
            "update_time": protocol.rfc3339(refund.finished_at or refund.created_at),
            "links": [
                {"href": f"{app.base_url}/v2/payments/refunds/{refund.refund_no}",
                 "rel": "self", "method": "GET"},
                {"href": f"{app.base_url}/v2/payments/captures/{order.extra['capture_id']}",
                 "rel": "up", "method": "GET"},
            ],
        }  # fmt: skip
        for name in ("invoice_id", "custom_id", "note_to_payer"):
            if refund.extra.get(name):
                view[name] = refund.extra[name]
        if refund.status is RefundStatus.failed:
            view["status_details"] = {"reason": "ECHECK"}
        return view

    # ------------------------------------------------------------ webhooks
    def _event(self, resource_type: str, event_type: str, summary: str,
               resource: dict[str, Any], key: str) -> bytes:  # fmt: skip
        event = {
            "id": "WH-" + uuid.uuid5(uuid.NAMESPACE_URL, f"paypal:{key}:{event_type}").hex[:25]
            .upper(),
            "event_version": "1.0",
            "create_time": protocol.rfc3339(clock.now()),
            "resource_type": resource_type,
            "resource_version": "2.0",
            "event_type": event_type,
            "summary": summary,
            "resource": resource,
            "links": [],
        }  # fmt: skip
        return protocol.encode_json(event)

    def build_notification(self, order: SandboxOrder) -> tuple[dict[str, str], bytes]:
        """The webhook for the order's current state: APPROVED, or its capture's outcome."""
        if order.extra.get("capture_id"):
            capture = self.capture_view(order)
            kind = "COMPLETED" if order.status is OrderStatus.succeeded else "DECLINED"
            body = self._event("capture", f"PAYMENT.CAPTURE.{kind}",
                               f"Payment capture {kind.lower()}", capture,
                               str(order.extra["capture_id"]))  # fmt: skip
        else:
            body = self._event("checkout-order", "CHECKOUT.ORDER.APPROVED",
                               "An order has been approved by buyer", self.order_view(order),
                               order.channel_trade_no)  # fmt: skip
        return self.sign(self.apps[order.merchant_id], body), body

    def build_refund_notification(self, refund: SandboxRefund) -> tuple[dict[str, str], bytes]:
        body = self._event("refund", "PAYMENT.CAPTURE.REFUNDED", "A capture was refunded",
                           self.refund_view(refund), refund.refund_no)  # fmt: skip
        return self.sign(self.apps[refund.order.merchant_id], body), body

    # ------------------------------------------------------------ request helpers
    def _app(self, request: Request) -> SandboxApp:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        found = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if found is None or clock.now() >= found[1]:
            raise PayPalError(401, "AUTHENTICATION_FAILURE", "Authentication failed due to "
                              "invalid authentication credentials or a missing Authorization "
                              "header.")  # fmt: skip
        return self.apps[found[0]]

    @staticmethod
    def _parse(model: type[BaseModel], raw: bytes) -> Any:
        try:
            return model.model_validate_json(raw or b"null")
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "/" + "/".join(str(p) for p in first["loc"])
            kind = "MISSING_REQUIRED_PARAMETER" if first["type"] == "missing" else (
                "INVALID_ARRAY_MIN_ITEMS" if first["type"] == "too_short"
                else "INVALID_PARAMETER_VALUE")  # fmt: skip
            raise _invalid(kind, f"{where}: {first['msg']}") from exc

    def _replayed(self, app: SandboxApp, request: Request) -> tuple[str, str] | None:
        request_id = request.headers.get("paypal-request-id")
        return self.request_ids.get((app.client_id, request_id)) if request_id else None

    def _remember(self, app: SandboxApp, request: Request, kind: str, resource_id: str) -> None:
        request_id = request.headers.get("paypal-request-id")
        if request_id:
            self.request_ids[(app.client_id, request_id)] = (kind, resource_id)

    def _order(self, app: SandboxApp, order_id: str) -> SandboxOrder:
        order = self._orders_by_id.get(order_id)
        if order is None or order.merchant_id != app.client_id:
            raise _not_found()
        return order

    @property
    def _orders_by_id(self) -> dict[str, SandboxOrder]:
        return {o.channel_trade_no: o for o in self.core.orders.values()}

    @staticmethod
    def _json(status: int, payload: Any) -> Response:
        return Response(protocol.encode_json(payload), status_code=status,
                        media_type="application/json",
                        headers={"Paypal-Debug-Id": secrets.token_hex(7)})  # fmt: skip

    # ------------------------------------------------------------ OAuth2
    async def _token(self, request: Request) -> Response:
        try:
            client_id, secret = protocol.parse_basic_auth(request.headers.get("authorization", ""))
        except protocol.ProtocolError:
            client_id = secret = ""
        app = self.apps.get(client_id)
        if app is None or not secrets.compare_digest(app.secret, secret):
            return self._json(
                401,
                {"error": "invalid_client", "error_description": "Client Authentication failed"},
            )
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            return self._json(400, {"error": "unsupported_grant_type",
                                    "error_description": "Grant Type is NULL"})  # fmt: skip
        token = "A21AA" + secrets.token_urlsafe(48)
        self.tokens[token] = (app.client_id, clock.now() + dt.timedelta(seconds=TOKEN_LIFETIME))
        return self._json(200, {
            "scope": "https://uri.paypal.com/services/payments/payment "
                     "https://uri.paypal.com/services/reporting/search/read",
            "access_token": token, "token_type": "Bearer", "app_id": "APP-80W284485P519543T",
            "expires_in": TOKEN_LIFETIME, "nonce": protocol.rfc3339(clock.now()) + secrets
            .token_hex(8),
        })  # fmt: skip

    # ------------------------------------------------------------ orders
    async def _create_order(self, request: Request) -> Response:
        app = self._app(request)
        replay = self._replayed(app, request)
        if replay is not None:
            return self._json(200, self.order_view(self._order(app, replay[1])))
        body: _OrderBody = self._parse(_OrderBody, await request.body())
        if body.intent != "CAPTURE":
            raise _unprocessable("INTENT_NOT_SUPPORTED", "The sandbox only captures.")
        unit = body.purchase_units[0]
        currency = unit.amount.currency_code
        if currency not in protocol.CURRENCY_EXPONENTS:
            raise _unprocessable("CURRENCY_NOT_SUPPORTED", f"{currency} is not supported.")
        if currency in protocol.NO_DECIMALS and "." in unit.amount.value:
            raise _unprocessable("DECIMAL_PRECISION", f"{currency} takes no decimals.")
        try:
            amount = protocol.from_value(unit.amount.value, currency)
        except protocol.ProtocolError as exc:
            raise _unprocessable("DECIMAL_PRECISION", exc.message) from exc
        if amount <= 0:
            raise _invalid("INVALID_PARAMETER_VALUE", "amount must be positive")
        if unit.invoice_id and any(
            o.merchant_id == app.client_id and o.extra.get("invoice_id") == unit.invoice_id
            for o in self.core.orders.values()
        ):
            raise _unprocessable("DUPLICATE_INVOICE_ID", "Invoice ID was previously used.")
        context = _Context.model_validate(
            ((body.payment_source or {}).get("paypal") or {}).get("experience_context") or {}
        )
        for url in (context.return_url, context.cancel_url):
            if url is not None and urlsplit(url).scheme not in ("http", "https"):
                raise _invalid("INVALID_PARAMETER_SYNTAX", "return_url/cancel_url")
        description = unit.description or ""
        script = self.core.take_script(description)
        if script.outcome is Outcome.create_error:
            raise PayPalError(500, "INTERNAL_SERVER_ERROR", "An internal server error occurred.")
        order_id = _paypal_id()
        out_trade_no = unit.invoice_id or unit.custom_id or order_id
        order = SandboxOrder(
            out_trade_no=out_trade_no, channel_trade_no=order_id, merchant_id=app.client_id,
            amount=amount, currency=currency, subject=description,
            notify_url=app.webhook_url, method="paypal", script=script, created_at=clock.now(),
            return_url=context.return_url,
            extra={
                "reference_id": unit.reference_id, "custom_id": unit.custom_id or "",
                "invoice_id": unit.invoice_id, "description": unit.description,
                "cancel_url": context.cancel_url, "experience": body.payment_source is not None,
                "approve_url": f"{app.base_url}/checkoutnow?token={order_id}",
                "payer_id": app.payer_id, "decline": script.outcome is Outcome.decline,
            },
        )  # fmt: skip
        self.core.add_order(order)
        self._remember(app, request, "order", order_id)
        await self.core.after_create(order)
        return self._json(201, self.order_view(order))

    async def _patch_order(self, request: Request, order_id: str) -> Response:
        app = self._app(request)
        order = self._order(app, order_id)
        try:
            ops = [_PatchOp.model_validate(op) for op in await request.json()]
        except (ValidationError, ValueError, TypeError) as exc:
            raise _invalid("INVALID_PATCH_OPERATION", "malformed JSON patch") from exc
        if self._order_status(order) == "COMPLETED":
            raise _unprocessable("ORDER_ALREADY_COMPLETED", "The order is completed.")
        prefix = f"/purchase_units/@reference_id=='{order.extra['reference_id']}'/"
        for op in ops:
            name = op.path.removeprefix(prefix)
            if op.op not in ("replace", "add") or not op.path.startswith(prefix) or name not in (
                "custom_id", "invoice_id", "description",
            ) or not isinstance(op.value, str):  # fmt: skip
                raise _unprocessable("PATCH_PATH_REQUIRED", f"cannot patch {op.path}")
            order.extra[name] = op.value
        order.extra["updated_at"] = clock.now()
        return Response(status_code=204)

    async def _capture(self, request: Request, order_id: str) -> Response:
        app = self._app(request)
        replay = self._replayed(app, request)
        if replay is not None:
            return self._json(200, self.order_view(self._order(app, replay[1])))
        order = self._order(app, order_id)
        if order.extra.get("capture_id"):
            raise _unprocessable("ORDER_ALREADY_CAPTURED", "Order already captured.")
        if not order.extra.get("approved"):
            raise _unprocessable("ORDER_NOT_APPROVED", "Payer has not yet approved the Order "
                                 "for payment.")  # fmt: skip
        order.extra["capture_id"] = _paypal_id()
        order.extra["captured_at"] = order.extra["updated_at"] = clock.now()
        self.core.settle(order, paid=not order.extra["decline"])
        self._remember(app, request, "order", order_id)
        self.core.spawn(self.core.notify(order))
        return self._json(201, self.order_view(order))

    # ------------------------------------------------------------ refunds
    def _captured_order(self, app: SandboxApp, capture_id: str) -> SandboxOrder:
        for order in self.core.orders.values():
            if order.merchant_id == app.client_id and order.extra.get("capture_id") == capture_id:
                return order
        raise _not_found()

    async def _refund(self, request: Request, capture_id: str) -> Response:
        app = self._app(request)
        replay = self._replayed(app, request)
        if replay is not None:
            return self._json(200, self.refund_view(self._find_refund(app, replay[1])))
        body: _RefundBody = self._parse(_RefundBody, await request.body())
        order = self._captured_order(app, capture_id)
        if order.status is not OrderStatus.succeeded:
            raise _unprocessable("CAPTURE_STATUS_NOT_VALID", "The capture was not completed.")
        refundable = self.core.refundable(order)
        amount = refundable
        if body.amount is not None:
            if body.amount.currency_code != order.currency:
                raise _unprocessable("REFUND_CURRENCY_MISMATCH", "Refund currency differs.")
            try:
                amount = protocol.from_value(body.amount.value, order.currency)
            except protocol.ProtocolError as exc:
                raise _unprocessable("DECIMAL_PRECISION", exc.message) from exc
        if refundable <= 0:
            raise _unprocessable("CAPTURE_FULLY_REFUNDED", "The capture is fully refunded.")
        if amount <= 0 or amount > refundable:
            raise _unprocessable("REFUND_AMOUNT_EXCEEDED", "The refund exceeds the capture.")
        script = self.core.take_refund_script(order.subject)
        if script.outcome is RefundOutcome.refuse:
            raise _unprocessable(
                "REFUND_FAILED_INSUFFICIENT_FUNDS",
                "Capture could not be refunded due to insufficient funds.",
            )
        if script.outcome is RefundOutcome.create_error:
            raise PayPalError(500, "INTERNAL_SERVER_ERROR", "An internal server error occurred.")
        refund = SandboxRefund(
            out_refund_no=body.invoice_id or _paypal_id(), refund_no=_paypal_id(), order=order,
            amount=amount, reason=body.note_to_payer, notify_url=app.webhook_url, script=script,
            created_at=clock.now(),
            extra={"invoice_id": body.invoice_id, "custom_id": body.custom_id,
                   "note_to_payer": body.note_to_payer},
        )  # fmt: skip
        self.core.add_refund(refund)
        self._remember(app, request, "refund", refund.refund_no)
        await self.core.after_refund(refund)
        return self._json(201, self.refund_view(refund))

    def _find_refund(self, app: SandboxApp, refund_id: str) -> SandboxRefund:
        for refund in self.core.refunds.values():
            if refund.refund_no == refund_id and refund.order.merchant_id == app.client_id:
                return refund
        raise _not_found()

    # ------------------------------------------------------------ reporting
    async def _transactions(self, request: Request) -> Response:
        app = self._app(request)
        params = request.query_params
        try:
            start = protocol.parse_time(params.get("start_date"))
            end = protocol.parse_time(params.get("end_date"))
            page_size = int(params.get("page_size", "100"))
            page = int(params.get("page", "1"))
        except (protocol.ProtocolError, ValueError) as exc:
            raise _invalid("INVALID_REQUEST", "malformed query") from exc
        if start is None or end is None:
            raise _invalid("MISSING_REQUIRED_PARAMETER", "start_date and end_date are required")
        if end < start or end - start > dt.timedelta(days=31):
            raise _invalid("INVALID_REQUEST", "Date range is greater than 31 days")
        if not 1 <= page_size <= 500 or page < 1:
            raise _invalid("INVALID_REQUEST", "page_size is 1..500, page from 1")
        rows, offset = self.listing(app, start, end)
        chunk = rows[(page - 1) * page_size : page * page_size]
        total_pages = max(1, -(-len(rows) // page_size))
        return self._json(200, {
            "transaction_details": chunk, "account_number": app.payer_id,
            "start_date": protocol.rfc3339(start), "end_date": protocol.rfc3339(end),
            "last_refreshed_datetime": protocol.rfc3339(clock.now()), "page": page,
            "total_items": len(rows) + offset, "total_pages": total_pages, "links": [],
        })  # fmt: skip

    def listing(self, app: SandboxApp, start: dt.datetime,
                end: dt.datetime) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
        """Transaction Search rows of ``[start, end]`` in time order, from the day bills of the
        UTC days it touches, and what ``corrupt_summary`` adds to ``total_items``."""
        rows: list[tuple[dt.datetime, dict[str, Any]]] = []
        offset = 0
        day = start.astimezone(dt.UTC).date()
        while day <= end.astimezone(dt.UTC).date():
            day_rows, day_offset = self.day_rows(app, day)
            rows += [(when, row) for when, row in day_rows if start <= when <= end]
            offset += day_offset
            day += dt.timedelta(days=1)
        return [row for _, row in rows], offset

    def day_rows(self, app: SandboxApp, day: dt.date) -> tuple[list[Row], int]:
        """One UTC day's rows: its payments and refunds (:meth:`trade_rows`) and, last at
        23:59:59, its withdrawals to the bank (:meth:`withdrawal_rows`); and what
        ``corrupt_summary`` adds to ``total_items``."""
        rows, offset = self.trade_rows(app, day)
        return rows + self.withdrawal_rows(app, day), offset

    def day_funds(self, app: SandboxApp, day: dt.date) -> dict[str, DayFunds]:
        """The app's fund flow of one UTC day per currency: the shared rule
        (:func:`~paymux.channels.sandbox_bills.day_funds`) over the day's payments and refunds
        as :meth:`trade_rows` renders them; its ``settlement`` line is the day's withdrawal."""
        currencies = {o.currency for o in self.core.orders.values()
                      if o.merchant_id == app.client_id}  # fmt: skip
        out = {}
        for currency in sorted(currencies):

            def trade(d: dt.date, currency: str = currency) -> list[FundsEntry]:
                return [e for e in map(_funds_entry, self.trade_rows(app, d)[0])
                        if e is not None and e.channel_ref.startswith(currency + ":")]  # fmt: skip

            funds = day_funds(self.core, day, dt.UTC, self._fee, lambda d: [], trade=trade)
            if funds.entries:
                out[currency] = funds
        return out

    def withdrawal_rows(self, app: SandboxApp, day: dt.date) -> list[Row]:
        """The day's withdrawals (:meth:`day_funds`' settlements) as T0400 rows."""
        rows = []
        for currency, funds in self.day_funds(app, day).items():
            for e in funds.entries:
                if e.kind != "settlement":
                    continue
                seed = hashlib.sha256(f"{app.client_id}:{currency}:{e.channel_ref}".encode())
                hex_seed = seed.hexdigest()
                sign = "-" if e.amount < 0 else ""
                rows.append((e.at, {"transaction_info": {
                    "paypal_account_id": app.payer_id,
                    "transaction_id": _synthetic_id(hex_seed),
                    "transaction_event_code": "T0400",
                    "transaction_initiation_date": protocol.rfc3339(e.at),
                    "transaction_updated_date": protocol.rfc3339(e.at),
                    "transaction_amount": self._money(abs(e.amount), currency, sign=sign),
                    "transaction_status": "S",
                    "bank_reference_id": _synthetic_id(hex_seed[30:] + hex_seed[:30])[:16],
                    "protection_eligibility": "02",
                }}))  # fmt: skip
        return rows

    def _fee(self, amount: int) -> int:
        return amount * self.fee_bps // 10_000

    def trade_rows(self, app: SandboxApp, day: dt.date) -> tuple[list[Row], int]:
        """One UTC day's payments and refunds rendered from the shared day bill
        (:func:`~paymux.channels.sandbox_bills.day_bill`): T0006 per completed capture (fee
        negative), T1107 per completed refund (gross negative, no fee returned); the day's
        tweaks as the module docstring lists. Rows the sandbox has no object for get ids
        derived from the app, the day and their place (the same on every read)."""
        bill = day_bill(self.core, day, dt.UTC, self._fee,
                        listed=lambda order: order.merchant_id == app.client_id)  # fmt: skip
        named = {t.out_trade_no for t in tweaks_of(self.core)
                 if t.day == day and t.kind is BillTweakKind.extra_payment}  # fmt: skip
        start = dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC)
        rows: list[tuple[dt.datetime, dict[str, Any]]] = []
        for n, entry in enumerate(bill.entries):
            order = entry.order
            if order.merchant_id not in (app.client_id, ""):
                continue
            seed = hashlib.sha256(f"{app.client_id}:{day}:{n}".encode()).hexdigest()
            synthetic = _synthetic_id(seed)
            when = max(entry.at, start)
            ours = order.merchant_id == app.client_id
            if entry.kind == "payment":
                txn_id = str(order.extra["capture_id"]) if ours else synthetic
                gross = self._money(entry.amount, order.currency)
                info = self._row(txn_id, "T0006", when, gross, order)
                if not ours:
                    mark = order.out_trade_no if order.out_trade_no in named else ""
                    info.update(paypal_account_id=app.payer_id[:-4] + "BUYR",
                                invoice_id=mark, custom_field=mark)  # fmt: skip
                info["fee_amount"] = self._money(entry.fee, order.currency,
                                                 sign="-" if entry.fee else "")  # fmt: skip
                info["paypal_reference_id"] = order.channel_trade_no if ours else \
                    _synthetic_id(seed[17:])  # fmt: skip
                info["paypal_reference_id_type"] = "ODR"
            else:
                refund = entry.refund
                if refund is None or not ours:
                    continue
                real = self.core.get_refund(refund.order.merchant_id, refund.out_refund_no)
                info = self._row(refund.refund_no if real is refund else synthetic, "T1107",
                                 when, self._money(entry.amount, order.currency, sign="-"),
                                 order)  # fmt: skip
                info["invoice_id"] = (refund.extra.get("invoice_id") or "") if real is refund \
                    else ""  # fmt: skip
                info["paypal_reference_id"] = order.extra["capture_id"]
                info["paypal_reference_id_type"] = "TXN"
            rows.append((when, {"transaction_info": info}))
        for n in range(bill.bad_rows):
            seed = hashlib.sha256(f"{app.client_id}:{day}:bad{n}".encode()).hexdigest()
            when = start + dt.timedelta(hours=23, minutes=59)
            rows.append((when, {"transaction_info": {
                "paypal_account_id": app.payer_id, "transaction_id": _synthetic_id(seed),
                "transaction_event_code": "T0006", "transaction_status": "S",
                "transaction_initiation_date": protocol.rfc3339(when),
                "transaction_updated_date": protocol.rfc3339(when),
            }}))  # fmt: skip
        rows.sort(key=lambda row: row[0])
        return rows, bill.summary_offset

    @staticmethod
    def _row(transaction_id: str, code: str, when: dt.datetime, amount: dict[str, str],
             order: SandboxOrder) -> dict[str, Any]:  # fmt: skip
        return {
            "paypal_account_id": order.extra.get("payer_id", ""), "transaction_id": transaction_id,
            "transaction_event_code": code,
            "transaction_initiation_date": protocol.rfc3339(when),
            "transaction_updated_date": protocol.rfc3339(when),
            "transaction_amount": amount, "transaction_status": "S",
            "invoice_id": order.extra.get("invoice_id") or "",
            "custom_field": order.extra.get("custom_id") or "",
            "protection_eligibility": "01",
        }  # fmt: skip

    # ------------------------------------------------------------ webhooks API
    def _webhook(self, app: SandboxApp, webhook_id: str) -> dict[str, Any]:
        if webhook_id != app.webhook_id:
            raise _not_found()
        return {
            "id": app.webhook_id, "url": app.webhook_url,
            "event_types": [{"name": n, "status": "ENABLED"} for n in app.event_types],
            "links": [{"href": f"{app.base_url}/v1/notifications/webhooks/{app.webhook_id}",
                       "rel": "self", "method": "GET"}],
        }  # fmt: skip

    async def _patch_webhook(self, request: Request, webhook_id: str) -> Response:
        app = self._app(request)
        self._webhook(app, webhook_id)
        try:
            ops = [_PatchOp.model_validate(op) for op in await request.json()]
        except (ValidationError, ValueError, TypeError) as exc:
            raise _invalid("INVALID_PATCH_OPERATION", "malformed JSON patch") from exc
        for op in ops:
            if op.op == "replace" and op.path == "/url" and isinstance(op.value, str):
                app.webhook_url = op.value
            elif op.op == "replace" and op.path == "/event_types" and isinstance(op.value, list):
                app.event_types = [str(e.get("name")) for e in op.value if isinstance(e, dict)]
            else:
                raise _invalid("INVALID_PATCH_OPERATION", f"cannot patch {op.path}")
        # Orders already made are delivered where the webhook now points.
        for order in self.core.orders.values():
            if order.merchant_id == app.client_id:
                order.notify_url = app.webhook_url
        return self._json(200, self._webhook(app, webhook_id))

    async def _verify_postback(self, request: Request) -> Response:
        self._app(request)
        body = await request.json()
        try:
            sent = protocol.Transmission(
                body["transmission_id"], body["transmission_time"], body["transmission_sig"],
                body["cert_url"], body["auth_algo"],
            )  # fmt: skip
            raw = protocol.encode_json(body["webhook_event"])
            protocol.verify_webhook(sent, str(body["webhook_id"]), raw, self.certificate,
                                    now=clock.now())  # fmt: skip
            status = "SUCCESS"
        except (KeyError, TypeError, protocol.ProtocolError):
            status = "FAILURE"
        return self._json(200, {"verification_status": status})

    # ------------------------------------------------------------ the buyer's page
    def _approval_page(self, order: SandboxOrder) -> str:
        amount = html.escape(f"{protocol.to_value(order.amount, order.currency)} "
                             f"{order.currency}")  # fmt: skip
        subject = html.escape(order.subject)
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>PayPal sandbox</title>"
            "</head><body style='font-family:sans-serif;max-width:28rem;margin:3rem auto'>"
            f"<h1 style='color:#003087'>PayPal sandbox</h1><p>{subject}</p>"
            f"<p style='font-size:2rem' id='amount'>{amount}</p>"
            "<form method='post'><input type='hidden' name='result' value='approve'>"
            "<button id='approve'>Pay Now</button></form>"
            "<form method='post'><input type='hidden' name='result' value='cancel'>"
            "<button id='cancel'>Cancel and return to merchant</button></form></body></html>"
        )

    def _buyer_router(self) -> APIRouter:
        router = APIRouter()

        @router.get("/checkoutnow", response_class=HTMLResponse)
        async def page(token: str) -> HTMLResponse:
            order = self._orders_by_id.get(token)
            if order is None:
                return HTMLResponse("<p>This order is not available.</p>", status_code=404)
            return HTMLResponse(self._approval_page(order))

        @router.post("/checkoutnow")
        async def act(token: str, result: str = Form("approve")) -> Response:
            order = self._orders_by_id.get(token)
            if order is None:
                return HTMLResponse("<p>This order is not available.</p>", status_code=404)
            approved = result == "approve"
            await self.core.customer_action(order, paid=approved)
            target = order.return_url if approved else order.extra.get("cancel_url")
            if not target:
                return HTMLResponse("<p>Done.</p>")
            query = {"token": token, **({"PayerID": order.extra["payer_id"]} if approved else {})}
            sep = "&" if urlsplit(target).query else "?"
            return RedirectResponse(f"{target}{sep}{urlencode(query)}", status_code=303)

        return router

    # ------------------------------------------------------------ app
    def _build_app(self) -> FastAPI:
        app = FastAPI(title="PayPal sandbox", docs_url=None, redoc_url=None)

        async def on_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, PayPalError)
            return self._json(exc.status, exc.body())

        app.add_exception_handler(PayPalError, on_error)

        @app.post("/v1/oauth2/token")
        async def token(request: Request) -> Response:
            return await self._token(request)

        @app.post("/v2/checkout/orders")
        async def create(request: Request) -> Response:
            return await self._create_order(request)

        @app.get("/v2/checkout/orders/{order_id}")
        async def show(request: Request, order_id: str) -> Response:
            return self._json(200, self.order_view(self._order(self._app(request), order_id)))

        @app.patch("/v2/checkout/orders/{order_id}")
        async def patch(request: Request, order_id: str) -> Response:
            return await self._patch_order(request, order_id)

        @app.post("/v2/checkout/orders/{order_id}/capture")
        async def capture(request: Request, order_id: str) -> Response:
            return await self._capture(request, order_id)

        @app.get("/v2/payments/captures/{capture_id}")
        async def show_capture(request: Request, capture_id: str) -> Response:
            order = self._captured_order(self._app(request), capture_id)
            return self._json(200, self.capture_view(order))

        @app.post("/v2/payments/captures/{capture_id}/refund")
        async def refund(request: Request, capture_id: str) -> Response:
            return await self._refund(request, capture_id)

        @app.get("/v2/payments/refunds/{refund_id}")
        async def show_refund(request: Request, refund_id: str) -> Response:
            return self._json(
                200, self.refund_view(self._find_refund(self._app(request), refund_id))
            )

        @app.get("/v1/reporting/transactions")
        async def transactions(request: Request) -> Response:
            return await self._transactions(request)

        @app.get("/v1/notifications/webhooks/{webhook_id}")
        async def show_webhook(request: Request, webhook_id: str) -> Response:
            return self._json(200, self._webhook(self._app(request), webhook_id))

        @app.patch("/v1/notifications/webhooks/{webhook_id}")
        async def patch_webhook(request: Request, webhook_id: str) -> Response:
            return await self._patch_webhook(request, webhook_id)

        @app.get("/v1/notifications/certs/{cert_id}")
        async def cert(cert_id: str) -> Response:
            if cert_id != self.cert_id:
                raise _not_found()
            return Response(self.cert_pem, media_type="application/x-pem-file")

        @app.post("/v1/notifications/verify-webhook-signature")
        async def verify(request: Request) -> Response:
            return await self._verify_postback(request)

        app.include_router(self._buyer_router())
        app.include_router(bill_router(self.core))
        app.include_router(customer_router(self.core, title="PayPal sandbox",
                                           brand_color="#003087"))  # fmt: skip
        return app


def _self_signed(key: rsa.RSAPrivateKey) -> x509.Certificate:
    """The sandbox's webhook signing certificate (PayPal's is CA-issued; the adapter trusts a
    certificate by where it is served, as PayPal's own SDKs do)."""
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts.sandbox.paymux"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "paymux PayPal sandbox"),
    ])  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )

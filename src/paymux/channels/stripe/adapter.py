"""Stripe PaymentIntents adapter (our own httpx client; ``stripe`` is only a test oracle).

Methods ``card``, ``apple_pay`` and ``google_pay`` all create a PaymentIntent with
``payment_method_types[]=card``: Apple Pay and Google Pay reach Stripe as card payment methods
(wallet cards), so the wallet is only a hint to the client. Two flows:

- **Client-side confirmation** (no ``customer.payment_method``): create the intent and hand
  ``next_action = sdk_params`` with the intent's ``client_secret``, the account's publishable
  key, the ``payment_method_types`` Stripe answered for the currency and the wallet hint.
  Stripe.js / Elements / the mobile SDKs confirm it, 3-D Secure included. A decline leaves the
  intent in ``requires_payment_method`` and the customer may try another card on it, so it
  stays ``pending`` until paid or cancelled (the gateway cancels it on expiry).
- **Step-up** (``CreatePayment.step_up``, risk control's ``challenge``): the intent is created
  with ``payment_method_options[card][request_three_d_secure]=challenge``, so confirming it —
  either flow — goes ``requires_action`` with a 3-D Secure challenge even for a card that would
  pass without one.
- **Server-side confirmation** (``customer.payment_method`` = a ``pm_…`` id made by
  Stripe.js/Elements or a wallet, or a Stripe test token such as ``pm_card_visa``): create
  with ``confirm=true`` and ``return_url``. ``succeeded`` → paid at once; ``requires_action``
  with ``redirect_to_url`` (3-D Secure) → ``next_action = redirect``; a decline (HTTP 402
  ``card_error``) → :class:`BusinessError` with the ``decline_code``; a failed 3-D Secure
  later → ``failed``. Raw card data (``number``, ``cvc``…) is refused: paymux never touches
  a PAN (PCI DSS scope stays with Stripe).

Keys and identity: every POST carries ``Idempotency-Key`` (create = the attempt id
``out_trade_no``; cancel/refund = ``{our id}:{operation}``) and pins ``Stripe-Version``; every
intent carries ``metadata[paymux_attempt]`` and ``metadata[paymux_flow]``, every refund
``metadata[paymux_refund]``. Answers are cross-checked against them.

Resolving an attempt whose create answer was lost: ``query_payment`` retrieves by the
intent id when known, otherwise it asks the Search API for
``metadata['paymux_attempt']:'<id>'``. Search is eventually consistent (Stripe: "usually under
a minute", up to an hour during incidents), so a miss means ``not_found`` only once the attempt
is older than :data:`SEARCH_GRACE` (its age is read from the time-ordered attempt id);
before that the miss is an :class:`UnknownOutcome` and the janitor asks again. A create
replayed under the same key within Stripe's 24 h key window returns the same intent, so the
gateway never makes two. Refunds are found the same way (by id, else by listing the intent's
refunds and matching ``metadata[paymux_refund]``), and a refund re-sent by the janitor reuses
its idempotency key.

Amounts: paymux minor units (ISO exponent) ↔ Stripe units (:mod:`.protocol`: zero-decimal,
three-decimal and ISK rules); currencies outside the account's list, amounts below Stripe's
minimum charge and three-decimal amounts not ending in 0 are refused before any call.

Webhooks: ``Stripe-Signature`` verified (any v1 over ``"{t}.{body}"``, 300 s tolerance both
ways, our clock); ``payment_intent.succeeded`` / ``payment_failed`` / ``canceled`` /
``requires_action`` / ``processing`` → ``Notification.payment``; ``refund.created`` /
``refund.updated`` / ``refund.failed`` (and the older ``charge.refund.updated``) →
``Notification.refund``. The event id is the event key (the inbox makes a replay a no-op);
``livemode`` must match the key's mode. Subscribe the endpoint to exactly these events: other
types are refused (4xx). The acknowledgement is a 2xx.

In test mode only (a sandbox ``gateway``), intents carry ``metadata[paymux_notify_url]`` so the
sandbox knows where to send events; against Stripe the webhook endpoint is configured in the
Dashboard (see docs/channels.md) and that field is never sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import IO, Any, ClassVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
    InvalidNotification,
    NextAction,
    NextActionType,
    Notification,
    PaymentState,
    RefundState,
    RetryableError,
    UnknownOutcome,
)
from paymux.channels.bills import BillKind, FetchedBill
from paymux.channels.stripe import bill as stripe_bill
from paymux.channels.stripe import protocol as p
from paymux.kit import clock

METHODS = frozenset({"card", "apple_pay", "google_pay"})
SEARCH_GRACE = dt.timedelta(hours=1)
"""How long a Search miss is not trusted to mean "never created"."""
DESCRIPTION_MAX = 1000
RAW_CARD_FIELDS = frozenset({"number", "card_number", "pan", "cvc", "cvv", "exp_month", "card"})
NOTIFY_METADATA = "paymux_notify_url"
BILL_EXPAND = ["data.source", "data.source.payment_intent"]
PAYMENT_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "payment_intent.requires_action",
        "payment_intent.processing",
    }
)
REFUND_EVENTS = frozenset(
    {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
)
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"

# Stripe error codes that mean a refund can never happen as asked.
REFUND_ERRORS: Mapping[str, str] = {
    "charge_already_refunded": "refund_exceeds_payment",
    "amount_too_large": "refund_exceeds_payment",
    "balance_insufficient": "insufficient_balance",
    "charge_disputed": "refund_not_allowed",
    "resource_missing": "order_not_found",
    "payment_intent_unexpected_state": "order_not_paid",
}


class StripeCredentials(BaseModel):
    """One Stripe account (or restricted key) in one mode."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    secret_key: str = Field(pattern=r"^(sk|rk)_(test|live)_[A-Za-z0-9_]{8,}$")
    """Secret (``sk_…``) or restricted (``rk_…``) key with PaymentIntents and Refunds write
    and Balance read."""
    publishable_key: str = Field(pattern=r"^pk_(test|live)_[A-Za-z0-9_]{8,}$")
    """Handed to Stripe.js / the mobile SDKs with the client secret."""
    webhook_secret: str = Field(pattern=r"^whsec_[A-Za-z0-9+/=_]{8,}$")
    """The signing secret of the webhook endpoint pointed at paymux's notify URL."""
    gateway: str = p.API_BASE
    country: str = Field("US", pattern=r"^[A-Z]{2}$")
    """The account's country (ISO 3166-1 alpha-2): Stripe.js's ``paymentRequest`` needs it for
    the Apple Pay / Google Pay sheet."""
    currencies: list[str] | None = None
    """The presentment currencies this account may charge (upper case); default: all that
    Stripe and paymux both know."""

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("gateway must be an http(s) URL")
        if parts.query or parts.fragment:
            raise ValueError("gateway must not carry a query or fragment")
        return value.rstrip("/")

    @field_validator("currencies")
    @classmethod
    def _currencies(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        unknown = sorted(set(value) - p.SUPPORTED)
        if unknown or not value:
            raise ValueError(f"currencies stripe does not take here: {unknown or 'none given'}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _one_mode(self) -> StripeCredentials:
        if self.secret_key.split("_")[1] != self.publishable_key.split("_")[1]:
            raise ValueError("secret_key and publishable_key are of different modes")
        return self

    @property
    def livemode(self) -> bool:
        return self.secret_key.split("_")[1] == "live"


def classify(error: p.StripeError) -> ChannelError:
    """The one table from a Stripe error answer to our error kinds.

    ==================================  ==========================================
    HTTP / type                          error
    ==================================  ==========================================
    402 ``card_error``                   BusinessError(decline_code or code)
    400/404 ``invalid_request_error``    BusinessError(code or ``invalid_request``)
    400 ``idempotency_error``            BusinessError(``idempotency_error``)
    401, 403                             RetryableError(``authentication_failed``)
    429 (``rate_limit``)                 RetryableError(``rate_limited``): not processed
    409 (key in use concurrently), 5xx   UnknownOutcome
    anything else                        UnknownOutcome
    ==================================  ==========================================
    """
    raw = error.raw
    message = error.message or f"HTTP {error.status}"
    if error.status == 402 or error.type == "card_error":
        code = error.decline_code or error.code or "card_declined"
        return BusinessError(code, message, raw=raw, category=p.decline_category(code))
    if error.status in (401, 403):
        return RetryableError("authentication_failed", message, raw=raw)
    if error.status == 429 or error.code == "rate_limit":
        return RetryableError("rate_limited", message, raw=raw)
    if error.status in (400, 404) and error.type == "idempotency_error":
        return BusinessError("idempotency_error", message, raw=raw)
    if error.status in (400, 404) and error.type == "invalid_request_error":
        return BusinessError(error.code or "invalid_request", message, raw=raw)
    if error.status >= 500:
        return UnknownOutcome("http_5xx", message, raw=raw)
    return UnknownOutcome("unexpected_response", f"{error.status} {error.type}: {message}", raw=raw)


def _bill_kind(bill: BillKind | str) -> BillKind:
    """``bill`` as a kind this channel publishes (both are the one listing); ValueError else."""
    if bill not in StripeAdapter.bills:
        raise ValueError(f"stripe has no {bill} bill")
    return BillKind(bill)


def _backstop(timeout: httpx.Timeout) -> float | None:
    """A deadline over the whole exchange, for transports that do not enforce timeouts
    themselves (in-process ASGI transports)."""
    if timeout.read is None:
        return None
    return timeout.read + (timeout.connect or 0.0)


def attempt_created_at(out_trade_no: str) -> dt.datetime | None:
    """When a paymux id (``att_`` + 10 Crockford base32 characters of milliseconds + …) was
    made; None for any other reference."""
    _, sep, body = out_trade_no.partition("_")
    if not sep or len(body) < 26:
        return None
    millis = 0
    for char in body[:10]:
        index = _CROCKFORD.find(char)
        if index < 0:
            return None
        millis = millis * 32 + index
    return dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC)


def _is_payment_method(value: object) -> bool:
    return isinstance(value, str) and value.startswith("pm_") and len(value) <= 255


@registry.register
class StripeAdapter:
    name: ClassVar[str] = "stripe"
    methods: ClassVar[frozenset[str]] = METHODS
    currencies: ClassVar[frozenset[str]] = p.SUPPORTED
    credentials_model: ClassVar[type[BaseModel]] = StripeCredentials
    production_hosts: ClassVar[frozenset[str]] = p.PRODUCTION_HOSTS
    required_customer: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """``customer.payment_method`` is optional: it selects server-side confirmation."""
    supports_step_up: ClassVar[bool] = True
    """A create with ``step_up`` asks for a 3-D Secure challenge
    (``payment_method_options[card][request_three_d_secure]=challenge``), whatever the card."""

    @staticmethod
    def check_request(request: base.PaymentRequest) -> list[base.RequestProblem]:
        """What Stripe refuses before acting: an amount below its minimum charge for the
        currency or above 99,999,999 units, a three-decimal amount not ending in 0, card
        numbers in ``customer`` (only a ``pm_…`` payment method may be sent), a malformed
        ``customer.payment_method``."""
        problems: list[base.RequestProblem] = []
        try:
            units = p.to_stripe_amount(request.amount, request.currency)
        except ValueError as exc:
            problems.append(base.RequestProblem("amount_invalid", f"{exc}.", "amount"))
        else:
            factor = units // request.amount  # Stripe units per minor unit (1 or 10)
            minimum = p.MIN_CHARGE.get(request.currency)
            problems += base.amount_limits(
                request,
                minimum=None if minimum is None else -(-minimum // factor),
                maximum=p.MAX_CHARGE_UNITS // factor,
            )
        raw = sorted(RAW_CARD_FIELDS & set(request.customer))
        if raw:
            problems.append(base.RequestProblem(
                "parameter_invalid", "Send a Stripe payment method (pm_…), never card data.",
                f"customer.{raw[0]}",
            ))  # fmt: skip
        method = request.customer.get("payment_method")
        if method is not None and not _is_payment_method(method):
            problems.append(base.RequestProblem(
                "parameter_invalid", "customer.payment_method must be a Stripe pm_… id.",
                "customer.payment_method",
            ))  # fmt: skip
        return problems

    @staticmethod
    def livemode_of(credentials: Mapping[str, Any]) -> bool:
        """``sk_live_…`` keys are live, ``sk_test_…`` ones Stripe's test mode (which runs on
        api.stripe.com and cannot move money)."""
        return str(credentials["secret_key"]).split("_")[1] == "live"

    def __init__(self, credentials: Mapping[str, Any], http: httpx.AsyncClient) -> None:
        try:
            self.credentials = StripeCredentials.model_validate(dict(credentials))
        except ValidationError as exc:
            raise base.InvalidCredentials(f"stripe credentials: {exc.errors()[0]['msg']}") from None
        self.http = http
        host = urlsplit(self.credentials.gateway).hostname or ""
        self._sandbox = host not in p.PRODUCTION_HOSTS

    # ------------------------------------------------------------ transport
    async def _request(
        self, method: str, path: str, params: Mapping[str, Any] | None = None,
        *, idempotency_key: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """One API call; the decoded object on 2xx, else the classified error."""
        _raw, data = await self._exchange(method, path, params, idempotency_key=idempotency_key)
        return data

    async def _exchange(
        self, method: str, path: str, params: Mapping[str, Any] | None = None,
        *, idempotency_key: str | None = None,
    ) -> tuple[bytes, dict[str, Any]]:  # fmt: skip
        """One API call: the answer's bytes and its decoded object on 2xx, else the classified
        error."""
        headers = {
            "Authorization": f"Bearer {self.credentials.secret_key}",
            "Stripe-Version": p.API_VERSION,
            "Accept": "application/json",
        }
        url = f"{self.credentials.gateway}{path}"
        body = p.encode_form(params or {})
        if method == "POST":
            assert idempotency_key is not None, "every POST carries an Idempotency-Key"
            headers["Idempotency-Key"] = idempotency_key
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            call = self.http.post(url, content=body.encode("ascii"), headers=headers)
        else:
            call = self.http.get(f"{url}?{body}" if body else url, headers=headers)
        deadline = _backstop(self.http.timeout)
        try:
            response = await (call if deadline is None else asyncio.wait_for(call, deadline))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryableError("connect_failed", repr(exc)) from exc
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise UnknownOutcome("timeout", repr(exc)) from exc
        except httpx.HTTPError as exc:
            raise UnknownOutcome("transport_error", repr(exc)) from exc
        if not 200 <= response.status_code < 300:
            raise classify(p.parse_error(response.status_code, response.content))
        try:
            data = json.loads(response.content)
        except ValueError as exc:
            raise UnknownOutcome("unparseable_response", str(exc)) from exc
        if not isinstance(data, dict):
            raise UnknownOutcome("unparseable_response", "answer is not an object")
        return response.content, data

    # ------------------------------------------------------------ payments
    def _check_request(self, request: CreatePayment) -> int:
        if request.method not in self.methods:
            raise BusinessError("unsupported_method", f"stripe does not offer {request.method}")
        allowed = self.credentials.currencies or sorted(self.currencies)
        if request.currency not in allowed:
            raise BusinessError(
                "unsupported_currency", f"this stripe account does not take {request.currency}"
            )
        try:
            return p.check_charge(request.amount, request.currency)
        except ValueError as exc:
            raise BusinessError("invalid_amount", str(exc)) from None

    def _payment_method(self, request: CreatePayment) -> str | None:
        raw = sorted(RAW_CARD_FIELDS & set(request.customer))
        if raw:
            raise BusinessError(
                "raw_card_data_refused",
                "send a Stripe payment method (pm_…), never card numbers",
            )
        value = request.customer.get("payment_method")
        if value is None:
            return None
        if not _is_payment_method(value):
            raise BusinessError("invalid_payment_method", "payment_method must be a pm_… id")
        return str(value)

    async def create_payment(self, request: CreatePayment) -> CreatedPayment:
        units = self._check_request(request)
        payment_method = self._payment_method(request)
        server = payment_method is not None
        if server and not request.return_url:
            raise BusinessError("return_url_required", "server-side confirmation needs return_url")
        metadata = {p.ATTEMPT_KEY: request.out_trade_no,
                    p.FLOW_KEY: p.SERVER_FLOW if server else p.CLIENT_FLOW}  # fmt: skip
        if self._sandbox:
            metadata[NOTIFY_METADATA] = request.notify_url
        params: dict[str, Any] = {
            "amount": units,
            "currency": p.wire_currency(request.currency),
            "payment_method_types": ["card"],
            "description": (request.description or request.subject)[:DESCRIPTION_MAX],
            "metadata": metadata,
        }
        if request.step_up:
            # Stripe's manual 3-D Secure: the customer is challenged even where Stripe's own
            # engine would let the card through frictionless (risk control asked for it).
            params["payment_method_options"] = {"card": {"request_three_d_secure": "challenge"}}
        if server:
            params |= {"payment_method": payment_method, "confirm": True,
                       "return_url": request.return_url}  # fmt: skip
        # A decline answers 402 (BusinessError with the decline_code): the decline is the answer.
        intent = await self._request(
            "POST", "/v1/payment_intents", params, idempotency_key=request.out_trade_no
        )
        self._check_intent(intent, request.out_trade_no, request.amount, request.currency)
        state = self._payment_state(intent, request.out_trade_no)
        if state.status is ChannelPaymentStatus.failed:
            error = intent.get("last_payment_error") or {}
            code = error.get("decline_code") or error.get("code") or "card_declined"
            raise BusinessError(str(code), str(error.get("message") or ""), raw=intent)
        return CreatedPayment(
            channel_trade_no=str(intent["id"]),
            next_action=self._next_action(intent, request, server=server),
            status=state.status,
            raw=intent,
        )

    def _next_action(
        self, intent: Mapping[str, Any], request: CreatePayment, *, server: bool
    ) -> NextAction | None:
        status = intent.get("status")
        action = intent.get("next_action") or {}
        if status == "requires_action" and action.get("type") == "redirect_to_url":
            url = (action.get("redirect_to_url") or {}).get("url")
            if not isinstance(url, str):
                raise UnknownOutcome("unparseable_response", "redirect_to_url without url")
            return NextAction(NextActionType.redirect, url=url)
        if server:
            return None
        params: dict[str, Any] = {
            "client_secret": intent.get("client_secret"),
            "publishable_key": self.credentials.publishable_key,
            "payment_intent": intent.get("id"),
            "payment_method_types": intent.get("payment_method_types") or ["card"],
        }
        if request.method != "card":
            params["wallet"] = request.method
            # Stripe.js's paymentRequest(): the account's country and the sheet's total, in
            # Stripe units (what the intent charges).
            params["payment_request"] = {
                "country": self.credentials.country,
                "currency": intent.get("currency"),
                "total": {"label": request.subject[:DESCRIPTION_MAX],
                          "amount": intent.get("amount")},
            }  # fmt: skip
        if request.return_url:
            params["return_url"] = request.return_url
        params["js_url"] = self.js_url
        # Where Stripe.js connects (a page's CSP allows it): the sandbox, or api.stripe.com.
        params["api_base"] = self.credentials.gateway
        return NextAction(NextActionType.sdk_params, params=params)

    @property
    def js_url(self) -> str:
        """The script a page loads to mount the card form with ``publishable_key`` and
        ``client_secret`` (both in the ``sdk_params`` next action, with this as ``js_url``):
        Stripe.js (``https://js.stripe.com/v3``) for an account on Stripe, the sandbox's own
        stand-in (same API: ``Stripe(pk)``, ``elements().create('card')``,
        ``confirmCardPayment``) for one on the sandbox."""
        if self._sandbox:
            return self.credentials.gateway.rstrip("/") + p.SANDBOX_JS_PATH
        return p.JS_URL

    @staticmethod
    def _check_intent(
        intent: Mapping[str, Any], out_trade_no: str, amount: int | None, currency: str | None
    ) -> None:
        metadata = intent.get("metadata") or {}
        if intent.get("object") != "payment_intent" or not intent.get("id"):
            raise UnknownOutcome("unparseable_response", "answer is not a PaymentIntent")
        if metadata.get(p.ATTEMPT_KEY) != out_trade_no:
            raise UnknownOutcome("inconsistent_response", "intent belongs to another attempt")
        if currency is not None and amount is not None:
            wire = intent.get("currency")
            if wire != p.wire_currency(currency) or intent.get("amount") != p.to_stripe_amount(
                amount, currency
            ):
                raise UnknownOutcome("inconsistent_response", "intent amount differs")

    @staticmethod
    def _payment_state(
        intent: Mapping[str, Any], out_trade_no: str, *, paid_at: dt.datetime | None = None
    ) -> PaymentState:
        try:
            status = p.map_intent_status(intent)
            currency = p.our_currency(intent.get("currency"))
            amount = p.from_stripe_amount(intent.get("amount"), currency)  # type: ignore[arg-type]
            charge = intent.get("latest_charge")
            if status is ChannelPaymentStatus.succeeded and paid_at is None:
                if isinstance(charge, dict) and charge.get("created") is not None:
                    paid_at = p.from_unix(charge["created"])
        except ValueError as exc:
            raise UnknownOutcome("unparseable_response", str(exc), raw=intent) from exc
        failure_code = failure_message = channel_code = None
        error = intent.get("last_payment_error")
        if status is ChannelPaymentStatus.failed and isinstance(error, dict):
            channel_code = str(error.get("decline_code") or error.get("code") or "card_declined")
            failure_code = p.decline_category(channel_code)
            failure_message = str(error.get("message") or "") or None
        if status is ChannelPaymentStatus.closed:
            channel_code = str(intent.get("cancellation_reason") or "canceled")
            failure_code = p.cancel_category(channel_code)
        return PaymentState(
            out_trade_no=out_trade_no,
            status=status,
            channel_trade_no=str(intent["id"]),
            amount=amount,
            currency=currency,
            paid_at=paid_at if status is ChannelPaymentStatus.succeeded else None,
            failure_code=failure_code,
            failure_message=failure_message,
            channel_code=channel_code,
            raw=dict(intent),
        )

    async def _find_intent(self, out_trade_no: str, channel_trade_no: str | None) -> dict[str, Any]:
        """The attempt's intent, or a ``resource_missing`` BusinessError when it surely does
        not exist (see the module docstring on Search)."""
        if channel_trade_no:
            intent = await self._request(
                "GET", f"/v1/payment_intents/{channel_trade_no}", {"expand": ["latest_charge"]}
            )
            self._check_intent(intent, out_trade_no, None, None)
            return intent
        try:
            query = p.search_query(out_trade_no)
        except ValueError as exc:
            raise BusinessError("resource_missing", str(exc)) from None
        found = await self._request(
            "GET", "/v1/payment_intents/search",
            {"query": query, "limit": 10, "expand": ["data.latest_charge"]},
        )  # fmt: skip
        data = found.get("data")
        if not isinstance(data, list):
            raise UnknownOutcome("unparseable_response", "search answer without data")
        mine = [i for i in data if isinstance(i, dict)
                and (i.get("metadata") or {}).get(p.ATTEMPT_KEY) == out_trade_no]  # fmt: skip
        if len(mine) > 1:
            raise UnknownOutcome("ambiguous", f"{len(mine)} intents carry {out_trade_no}")
        if mine:
            return mine[0]
        made = attempt_created_at(out_trade_no)
        if made is not None and clock.now() - made < SEARCH_GRACE:
            raise UnknownOutcome("not_yet_searchable", "search may not show a new intent yet")
        raise BusinessError("resource_missing", f"no intent for {out_trade_no}")

    async def query_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> PaymentState:
        try:
            intent = await self._find_intent(out_trade_no, channel_trade_no)
        except BusinessError as exc:
            if exc.code == "resource_missing":
                return PaymentState(out_trade_no, ChannelPaymentStatus.not_found, raw=exc.raw)
            raise
        return self._payment_state(intent, out_trade_no)

    async def close_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> None:
        """Cancel the intent (``cancellation_reason=abandoned``). An intent already
        cancelled, or none at all, is closed; a paid one is ``already_paid``."""
        state = await self.query_payment(out_trade_no, channel_trade_no=channel_trade_no)
        if state.status in (ChannelPaymentStatus.not_found, ChannelPaymentStatus.closed):
            return
        if state.status is ChannelPaymentStatus.succeeded:
            raise BusinessError("already_paid", "the intent succeeded", raw=state.raw)
        intent_id = state.channel_trade_no
        try:
            await self._request(
                "POST", f"/v1/payment_intents/{intent_id}/cancel",
                {"cancellation_reason": "abandoned"},
                idempotency_key=p.idempotency_key(out_trade_no, "cancel"),
            )  # fmt: skip
            return
        except BusinessError as exc:
            if exc.code != "payment_intent_unexpected_state":
                raise
        # Paid, processing or cancelled between our read and the cancel: ask again.
        state = await self.query_payment(out_trade_no, channel_trade_no=intent_id)
        if state.status is ChannelPaymentStatus.succeeded:
            raise BusinessError("already_paid", "the intent succeeded", raw=state.raw)
        if state.status is not ChannelPaymentStatus.closed:
            raise UnknownOutcome("close_refused", f"cancel refused while {state.status}")

    # ------------------------------------------------------------ refunds
    async def create_refund(self, request: CreateRefund) -> RefundState:
        """``POST /v1/refunds`` for the intent, keyed ``{out_refund_no}:refund``; the reason
        goes to ``metadata`` (Stripe's ``reason`` takes only its own three values)."""
        if request.amount <= 0:
            raise BusinessError("invalid_amount", "refund amount must be positive")
        if request.amount > request.total_amount:
            raise BusinessError("refund_exceeds_payment", "refund exceeds the order's amount")
        try:
            units = p.to_stripe_amount(request.amount, request.currency)
        except ValueError as exc:
            raise BusinessError("invalid_amount", str(exc)) from None
        try:
            intent = await self._find_intent(request.out_trade_no, request.channel_trade_no)
        except BusinessError as exc:
            raise BusinessError("order_not_found", exc.message) from None
        metadata = {p.REFUND_KEY: request.out_refund_no, p.ATTEMPT_KEY: request.out_trade_no}
        if request.reason:
            metadata["paymux_reason"] = request.reason[:500]
        if self._sandbox:
            notify = (intent.get("metadata") or {}).get(NOTIFY_METADATA)
            if notify:
                metadata[NOTIFY_METADATA] = notify
        params = {
            "payment_intent": intent["id"],
            "amount": units,
            "reason": "requested_by_customer",
            "metadata": metadata,
        }
        try:
            refund = await self._request(
                "POST", "/v1/refunds", params,
                idempotency_key=p.idempotency_key(request.out_refund_no, "refund"),
            )  # fmt: skip
        except BusinessError as exc:
            code = REFUND_ERRORS.get(exc.code, exc.code)
            raise BusinessError(code, exc.message, raw=exc.raw) from None
        return self._refund_state(refund, request.out_refund_no, request.out_trade_no)

    @staticmethod
    def _refund_state(
        refund: Mapping[str, Any], out_refund_no: str, out_trade_no: str | None
    ) -> RefundState:
        metadata = refund.get("metadata") or {}
        if refund.get("object") != "refund" or metadata.get(p.REFUND_KEY) != out_refund_no:
            raise UnknownOutcome("inconsistent_response", "answer is about another refund")
        try:
            status = p.map_refund_status(refund.get("status"))
            currency = p.our_currency(refund.get("currency"))
            amount = p.from_stripe_amount(refund.get("amount"), currency)  # type: ignore[arg-type]
            created = p.from_unix(refund.get("created"))
        except ValueError as exc:
            raise UnknownOutcome("unparseable_response", str(exc), raw=refund) from exc
        failed = status is ChannelRefundStatus.failed
        return RefundState(
            out_refund_no=out_refund_no,
            status=status,
            out_trade_no=out_trade_no or metadata.get(p.ATTEMPT_KEY),
            channel_refund_no=str(refund["id"]),
            amount=amount,
            currency=currency,
            refunded_at=created if status is ChannelRefundStatus.succeeded else None,
            failure_code=str(refund.get("failure_reason") or refund.get("status")) if failed
            else None,
            failure_message="refund failed at stripe" if failed else None,
            raw=dict(refund),
        )  # fmt: skip

    async def query_refund(
        self, out_refund_no: str, out_trade_no: str, *, channel_refund_no: str | None = None
    ) -> RefundState:
        if channel_refund_no:
            refund = await self._request("GET", f"/v1/refunds/{channel_refund_no}")
            return self._refund_state(refund, out_refund_no, out_trade_no)
        state = await self.query_payment(out_trade_no)
        if state.status is ChannelPaymentStatus.not_found:
            return RefundState(out_refund_no, ChannelRefundStatus.not_found, out_trade_no)
        listed = await self._request(
            "GET", "/v1/refunds", {"payment_intent": state.channel_trade_no, "limit": 100}
        )
        data = listed.get("data")
        if not isinstance(data, list):
            raise UnknownOutcome("unparseable_response", "refund list without data")
        for refund in data:
            if (
                isinstance(refund, dict)
                and (refund.get("metadata") or {}).get(p.REFUND_KEY) == out_refund_no
            ):
                return self._refund_state(refund, out_refund_no, out_trade_no)
        return RefundState(out_refund_no, ChannelRefundStatus.not_found, out_trade_no)

    # ------------------------------------------------------------ bill
    async def balance_transaction_pages(
        self, start: dt.datetime, end: dt.datetime, *, expand: list[str] | None = None
    ) -> AsyncIterator[tuple[bytes, dict[str, Any]]]:
        """The pages of balance transactions (charges, refunds, their fees) created in
        ``[start, end)``, newest first, paging with ``starting_after`` until ``has_more`` is
        false: each answer's bytes as received and its decoded list."""
        params: dict[str, Any] = {
            "created": {"gte": int(start.timestamp()), "lt": int(end.timestamp())},
            "limit": 100,
        }
        if expand:
            params["expand"] = expand
        while True:
            raw, page = await self._exchange("GET", "/v1/balance_transactions", params)
            data = page.get("data")
            if not isinstance(data, list):
                raise UnknownOutcome("unparseable_response", "list without data")
            yield raw, page
            if not page.get("has_more") or not data:
                return
            last = data[-1]
            if not isinstance(last, dict) or not isinstance(last.get("id"), str):
                raise UnknownOutcome("unparseable_response", "page ends without an id")
            params["starting_after"] = last["id"]

    async def balance_transactions(
        self, start: dt.datetime, end: dt.datetime, *, expand: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Every balance transaction created in ``[start, end)`` (see
        :meth:`balance_transaction_pages`), as the API gave them."""
        rows: list[dict[str, Any]] = []
        async for _raw, page in self.balance_transaction_pages(start, end, expand=expand):
            rows += [row for row in page["data"] if isinstance(row, dict)]
        return rows

    statement_timezone: ClassVar[dt.tzinfo] = dt.UTC
    bill_ready_after: ClassVar[dt.timedelta] = dt.timedelta(hours=3)
    """Stripe lists a balance transaction when it is made; the day is fetched 3 h after its
    end (UTC) so that late webhooks and the janitor have settled what the gateway knows."""

    bills: ClassVar[frozenset[BillKind]] = frozenset({BillKind.trade, BillKind.funds})
    """One file holds both: the balance transactions are the balance's movements too."""

    async def fetch_bill(
        self, day: dt.date, into: IO[bytes], bill: BillKind = BillKind.trade
    ) -> FetchedBill:
        """The UTC day's balance transactions, written page by page as :mod:`.bill` describes;
        the trade and the funds bill are the same file (``bill`` changes nothing fetched).
        Sources are expanded with their PaymentIntent so each line carries our attempt id
        (``metadata[paymux_attempt]``) and the intent id paymux keeps as channel_trade_no. A
        day without any is no bill (``exists`` False, nothing written). Stripe lists a day's
        transactions as they happen, so a day not over yet is ``statement_not_ready``: its
        listing would be a part of the bill."""
        _bill_kind(bill)
        start = dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC)
        end = start + dt.timedelta(days=1)
        if clock.now() < end:
            raise RetryableError("statement_not_ready", f"the UTC day {day} is not over")
        name = f"stripe_balance_transactions_{day.isoformat()}.jsonl"
        pages = count = 0
        async for raw, page in self.balance_transaction_pages(start, end, expand=BILL_EXPAND):
            data = page["data"]
            if not pages:
                if not data and not page.get("has_more"):
                    return FetchedBill(name, exists=False)
                into.write(stripe_bill.header(day, start, end))
            into.write(stripe_bill.page_line(raw))
            pages += 1
            count += len(data)
        into.write(stripe_bill.trailer(pages, count))
        return FetchedBill(name, {"count": str(count)})

    def bill_reader(
        self, path: Path, expected: Mapping[str, str], bill: BillKind = BillKind.trade
    ) -> stripe_bill.StripeBillReader:
        """The file read for the ``bill`` kind's lines (funds: payouts as settlement)."""
        funds = _bill_kind(bill) is BillKind.funds
        return stripe_bill.StripeBillReader(path, expected, funds=funds)

    async def statement(self, day: dt.date) -> list[base.StatementLine]:
        """The UTC day's balance transactions as statement lines (:mod:`.bill`): ``charge`` →
        payment (its ``fee``), ``refund`` → refund (negative), ``stripe_fee`` → fee, anything
        else → other."""
        return await bills.statement_of(self, day)

    # ------------------------------------------------------------ notifications
    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        header = next((v for k, v in headers.items() if k.lower() == p.SIGNATURE_HEADER), None)
        try:
            p.verify_signature(body, header, self.credentials.webhook_secret, now=clock.now())
        except p.SignatureError as exc:
            raise InvalidNotification(exc.code, str(exc)) from None
        try:
            event = json.loads(body)
            if not isinstance(event, dict) or event.get("object") != "event":
                raise ValueError("not an event")
            event_id, kind = str(event["id"]), str(event["type"])
            obj = event["data"]["object"]
            if not isinstance(obj, dict):
                raise ValueError("data.object is not an object")
            created = p.from_unix(event.get("created"))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidNotification("malformed", str(exc)) from None
        if bool(event.get("livemode")) != self.credentials.livemode:
            raise InvalidNotification("wrong_mode", "event is of the other mode")
        metadata = obj.get("metadata") or {}
        out_trade_no = metadata.get(p.ATTEMPT_KEY)
        if not isinstance(out_trade_no, str) or not out_trade_no:
            raise InvalidNotification("foreign_object", "object carries no paymux_attempt")
        try:
            if kind in PAYMENT_EVENTS:
                payment = self._payment_state(obj, out_trade_no, paid_at=created)
                return Notification(event_key=event_id, payment=payment, raw=event)
            if kind in REFUND_EVENTS:
                refund_no = metadata.get(p.REFUND_KEY)
                if not isinstance(refund_no, str) or not refund_no:
                    raise InvalidNotification("foreign_object", "refund without paymux_refund")
                refund = self._refund_state(obj, refund_no, out_trade_no)
                return Notification(event_key=event_id, refund=refund, raw=event)
        except UnknownOutcome as exc:
            raise InvalidNotification("malformed", exc.message) from None
        raise InvalidNotification("unhandled_event", f"event type {kind} is not handled")

    def ack(self, ok: bool) -> Ack:
        if ok:
            return Ack(200, b'{"received":true}', "application/json")
        return Ack(400, b'{"received":false}', "application/json")


__all__ = ["StripeAdapter", "StripeCredentials", "attempt_created_at", "classify"]

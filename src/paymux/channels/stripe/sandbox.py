"""A Stripe API sandbox: PaymentIntents, Refunds, Balance Transactions and signed webhooks, on
Stripe's paths and wire shapes, so the ``stripe`` package (``api_base`` / ``base_addresses``)
and our adapter both talk to it as to Stripe.

Endpoints (form-encoded bodies, ``Authorization: Bearer sk_test_…``):

- ``POST /v1/payment_intents``: create, optionally ``confirm=true`` with ``payment_method`` and
  ``return_url``. ``GET /v1/payment_intents/{id}`` (``expand[]=latest_charge``; a publishable
  key may read it with its ``client_secret``), ``POST …/{id}/confirm`` (secret key, or the
  publishable key + ``client_secret`` as Stripe.js does), ``POST …/{id}/cancel`` and ``GET
  /v1/payment_intents/search?query=metadata['k']:'v'`` (immediately consistent here; Stripe's
  is eventually consistent).
- ``POST /v1/refunds`` (``payment_intent``, ``amount``, ``reason``, ``metadata``), ``GET
  /v1/refunds/{id}``, ``GET /v1/refunds?payment_intent=``.
- ``GET /v1/balance_transactions`` with ``created[gte|gt|lte|lt]``, ``type``, ``limit``,
  ``starting_after`` and ``expand[]=data.source`` / ``data.source.payment_intent``: the bill —
  each UTC day's balance transactions rendered from the shared day bill
  (:func:`~paymux.channels.sandbox_bills.day_bill`): a ``charge`` line per payment (fee 2.9 %
  + 30 units of two-decimal currencies, ``net``) and a ``refund`` line per refund (negative,
  fee 0: Stripe keeps its fee), newest first, in the presentment currency (no conversion).
- Test payment methods: ``pm_card_visa`` / ``_mastercard`` / ``_amex`` (frictionless),
  ``pm_card_authenticationRequired`` / ``pm_card_threeDSecure2Required`` (3-D Secure
  challenge: ``requires_action`` + ``redirect_to_url`` to ``/_sandbox/3ds/{id}``, where the
  customer completes or fails authentication and is sent to ``return_url`` with
  ``payment_intent``, ``payment_intent_client_secret`` and ``redirect_status``),
  ``pm_card_chargeDeclined`` (``card_declined``/``generic_decline``), ``…InsufficientFunds``,
  ``…ExpiredCard``. A decline answers HTTP 402 with the intent in the error; any other
  ``pm_…`` is ``resource_missing``.
- ``payment_method_options[card][request_three_d_secure]`` (``automatic`` — the default —,
  ``any`` or ``challenge``; on create or confirm; shown back in the intent's
  ``payment_method_options.card``): ``any``/``challenge`` make confirming any test card go
  ``requires_action`` with the 3-D Secure page, as Stripe's manual 3DS does; after a completed
  challenge the card does what it does (a frictionless card is charged, a declining one
  declines: authentication comes before authorisation).
- Errors are Stripe's ``{"error": {"type", "code", "decline_code", "message", "param"}}``
  with its statuses (400, 401, 402, 404, 409, 500). Amounts are checked as Stripe does
  (minimum charge, three-decimal last digit 0, ISK whole krónur).
- ``Idempotency-Key``: the same key with the same parameters replays the saved answer
  (``Idempotent-Replayed: true``, 500s included); other parameters → 400
  ``idempotency_error``; a key still in flight → 409. Validation failures are not saved.

Webhooks: ``POST`` of ``{"object": "event", …}`` with ``Stripe-Signature`` (a fresh ``t=`` on
every delivery, one ``v1`` per active secret: two after :meth:`Sandbox.roll_webhook_secret`),
acknowledged by any 2xx, retried on Stripe's kind of schedule. The endpoint is the account's
(``POST /_sandbox/webhook_endpoints``) or else the ``metadata[paymux_notify_url]`` the adapter
sends in test mode. Events: ``payment_intent.succeeded`` / ``payment_failed`` / ``canceled`` /
``requires_action``; ``refund.created`` (refund done at once), ``refund.updated`` (done later),
``refund.failed``. Each event is the object as it was when it changed (built then, delivered
and retried as built): a 3-D Secure payment sends ``requires_action`` once, then
``succeeded`` once.

Scripts (the shared kit): ``succeed``/``decline``/``manual``/``create_timeout``/
``create_error`` for intents, notify modes ``none``/``duplicate``/``delayed``/
``before_response``; refund scripts ``succeed``/``delayed``/``fail``/``refuse``
(``balance_insufficient``)/``create_timeout``/``create_error``. The kit's customer page and
``/_sandbox/orders/{attempt or pi id}/pay`` stand in for the customer paying through Stripe.js.
A decline there, on a client-side intent, leaves it payable (as Stripe does).

Bill tweaks (``POST /_sandbox/bill_tweaks``, :mod:`paymux.channels.sandbox_bills`; amounts in
Stripe units, the minor units of every currency but the few whose Stripe exponent differs),
as they show in the balance transactions of the tweaked UTC day:

- ``amount``: the payment's ``charge`` line shows ``amount`` (and ``net`` = amount − fee);
- ``fee``: its ``fee`` (and ``fee_details``) is ``amount``, the fixed part not added;
- ``duplicate``: a second ``charge`` line of the same charge, under another ``txn_`` id;
- ``next_day``: the line is in the next day's listing, ``created`` at that day's 00:00:00 UTC;
- ``drop``: no line;
- ``extra_payment``: a ``charge`` line of a charge made at Stripe only (its PaymentIntent has
  ``metadata[paymux_attempt]`` only when the tweak names ``out_trade_no``), at 12:00 UTC;
- ``extra_refund``: a ``refund`` line on the order's charge whose refund has no
  ``metadata[paymux_refund]`` (made in the Dashboard), a minute after the payment;
- ``corrupt_summary``: **no effect** — a list of balance transactions has no summary or count
  to be wrong;
- ``bad_row``: a ``charge`` balance transaction without ``amount`` at 23:59:59 UTC.

Payouts (the funds bill is the same listing): each UTC day the account's balance of each
currency is paid to its bank account at 23:59:59 UTC, the shared rule of
:func:`~paymux.channels.sandbox_bills.day_funds` applied to the day's charges and refunds as
this listing renders them (fee 2.9 % + 30, none returned on a refund). The payout is a
``payout`` balance transaction (``amount`` negative, ``fee`` 0, ``source`` the payout) and a
payout object (``GET /v1/payouts/{id}``, ``GET /v1/payouts`` with ``created``, ``status``,
``limit``, ``starting_after``): ``automatic`` true, ``arrival_date`` two days later at 00:00
UTC, ``status`` ``in_transit`` until then and ``paid`` after. Funds tweaks (``"bill":
"funds"``): ``settlement_amount`` makes the day's payout of each currency ``amount`` (what it
leaves opens the next day); ``extra_payout`` (and ``amount``/``drop``/``duplicate`` of a payout)
is not something a Stripe account without Connect does and is **not supported** (it would only
lower the payout); ``corrupt_summary`` and ``bad_row`` of the funds bill have no effect (use the
trade ones: it is the same file). A negative balance (a day whose refunds outweigh its
charges, or a negative ``settlement_amount``) would make Stripe debit the bank account; the
sandbox then lists a ``payout`` with a positive amount [unverified: Stripe's form of an
automatic debit].

Lines the sandbox holds no object for get ids derived from the account, the day and their
place, so a day listed twice (or paged) is the same listing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, FastAPI, Form, HTTPException, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import escape
from pydantic import BaseModel

from paymux.channels.sandbox_bills import (
    BillEntry,
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
from paymux.channels.stripe import protocol as p
from paymux.kit import clock

RETRY_SCHEDULE: tuple[float, ...] = (60, 300, 1800, 3600, 7200, 14400, 28800, 57600, 86400)
"""Stripe retries for up to three days with exponential backoff [exact steps unverified]."""
FEE_BPS = 290
FEE_FIXED = 30
NOTIFY_METADATA = "paymux_notify_url"
TEST_CARDS: Mapping[str, tuple[str, ...]] = {
    "pm_card_visa": ("succeed", "visa"),
    "pm_card_mastercard": ("succeed", "mastercard"),
    "pm_card_amex": ("succeed", "amex"),
    "pm_card_authenticationRequired": ("3ds", "visa"),
    "pm_card_threeDSecure2Required": ("3ds", "visa"),
    "pm_card_chargeDeclined": ("decline", "visa", "card_declined", "generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": (
        "decline", "visa", "card_declined", "insufficient_funds"),
    "pm_card_chargeDeclinedExpiredCard": ("decline", "visa", "expired_card", "expired_card"),
}  # fmt: skip
_DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
}
THREE_D_SECURE_REQUESTS = ("any", "automatic", "challenge")
"""The values Stripe takes for ``payment_method_options[card][request_three_d_secure]``."""
_CHALLENGE_REQUESTS = frozenset({"any", "challenge"})
_AUTH_FAILED = {
    "type": "invalid_request_error",
    "code": "payment_intent_authentication_failure",
    "message": "The provided PaymentMethod has failed authentication. You can provide "
    "payment_method_data or a new PaymentMethod to attempt to fulfill this PaymentIntent again.",
}
TEST_CARD_NUMBERS: Mapping[str, str] = {
    "4242424242424242": "pm_card_visa",
    "4000056655665556": "pm_card_visa",
    "5555555555554444": "pm_card_mastercard",
    "378282246310005": "pm_card_amex",
    "4000000000000002": "pm_card_chargeDeclined",
    "4000000000009995": "pm_card_chargeDeclinedInsufficientFunds",
    "4000000000000069": "pm_card_chargeDeclinedExpiredCard",
    "4000002760003184": "pm_card_authenticationRequired",
    "4000002500003155": "pm_card_authenticationRequired",
}
"""Stripe's test card numbers, as the test ``pm_card_…`` whose behaviour each has."""
JS_PATH = p.SANDBOX_JS_PATH
_STATIC = Path(__file__).parent / "static"
Answer = tuple[int, dict[str, Any]]
"""An HTTP status and its JSON body."""
_SEARCH = re.compile(r"^\s*metadata\['([A-Za-z0-9_]+)'\]\s*:\s*'([^']*)'\s*$")


_OPS = {"gte": int.__ge__, "gt": int.__gt__, "lte": int.__le__, "lt": int.__lt__,
        "eq": int.__eq__}  # fmt: skip
"""The comparisons of a ``created[…]`` filter."""


def _funds_entry(row: Mapping[str, Any]) -> FundsEntry:
    """A charge or refund balance transaction as a line of the day's fund flow."""
    at = dt.datetime.fromtimestamp(int(row["created"]), dt.UTC)
    amount, fee, ref = int(row["amount"]), int(row["fee"]), str(row["id"])
    if row["type"] == "charge":
        return FundsEntry("payment", amount, fee, at, None, ref)
    return FundsEntry("refund", amount, fee, at, None, ref)


def _fee_pct(amount: int) -> int:
    """The day bill's fee of a payment: 2.9 %; the fixed part (two-decimal currencies only) is
    added when the row is rendered, where its currency is known."""
    return amount * FEE_BPS // 10_000


def _txn_row(txn_id: str, kind: str, amount: int, fee: int, currency: str, created: int,
             source: str | None) -> dict[str, Any]:  # fmt: skip
    return {
        "id": txn_id, "object": "balance_transaction", "amount": amount,
        "available_on": created + 2 * 86400, "created": created, "currency": currency,
        "description": None, "exchange_rate": None, "fee": fee,
        "fee_details": [{"amount": fee, "currency": currency, "type": "stripe_fee",
                         "description": "Stripe processing fees"}] if fee else [],
        "net": amount - fee, "reporting_category": kind, "source": source,
        "status": "pending", "type": kind,
    }  # fmt: skip


@dataclass
class Txn:
    """A balance transaction of the listing, and the objects its expansions show."""

    row: dict[str, Any]
    source: dict[str, Any] | None = None
    intent: dict[str, Any] | None = None


class _Fail(Exception):
    """A Stripe error answer. ``saved``: whether an idempotency key keeps it (validation
    failures are not kept, as at Stripe)."""

    def __init__(self, status: int, type_: str, message: str, *, code: str | None = None,
                 param: str | None = None, saved: bool = True, **extra: Any) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.saved = saved
        self.error: dict[str, Any] = {"type": type_, "message": message}
        if code:
            self.error["code"] = code
            self.error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param:
            self.error["param"] = param
        self.error.update(extra)


def _invalid(message: str, *, code: str = "parameter_invalid", param: str | None = None) -> _Fail:
    return _Fail(400, "invalid_request_error", message, code=code, param=param, saved=False)


def _missing(kind: str, ident: str, param: str | None = None) -> _Fail:
    return _Fail(404, "invalid_request_error", f"No such {kind}: '{ident}'",
                 code="resource_missing", param=param)  # fmt: skip


def _token(n: int = 12) -> str:
    return secrets.token_urlsafe(n).replace("-", "x").replace("_", "y")


@dataclass
class Account:
    id: str
    secret_key: str
    publishable_key: str
    webhook_secrets: list[str]
    """Active endpoint secrets, newest first; events carry one v1 per secret."""
    endpoint_url: str | None = None


@dataclass
class Intent:
    id: str
    account: Account
    order: SandboxOrder
    client_secret: str
    currency: str
    """Lower-case wire code."""
    metadata: dict[str, str]
    payment_method_types: list[str]
    description: str | None
    created: int
    flow_server: bool
    wire_status: str = "requires_payment_method"
    payment_method: str | None = None
    return_url: str | None = None
    last_payment_error: dict[str, Any] | None = None
    charge: dict[str, Any] | None = None
    canceled_at: int | None = None
    cancellation_reason: str | None = None
    event: str = "payment_intent.created"
    """The event the next notification announces."""
    request_three_d_secure: str = "automatic"
    """``payment_method_options[card][request_three_d_secure]``: ``any``/``challenge`` ask
    for a 3-D Secure challenge whatever the card."""


@dataclass
class _Saved:
    endpoint: str
    params: dict[str, Any]
    status: int = 0
    body: bytes = b""
    done: bool = False


@dataclass
class Ledger:
    rows: list[dict[str, Any]] = field(default_factory=list)


def _luhn(number: str) -> bool:
    total = 0
    for i, digit in enumerate(reversed(number)):
        d = int(digit) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _three_d_secure(params: Mapping[str, Any]) -> str | None:
    """``payment_method_options[card][request_three_d_secure]`` if sent, checked as Stripe
    checks it."""
    options = params.get("payment_method_options")
    if options is None:
        return None
    card = options.get("card") if isinstance(options, dict) else None
    if not isinstance(options, dict) or (card is not None and not isinstance(card, dict)):
        raise _invalid("Invalid payment_method_options: must be an object.",
                       param="payment_method_options")  # fmt: skip
    unknown = sorted(set(options) - {"card"})
    if unknown:
        raise _invalid(f"Received unknown parameter: payment_method_options[{unknown[0]}]",
                       param=f"payment_method_options[{unknown[0]}]")  # fmt: skip
    value = (card or {}).get("request_three_d_secure")
    if value is None:
        return None
    if value not in THREE_D_SECURE_REQUESTS:
        param = "payment_method_options[card][request_three_d_secure]"
        raise _invalid(f"Invalid {param}: must be one of any, automatic, or challenge",
                       param=param)  # fmt: skip
    return str(value)


def _now() -> int:
    return int(clock.now().timestamp())


def _base_url(request: Request) -> str:
    root = str(request.scope.get("root_path", ""))
    return f"{request.url.scheme}://{request.url.netloc}{root}".rstrip("/")


class _Core(SandboxCore):
    """The kit's core, with Stripe's semantics where they differ: a decline on a client-side
    intent leaves it payable, and each delivery is signed afresh."""

    def __init__(self, sandbox: Sandbox, **options: Any) -> None:
        super().__init__(**options)
        self.sandbox = sandbox

    def settle(self, order: SandboxOrder, *, paid: bool) -> bool:
        intent = self.sandbox.intent_of(order)
        if order.status is not OrderStatus.pending:
            return False
        if paid:
            super().settle(order, paid=True)
            self.sandbox.charged(intent)
            return True
        intent.last_payment_error = self.sandbox.decline_error(intent, "generic_decline")
        intent.wire_status = "requires_payment_method"
        intent.event = "payment_intent.payment_failed"
        if intent.flow_server:
            super().settle(order, paid=False)
        return True

    def close(self, order: SandboxOrder) -> bool:
        closed = super().close(order)
        if closed and order.status is OrderStatus.closed:
            intent = self.sandbox.intent_of(order)
            intent.event = "payment_intent.canceled"
        return closed

    def finish_refund(self, refund: SandboxRefund, *, succeeded: bool) -> bool:
        if not super().finish_refund(refund, succeeded=succeeded):
            return False
        immediate = refund.script.outcome in (RefundOutcome.succeed, RefundOutcome.create_timeout)
        refund.extra["event"] = (
            "refund.failed" if not succeeded
            else "refund.created" if immediate else "refund.updated"
        )  # fmt: skip
        if succeeded:
            self.sandbox.refunded(refund)
        return True

    def notify(self, order: SandboxOrder) -> Coroutine[Any, Any, None]:
        """Deliver the event of the intent's change that just happened. A Stripe event is a
        snapshot of the object when it changed, so it is built now — not when the delivery
        task runs: built late, a ``requires_action`` whose challenge was completed meanwhile
        went out as a second ``payment_intent.succeeded``."""
        built = self.sandbox.build_notification(order)

        async def deliver() -> None:
            await self._notify(order, order.script, lambda _order: built)

        return deliver()

    async def _post(
        self, subject: SandboxOrder | SandboxRefund, headers: dict[str, str], body: bytes
    ) -> bool:
        account = self.sandbox.account_of(subject)
        fresh = dict(headers)
        fresh["Stripe-Signature"] = p.signature_header(body, account.webhook_secrets, _now())
        return await super()._post(subject, fresh, body)


class EndpointIn(BaseModel):
    secret_key: str
    url: str


class Sandbox:
    """The Stripe sandbox: ``.core`` (intents as kit orders, scripts, notifier) and ``.app``."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient | None = None,
        time_scale: float = 1.0,
        hold_timeout_seconds: float = 30.0,
    ) -> None:
        self.accounts: dict[str, Account] = {}
        self.intents: dict[str, Intent] = {}
        self.refund_objects: dict[str, SandboxRefund] = {}
        self.payment_methods: dict[str, dict[str, Any]] = {}
        self._saved: dict[tuple[str, str], _Saved] = {}
        self.core = _Core(
            self,
            channel="stripe",
            retry_schedule=RETRY_SCHEDULE,
            build_notification=self.build_notification,
            build_refund_notification=self.build_refund_notification,
            http=http,
            time_scale=time_scale,
            hold_timeout_seconds=hold_timeout_seconds,
        )
        self.app = self._build_app()

    # ------------------------------------------------------------ accounts
    def provision(self, base_url: str) -> dict[str, Any]:
        """A new test-mode account; complete adapter credentials."""
        account = Account(
            id="acct_" + _token(8),
            secret_key="sk_test_" + _token(18),
            publishable_key="pk_test_" + _token(18),
            webhook_secrets=["whsec_" + _token(24)],
        )
        self.accounts[account.secret_key] = account
        return {
            "secret_key": account.secret_key,
            "publishable_key": account.publishable_key,
            "webhook_secret": account.webhook_secrets[0],
            "gateway": base_url.rstrip("/"),
        }

    def account(self, secret_key: str) -> Account:
        return self.accounts[secret_key]

    def roll_webhook_secret(self, secret_key: str, *, keep_old: bool = True) -> str:
        """Roll the endpoint secret; while the old one is kept, events carry both v1s."""
        account = self.accounts[secret_key]
        new = "whsec_" + _token(24)
        account.webhook_secrets = [new, *account.webhook_secrets[:1]] if keep_old else [new]
        return new

    def intent_of(self, order: SandboxOrder) -> Intent:
        intent: Intent = order.extra["intent"]
        return intent

    def account_of(self, subject: SandboxOrder | SandboxRefund) -> Account:
        order = subject.order if isinstance(subject, SandboxRefund) else subject
        return self.intent_of(order).account

    # ------------------------------------------------------------ objects
    def status_of(self, intent: Intent) -> str:
        status = intent.order.status
        if status is OrderStatus.succeeded:
            return "succeeded"
        if status is OrderStatus.closed:
            return "canceled"
        if status is OrderStatus.failed:
            return "requires_payment_method"
        return intent.wire_status

    def intent_json(self, intent: Intent, *, expand: set[str] | None = None) -> dict[str, Any]:
        status = self.status_of(intent)
        order = intent.order
        next_action = None
        if status == "requires_action":
            next_action = {
                "type": "redirect_to_url",
                "redirect_to_url": {
                    "url": f"{order.extra['base']}/_sandbox/3ds/{intent.id}",
                    "return_url": intent.return_url,
                },
            }
        charge: Any = None
        if intent.charge is not None:
            charge = intent.charge if expand and "latest_charge" in expand else intent.charge["id"]
        return {
            "id": intent.id,
            "object": "payment_intent",
            "amount": order.amount,
            "amount_capturable": 0,
            "amount_received": order.amount if status == "succeeded" else 0,
            "automatic_payment_methods": None,
            "canceled_at": intent.canceled_at,
            "cancellation_reason": intent.cancellation_reason,
            "capture_method": "automatic",
            "client_secret": intent.client_secret,
            "confirmation_method": "automatic",
            "created": intent.created,
            "currency": intent.currency,
            "description": intent.description,
            "last_payment_error": intent.last_payment_error,
            "latest_charge": charge,
            "livemode": False,
            "metadata": dict(intent.metadata),
            "next_action": next_action,
            "payment_method": intent.payment_method,
            "payment_method_options": {
                "card": {
                    "installments": None,
                    "mandate_options": None,
                    "network": None,
                    "request_three_d_secure": intent.request_three_d_secure,
                }
            },
            "payment_method_types": list(intent.payment_method_types),
            "status": status,
        }

    def refund_json(self, refund: SandboxRefund) -> dict[str, Any]:
        intent = self.intent_of(refund.order)
        status = {RefundStatus.pending: "pending", RefundStatus.succeeded: "succeeded",
                  RefundStatus.failed: "failed"}[refund.status]  # fmt: skip
        return {
            "id": refund.refund_no,
            "object": "refund",
            "amount": refund.amount,
            "balance_transaction": refund.extra.get("txn"),
            "charge": intent.charge["id"] if intent.charge else None,
            "created": refund.extra["created"],
            "currency": intent.currency,
            "failure_reason": "declined" if status == "failed" else None,
            "metadata": dict(refund.extra["metadata"]),
            "payment_intent": intent.id,
            "reason": refund.reason,
            "status": status,
        }

    def decline_error(self, intent: Intent, decline_code: str, code: str = "card_declined"
                      ) -> dict[str, Any]:  # fmt: skip
        return {
            "type": "card_error",
            "code": code,
            "decline_code": decline_code,
            "message": _DECLINE_MESSAGES.get(decline_code, "Your card was declined."),
            "payment_method": {"id": intent.payment_method, "object": "payment_method"},
        }

    def charged(self, intent: Intent) -> None:
        """The intent's money was taken: its charge (its balance transaction is listed from
        the day bill, :meth:`day_transactions`)."""
        order = intent.order
        charge_id = "ch_" + _token(12)
        txn = "txn_" + _token(12)
        intent.charge = {
            "id": charge_id, "object": "charge", "amount": order.amount,
            "amount_refunded": 0, "balance_transaction": txn, "created": _now(),
            "currency": intent.currency, "paid": True, "payment_intent": intent.id,
            "payment_method": intent.payment_method, "status": "succeeded",
        }  # fmt: skip
        intent.last_payment_error = None
        intent.event = "payment_intent.succeeded"

    def refunded(self, refund: SandboxRefund) -> None:
        intent = self.intent_of(refund.order)
        refund.extra["txn"] = "txn_" + _token(12)
        if intent.charge is not None:
            intent.charge["amount_refunded"] += refund.amount

    # ------------------------------------------------------------ notifications
    def _event(self, kind: str, obj: dict[str, Any]) -> tuple[dict[str, str], bytes]:
        event = {
            "id": "evt_" + _token(16),
            "object": "event",
            "api_version": p.API_VERSION,
            "created": _now(),
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": kind,
        }
        body = json.dumps(event, separators=(",", ":")).encode()
        # The signature is made per delivery (_Core._post); this one is for direct use.
        return {"Content-Type": "application/json; charset=utf-8"}, body

    def build_notification(self, order: SandboxOrder) -> tuple[dict[str, str], bytes]:
        intent = self.intent_of(order)
        return self._event(intent.event, self.intent_json(intent))

    def build_refund_notification(self, refund: SandboxRefund) -> tuple[dict[str, str], bytes]:
        return self._event(str(refund.extra.get("event", "refund.updated")),
                           self.refund_json(refund))  # fmt: skip

    def signed(self, secret_key: str, body: bytes, timestamp: int | None = None) -> str:
        """A ``Stripe-Signature`` for ``body`` as the account's endpoint would get it."""
        account = self.accounts[secret_key]
        return p.signature_header(body, account.webhook_secrets, timestamp or _now())

    # ------------------------------------------------------------ request plumbing
    def _authenticate(self, request: Request, params: Mapping[str, Any]) -> tuple[Account, bool]:
        """The account and whether a publishable key was used."""
        auth = request.headers.get("authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else str(params.get("key", ""))
        for account in self.accounts.values():
            if key == account.secret_key:
                return account, False
            if key == account.publishable_key:
                return account, True
        raise _Fail(401, "invalid_request_error",
                    f"Invalid API Key provided: {key[:8]}{'*' * 8}", saved=False)  # fmt: skip

    @staticmethod
    async def _params(request: Request) -> dict[str, Any]:
        try:
            text = request.url.query
            if request.method == "POST":
                text = (await request.body()).decode("utf-8")
            return p.decode_form(text)
        except (UnicodeDecodeError, ValueError) as exc:
            raise _invalid(f"Invalid request: {exc}") from None

    @staticmethod
    def _json(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(data, indent=2).encode()
        h = {"Request-Id": "req_" + _token(10), **(headers or {})}
        return Response(body, status_code=status, media_type="application/json", headers=h)

    async def _serve(self, request: Request, handler: Any, *args: Any,
                     publishable_ok: bool = False) -> Response:  # fmt: skip
        base = _base_url(request)
        saved: _Saved | None = None
        saved_key: tuple[str, str] | None = None
        try:
            params = await self._params(request)
            account, publishable = self._authenticate(request, params)
            if publishable and not publishable_ok:
                raise _Fail(401, "invalid_request_error", "This API call cannot be made with a "
                            "publishable API key.", saved=False)  # fmt: skip
            key = request.headers.get("idempotency-key")
            if key and request.method == "POST":
                endpoint = f"{request.method} {request.url.path}"
                params.pop("key", None)
                previous = self._saved.get((account.id, key))
                if previous is not None:
                    if previous.endpoint != endpoint or previous.params != params:
                        raise _Fail(400, "idempotency_error", "Keys for idempotent requests can "
                                    "only be used with the same parameters they were first "
                                    "used with.", saved=False)  # fmt: skip
                    if not previous.done:
                        raise _Fail(409, "idempotency_error", "There is currently another "
                                    "in-progress request using this Idempotent Key.",
                                    saved=False)  # fmt: skip
                    return Response(previous.body, status_code=previous.status,
                                    media_type="application/json",
                                    headers={"Idempotent-Replayed": "true"})  # fmt: skip
                saved_key = (account.id, key)
                saved = self._saved[saved_key] = _Saved(endpoint, params)
            status, data = await handler(account, params, base, publishable, *args)
        except _Fail as fail:
            if saved_key is not None and not fail.saved:
                del self._saved[saved_key]
                saved = None
            status, data = fail.status, {"error": fail.error}
        response = self._json(status, data)
        if saved is not None:
            saved.status, saved.body, saved.done = status, bytes(response.body), True
        return response

    # ------------------------------------------------------------ payment intents
    def _check_amount(self, params: Mapping[str, Any]) -> tuple[int, str]:
        currency = str(params.get("currency") or "")
        if not currency:
            raise _invalid("Missing required param: currency.", code="parameter_missing",
                           param="currency")  # fmt: skip
        if currency != currency.lower() or currency.upper() not in p.SUPPORTED:
            raise _invalid(f"Invalid currency: {currency}.", param="currency")
        try:
            amount = int(str(params.get("amount")))
        except ValueError:
            raise _invalid("Invalid integer: amount", param="amount") from None
        upper = currency.upper()
        if currency == "isk" and amount % 100:
            raise _invalid("Invalid amount. Currency ISK has become effectively zero-decimal and "
                           "charged amounts must be evenly divisible by 100.",
                           code="invalid_charge_amount_no_decimal_compatible",
                           param="amount")  # fmt: skip
        if upper in p.THREE_DECIMAL and amount % 10:
            raise _invalid("Amounts in three-decimal currencies must end in 0.",
                           code="amount_invalid", param="amount")  # fmt: skip
        if amount < p.MIN_CHARGE.get(upper, 1):
            raise _invalid("Amount must be at least the minimum charge amount.",
                           code="amount_too_small", param="amount")  # fmt: skip
        if amount > 99_999_999:
            raise _invalid("Amount must be no more than 99999999.", code="amount_too_large",
                           param="amount")  # fmt: skip
        return amount, currency

    async def _create_intent(
        self, account: Account, params: dict[str, Any], base: str, _publishable: bool
    ) -> Answer:
        amount, currency = self._check_amount(params)
        metadata = params.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise _invalid("Invalid metadata.", param="metadata")
        types = params.get("payment_method_types") or ["card"]
        if not isinstance(types, list) or types != ["card"]:
            raise _invalid("The payment method type provided is not enabled here.",
                           code="payment_intent_invalid_parameter",
                           param="payment_method_types")  # fmt: skip
        intent_id = "pi_" + _token(18)
        description = params.get("description")
        out_trade_no = str(metadata.get("paymux_attempt") or intent_id)
        order = SandboxOrder(
            out_trade_no=out_trade_no, channel_trade_no=intent_id, merchant_id=account.id,
            amount=amount, currency=currency.upper(), subject=str(description or ""),
            notify_url=account.endpoint_url or metadata.get(NOTIFY_METADATA), method="card",
            script=self.core.take_script(str(description or "")), created_at=clock.now(),
            return_url=params.get("return_url"), extra={"base": base},
        )  # fmt: skip
        intent = Intent(
            id=intent_id, account=account, order=order,
            client_secret=f"{intent_id}_secret_{_token(12)}", currency=currency,
            metadata={str(k): str(v) for k, v in metadata.items()}, payment_method_types=types,
            description=description, created=_now(),
            flow_server=str(params.get("confirm")) == "true",
        )  # fmt: skip
        order.extra["intent"] = intent
        script = order.script
        if script.outcome is Outcome.create_error:
            raise _Fail(500, "api_error", "An unknown error occurred", saved=True)
        self.intents[intent_id] = intent
        self.core.add_order(order)
        self.core.alias(intent_id, order)
        intent.request_three_d_secure = _three_d_secure(params) or "automatic"
        if params.get("payment_method"):
            intent.payment_method = self._payment_method(str(params["payment_method"]))
        if intent.flow_server:
            return await self._confirm_now(intent, params, create=True)
        await self.core.after_create(order)
        return 200, self.intent_json(intent)

    def _payment_method(self, value: str) -> str:
        if value not in TEST_CARDS and value not in self.payment_methods:
            raise _missing("PaymentMethod", value, "payment_method")
        return value

    def behaviour_of(self, payment_method: str) -> tuple[str, ...]:
        """What a payment method does when confirmed: a test ``pm_card_…`` id's own entry, or
        that of the test card number a ``pm_…`` was created from."""
        created = self.payment_methods.get(payment_method)
        return TEST_CARDS[created["test"] if created else payment_method]

    async def _create_payment_method(
        self, account: Account, params: dict[str, Any], _base: str, _publishable: bool
    ) -> Answer:
        """``POST /v1/payment_methods`` (``type=card``, ``card[number|exp_month|exp_year|cvc]``)
        as Stripe.js sends it with the publishable key; test card numbers only."""
        if params.get("type") != "card":
            raise _invalid("Invalid type: must be card here.", param="type")
        card = params.get("card")
        if not isinstance(card, dict):
            raise _invalid("Missing required param: card.", code="parameter_missing",
                           param="card")  # fmt: skip
        number = re.sub(r"[\s-]", "", str(card.get("number") or ""))
        if not number.isdigit() or not 13 <= len(number) <= 19 or not _luhn(number):
            raise _Fail(402, "card_error", "Your card number is incorrect.",
                        code="incorrect_number", param="card[number]")  # fmt: skip
        try:
            month, year = int(str(card.get("exp_month"))), int(str(card.get("exp_year")))
        except ValueError:
            raise _Fail(402, "card_error", "Your card's expiration date is incomplete.",
                        code="incomplete_expiry", param="card[exp_month]") from None  # fmt: skip
        year += 2000 if year < 100 else 0
        today = clock.now()
        if not 1 <= month <= 12:
            raise _Fail(402, "card_error", "Your card's expiration month is invalid.",
                        code="invalid_expiry_month", param="card[exp_month]")  # fmt: skip
        if (year, month) < (today.year, today.month):
            raise _Fail(402, "card_error", "Your card's expiration year is in the past.",
                        code="invalid_expiry_year", param="card[exp_year]")  # fmt: skip
        cvc = str(card.get("cvc") or "")
        if cvc and (not cvc.isdigit() or len(cvc) not in (3, 4)):
            raise _Fail(402, "card_error", "Your card's security code is invalid.",
                        code="invalid_cvc", param="card[cvc]")  # fmt: skip
        test = TEST_CARD_NUMBERS.get(number)
        if test is None:
            raise _Fail(402, "card_error", "Your card was declined. Your request was in test "
                        "mode, but used a non test card. For a list of valid test cards, visit: "
                        "https://stripe.com/docs/testing.", code="card_declined",
                        decline_code="test_mode_live_card")  # fmt: skip
        pm_id = "pm_" + _token(18)
        body = {
            "id": pm_id, "object": "payment_method", "type": "card", "created": _now(),
            "livemode": False, "customer": None, "metadata": {},
            "billing_details": {"address": None, "email": None, "name": None, "phone": None},
            "card": {"brand": TEST_CARDS[test][1], "last4": number[-4:], "exp_month": month,
                     "exp_year": year, "funding": "credit", "country": "US",
                     "checks": {"cvc_check": "pass" if cvc else None}},
        }  # fmt: skip
        self.payment_methods[pm_id] = {"test": test, "account": account.id, "json": body}
        return 200, body

    async def _confirm_now(
        self, intent: Intent, params: Mapping[str, Any], *, create: bool
    ) -> Answer:
        order = intent.order
        if params.get("return_url"):
            intent.return_url = str(params["return_url"])
            order.return_url = intent.return_url
        if intent.payment_method is None:
            raise _invalid("You cannot confirm this PaymentIntent because it's missing a "
                           "payment method.", code="payment_intent_unexpected_state")  # fmt: skip
        behaviour = self.behaviour_of(intent.payment_method)
        intent.last_payment_error = None
        challenged = intent.request_three_d_secure in _CHALLENGE_REQUESTS
        if behaviour[0] == "3ds" or challenged:
            if not intent.return_url:
                raise _invalid("This PaymentIntent requires a return_url to handle 3D Secure.",
                               param="return_url")  # fmt: skip
            intent.wire_status = "requires_action"
            intent.event = "payment_intent.requires_action"
        elif behaviour[0] == "succeed":
            self.core.settle(order, paid=True)
        else:
            self._decline(intent, behaviour)
        if create and order.script.outcome is Outcome.create_timeout:
            await self.core.after_create(order)  # the answer is held; the intent exists
        self.core.spawn(self.core.notify(order))
        body = self.intent_json(intent)
        if intent.last_payment_error is not None and self.status_of(intent) != "succeeded":
            error = {**intent.last_payment_error, "payment_intent": body}
            raise _Fail(402, "card_error", error["message"], code=error["code"],
                        decline_code=error["decline_code"], payment_intent=body,
                        payment_method=error["payment_method"])  # fmt: skip
        return 200, body

    def _decline(self, intent: Intent, behaviour: tuple[str, ...]) -> None:
        _, _, code, decline_code = behaviour
        if intent.flow_server:
            self.core.settle(intent.order, paid=False)
        intent.last_payment_error = self.decline_error(intent, decline_code, code)
        intent.wire_status = "requires_payment_method"
        intent.event = "payment_intent.payment_failed"

    def _intent(self, account: Account, intent_id: str) -> Intent:
        intent = self.intents.get(intent_id)
        if intent is None or intent.account is not account:
            raise _missing("payment_intent", intent_id, "intent")
        return intent

    @staticmethod
    def _check_secret(intent: Intent, params: Mapping[str, Any], publishable: bool) -> None:
        if publishable and params.get("client_secret") != intent.client_secret:
            raise _Fail(400, "invalid_request_error", "The client_secret provided does not "
                        "match any associated PaymentIntent on this account.",
                        code="payment_intent_invalid_parameter", saved=False)  # fmt: skip

    async def _retrieve(
        self,
        account: Account,
        params: dict[str, Any],
        _base: str,
        publishable: bool,
        intent_id: str,
    ) -> Answer:
        intent = self._intent(account, intent_id)
        self._check_secret(intent, params, publishable)
        return 200, self.intent_json(intent, expand=set(params.get("expand") or []))

    async def _confirm(
        self,
        account: Account,
        params: dict[str, Any],
        _base: str,
        publishable: bool,
        intent_id: str,
    ) -> Answer:
        intent = self._intent(account, intent_id)
        self._check_secret(intent, params, publishable)
        if self.status_of(intent) not in ("requires_payment_method", "requires_confirmation"):
            raise _Fail(400, "invalid_request_error", "This PaymentIntent's status is "
                        f"{self.status_of(intent)}; it cannot be confirmed.",
                        code="payment_intent_unexpected_state")  # fmt: skip
        intent.request_three_d_secure = _three_d_secure(params) or intent.request_three_d_secure
        if params.get("payment_method"):
            intent.payment_method = self._payment_method(str(params["payment_method"]))
        return await self._confirm_now(intent, params, create=False)

    async def _cancel(
        self,
        account: Account,
        params: dict[str, Any],
        _base: str,
        _publishable: bool,
        intent_id: str,
    ) -> Answer:
        intent = self._intent(account, intent_id)
        status = self.status_of(intent)
        if status in ("succeeded", "canceled", "processing"):
            raise _Fail(400, "invalid_request_error", "You cannot cancel this PaymentIntent "
                        f"because it has a status of {status}.",
                        code="payment_intent_unexpected_state")  # fmt: skip
        reason = params.get("cancellation_reason")
        if reason not in (None, "duplicate", "fraudulent", "requested_by_customer", "abandoned"):
            raise _invalid("Invalid cancellation_reason.", param="cancellation_reason")
        self.core.close(intent.order)
        intent.canceled_at = _now()
        intent.cancellation_reason = reason
        # Stripe notifies a cancellation it did for you and one you asked for alike.
        self.core.spawn(self.core.notify(intent.order))
        return 200, self.intent_json(intent)

    async def _search(
        self, account: Account, params: dict[str, Any], _base: str, _publishable: bool
    ) -> Answer:
        match = _SEARCH.match(str(params.get("query") or ""))
        if match is None:
            raise _invalid("This sandbox searches metadata['key']:'value' only.", param="query")
        key, value = match.groups()
        found = [i for i in self.intents.values()
                 if i.account is account and i.metadata.get(key) == value]  # fmt: skip
        expand = {e.removeprefix("data.") for e in params.get("expand") or []}
        return 200, {"object": "search_result", "url": "/v1/payment_intents/search",
                     "has_more": False, "next_page": None,
                     "data": [self.intent_json(i, expand=expand) for i in found]}  # fmt: skip

    # ------------------------------------------------------------ refunds
    async def _create_refund(
        self, account: Account, params: dict[str, Any], _base: str, _publishable: bool
    ) -> Answer:
        intent_id = str(params.get("payment_intent") or "")
        if not intent_id:
            raise _invalid("Must provide payment_intent or charge.", code="parameter_missing")
        intent = self._intent(account, intent_id)
        order = intent.order
        if order.status is not OrderStatus.succeeded:
            raise _Fail(400, "invalid_request_error", "This PaymentIntent does not have a "
                        "successful charge to refund.",
                        code="payment_intent_unexpected_state")  # fmt: skip
        left = self.core.refundable(order)
        amount = left
        if params.get("amount") is not None:
            try:
                amount = int(str(params["amount"]))
            except ValueError:
                raise _invalid("Invalid integer: amount", param="amount") from None
        if left <= 0:
            raise _Fail(400, "invalid_request_error", f"Charge {intent.charge['id'] if intent.charge else ''} has already been refunded.",  # noqa: E501
                        code="charge_already_refunded")  # fmt: skip
        if amount <= 0 or amount > left:
            raise _Fail(400, "invalid_request_error", f"Refund amount ({amount}) is greater "
                        f"than unrefunded amount on charge ({left})", code="amount_too_large",
                        param="amount")  # fmt: skip
        reason = params.get("reason")
        if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
            raise _invalid("Invalid reason.", param="reason")
        script = self.core.take_refund_script(order.subject)
        if script.outcome is RefundOutcome.refuse:
            raise _Fail(400, "invalid_request_error", "Insufficient funds in Stripe account to "
                        "complete this refund.", code="balance_insufficient")  # fmt: skip
        if script.outcome is RefundOutcome.create_error:
            raise _Fail(500, "api_error", "An unknown error occurred")
        metadata = params.get("metadata") or {}
        refund = SandboxRefund(
            out_refund_no=str(metadata.get("paymux_refund") or "re_" + _token(12)),
            refund_no="re_" + _token(18), order=order, amount=amount, reason=reason,
            notify_url=account.endpoint_url or metadata.get(NOTIFY_METADATA) or order.notify_url,
            script=script, created_at=clock.now(),
            extra={"metadata": {str(k): str(v) for k, v in metadata.items()},
                   "created": _now()},
        )  # fmt: skip
        self.refund_objects[refund.refund_no] = refund
        self.core.refunds[(account.id, refund.refund_no)] = refund
        await self.core.after_refund(refund)
        return 200, self.refund_json(refund)

    def _refund(self, account: Account, refund_id: str) -> SandboxRefund:
        refund = self.refund_objects.get(refund_id)
        if refund is None or self.account_of(refund) is not account:
            raise _missing("refund", refund_id, "id")
        return refund

    async def _retrieve_refund(
        self,
        account: Account,
        _params: dict[str, Any],
        _base: str,
        _publishable: bool,
        refund_id: str,
    ) -> Answer:
        return 200, self.refund_json(self._refund(account, refund_id))

    async def _list_refunds(
        self, account: Account, params: dict[str, Any], _base: str, _publishable: bool
    ) -> Answer:
        intent_id = params.get("payment_intent")
        rows = [r for r in self.refund_objects.values() if self.account_of(r) is account
                and (not intent_id or self.intent_of(r.order).id == intent_id)]  # fmt: skip
        rows.sort(key=lambda r: r.extra["created"], reverse=True)
        limit = self._limit(params)
        return 200, {"object": "list", "url": "/v1/refunds", "has_more": len(rows) > limit,
                     "data": [self.refund_json(r) for r in rows[:limit]]}  # fmt: skip

    # ------------------------------------------------------------ balance transactions
    @staticmethod
    def _limit(params: Mapping[str, Any]) -> int:
        try:
            limit = int(str(params.get("limit") or 10))
        except ValueError:
            raise _invalid("Invalid integer: limit", param="limit") from None
        if not 1 <= limit <= 100:
            raise _invalid("limit must be between 1 and 100.", param="limit")
        return limit

    def _days(self, lo: int | None, hi: int | None) -> list[dt.date]:
        """The UTC days whose bill may hold a transaction created in ``[lo, hi)``."""
        moments = [o.paid_at for o in self.core.orders.values()] + [
            r.finished_at or r.created_at for r in self.core.refunds.values()]  # fmt: skip
        days = {m.astimezone(dt.UTC).date() for m in moments if m is not None}
        tweaked = {t.day for t in tweaks_of(self.core)}
        days |= {d + dt.timedelta(days=1) for d in days | tweaked} | tweaked
        out = []
        for day in sorted(days):
            start = int(dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC).timestamp())
            if (hi is None or start < hi) and (lo is None or start + 86400 > lo):
                out.append(day)
        return out

    @staticmethod
    def _created(params: Mapping[str, Any]) -> list[tuple[str, int]]:
        """The ``created[…]`` filter as (operator, Unix seconds) pairs."""
        created = params.get("created") or {}
        if not isinstance(created, dict):
            created = {"eq": created}
        bounds: list[tuple[str, int]] = []
        for op, bound in created.items():
            if op not in _OPS:
                raise _invalid(f"Invalid created[{op}].", param="created")
            try:
                bounds.append((op, int(str(bound))))
            except ValueError:
                raise _invalid("Invalid timestamp.", param=f"created[{op}]") from None
        return bounds

    def _listed(self, account: Account, bounds: list[tuple[str, int]]) -> list[Txn]:
        """The account's balance transactions created within ``bounds``, newest first."""
        lows = [v + (op == "gt") for op, v in bounds if op in ("gte", "gt", "eq")]
        highs = [v + (op != "lt") for op, v in bounds if op in ("lt", "lte", "eq")]
        listed: list[Txn] = []
        for day in self._days(max(lows, default=None), min(highs, default=None)):
            listed += self.day_transactions(account, day)
        listed.reverse()
        listed.sort(key=lambda t: -int(t.row["created"]))  # newest first, as Stripe lists
        return [t for t in listed if all(_OPS[op](t.row["created"], v) for op, v in bounds)]

    async def _balance_transactions(
        self, account: Account, params: dict[str, Any], _base: str, _publishable: bool
    ) -> Answer:
        rows = self._listed(account, self._created(params))
        if params.get("type"):
            rows = [t for t in rows if t.row.get("type") == params["type"]]
        after = params.get("starting_after")
        if after:
            ids = [t.row["id"] for t in rows]
            if after not in ids:
                raise _missing("balance transaction", str(after), "starting_after")
            rows = rows[ids.index(after) + 1 :]
        limit = self._limit(params)
        expand = set(params.get("expand") or [])
        data = [self._expanded_txn(t, expand) for t in rows[:limit]]
        return 200, {"object": "list", "url": "/v1/balance_transactions",
                     "has_more": len(rows) > limit, "data": data}  # fmt: skip

    @staticmethod
    def _expanded_txn(txn: Txn, expand: set[str]) -> dict[str, Any]:
        """``expand[]=data.source`` (and ``data.source.payment_intent``): the charge or refund
        object in place of its id, as Stripe does."""
        if "data.source" not in expand or txn.source is None:
            return dict(txn.row)
        source = dict(txn.source)
        if "data.source.payment_intent" in expand and txn.intent is not None:
            source["payment_intent"] = txn.intent
        return {**txn.row, "source": source}

    # ------------------------------------------------------------ payouts
    async def _list_payouts(
        self, account: Account, params: dict[str, Any], _base: str, _publishable: bool
    ) -> Answer:
        bounds = self._created(params)
        rows = [t.source for t in self._listed(account, []) if t.row["type"] == "payout"
                and t.source is not None and all(_OPS[op](t.source["created"], v)
                                                 for op, v in bounds)]  # fmt: skip
        if params.get("status"):
            rows = [r for r in rows if r["status"] == params["status"]]
        after = params.get("starting_after")
        if after:
            ids = [r["id"] for r in rows]
            if after not in ids:
                raise _missing("payout", str(after), "starting_after")
            rows = rows[ids.index(after) + 1 :]
        limit = self._limit(params)
        return 200, {"object": "list", "url": "/v1/payouts", "has_more": len(rows) > limit,
                     "data": rows[:limit]}  # fmt: skip

    async def _retrieve_payout(
        self, account: Account, _params: dict[str, Any], _base: str, _publishable: bool,
        payout_id: str,
    ) -> Answer:  # fmt: skip
        for txn in self._listed(account, []):
            if txn.source is not None and txn.source.get("id") == payout_id:
                return 200, txn.source
        raise _missing("payout", payout_id, "id")

    def day_funds(self, account: Account, day: dt.date) -> dict[str, DayFunds]:
        """The account's fund flow of one UTC day per (lower-case) currency: the shared rule
        (:func:`~paymux.channels.sandbox_bills.day_funds`) over the day's charges and refunds
        as :meth:`trade_transactions` renders them; its ``settlement`` line is the day's
        automatic payout."""
        currencies = {i.currency for i in self.intents.values() if i.account is account}
        currencies |= {t.row["currency"] for t in self.trade_transactions(account, day)}
        out = {}
        for currency in sorted(currencies):

            def trade(d: dt.date, currency: str = currency) -> list[FundsEntry]:
                return [_funds_entry(t.row) for t in self.trade_transactions(account, d)
                        if t.row["currency"] == currency and "amount" in t.row]  # fmt: skip

            funds = day_funds(self.core, day, dt.UTC, _fee_pct, lambda d: [], trade=trade)
            if funds.entries:
                out[currency] = funds
        return out

    def payout_transactions(self, account: Account, day: dt.date) -> list[Txn]:
        """The day's automatic payouts (:meth:`day_funds`' settlements) as ``payout`` balance
        transactions with their payout objects."""
        out = []
        for currency, funds in self.day_funds(account, day).items():
            for e in funds.entries:
                if e.kind != "settlement":
                    continue
                seed = f"{account.id}:{currency}:{e.channel_ref}"
                payout_id = "po_" + hashlib.sha256(seed.encode()).hexdigest()[:24]
                txn_id = "txn_" + hashlib.sha256(f"{seed}:txn".encode()).hexdigest()[:24]
                created = int(e.at.timestamp())
                row = _txn_row(txn_id, "payout", e.amount, 0, currency, created, payout_id)
                row.update(available_on=created, description="STRIPE PAYOUT",
                           status="available")  # fmt: skip
                arrival = int(dt.datetime.combine(day + dt.timedelta(days=2), dt.time(0),
                                                  tzinfo=dt.UTC).timestamp())  # fmt: skip
                destination = "ba_" + hashlib.sha256(account.id.encode()).hexdigest()[:24]
                payout = {
                    "id": payout_id, "object": "payout", "amount": -e.amount,
                    "arrival_date": arrival, "automatic": True, "balance_transaction": txn_id,
                    "created": created, "currency": currency, "description": "STRIPE PAYOUT",
                    "destination": destination, "failure_balance_transaction": None,
                    "failure_code": None, "failure_message": None, "livemode": False,
                    "metadata": {}, "method": "standard", "original_payout": None,
                    "reconciliation_status": "completed", "reversed_by": None,
                    "source_type": "card", "statement_descriptor": None,
                    "status": "paid" if clock.now().timestamp() >= arrival else "in_transit",
                    "type": "bank_account",
                }  # fmt: skip
                out.append(Txn(row, payout))
        return out

    # ------------------------------------------------------------ the day bill
    def day_transactions(self, account: Account, day: dt.date) -> list[Txn]:
        """The account's balance transactions of one UTC day, oldest first: its charges and
        refunds (:meth:`trade_transactions`) and its automatic payouts
        (:meth:`payout_transactions`), last at 23:59:59."""
        return self.trade_transactions(account, day) + self.payout_transactions(account, day)

    def trade_transactions(self, account: Account, day: dt.date) -> list[Txn]:
        """The account's charges and refunds of one UTC day, oldest first, rendered from the
        shared day bill (:func:`~paymux.channels.sandbox_bills.day_bill`) with its tweaks.
        Rows that are not a real charge or refund of the sandbox (duplicates, extras, bad
        rows) get ids derived from the account, the day and their place, so the listing is the
        same on every read and pages by ``starting_after``."""
        bill = day_bill(self.core, day, dt.UTC, _fee_pct,
                        listed=lambda o: o.merchant_id == account.id)  # fmt: skip
        tweaks = [t for t in tweaks_of(self.core) if t.day == day]
        fee_set = {t.out_trade_no for t in tweaks if t.kind is BillTweakKind.fee}
        named = {t.out_trade_no for t in tweaks if t.kind is BillTweakKind.extra_payment}
        start = int(dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC).timestamp())
        used: set[str] = set()
        out: list[Txn] = []
        for n, entry in enumerate(bill.entries):
            if entry.order.merchant_id not in (account.id, ""):
                continue
            seed = hashlib.sha256(f"{account.id}:{day}:{n}".encode()).hexdigest()[:24]
            created = max(int(entry.at.timestamp()), start)
            txn = (self._payment_txn(entry, seed, created, fee_set, named) if entry.kind ==
                   "payment" else self._refund_txn(entry, seed, created))  # fmt: skip
            if txn is None:
                continue
            if txn.row["id"] in used:
                txn.row["id"] = "txn_" + seed
            used.add(txn.row["id"])
            out.append(txn)
        currency = out[0].row["currency"] if out else "usd"
        for n in range(bill.bad_rows):
            seed = hashlib.sha256(f"{account.id}:{day}:bad{n}".encode()).hexdigest()[:24]
            row = _txn_row("txn_" + seed, "charge", 0, 0, currency, start + 86399, None)
            del row["amount"]
            out.append(Txn(row))
        return out

    def _payment_txn(self, entry: BillEntry, seed: str, created: int, fee_set: set[str | None],
                     named: set[str | None]) -> Txn:  # fmt: skip
        order = entry.order
        intent: Intent | None = order.extra.get("intent")
        currency = intent.currency if intent else order.currency.lower()
        fee = entry.fee
        if order.out_trade_no not in fee_set and p.stripe_exponent(currency.upper()) == 2:
            fee += FEE_FIXED
        if intent is not None and intent.charge is not None:
            charge = dict(intent.charge)
            row = _txn_row(str(charge["balance_transaction"]), "charge", entry.amount, fee,
                           currency, created, str(charge["id"]))  # fmt: skip
            return Txn(row, charge, self.intent_json(intent))
        # a payment made at Stripe only (Dashboard): no paymux metadata unless scripted so
        charge_id, intent_id, txn_id = "ch_" + seed, "pi_" + seed, "txn_" + seed
        charge = {"id": charge_id, "object": "charge", "amount": entry.amount,
                  "balance_transaction": txn_id, "created": created, "currency": currency,
                  "paid": True, "payment_intent": intent_id, "status": "succeeded"}  # fmt: skip
        metadata = {p.ATTEMPT_KEY: order.out_trade_no} if order.out_trade_no in named else {}
        pi = {"id": intent_id, "object": "payment_intent", "amount": entry.amount,
              "currency": currency, "latest_charge": charge_id, "metadata": metadata,
              "status": "succeeded", "livemode": False}  # fmt: skip
        row = _txn_row(txn_id, "charge", entry.amount, fee, currency, created, charge_id)
        return Txn(row, charge, pi)

    def _refund_txn(self, entry: BillEntry, seed: str, created: int) -> Txn | None:
        refund = entry.refund
        intent: Intent | None = entry.order.extra.get("intent")
        if refund is None or intent is None:
            return None
        # Stripe keeps its fee on a refund: fee 0 whatever the day bill says it returns
        if refund.refund_no in self.refund_objects and "txn" in refund.extra:
            source = self.refund_json(refund)
            row = _txn_row(str(refund.extra["txn"]), "refund", -entry.amount, 0, intent.currency,
                           created, refund.refund_no)  # fmt: skip
            return Txn(row, source, self.intent_json(intent))
        # a refund made in the Dashboard: no paymux_refund metadata
        source = {"id": "re_" + seed, "object": "refund", "amount": entry.amount,
                  "balance_transaction": "txn_" + seed, "created": created,
                  "currency": intent.currency, "metadata": {}, "payment_intent": intent.id,
                  "charge": intent.charge["id"] if intent.charge else None,
                  "reason": "requested_by_customer", "status": "succeeded"}  # fmt: skip
        row = _txn_row("txn_" + seed, "refund", -entry.amount, 0, intent.currency, created,
                       "re_" + seed)  # fmt: skip
        return Txn(row, source, self.intent_json(intent))

    # ------------------------------------------------------------ 3-D Secure
    def _challenge(self, intent_id: str) -> Intent:
        intent = self.intents.get(intent_id)
        if intent is None:
            raise HTTPException(404, "no such payment intent")
        return intent

    async def _finish_challenge(self, intent: Intent, completed: bool) -> str:
        """The customer completed or failed authentication; where Stripe sends them next."""
        if self.status_of(intent) == "requires_action":
            assert intent.payment_method is not None
            behaviour = self.behaviour_of(intent.payment_method)
            if completed and behaviour[0] == "decline":  # authenticated, then refused
                self._decline(intent, behaviour)
            elif completed:
                intent.wire_status = "processing"
                self.core.settle(intent.order, paid=True)
            else:
                if intent.flow_server:
                    SandboxCore.settle(self.core, intent.order, paid=False)
                intent.wire_status = "requires_payment_method"
                intent.last_payment_error = {**_AUTH_FAILED, "payment_method": {
                    "id": intent.payment_method, "object": "payment_method"}}  # fmt: skip
                intent.event = "payment_intent.payment_failed"
            self.core.spawn(self.core.notify(intent.order))
        status = "succeeded" if self.status_of(intent) == "succeeded" else "failed"
        query = urlencode({"payment_intent": intent.id,
                           "payment_intent_client_secret": intent.client_secret,
                           "redirect_status": status})  # fmt: skip
        target = intent.return_url or f"{intent.order.extra['base']}/_sandbox/3ds/{intent.id}"
        return f"{target}{'&' if '?' in target else '?'}{query}"

    # ------------------------------------------------------------ app
    def _build_app(self) -> FastAPI:
        app = FastAPI(title="Stripe sandbox", docs_url=None, redoc_url=None, openapi_url=None)
        # Stripe.js calls the API from the merchant's page with the publishable key.
        app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])  # fmt: skip
        serve = self._serve

        @app.post("/v1/payment_intents")
        async def create(request: Request) -> Response:
            return await serve(request, self._create_intent)

        @app.get("/v1/payment_intents/search")
        async def search(request: Request) -> Response:
            return await serve(request, self._search)

        @app.get("/v1/payment_intents/{intent_id}")
        async def retrieve(request: Request, intent_id: str) -> Response:
            return await serve(request, self._retrieve, intent_id, publishable_ok=True)

        @app.post("/v1/payment_intents/{intent_id}/confirm")
        async def confirm(request: Request, intent_id: str) -> Response:
            return await serve(request, self._confirm, intent_id, publishable_ok=True)

        @app.post("/v1/payment_intents/{intent_id}/cancel")
        async def cancel(request: Request, intent_id: str) -> Response:
            return await serve(request, self._cancel, intent_id)

        @app.post("/v1/payment_methods")
        async def payment_method(request: Request) -> Response:
            return await serve(request, self._create_payment_method, publishable_ok=True)

        @app.get(JS_PATH)
        async def stripe_js() -> Response:
            """The sandbox's stand-in for Stripe.js (``Stripe(pk)``, ``elements({locale})
            .create('card' | 'paymentRequestButton')``, ``confirmCardPayment``,
            ``paymentRequest(...).canMakePayment()`` decided by the user agent, a stand-in
            Apple Pay / Google Pay sheet)."""
            return Response((_STATIC / "stripe-sandbox.js").read_bytes(),
                            media_type="text/javascript; charset=utf-8")  # fmt: skip

        @app.post("/v1/refunds")
        async def refund(request: Request) -> Response:
            return await serve(request, self._create_refund)

        @app.get("/v1/refunds")
        async def refunds(request: Request) -> Response:
            return await serve(request, self._list_refunds)

        @app.get("/v1/refunds/{refund_id}")
        async def get_refund(request: Request, refund_id: str) -> Response:
            return await serve(request, self._retrieve_refund, refund_id)

        @app.get("/v1/balance_transactions")
        async def balance(request: Request) -> Response:
            return await serve(request, self._balance_transactions)

        @app.get("/v1/payouts")
        async def payouts(request: Request) -> Response:
            return await serve(request, self._list_payouts)

        @app.get("/v1/payouts/{payout_id}")
        async def payout(request: Request, payout_id: str) -> Response:
            return await serve(request, self._retrieve_payout, payout_id)

        @app.get("/_sandbox/3ds/{intent_id}", response_class=HTMLResponse)
        async def challenge(intent_id: str) -> HTMLResponse:
            intent = self._challenge(intent_id)
            status = escape(self.status_of(intent))
            return HTMLResponse(
                "<!doctype html><meta charset='utf-8'><title>3D Secure · Stripe sandbox</title>"
                f"<h1>3D Secure 2 test page</h1><p>{escape(intent.currency.upper())} "
                f"{intent.order.amount} (Stripe units) · {escape(intent.id)} · {status}</p>"
                "<form method='post'><input type='hidden' name='result' value='complete'>"
                "<button id='complete'>Complete authentication</button></form>"
                "<form method='post'><input type='hidden' name='result' value='fail'>"
                "<button id='fail'>Fail authentication</button></form>"
            )

        @app.post("/_sandbox/3ds/{intent_id}")
        async def challenge_done(intent_id: str, result: str = Form("complete")) -> Response:
            intent = self._challenge(intent_id)
            target = await self._finish_challenge(intent, result == "complete")
            return RedirectResponse(target, status_code=303)

        router = APIRouter(prefix="/_sandbox")

        @router.post("/webhook_endpoints")
        async def endpoint(body: EndpointIn) -> dict[str, Any]:
            """Control API: the account's webhook endpoint (as set in Stripe's Dashboard)."""
            account = self.accounts.get(body.secret_key)
            if account is None:
                raise HTTPException(404, "no such account")
            account.endpoint_url = body.url
            return {"url": body.url, "secret": account.webhook_secrets[0]}

        app.include_router(router)
        app.include_router(customer_router(self.core, title="Stripe", brand_color="#635bff"))
        app.include_router(bill_router(self.core))
        return app


__all__ = ["JS_PATH", "RETRY_SCHEDULE", "TEST_CARDS", "TEST_CARD_NUMBERS", "NotifyMode", "Sandbox"]

"""Stripe's wire protocol as pure functions: amounts in Stripe's units, the form encoding of
request parameters, ``Stripe-Signature`` webhook signatures, error bodies and the mapping of
PaymentIntent / Refund states onto ours. No I/O.

Facts (checked against the ``stripe`` Python package and Stripe's public docs; see
docs/channels.md for sources):

- Amounts are integers in the currency's smallest unit *as Stripe defines it*. Stripe's
  zero-decimal currencies (:data:`ZERO_DECIMAL`) take whole units; BHD, JOD, KWD, OMR and TND
  take thousandths whose last digit must be 0; ISK stays *two*-decimal in the API although it
  has no minor unit (ISO exponent 0): 1 króna is ``100`` and every amount must be a multiple of
  100 (``invalid_charge_amount_no_decimal_compatible`` otherwise).
- Request bodies are ``application/x-www-form-urlencoded`` with nested keys (``metadata[k]``,
  ``payment_method_types[0]``).
- Webhooks carry ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]``; each v1 is
  HMAC-SHA256 keyed by the endpoint secret (the whole ``whsec_…`` string, UTF-8) over
  ``"{t}.{raw body}"``. Several v1 appear while a secret is being rolled; any one matching
  suffices. Events older than the tolerance (300 s by default) are refused.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from paymux.channels.base import ChannelPaymentStatus, ChannelRefundStatus, FailureCategory
from paymux.kit import money

API_BASE = "https://api.stripe.com"
JS_URL = "https://js.stripe.com/v3"
"""Stripe.js, which a page with a live account loads to collect the card."""
SANDBOX_JS_PATH = "/_sandbox/js/v3"
"""Where the sandbox serves its stand-in for Stripe.js (relative to its ``gateway``)."""
PRODUCTION_HOSTS = frozenset({"api.stripe.com"})
API_VERSION = "2024-06-20"
"""The API version every request pins (``Stripe-Version``), so answers keep their shape."""
TOLERANCE_SECONDS = 300
SIGNATURE_HEADER = "stripe-signature"

# ---------------------------------------------------------------- currencies and amounts
ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
"""Stripe's zero-decimal currencies: the API amount is the number of whole units."""
THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())
"""Three-decimal currencies: thousandths, and Stripe requires the last digit to be 0."""
WHOLE_TWO_DECIMAL = frozenset({"ISK"})
"""Two-decimal in Stripe's API but whole units only (amount divisible by 100)."""
SUPPORTED = frozenset(money.EXPONENTS) - {"RUB"}
"""Presentment currencies paymux knows (ISO exponent table) that Stripe accepts. RUB is left
out: Stripe does not serve it today [unverified for every account]."""
MIN_CHARGE: Mapping[str, int] = {
    "USD": 50, "AUD": 50, "BRL": 50, "CAD": 50, "CHF": 50, "EUR": 50, "INR": 50, "NZD": 50,
    "SGD": 50, "GBP": 30, "DKK": 250, "HKD": 400, "JPY": 50, "MXN": 1000, "MYR": 200,
    "NOK": 300, "PLN": 200, "SEK": 300, "THB": 1000, "AED": 200, "CZK": 1500, "HUF": 17500,
    "CNY": 400,
}  # fmt: skip
"""Stripe's minimum charge per currency, in Stripe units (Stripe applies it in the *settlement*
currency; here it is checked in the presentment currency, which is exact when the two agree).
CNY is not in Stripe's table (no CNY settlement): 4.00 is about the USD 0.50 every charge must
convert to [estimate]."""
MAX_CHARGE_UNITS = 99_999_999
"""Stripe's amount is at most eight digits."""


def stripe_exponent(currency: str) -> int:
    """How many decimals Stripe's API uses for ``currency`` (upper-case ISO code)."""
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


def to_stripe_amount(amount: int, currency: str) -> int:
    """paymux minor units (ISO 4217 exponent) → Stripe's amount. Raises ValueError for a
    currency Stripe does not take or an amount Stripe would refuse (a three-decimal amount
    whose last digit is not 0)."""
    if currency not in SUPPORTED:
        raise ValueError(f"stripe does not take {currency}")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValueError("amount must be a positive integer")
    shift = stripe_exponent(currency) - money.EXPONENTS[currency]
    if shift < 0:  # no such currency today; refuse rather than round
        raise ValueError(f"{currency} has more minor units here than at stripe")
    units: int = amount * int(10**shift)
    if currency in THREE_DECIMAL and units % 10:
        raise ValueError(f"{currency} amounts at stripe must end in 0 (a multiple of 0.010)")
    return units


def from_stripe_amount(units: int, currency: str) -> int:
    """Stripe's amount → paymux minor units. ValueError if it does not convert exactly."""
    if currency not in SUPPORTED:
        raise ValueError(f"unknown stripe currency {currency}")
    if isinstance(units, bool) or not isinstance(units, int):
        raise ValueError("stripe amount must be an integer")
    shift = stripe_exponent(currency) - money.EXPONENTS[currency]
    factor = int(10**shift)
    if units % factor:
        raise ValueError(f"{units} is not a whole {currency} amount")
    return units // factor


def check_charge(amount: int, currency: str) -> int:
    """The Stripe amount of a charge, after every check Stripe would make (ValueError)."""
    units = to_stripe_amount(amount, currency)
    minimum = MIN_CHARGE.get(currency)
    if minimum is not None and units < minimum:
        raise ValueError(f"stripe charges at least {minimum} {currency} units")
    if units > MAX_CHARGE_UNITS:
        raise ValueError(f"stripe takes at most {MAX_CHARGE_UNITS} units per charge")
    return units


def wire_currency(currency: str) -> str:
    """Stripe wants lower-case ISO codes."""
    return currency.lower()


def our_currency(wire: Any) -> str:
    if not isinstance(wire, str) or not re.fullmatch(r"[a-z]{3}", wire):
        raise ValueError(f"bad currency {wire!r}")
    return wire.upper()


# ---------------------------------------------------------------- form encoding
def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}[{key}]", item, out)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _flatten(f"{prefix}[{i}]", item, out)
    elif isinstance(value, bool):
        out.append((prefix, "true" if value else "false"))
    elif value is not None:
        out.append((prefix, str(value)))


def encode_form(params: Mapping[str, Any]) -> str:
    """Nested parameters as Stripe's form body (``metadata[k]=v``, ``a[0]=x``)."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        _flatten(key, value, pairs)
    return urlencode(pairs)


_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def decode_form(text: str) -> dict[str, Any]:
    """A form body or query string back into nested dicts and lists (``a[]`` and ``a[0]``
    both append). ValueError for malformed keys."""
    result: dict[str, Any] = {}
    for raw_key, value in parse_qsl(text, keep_blank_values=True):
        match = _KEY.match(raw_key)
        if match is None:
            raise ValueError(f"malformed parameter {raw_key!r}")
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        _insert(result, parts, value)
    return result


def _insert(node: dict[str, Any], parts: list[str], value: str) -> None:
    head, rest = parts[0], parts[1:]
    if not rest:
        node[head] = value
        return
    if rest[0] == "" or rest[0].isdigit():
        items = node.setdefault(head, [])
        if not isinstance(items, list):
            raise ValueError(f"parameter {head!r} is both a list and a value")
        if len(rest) == 1:
            items.append(value)
            return
        index = int(rest[0]) if rest[0] else len(items)
        while len(items) <= index:
            items.append({})
        if not isinstance(items[index], dict):
            raise ValueError(f"parameter {head!r} mixes shapes")
        _insert(items[index], rest[1:], value)
        return
    child = node.setdefault(head, {})
    if not isinstance(child, dict):
        raise ValueError(f"parameter {head!r} is both a map and a value")
    _insert(child, rest, value)


# ---------------------------------------------------------------- webhook signatures
class SignatureError(ValueError):
    """A ``Stripe-Signature`` that does not verify; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def compute_signature(secret: str, timestamp: int, payload: bytes) -> str:
    """Hex HMAC-SHA256 keyed by the endpoint secret over ``"{t}.{payload}"``."""
    mac = hmac.HMAC(secret.encode("utf-8"), hashes.SHA256())
    mac.update(f"{timestamp}.".encode() + payload)
    return mac.finalize().hex()


def signature_header(payload: bytes, secrets: Iterable[str], timestamp: int) -> str:
    """The header Stripe sends: one v1 per active secret (two while a secret is rolled)."""
    parts = [f"t={timestamp}"]
    parts += [f"v1={compute_signature(s, timestamp, payload)}" for s in secrets]
    return ",".join(parts)


def parse_signature_header(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if timestamp is not None or not value.isdigit():
                raise SignatureError("malformed_header", "bad or repeated t=")
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None:
        raise SignatureError("malformed_header", "no t= in Stripe-Signature")
    if not signatures:
        raise SignatureError("no_signature", "no v1 signature in Stripe-Signature")
    return timestamp, signatures


def verify_signature(
    payload: bytes, header: str | None, secret: str, *, now: dt.datetime,
    tolerance: int = TOLERANCE_SECONDS,
) -> int:  # fmt: skip
    """Check a webhook's ``Stripe-Signature`` against ``secret``; return its timestamp.
    Raises SignatureError (``unsigned``, ``malformed_header``, ``bad_signature``, ``stale``).
    A timestamp more than ``tolerance`` in the future is refused too: a clock that far off
    is no better than a replay."""
    if not header:
        raise SignatureError("unsigned", "no Stripe-Signature header")
    timestamp, signatures = parse_signature_header(header)
    key = secret.encode("utf-8")
    message = f"{timestamp}.".encode() + payload
    if not any(_hmac_matches(key, message, s) for s in signatures):
        raise SignatureError("bad_signature", "no v1 signature matches")
    age = now.timestamp() - timestamp
    if age > tolerance or age < -tolerance:
        raise SignatureError("stale", f"timestamp {timestamp} outside the {tolerance}s tolerance")
    return timestamp


def _hmac_matches(key: bytes, message: bytes, signature: str) -> bool:
    try:
        expected = bytes.fromhex(signature)
    except ValueError:
        return False
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(message)
    try:
        mac.verify(expected)  # constant time
    except InvalidSignature:
        return False
    return True


# ---------------------------------------------------------------- errors
@dataclass(frozen=True)
class StripeError:
    """Stripe's error body ``{"error": {type, code, decline_code, message, param, …}}``."""

    status: int
    type: str
    code: str
    decline_code: str
    message: str
    param: str
    payment_intent: Mapping[str, Any] | None
    raw: Any


def parse_error(status: int, body: bytes) -> StripeError:
    try:
        data = json.loads(body)
        error = data["error"]
        if not isinstance(error, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        error = {}
        data = None
    intent = error.get("payment_intent")
    return StripeError(
        status=status,
        type=str(error.get("type") or ""),
        code=str(error.get("code") or ""),
        decline_code=str(error.get("decline_code") or ""),
        message=str(error.get("message") or ""),
        param=str(error.get("param") or ""),
        payment_intent=intent if isinstance(intent, dict) else None,
        raw=data,
    )


# ---------------------------------------------------------------- states
FLOW_KEY = "paymux_flow"
ATTEMPT_KEY = "paymux_attempt"
REFUND_KEY = "paymux_refund"
SERVER_FLOW = "server"
CLIENT_FLOW = "client"


#: Stripe decline codes (``decline_code``, else the error ``code``) → failure category
#: (docs/api.md "Final statuses"); every other decline is ``card_declined``. From Stripe's
#: "Decline codes" reference.
DECLINE_CATEGORIES: dict[str, FailureCategory] = {
    "insufficient_funds": FailureCategory.insufficient_funds,
    "payment_intent_authentication_failure": FailureCategory.authentication_failed,
    "authentication_required": FailureCategory.authentication_failed,
    **{code: FailureCategory.risk_declined for code in (
        "fraudulent", "lost_card", "stolen_card", "pickup_card", "restricted_card",
        "merchant_blacklist", "security_violation", "highest_risk_level")},
}  # fmt: skip

#: ``cancellation_reason`` of a canceled intent → category if the gateway decides it failed
#: (it did not ask to cancel, and the payment had not expired).
CANCEL_CATEGORIES: dict[str, FailureCategory] = {
    "fraudulent": FailureCategory.risk_declined,
    "requested_by_customer": FailureCategory.customer_declined,
    "abandoned": FailureCategory.customer_declined,
}


def decline_category(code: str) -> FailureCategory:
    return DECLINE_CATEGORIES.get(code, FailureCategory.card_declined)


def cancel_category(reason: str) -> FailureCategory:
    return CANCEL_CATEGORIES.get(reason, FailureCategory.customer_declined)


def map_intent_status(intent: Mapping[str, Any]) -> ChannelPaymentStatus:
    """A PaymentIntent's ``status`` as ours.

    ``requires_payment_method`` after a failed attempt (``last_payment_error`` set) is
    ``failed`` only when *we* confirmed it server-side with the customer's one payment method;
    in the client-side flow the customer may try another card on the same intent, so it stays
    ``pending`` until paid or cancelled (on expiry)."""
    status = intent.get("status")
    if status == "succeeded":
        return ChannelPaymentStatus.succeeded
    if status == "canceled":
        return ChannelPaymentStatus.closed
    if status == "requires_payment_method":
        metadata = intent.get("metadata") or {}
        server = metadata.get(FLOW_KEY) == SERVER_FLOW
        if server and intent.get("last_payment_error"):
            return ChannelPaymentStatus.failed
        return ChannelPaymentStatus.pending
    if status in ("requires_confirmation", "requires_action", "processing", "requires_capture"):
        return ChannelPaymentStatus.pending
    raise ValueError(f"unknown PaymentIntent status {status!r}")


def map_refund_status(status: Any) -> ChannelRefundStatus:
    if status == "succeeded":
        return ChannelRefundStatus.succeeded
    if status in ("pending", "requires_action"):
        return ChannelRefundStatus.pending
    if status in ("failed", "canceled"):
        return ChannelRefundStatus.failed
    raise ValueError(f"unknown Refund status {status!r}")


def from_unix(value: Any) -> dt.datetime:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"bad timestamp {value!r}")
    return dt.datetime.fromtimestamp(value, tz=dt.UTC)


def search_query(out_trade_no: str) -> str:
    """The Search Query Language clause finding our intent by its metadata. Only ids made of
    letters, digits, ``_`` and ``-`` are searched (nothing to escape)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", out_trade_no):
        raise ValueError(f"cannot search for {out_trade_no!r}")
    return f"metadata['{ATTEMPT_KEY}']:'{out_trade_no}'"


IDEMPOTENCY_SUFFIXES = ("cancel", "refund", "confirm")


def idempotency_key(reference: str, operation: str | None = None) -> str:
    """Our deterministic ``Idempotency-Key``: the create is keyed by the attempt id itself,
    every other call by ``{our id}:{operation}``, so a retry is the same request to Stripe."""
    if operation is None:
        return reference
    if operation not in IDEMPOTENCY_SUFFIXES:
        raise ValueError(f"unknown operation {operation!r}")
    return f"{reference}:{operation}"


__all__ = [
    "API_BASE",
    "JS_URL",
    "SANDBOX_JS_PATH",
    "SignatureError",
    "StripeError",
    "check_charge",
    "decode_form",
    "encode_form",
    "from_stripe_amount",
    "map_intent_status",
    "signature_header",
    "to_stripe_amount",
    "verify_signature",
]

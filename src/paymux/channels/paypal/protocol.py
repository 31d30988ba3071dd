"""PayPal REST wire codecs: amounts, request ids, error bodies, statuses and webhook signatures.

Pure functions, no I/O. Facts (sources in docs/channels.md and the tests):

- Amounts are decimal strings in major units (``{"currency_code": "USD", "value": "19.99"}``).
  PayPal takes a fixed set of currencies and refuses decimals for HUF, JPY and TWD even where
  ISO 4217 gives them minor units (HUF, TWD); paymux amounts stay in ISO minor units, so a HUF
  or TWD amount must be a whole number of forint/dollars.
- Every POST carries ``PayPal-Request-Id``: PayPal answers a repeated id with the latest state
  of what the first request made, so a retry never makes a second order, capture or refund.
- Errors are ``{"name", "message", "debug_id", "details": [{"issue", "description", …}]}``.
- Webhooks are signed by PayPal (SHA256withRSA) over
  ``transmission_id|transmission_time|webhook_id|crc32(raw body)`` (CRC-32 as an unsigned
  decimal), with the X.509 certificate found at ``PAYPAL-CERT-URL``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from paymux.channels.base import ChannelPaymentStatus, ChannelRefundStatus

# ---------------------------------------------------------------- currencies
#: Currencies PayPal's REST APIs take, with their ISO 4217 exponent (paymux minor units).
CURRENCY_EXPONENTS: dict[str, int] = {
    "AUD": 2, "BRL": 2, "CAD": 2, "CNY": 2, "CZK": 2, "DKK": 2, "EUR": 2, "HKD": 2, "HUF": 2,
    "ILS": 2, "JPY": 0, "MYR": 2, "MXN": 2, "TWD": 2, "NZD": 2, "NOK": 2, "PHP": 2, "PLN": 2,
    "GBP": 2, "SGD": 2, "SEK": 2, "CHF": 2, "THB": 2, "USD": 2,
}  # fmt: skip
#: Currencies for which PayPal refuses a decimal amount ("Decimal amounts cause an error").
NO_DECIMALS: frozenset[str] = frozenset({"HUF", "JPY", "TWD"})


class ProtocolError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def wire_decimals(currency: str) -> int:
    """How many decimals PayPal's ``value`` carries for ``currency``."""
    if currency not in CURRENCY_EXPONENTS:
        raise ProtocolError("unsupported_currency", f"PayPal does not take {currency}")
    return 0 if currency in NO_DECIMALS else CURRENCY_EXPONENTS[currency]


def to_value(amount: int, currency: str) -> str:
    """paymux minor units → PayPal ``value`` (``1999 USD`` → ``"19.99"``; ``1000 JPY`` →
    ``"1000"``; ``150000 HUF`` → ``"1500"``). Refuses what PayPal cannot carry."""
    decimals = wire_decimals(currency)
    exp = CURRENCY_EXPONENTS[currency]
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ProtocolError("invalid_amount", "amount must be a positive integer")
    step = 10 ** (exp - decimals)
    if amount % step:
        raise ProtocolError(
            "invalid_amount", f"PayPal takes no decimals for {currency}: {amount} minor units"
        )
    value = Decimal(amount // step).scaleb(-decimals)
    return f"{value:.{decimals}f}"


_VALUE = re.compile(r"[0-9]{1,32}(\.[0-9]{1,3})?")


def from_value(value: Any, currency: str) -> int:
    """PayPal ``value`` → paymux minor units; rejects anything but a plain decimal string."""
    if currency not in CURRENCY_EXPONENTS:
        raise ProtocolError("unsupported_currency", f"PayPal does not take {currency}")
    if not isinstance(value, str) or not _VALUE.fullmatch(value):
        raise ProtocolError("malformed_amount", f"not a PayPal amount value: {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ProtocolError("malformed_amount", f"not a decimal: {value!r}") from None
    if not number.is_finite() or number < 0:
        raise ProtocolError("malformed_amount", f"not a decimal: {value!r}")
    minor = number.scaleb(CURRENCY_EXPONENTS[currency])
    if minor != minor.to_integral_value():
        raise ProtocolError("malformed_amount", f"{value!r} is finer than {currency} allows")
    return int(minor)


def money(amount: int, currency: str) -> dict[str, str]:
    return {"currency_code": currency, "value": to_value(amount, currency)}


def parse_money(obj: Any) -> tuple[int, str]:
    """A PayPal money object → (minor units, currency)."""
    if not isinstance(obj, Mapping):
        raise ProtocolError("malformed_amount", "amount is not an object")
    currency = obj.get("currency_code")
    if not isinstance(currency, str):
        raise ProtocolError("malformed_amount", "amount lacks currency_code")
    return from_value(obj.get("value"), currency), currency


# ---------------------------------------------------------------- requests
#: PayPal-Request-Id is at most 108 characters.
REQUEST_ID_MAX = 108


def request_id(kind: str, key: str) -> str:
    """The deterministic ``PayPal-Request-Id`` of one of our requests: a retry of the same
    order, capture or refund is the same request to PayPal."""
    value = f"paymux-{kind}-{key}"
    if len(value) > REQUEST_ID_MAX:
        raise ProtocolError("invalid_request", "request key too long for PayPal-Request-Id")
    return value


def basic_auth(client_id: str, secret: str) -> str:
    """``Authorization`` of ``POST /v1/oauth2/token`` (HTTP Basic client_id:secret)."""
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def parse_basic_auth(header: str) -> tuple[str, str]:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        raise ProtocolError("invalid_client", "not HTTP Basic")
    try:
        user, sep, password = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise ProtocolError("invalid_client", "malformed Basic credentials") from None
    if not sep:
        raise ProtocolError("invalid_client", "malformed Basic credentials")
    return user, password


def encode_json(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def link(resource: Mapping[str, Any], *rels: str) -> str | None:
    """The ``href`` of the first HATEOAS link with one of ``rels`` (in the order given)."""
    links = resource.get("links")
    if not isinstance(links, list):
        return None
    for rel in rels:
        for item in links:
            if isinstance(item, Mapping) and item.get("rel") == rel:
                href = item.get("href")
                if isinstance(href, str) and href:
                    return href
    return None


# ---------------------------------------------------------------- errors
@dataclass(frozen=True)
class ApiError:
    name: str
    issue: str
    """The first ``details[].issue`` (PayPal's precise reason), else the ``name``."""
    message: str
    debug_id: str | None


def parse_error(payload: Any) -> ApiError:
    """A PayPal error body (or the OAuth ``{"error", "error_description"}`` form)."""
    if not isinstance(payload, Mapping):
        return ApiError("", "", "", None)
    if "error" in payload and "name" not in payload:
        code = str(payload.get("error", ""))
        return ApiError(code, code, str(payload.get("error_description", "")), None)
    name = str(payload.get("name", ""))
    details = payload.get("details")
    issue, description = name, ""
    if isinstance(details, list) and details and isinstance(details[0], Mapping):
        issue = str(details[0].get("issue") or name)
        description = str(details[0].get("description") or "")
    message = str(payload.get("message") or "")
    if description:
        message = f"{message} {description}".strip()
    debug_id = payload.get("debug_id")
    return ApiError(name, issue, message, str(debug_id) if debug_id else None)


# ---------------------------------------------------------------- statuses
ORDER_STATUSES = frozenset(
    {"CREATED", "SAVED", "APPROVED", "VOIDED", "COMPLETED", "PAYER_ACTION_REQUIRED"}
)
#: Capture status → payment status (a refunded capture was paid).
CAPTURE_STATUS: dict[str, ChannelPaymentStatus] = {
    "COMPLETED": ChannelPaymentStatus.succeeded,
    "PARTIALLY_REFUNDED": ChannelPaymentStatus.succeeded,
    "REFUNDED": ChannelPaymentStatus.succeeded,
    "PENDING": ChannelPaymentStatus.pending,
    "DECLINED": ChannelPaymentStatus.failed,
    "FAILED": ChannelPaymentStatus.failed,
}
REFUND_STATUS: dict[str, ChannelRefundStatus] = {
    "COMPLETED": ChannelRefundStatus.succeeded,
    "PENDING": ChannelRefundStatus.pending,
    "FAILED": ChannelRefundStatus.failed,
    "CANCELLED": ChannelRefundStatus.failed,
}


def capture_status(status: str) -> ChannelPaymentStatus:
    try:
        return CAPTURE_STATUS[status]
    except KeyError:
        raise ProtocolError("malformed", f"unknown capture status {status!r}") from None


def refund_status(status: str) -> ChannelRefundStatus:
    try:
        return REFUND_STATUS[status]
    except KeyError:
        raise ProtocolError("malformed", f"unknown refund status {status!r}") from None


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 time (``2024-01-02T03:04:05Z``) or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ProtocolError("malformed", f"not an RFC 3339 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- webhooks
H_TRANSMISSION_ID = "paypal-transmission-id"
H_TRANSMISSION_TIME = "paypal-transmission-time"
H_TRANSMISSION_SIG = "paypal-transmission-sig"
H_CERT_URL = "paypal-cert-url"
H_AUTH_ALGO = "paypal-auth-algo"
AUTH_ALGO = "SHA256withRSA"


@dataclass(frozen=True)
class Transmission:
    """The signature headers of one webhook delivery."""

    transmission_id: str
    transmission_time: str
    signature: str
    cert_url: str
    auth_algo: str

    @property
    def sent_at(self) -> dt.datetime:
        when = parse_time(self.transmission_time)
        assert when is not None
        return when


def transmission(headers: Mapping[str, str]) -> Transmission:
    """Read the five PAYPAL-* headers (any case); raise if one is missing or malformed."""
    lower = {k.lower(): v for k, v in headers.items()}
    values = []
    for name in (H_TRANSMISSION_ID, H_TRANSMISSION_TIME, H_TRANSMISSION_SIG, H_CERT_URL,
                 H_AUTH_ALGO):  # fmt: skip
        value = lower.get(name)
        if not value:
            raise ProtocolError("missing_header", f"{name.upper()} is missing")
        values.append(value)
    sent = Transmission(*values)
    if sent.auth_algo != AUTH_ALGO:
        raise ProtocolError("unsupported_algorithm", f"PAYPAL-AUTH-ALGO {sent.auth_algo!r}")
    if parse_time(sent.transmission_time) is None:
        raise ProtocolError("malformed_header", "PAYPAL-TRANSMISSION-TIME")
    return sent


def signed_message(transmission_id: str, transmission_time: str, webhook_id: str,
                   body: bytes) -> bytes:  # fmt: skip
    """What PayPal signs: ``<transmission id>|<time>|<webhook id>|<CRC-32 of the raw body as
    an unsigned decimal>``."""
    crc = zlib.crc32(body) & 0xFFFFFFFF
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{crc}".encode()


def sign_webhook(key: rsa.RSAPrivateKey, transmission_id: str, transmission_time: str,
                 webhook_id: str, body: bytes) -> str:  # fmt: skip
    """Base64 SHA256withRSA signature of a delivery (what the sandbox sends)."""
    message = signed_message(transmission_id, transmission_time, webhook_id, body)
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def load_certificate(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ProtocolError("bad_certificate", "PAYPAL-CERT-URL is not a PEM certificate") from exc


def verify_webhook(sent: Transmission, webhook_id: str, body: bytes,
                   certificate: x509.Certificate, *, now: dt.datetime) -> None:  # fmt: skip
    """Check one delivery's signature with PayPal's certificate (valid at ``now``)."""
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise ProtocolError("bad_certificate", "the signing certificate is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ProtocolError("bad_certificate", "the signing certificate has no RSA key")
    try:
        signature = base64.b64decode(sent.signature, validate=True)
    except binascii.Error:
        raise ProtocolError("bad_signature", "PAYPAL-TRANSMISSION-SIG is not base64") from None
    message = signed_message(sent.transmission_id, sent.transmission_time, webhook_id, body)
    try:
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise ProtocolError("bad_signature", "webhook signature does not verify") from None


# ---------------------------------------------------------------- statement
@dataclass(frozen=True)
class StatementLine:
    """One row of Transaction Search (``GET /v1/reporting/transactions``)."""

    transaction_id: str
    event_code: str
    """T0006 checkout payment, T1107 refund, … (PayPal transaction event codes)."""
    status: str
    """S success, P pending, D denied, V reversed."""
    amount: int
    """Gross, signed (refunds negative), minor units."""
    fee: int
    currency: str
    initiated_at: dt.datetime | None
    invoice_id: str | None
    custom_field: str | None
    reference_id: str | None


def statement_line(detail: Mapping[str, Any]) -> StatementLine:
    info = detail.get("transaction_info")
    if not isinstance(info, Mapping):
        raise ProtocolError("malformed", "transaction detail lacks transaction_info")
    amount, currency = _signed_money(info.get("transaction_amount"))
    fee = 0
    if info.get("fee_amount") is not None:
        fee, _ = _signed_money(info.get("fee_amount"))
    return StatementLine(
        transaction_id=str(info.get("transaction_id") or ""),
        event_code=str(info.get("transaction_event_code") or ""),
        status=str(info.get("transaction_status") or ""),
        amount=amount,
        fee=fee,
        currency=currency,
        initiated_at=parse_time(info.get("transaction_initiation_date")),
        invoice_id=_text(info, "invoice_id"),
        custom_field=_text(info, "custom_field"),
        reference_id=_text(info, "paypal_reference_id"),
    )


def _text(info: Mapping[str, Any], name: str) -> str | None:
    value = info.get(name)
    return str(value) if value not in (None, "") else None


def _signed_money(obj: Any) -> tuple[int, str]:
    """Transaction Search amounts carry a sign (``"-5.00"`` for a refund or a fee)."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("value"), str):
        raise ProtocolError("malformed_amount", "transaction amount is malformed")
    value = str(obj["value"])
    negative = value.startswith("-")
    amount, currency = parse_money({**obj, "value": value.lstrip("-")})
    return (-amount if negative else amount), currency

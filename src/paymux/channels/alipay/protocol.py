"""Alipay OpenAPI (RSA2) wire codec: pure functions, no I/O.

Facts (see /work/shared/PROTOCOLS.md, "Alipay OpenAPI"):

- Every request carries the common parameters ``app_id, method, format=JSON, charset=utf-8,
  sign_type=RSA2, timestamp ("YYYY-MM-DD HH:MM:SS", Beijing time), version=1.0`` plus optional
  ``notify_url`` / ``return_url`` and the business parameters as one JSON string
  ``biz_content``.
- Request signature: every parameter except ``sign`` (``sign_type`` included), empty values
  dropped, sorted by key, joined as raw ``k=v`` with ``&``; SHA256withRSA (PKCS#1 v1.5) with the
  app private key; base64. URL-encoding happens only when the query string is built.
- Sync response ``{"<method_with_underscores>_response": {...}, "sign": "..."}`` (or
  ``error_response``): the signature covers the *exact raw text* of the response object, so it
  is cut out of the body, never re-serialised.
- Async notification (form POST): every field except ``sign`` and ``sign_type``, sorted,
  joined as raw ``k=v`` (empty values kept), verified with the Alipay public key.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from paymux.channels.base import ChannelPaymentStatus
from paymux.kit import clock, money

SHANGHAI = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
"""Beijing time; China has observed no DST since 1991, so a fixed offset is exact."""

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
CURRENCY = "CNY"
SIGN_TYPE = "RSA2"
CHARSET = "utf-8"
VERSION = "1.0"
FORMAT = "JSON"
SUCCESS_CODE = "10000"

METHOD_PRECREATE = "alipay.trade.precreate"
METHOD_PAGE_PAY = "alipay.trade.page.pay"
METHOD_WAP_PAY = "alipay.trade.wap.pay"
METHOD_APP_PAY = "alipay.trade.app.pay"
METHOD_QUERY = "alipay.trade.query"
METHOD_CLOSE = "alipay.trade.close"

PRODUCT_PAGE = "FAST_INSTANT_TRADE_PAY"
PRODUCT_WAP = "QUICK_WAP_WAY"
PRODUCT_APP = "QUICK_MSECURITY_PAY"
PRODUCT_QR = "FACE_TO_FACE_PAYMENT"

TRADE_STATUS: dict[str, ChannelPaymentStatus] = {
    "WAIT_BUYER_PAY": ChannelPaymentStatus.pending,
    "TRADE_SUCCESS": ChannelPaymentStatus.succeeded,
    "TRADE_FINISHED": ChannelPaymentStatus.succeeded,
    "TRADE_CLOSED": ChannelPaymentStatus.closed,
}


class ProtocolError(ValueError):
    """A message that does not follow the Alipay wire format."""


# ---------------------------------------------------------------- time and money
def format_time(value: dt.datetime) -> str:
    """An aware datetime → Alipay's ``YYYY-MM-DD HH:MM:SS`` in Beijing time."""
    return clock.aware(value).astimezone(SHANGHAI).strftime(TIME_FORMAT)


def parse_time(text: str) -> dt.datetime:
    """Alipay's Beijing-time ``YYYY-MM-DD HH:MM:SS`` → an aware UTC datetime."""
    try:
        local = dt.datetime.strptime(text.strip(), TIME_FORMAT)
    except ValueError:
        raise ProtocolError(f"not an Alipay time: {text!r}") from None
    return local.replace(tzinfo=SHANGHAI).astimezone(dt.UTC)


def timestamp(now: dt.datetime | None = None) -> str:
    return format_time(now or clock.now())


def to_yuan(fen: int) -> str:
    """Integer fen → Alipay's yuan string (``1999`` → ``"19.99"``)."""
    return money.to_major(fen, CURRENCY)


def to_fen(text: str) -> int:
    """Alipay's yuan string → integer fen; rejects malformed text and sub-fen precision."""
    try:
        return money.from_major(text, CURRENCY)
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None


def map_trade_status(trade_status: str) -> ChannelPaymentStatus:
    try:
        return TRADE_STATUS[trade_status]
    except KeyError:
        raise ProtocolError(f"unknown trade_status {trade_status!r}") from None


# ---------------------------------------------------------------- keys
def _pem_or_der(text: str, kind: str) -> tuple[bytes, bool]:
    """Alipay's console hands out keys as bare base64 (no PEM armour); accept both."""
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        return stripped.encode(), True
    try:
        return base64.b64decode("".join(stripped.split()), validate=True), False
    except (binascii.Error, ValueError):
        raise ProtocolError(f"{kind} is neither PEM nor base64 DER") from None


def load_private_key(text: str) -> rsa.RSAPrivateKey:
    data, pem = _pem_or_der(text, "private key")
    try:
        key = (
            serialization.load_pem_private_key(data, password=None)
            if pem
            else serialization.load_der_private_key(data, password=None)
        )
    except (ValueError, TypeError):
        raise ProtocolError("private key could not be loaded") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ProtocolError("private key is not an RSA key")
    if key.key_size < 2048:
        raise ProtocolError("RSA2 needs a key of at least 2048 bits")
    return key


def load_public_key(text: str) -> rsa.RSAPublicKey:
    data, pem = _pem_or_der(text, "public key")
    try:
        key = (
            serialization.load_pem_public_key(data)
            if pem
            else serialization.load_der_public_key(data)
        )
    except (ValueError, TypeError):
        raise ProtocolError("public key could not be loaded") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ProtocolError("public key is not an RSA key")
    return key


# ---------------------------------------------------------------- signatures
def sign(message: str, key: rsa.RSAPrivateKey) -> str:
    """SHA256withRSA (PKCS#1 v1.5) over the UTF-8 message, base64."""
    signature = key.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def verify(message: str, signature: str, key: rsa.RSAPublicKey) -> bool:
    try:
        raw = base64.b64decode("".join(signature.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        key.verify(raw, message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def request_sign_content(params: Mapping[str, str]) -> str:
    """The string a request signature covers: all but ``sign``, empties dropped, sorted."""
    items = sorted((k, v) for k, v in params.items() if k != "sign" and v != "")
    return "&".join(f"{k}={v}" for k, v in items)


def notify_sign_content(fields: Mapping[str, str]) -> str:
    """The string a notification signature covers: all but ``sign``/``sign_type``, sorted."""
    items = sorted((k, v) for k, v in fields.items() if k not in ("sign", "sign_type"))
    return "&".join(f"{k}={v}" for k, v in items)


def biz_json(biz: Mapping[str, Any]) -> str:
    return json.dumps(biz, ensure_ascii=False, separators=(",", ":"))


def request_params(
    *,
    app_id: str,
    method: str,
    biz_content: Mapping[str, Any],
    notify_url: str | None = None,
    return_url: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """The unsigned common parameters of one request."""
    params = {
        "app_id": app_id,
        "method": method,
        "format": FORMAT,
        "charset": CHARSET,
        "sign_type": SIGN_TYPE,
        "timestamp": timestamp(now),
        "version": VERSION,
        "biz_content": biz_json(biz_content),
    }
    if notify_url:
        params["notify_url"] = notify_url
    if return_url:
        params["return_url"] = return_url
    return params


def sign_params(params: Mapping[str, str], key: rsa.RSAPrivateKey) -> dict[str, str]:
    """``params`` with empties dropped and ``sign`` added."""
    clean = {k: v for k, v in params.items() if k != "sign" and v != ""}
    clean["sign"] = sign(request_sign_content(clean), key)
    return clean


def verify_request(params: Mapping[str, str], key: rsa.RSAPublicKey) -> bool:
    signature = params.get("sign")
    if not signature:
        return False
    return verify(request_sign_content(params), signature, key)


def query_string(params: Mapping[str, str]) -> str:
    """URL-encoded ``k=v&…`` in sorted order (the order string / redirect query)."""
    return urlencode(sorted(params.items()))


# ---------------------------------------------------------------- sync responses
def response_key(method: str) -> str:
    return method.replace(".", "_") + "_response"


@dataclass(frozen=True)
class RawResponse:
    """One sync response, as found in the body."""

    key: str
    """``<method>_response`` or ``error_response``."""
    text: str
    """The exact raw JSON text of the response object (what the signature covers)."""
    data: dict[str, Any]
    sign: str | None


def _top_level_members(text: str) -> dict[str, tuple[int, int]]:
    """Top-level keys of a JSON object → (start, end) offsets of their raw values."""
    decoder = json.JSONDecoder()
    ws = " \t\r\n"
    i = 0
    n = len(text)

    def skip(pos: int) -> int:
        while pos < n and text[pos] in ws:
            pos += 1
        return pos

    i = skip(i)
    if i >= n or text[i] != "{":
        raise ProtocolError("response is not a JSON object")
    i = skip(i + 1)
    members: dict[str, tuple[int, int]] = {}
    if i < n and text[i] == "}":
        return members
    while True:
        if i >= n or text[i] != '"':
            raise ProtocolError("malformed JSON object key")
        try:
            key, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            raise ProtocolError("malformed JSON object key") from None
        i = skip(i)
        if i >= n or text[i] != ":":
            raise ProtocolError("malformed JSON object")
        start = skip(i + 1)
        try:
            _, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            raise ProtocolError("malformed JSON value") from None
        if key in members:
            raise ProtocolError(f"duplicate key {key!r}")
        members[key] = (start, end)
        i = skip(end)
        if i < n and text[i] == ",":
            i = skip(i + 1)
            continue
        if i < n and text[i] == "}":
            if skip(i + 1) != n:
                raise ProtocolError("trailing data after JSON object")
            return members
        raise ProtocolError("malformed JSON object")


def extract_response(body: str, method: str) -> RawResponse:
    """Cut the raw ``<method>_response`` (or ``error_response``) text and ``sign`` out."""
    members = _top_level_members(body)
    key = response_key(method)
    if key not in members:
        key = "error_response"
        if key not in members:
            raise ProtocolError(f"no {response_key(method)} in the response")
    start, end = members[key]
    text = body[start:end]
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ProtocolError(f"{key} is not an object")
    signature: str | None = None
    if "sign" in members:
        s_start, s_end = members["sign"]
        value = json.loads(body[s_start:s_end])
        if not isinstance(value, str):
            raise ProtocolError("sign is not a string")
        signature = value
    return RawResponse(key=key, text=text, data=data, sign=signature)


def build_response(key: str, payload: Mapping[str, Any], signer: rsa.RSAPrivateKey) -> str:
    """Serialise a signed sync response: the signature covers the exact object text."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    signature = sign(text, signer)
    return "{" + json.dumps(key) + ":" + text + ',"sign":' + json.dumps(signature) + "}"

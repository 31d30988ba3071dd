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
- Public-key *certificate* mode (公钥证书), which Alipay requires for APIs that pay money out
  (``alipay.fund.trans.uni.transfer``): every request also carries ``app_cert_sn`` (of the app's
  public-key certificate) and ``alipay_root_cert_sn`` (of each RSA certificate in Alipay's root
  bundle, joined with ``_``); a certificate's SN is the MD5 hex of its issuer DN (RFC 2253 order)
  followed by its decimal serial number (the official SDKs' ``getCertSN``/``getRootCertSN``).
  Answers add ``alipay_cert_sn`` and are verified with the key of Alipay's public-key
  certificate.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from paymux.channels.base import ChannelPaymentStatus, ChannelRefundStatus, ChannelTransferStatus
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
METHOD_REFUND = "alipay.trade.refund"
METHOD_REFUND_QUERY = "alipay.trade.fastpay.refund.query"
METHOD_TRANSFER = "alipay.fund.trans.uni.transfer"
METHOD_TRANSFER_QUERY = "alipay.fund.trans.common.query"
METHOD_ROYALTY_BIND = "alipay.trade.royalty.relation.bind"
METHOD_SETTLE = "alipay.trade.order.settle"
METHOD_SETTLE_QUERY = "alipay.trade.order.settle.query"

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


FUND_CHANGED = "Y"
"""``alipay.trade.refund`` answer ``fund_change``: ``Y`` = the money moved in this call; ``N``
(a repeated ``out_request_no``, or a refund still being processed) = ask
``alipay.trade.fastpay.refund.query``."""

REFUND_SUCCESS = "REFUND_SUCCESS"
REFUND_STATUS: dict[str, ChannelRefundStatus] = {
    REFUND_SUCCESS: ChannelRefundStatus.succeeded,
    # Only the asynchronous refund API (alipay.trade.refund.apply) reports these two; we never
    # call it, but an app that mixes both would see them.
    "REFUND_PROCESSING": ChannelRefundStatus.pending,
    "REFUND_FAIL": ChannelRefundStatus.failed,
}
"""``alipay.trade.fastpay.refund.query`` ``refund_status``. Absent = "not received, or not
successful": see :meth:`AlipayAdapter.query_refund` for what we make of that."""


PRODUCT_TRANSFER = "TRANS_ACCOUNT_NO_PWD"
"""单笔无密转账到支付宝账户."""
SCENE_TRANSFER = "DIRECT_TRANSFER"
TRANSFER_MIN = 10
"""TRANS_ACCOUNT_NO_PWD takes [0.1, 100000000] yuan; in fen."""

TRANSFER_STATUS: dict[str, ChannelTransferStatus] = {
    "SUCCESS": ChannelTransferStatus.succeeded,
    "DEALING": ChannelTransferStatus.pending,
    "WAIT_PAY": ChannelTransferStatus.pending,
    "INIT": ChannelTransferStatus.pending,
    "FAIL": ChannelTransferStatus.failed,
    "CLOSED": ChannelTransferStatus.failed,
    # A bank card transfer that came back (退票) after SUCCESS: the money is back with us.
    "REFUND": ChannelTransferStatus.failed,
}
"""``status`` of uni.transfer (SUCCESS/FAIL/DEALING/REFUND) and common.query (also WAIT_PAY,
CLOSED)."""


ROYALTY_TRANSFER = "transfer"
"""``royalty_type`` / ``operation_type`` of an ordinary split (分账)."""
ROYALTY_STATES = frozenset({"SUCCESS", "FAIL", "PROCESSING"})
"""``royalty_detail_list[].state`` of alipay.trade.order.settle.query."""
SPLIT_USER_ID = "userId"
SPLIT_LOGIN_NAME = "loginName"


def is_user_id(account: str) -> bool:
    """An Alipay user id: ``2088`` and twelve more digits."""
    return (
        len(account) == 16
        and account.isascii()
        and account.isdigit()
        and account.startswith("2088")
    )


class ProtocolError(ValueError):
    """A message that does not follow the Alipay wire format."""


# ---------------------------------------------------------------- time and money
def format_time(value: dt.datetime) -> str:
    """An aware datetime → Alipay's ``YYYY-MM-DD HH:MM:SS`` in Beijing time."""
    return clock.aware(value).astimezone(SHANGHAI).strftime(TIME_FORMAT)


def parse_time(text: str) -> dt.datetime:
    """Alipay's Beijing-time ``YYYY-MM-DD HH:MM:SS`` → an aware UTC datetime. A fraction of a
    second is accepted too: notifications carry ``gmt_refund`` as ``yyyy-MM-dd HH:mm:ss.S``."""
    stripped = text.strip()
    whole, dot, fraction = stripped.partition(".")
    if dot and not (fraction.isascii() and fraction.isdigit() and len(fraction) <= 6):
        raise ProtocolError(f"not an Alipay time: {text!r}")
    try:
        local = dt.datetime.strptime(whole, TIME_FORMAT)
    except ValueError:
        raise ProtocolError(f"not an Alipay time: {text!r}") from None
    if fraction:
        local = local.replace(microsecond=int(fraction.ljust(6, "0")))
    return local.replace(tzinfo=SHANGHAI).astimezone(dt.UTC)


def timestamp(now: dt.datetime | None = None) -> str:
    return format_time(now or clock.now())


def to_yuan(fen: int) -> str:
    """Integer fen → Alipay's yuan string (``1999`` → ``"19.99"``)."""
    return money.to_major(fen, CURRENCY)


def currency_of(fields: Mapping[str, Any], amount: int | None) -> str | None:
    """The currency ``total_amount`` is in: ``trans_currency`` when the trade was priced in
    another currency (cross-border), else CNY; None when no amount was reported."""
    if amount is None:
        return None
    return str(fields.get("trans_currency") or CURRENCY)


def to_fen(text: str) -> int:
    """Alipay's yuan string → integer fen; rejects malformed text and sub-fen precision."""
    try:
        return money.from_major(text, CURRENCY)
    except (ValueError, OverflowError) as exc:  # OverflowError: "Infinity"
        raise ProtocolError(str(exc)) from None


def map_trade_status(trade_status: str) -> ChannelPaymentStatus:
    try:
        return TRADE_STATUS[trade_status]
    except KeyError:
        raise ProtocolError(f"unknown trade_status {trade_status!r}") from None


def map_transfer_status(status: str) -> ChannelTransferStatus:
    try:
        return TRANSFER_STATUS[status]
    except KeyError:
        raise ProtocolError(f"unknown transfer status {status!r}") from None


def map_refund_status(refund_status: str) -> ChannelRefundStatus:
    """``refund_status`` of a refund query; an absent or empty one means ``not_found``."""
    if not refund_status:
        return ChannelRefundStatus.not_found
    try:
        return REFUND_STATUS[refund_status]
    except KeyError:
        raise ProtocolError(f"unknown refund_status {refund_status!r}") from None


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


# ---------------------------------------------------------------- certificates
_RSA_SIGNATURES = "1.2.840.113549.1.1."
"""PKCS#1 signature algorithms (sha256WithRSAEncryption …): the root bundle's certificates that
count for ``alipay_root_cert_sn`` (it also holds an SM2 one, which does not)."""


def load_certificates(text: str, kind: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(text.strip().encode())
    except ValueError:
        raise ProtocolError(f"{kind} is not a PEM certificate") from None
    if not certificates:
        raise ProtocolError(f"{kind} holds no certificate")
    return certificates


def cert_sn(certificate: x509.Certificate) -> str:
    """Alipay's certificate SN: MD5 hex of issuer DN (RFC 2253 order) + decimal serial."""
    text = certificate.issuer.rfc4514_string() + str(certificate.serial_number)
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def root_cert_sn(text: str) -> str:
    """``alipay_root_cert_sn`` of a root bundle: the SNs of its RSA-signed certificates."""
    sns = [
        cert_sn(c)
        for c in load_certificates(text, "root certificate")
        if c.signature_algorithm_oid.dotted_string.startswith(_RSA_SIGNATURES)
    ]
    if not sns:
        raise ProtocolError("root certificate bundle holds no RSA certificate")
    return "_".join(sns)


def certificate_key(text: str, kind: str) -> tuple[rsa.RSAPublicKey, str]:
    """The RSA public key of a (first) certificate in ``text`` and the certificate's SN."""
    certificate = load_certificates(text, kind)[0]
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ProtocolError(f"{kind} does not hold an RSA key")
    return key, cert_sn(certificate)


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
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The unsigned common parameters of one request (``extra``: ``app_cert_sn`` …)."""
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
    params.update(extra or {})
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
    alipay_cert_sn: str | None = None
    """Certificate mode: which Alipay certificate signed the answer."""


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
    cert_sn: str | None = None
    if "alipay_cert_sn" in members:
        c_start, c_end = members["alipay_cert_sn"]
        value = json.loads(body[c_start:c_end])
        cert_sn = value if isinstance(value, str) else None
    return RawResponse(key=key, text=text, data=data, sign=signature, alipay_cert_sn=cert_sn)


def build_response(
    key: str,
    payload: Mapping[str, Any],
    signer: rsa.RSAPrivateKey,
    *,
    alipay_cert_sn: str | None = None,
) -> str:
    """Serialise a signed sync response: the signature covers the exact object text."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    signature = sign(text, signer)
    cert = f',"alipay_cert_sn":{json.dumps(alipay_cert_sn)}' if alipay_cert_sn else ""
    return "{" + json.dumps(key) + ":" + text + cert + ',"sign":' + json.dumps(signature) + "}"


# ---------------------------------------------------------------- payment codes (当面付 条码支付)
# ``alipay.trade.pay`` with ``scene=bar_code``, ``auth_code``, ``product_code=
# FACE_TO_FACE_PAYMENT`` charges the customer's payment code synchronously: code 10000 = paid,
# 10003 = WAIT_BUYER_PAY (the customer confirms in the app: poll ``alipay.trade.query``),
# 20000 / ACQ.SYSTEM_ERROR = unknown (query). An order still unpaid at the merchant's limit is
# cancelled with ``alipay.trade.cancel`` (撤销), which closes an unpaid trade (``action=close``)
# and refunds a paid one (``action=refund``); ``retry_flag=Y`` means "call again".
# Sources: python-alipay-sdk ``api_alipay_trade_pay`` / ``api_alipay_trade_cancel`` docstrings;
# Alipay barcode best practice (docs.antom.com/ac/barcode_cn/practice): poll every 3–5 s, give
# up at a timeout such as 60 s, then cancel; Alipay itself closes an unpaid one after 3 min.
BARCODE_METHOD = "alipay_barcode"
METHOD_PAY = "alipay.trade.pay"
METHOD_CANCEL = "alipay.trade.cancel"
SCENE_BAR_CODE = "bar_code"
WAIT_BUYER_PAY_CODE = "10003"
#: 16–24 digits starting 25–30 (jeepay ``JeepayKit.getPayWayCodeByBarCode``).
PAYMENT_CODE_LENGTHS = frozenset(range(16, 25))
PAYMENT_CODE_PREFIXES = ("25", "26", "27", "28", "29", "30")
BARCODE_POLL_SECONDS = 5.0
BARCODE_REVERSE_AFTER_SECONDS = 60.0
CANCEL_ACTIONS = frozenset({"close", "refund"})


def is_payment_code(code: str) -> bool:
    return (
        code.isascii()
        and code.isdigit()
        and len(code) in PAYMENT_CODE_LENGTHS
        and code.startswith(PAYMENT_CODE_PREFIXES)
    )


# ---------------------------------------------------------------- JSAPI / mini-program, ISV mode
METHOD_CREATE = "alipay.trade.create"
"""统一收单交易创建: makes the trade at once and answers its ``trade_no`` for ``my.tradePay``."""
PRODUCT_JSAPI = "JSAPI_PAY"
"""``alipay.trade.create``'s product code for mini-program / JSAPI payments."""
USER_ID = re.compile(r"^2088\d{12}$")
"""An Alipay user id (``buyer_id``); the newer ``buyer_open_id`` has no fixed shape."""
ISV_AUTH_ERRORS = {
    "aop.invalid-app-auth-token": "无效的应用授权令牌",
    "aop.app-auth-token-time-out": "应用授权令牌已过期",
}
"""Common 20001 sub_codes of a bad ``app_auth_token`` (Alipay's 公共错误码)."""

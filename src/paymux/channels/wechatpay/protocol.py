"""WeChat Pay API v3 wire codec: signatures, notification encryption, wire vocabulary.

Pure functions, no I/O. Shared by the adapter (client side) and the sandbox (server side), so
both speak exactly the same protocol; the tests check both against the official SDK.

- Requests are signed by the merchant: ``METHOD\\nPATH_WITH_QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n``,
  SHA256withRSA (PKCS#1 v1.5), base64, carried in the ``Authorization`` header.
- Responses and notifications are signed by the platform: ``TIMESTAMP\\nNONCE\\nBODY\\n`` over the
  raw body bytes, carried in the ``Wechatpay-*`` headers. Only public-key mode is supported: the
  ``Wechatpay-Serial`` is a ``PUB_KEY_ID_…`` id naming a configured platform public key.
- Notification resources are AEAD_AES_256_GCM encrypted with the merchant's APIv3 key.

The wire vocabulary (states, paths, id rules) lives in
:mod:`paymux.channels.wechatpay.vocabulary` and is re-exported here.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from paymux.kit import clock

# isort: off
from paymux.channels.wechatpay.vocabulary import (  # re-exported: callers use protocol.X
    BARCODE_METHOD as BARCODE_METHOD,
    BARCODE_POLL_SECONDS as BARCODE_POLL_SECONDS,
    BARCODE_REVERSE_AFTER_SECONDS as BARCODE_REVERSE_AFTER_SECONDS,
    CODEPAY_KIND as CODEPAY_KIND,
    CODEPAY_PATH as CODEPAY_PATH,
    CODEPAY_TRADE_TYPE as CODEPAY_TRADE_TYPE,
    DEFAULT_STORE_OUT_ID as DEFAULT_STORE_OUT_ID,
    MAX_SPLIT_RECEIVERS as MAX_SPLIT_RECEIVERS,
    METHOD_ENDPOINTS as METHOD_ENDPOINTS,
    PAYMENT_CODE_LENGTHS as PAYMENT_CODE_LENGTHS,
    PAYMENT_CODE_PREFIXES as PAYMENT_CODE_PREFIXES,
    REFUND_EVENTS as REFUND_EVENTS,
    REFUND_RESOURCE_TYPE as REFUND_RESOURCE_TYPE,
    REFUND_STATES as REFUND_STATES,
    REFUND_STATE_DESC as REFUND_STATE_DESC,
    SPLIT_FAIL_REASONS as SPLIT_FAIL_REASONS,
    SPLIT_ORDER_NO as SPLIT_ORDER_NO,
    SPLIT_ORDER_STATES as SPLIT_ORDER_STATES,
    SPLIT_RECEIVER_TYPES as SPLIT_RECEIVER_TYPES,
    SPLIT_RESULTS as SPLIT_RESULTS,
    SPLIT_RESULT_STATUS as SPLIT_RESULT_STATUS,
    TRADE_FAILURES as TRADE_FAILURES,
    TRADE_STATES as TRADE_STATES,
    TRADE_STATE_DESC as TRADE_STATE_DESC,
    TRANSFER_EVENT as TRANSFER_EVENT,
    TRANSFER_FINAL_STATES as TRANSFER_FINAL_STATES,
    TRANSFER_RESOURCE_TYPE as TRANSFER_RESOURCE_TYPE,
    TRANSFER_STATES as TRANSFER_STATES,
    TRANSFER_STATE_DESC as TRANSFER_STATE_DESC,
    is_payment_code as is_payment_code,
    map_refund_state as map_refund_state,
    map_trade_state as map_trade_state,
    map_transfer_state as map_transfer_state,
    payout_id_of as payout_id_of,
    reverse_path as reverse_path,
    split_status as split_status,
    transfer_bill_no as transfer_bill_no,
)
# isort: on

AUTH_SCHEMA = "WECHATPAY2-SHA256-RSA2048"
SIGNATURE_TYPE = AUTH_SCHEMA
AEAD_ALGORITHM = "AEAD_AES_256_GCM"
PUBLIC_KEY_ID_PREFIX = "PUB_KEY_ID_"
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "CST")

HEADER_SIGNATURE = "Wechatpay-Signature"
HEADER_TIMESTAMP = "Wechatpay-Timestamp"
HEADER_NONCE = "Wechatpay-Nonce"
HEADER_SERIAL = "Wechatpay-Serial"
HEADER_SIGNATURE_TYPE = "Wechatpay-Signature-Type"

_NONCE_ALPHABET = string.ascii_uppercase + string.digits
_AUTH_PARAM = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*')


# ---------------------------------------------------------------- errors
class ProtocolError(Exception):
    """A message failed a protocol check; ``code`` says which."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message or code


class SignatureError(ProtocolError):
    """Missing, malformed or wrong signature, or an unknown key serial."""


class StaleTimestamp(ProtocolError):
    """The signed timestamp is more than five minutes away from now."""


class DecryptionError(ProtocolError):
    """An encrypted resource could not be decrypted (wrong key, tampered, malformed)."""


# ---------------------------------------------------------------- keys and helpers
def generate_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """Load an RSA private key from PEM (PKCS#8 ``BEGIN PRIVATE KEY`` or PKCS#1)."""
    key = serialization.load_pem_private_key(pem.strip().encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    """Load an RSA public key from PEM (``BEGIN PUBLIC KEY``)."""
    key = serialization.load_pem_public_key(pem.strip().encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def make_nonce(length: int = 32) -> str:
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(length))


def unix_now() -> int:
    return int(clock.now().timestamp())


def encode_json(value: Any) -> bytes:
    """The one JSON encoding used on the wire (compact, UTF-8): sign exactly what is sent."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def rfc3339(value: dt.datetime) -> str:
    """``2024-01-31T12:00:00+08:00``: WeChat's time format (Beijing time, seconds)."""
    return clock.aware(value).astimezone(CHINA_TZ).isoformat(timespec="seconds")


def parse_rfc3339(value: str) -> dt.datetime:
    """Parse a WeChat RFC 3339 time into an aware UTC datetime (ValueError if malformed)."""
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"time without offset: {value!r}")
    return parsed.astimezone(dt.UTC)


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


# ---------------------------------------------------------------- RSA signatures
def rsa_sign(private_key: rsa.RSAPrivateKey, message: bytes) -> str:
    """SHA256withRSA (PKCS#1 v1.5), base64."""
    signature = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def rsa_verify(public_key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def check_fresh(timestamp: str | int, *, now: dt.datetime | None = None) -> None:
    """Raise :class:`StaleTimestamp` unless ``timestamp`` (unix seconds) is within ±5 minutes."""
    try:
        signed_at = dt.datetime.fromtimestamp(int(timestamp), dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise StaleTimestamp("bad_timestamp", f"malformed timestamp {timestamp!r}") from exc
    current = now or clock.now()
    if abs(current - signed_at) > MAX_CLOCK_SKEW:
        raise StaleTimestamp("stale_timestamp", "timestamp is more than 5 minutes off")


# ---------------------------------------------------------------- request signatures
def request_message(
    method: str, path_with_query: str, timestamp: str | int, nonce: str, body: bytes
) -> bytes:
    head = f"{method.upper()}\n{path_with_query}\n{timestamp}\n{nonce}\n".encode()
    return head + body + b"\n"


@dataclass(frozen=True)
class Authorization:
    """The parameters of an ``Authorization: WECHATPAY2-SHA256-RSA2048 …`` header."""

    mchid: str
    nonce_str: str
    signature: str
    timestamp: str
    serial_no: str

    def header(self) -> str:
        return (
            f'{AUTH_SCHEMA} mchid="{self.mchid}",nonce_str="{self.nonce_str}",'
            f'signature="{self.signature}",timestamp="{self.timestamp}",'
            f'serial_no="{self.serial_no}"'
        )


def sign_request(
    *,
    mchid: str,
    serial_no: str,
    private_key: rsa.RSAPrivateKey,
    method: str,
    path_with_query: str,
    body: bytes = b"",
    timestamp: int | None = None,
    nonce: str | None = None,
) -> Authorization:
    ts = str(unix_now() if timestamp is None else timestamp)
    nonce = nonce or make_nonce()
    message = request_message(method, path_with_query, ts, nonce, body)
    return Authorization(mchid, nonce, rsa_sign(private_key, message), ts, serial_no)


def build_authorization(
    *,
    mchid: str,
    serial_no: str,
    private_key: rsa.RSAPrivateKey,
    method: str,
    path_with_query: str,
    body: bytes = b"",
    timestamp: int | None = None,
    nonce: str | None = None,
) -> str:
    """The ``Authorization`` header value for one request."""
    return sign_request(
        mchid=mchid,
        serial_no=serial_no,
        private_key=private_key,
        method=method,
        path_with_query=path_with_query,
        body=body,
        timestamp=timestamp,
        nonce=nonce,
    ).header()


def parse_authorization(header: str) -> Authorization:
    """Parse an ``Authorization`` header; raises :class:`SignatureError` if malformed."""
    schema, _, params = header.strip().partition(" ")
    if schema != AUTH_SCHEMA:
        raise SignatureError("bad_schema", f"unsupported authorization schema {schema!r}")
    values: dict[str, str] = {}
    for part in params.split(","):
        match = _AUTH_PARAM.fullmatch(part)
        if match is None:
            raise SignatureError("bad_authorization", "malformed authorization parameters")
        values[match.group(1)] = match.group(2)
    try:
        return Authorization(
            mchid=values["mchid"],
            nonce_str=values["nonce_str"],
            signature=values["signature"],
            timestamp=values["timestamp"],
            serial_no=values["serial_no"],
        )
    except KeyError as exc:
        raise SignatureError("bad_authorization", f"missing {exc.args[0]}") from None


def verify_request(
    auth: Authorization,
    *,
    public_key: rsa.RSAPublicKey,
    method: str,
    path_with_query: str,
    body: bytes,
    check_time: bool = True,
) -> None:
    """Verify a merchant request's signature (and freshness); raises ProtocolError."""
    if check_time:
        check_fresh(auth.timestamp)
    message = request_message(method, path_with_query, auth.timestamp, auth.nonce_str, body)
    if not rsa_verify(public_key, message, auth.signature):
        raise SignatureError("bad_signature", "request signature does not verify")


# ---------------------------------------------------------------- platform signatures
def response_message(timestamp: str | int, nonce: str, body: bytes) -> bytes:
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def sign_response(
    private_key: rsa.RSAPrivateKey,
    serial: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The ``Wechatpay-*`` headers signing a response or notification body."""
    ts = str(unix_now() if timestamp is None else timestamp)
    nonce = nonce or make_nonce()
    return {
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: rsa_sign(private_key, response_message(ts, nonce, body)),
        HEADER_TIMESTAMP: ts,
        HEADER_SERIAL: serial,
        HEADER_SIGNATURE_TYPE: SIGNATURE_TYPE,
    }


def verify_response(
    headers: Mapping[str, str],
    body: bytes,
    *,
    public_keys: Mapping[str, rsa.RSAPublicKey],
    check_time: bool = True,
) -> str:
    """Verify a platform-signed response or notification over its raw body bytes.

    ``public_keys`` maps platform key ids (``PUB_KEY_ID_…``) to keys. Returns the serial used;
    raises :class:`SignatureError` or :class:`StaleTimestamp`.
    """
    lowered = _lower_headers(headers)
    signature = lowered.get(HEADER_SIGNATURE.lower())
    timestamp = lowered.get(HEADER_TIMESTAMP.lower())
    nonce = lowered.get(HEADER_NONCE.lower())
    serial = lowered.get(HEADER_SERIAL.lower())
    signature_type = lowered.get(HEADER_SIGNATURE_TYPE.lower(), SIGNATURE_TYPE)
    if not (signature and timestamp and nonce and serial):
        raise SignatureError("unsigned", "missing Wechatpay signature headers")
    if signature_type != SIGNATURE_TYPE:
        raise SignatureError("bad_signature_type", f"unsupported type {signature_type!r}")
    public_key = public_keys.get(serial)
    if public_key is None:
        raise SignatureError("unknown_serial", f"unknown platform key {serial!r}")
    if check_time:
        check_fresh(timestamp)
    if not rsa_verify(public_key, response_message(timestamp, nonce, body), signature):
        raise SignatureError("bad_signature", "platform signature does not verify")
    return serial


# ---------------------------------------------------------------- AEAD_AES_256_GCM
def _aead(apiv3_key: str) -> AESGCM:
    key = apiv3_key.encode()
    if len(key) != 32:
        raise DecryptionError("bad_key", "the APIv3 key must be 32 bytes")
    return AESGCM(key)


def aead_encrypt(apiv3_key: str, plaintext: bytes, *, nonce: str, associated_data: str) -> str:
    """base64(ciphertext ‖ tag)."""
    sealed = _aead(apiv3_key).encrypt(nonce.encode(), plaintext, associated_data.encode())
    return base64.b64encode(sealed).decode()


def aead_decrypt(apiv3_key: str, ciphertext: str, *, nonce: str, associated_data: str) -> bytes:
    try:
        sealed = base64.b64decode(ciphertext, validate=True)
        return _aead(apiv3_key).decrypt(nonce.encode(), sealed, associated_data.encode())
    except (InvalidTag, binascii.Error, ValueError) as exc:
        raise DecryptionError("decrypt_failed", "resource could not be decrypted") from exc


def encrypt_resource(
    apiv3_key: str,
    plaintext: bytes,
    *,
    original_type: str = "transaction",
    associated_data: str = "transaction",
    nonce: str | None = None,
) -> dict[str, str]:
    """A notification ``resource`` object."""
    nonce = nonce or make_nonce(12)
    return {
        "original_type": original_type,
        "algorithm": AEAD_ALGORITHM,
        "ciphertext": aead_encrypt(
            apiv3_key, plaintext, nonce=nonce, associated_data=associated_data
        ),
        "associated_data": associated_data,
        "nonce": nonce,
    }


def decrypt_resource(apiv3_key: str, resource: Mapping[str, Any]) -> bytes:
    """Decrypt a notification ``resource`` object; raises :class:`DecryptionError`."""
    if resource.get("algorithm") != AEAD_ALGORITHM:
        raise DecryptionError("bad_algorithm", f"unsupported {resource.get('algorithm')!r}")
    ciphertext, nonce = resource.get("ciphertext"), resource.get("nonce")
    associated_data = resource.get("associated_data") or ""
    if not isinstance(ciphertext, str) or not isinstance(nonce, str):
        raise DecryptionError("bad_resource", "resource lacks ciphertext or nonce")
    if not isinstance(associated_data, str):
        raise DecryptionError("bad_resource", "associated_data must be a string")
    return aead_decrypt(apiv3_key, ciphertext, nonce=nonce, associated_data=associated_data)


# ---------------------------------------------------------------- client-side payment signatures
def jsapi_pay_sign(
    private_key: rsa.RSAPrivateKey, *, appid: str, timestamp: str, nonce: str, package: str
) -> str:
    """``paySign`` for ``WeixinJSBridge.invoke('getBrandWCPayRequest', …)`` / mini programs."""
    return rsa_sign(private_key, f"{appid}\n{timestamp}\n{nonce}\n{package}\n".encode())


def app_pay_sign(
    private_key: rsa.RSAPrivateKey, *, appid: str, timestamp: str, nonce: str, prepay_id: str
) -> str:
    """``sign`` for the app SDK's ``PayReq``."""
    return rsa_sign(private_key, f"{appid}\n{timestamp}\n{nonce}\n{prepay_id}\n".encode())


# ---------------------------------------------------------------- sensitive fields
# Request fields such as a payee's real name travel encrypted with the platform public key,
# RSAES-OAEP with SHA-1 (MGF1-SHA-1), base64; the request then names that key in its
# ``Wechatpay-Serial`` header. (wechatpay-go ``utils.EncryptOAEPWithPublicKey``; the
# ``wechatpayv3`` SDK's ``rsa_encrypt``.)
def _oaep() -> padding.OAEP:
    # SHA-1 is what WeChat's OAEP uses (as a mask/label hash, not a signature): not negotiable.
    sha1 = hashes.SHA1()  # noqa: S303
    return padding.OAEP(mgf=padding.MGF1(algorithm=sha1), algorithm=sha1, label=None)


def encrypt_sensitive(public_key: rsa.RSAPublicKey, text: str) -> str:
    """Encrypt one sensitive request field for the platform."""
    return base64.b64encode(public_key.encrypt(text.encode(), _oaep())).decode()


def decrypt_sensitive(private_key: rsa.RSAPrivateKey, ciphertext: str) -> str:
    """Decrypt a sensitive field (the platform's side); raises :class:`DecryptionError`."""
    try:
        return private_key.decrypt(base64.b64decode(ciphertext, validate=True), _oaep()).decode()
    except (binascii.Error, ValueError) as exc:
        raise DecryptionError("decrypt_failed", "sensitive field could not be decrypted") from exc


# ---------------------------------------------------------------- mini-programs and partner mode
#: ``wx.requestPayment`` takes exactly these (the mini-program's appid is implied by the
#: mini-program itself, so ``appId`` is signed but not passed).
MINI_PAY_FIELDS = ("timeStamp", "nonceStr", "package", "signType", "paySign")
#: 服务商 (partner) orders: ``/v3/pay/partner/transactions/{jsapi,app,h5,native}``, query and
#: close by ``out-trade-no`` under it.
PARTNER_PAY_PATH = "/v3/pay/partner/transactions"


def jsapi_pay_params(
    private_key: rsa.RSAPrivateKey,
    *,
    appid: str,
    prepay_id: str,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The six fields of ``WeixinJSBridge.invoke('getBrandWCPayRequest', …)``, ``paySign``
    over ``appId\\ntimeStamp\\nnonceStr\\npackage\\n`` with the key of whoever placed the order
    (the merchant, or in partner mode the service provider). ``appid`` is the one the payer's
    openid belongs to."""
    timestamp = timestamp or str(unix_now())
    nonce = nonce or make_nonce()
    package = f"prepay_id={prepay_id}"
    sign = jsapi_pay_sign(private_key, appid=appid, timestamp=timestamp, nonce=nonce,
                          package=package)  # fmt: skip
    return {
        "appId": appid,
        "timeStamp": timestamp,
        "nonceStr": nonce,
        "package": package,
        "signType": "RSA",
        "paySign": sign,
    }


def mini_pay_params(
    private_key: rsa.RSAPrivateKey, *, appid: str, prepay_id: str
) -> dict[str, str]:
    """What ``wx.requestPayment`` takes: :data:`MINI_PAY_FIELDS`, signed like JSAPI with the
    mini-program's ``appid``."""
    params = jsapi_pay_params(private_key, appid=appid, prepay_id=prepay_id)
    return {name: params[name] for name in MINI_PAY_FIELDS}

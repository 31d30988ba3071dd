"""UnionPay 全渠道 (ACP, version 5.1.0, ``signMethod=01``) wire codec: pure functions, no I/O.

Facts, each from the official ACP SDK demos (mirrored in Javen205/IJPay ``com/jpay/unionpay``,
egzosn/pay-java-parent ``pay-java-union``, whilegit's PHP ``AppPay``, the UnionPei Ruby SDK):

- A message is a flat map of string fields. Requests drop blank fields (``filterBlank``), then
  get ``certId`` = the decimal serial number of the merchant's signing certificate (the
  ``.pfx`` UnionPay issues) and ``signature``.
- Signing string: every field but ``signature``, sorted by key, joined as ``k=v`` with ``&``,
  values raw (no URL encoding). ``signature`` = base64(SHA256withRSA(lower-case hex of
  SHA-256(signing string))) — the RSA signature is over the 64 hex characters, not the bytes.
- Responses and back notifications carry the signer's certificate in ``signPubKeyCert`` (PEM).
  The SDK trusts it only if it chains to the configured middle and root certificates, is within
  its validity, and the third ``@``-separated part of its subject CN is ``中国银联股份有限公司``
  (UnionPay's test environment signs with ``00040000:SIGN`` there, accepted only when CN
  validation is switched off, ``acpsdk.ifValidateCNName=false``).
- Synchronous answers are ``k=v&k=v`` *without* URL encoding (a value may hold ``=``, newlines,
  or a ``{…}``/``[…]`` group containing ``&``); notifications are ordinary URL-encoded form posts.
- ``fileContent`` of a bill download is base64 of the zlib stream (``java.util.zip.Deflater``,
  zlib header) of a zip archive.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from paymux.channels.base import ChannelPaymentStatus, FailureCategory

VERSION = "5.1.0"
ENCODING = "UTF-8"
SIGN_METHOD = "01"
CURRENCY = "CNY"
CURRENCY_CODE = "156"
ACCESS_TYPE = "0"
"""商户直连接入."""
UNIONPAY_NAME = "中国银联股份有限公司"
TEST_SIGNER_NAME = "00040000:SIGN"
"""What UnionPay's test environment puts where production puts :data:`UNIONPAY_NAME`."""

FRONT_PATH = "/gateway/api/frontTransReq.do"
BACK_PATH = "/gateway/api/backTransReq.do"
QUERY_PATH = "/gateway/api/queryTrans.do"

CHINA = dt.timezone(dt.timedelta(hours=8))


@dataclass(frozen=True)
class TxnKind:
    """``txnType`` / ``txnSubType`` / ``bizType`` / ``channelType`` of one product."""

    txn_type: str
    txn_sub_type: str
    biz_type: str
    channel_type: str | None


CONSUME_GATEWAY = TxnKind("01", "01", "000201", "07")
"""网关支付 (B2C gateway, PC) via frontTransReq."""
CONSUME_WAP = TxnKind("01", "01", "000201", "08")
"""手机网页支付 (WAP) via frontTransReq."""
APPLY_QR = TxnKind("01", "07", "000000", "08")
"""二维码 申码 (主扫: the customer scans the code) via backTransReq; answers ``qrCode``."""
QUERY = TxnKind("00", "00", "000201", None)
REFUND = TxnKind("04", "00", "000201", "07")
FILE_TRANSFER = TxnKind("76", "01", "000000", None)
BILL_FILE_TYPE = "00"
CONSUME_CODE = TxnKind("01", "06", "000000", "08")
"""二维码消费 (被扫: the merchant scans the customer's 云闪付 payment code, ``qrNo``) via
backTransReq (《二维码支付产品接口规范》2.3 §5.2.1, as ported in the demos)."""
REVERSE = TxnKind("99", "01", "000000", "08")
"""冲正 via backTransReq, naming the original consume by its own ``orderId`` + ``txnTime``
("同原消费", the QRC demo ``ConsumeReversal``, 2017-03)."""

BARCODE_METHOD = "unionpay_barcode"
PAYMENT_CODE_LENGTHS = frozenset({19})
PAYMENT_CODE_PREFIXES = ("62",)
"""A 云闪付 payment code: 19 digits starting 62 (jeepay ``getPayWayCodeByBarCode``; "银联二维码：
以62开头长度19位数字" in acquirers' docs). ACP itself only says ``qrNo`` is 1–20 digits."""
BARCODE_POLL_SECONDS = 4.0
BARCODE_REVERSE_AFTER_SECONDS = 63.0
"""The SDK's query schedule for a back transaction answered 00 (受理): at most 6 queries, 1, 2,
4, 8, 16, 32 s apart — 63 s. Still open after that, the outcome counts as unknown, which is what
冲正 is for ("仅用于超时无应答等异常场景")."""
REVERSE_CUTOFF_HOUR = 23
"""冲正 must fall in the original's day, "准确讲是昨日23:00至本日23:00之间"."""
TERM_ID = re.compile(r"^[0-9]{8}$")
"""``termId``: 8 characters (ANS8) naming the till; digits only, as letters were answered with a
message-format error in practice (Kasite's integration notes)."""

RESP_OK = "00"
RESP_PENDING = frozenset({"03", "04", "05"})
"""交易状态未明 / 处理超时 / 已受理: the outcome is unknown, query later (SDK demos)."""
RESP_NOT_FOUND = "34"
"""查无此交易 [from UnionPay's answer-code table; not confirmed in a stored source]."""
ORIG_PAID = frozenset({"00", "A6"})
"""origRespCode of a paid order: 00, or A6 (有缺陷的成功) — egzosn: "超过超时时间调查询接口应答
origRespCode不是A6或者00的就可以判断为失败"."""

ORDER_ID = re.compile(r"^[0-9A-Za-z]{8,40}$")
"""orderId: 8–40 letters and digits, no '-' or '_' (SDK demo comments)."""
_OUR_ID = re.compile(r"^([a-z]{2,6})_([0-9a-hjkmnp-tv-z]{26})$")
_MAPPED = re.compile(r"^([a-z]{2,6})([0-9a-hjkmnp-tv-z]{26})$")
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


class ProtocolError(ValueError):
    """A message, certificate or number that does not follow the protocol."""


# ---------------------------------------------------------------- numbers and times
def order_id(our_id: str) -> str:
    """Our id (``att_<26>``, ``re_<26>``, see :mod:`paymux.kit.ids`) as a UnionPay ``orderId``:
    the underscore dropped. Reversible by :func:`our_id`, so nothing needs storing."""
    match = _OUR_ID.match(our_id)
    if not match:
        raise ProtocolError(f"{our_id!r} is not a paymux id (prefix_26 base32 characters)")
    return match.group(1) + match.group(2)


def our_id(order: str) -> str:
    """The inverse of :func:`order_id`."""
    match = _MAPPED.match(order)
    if not match:
        raise ProtocolError(f"orderId {order!r} is not one of ours")
    return f"{match.group(1)}_{match.group(2)}"


def id_time(our: str) -> dt.datetime:
    """When one of our ids was made (its first 10 base32 characters are Unix milliseconds)."""
    match = _OUR_ID.match(our)
    if not match:
        raise ProtocolError(f"{our!r} is not a paymux id")
    millis = 0
    for char in match.group(2)[:10]:
        millis = millis * 32 + _CROCKFORD.index(char)
    return dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC)


def txn_time_of(our: str) -> str:
    """The ``txnTime`` sent with one of our orders or refunds: the id's own creation time, so a
    repeat and every later query name the same transaction (UnionPay keys a transaction by
    ``merId`` + ``orderId`` + ``txnTime``)."""
    return format_time(id_time(our))


def format_time(moment: dt.datetime) -> str:
    """``yyyyMMddHHmmss`` in China time."""
    return moment.astimezone(CHINA).strftime("%Y%m%d%H%M%S")


def parse_time(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.strptime(text, "%Y%m%d%H%M%S")
    except ValueError:
        raise ProtocolError(f"time {text!r} is not yyyyMMddHHmmss") from None
    return moment.replace(tzinfo=CHINA).astimezone(dt.UTC)


def to_amount(fen: int) -> str:
    """``txnAmt``: fen, digits only."""
    if fen <= 0:
        raise ProtocolError("amount must be a positive number of fen")
    return str(fen)


def parse_amount(text: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise ProtocolError(f"txnAmt {text!r} is not a number of fen")
    return int(text)


def is_payment_code(code: str) -> bool:
    """Whether ``code`` has the shape of a 云闪付 payment code (:data:`PAYMENT_CODE_LENGTHS`)."""
    return (
        code.isascii()
        and code.isdigit()
        and len(code) in PAYMENT_CODE_LENGTHS
        and code.startswith(PAYMENT_CODE_PREFIXES)
    )


def reverse_deadline(txn_time: str) -> dt.datetime:
    """The last moment a 冲正 of the transaction sent at ``txn_time`` is taken: UnionPay's day
    runs from 23:00 (China time) the evening before to 23:00, and the 冲正 must fall in the
    original's day."""
    sent = parse_time(txn_time).astimezone(CHINA)
    cutoff = sent.replace(hour=REVERSE_CUTOFF_HOUR, minute=0, second=0, microsecond=0)
    return cutoff if sent < cutoff else cutoff + dt.timedelta(days=1)


#: ACP response codes of a failed payment → failure category (docs/api.md "Final statuses");
#: any other failure code is ``payment_declined``. From the ACP 应答码 table [unverified
#: against the current spec: 60–80 are the issuer's answers].
RESP_FAILURES: dict[str, FailureCategory] = {
    "64": FailureCategory.insufficient_funds,  # 卡上的余额不足
    **{code: FailureCategory.card_declined for code in (
        "60", "61", "62", "63", "65", "66", "67", "68", "77", "78", "79", "80")},
    "71": FailureCategory.risk_declined,  # 交易无效，无法完成 (issuer risk)
}  # fmt: skip


def failure_category(code: str) -> FailureCategory:
    """The category of a failed payment's ``respCode``/``origRespCode``."""
    return RESP_FAILURES.get(code, FailureCategory.payment_declined)


def map_orig_resp_code(code: str) -> ChannelPaymentStatus:
    """A queried order's ``origRespCode``: 00/A6 paid, 03/04/05 still open, anything else
    failed (the SDK demos' rule)."""
    if code in ORIG_PAID:
        return ChannelPaymentStatus.succeeded
    if code in RESP_PENDING:
        return ChannelPaymentStatus.pending
    if not code:
        raise ProtocolError("origRespCode missing")
    return ChannelPaymentStatus.failed


# ---------------------------------------------------------------- messages
def signing_string(fields: Mapping[str, str]) -> str:
    """Every field but ``signature``, sorted by key, ``k=v`` joined with ``&``."""
    return "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "signature")


def digest_hex(fields: Mapping[str, str]) -> bytes:
    """What the RSA signature covers: the lower-case hex SHA-256 of the signing string."""
    return hashlib.sha256(signing_string(fields).encode("utf-8")).hexdigest().encode("ascii")


def filter_blank(fields: Mapping[str, str | None]) -> dict[str, str]:
    """Drop blank fields and trim the rest, as the SDK does before signing."""
    return {k: v.strip() for k, v in fields.items() if v is not None and v.strip()}


def sign(fields: Mapping[str, str | None], key: rsa.RSAPrivateKey, cert_id: str) -> dict[str, str]:
    """The request as sent: blank fields dropped, ``certId`` and ``signature`` added."""
    signed = filter_blank(fields)
    signed.pop("signature", None)
    signed["certId"] = cert_id
    raw = key.sign(digest_hex(signed), padding.PKCS1v15(), hashes.SHA256())
    signed["signature"] = base64.b64encode(raw).decode("ascii")
    return signed


def verify_signature(fields: Mapping[str, str], public_key: rsa.RSAPublicKey) -> bool:
    signature = fields.get("signature", "")
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, digest_hex(fields), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return bool(signature)


def parse_response(text: str) -> dict[str, str]:
    """A synchronous answer: ``k=v&k=v`` without URL encoding. A ``&`` inside a ``{…}`` or
    ``[…]`` group of a value does not split, a ``=`` in a value is part of it; an optional
    surrounding ``{}`` is dropped (the SDK's parser, rewritten)."""
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    fields: dict[str, str] = {}
    key: str | None = None
    buf: list[str] = []
    closer: str | None = None

    def put() -> None:
        name = "".join(buf) if key is None else key
        if not name:
            raise ProtocolError("empty field name in response")
        if name in fields:
            raise ProtocolError(f"duplicate field {name!r} in response")
        fields[name] = "" if key is None else "".join(buf)

    for char in text:
        if key is None:
            if char == "=":
                key, buf = "".join(buf), []
            else:
                buf.append(char)
            continue
        if closer is not None:
            if char == closer:
                closer = None
        elif char in "{[":
            closer = "}" if char == "{" else "]"
        if char == "&" and closer is None:
            put()
            key, buf = None, []
        else:
            buf.append(char)
    if text:
        put()
    return fields


def encode_response(fields: Mapping[str, str]) -> str:
    """The sandbox's answer in UnionPay's raw form (the inverse of :func:`parse_response`)."""
    return "&".join(f"{k}={v}" for k, v in fields.items())


def parse_notification(body: bytes) -> dict[str, str]:
    """A back notification: a UTF-8, URL-encoded form; a repeated field is refused."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("not a UTF-8 form body") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise ProtocolError(f"duplicate field {key!r}")
        fields[key] = value
    return fields


# ---------------------------------------------------------------- certificates
@dataclass(frozen=True)
class SigningCert:
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @property
    def cert_id(self) -> str:
        """``certId``: the certificate's serial number in decimal."""
        return str(self.certificate.serial_number)


def load_pfx(pfx_base64: str, password: str) -> SigningCert:
    """The merchant's signing certificate and key from the PKCS#12 file UnionPay issues."""
    try:
        data = base64.b64decode("".join(pfx_base64.split()), validate=True)
        key, cert, _ = pkcs12.load_key_and_certificates(data, password.encode("utf-8"))
    except ValueError as exc:
        raise ProtocolError(
            f"signing certificate: not a PKCS#12 file or wrong password ({exc})"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey) or cert is None:
        raise ProtocolError("signing certificate: the .pfx must hold an RSA key and its cert")
    cert_key = cert.public_key()
    if not isinstance(cert_key, rsa.RSAPublicKey) or (
        cert_key.public_numbers() != key.public_key().public_numbers()
    ):
        raise ProtocolError("signing certificate: the certificate is not for the key")
    return SigningCert(key, cert)


def load_cert(pem: str, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ProtocolError(f"{what}: not a PEM certificate") from None


def signer_name(certificate: x509.Certificate) -> str:
    """The third ``@`` part of the subject CN (``041@Z12@<owner>@<n>``), or ''."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return ""
    parts = str(names[0].value).split("@")
    return parts[2] if len(parts) > 2 else ""


def _valid_at(certificate: x509.Certificate, now: dt.datetime) -> bool:
    return certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_signer(
    pem: str,
    *,
    middle: x509.Certificate,
    root: x509.Certificate,
    now: dt.datetime,
    validate_cn: bool = True,
) -> rsa.RSAPublicKey:
    """The public key of a message's ``signPubKeyCert`` once it is trusted: issued by the
    configured middle certificate, which the configured (self-signed) root issued, all three
    within validity at ``now``, and owned by UnionPay. Raises ProtocolError saying why not."""
    certificate = load_cert(pem, "signPubKeyCert")
    for cert, what in ((certificate, "signPubKeyCert"), (middle, "middle"), (root, "root")):
        if not _valid_at(cert, now):
            raise ProtocolError(f"{what} certificate is outside its validity")
    if not (_is_ca(root) and _issued_by(root, root)):
        raise ProtocolError("root certificate is not a self-signed CA")
    if not (_is_ca(middle) and _issued_by(middle, root)):
        raise ProtocolError("middle certificate is not a CA issued by the root")
    if not _issued_by(certificate, middle):
        raise ProtocolError("signPubKeyCert does not chain to the configured certificates")
    owner = signer_name(certificate)
    allowed = {UNIONPAY_NAME} if validate_cn else {UNIONPAY_NAME, TEST_SIGNER_NAME}
    if owner not in allowed:
        raise ProtocolError(f"signPubKeyCert is not UnionPay's signing certificate ({owner!r})")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ProtocolError("signPubKeyCert does not hold an RSA key")
    return key


# ---------------------------------------------------------------- bill files
def encode_file_content(data: bytes) -> str:
    """``fileContent``: base64 of the zlib-wrapped DEFLATE stream of the file."""
    return base64.b64encode(zlib.compress(data)).decode("ascii")


def decode_file_content(text: str) -> bytes:
    try:
        return zlib.decompress(base64.b64decode(text, validate=True))
    except (ValueError, zlib.error):
        raise ProtocolError("fileContent is not base64 of a zlib stream") from None


ZM_WIDTHS: tuple[int, ...] = (
    3, 11, 11, 6, 10, 19, 12, 4, 2, 21, 2, 32, 2, 6, 10, 13, 13, 4, 15, 2, 2, 6, 2, 4, 32, 1,
    21, 15, 1, 15, 32, 13, 13, 8, 32, 13, 13, 12, 2, 1, 32, 98,
)  # fmt: skip
"""Widths (GBK bytes) of the ZM file's fields, each followed by one space, per the SDK's
``parseZMFile`` (《全渠道平台接入接口规范 第3部分 文件接口》 6.1)."""
ZM_FIELDS: tuple[str, ...] = (
    "tradeCode", "acqInsCode", "sendInsCode", "traceNo", "txnTime", "payCardNo", "txnAmt",
    "merCatCode", "termType", "queryId", "oldPayType", "orderId", "payCardType",
    "origTraceNo", "origTxnTime", "merFee", "settleAmt", "payType", "groupMerId", "txnType",
    "txnSubType", "bizType", "accType", "billType", "billNo", "interactMode", "origQryId",
    "merId", "splitType", "subMerId", "subMerAbbr", "subMerSplitAmt", "settleNetAmt",
    "termId", "merReserved", "discountAmt", "invoiceAmt", "installmentFee",
    "installmentCount", "tradeMedia", "reserved1", "reserved",
)  # fmt: skip
TRADE_CODE_CONSUME = "S22"
TRADE_CODE_REFUND = "S30"


def zm_line(values: Mapping[str, str]) -> bytes:
    """One ZM record: every field left-aligned, space-padded to its width, one space between."""
    parts = []
    for name, width in zip(ZM_FIELDS, ZM_WIDTHS, strict=True):
        raw = values.get(name, "").encode("gbk")
        if len(raw) > width:
            raise ProtocolError(f"{name} longer than {width} bytes")
        parts.append(raw + b" " * (width - len(raw)))
    return b" ".join(parts)


ZM_LENGTH = sum(ZM_WIDTHS) + len(ZM_WIDTHS) - 1
"""Bytes of one ZM record."""
ZM_MIN_LENGTH = ZM_LENGTH - ZM_WIDTHS[-1]
"""A record whose blank trailing ``reserved`` field was cut off is still whole."""


_ZM_SLICES: tuple[tuple[str, slice], ...] = tuple(
    (name, slice(start, start + width))
    for name, width, start in zip(
        ZM_FIELDS, ZM_WIDTHS,
        [sum(ZM_WIDTHS[:i]) + i for i in range(len(ZM_WIDTHS))], strict=True,
    )
)  # fmt: skip


def parse_zm_record(line: bytes) -> dict[str, str]:
    """One ZM record (GBK, fixed width, line ending removed), fields stripped. Widths are in
    bytes: an ASCII record (the usual one) is decoded once, any other field by field."""
    if not ZM_MIN_LENGTH <= len(line) <= ZM_LENGTH:
        raise ProtocolError(f"a ZM record is {ZM_LENGTH} bytes, this one {len(line)}")
    if line.isascii():
        text = line.decode("ascii")
        return {name: text[cut].strip() for name, cut in _ZM_SLICES}
    row: dict[str, str] = {}
    for name, cut in _ZM_SLICES:
        try:
            row[name] = line[cut].decode("gbk").strip()
        except UnicodeDecodeError:
            raise ProtocolError(f"field {name} is not GBK text") from None
    return row


def zm_file_name(settle_date: dt.date, mer_id: str) -> str:
    """``INN<yyMMdd>88ZM_<merId>``: the merchant's general transaction file in the zip."""
    return f"INN{settle_date:%y%m%d}88ZM_{mer_id}"


_ZM_NAME = re.compile(r"(?:^|/)INN(\d{6})\d\dZM_[0-9A-Za-z]+$")
_ZME_NAME = re.compile(r"(?:^|/)INN\d{6}\d\dZME_[0-9A-Za-z]+$")


def zm_file_date(name: str) -> dt.date | None:
    """The settlement date in a ZM file's name, None when the name is not a ZM file's."""
    match = _ZM_NAME.search(name)
    if not match:
        return None
    try:
        return dt.datetime.strptime(match[1], "%y%m%d").date()
    except ValueError:
        return None


def is_zme_file(name: str) -> bool:
    """``INN<yyMMdd>88ZME_<merId>``: the merchant's error/adjustment (差错) file."""
    return _ZME_NAME.search(name) is not None


def fee_field(fen: int) -> str:
    """``merFee`` (13 characters): ``D`` + 12 digits for a fee charged to the merchant, ``C`` for
    one given back [the letters are unverified; the width is the SDK's]."""
    return f"{'C' if fen < 0 else 'D'}{abs(fen):012d}"


def parse_fee(text: str) -> int:
    """``merFee`` → signed fen (charged positive); blank is no fee."""
    text = text.strip()
    if not text:
        return 0
    sign = -1 if text[0] == "C" else 1
    digits = text[1:] if text[0] in "CD" else text
    if not digits.isdigit():
        raise ProtocolError(f"merFee {text!r} is malformed")
    return sign * int(digits)

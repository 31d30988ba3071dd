"""WeChat Pay trade bill (交易账单, ``GET /v3/bill/tradebill``): the file's codec, no I/O.

The ALL bill is text: one header line of the 27 column names, one line per payment or refund
with every field prefixed by a backtick (so spreadsheet programs keep ids and amounts as text),
then the summary header and one backticked summary line. Amounts are yuan with two decimals;
手续费 has five (``0.04000``) and 费率 is a percentage (``0.60%``). A refund is a row of its own
(交易状态 ``REFUND``, 应结订单金额 ``0.00``, the amount in 退款金额) and gives back its share of the
fee as a negative 手续费. Sources: WxJava ``WxPayBillResult`` and its test fixtures, the v3 API
page "申请交易账单" as quoted in SDK models (``hash_value`` is the SHA1 of the *uncompressed* file).
"""

from __future__ import annotations

import datetime as dt
import gzip
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from cryptography.hazmat.primitives import hashes

from paymux.channels.base import StatementLine, StatementLineKind

CHINA = dt.timezone(dt.timedelta(hours=8), "CST")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
BILL_PATH = "/v3/bill/tradebill"
DOWNLOAD_PATH = "/v3/billdownload/file"
HASH_TYPE = "SHA1"
TAR_GZIP = "GZIP"

COLUMNS: tuple[str, ...] = tuple(
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,"
    "交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,"
    "充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,"
    "费率备注".split(",")
)
SUMMARY_COLUMNS: tuple[str, ...] = tuple(
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,"
    "申请退款总金额".split(",")
)
STATE_PAID = "SUCCESS"
STATE_REFUND = "REFUND"


class BillError(ValueError):
    """The file is not a WeChat trade bill we can read."""


# ---------------------------------------------------------------- amounts
def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def fee_text(fen: int) -> str:
    """手续费: yuan with five decimals (WeChat rounds the fee to the fen, prints 5 places)."""
    return yuan(fen) + "000"


def rate_text(bps: int) -> str:
    """费率: basis points as WeChat prints them (60 → ``0.60%``)."""
    return f"{bps // 100}.{bps % 100:02d}%"


def fee_of(amount: int, bps: int) -> int:
    """The fee on ``amount`` fen at ``bps``, rounded half up to the fen."""
    return int((Decimal(amount) * bps / 10_000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_fen(text: str) -> int:
    """Yuan text (any number of decimals, optional sign) → fen; refuses sub-fen remainders."""
    try:
        value = Decimal(text) * 100
    except InvalidOperation:
        raise BillError(f"not an amount: {text!r}") from None
    if value != value.to_integral_value():
        raise BillError(f"amount below the fen: {text!r}")
    return int(value)


def sha1_hex(data: bytes) -> str:
    digest = hashes.Hash(hashes.SHA1())  # noqa: S303 - WeChat's integrity hash, not security
    digest.update(data)
    return digest.finalize().hex()


# ---------------------------------------------------------------- the file
@dataclass(frozen=True)
class BillFile:
    rows: tuple[dict[str, str], ...]
    summary: dict[str, str]


def render(rows: Iterable[Mapping[str, str]]) -> bytes:
    """The ALL bill file (UTF-8, CRLF) for ``rows`` (dicts keyed by :data:`COLUMNS`), with the
    summary WeChat computes from them."""
    rows = list(rows)
    lines = [",".join(COLUMNS)]
    lines += [",".join("`" + row.get(name, "") for name in COLUMNS) for row in rows]

    def total(name: str) -> int:
        return sum(to_fen(row.get(name) or "0") for row in rows)

    summary = (
        str(len(rows)), yuan(total("应结订单金额")), yuan(total("退款金额")),
        yuan(total("充值券退款金额")), fee_text(total("手续费")), yuan(total("订单金额")),
        yuan(total("申请退款金额")),
    )  # fmt: skip
    lines += [",".join(SUMMARY_COLUMNS), ",".join("`" + value for value in summary)]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _fields(line: str) -> list[str]:
    return [field.removeprefix("`") for field in line.split(",")]


def parse(data: bytes) -> BillFile:
    """Read an ALL bill (``data`` already gunzipped). Fields keep their text; commas inside a
    field are not expected (WeChat strips them from 商品名称/商户数据包)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BillError("bill is not UTF-8") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or tuple(lines[0].split(",")) != COLUMNS:
        raise BillError("bill does not start with the ALL bill's 27 column names")
    try:
        end = lines.index(",".join(SUMMARY_COLUMNS))
    except ValueError:
        raise BillError("bill has no summary") from None
    rows = []
    for line in lines[1:end]:
        values = _fields(line)
        if len(values) != len(COLUMNS):
            raise BillError(f"row has {len(values)} fields, not {len(COLUMNS)}")
        rows.append(dict(zip(COLUMNS, values, strict=True)))
    if end + 1 >= len(lines):
        raise BillError("bill has no summary line")
    summary_values = _fields(lines[end + 1])
    if len(summary_values) != len(SUMMARY_COLUMNS):
        raise BillError("summary line is malformed")
    summary = dict(zip(SUMMARY_COLUMNS, summary_values, strict=True))
    if int(summary["总交易单数"]) != len(rows):
        raise BillError("summary count does not match the rows")
    return BillFile(tuple(rows), summary)


def unpack(data: bytes, tar_type: str | None) -> bytes:
    """The bill file from a download: gunzip when GZIP was asked."""
    if tar_type != TAR_GZIP:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise BillError(f"download is not gzip: {exc}") from None


def _time(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=CHINA)
    except ValueError:
        return None


def _blank(text: str) -> str | None:
    return None if text in ("", "0") else text


def statement_lines(rows: Sequence[Mapping[str, str]]) -> list[StatementLine]:
    """Bill rows → normalised lines: a ``SUCCESS`` row is a payment of 应结订单金额, a
    ``REFUND`` row a refund of minus 退款金额; 手续费 is the fee as signed in the file."""
    lines = []
    for row in rows:
        state = row["交易状态"]
        refund = state == STATE_REFUND
        if refund:
            kind, amount = StatementLineKind.refund, -to_fen(row["退款金额"])
        elif state == STATE_PAID:
            kind, amount = StatementLineKind.payment, to_fen(row["应结订单金额"])
        else:
            kind, amount = StatementLineKind.other, to_fen(row["应结订单金额"] or "0")
        lines.append(StatementLine(
            kind=kind, amount=amount, currency=row["货币种类"] or "CNY",
            fee=to_fen(row["手续费"] or "0"), out_trade_no=_blank(row["商户订单号"]),
            out_refund_no=_blank(row["商户退款单号"]) if refund else None,
            channel_trade_no=_blank(row["微信订单号"]),
            channel_refund_no=_blank(row["微信退款单号"]) if refund else None,
            occurred_at=_time(row["交易时间"]), raw=dict(row),
        ))  # fmt: skip
    return lines

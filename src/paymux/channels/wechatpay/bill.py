"""WeChat Pay trade bill (交易账单, ``GET /v3/bill/tradebill``): the file's codec, no I/O but the
file it reads.

Format facts relied on (sources: WxJava ``WxPayBillResult`` and its test fixtures, the v3 API
page "申请交易账单" as quoted in the SDK models of wechatpay-java / WxJava and minibear2021
``wechatpayv3``; see PROTOCOLS.md "Bills for reconciliation"):

- The ALL bill is UTF-8 text, one record per line (CRLF): one header line of the 27 column names
  (:data:`COLUMNS`, no backticks), one line per payment or refund with every field prefixed by
  a backtick (so spreadsheet programs keep ids and amounts as text), then the summary header
  (:data:`SUMMARY_COLUMNS`) and one backticked summary line. Fields hold no commas (WeChat strips
  them from 商品名称 / 商户数据包).
- Amounts are yuan with two decimals; 手续费 is rounded to the fen and printed with five
  decimals (``0.04000``); 费率 is a percentage (``0.60%``); 交易时间 is China time
  ``YYYY-MM-DD HH:MM:SS``.
- A payment is a row with 交易状态 ``SUCCESS`` whose amount is 应结订单金额 (= 订单金额 − 免充值券).
  A refund is a row of its own (交易状态 ``REFUND``, 应结订单金额 ``0.00``, the amount in 退款金额,
  keyed by 商户退款单号 / 微信退款单号) and gives back its share of the fee as a negative 手续费.
  Empty refund numbers are written ``0``.
- The summary: 总交易单数 (the number of detail rows), 应结订单总金额, 退款总金额, 充值券退款总金额,
  手续费总金额, 订单总金额, 申请退款总金额 — each the sum of its detail column.
- ``hash_value`` (``hash_type`` SHA1) given with the download is the SHA1 of the *uncompressed*
  file ("原始账单（gzip需要解压缩）的摘要值"): the reader hashes the bytes as it streams them.
- Partner (服务商) mode: 商户号 is the service provider, 特约商户号 the sub-merchant (``0`` in
  direct mode). [unverified: the ``0`` placeholder of 特约商户号 in direct mode.]
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import IO

from paymux.channels.base import StatementLine, StatementLineKind
from paymux.channels.bills import BillReader
from paymux.kit import money

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

HEADER_LINE = ",".join(COLUMNS)
SUMMARY_LINE = ",".join(SUMMARY_COLUMNS)
#: Detail columns summed by the summary, in :data:`SUMMARY_COLUMNS` order (after 总交易单数),
#: with the check each one is: (detail column, summary column, check name).
TOTALS: tuple[tuple[str, str, str], ...] = (
    ("应结订单金额", "应结订单总金额", "summary_amount"),
    ("退款金额", "退款总金额", "summary_refund"),
    ("充值券退款金额", "充值券退款总金额", "summary_coupon_refund"),
    ("手续费", "手续费总金额", "summary_fee"),
    ("订单金额", "订单总金额", "summary_order_amount"),
    ("申请退款金额", "申请退款总金额", "summary_refund_requested"),
)
MAX_LINE = 64 * 1024
"""Longest line read at once (a real row is under 1 KiB); a longer one is a problem."""
_INDEX = {name: i for i, name in enumerate(COLUMNS)}
_AMOUNT = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")


class BillError(ValueError):
    """A row (or an amount) that is not what a WeChat trade bill holds."""


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


_FEN_CACHE: dict[str, int] = {}
_FEN_CACHE_SIZE = 4096
"""Amounts repeat (``0.00``, the day's usual prices and fees): parsed ones are kept, up to a
bound."""


def to_fen(text: str) -> int:
    """Yuan text (any number of decimals, optional minus) → fen; empty is 0; refuses anything
    else and sub-fen remainders. Integer arithmetic only."""
    fen = _FEN_CACHE.get(text)
    if fen is None:
        fen = _parse_fen(text)
        if len(_FEN_CACHE) < _FEN_CACHE_SIZE:
            _FEN_CACHE[text] = fen
    return fen


def _parse_fen(text: str) -> int:
    if not text:
        return 0
    # The usual shapes, without the regex: yuan with two decimals (``12.34``, ``-0.05``) and
    # 手续费's five (``0.04000``). ASCII digits only (str.isdigit alone takes other scripts').
    whole, dot, fraction = text.partition(".")
    digits = whole[1:] if whole.startswith("-") else whole
    if dot and digits and digits.isascii() and digits.isdigit() and fraction.isascii() and \
            fraction.isdigit() and (len(fraction) == 2 or (
                len(fraction) == 5 and fraction.endswith("000"))):  # fmt: skip
        fen = int(digits) * 100 + int(fraction[:2])
        return -fen if whole.startswith("-") else fen
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise BillError(f"not an amount: {text!r}")
    sign, whole, fraction = match.groups()
    fraction = fraction or ""
    if fraction[2:].strip("0"):
        raise BillError(f"amount below the fen: {text!r}")
    fen = int(whole) * 100 + int((fraction[:2] or "0").ljust(2, "0"))
    return -fen if sign else fen


def sha1_hex(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


# ---------------------------------------------------------------- writing
def write_bill(
    rows: Iterable[Mapping[str, str]],
    out: IO[bytes],
    *,
    summary_offset: int = 0,
    unreadable: Sequence[str] = (),
) -> None:
    """Write the ALL bill file (UTF-8, CRLF) of ``rows`` (dicts keyed by :data:`COLUMNS`,
    missing keys empty) into ``out`` as they come, with the summary WeChat computes from them:
    memory does not grow with the rows. ``summary_offset`` is added to 应结订单总金额 and the
    ``unreadable`` lines are written verbatim after the detail (neither counted): the sandbox's
    scripted discrepancies."""
    count = 0
    sums = [0] * len(TOTALS)
    columns = [_INDEX[column] for column, _, _ in TOTALS]
    chunk: list[str] = [HEADER_LINE]
    for row in rows:
        values = [row.get(name, "") for name in COLUMNS]
        for i, index in enumerate(columns):
            sums[i] += to_fen(values[index])
        chunk.append("`" + ",`".join(values))
        count += 1
        if len(chunk) >= 256:
            out.write(("\r\n".join(chunk) + "\r\n").encode("utf-8"))
            chunk = []
    chunk.extend(unreadable)
    sums[0] += summary_offset
    summary = [str(count)] + [
        fee_text(total) if column == "手续费" else yuan(total)
        for (column, _, _), total in zip(TOTALS, sums, strict=True)
    ]
    chunk += [SUMMARY_LINE, "`" + ",`".join(summary)]
    out.write(("\r\n".join(chunk) + "\r\n").encode("utf-8"))


def render(rows: Iterable[Mapping[str, str]]) -> bytes:
    """The ALL bill file of ``rows`` as bytes (small bills: tests, the sandbox)."""
    import io

    buffer = io.BytesIO()
    write_bill(rows, buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------- reading
_SEPARATORS = len(COLUMNS) - 1


def _fields(line: str) -> list[str]:
    if line.startswith("`"):  # the usual row: every field backticked, no comma inside one
        values = line[1:].split(",`")
        if len(values) == len(COLUMNS) and line.count(",") == _SEPARATORS:
            return values
    return [field.removeprefix("`") for field in line.split(",")]


def _blank(text: str) -> str | None:
    return None if text in ("", "0") else text


_LAST_TIME: list[tuple[str, dt.datetime]] = [("", dt.datetime.min)]
"""The last time parsed: a bill is in time order and a busy second has many rows."""


def _time(text: str) -> dt.datetime:
    last = _LAST_TIME[0]
    if last[0] == text:
        return last[1]
    moment = _parse_time(text)
    _LAST_TIME[0] = (text, moment)
    return moment


def _parse_time(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BillError(f"交易时间 is not a time: {text!r}") from None
    if len(text) != 19 or moment.tzinfo is not None:
        raise BillError(f"交易时间 is not YYYY-MM-DD HH:MM:SS: {text!r}")
    return moment.replace(tzinfo=CHINA)


def _currency(text: str) -> str:
    currency = text or "CNY"
    if money.EXPONENTS.get(currency) != 2:
        raise BillError(f"unknown currency {text!r}")
    return currency


class TradeBillReader(BillReader):
    """One pass over an ALL trade bill file (uncompressed), in bounded memory.

    Each detail row is one :class:`StatementLine`: a ``SUCCESS`` row a payment of 应结订单金额,
    a ``REFUND`` row a refund of minus 退款金额, any other state ``other``; 手续费 is the fee as
    signed in the file. A row that cannot be read (field count, amount, time, currency, or a
    row of another merchant than ``mchid`` / sub-merchant than ``sub_mchid``) is a problem and
    counts in no total. Checks once read: ``sha1`` over the file's bytes when ``expected`` gives
    one, and each summary total against the detail (``summary_count``, ``summary_amount``,
    ``summary_refund``, ``summary_coupon_refund``, ``summary_fee``, ``summary_order_amount``,
    ``summary_refund_requested``); a file without its summary fails the ``summary`` check."""

    def __init__(
        self,
        path: Path,
        expected: Mapping[str, str] | None = None,
        *,
        mchid: str | None = None,
        sub_mchid: str | None = None,
    ) -> None:
        super().__init__(path, expected)
        self.mchid = mchid
        self.sub_mchid = sub_mchid

    def read(self) -> Iterator[StatementLine]:
        digest = hashlib.sha1(usedforsecurity=False)
        with self.path.open("rb") as handle:
            first = handle.readline(MAX_LINE)
            digest.update(first)
            header = first.decode("utf-8-sig", errors="replace").rstrip("\r\n")
            if tuple(_fields(header)) != COLUMNS:
                self.problem(0, header, "not a WeChat Pay trade bill (no ALL bill header)")
                return
            count, sums = 0, [0] * len(TOTALS)
            body = BillBody(self, handle, digest, SUMMARY_LINE, len(SUMMARY_COLUMNS))
            for position, text in body.detail():
                try:
                    line, amounts = self._line(text)
                except BillError as exc:
                    self.problem(position, text, str(exc))
                    continue
                count += 1
                for i, amount in enumerate(amounts):
                    sums[i] += amount
                yield line
        summary = body.summary
        self._checks(digest.hexdigest(), count, sums, summary)

    def _line(self, text: str) -> tuple[StatementLine, list[int]]:
        values = _fields(text)
        if len(values) != len(COLUMNS):
            raise BillError(f"row has {len(values)} fields, not {len(COLUMNS)}")
        row = dict(zip(COLUMNS, values, strict=True))
        if self.mchid is not None and row["商户号"] != self.mchid:
            raise BillError(f"row of merchant {row['商户号']!r}, not {self.mchid!r}")
        if self.sub_mchid is not None and row["特约商户号"] != self.sub_mchid:
            raise BillError(f"row of sub-merchant {row['特约商户号']!r}, not {self.sub_mchid!r}")
        amounts = [to_fen(values[_INDEX[column]]) for column, _, _ in TOTALS]
        to_fen(row["代金券金额"])
        state = row["交易状态"]
        refund = state == STATE_REFUND
        if refund:
            kind, amount = StatementLineKind.refund, -amounts[1]
        elif state == STATE_PAID:
            kind, amount = StatementLineKind.payment, amounts[0]
        else:
            kind, amount = StatementLineKind.other, amounts[0]
        line = StatementLine(
            kind=kind, amount=amount, currency=_currency(row["货币种类"]), fee=amounts[3],
            out_trade_no=_blank(row["商户订单号"]),
            out_refund_no=_blank(row["商户退款单号"]) if refund else None,
            channel_trade_no=_blank(row["微信订单号"]),
            channel_refund_no=_blank(row["微信退款单号"]) if refund else None,
            occurred_at=_time(row["交易时间"]), raw=row,
        )  # fmt: skip
        return line, amounts

    def _checks(self, sha1: str, count: int, sums: list[int], summary: list[str] | None) -> None:
        wanted = self.expected.get("sha1")
        if wanted:
            ok = sha1 == wanted.lower()
            self.check("sha1", ok, "" if ok else f"file SHA1 {sha1}, given {wanted.lower()}")
        if summary is None:
            self.check("summary", False, "the file has no summary line")
            return
        try:
            stated = int(summary[0])
        except ValueError:
            self.check("summary_count", False, f"总交易单数 is not a number: {summary[0]!r}")
        else:
            self.check_totals("summary_count", stated, count, "总交易单数")
        for (_, column, name), total, text in zip(TOTALS, sums, summary[1:], strict=True):
            try:
                self.check_totals(name, to_fen(text), total, column)
            except BillError as exc:
                self.check(name, False, f"{column}: {exc}")


class BillBody:
    """The lines after a WeChat bill's header line, read in bounded memory: every byte fed to
    ``digest`` (the SHA1 WeChat gives covers the whole file); a line longer than
    :data:`MAX_LINE` or not UTF-8 is a problem of ``reader``; blank lines are skipped. The
    detail lines come from :meth:`detail` as (position, text) until ``summary_line`` (the
    summary's header), whose values line is then :attr:`summary` (None when missing or not
    ``summary_width`` fields wide); text after it is a problem. Shared by the trade bill and
    the fund-flow bill, which differ only in their columns."""

    def __init__(
        self, reader: BillReader, handle: IO[bytes], digest: hashlib._Hash, summary_line: str,
        summary_width: int,
    ) -> None:  # fmt: skip
        self.reader, self.handle, self.digest = reader, handle, digest
        self.summary_line, self.summary_width = summary_line, summary_width
        self.summary: list[str] | None = None

    def detail(self) -> Iterator[tuple[int, str]]:
        handle, digest, problem = self.handle, self.digest, self.reader.problem
        phase = "detail"  # → "summary" after the summary header → "after" its values
        position = 1
        while True:
            raw = handle.readline(MAX_LINE)
            if not raw:
                return
            position += 1
            digest.update(raw)
            if not raw.endswith(b"\n") and len(raw) == MAX_LINE:
                raw += _skip_rest(handle, digest)
                problem(position, raw[:500].decode("utf-8", "replace"), "line too long")
                continue
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                problem(position, raw.decode("utf-8", "replace"), "not UTF-8")
                continue
            if not text.strip():
                continue
            if phase == "detail":
                if text == self.summary_line:
                    phase = "summary"
                    continue
                yield position, text
            elif phase == "summary":
                phase = "after"
                summary = _fields(text)
                if len(summary) == self.summary_width:
                    self.summary = summary
                else:
                    problem(position, text, "summary line is malformed")
            else:
                problem(position, text, "text after the summary")


def _skip_rest(handle: IO[bytes], digest: hashlib._Hash) -> bytes:
    """Consume (and hash) the rest of an over-long line; its first bytes for the problem."""
    head = b""
    while True:
        part = handle.readline(MAX_LINE)
        digest.update(part)
        if not head:
            head = part[:100]
        if not part or part.endswith(b"\n"):
            return head

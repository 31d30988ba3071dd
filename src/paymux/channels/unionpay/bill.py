"""UnionPay 全渠道 (ACP) bill files: the zip ``fileTransfer`` (``txnType 76``, ``fileType 00``)
answers for a settlement date, read back as a stream by :class:`UnionPayBillReader`.

Format facts, and where they come from (the ACP SDK demos' ``parseZMFile`` and the file
interface spec they cite, 《全渠道平台接入接口规范 第3部分 文件接口》; see :mod:`.protocol`):

- ``settleDate`` is MMDD, the clearing date (not the calendar day: UnionPay's day is cut at
  23:00 China time [unverified; the sandbox clears by China calendar day]).
- ``fileContent`` is base64 of the zlib stream of a zip; the zip holds
  ``INN<yyMMdd>88ZM_<merId>`` (一般交易明细, the transactions) and ``INN<yyMMdd>88ZME_<merId>``
  (差错, errors and adjustments). The adapter writes the *zip* (``fileContent`` decoded: the
  answer is one signed message, verified whole, so it cannot be streamed).
- A ZM record is one line of fixed-width GBK fields (:data:`.protocol.ZM_WIDTHS`), each
  followed by one space: ``tradeCode`` (S22 consume, S30 refund), ``txnTime`` MMddHHmmss
  (China time), ``txnAmt`` 12 digits of fen, ``queryId``, ``orderId`` (ours, underscore
  dropped: :func:`.protocol.our_id`), ``merFee`` (``D``/``C`` + 12 digits, see
  :func:`.protocol.parse_fee`), ``origQryId`` (a refund's payment). No currency field: CNY.

Integrity data: **none**. The ZM file has no header, trailer, count or total record (the SDK
reads every line as a record), and the ``fileTransfer`` answer carries no hash or count of
the file; the zip's own CRC-32 is checked by :mod:`zipfile`. So the reader records **no
check**: a bill is intact when every record reads. Σ detail cannot be compared with anything
the channel states, and the sandbox's ``corrupt_summary`` has nothing to corrupt.

ZME records are not read [their layout is not in the sources above]: each non-blank ZME line
is a problem (``position`` = its line in the ZME file), so a bill with adjustments is never
taken as intact while they are unread.

**Funds.** UnionPay publishes no separate fund-flow file: the ZM file of a settlement date is
what UnionPay clears to the merchant's bank account for that date (清算). The funds reading of
the same zip (``UnionPayBillReader(..., funds=True)``) yields the ZM records as in the trade
reading (payments and refunds: reconciliation counts them only) and, after them, one
``settlement`` line: ``amount`` = −Σ of what each record clears — its ``settleAmt`` (结算金额)
when the record carries one, else its amount net of ``merFee`` (商户手续费) — so a day whose
payments outweigh its refunds pays out (negative); ``channel_trade_no`` =
``settle:<merId>:<yyyyMMdd>`` (merchant and settlement date from the ZM file's name: the file
carries no id of the settlement itself); ``occurred_at`` the settlement date's 23:59:59 China
time. A day that clears nothing has no settlement line; a bill with a record that could not be
read (or an unread ZME record) has none either — a settlement that cannot be known is not
guessed (the reader is not intact anyway). ``settleAmt`` is read as 12–13 digits of fen with an
optional ``C`` (credited to the merchant) or ``D`` (debited) in front; without a letter it
takes the sign of the record (S30 out) [unverified: the sources give its width, not its form;
the sandbox leaves it blank]. Because the settlement is derived from the same records, a
settlement that differs from the day's records cannot appear in this format.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from paymux.channels.base import StatementLine, StatementLineKind
from paymux.channels.bills import BillReader
from paymux.channels.unionpay import protocol as p

_KINDS = {p.TRADE_CODE_CONSUME: StatementLineKind.payment,
          p.TRADE_CODE_REFUND: StatementLineKind.refund}  # fmt: skip
SETTLED_AT = dt.time(23, 59, 59)
"""The funds reading's time of a settlement: the end of its settlement date (China time)."""


def _mer_id(name: str) -> str:
    """The merchant of a ``INN<yyMMdd>88ZM_<merId>`` file."""
    return name.rsplit("ZM_", 1)[-1]


def zm_time(day: dt.date, text: str) -> dt.datetime | None:
    """``txnTime`` of a ZM record is MMddHHmmss (China time); the year is the bill day's (the
    previous year for a December record on a January bill)."""
    if len(text) != 10 or not (text.isascii() and text.isdigit()):
        return None
    try:  # by hand, not strptime: several times faster on a million records
        moment = dt.datetime(day.year, int(text[:2]), int(text[2:4]), int(text[4:6]),
                             int(text[6:8]), int(text[8:]))  # fmt: skip
    except ValueError:
        return None
    if moment.month > day.month:
        moment = moment.replace(year=day.year - 1)
    return moment.replace(tzinfo=p.CHINA)


def _our(order: str) -> str:
    """Our id behind an ``orderId``, or the ``orderId`` itself when it is not one of ours (an
    order made at UnionPay without the gateway)."""
    try:
        return p.our_id(order)
    except p.ProtocolError:
        return order


def _lines(member: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for position, raw in enumerate(member, start=1):
        line = raw.rstrip(b"\r\n")
        if line.strip():
            yield position, line


def settle_amount(record: dict[str, str], refund: bool) -> int | None:
    """What a ZM record clears, signed (into the merchant's account positive), from its
    ``settleAmt``; None when blank. ProtocolError when it is not a form this reader knows."""
    text = record.get("settleAmt", "").strip()
    if not text:
        return None
    letter = text[0] if text[0] in "CD" else ""
    digits = text[1:] if letter else text
    if not (digits.isascii() and digits.isdigit() and 12 <= len(digits) <= 13):
        raise p.ProtocolError(f"settleAmt {text!r} is malformed")
    if letter:
        return int(digits) if letter == "C" else -int(digits)
    return -int(digits) if refund else int(digits)


def settlement_id(mer_id: str, day: dt.date) -> str:
    """The funds reading's id of a settlement: the merchant and the settlement date."""
    return f"settle:{mer_id}:{day:%Y%m%d}"


class UnionPayBillReader(BillReader):
    """One pass over a ``fileTransfer`` zip: the ZM member streamed record by record (positions
    are its line numbers), then the ZME member (see the module's note). S22 is a payment, S30
    a refund (negative amount), any other ``tradeCode`` a line of kind ``other``; ``merFee``
    is the fee (``D`` charged, ``C`` returned). ``orderId`` is mapped back to our attempt or
    refund id; ``queryId`` is the channel's payment id, or the refund's own on a refund line
    (whose payment is ``origQryId``). ``funds``: the funds reading, the same lines and then
    the day's ``settlement`` (see the module)."""

    def __init__(self, path: Path, expected: Mapping[str, str] | None = None, *,
                 funds: bool = False) -> None:  # fmt: skip
        super().__init__(path, expected)
        self.funds = funds
        self._cleared = 0

    def read(self) -> Iterator[StatementLine]:
        try:
            archive = zipfile.ZipFile(self.path)
        except zipfile.BadZipFile as exc:
            self.problem(0, "", f"not a UnionPay bill zip: {exc}")
            return
        with archive:
            names = archive.namelist()
            zm = [(n, d) for n in names if (d := p.zm_file_date(n)) is not None]
            if len(zm) != 1:
                self.problem(0, ", ".join(names), "expected one INN<yyMMdd>88ZM_<merId> file")
                return
            name, day = zm[0]
            try:
                with archive.open(name) as member:
                    for position, line in _lines(member):
                        parsed = self._record(position, line, day)
                        if parsed is not None:
                            yield parsed
                for other in names:
                    if p.is_zme_file(other):
                        with archive.open(other) as member:
                            for position, line in _lines(member):
                                self.problem(position, line.decode("gbk", "replace"),
                                             f"{other}: 差错 (ZME) record not read")  # fmt: skip
            except (zipfile.BadZipFile, EOFError) as exc:  # a CRC mismatch or a cut member
                self.problem(0, name, f"the zip member cannot be read: {exc}")
                return
        if self.funds and self._cleared and not self.problem_count:
            yield StatementLine(
                kind=StatementLineKind.settlement, amount=-self._cleared, currency=p.CURRENCY,
                channel_trade_no=settlement_id(_mer_id(name), day),
                occurred_at=dt.datetime.combine(day, SETTLED_AT, tzinfo=p.CHINA),
            )  # fmt: skip

    def _record(self, position: int, line: bytes, day: dt.date) -> StatementLine | None:
        try:
            record = p.parse_zm_record(line)
            amount_text = record["txnAmt"]
            if not (amount_text.isascii() and amount_text.isdigit()):
                raise p.ProtocolError(f"txnAmt {amount_text!r} is not digits of fen")
            amount, fee = int(amount_text), p.parse_fee(record["merFee"])
        except p.ProtocolError as exc:
            self.problem(position, line.decode("gbk", "replace"), str(exc))
            return None
        occurred = zm_time(day, record["txnTime"])
        if occurred is None:
            reason = f"txnTime {record['txnTime']!r} is not MMddHHmmss"
            self.problem(position, line.decode("gbk", "replace"), reason)
            return None
        kind = _KINDS.get(record["tradeCode"], StatementLineKind.other)
        refund = kind is StatementLineKind.refund
        ours = _our(record["orderId"]) if record["orderId"] else None
        if self.funds:
            try:
                cleared = settle_amount(record, refund)
            except p.ProtocolError as exc:
                self.problem(position, line.decode("gbk", "replace"), str(exc))
                return None
            signed = -amount if refund else amount
            self._cleared += signed - fee if cleared is None else cleared
        return StatementLine(
            kind=kind, amount=-amount if refund else amount, currency=p.CURRENCY, fee=fee,
            out_trade_no=None if refund else ours, out_refund_no=ours if refund else None,
            channel_trade_no=(record["origQryId"] if refund else record["queryId"]) or None,
            channel_refund_no=(record["queryId"] or None) if refund else None,
            occurred_at=occurred, raw=record,
        )  # fmt: skip

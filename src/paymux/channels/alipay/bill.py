"""Alipay trade bill (业务账单, ``alipay.data.dataservice.bill.downloadurl.query`` with
``bill_type=trade``): the file's codec — written by the sandbox, read back as a stream by
:class:`AlipayBillReader` — and no network I/O.

The download is a zip ``{account}_{yyyyMMdd}.csv.zip`` holding ``…_业务明细.csv`` (one row per
trade and per refund) and ``…_业务明细(汇总).csv`` (totals per store), both **GBK**. Each file
opens with ``#`` lines (title, 账号, 起始/终止日期, the list marker), then a CSV header and rows,
and closes with ``#`` lines (the end marker, 交易合计/退款合计, 导出时间). Many text fields end with
a tab (so spreadsheets keep long numbers as text). A refund is a row of its own, 业务类型 ``退款``,
its amounts negative and its 退款批次号/请求号 our ``out_request_no``. Sources: the samples in
jeequan/jeepay-style reconciliation tests and dromara/dax-pay ``AlipayReconcileService`` (the
list markers, the file suffixes, GBK); the API page as quoted in smartwalle/alipay (URL valid 30 s,
``isp.bill_not_exist``). The account is the PID followed by ``0156`` as the samples show
[the suffix's meaning is unverified]. 服务费 is printed negative on a trade (charged) and
positive on a refund (returned) [unverified: the samples found all show 0.00].

Integrity data the format offers, and what :class:`AlipayBillReader` checks against the detail
it read (the download comes with no hash; the zip's own CRC-32 is checked by :mod:`zipfile`):

- the detail footer ``#交易合计：N笔，商家实收共X元，…`` and
  ``#退款合计：N笔，商家实收退款共Y元，…`` → checks ``summary_count`` / ``summary_amount``
  (trade rows, Σ 商家实收 of trades) and ``summary_refund_count`` /
  ``summary_refund_amount`` (refund rows, Σ 商家实收 of refunds);
- the 汇总 file's ``合计`` row → ``summary_order_amount`` (Σ 订单金额 of every row) and
  ``summary_fee`` (Σ 服务费). The 汇总 file lists one row per store and a ``合计`` row
  [the per-store rows are unverified; the sandbox writes only ``合计``].

A footer line or the 汇总 file that is missing makes its checks fail (the file was cut or is
not what Alipay publishes). Rows are read one physical line at a time: a 商品名称 holding a line
break (which Alipay would quote) is not supported [Alipay's handling of one is unverified].
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zipfile
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import IO

from paymux.channels.base import StatementLine, StatementLineKind
from paymux.channels.bills import BillReader

CHINA = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
METHOD_BILL = "alipay.data.dataservice.bill.downloadurl.query"
BILL_TYPE = "trade"
NOT_EXIST = "isp.bill_not_exist"
ENCODING = "gbk"
ACCOUNT_SUFFIX = "0156"
TRADE = "交易"
REFUND = "退款"

COLUMNS: tuple[str, ...] = tuple(
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,"
    "对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,"
    "商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,"
    "退款批次号/请求号,服务费（元）,分润（元）,备注".split(",")
)
#: Fields Alipay ends with a tab (as its files show).
TABBED = frozenset(
    "支付宝交易号,商户订单号,业务类型,门店编号,门店名称,操作员,终端号,对方账户,"
    "商家红包消费金额（元）,退款批次号/请求号".split(",")
)
SUMMARY_COLUMNS: tuple[str, ...] = tuple(
    "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,"
    "商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）".split(",")
)
DETAIL_TITLE = "#支付宝业务明细查询"
SUMMARY_TITLE = "#支付宝业务汇总查询"
DETAIL_START = "#" + "-" * 41 + "业务明细列表" + "-" * 40
DETAIL_END = "#" + "-" * 41 + "业务明细列表结束" + "-" * 36
SUMMARY_START = "#" + "-" * 41 + "业务汇总列表" + "-" * 40
SUMMARY_END = "#" + "-" * 40 + "业务汇总列表结束" + "-" * 37
DETAIL_SUFFIX = "_业务明细.csv"
SUMMARY_SUFFIX = "_业务明细(汇总).csv"


class BillError(ValueError):
    """A value of the bill that cannot be read."""


# ---------------------------------------------------------------- amounts
def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def to_fen(text: str) -> int:
    try:
        value = Decimal(text.strip() or "0") * 100
    except InvalidOperation:
        raise BillError(f"not an amount: {text!r}") from None
    if not value.is_finite():
        raise BillError(f"not an amount: {text!r}")
    if value != value.to_integral_value():
        raise BillError(f"amount below the fen: {text!r}")
    return int(value)


def fee_of(amount: int, bps: int) -> int:
    """The service fee on ``amount`` fen at ``bps``, rounded half up to the fen."""
    return int((Decimal(amount) * bps / 10_000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def file_stem(pid: str, day: dt.date) -> str:
    return f"{pid}{ACCOUNT_SUFFIX}_{day:%Y%m%d}"


# ---------------------------------------------------------------- writing (the sandbox)
BAD_ROW = "账单行无法读取"
"""What the sandbox writes for a ``bad_row`` tweak: one field where the detail has 25."""


def _head(title: str, pid: str, day: dt.date, marker: str) -> list[str]:
    end = day + dt.timedelta(days=1)
    return [
        title,
        f"#账号：[{pid}{ACCOUNT_SUFFIX}]",
        f"#起始日期：[{day:%Y年%m月%d日} 00:00:00]   终止日期：[{end:%Y年%m月%d日} 00:00:00]",
        marker,
    ]


def _csv_line(values: Iterable[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(list(values))
    return out.getvalue()


@dataclass
class _Totals:
    trades: int = 0
    refunds: int = 0
    trade_received: int = 0
    refund_received: int = 0
    ordered: int = 0
    fee: int = 0

    def add(self, kind: str, ordered: int, received: int, fee: int) -> None:
        if kind == TRADE:
            self.trades += 1
            self.trade_received += received
        elif kind == REFUND:
            self.refunds += 1
            self.refund_received += received
        self.ordered += ordered
        self.fee += fee


def write_zip(
    target: IO[bytes], pid: str, day: dt.date, rows: Iterable[Mapping[str, str]],
    exported_at: dt.datetime, *, summary_offset: int = 0, bad_rows: int = 0,
) -> None:  # fmt: skip
    """The zip Alipay serves for ``day`` (detail and 汇总 CSVs, GBK, CRLF) into ``target``,
    rows streamed. ``summary_offset`` is added to the summary's amount totals (交易合计
    商家实收, 汇总 订单金额/商家实收/实收净额) and ``bad_rows`` unreadable rows are written after
    the detail rows: the sandbox's ``corrupt_summary`` and ``bad_row``."""
    exported = f"#导出时间：[{exported_at.astimezone(CHINA):%Y年%m月%d日 %H:%M:%S}]"
    stem = file_stem(pid, day)
    totals = _Totals()
    # Members stamped with the export time, not the clock: the same bill is the same bytes.
    stamp = exported_at.astimezone(CHINA).timetuple()[:6]

    def entry(name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        return info

    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open(entry(stem + DETAIL_SUFFIX), "w") as member:

            def put(line: str) -> None:
                member.write((line + "\r\n").encode(ENCODING))

            for line in (*_head(DETAIL_TITLE, pid, day, DETAIL_START), ",".join(COLUMNS)):
                put(line)
            for row in rows:
                put(_csv_line(row.get(n, "") + ("\t" if n in TABBED else "") for n in COLUMNS))
                totals.add(row.get("业务类型", ""), to_fen(row.get("订单金额（元）") or "0"),
                           to_fen(row.get("商家实收（元）") or "0"),
                           to_fen(row.get("服务费（元）") or "0"))  # fmt: skip
            for _ in range(bad_rows):
                put(BAD_ROW)
            put(DETAIL_END)
            put(f"#交易合计：{totals.trades}笔，商家实收共"
                f"{yuan(totals.trade_received + summary_offset)}元，商家优惠共0.00元")  # fmt: skip
            put(f"#退款合计：{totals.refunds}笔，商家实收退款共{yuan(totals.refund_received)}元，"
                "商家优惠退款共0.00元")  # fmt: skip
            put(exported)
        received = totals.trade_received + totals.refund_received + summary_offset
        sums = (
            "合计", "", str(totals.trades), str(totals.refunds),
            yuan(totals.ordered + summary_offset), yuan(received), "0.00", "0.00", "0.00",
            yuan(totals.fee), "0.00", yuan(received + totals.fee),
        )  # fmt: skip
        summary = [*_head(SUMMARY_TITLE, pid, day, SUMMARY_START), ",".join(SUMMARY_COLUMNS),
                   _csv_line(sums), SUMMARY_END, exported]  # fmt: skip
        archive.writestr(
            entry(stem + SUMMARY_SUFFIX), ("\r\n".join(summary) + "\r\n").encode(ENCODING)
        )


def render_zip(
    pid: str, day: dt.date, rows: Iterable[Mapping[str, str]], exported_at: dt.datetime,
    *, summary_offset: int = 0, bad_rows: int = 0,
) -> bytes:  # fmt: skip
    """:func:`write_zip` as bytes."""
    buffer = io.BytesIO()
    write_zip(buffer, pid, day, rows, exported_at, summary_offset=summary_offset,
              bad_rows=bad_rows)  # fmt: skip
    return buffer.getvalue()


# ---------------------------------------------------------------- reading (the adapter)
_TRADE_TOTAL = re.compile(r"^#交易合计：(\d+)笔，商家实收共(-?\d+(?:\.\d+)?)元")
_REFUND_TOTAL = re.compile(r"^#退款合计：(\d+)笔，商家实收退款共(-?\d+(?:\.\d+)?)元")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
_KINDS = {TRADE: StatementLineKind.payment, REFUND: StatementLineKind.refund}


def _time(text: str) -> dt.datetime | None:
    """``yyyy-MM-dd HH:mm:ss`` (China time): the shape pinned, then ``fromisoformat`` (several
    times faster than ``strptime`` on a million rows)."""
    if not _TIME.fullmatch(text):
        return None
    try:
        return dt.datetime.fromisoformat(text).replace(tzinfo=CHINA)
    except ValueError:
        return None


@dataclass
class _Footer:
    trades: tuple[int, int] | None = None
    refunds: tuple[int, int] | None = None
    ended: bool = False


class DetailMember:
    """The detail member of an Alipay bill zip (业务明细 or 账务明细), read line by line (GBK):
    the title line, ``#`` comment lines until the ``listing`` header (``#…业务明细列表…``), its
    column line (must be ``columns``), then :meth:`rows` — the data lines as (position, text)
    until ``listing`` + 结束 — and :attr:`footer`, the few lines after it. A file that is not
    of this kind is one problem at 0 of ``reader``, and :attr:`known` is False."""

    def __init__(
        self, reader: BillReader, archive: zipfile.ZipFile, name: str, *, title: str,
        listing: str, columns: tuple[str, ...], what: str,
    ) -> None:  # fmt: skip
        self.reader, self.archive, self.name = reader, archive, name
        self.title, self.listing, self.columns, self.what = title, listing, columns, what
        self.known = True
        self.ended = False
        """The listing's end line was there (a cut file has none)."""
        self.footer: list[str] = []

    def rows(self) -> Iterator[tuple[int, str]]:
        kind = self.title.lstrip("#").removeprefix("支付宝").removesuffix("查询")
        with self.archive.open(self.name) as raw:
            text = io.TextIOWrapper(raw, encoding=ENCODING, errors="replace", newline="")
            state = "head"
            for position, physical in enumerate(text, start=1):
                line = physical.rstrip("\r\n")
                if state == "head":
                    if position == 1 and line.lstrip("\ufeff").strip() != self.title:
                        self.reader.problem(0, line, f"not an Alipay {kind} file (no title line)")
                        self.known = False
                        return
                    if line.startswith("#") and self.listing in line:
                        state = "columns"
                elif state == "columns":
                    if tuple(f.strip() for f in next(csv.reader([line]), [])) != self.columns:
                        self.reader.problem(0, line, f"detail header is not {self.what}")
                        self.known = False
                        return
                    state = "rows"
                elif state == "rows":
                    if line.startswith("#") and f"{self.listing}结束" in line:
                        state, self.ended = "footer", True
                    else:
                        yield position, line
                else:
                    self.footer.append(line)
            if state in ("head", "columns"):
                self.reader.problem(0, "", f"no {self.listing} in the file")
                self.known = False


class AlipayBillReader(BillReader):
    """One pass over a trade-bill zip as downloaded: the ``_业务明细.csv`` member streamed line
    by line (GBK), then the small ``_业务明细(汇总).csv`` member for its totals.

    A line is: 订单金额 the signed amount (refunds negative), the fee minus 服务费 (charged on a
    trade, returned on a refund), 商户订单号 our attempt id, 退款批次号/请求号 our refund id on a
    退款 row, 支付宝交易号 the channel's id of the trade; a 业务类型 other than 交易/退款 is a
    line of kind ``other``. Positions are line numbers in the detail member."""

    def read(self) -> Iterator[StatementLine]:
        try:
            archive = zipfile.ZipFile(self.path)
        except zipfile.BadZipFile as exc:
            self.problem(0, "", f"not an Alipay bill zip: {exc}")
            return
        with archive:
            names = archive.namelist()
            detail = [n for n in names if n.endswith(DETAIL_SUFFIX)]
            if len(detail) != 1:
                self.problem(0, ", ".join(names), f"expected one …{DETAIL_SUFFIX} in the zip")
                return
            totals = _Totals()
            footer = _Footer()
            try:
                known = yield from self._detail(archive, detail[0], totals, footer)
            except (zipfile.BadZipFile, EOFError) as exc:  # a CRC mismatch or a cut member
                self.problem(0, detail[0], f"the zip member cannot be read: {exc}")
                return
            if not known:
                return
            self._check_footer(totals, footer)
            self._check_summary(archive, [n for n in names if n.endswith(SUMMARY_SUFFIX)], totals)

    def _detail(
        self, archive: zipfile.ZipFile, name: str, totals: _Totals, footer: _Footer
    ) -> Generator[StatementLine, None, bool]:
        """The detail's lines; False (after one problem at 0) when it is not a 业务明细."""
        member = DetailMember(self, archive, name, title=DETAIL_TITLE, listing="业务明细列表",
                              columns=COLUMNS, what="the trade bill's 25 columns")  # fmt: skip
        for position, line in member.rows():
            parsed = self._row(position, line, totals)
            if parsed is not None:
                yield parsed
        footer.ended = member.ended
        for line in member.footer:
            if match := _TRADE_TOTAL.match(line):
                footer.trades = (int(match[1]), to_fen(match[2]))
            elif match := _REFUND_TOTAL.match(line):
                footer.refunds = (int(match[1]), to_fen(match[2]))
        return member.known

    def _row(self, position: int, line: str, totals: _Totals) -> StatementLine | None:
        if not line.strip():
            return None
        if "\ufffd" in line:
            self.problem(position, line, "not GBK text")
            return None
        record = next(csv.reader([line]), [])
        if len(record) != len(COLUMNS):
            self.problem(position, line, f"{len(record)} fields, not {len(COLUMNS)}")
            return None
        row = {n: v.strip() for n, v in zip(COLUMNS, record, strict=True)}
        try:
            ordered, received = to_fen(row["订单金额（元）"]), to_fen(row["商家实收（元）"])
            service = to_fen(row["服务费（元）"])
        except BillError as exc:
            self.problem(position, line, str(exc))
            return None
        occurred = _time(row["完成时间"])
        if occurred is None:
            self.problem(position, line, f"完成时间 {row['完成时间']!r} is not a time")
            return None
        kind = _KINDS.get(row["业务类型"], StatementLineKind.other)
        totals.add(row["业务类型"], ordered, received, service)
        refund = kind is StatementLineKind.refund
        return StatementLine(
            kind=kind, amount=ordered, currency="CNY", fee=-service,
            out_trade_no=row["商户订单号"] or None,
            out_refund_no=(row["退款批次号/请求号"] or None) if refund else None,
            channel_trade_no=row["支付宝交易号"] or None, occurred_at=occurred, raw=row,
        )  # fmt: skip

    def _check_footer(self, totals: _Totals, footer: _Footer) -> None:
        for kind, found, count, amount in (
            ("", footer.trades, totals.trades, totals.trade_received),
            ("refund_", footer.refunds, totals.refunds, totals.refund_received),
        ):
            line = "#交易合计" if not kind else "#退款合计"
            if found is None:
                self.check(f"summary_{kind}count", False, f"no {line} line")
                self.check(f"summary_{kind}amount", False, f"no {line} line")
                continue
            self.check_totals(f"summary_{kind}count", found[0], count, f"{line} rows")
            self.check_totals(f"summary_{kind}amount", found[1], amount, f"{line} 商家实收 (fen)")

    def _check_summary(self, archive: zipfile.ZipFile, names: list[str], totals: _Totals) -> None:
        sums = self._summary_row(archive, names[0]) if len(names) == 1 else None
        if sums is None:
            why = f"no 合计 row in a …{SUMMARY_SUFFIX} member"
            self.check("summary_order_amount", False, why)
            self.check("summary_fee", False, why)
            return
        self.check_totals("summary_order_amount", sums[0], totals.ordered, "汇总 订单金额 (fen)")
        self.check_totals("summary_fee", sums[1], totals.fee, "汇总 服务费 (fen)")

    @staticmethod
    def _summary_row(archive: zipfile.ZipFile, name: str) -> tuple[int, int] | None:
        """订单金额 and 服务费 of the 汇总 file's ``合计`` row (the file is a few lines)."""
        ordered = SUMMARY_COLUMNS.index("订单金额（元）")
        fee = SUMMARY_COLUMNS.index("服务费（元）")
        try:
            with archive.open(name) as raw:
                text = io.TextIOWrapper(raw, encoding=ENCODING, errors="replace", newline="")
                for line in text:
                    record = [f.strip() for f in next(csv.reader([line.rstrip("\r\n")]), [])]
                    if len(record) == len(SUMMARY_COLUMNS) and record[0] == "合计":
                        return to_fen(record[ordered]), to_fen(record[fee])
        except (BillError, zipfile.BadZipFile, EOFError):
            return None
        return None

"""Alipay trade bill (业务账单, ``alipay.data.dataservice.bill.downloadurl.query`` with
``bill_type=trade``): the file's codec, no I/O.

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
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from paymux.channels.base import StatementLine, StatementLineKind

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
    """The download is not an Alipay trade bill we can read."""


# ---------------------------------------------------------------- amounts
def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def to_fen(text: str) -> int:
    try:
        value = Decimal(text.strip() or "0") * 100
    except InvalidOperation:
        raise BillError(f"not an amount: {text!r}") from None
    if value != value.to_integral_value():
        raise BillError(f"amount below the fen: {text!r}")
    return int(value)


def fee_of(amount: int, bps: int) -> int:
    """The service fee on ``amount`` fen at ``bps``, rounded half up to the fen."""
    return int((Decimal(amount) * bps / 10_000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def file_stem(pid: str, day: dt.date) -> str:
    return f"{pid}{ACCOUNT_SUFFIX}_{day:%Y%m%d}"


# ---------------------------------------------------------------- writing (the sandbox)
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


def render_zip(
    pid: str, day: dt.date, rows: Sequence[Mapping[str, str]], exported_at: dt.datetime
) -> bytes:
    """The zip Alipay serves for ``day``: detail and summary CSVs, GBK, CRLF."""
    exported = f"#导出时间：[{exported_at.astimezone(CHINA):%Y年%m月%d日 %H:%M:%S}]"
    trades = [r for r in rows if r["业务类型"] == TRADE]
    refunds = [r for r in rows if r["业务类型"] == REFUND]

    def total(of: Sequence[Mapping[str, str]], name: str) -> int:
        return sum(to_fen(r.get(name) or "0") for r in of)

    detail = [*_head(DETAIL_TITLE, pid, day, DETAIL_START), ",".join(COLUMNS)]
    detail += [
        _csv_line(r.get(n, "") + ("\t" if n in TABBED else "") for n in COLUMNS) for r in rows
    ]
    detail += [
        DETAIL_END,
        f"#交易合计：{len(trades)}笔，商家实收共{yuan(total(trades, '商家实收（元）'))}元，"
        "商家优惠共0.00元",
        f"#退款合计：{len(refunds)}笔，商家实收退款共{yuan(total(refunds, '商家实收（元）'))}元，"
        "商家优惠退款共0.00元",
        exported,
    ]
    fee, received = total(rows, "服务费（元）"), total(rows, "商家实收（元）")
    sums = (
        "合计", "", str(len(trades)), str(len(refunds)), yuan(total(rows, "订单金额（元）")),
        yuan(received), "0.00", "0.00", "0.00", yuan(fee), "0.00", yuan(received + fee),
    )  # fmt: skip
    summary = [*_head(SUMMARY_TITLE, pid, day, SUMMARY_START), ",".join(SUMMARY_COLUMNS)]
    summary += [_csv_line(sums), SUMMARY_END, exported]
    stem = file_stem(pid, day)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, lines in ((stem + DETAIL_SUFFIX, detail), (stem + SUMMARY_SUFFIX, summary)):
            archive.writestr(name, ("\r\n".join(lines) + "\r\n").encode(ENCODING))
    return buffer.getvalue()


# ---------------------------------------------------------------- reading (the adapter)
@dataclass(frozen=True)
class BillFile:
    rows: tuple[dict[str, str], ...]
    trade_count: int
    refund_count: int


def parse_zip(data: bytes) -> BillFile:
    """Read the detail CSV of a trade-bill zip (fields stripped of their tabs)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = [n for n in archive.namelist() if n.endswith(DETAIL_SUFFIX)]
        if len(names) != 1:
            raise BillError(f"expected one {DETAIL_SUFFIX} file, got {archive.namelist()}")
        text = archive.read(names[0]).decode(ENCODING)
    except (zipfile.BadZipFile, UnicodeDecodeError, KeyError) as exc:
        raise BillError(f"not a trade-bill zip: {exc}") from None
    return parse_detail(text)


def parse_detail(text: str) -> BillFile:
    lines = text.splitlines()
    if not lines or lines[0].strip() != DETAIL_TITLE:
        raise BillError("not a 业务明细 file")
    try:
        start, end = lines.index(DETAIL_START), lines.index(DETAIL_END)
    except ValueError:
        raise BillError("detail list markers missing") from None
    records = list(csv.reader(lines[start + 1 : end]))
    if not records or tuple(f.strip() for f in records[0]) != COLUMNS:
        raise BillError("detail header is not the trade bill's 25 columns")
    rows = []
    for record in records[1:]:
        if len(record) != len(COLUMNS):
            raise BillError(f"row has {len(record)} fields, not {len(COLUMNS)}")
        rows.append({n: v.strip() for n, v in zip(COLUMNS, record, strict=True)})
    trades = sum(1 for r in rows if r["业务类型"] == TRADE)
    refunds = sum(1 for r in rows if r["业务类型"] == REFUND)
    footer = "\n".join(lines[end + 1 :])
    if f"#交易合计：{trades}笔" not in footer or f"#退款合计：{refunds}笔" not in footer:
        raise BillError("detail totals do not match the rows")
    return BillFile(tuple(rows), trades, refunds)


def _time(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=CHINA)
    except ValueError:
        return None


def statement_lines(rows: Sequence[Mapping[str, str]]) -> list[StatementLine]:
    """Detail rows → normalised lines: 订单金额 is the signed amount (refunds negative) and the
    fee is minus 服务费 (charged on a trade, returned on a refund)."""
    lines = []
    for row in rows:
        kind = {TRADE: StatementLineKind.payment, REFUND: StatementLineKind.refund}.get(
            row["业务类型"], StatementLineKind.other
        )
        refund = kind is StatementLineKind.refund
        lines.append(StatementLine(
            kind=kind, amount=to_fen(row["订单金额（元）"]), currency="CNY",
            fee=-to_fen(row["服务费（元）"]), out_trade_no=row["商户订单号"] or None,
            out_refund_no=(row["退款批次号/请求号"] or None) if refund else None,
            channel_trade_no=row["支付宝交易号"] or None,
            occurred_at=_time(row["完成时间"]), raw=dict(row),
        ))  # fmt: skip
    return lines

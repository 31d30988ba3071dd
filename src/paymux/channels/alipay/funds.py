"""Alipay fund-flow bill (账务明细, ``alipay.data.dataservice.bill.downloadurl.query`` with
``bill_type=signcustomer``): the file's codec — written by the sandbox, read back as a stream by
:class:`AccountBillReader` — and no network I/O. The trade bill's codec is :mod:`.bill`.

Format facts relied on (sources: the 账务明细 sample quoted in rongyifu ``CheckDataAliPayImp``
(2012, the 12 columns and the footer), the signcustomer fixtures of several reconciliation
projects (the ``#`` head and foot lines, GBK, the account ``{PID}0156``); the API page as quoted
in smartwalle/alipay for the download itself, which is the trade bill's):

- The download is a zip (``{PID}0156_{yyyyMMdd}.csv.zip``) holding ``…_账务明细.csv``, GBK,
  CRLF: ``#支付宝账务明细查询``, ``#账号：[…]``, ``#起始日期：[…]   终止日期：[…]``, the list
  marker, the header of :data:`COLUMNS`, one row per movement of the balance, the end marker,
  ``#支出合计：N笔，共X元``, ``#收入合计：N笔，共Y元`` and ``#导出时间：[…]``. Id and text fields
  end with a tab (:data:`TABBED`). [unverified: the zip's ``…_账务明细(汇总).csv`` member; the
  sandbox writes none and the reader needs none, the footer carrying both totals.]
- 收入金额（+元） / 支出金额（-元）: one of them is the row's amount, the other ``0.00``; the
  expense is printed negative (``-30.00``) [unverified: the 2012 sample shows only incomes; the
  reader takes its absolute value, and so for the 支出合计]. 账户余额（元） is the balance after
  the row. 发生时间 is China time ``yyyy-MM-dd HH:mm:ss``.
- 业务类型: ``在线支付`` (newer files ``交易``: a payment), ``交易退款``, ``转账`` (a payout:
  商户订单号 our ``out_biz_no``, 业务流水号 Alipay's transfer ``order_id``), ``提现`` (the balance
  paid to the merchant's bank: a settlement, 业务流水号 its number), ``收费`` (the service fee
  of a trade, a row of its own: charged 支出, returned with a refund 收入). Anything else is a
  line of kind ``other``. [unverified: that a payout's 商户订单号 is the out_biz_no and its
  业务流水号 the order_id; that the 账务明细 names a refund's out_request_no anywhere — the reader
  gives a refund line the order's 商户订单号 and 业务流水号 only.]
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zipfile
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO

from paymux.channels.alipay.bill import (
    CHINA,
    ENCODING,
    BillError,
    DetailMember,
    _csv_line,
    _head,
    _time,
    file_stem,
    to_fen,
    yuan,
)
from paymux.channels.base import StatementLine, StatementLineKind
from paymux.channels.bills import BillReader

BILL_TYPE = "signcustomer"
COLUMNS: tuple[str, ...] = tuple(
    "账务流水号,业务流水号,商户订单号,商品名称,发生时间,对方账号,收入金额（+元）,支出金额（-元）,"
    "账户余额（元）,交易渠道,业务类型,备注".split(",")
)
TABBED = frozenset("账务流水号,业务流水号,商户订单号,商品名称,对方账号".split(","))
TITLE = "#支付宝账务明细查询"
START = "#" + "-" * 41 + "账务明细列表" + "-" * 40
END = "#" + "-" * 40 + "账务明细列表结束" + "-" * 37
SUFFIX = "_账务明细.csv"
PAYMENT = "在线支付"
REFUND = "交易退款"
PAYOUT = "转账"
SETTLEMENT = "提现"
FEE = "收费"
KINDS: dict[str, StatementLineKind] = {
    PAYMENT: StatementLineKind.payment,
    "交易": StatementLineKind.payment,
    REFUND: StatementLineKind.refund,
    PAYOUT: StatementLineKind.payout,
    SETTLEMENT: StatementLineKind.settlement,
    FEE: StatementLineKind.fee,
    "服务费": StatementLineKind.fee,
}
"""业务类型 → line kind (anything else: ``other``)."""
BAD_ROW = "账务明细行无法读取"
"""What the sandbox writes for a ``bad_row`` tweak: one field where the detail has 12."""


# ---------------------------------------------------------------- writing (the sandbox)
@dataclass
class _Totals:
    incomes: int = 0
    income: int = 0
    expenses: int = 0
    expense: int = 0
    chain: list[str] = field(default_factory=list)

    def add(self, income: int, expense: int) -> None:
        if income:
            self.incomes += 1
            self.income += income
        if expense:
            self.expenses += 1
            self.expense += expense


def write_zip(
    target: IO[bytes], pid: str, day: dt.date, rows: Iterable[Mapping[str, str]],
    exported_at: dt.datetime, *, summary_offset: int = 0, bad_rows: int = 0,
) -> None:  # fmt: skip
    """The 账务明细 zip of ``day`` into ``target``, rows (dicts keyed by :data:`COLUMNS`, amounts
    as :func:`yuan` text, the expense negative) streamed. ``summary_offset`` is added to the
    收入合计 amount and ``bad_rows`` unreadable rows follow the detail rows: the sandbox's
    ``corrupt_summary`` and ``bad_row``."""
    stamp = exported_at.astimezone(CHINA)
    info = zipfile.ZipInfo(file_stem(pid, day) + SUFFIX, date_time=stamp.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    totals = _Totals()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open(info, "w") as member:

            def put(line: str) -> None:
                member.write((line + "\r\n").encode(ENCODING))

            for line in (*_head(TITLE, pid, day, START), ",".join(COLUMNS)):
                put(line)
            for row in rows:
                put(_csv_line(row.get(n, "") + ("\t" if n in TABBED else "") for n in COLUMNS))
                totals.add(to_fen(row.get("收入金额（+元）") or "0"),
                           abs(to_fen(row.get("支出金额（-元）") or "0")))  # fmt: skip
            for _ in range(bad_rows):
                put(BAD_ROW)
            put(END)
            put(f"#支出合计：{totals.expenses}笔，共{yuan(-totals.expense)}元")
            put(f"#收入合计：{totals.incomes}笔，共{yuan(totals.income + summary_offset)}元")
            put(f"#导出时间：[{stamp:%Y年%m月%d日 %H:%M:%S}]")


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
_TOTAL = re.compile(r"^#(支出|收入)合计：(\d+)笔，共(-?\d+(?:\.\d+)?)元")


class AccountBillReader(BillReader):
    """One pass over a 账务明细 zip as downloaded, its ``…_账务明细.csv`` member streamed line by
    line (GBK).

    A row is one :class:`StatementLine` of the kind its 业务类型 says (:data:`KINDS`): ``amount``
    收入 minus |支出| (a fee row is a line of kind ``fee`` of its own, so a payment's ``fee`` is
    0), ``balance`` its 账户余额, 商户订单号 ``out_trade_no`` (our payout id on a 转账 row),
    业务流水号 ``channel_trade_no``. A row that cannot be read is a problem. Checks once read:
    the footer (``summary_income_count``, ``summary_income``, ``summary_expense_count``,
    ``summary_expense``; a missing line fails its two) and ``balance_chain`` (each row's 账户余额
    is the one before plus its amount). Positions are line numbers in the member."""

    def read(self) -> Iterator[StatementLine]:
        try:
            archive = zipfile.ZipFile(self.path)
        except zipfile.BadZipFile as exc:
            self.problem(0, "", f"not an Alipay bill zip: {exc}")
            return
        with archive:
            names = archive.namelist()
            detail = [n for n in names if n.endswith(SUFFIX)]
            if len(detail) != 1:
                self.problem(0, ", ".join(names), f"expected one …{SUFFIX} in the zip")
                return
            totals = _Totals()
            footer: dict[str, tuple[int, int]] = {}
            try:
                known = yield from self._detail(archive, detail[0], totals, footer)
            except (zipfile.BadZipFile, EOFError) as exc:
                self.problem(0, detail[0], f"the zip member cannot be read: {exc}")
                return
            if known:
                self._checks(totals, footer)

    def _detail(
        self, archive: zipfile.ZipFile, name: str, totals: _Totals,
        footer: dict[str, tuple[int, int]],
    ) -> Generator[StatementLine, None, bool]:  # fmt: skip
        member = DetailMember(self, archive, name, title=TITLE, listing="账务明细列表",
                              columns=COLUMNS, what="the 账务明细's 12 columns")  # fmt: skip
        previous: int | None = None
        for position, line in member.rows():
            parsed = self._row(position, line)
            if parsed is None:
                continue
            signed, balance = parsed.amount, parsed.balance
            assert balance is not None
            totals.add(max(signed, 0), max(-signed, 0))
            if previous is not None and previous + signed != balance and not totals.chain:
                totals.chain.append(f"line {position}: 账户余额 {yuan(balance)}, "
                                    f"expected {yuan(previous + signed)}")  # fmt: skip
            previous = balance
            yield parsed
        for line in member.footer:
            if match := _TOTAL.match(line):
                footer[match[1]] = (int(match[2]), abs(to_fen(match[3])))
        return member.known

    def _row(self, position: int, line: str) -> StatementLine | None:
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
            income = to_fen(row["收入金额（+元）"])
            expense = abs(to_fen(row["支出金额（-元）"]))
            balance = to_fen(row["账户余额（元）"])
            if income < 0:
                raise BillError(f"收入金额 is negative: {row['收入金额（+元）']!r}")
        except BillError as exc:
            self.problem(position, line, str(exc))
            return None
        occurred = _time(row["发生时间"])
        if occurred is None:
            self.problem(position, line, f"发生时间 {row['发生时间']!r} is not a time")
            return None
        kind = KINDS.get(row["业务类型"], StatementLineKind.other)
        return StatementLine(
            kind=kind, amount=income - expense, currency="CNY",
            out_trade_no=row["商户订单号"] or None, channel_trade_no=row["业务流水号"] or None,
            occurred_at=occurred, balance=balance, raw=row,
        )  # fmt: skip

    def _checks(self, totals: _Totals, footer: dict[str, tuple[int, int]]) -> None:
        for side, name, count, amount in (
            ("收入", "income", totals.incomes, totals.income),
            ("支出", "expense", totals.expenses, totals.expense),
        ):
            found = footer.get(side)
            if found is None:
                self.check(f"summary_{name}_count", False, f"no #{side}合计 line")
                self.check(f"summary_{name}", False, f"no #{side}合计 line")
                continue
            self.check_totals(f"summary_{name}_count", found[0], count, f"#{side}合计 rows")
            self.check_totals(f"summary_{name}", found[1], amount, f"#{side}合计 (fen)")
        self.check("balance_chain", not totals.chain, "; ".join(totals.chain))

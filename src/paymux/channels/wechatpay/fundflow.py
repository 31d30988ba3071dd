"""WeChat Pay fund-flow bill (资金账单, ``GET /v3/bill/fundflowbill``): the file's codec, no I/O
but the file it reads. The trade bill's codec is :mod:`.bill`; this one shares its amounts,
times, backtick cells and SHA1.

Format facts relied on (sources: the v2 "下载资金账单" page's sample as quoted in the docs of
uniCloud ``uni-pay`` and in WxJava ``WxPayServiceImpl.downloadFundFlow``, the v3 test fixture of
go-pay ``DownloadFundOriginalFlowBill``, the node ``wxpay`` README's sample of a 交易 line):

- UTF-8 text, one record per line: the header of the 11 column names (:data:`COLUMNS`), one
  line per movement of the account's balance with every field prefixed by a backtick, then the
  summary header (:data:`SUMMARY_COLUMNS`) and one backticked summary line.
- 收支类型 is ``收入`` or ``支出``; 收支金额（元） is the amount moved, unsigned, yuan;
  账户结余（元） the balance after the line. 记账时间 is China time ``YYYY-MM-DD HH:MM:SS``.
- 微信支付业务单号 is WeChat's number of the business the line is about (the transaction_id of
  a 交易, the refund_id of a 退款, the transfer's number of a payout); 资金流水单号 the
  movement's own number; 业务凭证号 the merchant's number of it (out_trade_no of a 交易 — the
  node sample's ``1618148094082_GT``; out_refund_no of a 退款 — go-pay's ``S2021…``; the
  ``out_bill_no`` of a payout, which the reader turns back into our payout id with
  :func:`~paymux.channels.wechatpay.vocabulary.payout_id_of`).
  [unverified: 业务凭证号 of a payout being its out_bill_no.]
- 业务名称 / 业务类型: ``交易``/``交易`` (a payment), ``退款``/``退款``, ``商家转账`` or the older
  ``企业付款`` (a payout), ``提现`` (the balance paid out to the merchant's bank: a settlement);
  anything else is a line of kind ``other`` (``扣除交易手续费`` is kind ``fee``).
- **Fees**: a 交易 line is booked net, its 备注 ``结算总金额 X 元;含手续费 Y 元`` (a 退款 line:
  ``退款总金额 X元;含手续费 Y元``, the share of the fee it returns). The reader takes Y as the
  line's fee and 收支金额 as what moved (so ``amount`` = 收支金额 + Y, ``net`` = 收支金额).
  [unverified: the samples found all have Y = 0.00; whether 收支金额 is X or X − Y when Y is
  not zero. Merchants whose fee is charged to a 手续费账户 (account_type FEES) see it there,
  not in BASIC; a separate ``扣除交易手续费`` line is read as kind ``fee``.]
- The summary: 资金流水总笔数 (detail lines), 收入笔数 / 收入金额, 支出笔数 / 支出金额. Counts
  may be printed ``20.0`` (the v2 sample) or ``3`` (the v3 one); both are read.
- ``hash_value`` (SHA1) is of the uncompressed file, as for the trade bill.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO

from paymux.channels.base import StatementLine, StatementLineKind
from paymux.channels.bills import BillReader
from paymux.channels.wechatpay.bill import (
    CHINA,
    MAX_LINE,
    BillBody,
    BillError,
    to_fen,
    yuan,
)
from paymux.channels.wechatpay.vocabulary import payout_id_of

BILL_PATH = "/v3/bill/fundflowbill"
ACCOUNT_TYPE = "BASIC"
COLUMNS: tuple[str, ...] = tuple(
    "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额（元）,账户结余（元）,"
    "资金变更提交申请人,备注,业务凭证号".split(",")
)
SUMMARY_COLUMNS: tuple[str, ...] = tuple(
    "资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额".split(",")
)
HEADER_LINE = ",".join(COLUMNS)
SUMMARY_LINE = ",".join(SUMMARY_COLUMNS)
INCOME = "收入"
EXPENSE = "支出"
TRADE = "交易"
REFUND = "退款"
PAYOUT = "商家转账"
SETTLEMENT = "提现"
FEE = "扣除交易手续费"
KINDS: dict[str, StatementLineKind] = {
    TRADE: StatementLineKind.payment,
    REFUND: StatementLineKind.refund,
    PAYOUT: StatementLineKind.payout,
    "企业付款": StatementLineKind.payout,
    SETTLEMENT: StatementLineKind.settlement,
    "自动提现": StatementLineKind.settlement,
    FEE: StatementLineKind.fee,
}
"""业务类型 → line kind (anything else: ``other``)."""
_FEE_NOTE = re.compile(r"含手续费\s*(-?[0-9]+(?:\.[0-9]+)?)\s*元")
_COUNT = re.compile(r"([0-9]+)(?:\.0+)?")
_INDEX = {name: i for i, name in enumerate(COLUMNS)}


def note_of(kind: str, total: int, fee: int) -> str:
    """备注 of a 交易 / 退款 line as WeChat writes it (``total`` is 收支金额)."""
    if kind == REFUND:
        return f"退款总金额{yuan(total)}元;含手续费{yuan(fee)}元"
    return f"结算总金额 {yuan(total)} 元;含手续费 {yuan(fee)} 元"


# ---------------------------------------------------------------- writing (the sandbox)
def write_fundflow(
    rows: Iterable[Mapping[str, str]],
    out: IO[bytes],
    *,
    summary_offset: int = 0,
    unreadable: Sequence[str] = (),
) -> None:
    """Write the BASIC fund-flow bill (UTF-8, CRLF) of ``rows`` (dicts keyed by
    :data:`COLUMNS`) into ``out`` with the summary WeChat computes from them.
    ``summary_offset`` is added to 收入金额 and the ``unreadable`` lines are written verbatim
    after the detail (neither counted): the sandbox's scripted discrepancies."""
    counts = {INCOME: 0, EXPENSE: 0}
    sums = {INCOME: 0, EXPENSE: 0}
    chunk = [HEADER_LINE]
    for row in rows:
        values = [row.get(name, "") for name in COLUMNS]
        side = row.get("收支类型", "")
        if side in counts:
            counts[side] += 1
            sums[side] += to_fen(row.get("收支金额（元）", ""))
        chunk.append("`" + ",`".join(values))
        if len(chunk) >= 256:
            out.write(("\r\n".join(chunk) + "\r\n").encode("utf-8"))
            chunk = []
    chunk.extend(unreadable)
    summary = [str(counts[INCOME] + counts[EXPENSE]), str(counts[INCOME]),
               yuan(sums[INCOME] + summary_offset), str(counts[EXPENSE]),
               yuan(sums[EXPENSE])]  # fmt: skip
    chunk += [SUMMARY_LINE, "`" + ",`".join(summary)]
    out.write(("\r\n".join(chunk) + "\r\n").encode("utf-8"))


# ---------------------------------------------------------------- reading
def _fields(line: str) -> list[str]:
    return [field.removeprefix("`") for field in line.split(",")]


def _count(text: str) -> int:
    match = _COUNT.fullmatch(text)
    if match is None:
        raise BillError(f"not a count: {text!r}")
    return int(match[1])


def _time(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BillError(f"记账时间 is not a time: {text!r}") from None
    if len(text) != 19 or moment.tzinfo is not None:
        raise BillError(f"记账时间 is not YYYY-MM-DD HH:MM:SS: {text!r}")
    return moment.replace(tzinfo=CHINA)


class FundFlowBillReader(BillReader):
    """One pass over a BASIC fund-flow bill file (uncompressed), in bounded memory.

    Each detail line is one :class:`StatementLine` of the kind its 业务类型 says
    (:data:`KINDS`), ``amount`` signed by 收支类型 (a 交易 or 退款 with the fee its 备注 names:
    see the module's docstring), ``balance`` its 账户结余. 业务凭证号 is our number (the order's
    of a payment, the refund's of a refund, the payout id of a payout's ``out_bill_no``),
    微信支付业务单号 the channel's. A line that cannot be read (field count, amount, time,
    收支类型) is a problem and counts in no total. Checks once read: ``sha1`` when ``expected``
    gives one; the summary (``summary_count``, ``summary_income_count``, ``summary_income``,
    ``summary_expense_count``, ``summary_expense``; a file without it fails ``summary``); and
    ``balance_chain``: each line's 账户结余 is the one before plus its signed 收支金额."""

    def read(self) -> Iterator[StatementLine]:
        digest = hashlib.sha1(usedforsecurity=False)
        with self.path.open("rb") as handle:
            first = handle.readline(MAX_LINE)
            digest.update(first)
            header = first.decode("utf-8-sig", errors="replace").rstrip("\r\n")
            names = tuple(n.replace("(", "（").replace(")", "）") for n in _fields(header))
            if names != COLUMNS:
                self.problem(0, header, "not a WeChat Pay fund-flow bill (no 资金账单 header)")
                return
            counts = {INCOME: 0, EXPENSE: 0}
            sums = {INCOME: 0, EXPENSE: 0}
            chain: list[str] = []
            previous: int | None = None
            body = BillBody(self, handle, digest, SUMMARY_LINE, len(SUMMARY_COLUMNS))
            for position, text in body.detail():
                try:
                    line, side, moved = self._line(text)
                except BillError as exc:
                    self.problem(position, text, str(exc))
                    continue
                counts[side] += 1
                sums[side] += moved
                signed = moved if side == INCOME else -moved
                assert line.balance is not None
                if previous is not None and previous + signed != line.balance and not chain:
                    chain.append(f"line {position}: 账户结余 {yuan(line.balance)}, expected "
                                 f"{yuan(previous + signed)}")  # fmt: skip
                previous = line.balance
                yield line
        summary = body.summary
        self._checks(digest.hexdigest(), counts, sums, summary, chain)

    def _line(self, text: str) -> tuple[StatementLine, str, int]:
        values = _fields(text)
        if len(values) != len(COLUMNS):
            raise BillError(f"row has {len(values)} fields, not {len(COLUMNS)}")
        row = dict(zip(COLUMNS, values, strict=True))
        side = row["收支类型"]
        if side not in (INCOME, EXPENSE):
            raise BillError(f"收支类型 {side!r} is neither 收入 nor 支出")
        moved, balance = to_fen(row["收支金额（元）"]), to_fen(row["账户结余（元）"])
        if moved < 0:
            raise BillError(f"收支金额 is negative: {row['收支金额（元）']!r}")
        when = _time(row["记账时间"])
        kind = KINDS.get(row["业务类型"], StatementLineKind.other)
        signed = moved if side == INCOME else -moved
        fee = 0
        if kind in (StatementLineKind.payment, StatementLineKind.refund):
            match = _FEE_NOTE.search(row["备注"])
            fee = to_fen(match[1]) if match else 0
            if kind is StatementLineKind.refund:
                fee = -fee  # the share of the fee a refund gives back
        ours = row["业务凭证号"] or None
        if ours and kind is StatementLineKind.payout:
            ours = payout_id_of(ours)  # our payout id, not the out_bill_no made of it
        theirs = row["微信支付业务单号"] or None
        refund = kind is StatementLineKind.refund
        line = StatementLine(
            kind=kind, amount=signed + fee, currency="CNY", fee=fee,
            out_trade_no=None if refund else ours, out_refund_no=ours if refund else None,
            channel_trade_no=None if refund else theirs,
            channel_refund_no=theirs if refund else None,
            occurred_at=when, balance=balance, raw=row,
        )  # fmt: skip
        return line, side, moved

    def _checks(
        self, sha1: str, counts: dict[str, int], sums: dict[str, int],
        summary: list[str] | None, chain: list[str],
    ) -> None:  # fmt: skip
        wanted = self.expected.get("sha1")
        if wanted:
            ok = sha1 == wanted.lower()
            self.check("sha1", ok, "" if ok else f"file SHA1 {sha1}, given {wanted.lower()}")
        if summary is None:
            self.check("summary", False, "the file has no summary line")
        else:
            found = (counts[INCOME] + counts[EXPENSE], counts[INCOME], sums[INCOME],
                     counts[EXPENSE], sums[EXPENSE])  # fmt: skip
            names = ("summary_count", "summary_income_count", "summary_income",
                     "summary_expense_count", "summary_expense")  # fmt: skip
            for i, (name, column, total, text) in enumerate(
                zip(names, SUMMARY_COLUMNS, found, summary, strict=True)
            ):
                try:
                    stated = to_fen(text) if i in (2, 4) else _count(text)
                except BillError as exc:
                    self.check(name, False, f"{column}: {exc}")
                    continue
                self.check_totals(name, stated, total, column)
        self.check("balance_chain", not chain, "; ".join(chain))

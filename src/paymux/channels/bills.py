"""Bill files (对账单) as reconciliation reads them: fetched once into a file, archived exactly
as the channel gave it, then read as a stream of normalised
:class:`~paymux.channels.base.StatementLine`.

A channel's bill is whatever it publishes for a day: a text file (WeChat Pay), a zip of GBK CSVs
(Alipay), fixed-width files in a zip (UnionPay), or pages of an API listing that the adapter
writes down as one JSON document (Stripe balance transactions, PayPal Transaction Search). The
contract is the same for each:

- :meth:`BillCapable.fetch_bill` writes the file into a binary stream and says what came with it
  (WeChat's SHA1 ``hash_value``) — or that the channel has no bill for the day;
- :meth:`BillCapable.bill_reader` reads a file from disk, fetched or uploaded by a person, one
  line at a time: memory does not grow with the file. A row it cannot read is a
  :class:`BillProblem` (never dropped silently); the channel's own integrity checks (a hash, the
  summary totals at the end of the file) are :class:`BillCheck` results once the lines are read.

A channel publishes up to two bills a day (:class:`BillKind`): the **trade** bill (交易账单: one
line per payment and refund) and the **funds** bill (资金账单 / 账务明细: every movement of the
balance the channel holds for us — trade money in, refunds and payouts out, its fees, and its
settlements to our bank account, each line with the balance after it where the channel says).
Both are read by the same :class:`BillReader` contract; an adapter lists the ones it has in
``bills`` and takes the kind as the ``bill`` argument. Where a channel's one file holds both
(Stripe's balance transactions, PayPal's transaction search, UnionPay's ZM whose 清算 total is
the day's settlement), its funds reader reads the same file for the funds lines.

Nothing here knows a channel; each ``channels/<name>/`` implements it.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, ClassVar, Protocol

from paymux.channels.base import StatementLine, UnknownOutcome

MAX_PROBLEMS = 1000
"""Problems kept per file with their text; :attr:`BillReader.problem_count` counts them all."""
MAX_PROBLEM_TEXT = 500


class BillKind(StrEnum):
    trade = "trade"
    """交易账单: payments and refunds (kinds ``payment``, ``refund``; ``fee``/``other`` too)."""
    funds = "funds"
    """资金账单: the balance's movements; the lines that matter to reconciliation are kinds
    ``payout`` and ``settlement`` (trade lines may be listed too, and are counted only)."""


@dataclass(frozen=True)
class BillProblem:
    """A row of a bill that could not be read."""

    position: int
    """1-based line (or record) number in the file."""
    text: str
    """The row as the channel wrote it (cut at :data:`MAX_PROBLEM_TEXT` characters)."""
    reason: str


@dataclass(frozen=True)
class BillCheck:
    """One of the channel's own integrity checks of a file, and its result."""

    name: str
    """e.g. ``sha1`` (the hash the channel gave with the download), ``summary_count``,
    ``summary_amount``, ``summary_fee`` (Σ detail against the summary lines)."""
    ok: bool
    detail: str = ""


class BillReader(ABC):
    """One pass over one bill file. Iterate :meth:`lines` once; rows that cannot be read go to
    :attr:`problems` meanwhile, and when the iteration ends :attr:`checks` hold the channel's own
    integrity checks. A file is :attr:`intact` when every check passed and no row was bad."""

    def __init__(self, path: Path, expected: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.expected = dict(expected or {})
        self.problems: list[BillProblem] = []
        self.problem_count = 0
        self.checks: list[BillCheck] = []
        self.finished = False
        self.balances: dict[str, int] = {}
        """Per currency, the balance after the last line that gave one (funds bills): the
        channel's closing balance of the day."""

    @abstractmethod
    def read(self) -> Iterator[StatementLine]:
        """The file's lines, in file order (the channel's implementation)."""

    def lines(self) -> Iterator[StatementLine]:
        balances = self.balances
        for line in self.read():
            if line.balance is not None:
                balances[line.currency] = line.balance
            yield line
        self.finished = True

    def problem(self, position: int, text: str, reason: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(BillProblem(position, text[:MAX_PROBLEM_TEXT], reason))

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append(BillCheck(name, ok, detail))

    def check_totals(self, name: str, expected: int, found: int, what: str) -> None:
        """A summary total against the detail's sum."""
        detail = "" if expected == found else f"{what}: summary {expected}, detail {found}"
        self.check(name, expected == found, detail)

    @property
    def intact(self) -> bool:
        return self.finished and not self.problem_count and all(c.ok for c in self.checks)

    def failures(self) -> list[str]:
        """Why the file is not intact, one sentence each (empty when it is)."""
        out = [f"{c.name}: {c.detail or 'failed'}" for c in self.checks if not c.ok]
        if self.problem_count:
            out.append(f"{self.problem_count} row(s) could not be read")
        if not self.finished:
            out.append("the file was not read to its end")
        return out


@dataclass(frozen=True)
class FetchedBill:
    """What :meth:`BillCapable.fetch_bill` wrote and what came with it."""

    filename: str
    """The channel's name of the file, or a descriptive one (``wechatpay_2026-12-01_ALL.csv``)."""
    expected: dict[str, str] = field(default_factory=dict)
    """Integrity facts given with the file, for :meth:`BillCapable.bill_reader` (``sha1``)."""
    exists: bool = True
    """False: the channel has no bill for the day because nothing happened (nothing written)."""


class BillCapable(Protocol):
    """An adapter that fetches and reads the channel's daily bills.

    ``bills``: the kinds of bill the channel publishes (always ``trade``; ``funds`` where it
    has a fund-flow bill). ``bill_ready_after``: how long after the end of a bill day (in
    ``statement_timezone``) the channel's bills are normally published — the default time the
    daily job fetches them. A bill the channel has not made yet raises RetryableError
    ``statement_not_ready`` from :meth:`fetch_bill`; technical failures raise as elsewhere; a
    ``bill`` the channel does not have raises ValueError."""

    statement_timezone: ClassVar[dt.tzinfo]
    bill_ready_after: ClassVar[dt.timedelta]
    bills: ClassVar[frozenset[BillKind]]

    async def fetch_bill(
        self, day: dt.date, into: IO[bytes], bill: BillKind = BillKind.trade
    ) -> FetchedBill: ...

    def bill_reader(
        self, path: Path, expected: Mapping[str, str], bill: BillKind = BillKind.trade
    ) -> BillReader: ...


def bill_capable_of(adapter: object) -> BillCapable | None:
    """``adapter`` as a :class:`BillCapable` when it reads bills."""
    if callable(getattr(adapter, "fetch_bill", None)) and callable(
        getattr(adapter, "bill_reader", None)
    ):
        return adapter  # type: ignore[return-value]
    return None


def bills_of(adapter: object) -> frozenset[BillKind]:
    """The kinds of bill a bill-reading adapter publishes (``trade`` unless it says)."""
    return frozenset(getattr(adapter, "bills", (BillKind.trade,)))


async def statement_of(adapter: BillCapable, day: dt.date) -> list[StatementLine]:
    """The day's bill as a list (small days, tools and tests): fetched into a temporary file and
    read whole; a file that is not intact raises UnknownOutcome naming what failed."""
    with tempfile.NamedTemporaryFile(prefix="paymux-bill-") as handle:
        fetched = await adapter.fetch_bill(day, handle)
        if not fetched.exists:
            return []
        handle.flush()
        reader = adapter.bill_reader(Path(handle.name), fetched.expected)
        lines = list(reader.lines())
    if not reader.intact:
        raise UnknownOutcome("bill_not_intact", "; ".join(reader.failures()))
    return lines

"""Every query of reconciliation: staging bill lines (COPY on PostgreSQL, executemany on SQLite),
matching them to our payments and refunds (trade bills) or payouts (funds bills) in SQL, the
local side of a bill day, the books bridge, and the runs, breaks and their history.

Matching is exact, by key: a payment line names our attempt id, a refund line our refund id
(each channel's reader maps its own fields to them); the channel's number is a check. Amounts,
currency and fee must be equal to the unit. Each line gets a code in SQL (``ok`` or a break
class); matched lines are only counted and summed, so only the differences reach Python.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channel_accounts.models import ChannelAccount
from paymux.funds.service import PAYMENT_KEY_PREFIX, REFUND_KEY_PREFIX
from paymux.kit.db import UTCDateTime
from paymux.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from paymux.payouts.service import PAYOUT_PAID_KEY_PREFIX
from paymux.recon.models import (
    ApprovalState,
    BreakState,
    ReconApproval,
    ReconBreak,
    ReconBreakEvent,
    ReconConfig,
    ReconFile,
    ReconLine,
    ReconRun,
    ReconSettlement,
    RunStatus,
)

LINE_COLUMNS = ("run_id", "position", "kind", "reference", "channel_ref", "amount", "fee",
                "currency", "occurred_at")  # fmt: skip
LineRecord = tuple[str, int, str, str | None, str | None, int, int, str, dt.datetime | None]


@dataclass(frozen=True)
class Coded:
    """A bill line that did not match exactly, with what our side says."""

    position: int
    kind: str
    code: str
    reference: str | None
    channel_ref: str | None
    amount: int
    fee: int
    currency: str
    record_id: str | None
    """The attempt (payment lines) or refund (refund lines) the line names, if we have it."""
    record_status: str | None
    record_amount: int | None
    record_currency: str | None
    record_fee: int | None
    record_channel_ref: str | None
    payment_id: str | None
    merchant_id: str | None
    app_id: str | None
    paid_at: dt.datetime | None
    books: int
    """The record's movement of the clearing account (its posted ledger transaction)."""
    record_account: str | None
    occurred_at: dt.datetime | None


@dataclass(frozen=True)
class Tally:
    """Matched lines of one currency (and code), summed."""

    code: str
    kind: str
    currency: str
    count: int
    amount: int
    fee: int
    books: int


@dataclass(frozen=True)
class LocalItem:
    """A record of ours the bill day's lines do not name."""

    kind: str
    record_id: str
    payment_id: str
    merchant_id: str
    app_id: str
    status: str
    amount: int
    fee: int
    currency: str
    at: dt.datetime | None
    books: int


def _books(prefix: str, id_column: str, tx_column: str | None, *, hold: bool = False) -> str:
    """The posted movement of the account's clearing accounts (``:clearing``, their ids) by
    the record's ledger transaction: named by ``tx_column`` (one index lookup: a payment's
    success posting is posted when written; a refund's hold only once the refund succeeded,
    hence ``hold``), else found by its key (records from before the column was kept, and
    records that keep no column: a payout's posting is found by its key only)."""
    movement = "SUM(CASE WHEN e.side = 'debit' THEN e.amount ELSE -e.amount END)"
    if tx_column is None:
        return (f"COALESCE((SELECT {movement} FROM ledger_transactions t JOIN ledger_entries e"
                f" ON e.transaction_id = t.id WHERE t.key = '{prefix}' || {id_column}"
                " AND t.status = 'posted' AND e.account_id IN :clearing), 0)")  # fmt: skip
    by_id = (
        f"(SELECT {movement} FROM ledger_entries e JOIN ledger_transactions t ON t.id ="
        f" e.transaction_id WHERE e.transaction_id = {tx_column} AND t.status = 'posted'"
        " AND e.account_id IN :clearing)"
        if hold else
        f"(SELECT {movement} FROM ledger_entries e WHERE e.transaction_id = {tx_column}"
        " AND e.account_id IN :clearing)"
    )  # fmt: skip
    by_key = (
        f"(SELECT COALESCE({movement}, 0) FROM ledger_transactions t JOIN ledger_entries e"
        f" ON e.transaction_id = t.id WHERE {tx_column} IS NULL"
        f" AND t.key = '{prefix}' || {id_column} AND t.status = 'posted'"
        " AND e.account_id IN :clearing)"
    )
    return f"COALESCE({by_id}, {by_key}, 0)"


_PAYMENT_BOOKS = _books(PAYMENT_KEY_PREFIX, "a.payment_id", "f.posting_id", hold=False)
_REFUND_BOOKS = _books(REFUND_KEY_PREFIX, "r.id", "r.ledger_hold_id", hold=True)
_LOCAL_PAYMENT_BOOKS = _books(PAYMENT_KEY_PREFIX, "p.id", "f.posting_id", hold=False)


# Every payment and refund line of a run with its code, in one pass over the join: matched
# lines are grouped into tallies per (kind, currency); every other line is a group of its own
# (grouped by its position), so its columns come through MIN() unchanged. A line naming the
# same record as an earlier line of its kind in the run (``d``: the first position per key) is
# a duplicate. Each branch of the union codes its own lines (``_CODE`` over the branch's
# columns): the union is then read as rows already coded — SQLite does not flatten a compound
# subquery into an aggregate, so the code is worked out once per line, not once per use.
_LINE_COLUMNS = """
  l.position, l.kind, l.reference, l.channel_ref, l.amount, l.fee, l.currency, l.occurred_at,
  CASE WHEN d.first IS NOT NULL AND l.position > d.first THEN 1 ELSE 0 END AS dup"""


def _dup_join(kind: str) -> str:
    """The first position of every key that more than one line of ``kind`` names. A subquery
    of its branch, not a CTE both branches read: PostgreSQL runs no part of a plan that reads
    a CTE in parallel workers, and the branch — its ledger lookups above all — is the work."""
    return f"""
    LEFT JOIN (
      SELECT COALESCE(reference, channel_ref, '') AS k, MIN(position) AS first
      FROM recon_lines WHERE run_id = :run AND kind = '{kind}'
      GROUP BY COALESCE(reference, channel_ref, '') HAVING COUNT(*) > 1
    ) d ON d.k = COALESCE(l.reference, l.channel_ref, '')"""


_CODE = """CASE
    WHEN dup = 1 THEN 'duplicate'
    WHEN record_id IS NULL THEN
      CASE WHEN kind = 'refund' THEN 'refund_channel_only' ELSE 'channel_only' END
    WHEN record_account <> :account THEN 'unclassified'
    WHEN kind = 'refund' AND record_status = 'pending' THEN 'pending'
    WHEN record_status <> 'succeeded' THEN 'status_channel_success'
    WHEN currency <> record_currency THEN 'currency_mismatch'
    WHEN ABS(amount) > ABS(record_amount) THEN 'amount_over'
    WHEN ABS(amount) < ABS(record_amount) THEN 'amount_under'
    WHEN record_channel_ref IS NOT NULL AND channel_ref IS NOT NULL
         AND channel_ref <> record_channel_ref THEN 'unclassified'
    WHEN fee <> COALESCE(record_fee, 0) THEN 'fee_mismatch'
    WHEN paid_at < :start OR paid_at >= :end THEN 'outside'
    ELSE 'ok' END"""
_SUMMED = """
SELECT CASE WHEN code = 'ok' THEN 'tally' ELSE 'line' END AS part, code, kind, currency,
  COUNT(*) AS n, SUM(amount) AS amount, SUM(fee) AS fee,
  SUM(CASE WHEN code = 'duplicate' THEN 0 ELSE books END) AS books,
  MIN(record_account) AS record_account, MIN(position) AS position,
  MIN(reference) AS reference, MIN(channel_ref) AS channel_ref, MIN(record_id) AS record_id,
  MIN(record_status) AS record_status, MIN(record_amount) AS record_amount,
  MIN(record_currency) AS record_currency, MIN(record_fee) AS record_fee,
  MIN(record_channel_ref) AS record_channel_ref, MIN(payment_id) AS payment_id,
  MIN(merchant_id) AS merchant_id, MIN(app_id) AS app_id, MIN(paid_at) AS paid_at,
  MIN(occurred_at) AS occurred_at
FROM coded
GROUP BY code, kind, currency, CASE WHEN code = 'ok' THEN NULL ELSE position END
"""
"""Matched lines summed into tallies, every other line a row of its own (``coded``'s rows)."""
_CODED = f"""
WITH coded AS (
  SELECT b.*, {_CODE} AS code FROM (
    SELECT {_LINE_COLUMNS},
      a.id AS record_id, a.status AS record_status, a.amount AS record_amount,
      a.currency AS record_currency, f.channel_fee AS record_fee,
      a.channel_trade_no AS record_channel_ref, a.channel_account_id AS record_account,
      a.payment_id, p.merchant_id, p.app_id, p.paid_at,
      CASE WHEN a.id IS NULL THEN 0 ELSE {_PAYMENT_BOOKS} END AS books
    FROM recon_lines l {_dup_join("payment")}
    LEFT JOIN payment_attempts a ON a.id = l.reference
    LEFT JOIN payments p ON p.id = a.payment_id
    LEFT JOIN payment_funds f ON f.payment_id = a.payment_id
    WHERE l.run_id = :run AND l.kind = 'payment'
  ) b
  UNION ALL
  SELECT b.*, {_CODE} FROM (
    SELECT {_LINE_COLUMNS},
      r.id AS record_id, r.status AS record_status, -r.amount AS record_amount,
      r.currency AS record_currency, -r.fee_returned AS record_fee,
      r.channel_refund_no AS record_channel_ref, r.channel_account_id AS record_account,
      r.payment_id, p.merchant_id, p.app_id, r.succeeded_at AS paid_at,
      CASE WHEN r.id IS NULL THEN 0 ELSE {_REFUND_BOOKS} END AS books
    FROM recon_lines l {_dup_join("refund")}
    LEFT JOIN refunds r ON r.id = l.reference
    LEFT JOIN payments p ON p.id = r.payment_id
    WHERE l.run_id = :run AND l.kind = 'refund'
  ) b
)
{_SUMMED}"""

_LOCAL_PAYMENTS = f"""
SELECT p.current_attempt_id, p.id, p.merchant_id, p.app_id, p.status, p.amount,
  COALESCE(f.channel_fee, 0), p.currency, p.paid_at,
  {_LOCAL_PAYMENT_BOOKS}
FROM payments p LEFT JOIN payment_funds f ON f.payment_id = p.id
WHERE p.channel_account_id = :account AND p.paid_at >= :since AND p.paid_at < :end
  AND p.status = 'succeeded'
  AND NOT EXISTS (SELECT 1 FROM recon_lines l WHERE l.run_id IN :runs
                  AND l.reference = p.current_attempt_id AND l.kind = 'payment')
"""

_LOCAL_REFUNDS = f"""
SELECT r.id, r.payment_id, p.merchant_id, p.app_id, r.status, -r.amount, -r.fee_returned,
  r.currency,
  COALESCE(r.succeeded_at, r.created_at),
  {_REFUND_BOOKS}
FROM refunds r JOIN payments p ON p.id = r.payment_id
WHERE r.channel_account_id = :account
  AND ((r.status = 'succeeded' AND r.succeeded_at >= :since AND r.succeeded_at < :end)
       OR (r.status = 'pending' AND r.created_at < :end))
  AND NOT EXISTS (SELECT 1 FROM recon_lines l WHERE l.run_id IN :runs
                  AND l.reference = r.id AND l.kind = 'refund')
"""


# Funds bills (资金账单): every payout line with its code, like _CODED for trade lines. Our
# payout id is the out_biz_no the channel echoes; the channel's transfer number is a check; the
# amount is the payout's own (its fee is ours, not the channel's: a fee on the line is the
# channel's and must be zero). The books are the payout's movement of the clearing account
# (posted when it succeeded).
_PAYOUT_BOOKS = _books(PAYOUT_PAID_KEY_PREFIX, "o.id", None)
_PAYOUTS_CODED = f"""
WITH coded AS (
  SELECT b.*, {_CODE} AS code FROM (
    SELECT {_LINE_COLUMNS},
      o.id AS record_id, o.status AS record_status, -o.amount AS record_amount,
      o.currency AS record_currency, 0 AS record_fee,
      o.channel_transfer_no AS record_channel_ref, o.channel_account_id AS record_account,
      NULL AS payment_id, ap.merchant_id, o.app_id, o.succeeded_at AS paid_at,
      CASE WHEN o.id IS NULL THEN 0 ELSE {_PAYOUT_BOOKS} END AS books
    FROM recon_lines l {_dup_join("payout")}
    LEFT JOIN payouts o ON o.id = l.reference
    LEFT JOIN apps ap ON ap.id = o.app_id
    WHERE l.run_id = :run AND l.kind = 'payout'
  ) b
)
{_SUMMED}"""

_LOCAL_PAYOUTS = f"""
SELECT o.id, o.id, ap.merchant_id, o.app_id, o.status, -o.amount, 0, o.currency,
  o.succeeded_at, {_PAYOUT_BOOKS}
FROM payouts o JOIN apps ap ON ap.id = o.app_id
WHERE o.channel_account_id = :account AND o.status = 'succeeded'
  AND o.succeeded_at >= :since AND o.succeeded_at < :end
  AND NOT EXISTS (SELECT 1 FROM recon_lines l WHERE l.run_id IN :runs
                  AND l.reference = o.id AND l.kind = 'payout')
"""

# The lines of a funds bill reconciliation does not match one by one (trade money, the
# channel's own fees, anything else), counted and summed per kind and currency.
_FUNDS_OTHERS = """
SELECT kind, currency, COUNT(*), SUM(amount), SUM(fee) FROM recon_lines
WHERE run_id = :run AND kind NOT IN ('payout', 'settlement')
GROUP BY kind, currency ORDER BY kind, currency
"""


# Money our books posted after a cut for records that happened before it: a payment the
# trade run repaired (掉单), a refund or a payout settled by a query the next morning. The
# channel moved it before the cut — its record says so, or a line of the day's bills (``:runs``)
# names it — so the balance as of the cut counts it.
_LATE = f"""
SELECT COALESCE(SUM(CASE WHEN e.side = 'debit' THEN e.amount ELSE -e.amount END), 0)
FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
JOIN ledger_accounts la ON la.id = e.account_id
WHERE la.owner_type = 'channel_account' AND la.owner_id = :account
  AND la.purpose = 'clearing' AND la.currency = :currency
  AND t.status = 'posted' AND t.posted_at >= :end AND (
    EXISTS (SELECT 1 FROM payments p WHERE t.key = '{PAYMENT_KEY_PREFIX}' || p.id
            AND p.paid_at < :end)
    OR EXISTS (SELECT 1 FROM refunds r WHERE t.key = '{REFUND_KEY_PREFIX}' || r.id
               AND r.succeeded_at < :end)
    OR EXISTS (SELECT 1 FROM payouts o WHERE t.key = '{PAYOUT_PAID_KEY_PREFIX}' || o.id
               AND o.succeeded_at < :end)
    OR EXISTS (SELECT 1 FROM recon_lines l JOIN payment_attempts a ON a.id = l.reference
               WHERE l.run_id IN :runs AND l.kind = 'payment'
               AND t.key = '{PAYMENT_KEY_PREFIX}' || a.payment_id)
    OR EXISTS (SELECT 1 FROM recon_lines l WHERE l.run_id IN :runs AND (
               (l.kind = 'refund' AND t.key = '{REFUND_KEY_PREFIX}' || l.reference)
               OR (l.kind = 'payout' AND t.key = '{PAYOUT_PAID_KEY_PREFIX}' || l.reference))))
"""


def _window(stmt: str, *names: str) -> sa.TextClause:
    text = sa.text(stmt).bindparams(*(sa.bindparam(n, type_=UTCDateTime()) for n in names))
    for name in ("runs", "clearing"):
        if f":{name}" in stmt:
            text = text.bindparams(sa.bindparam(name, expanding=True))
    return text


_CODED_SQL = _window(_CODED, "start", "end")
_LOCAL_PAYMENTS_SQL = _window(_LOCAL_PAYMENTS, "since", "end")
_LOCAL_REFUNDS_SQL = _window(_LOCAL_REFUNDS, "since", "end")
_PAYOUTS_CODED_SQL = _window(_PAYOUTS_CODED, "start", "end")
_LOCAL_PAYOUTS_SQL = _window(_LOCAL_PAYOUTS, "since", "end")
_LATE_SQL = _window(_LATE, "end")


class ReconRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: Any) -> None:
        self.session.add(obj)

    # ------------------------------------------------------------ staging
    async def stage(self, records: AsyncIterable[Sequence[LineRecord]]) -> int:
        """Write batches of bill lines into ``recon_lines``: PostgreSQL COPY, else
        executemany. Returns how many."""
        conn = await self.session.connection()
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        count = 0
        if conn.dialect.name == "postgresql":

            async def rows() -> AsyncIterator[LineRecord]:
                nonlocal count
                async for batch in records:
                    count += len(batch)
                    for row in batch:
                        yield row

            await raw.copy_records_to_table("recon_lines", records=rows(), columns=LINE_COLUMNS)
            return count
        sql = (f"INSERT INTO recon_lines ({', '.join(LINE_COLUMNS)}) VALUES "
               f"({', '.join('?' * len(LINE_COLUMNS))})")  # fmt: skip
        async for batch in records:
            await raw.executemany(sql, _sqlite_rows(batch))
            count += len(batch)
        return count

    async def analyze_lines(self) -> None:
        """Fresh planner statistics after a big COPY (PostgreSQL; SQLite plans without them)."""
        if self.session.get_bind().dialect.name == "postgresql":
            await self.session.execute(sa.text("ANALYZE recon_lines"))

    async def clearing_ids(self, account_id: str) -> list[str]:
        """The channel account's clearing accounts (one per currency); never an empty list, so
        ``IN`` stays valid SQL."""
        stmt = sa.select(LedgerAccount.id).where(
            LedgerAccount.owner_type == "channel_account", LedgerAccount.owner_id == account_id,
            LedgerAccount.purpose == "clearing",
        )  # fmt: skip
        return list(await self.session.scalars(stmt)) or [""]

    async def drop_lines(self, run_id: str) -> None:
        await self.session.execute(sa.delete(ReconLine).where(ReconLine.run_id == run_id))

    # ------------------------------------------------------------ matching
    async def code_lines(
        self, run_id: str, account_id: str, start: dt.datetime, end: dt.datetime
    ) -> tuple[list[Tally], list[Coded]]:
        """The run's matched lines summed per (kind, currency), and every other line with its
        code and our record."""
        params = {"run": run_id, "account": account_id, "start": start, "end": end,
                  "clearing": await self.clearing_ids(account_id)}  # fmt: skip
        if self.session.get_bind().dialect.name == "postgresql":
            # In a transaction (see the caller), for this statement only: the join's hashes
            # and the grouping in memory, not in temporary files; and no JIT — the per-line
            # ledger lookups make the plan look costly enough to compile, which takes seconds
            # (measured: 1.2–2.7 s of a 3 s match of 200,000 lines) and saves less.
            # And no sorts: the planner cannot tell that the matched lines fold into a handful
            # of tallies (it guesses a group per line), so for a big bill it sorted every
            # coded line to disk for the grouping, and for a merge join with ``d`` (measured
            # on 1,000,000 lines: 21.6 s, 11.4 s without); hashing spills if it must.
            await self.session.execute(sa.text("SET LOCAL work_mem = '64MB'"))
            await self.session.execute(sa.text("SET LOCAL jit = off"))
            await self.session.execute(sa.text("SET LOCAL enable_sort = off"))
        return _coded(await self.session.execute(_CODED_SQL, params))

    async def code_payouts(
        self, run_id: str, account_id: str, start: dt.datetime, end: dt.datetime
    ) -> tuple[list[Tally], list[Coded]]:
        """A funds run's matched payout lines summed per currency, and every other payout line
        with its code and our payout."""
        params = {"run": run_id, "account": account_id, "start": start, "end": end,
                  "clearing": await self.clearing_ids(account_id)}  # fmt: skip
        return _coded(await self.session.execute(_PAYOUTS_CODED_SQL, params))

    async def funds_lines(self, run_id: str, kind: str) -> list[ReconLine]:
        """A funds run's lines of one kind (settlements: a few a day), in file order."""
        stmt = (
            sa.select(ReconLine)
            .where(ReconLine.run_id == run_id, ReconLine.kind == kind)
            .order_by(ReconLine.position)
        )
        return list(await self.session.scalars(stmt))

    async def funds_others(self, run_id: str) -> list[tuple[str, str, int, int, int]]:
        """(kind, currency, count, amount, fee) of the lines a funds run only counts."""
        rows = await self.session.execute(sa.text(_FUNDS_OTHERS), {"run": run_id})
        return [(r[0], r[1], int(r[2]), int(r[3]), int(r[4])) for r in rows]

    async def local_payouts(
        self, account_id: str, run_ids: Sequence[str], since: dt.datetime, end: dt.datetime
    ) -> list[LocalItem]:
        """Our succeeded payouts (in [since, end)) through the account that no payout line of
        ``run_ids`` names."""
        params = {"account": account_id, "runs": list(run_ids), "since": since, "end": end,
                  "clearing": await self.clearing_ids(account_id)}  # fmt: skip
        return [
            LocalItem("payout", r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6]), r[7],
                      _time(r[8]), int(r[9]))
            for r in await self.session.execute(_LOCAL_PAYOUTS_SQL, params)
        ]  # fmt: skip

    async def settlements(self, account_id: str, refs: Sequence[str]) -> dict[str, ReconSettlement]:
        """The channel's settlements booked already, by the channel's id."""
        if not refs:
            return {}
        stmt = sa.select(ReconSettlement).where(
            ReconSettlement.channel_account_id == account_id,
            ReconSettlement.channel_ref.in_(refs),
        )
        return {s.channel_ref: s for s in await self.session.scalars(stmt)}

    async def clearing_balance(
        self, account_id: str, currency: str, end: dt.datetime, settlement_prefix: str,
        run_ids: Sequence[str] = (),
    ) -> int:  # fmt: skip
        """The channel account's clearing balance in ``currency`` as of ``end`` by our books:
        every posted transaction before ``end``, and after it those of records that happened
        before it (:data:`_LATE`); settlements count by when the channel made them (their
        booking comes later, from the funds bill)."""
        movement = sa.func.coalesce(sa.func.sum(sa.case(
            (LedgerEntry.side == "debit", LedgerEntry.amount), else_=-LedgerEntry.amount
        )), 0)  # fmt: skip
        clearing = sa.select(LedgerAccount.id).where(
            LedgerAccount.owner_type == "channel_account", LedgerAccount.owner_id == account_id,
            LedgerAccount.purpose == "clearing", LedgerAccount.currency == currency,
        )  # fmt: skip
        booked = (
            sa.select(movement)
            .select_from(LedgerEntry)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerEntry.account_id.in_(clearing.scalar_subquery()),
                   LedgerTransaction.status == "posted", LedgerTransaction.posted_at < end,
                   LedgerTransaction.key.not_like(f"{settlement_prefix}%"))
        )  # fmt: skip
        settled = sa.select(sa.func.coalesce(sa.func.sum(ReconSettlement.amount), 0)).where(
            ReconSettlement.channel_account_id == account_id,
            ReconSettlement.currency == currency, ReconSettlement.occurred_at < end,
        )  # fmt: skip
        before = int((await self.session.execute(booked)).scalar_one())
        late = await self.session.execute(_LATE_SQL, {
            "account": account_id, "currency": currency, "end": end,
            "runs": list(run_ids) or [""],
        })  # fmt: skip
        return (before + int(late.scalar_one())
                - int((await self.session.execute(settled)).scalar_one()))  # fmt: skip

    async def line_nets(self, run_id: str) -> dict[str, int]:
        """Σ (amount − fee) of every line of a run, per currency."""
        stmt = (
            sa.select(ReconLine.currency, sa.func.sum(ReconLine.amount - ReconLine.fee))
            .where(ReconLine.run_id == run_id)
            .group_by(ReconLine.currency)
        )
        return {c: int(n) for c, n in await self.session.execute(stmt)}

    async def open_deltas(self, account_id: str, currency: str, day: dt.date) -> int:
        """Σ (channel − ours) of the account's open and accepted breaks of ``day`` or before."""
        stmt = sa.select(
            sa.func.coalesce(sa.func.sum(ReconBreak.channel_amount - ReconBreak.local_amount), 0)
        ).where(
            ReconBreak.channel_account_id == account_id, ReconBreak.currency == currency,
            ReconBreak.state.in_((BreakState.open, BreakState.accepted)),
            ReconBreak.first_bill_date <= day,
        )  # fmt: skip
        return int((await self.session.execute(stmt)).scalar_one())

    async def run_settlements(self, run_id: str) -> list[ReconSettlement]:
        stmt = (
            sa.select(ReconSettlement)
            .where(ReconSettlement.run_id == run_id)
            .order_by(ReconSettlement.channel_ref)
        )
        return list(await self.session.scalars(stmt))

    async def listed_in(
        self, run_ids: Sequence[str], kind: str, references: Sequence[str]
    ) -> set[str]:
        """Which of ``references`` lines of ``run_ids`` name."""
        if not run_ids or not references:
            return set()
        stmt = sa.select(ReconLine.reference).where(
            ReconLine.run_id.in_(run_ids), ReconLine.kind == kind,
            ReconLine.reference.in_(references),
        )  # fmt: skip
        return {r for r in (await self.session.scalars(stmt)) if r is not None}

    async def local_items(
        self, account_id: str, run_ids: Sequence[str], since: dt.datetime, end: dt.datetime
    ) -> list[LocalItem]:
        """Our paid payments (paid in [since, end)) and our succeeded refunds (done in the
        window) or pending ones (asked before ``end``) on the account that no line of
        ``run_ids`` names."""
        params = {"account": account_id, "runs": list(run_ids), "since": since, "end": end,
                  "clearing": await self.clearing_ids(account_id)}  # fmt: skip
        out = []
        for kind, sql in (("payment", _LOCAL_PAYMENTS_SQL), ("refund", _LOCAL_REFUNDS_SQL)):
            for r in await self.session.execute(sql, params):
                out.append(LocalItem(kind, r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6]),
                                     r[7], _time(r[8]), int(r[9])))  # fmt: skip
        return out

    # ------------------------------------------------------------ runs and files
    async def config(self, account_id: str) -> ReconConfig | None:
        return await self.session.get(ReconConfig, account_id)

    async def next_run_no(self, account_id: str, day: dt.date, bill: str) -> int:
        stmt = sa.select(sa.func.coalesce(sa.func.max(ReconRun.run_no), 0)).where(
            ReconRun.channel_account_id == account_id, ReconRun.bill_date == day,
            ReconRun.bill == bill,
        )  # fmt: skip
        return int((await self.session.execute(stmt)).scalar_one()) + 1

    async def get_run(self, run_id: str) -> ReconRun | None:
        return await self.session.get(ReconRun, run_id)

    async def get_file(self, file_id: str) -> ReconFile | None:
        return await self.session.get(ReconFile, file_id)

    async def latest_runs(
        self, account_id: str, first: dt.date, last: dt.date, *, exclude: dt.date | None = None,
        bill: str = "trade",
    ) -> dict[dt.date, str]:  # fmt: skip
        """The latest finished run of each bill day in [first, last] (its lines stand for the
        day's bill of that kind)."""
        stmt = (
            sa.select(ReconRun.bill_date, ReconRun.id)
            .where(ReconRun.channel_account_id == account_id, ReconRun.bill_date >= first,
                   ReconRun.bill_date <= last, ReconRun.status == RunStatus.done,
                   ReconRun.bill == bill)
            .order_by(ReconRun.bill_date, ReconRun.run_no)
        )  # fmt: skip
        out: dict[dt.date, str] = {}
        for day, run_id in await self.session.execute(stmt):
            if day != exclude:
                out[day] = run_id
        return out

    async def runs(
        self, *, app_id: str | None, livemode: bool | None, account_id: str | None,
        day: dt.date | None, limit: int, starting_after: str | None, bill: str | None = None,
    ) -> tuple[list[ReconRun], bool]:  # fmt: skip
        stmt = sa.select(ReconRun)
        if bill is not None:
            stmt = stmt.where(ReconRun.bill == bill)
        if app_id is not None:
            stmt = stmt.where(ReconRun.app_id == app_id)
        if livemode is not None:
            stmt = stmt.where(ReconRun.livemode == livemode)
        if account_id is not None:
            stmt = stmt.where(ReconRun.channel_account_id == account_id)
        if day is not None:
            stmt = stmt.where(ReconRun.bill_date == day)
        if starting_after is not None:
            stmt = stmt.where(ReconRun.id < starting_after)
        found = list(await self.session.scalars(stmt.order_by(ReconRun.id.desc())
                                                .limit(limit + 1)))  # fmt: skip
        return found[:limit], len(found) > limit

    async def due_accounts(self) -> list[tuple[str, str, bool, ReconConfig | None]]:
        """(account id, channel, livemode, config) of every enabled channel account."""
        stmt = (
            sa.select(ChannelAccount.id, ChannelAccount.channel, ChannelAccount.mode, ReconConfig)
            .outerjoin(ReconConfig, ReconConfig.channel_account_id == ChannelAccount.id)
            .where(ChannelAccount.enabled.is_(True))
            .order_by(ChannelAccount.id)
        )
        rows = await self.session.execute(stmt)
        return [(r[0], r[1], r[2] == "live", r[3]) for r in rows]

    async def has_run(
        self, account_id: str, day: dt.date, statuses: Sequence[str], *,
        started_after: dt.datetime | None = None, bill: str = "trade",
    ) -> bool:  # fmt: skip
        where = [ReconRun.channel_account_id == account_id, ReconRun.bill_date == day,
                 ReconRun.status.in_(statuses), ReconRun.bill == bill]  # fmt: skip
        if started_after is not None:
            where.append(ReconRun.started_at > started_after)
        stmt = sa.select(sa.exists().where(*where))
        return bool((await self.session.execute(stmt)).scalar_one())

    async def count_runs(
        self, account_id: str, day: dt.date, status: str, bill: str = "trade"
    ) -> int:
        stmt = sa.select(sa.func.count()).where(
            ReconRun.channel_account_id == account_id, ReconRun.bill_date == day,
            ReconRun.status == status, ReconRun.bill == bill,
        )  # fmt: skip
        return int((await self.session.execute(stmt)).scalar_one())

    # ------------------------------------------------------------ breaks
    async def breaks_by_id(self, ids: Sequence[str]) -> dict[str, ReconBreak]:
        if not ids:
            return {}
        out: dict[str, ReconBreak] = {}
        for start in range(0, len(ids), 500):
            stmt = sa.select(ReconBreak).where(ReconBreak.id.in_(ids[start : start + 500]))
            out.update({b.id: b for b in await self.session.scalars(stmt)})
        return out

    async def open_breaks(self, account_id: str) -> list[ReconBreak]:
        stmt = sa.select(ReconBreak).where(
            ReconBreak.channel_account_id == account_id,
            ReconBreak.state.in_((BreakState.open, BreakState.accepted)),
        )
        return list(await self.session.scalars(stmt))

    async def lock_break(self, break_id: str) -> ReconBreak | None:
        stmt = sa.select(ReconBreak).where(ReconBreak.id == break_id).with_for_update()
        return (await self.session.scalars(stmt)).first()

    async def breaks(
        self, *, app_id: str | None, livemode: bool | None, account_id: str | None,
        merchant_id: str | None, klass: str | None, priority: int | None, state: str | None,
        opened_before: dt.datetime | None, limit: int, starting_after: str | None,
    ) -> tuple[list[ReconBreak], bool]:  # fmt: skip
        stmt = sa.select(ReconBreak)
        filters = {
            ReconBreak.app_id: app_id, ReconBreak.livemode: livemode,
            ReconBreak.channel_account_id: account_id, ReconBreak.merchant_id: merchant_id,
            ReconBreak.klass: klass, ReconBreak.priority: priority, ReconBreak.state: state,
        }  # fmt: skip
        for column, value in filters.items():
            if value is not None:
                stmt = stmt.where(column == value)
        if opened_before is not None:
            stmt = stmt.where(ReconBreak.opened_at < opened_before)
        if starting_after is not None:
            stmt = stmt.where(ReconBreak.id > starting_after)
        found = list(await self.session.scalars(stmt.order_by(ReconBreak.id).limit(limit + 1)))
        return found[:limit], len(found) > limit

    async def run_breaks(self, run_id: str) -> list[ReconBreak]:
        stmt = (
            sa.select(ReconBreak)
            .where(ReconBreak.last_run_id == run_id)
            .order_by(ReconBreak.priority, ReconBreak.klass, ReconBreak.key)
        )
        return list(await self.session.scalars(stmt))

    async def events(self, break_id: str) -> list[ReconBreakEvent]:
        stmt = (
            sa.select(ReconBreakEvent)
            .where(ReconBreakEvent.break_id == break_id)
            .order_by(ReconBreakEvent.id)
        )
        return list(await self.session.scalars(stmt))

    async def approvals(self, break_id: str) -> list[ReconApproval]:
        stmt = (
            sa.select(ReconApproval)
            .where(ReconApproval.break_id == break_id)
            .order_by(ReconApproval.id)
        )
        return list(await self.session.scalars(stmt))

    async def lock_approval(self, approval_id: str) -> ReconApproval | None:
        stmt = sa.select(ReconApproval).where(ReconApproval.id == approval_id).with_for_update()
        return (await self.session.scalars(stmt)).first()

    async def pending_approval(self, break_id: str) -> ReconApproval | None:
        stmt = sa.select(ReconApproval).where(
            ReconApproval.break_id == break_id, ReconApproval.state == ApprovalState.pending
        )
        return (await self.session.scalars(stmt)).first()


def _coded(rows: Any) -> tuple[list[Tally], list[Coded]]:
    """Rows of a coding query (:data:`_CODED`, :data:`_PAYOUTS_CODED`): tallies and lines."""
    tallies, coded = [], []
    for r in rows:
        if r.part == "tally":
            tallies.append(Tally(r.code, r.kind, r.currency, int(r.n), int(r.amount),
                                 int(r.fee), int(r.books)))  # fmt: skip
        else:
            coded.append(Coded(
                position=int(r.position), kind=r.kind, code=r.code, reference=r.reference,
                channel_ref=r.channel_ref, amount=int(r.amount), fee=int(r.fee),
                currency=r.currency, record_id=r.record_id, record_status=r.record_status,
                record_amount=_int(r.record_amount), record_currency=r.record_currency,
                record_fee=_int(r.record_fee), record_channel_ref=r.record_channel_ref,
                payment_id=r.payment_id, merchant_id=r.merchant_id, app_id=r.app_id,
                paid_at=_time(r.paid_at), books=int(r.books),
                record_account=r.record_account, occurred_at=_time(r.occurred_at),
            ))  # fmt: skip
    return tallies, coded


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _time(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(value)).replace(tzinfo=dt.UTC)


def _sqlite_rows(batch: Sequence[LineRecord]) -> list[tuple[Any, ...]]:
    """The records as SQLite stores them: the time as UTC text. A bill is in time order and a
    busy second has many lines (the reader hands them the same time), so each time is
    rendered once for its run of lines."""
    out: list[tuple[Any, ...]] = []
    last: dt.datetime | None = None
    stamp: str | None = None
    for row in batch:
        at = row[8]
        if at is None:
            out.append((*row[:8], None))
            continue
        if at is not last:
            last, stamp = at, at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        out.append((*row[:8], stamp))
    return out

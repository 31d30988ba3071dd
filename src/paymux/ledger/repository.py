"""Every query of the ledger.

Posting (:mod:`paymux.ledger.posting`) goes through SQLAlchemy Core, set-based: one statement
per step whatever the number of transactions. The portable statements run on SQLite and
PostgreSQL alike; on PostgreSQL the writes are by default one statement over ``unnest`` arrays
(:data:`LedgerRepository.pg_unnest` switches that off, so the portable path is tested there
too). Both write the same rows.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from paymux.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction, Side, TxStatus

_ACCOUNTS = cast(sa.Table, LedgerAccount.__table__)
_TRANSACTIONS = cast(sa.Table, LedgerTransaction.__table__)
_ENTRIES = cast(sa.Table, LedgerEntry.__table__)


@dataclass(frozen=True)
class AccountRow:
    """A locked account as posting needs it."""

    id: str
    currency: str
    normal: str
    allow_negative: bool
    balance: int
    pending_debits: int
    pending_credits: int
    version: int


@dataclass
class Writes:
    """Everything one posting writes, column by column (as the ``unnest`` statement takes it)."""

    now: dt.datetime
    tx_id: list[str] = field(default_factory=list)
    key: list[str] = field(default_factory=list)
    fingerprint: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    description: list[str] = field(default_factory=list)
    metadata: list[dict[str, Any]] = field(default_factory=list)
    reverses_id: list[str | None] = field(default_factory=list)
    expires_at: list[dt.datetime | None] = field(default_factory=list)
    e_id: list[str] = field(default_factory=list)
    e_tx: list[str] = field(default_factory=list)
    e_account: list[str] = field(default_factory=list)
    e_side: list[str] = field(default_factory=list)
    e_amount: list[int] = field(default_factory=list)
    e_currency: list[str] = field(default_factory=list)
    m_id: list[str] = field(default_factory=list)
    m_balance: list[int] = field(default_factory=list)
    m_debits: list[int] = field(default_factory=list)
    m_credits: list[int] = field(default_factory=list)
    m_versions: list[int] = field(default_factory=list)
    # Blind plans (:meth:`LedgerRepository.write_checked`): what each moved account was taken to
    # be, and the least it must have available.
    m_currency: list[str] = field(default_factory=list)
    m_normal: list[str] = field(default_factory=list)
    m_allow_negative: list[bool] = field(default_factory=list)
    m_need: list[int | None] = field(default_factory=list)

    def add_transaction(
        self, tx_id: str, key: str, fingerprint: str, status: str, description: str,
        metadata: dict[str, Any] | None, reverses_id: str | None, expires_at: dt.datetime | None,
    ) -> None:  # fmt: skip
        self.tx_id.append(tx_id)
        self.key.append(key)
        self.fingerprint.append(fingerprint)
        self.status.append(status)
        self.description.append(description[:500])
        self.metadata.append(metadata or {})
        self.reverses_id.append(reverses_id)
        self.expires_at.append(expires_at)

    def add_entry(self, tx_id: str, account_id: str, side: str, amount: int, currency: str) -> None:
        self.e_tx.append(tx_id)
        self.e_account.append(account_id)
        self.e_side.append(side)
        self.e_amount.append(amount)
        self.e_currency.append(currency)

    def add_move(
        self, account_id: str, balance: int, debits: int, credits: int, versions: int
    ) -> None:
        """An account's net change: balance and reservations by these amounts, version by
        the number of transactions that touched it."""
        self.m_id.append(account_id)
        self.m_balance.append(balance)
        self.m_debits.append(debits)
        self.m_credits.append(credits)
        self.m_versions.append(versions)

    def expect(self, currency: str, normal: str, allow_negative: bool, need: int | None) -> None:
        """What the last moved account must be (and have available) for a blind plan to hold."""
        self.m_currency.append(currency)
        self.m_normal.append(normal)
        self.m_allow_negative.append(allow_negative)
        self.m_need.append(need)


_MOVE = (
    sa.update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == sa.bindparam("m_id"))
    .values(balance=_ACCOUNTS.c.balance + sa.bindparam("m_balance"),
            pending_debits=_ACCOUNTS.c.pending_debits + sa.bindparam("m_debits"),
            pending_credits=_ACCOUNTS.c.pending_credits + sa.bindparam("m_credits"),
            version=_ACCOUNTS.c.version + sa.bindparam("m_versions"))
)  # fmt: skip


_CHECK = """
l AS MATERIALIZED (
    SELECT a.id, a.currency, a.normal, a.allow_negative,
           a.balance - CASE WHEN a.normal = 'credit' THEN a.pending_debits
                            ELSE a.pending_credits END AS available
    FROM ledger_accounts AS a
    WHERE a.id = ANY(CAST(:m_id AS varchar[]))
    ORDER BY a.id
    FOR NO KEY UPDATE
), ok AS MATERIALIZED (
    SELECT (SELECT count(*)
            FROM l JOIN unnest(CAST(:m_id AS varchar[]), CAST(:m_currency AS varchar[]),
                               CAST(:m_normal AS varchar[]), CAST(:m_allow_negative AS boolean[]),
                               CAST(:m_need AS bigint[]))
                        AS x(id, currency, normal, allow_negative, need) ON l.id = x.id
            WHERE l.currency = x.currency AND l.normal = x.normal
              AND l.allow_negative = x.allow_negative
              AND (x.need IS NULL OR l.available >= x.need))
           = cardinality(CAST(:m_id AS varchar[]))
       AND NOT EXISTS (SELECT 1 FROM ledger_transactions AS r
                       WHERE r.key = ANY(CAST(:key AS varchar[]))) AS ok
),"""


def _pg_write(new_keys_only: bool, checked: bool = False) -> sa.TextClause:
    """All of a posting's writes in one PostgreSQL statement. With ``new_keys_only`` (one
    transaction) a key recorded already writes nothing at all and the statement returns 0.

    ``checked`` (a blind plan): the statement first locks the accounts in id order and checks
    them against the plan — the accounts exist and are what it took them to be, each has what
    it needs available, no key is recorded — and writes nothing unless all holds; it returns
    whether it held, then the number of transactions written. The key check reads the
    statement's snapshot, taken before any row-lock wait, so a key that a transaction it waited
    for recorded is found by ``ON CONFLICT`` instead: then the statement writes no entries and
    moves no account, only (for a batch) its transactions with the other keys.
    """
    conflict = "ON CONFLICT (key) DO NOTHING" if new_keys_only or checked else ""
    if checked:  # a key a concurrent transaction recorded since the check: no entries, no moves
        gate = "AND (SELECT count(*) FROM t) = cardinality(CAST(:tx_id AS varchar[]))"
    else:
        gate = "AND EXISTS (SELECT 1 FROM t)" if new_keys_only else ""
    return sa.text(f"""
WITH {_CHECK if checked else ""} t AS (
    INSERT INTO ledger_transactions (id, key, fingerprint, status, description, metadata,
                                     reverses_id, expires_at, posted_at, created_at)
    SELECT u.id, u.key, u.fingerprint, u.status, u.description, u.metadata::jsonb,
           u.reverses_id, u.expires_at,
           CASE WHEN u.status = 'posted' THEN CAST(:now AS timestamptz) END,
           CAST(:now AS timestamptz)
    FROM unnest(CAST(:tx_id AS varchar[]), CAST(:key AS varchar[]),
                CAST(:fingerprint AS varchar[]), CAST(:status AS varchar[]),
                CAST(:description AS varchar[]), CAST(:metadata AS text[]),
                CAST(:reverses_id AS varchar[]), CAST(:expires_at AS timestamptz[]))
         AS u(id, key, fingerprint, status, description, metadata, reverses_id, expires_at)
    {"WHERE (SELECT ok FROM ok)" if checked else ""}
    {conflict}
    RETURNING id
), e AS (
    INSERT INTO ledger_entries (id, transaction_id, account_id, side, amount, currency,
                                created_at)
    SELECT u.id, u.tx, u.account, u.side, u.amount, u.currency, CAST(:now AS timestamptz)
    FROM unnest(CAST(:e_id AS varchar[]), CAST(:e_tx AS varchar[]),
                CAST(:e_account AS varchar[]), CAST(:e_side AS varchar[]),
                CAST(:e_amount AS bigint[]), CAST(:e_currency AS varchar[]))
         AS u(id, tx, account, side, amount, currency)
    WHERE TRUE {gate}
), m AS (
    UPDATE ledger_accounts AS a
    SET balance = a.balance + u.balance, pending_debits = a.pending_debits + u.debits,
        pending_credits = a.pending_credits + u.credits, version = a.version + u.versions
    FROM unnest(CAST(:m_id AS varchar[]), CAST(:m_balance AS bigint[]),
                CAST(:m_debits AS bigint[]), CAST(:m_credits AS bigint[]),
                CAST(:m_versions AS int[]))
         AS u(id, balance, debits, credits, versions)
    WHERE a.id = u.id {gate}
)
SELECT {"(SELECT ok FROM ok), " if checked else ""}(SELECT count(*) FROM t)""")


_PG_WRITE = {True: _pg_write(True), False: _pg_write(False)}
_PG_WRITE_CHECKED = _pg_write(False, checked=True)
_UNWRITE = sa.delete(_TRANSACTIONS).where(
    _TRANSACTIONS.c.id == sa.any_(sa.bindparam("ids", type_=postgresql.ARRAY(sa.String)))
)

# Built once: a statement object is compiled and its cache key computed once, not per call.
_ROW = (_ACCOUNTS.c.id, _ACCOUNTS.c.currency, _ACCOUNTS.c.normal, _ACCOUNTS.c.allow_negative,
        _ACCOUNTS.c.balance, _ACCOUNTS.c.pending_debits, _ACCOUNTS.c.pending_credits,
        _ACCOUNTS.c.version)  # fmt: skip
_STRINGS = postgresql.ARRAY(sa.String)
# PostgreSQL: ``= ANY(array)``, one prepared statement whatever the number of values.
_LOCK_ANY = (
    sa.select(*_ROW)
    .where(_ACCOUNTS.c.id == sa.any_(sa.bindparam("ids", type_=_STRINGS)))
    .order_by(_ACCOUNTS.c.id)
    .with_for_update(key_share=True)
)
_LOCK_IN = (
    sa.select(*_ROW)
    .where(_ACCOUNTS.c.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(_ACCOUNTS.c.id)
    .with_for_update(key_share=True)
)
_KIND_ROW = (_ACCOUNTS.c.id, _ACCOUNTS.c.currency, _ACCOUNTS.c.normal, _ACCOUNTS.c.allow_negative)
_KINDS_ANY = sa.select(*_KIND_ROW).where(
    _ACCOUNTS.c.id == sa.any_(sa.bindparam("ids", type_=_STRINGS))
)
_ACCOUNT_ID = sa.select(_ACCOUNTS.c.id).where(
    _ACCOUNTS.c.owner_type == sa.bindparam("owner_type"),
    _ACCOUNTS.c.owner_id == sa.bindparam("owner_id"),
    _ACCOUNTS.c.purpose == sa.bindparam("purpose"),
    _ACCOUNTS.c.currency == sa.bindparam("currency"),
)
_KINDS_IN = sa.select(*_KIND_ROW).where(_ACCOUNTS.c.id.in_(sa.bindparam("ids", expanding=True)))
_KEY_ROW = (_TRANSACTIONS.c.key, _TRANSACTIONS.c.id, _TRANSACTIONS.c.fingerprint)
_KEYS_ANY = sa.select(*_KEY_ROW).where(
    _TRANSACTIONS.c.key == sa.any_(sa.bindparam("keys", type_=_STRINGS))
)
_KEYS_IN = sa.select(*_KEY_ROW).where(_TRANSACTIONS.c.key.in_(sa.bindparam("keys", expanding=True)))
_INSERT_NEW_KEY = {
    name: insert(_TRANSACTIONS)
    .on_conflict_do_nothing(index_elements=["key"])
    .returning(_TRANSACTIONS.c.id)
    for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


def _pg_params(w: Writes) -> dict[str, Any]:
    return {
        "now": w.now, "tx_id": w.tx_id, "key": w.key, "fingerprint": w.fingerprint,
        "status": w.status, "description": w.description,
        "metadata": [json.dumps(m) if m else "{}" for m in w.metadata],
        "reverses_id": w.reverses_id, "expires_at": w.expires_at, "e_id": w.e_id,
        "e_tx": w.e_tx, "e_account": w.e_account, "e_side": w.e_side, "e_amount": w.e_amount,
        "e_currency": w.e_currency, "m_id": w.m_id, "m_balance": w.m_balance,
        "m_debits": w.m_debits, "m_credits": w.m_credits, "m_versions": w.m_versions,
    }  # fmt: skip


class LedgerRepository:
    pg_unnest: ClassVar[bool] = True
    """Write postings with one ``unnest`` statement on PostgreSQL (else the portable path)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._dialect: str | None = None

    def add(self, obj: LedgerAccount | LedgerTransaction | LedgerEntry) -> None:
        self.session.add(obj)

    async def find_account(
        self, owner_type: str, owner_id: str, purpose: str, currency: str
    ) -> LedgerAccount | None:
        stmt = sa.select(LedgerAccount).where(
            LedgerAccount.owner_type == owner_type, LedgerAccount.owner_id == owner_id,
            LedgerAccount.purpose == purpose, LedgerAccount.currency == currency,
        )  # fmt: skip
        return (await self.session.scalars(stmt)).first()

    async def find_account_id(
        self, owner_type: str, owner_id: str, purpose: str, currency: str
    ) -> str | None:
        """The account's id only: loads no object into the session."""
        return await self.session.scalar(_ACCOUNT_ID, {
            "owner_type": owner_type, "owner_id": owner_id, "purpose": purpose,
            "currency": currency,
        })  # fmt: skip

    async def accounts_of(self, owner_type: str, owner_id: str) -> list[LedgerAccount]:
        """Every account of one owner (for operators looking up account ids)."""
        stmt = sa.select(LedgerAccount).where(
            LedgerAccount.owner_type == owner_type, LedgerAccount.owner_id == owner_id
        )
        return list((await self.session.scalars(stmt.order_by(LedgerAccount.id))).all())

    async def get_account(self, account_id: str) -> LedgerAccount | None:
        return await self.session.get(LedgerAccount, account_id)

    async def lock_accounts(self, ids: Sequence[str]) -> dict[str, LedgerAccount]:
        """Row-lock the accounts in id order (one global order: no deadlocks between
        transactions touching the same accounts)."""
        stmt = (
            sa.select(LedgerAccount)
            .where(LedgerAccount.id.in_(sorted(set(ids))))
            .order_by(LedgerAccount.id)
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        )
        return {a.id: a for a in (await self.session.scalars(stmt)).all()}

    async def transaction_by_key(self, key: str) -> LedgerTransaction | None:
        stmt = sa.select(LedgerTransaction).where(LedgerTransaction.key == key)
        return (await self.session.scalars(stmt)).first()

    async def lock_transaction(self, tx_id: str) -> LedgerTransaction | None:
        stmt = (
            sa.select(LedgerTransaction)
            .where(LedgerTransaction.id == tx_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(stmt)).first()

    async def entries_of(self, tx_id: str) -> list[LedgerEntry]:
        stmt = sa.select(LedgerEntry).where(LedgerEntry.transaction_id == tx_id)
        return list((await self.session.scalars(stmt.order_by(LedgerEntry.id))).all())

    async def reversal_of(self, tx_id: str) -> LedgerTransaction | None:
        stmt = sa.select(LedgerTransaction).where(LedgerTransaction.reverses_id == tx_id)
        return (await self.session.scalars(stmt)).first()

    async def posted_sums(
        self, account_id: str, as_of: dt.datetime | None = None
    ) -> tuple[int, int]:
        """(Σ debits, Σ credits) of the account's posted entries, optionally up to ``as_of``."""
        stmt = (
            sa.select(
                sa.func.coalesce(sa.func.sum(sa.case(
                    (LedgerEntry.side == Side.debit, LedgerEntry.amount), else_=0)), 0),
                sa.func.coalesce(sa.func.sum(sa.case(
                    (LedgerEntry.side == Side.credit, LedgerEntry.amount), else_=0)), 0),
            )
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerEntry.account_id == account_id,
                   LedgerTransaction.status == TxStatus.posted)
        )  # fmt: skip
        if as_of is not None:
            stmt = stmt.where(LedgerTransaction.posted_at <= as_of)
        debits, credits = (await self.session.execute(stmt)).one()
        return int(debits), int(credits)

    async def totals_by_currency(self) -> dict[str, tuple[int, int]]:
        """Σ debits and Σ credits of all posted entries per currency (the books must balance)."""
        stmt = (
            sa.select(
                LedgerEntry.currency,
                sa.func.sum(sa.case((LedgerEntry.side == Side.debit, LedgerEntry.amount),
                                    else_=0)),
                sa.func.sum(sa.case((LedgerEntry.side == Side.credit, LedgerEntry.amount),
                                    else_=0)),
            )
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerTransaction.status == TxStatus.posted)
            .group_by(LedgerEntry.currency)
        )  # fmt: skip
        return {c: (int(d), int(k)) for c, d, k in (await self.session.execute(stmt)).all()}

    async def statement(
        self, account_ids: Sequence[str], *, limit: int, starting_after: str | None
    ) -> tuple[list[tuple[LedgerEntry, LedgerTransaction]], bool]:
        """Posted entries of the accounts, newest first, with their transactions."""
        stmt = (
            sa.select(LedgerEntry, LedgerTransaction)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerEntry.account_id.in_(list(account_ids)),
                   LedgerTransaction.status == TxStatus.posted)
        )  # fmt: skip
        if starting_after:
            stmt = stmt.where(LedgerEntry.id < starting_after)
        rows = (await self.session.execute(stmt.order_by(LedgerEntry.id.desc())
                                           .limit(limit + 1))).all()  # fmt: skip
        pairs = [(entry, tx) for entry, tx in rows]
        return pairs[:limit], len(pairs) > limit

    # -------------------------------------------------------------- set-based posting
    @property
    def _postgres(self) -> bool:
        if self._dialect is None:
            self._dialect = self.session.get_bind().dialect.name
        return self._dialect == "postgresql"

    async def _connection(self) -> AsyncConnection:
        """The session's connection for Core statements, after flushing pending ORM changes
        (Core statements do not autoflush, and a hold resolved through the ORM may be
        waiting)."""
        session = self.session
        if session.new or session.dirty or session.deleted:
            await session.flush()
        return await session.connection()

    async def lock_rows(self, ids: Collection[str]) -> dict[str, AccountRow]:
        """Row-lock the accounts in id order (the one global order :meth:`lock_accounts` also
        takes) and read what posting needs of them; missing ids are left out."""
        stmt = _LOCK_ANY if self._postgres else _LOCK_IN
        result = await (await self._connection()).execute(stmt, {"ids": sorted(ids)})
        return {row[0]: AccountRow(*row) for row in result}

    async def recorded_keys(self, keys: Collection[str]) -> dict[str, tuple[str, str]]:
        """Key → (transaction id, fingerprint) of the keys already recorded."""
        stmt = _KEYS_ANY if self._postgres else _KEYS_IN
        result = await (await self._connection()).execute(stmt, {"keys": list(keys)})
        return {key: (tx_id, fp) for key, tx_id, fp in result}

    async def write(self, w: Writes, *, new_keys_only: bool) -> bool:
        """Insert the transactions and their entries and move the accounts (locked already).

        ``new_keys_only`` (one transaction): if its key is recorded already — even by a
        transaction that committed a moment ago — write nothing and return False. Otherwise a
        recorded key is a unique violation that fails the whole statement.
        """
        conn = await self._connection()
        if self.checked_writes:
            written = await conn.scalar(_PG_WRITE[new_keys_only], _pg_params(w))
            return bool(written)
        return await self._write_portable(conn, w, new_keys_only)

    @property
    def checked_writes(self) -> bool:
        """Whether :meth:`write_checked` is available (PostgreSQL's ``unnest`` path)."""
        return self._postgres and self.pg_unnest

    async def write_checked(self, w: Writes) -> tuple[bool, bool]:
        """Lock, check and write a blind plan in one statement (see :func:`_pg_write`):
        (whether the plan held, whether all of it was written). A plan that did not hold wrote
        nothing (the accounts stay locked). One that held but met a key recorded by a
        transaction that committed meanwhile wrote only its transactions with the other keys,
        which :meth:`unwrite_transactions` takes back."""
        conn = await self._connection()
        params = _pg_params(w)
        params.update(m_currency=w.m_currency, m_normal=w.m_normal,
                      m_allow_negative=w.m_allow_negative, m_need=w.m_need)  # fmt: skip
        held, written = (await conn.execute(_PG_WRITE_CHECKED, params)).one()
        return bool(held), written == len(w.tx_id)

    async def unwrite_transactions(self, tx_ids: list[str]) -> None:
        """Delete transaction rows this database transaction inserted a statement ago without
        entries (:meth:`write_checked` meeting a concurrently recorded key). Nobody else has
        seen them: they are not in the books, and no entry is ever deleted."""
        conn = await self._connection()
        await conn.execute(_UNWRITE, {"ids": tx_ids})

    async def account_kinds(self, ids: Collection[str]) -> dict[str, tuple[str, str, bool]]:
        """Id → (currency, normal side, allow_negative) of the accounts that exist; no lock
        (an account never changes these)."""
        stmt = _KINDS_ANY if self._postgres else _KINDS_IN
        result = await (await self._connection()).execute(stmt, {"ids": list(ids)})
        return {i: (currency, normal, allow) for i, currency, normal, allow in result}

    async def _write_portable(self, conn: AsyncConnection, w: Writes, new_keys_only: bool) -> bool:
        transactions = [
            {"id": i, "key": k, "fingerprint": f, "status": s, "description": d,
             "metadata": m, "reverses_id": r, "expires_at": x,
             "posted_at": w.now if s == TxStatus.posted else None, "created_at": w.now}
            for i, k, f, s, d, m, r, x in zip(w.tx_id, w.key, w.fingerprint, w.status,
                                              w.description, w.metadata, w.reverses_id,
                                              w.expires_at, strict=True)
        ]  # fmt: skip
        if new_keys_only:
            assert len(transactions) == 1
            stmt = _INSERT_NEW_KEY["postgresql" if self._postgres else "sqlite"]
            if (await conn.execute(stmt, transactions[0])).first() is None:
                return False
        else:
            await conn.execute(sa.insert(_TRANSACTIONS), transactions)
        entries = [
            {"id": i, "transaction_id": t, "account_id": a, "side": s, "amount": n,
             "currency": c, "created_at": w.now}
            for i, t, a, s, n, c in zip(w.e_id, w.e_tx, w.e_account, w.e_side, w.e_amount,
                                        w.e_currency, strict=True)
        ]  # fmt: skip
        await conn.execute(sa.insert(_ENTRIES), entries)
        moves = [
            {"m_id": i, "m_balance": b, "m_debits": d, "m_credits": c, "m_versions": v}
            for i, b, d, c, v in zip(w.m_id, w.m_balance, w.m_debits, w.m_credits,
                                     w.m_versions, strict=True)
        ]  # fmt: skip
        await conn.execute(_MOVE, moves)
        return True

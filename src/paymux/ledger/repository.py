"""Every query of the ledger."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction, Side, TxStatus


class LedgerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

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
            .with_for_update()
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

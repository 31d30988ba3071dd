"""Every query of payments and attempts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit import clock
from paymux.payments.models import Attempt, Payment, store_code_of
from paymux.payments.schemas import PaymentFilters
from paymux.payments.states import FINAL_ATTEMPT, AttemptStatus, PaymentStatus


@dataclass(frozen=True)
class LastSuccess:
    method: str
    channel: str | None
    account_id: str | None


def _one_row(result: Any) -> bool:
    return bool(getattr(result, "rowcount", 0) == 1)


# The create's common answer, built once (building a statement and its cache key costs more
# than running it): the payment, still pending on an attempt still ``created``, gets the
# channel's ``next_action``; then the attempt goes ``created`` → ``pending``.
_P: sa.Table = Payment.__table__  # type: ignore[assignment]
_A: sa.Table = Attempt.__table__  # type: ignore[assignment]
_PAYMENT_OPENED = (
    sa.update(_P)
    .where(
        _P.c.id == sa.bindparam("p_id"),
        _P.c.status == PaymentStatus.pending,
        _P.c.current_attempt_id == sa.bindparam("a_id"),
        sa.exists().where(_A.c.id == sa.bindparam("a_id"), _A.c.status == AttemptStatus.created),
    )
    .values(
        next_action=sa.bindparam("a_action", type_=_P.c.next_action.type),
        updated_at=sa.bindparam("p_now", type_=_P.c.updated_at.type),
    )
)


def _attempt_opened(*, after: sa.Exists | None = None) -> sa.Update:
    guard = [_A.c.id == sa.bindparam("a_id"), _A.c.status == AttemptStatus.created]
    return (
        sa.update(_A)
        .where(*guard, *([after] if after is not None else []))
        .values(
            status=AttemptStatus.pending,
            next_action=sa.bindparam("a_action", type_=_A.c.next_action.type),
            channel_trade_no=sa.func.coalesce(
                _A.c.channel_trade_no, sa.bindparam("a_trade_no", type_=sa.String)
            ),
            channel_latency_ms=sa.bindparam("a_latency"),
            query_due_at=sa.bindparam("a_due", type_=_A.c.query_due_at.type),
            updated_at=sa.bindparam("a_now", type_=_A.c.updated_at.type),
        )
    )


_ATTEMPT_OPENED = _attempt_opened()
_OPENED_PAYMENT = _PAYMENT_OPENED.returning(_P.c.id).cte("opened_payment")
_PG_OPENED = _attempt_opened(after=sa.exists(sa.select(sa.literal(1)).select_from(_OPENED_PAYMENT)))
"""Both in one statement on PostgreSQL (a data-modifying CTE): the payment first, as every
path locks it, and the attempt only if the payment was updated."""


class PaymentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: Payment | Attempt) -> None:
        self.session.add(obj)

    async def get(self, app_id: str, livemode: bool, payment_id: str) -> Payment | None:
        stmt = sa.select(Payment).where(
            Payment.id == payment_id, Payment.app_id == app_id, Payment.livemode == livemode
        )
        return (await self.session.scalars(stmt)).first()

    async def get_public(self, payment_id: str) -> Payment | None:
        """For the hosted page, which is reached by the unguessable payment id alone."""
        return await self.session.get(Payment, payment_id)

    async def lock(self, payment_id: str) -> Payment:
        """The payment row, locked for this transaction (SQLite: writers are serialised)."""
        stmt = (
            sa.select(Payment)
            .where(Payment.id == payment_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(stmt)).one()

    async def lock_with_attempt(self, attempt_id: str) -> tuple[Payment, Attempt] | None:
        """An attempt and its payment, both locked, in one statement. Both rows are locked so
        that PostgreSQL, on finding the payment updated by a transaction it waited for, reads
        the attempt again too (a row it only joined would be seen as of before the wait);
        payments come first in the FROM list, so the payment is locked first, as every path
        does."""
        stmt = (
            sa.select(Payment, Attempt)
            .join(Attempt, Attempt.payment_id == Payment.id)
            .where(Attempt.id == attempt_id)
            .with_for_update(of=[Payment, Attempt])
            .execution_options(populate_existing=True)
        )
        row = (await self.session.execute(stmt)).first()
        return None if row is None else (row[0], row[1])

    async def find_by_out_trade_no(
        self, app_id: str, livemode: bool, out_trade_no: str
    ) -> Payment | None:
        stmt = sa.select(Payment).where(
            Payment.app_id == app_id,
            Payment.livemode == livemode,
            Payment.out_trade_no == out_trade_no,
        )
        return (await self.session.scalars(stmt)).first()

    async def search(
        self,
        app_id: str,
        livemode: bool,
        filters: PaymentFilters,
        *,
        limit: int,
        starting_after: str | None,
    ) -> tuple[list[Payment], bool]:
        """Newest first; ids sort by creation time, so the cursor is the last id seen."""
        stmt = sa.select(Payment).where(Payment.app_id == app_id, Payment.livemode == livemode)
        if filters.out_trade_no is not None:
            stmt = stmt.where(Payment.out_trade_no == filters.out_trade_no)
        if filters.status is not None:
            stmt = stmt.where(Payment.status == filters.status)
        if filters.created_gte is not None:
            stmt = stmt.where(Payment.created_at >= filters.created_gte)
        if filters.created_lt is not None:
            stmt = stmt.where(Payment.created_at < filters.created_lt)
        if filters.store_code is not None:  # ix_payments_store_code
            stmt = stmt.where(store_code_of() == filters.store_code)
        if starting_after is not None:
            stmt = stmt.where(Payment.id < starting_after)
        stmt = stmt.order_by(Payment.id.desc()).limit(limit + 1)
        rows = list((await self.session.scalars(stmt)).all())
        return rows[:limit], len(rows) > limit

    async def open_pending(
        self, payment_id: str, attempt_id: str, *, next_action: dict[str, Any] | None,
        channel_trade_no: str | None, latency_ms: int, query_due_at: dt.datetime,
    ) -> bool:  # fmt: skip
        """The create's common answer, both rows or neither: the payment still pending on
        this attempt gets its ``next_action``, the attempt goes ``created`` → ``pending`` with
        what the channel answered. False, writing nothing, if either had moved. One statement
        on PostgreSQL (atomic without a transaction); on SQLite two under its write lock, where
        the payment's guard (the attempt still ``created``) makes the second certain."""
        now = clock.now()
        params = {"p_id": payment_id, "a_id": attempt_id, "a_action": next_action,
                  "a_trade_no": channel_trade_no, "a_latency": latency_ms, "a_due": query_due_at,
                  "p_now": now, "a_now": now}  # fmt: skip
        conn = await self.session.connection()
        if conn.dialect.name == "postgresql":
            return _one_row(await conn.execute(_PG_OPENED, params))
        if not _one_row(await conn.execute(_PAYMENT_OPENED, params)):
            return False
        return _one_row(await conn.execute(_ATTEMPT_OPENED, params))

    async def last_success(
        self, app_id: str, livemode: bool, customer_ref: str
    ) -> LastSuccess | None:
        """This customer's last succeeded payment of the app in this mode: its method (the
        cashier puts it first) and channel and account (routing prefers them)."""
        stmt = (
            sa.select(Payment.method, Payment.channel, Payment.channel_account_id)
            .where(
                Payment.app_id == app_id,
                Payment.livemode == livemode,
                Payment.customer_ref == customer_ref,
                Payment.status == PaymentStatus.succeeded,
            )
            .order_by(Payment.paid_at.desc())
            .limit(1)
        )
        row = (await self.session.execute(stmt)).first()
        return LastSuccess(method=row[0], channel=row[1], account_id=row[2]) if row else None

    async def last_succeeded_method(
        self, app_id: str, livemode: bool, customer_ref: str
    ) -> str | None:
        """The method of this customer's last succeeded payment (:meth:`last_success`)."""
        last = await self.last_success(app_id, livemode, customer_ref)
        return last.method if last else None

    async def get_attempt(self, attempt_id: str) -> Attempt | None:
        """As stored now (read again if this session has it: the caller may hold a lock)."""
        return await self.session.get(Attempt, attempt_id, populate_existing=True)

    async def attempts_of(self, payment_id: str) -> list[Attempt]:
        stmt = sa.select(Attempt).where(Attempt.payment_id == payment_id).order_by(Attempt.id)
        return list((await self.session.scalars(stmt)).all())

    async def open_attempts(self, payment_id: str) -> list[Attempt]:
        stmt = sa.select(Attempt).where(
            Attempt.payment_id == payment_id, Attempt.status.not_in(list(FINAL_ATTEMPT))
        )
        return list((await self.session.scalars(stmt)).all())

    @staticmethod
    def pending_expired() -> sa.ColumnElement[bool]:
        return Payment.status == PaymentStatus.pending

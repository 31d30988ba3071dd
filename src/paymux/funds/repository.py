"""Every query of payment funds."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.funds.models import EscrowState, PaymentFunds


class FundsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, funds: PaymentFunds) -> None:
        self.session.add(funds)

    async def get(self, payment_id: str) -> PaymentFunds | None:
        return await self.session.get(PaymentFunds, payment_id)

    async def lock(self, payment_id: str) -> PaymentFunds | None:
        stmt = (
            sa.select(PaymentFunds)
            .where(PaymentFunds.payment_id == payment_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(stmt)).first()

    async def escrow_due(self, now: dt.datetime, limit: int) -> list[str]:
        stmt = (
            sa.select(PaymentFunds.payment_id)
            .where(PaymentFunds.escrow_state == EscrowState.held,
                   PaymentFunds.escrow_deadline <= now)
            .order_by(PaymentFunds.escrow_deadline)
            .limit(limit)
        )  # fmt: skip
        return list((await self.session.scalars(stmt)).all())

    async def settle_due(self, now: dt.datetime, limit: int) -> list[PaymentFunds]:
        """Paid, released, unsettled funds whose settlement date has come, locked (skipping rows
        another worker holds), oldest first."""
        stmt = (
            sa.select(PaymentFunds)
            .where(PaymentFunds.settlement_id.is_(None), PaymentFunds.settle_due_at <= now,
                   PaymentFunds.gross > 0, PaymentFunds.top_up_wallet_id.is_(None))
            .order_by(PaymentFunds.settle_due_at, PaymentFunds.payment_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )  # fmt: skip
        return list((await self.session.scalars(stmt)).all())

    async def of_settlement(self, settlement_id: str) -> list[PaymentFunds]:
        stmt = (
            sa.select(PaymentFunds)
            .where(PaymentFunds.settlement_id == settlement_id)
            .order_by(PaymentFunds.payment_id)
        )
        return list((await self.session.scalars(stmt)).all())

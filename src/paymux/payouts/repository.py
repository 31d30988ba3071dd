"""Every query of payouts."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channel_accounts.models import ChannelAccount
from paymux.payouts.models import Payout, PayoutStatus


class PayoutRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, payout: Payout) -> None:
        self.session.add(payout)

    async def get(self, app_id: str, livemode: bool, payout_id: str) -> Payout | None:
        stmt = sa.select(Payout).where(
            Payout.id == payout_id, Payout.app_id == app_id, Payout.livemode == livemode
        )
        return (await self.session.scalars(stmt)).first()

    async def find(self, app_id: str, livemode: bool, out_payout_no: str) -> Payout | None:
        stmt = sa.select(Payout).where(
            Payout.app_id == app_id, Payout.livemode == livemode,
            Payout.out_payout_no == out_payout_no,
        )  # fmt: skip
        return (await self.session.scalars(stmt)).first()

    async def lock(self, payout_id: str) -> Payout | None:
        stmt = (
            sa.select(Payout).where(Payout.id == payout_id).with_for_update()
            .execution_options(populate_existing=True)
        )  # fmt: skip
        return (await self.session.scalars(stmt)).first()

    async def due(self, now: dt.datetime, limit: int) -> list[str]:
        stmt = (
            sa.select(Payout.id)
            .where(Payout.status.in_([PayoutStatus.pending, PayoutStatus.processing]),
                   Payout.due_at <= now)
            .order_by(Payout.due_at)
            .limit(limit)
        )  # fmt: skip
        return list((await self.session.scalars(stmt)).all())

    async def transfer_account(self, app_id: str, channel: str, mode: str) -> ChannelAccount | None:
        stmt = (
            sa.select(ChannelAccount)
            .where(ChannelAccount.app_id == app_id, ChannelAccount.channel == channel,
                   ChannelAccount.mode == mode, ChannelAccount.enabled.is_(True))
            .order_by(ChannelAccount.priority, ChannelAccount.id)
        )  # fmt: skip
        return (await self.session.scalars(stmt)).first()

    async def search(
        self, app_id: str, livemode: bool, *, limit: int, starting_after: str | None
    ) -> tuple[list[Payout], bool]:
        stmt = sa.select(Payout).where(Payout.app_id == app_id, Payout.livemode == livemode)
        if starting_after:
            stmt = stmt.where(Payout.id < starting_after)
        rows = list((await self.session.scalars(stmt.order_by(Payout.id.desc())
                                                 .limit(limit + 1))).all())  # fmt: skip
        return rows[:limit], len(rows) > limit

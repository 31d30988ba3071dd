"""Every query of channel accounts and the notification inbox."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channels.models import ChannelAccount, ChannelEvent


class ChannelRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, account_id: str) -> ChannelAccount | None:
        return await self.session.get(ChannelAccount, account_id)

    async def get_for_app(self, app_id: str, account_id: str) -> ChannelAccount | None:
        stmt = sa.select(ChannelAccount).where(
            ChannelAccount.id == account_id, ChannelAccount.app_id == app_id
        )
        return (await self.session.scalars(stmt)).first()

    async def list_for_app(
        self, app_id: str, *, mode: str | None = None, enabled_only: bool = False
    ) -> list[ChannelAccount]:
        stmt = sa.select(ChannelAccount).where(ChannelAccount.app_id == app_id)
        if mode is not None:
            stmt = stmt.where(ChannelAccount.mode == mode)
        if enabled_only:
            stmt = stmt.where(ChannelAccount.enabled.is_(True))
        stmt = stmt.order_by(ChannelAccount.priority, ChannelAccount.id)
        return list((await self.session.scalars(stmt)).all())

    def add(self, obj: ChannelAccount | ChannelEvent) -> None:
        self.session.add(obj)

    async def insert_event(self, event: ChannelEvent) -> bool:
        """Store a notification in the inbox; False if this channel event was seen before.

        Runs in a savepoint so a duplicate (unique violation, including one racing with a
        concurrent transaction) leaves the caller's transaction usable.
        """
        try:
            async with self.session.begin_nested():
                self.session.add(event)
                await self.session.flush()
        except sa.exc.IntegrityError:
            return False
        return True

    async def get_event(self, account_id: str, event_key: str) -> ChannelEvent | None:
        stmt = sa.select(ChannelEvent).where(
            ChannelEvent.channel_account_id == account_id, ChannelEvent.event_key == event_key
        )
        return (await self.session.scalars(stmt)).first()

    async def list_events(self, out_trade_no: str) -> list[ChannelEvent]:
        stmt = (
            sa.select(ChannelEvent)
            .where(ChannelEvent.out_trade_no == out_trade_no)
            .order_by(ChannelEvent.received_at)
        )
        return list((await self.session.scalars(stmt)).all())

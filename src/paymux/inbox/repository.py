"""Every query of the notification inbox."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.inbox.models import ChannelEvent


class InboxRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

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

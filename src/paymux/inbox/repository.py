"""Every query of the notification inbox."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.inbox.models import ChannelEvent
from paymux.kit.db import insert_of


class InboxRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert_event(self, event: ChannelEvent) -> bool:
        """Store a notification in the inbox; False if this channel event was seen before.

        One ``INSERT … ON CONFLICT DO NOTHING``: a duplicate, including one racing with a
        concurrent transaction (which waits for it), leaves the caller's transaction usable.
        The row is written from ``event``, which stays outside the session
        (:meth:`set_result` records the outcome)."""
        columns = {c.key: getattr(event, c.key) for c in ChannelEvent.__table__.columns}
        columns = {k: v for k, v in columns.items() if v is not None}  # None: the default
        inserted = await self.session.execute(
            insert_of(self.session.get_bind().dialect.name)(ChannelEvent)
            .values(columns)
            .on_conflict_do_nothing(index_elements=["channel_account_id", "event_key"])
            .returning(ChannelEvent.id)
        )
        return inserted.first() is not None

    async def set_result(self, event_id: str, result: str) -> None:
        await self.session.execute(
            sa.update(ChannelEvent)
            .where(ChannelEvent.id == event_id)
            .values(result=result)
            .execution_options(synchronize_session=False)
        )

    async def get_event(self, account_id: str, event_key: str) -> ChannelEvent | None:
        stmt = sa.select(ChannelEvent).where(
            ChannelEvent.channel_account_id == account_id, ChannelEvent.event_key == event_key
        )
        return (await self.session.scalars(stmt)).first()

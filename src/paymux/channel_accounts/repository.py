"""Every query of channel accounts."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channel_accounts.models import ChannelAccount


class ChannelAccountRepository:
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

    def add(self, account: ChannelAccount) -> None:
        self.session.add(account)

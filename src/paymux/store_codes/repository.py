"""Every query of store codes."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.store_codes.models import StoreCode


class StoreCodeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, app_id: str, livemode: bool, store_code_id: str) -> StoreCode | None:
        stmt = sa.select(StoreCode).where(
            StoreCode.id == store_code_id,
            StoreCode.app_id == app_id,
            StoreCode.livemode == livemode,
        )
        return (await self.session.scalars(stmt)).first()

    async def by_code(self, code: str) -> StoreCode | None:
        stmt = sa.select(StoreCode).where(StoreCode.code == code)
        return (await self.session.scalars(stmt)).first()

    async def list(
        self, app_id: str, livemode: bool, *, limit: int, starting_after: str | None = None
    ) -> tuple[list[StoreCode], bool]:
        stmt = sa.select(StoreCode).where(
            StoreCode.app_id == app_id, StoreCode.livemode == livemode
        )
        if starting_after is not None:
            stmt = stmt.where(StoreCode.id < starting_after)
        stmt = stmt.order_by(StoreCode.id.desc()).limit(limit + 1)
        rows = list((await self.session.scalars(stmt)).all())
        return rows[:limit], len(rows) > limit

    def add(self, store_code: StoreCode) -> None:
        self.session.add(store_code)

"""Every query of settlement terms and batches."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.settlement.models import Settlement, SettlementConfig


class SettlementRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: Settlement | SettlementConfig) -> None:
        self.session.add(obj)

    async def config(self, merchant_id: str) -> SettlementConfig | None:
        return await self.session.get(SettlementConfig, merchant_id)

    async def get(self, merchant_id: str, livemode: bool, settlement_id: str) -> Settlement | None:
        stmt = sa.select(Settlement).where(
            Settlement.id == settlement_id, Settlement.merchant_id == merchant_id,
            Settlement.livemode == livemode,
        )  # fmt: skip
        return (await self.session.scalars(stmt)).first()

    async def search(
        self, merchant_id: str, livemode: bool, *, limit: int, starting_after: str | None
    ) -> tuple[list[Settlement], bool]:
        stmt = sa.select(Settlement).where(
            Settlement.merchant_id == merchant_id, Settlement.livemode == livemode
        )
        if starting_after:
            stmt = stmt.where(Settlement.id < starting_after)
        rows = list((await self.session.scalars(stmt.order_by(Settlement.id.desc())
                                                 .limit(limit + 1))).all())  # fmt: skip
        return rows[:limit], len(rows) > limit

"""Every query of splits."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.splits.models import Split, SplitPart, SplitStatus


class SplitRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: Split | SplitPart) -> None:
        self.session.add(obj)

    async def get(self, app_id: str, livemode: bool, split_id: str) -> Split | None:
        stmt = sa.select(Split).where(
            Split.id == split_id, Split.app_id == app_id, Split.livemode == livemode
        )
        return (await self.session.scalars(stmt)).first()

    async def lock(self, split_id: str) -> Split | None:
        stmt = (
            sa.select(Split).where(Split.id == split_id).with_for_update()
            .execution_options(populate_existing=True)
        )  # fmt: skip
        return (await self.session.scalars(stmt)).first()

    async def parts(self, split_id: str) -> list[SplitPart]:
        stmt = sa.select(SplitPart).where(SplitPart.split_id == split_id).order_by(SplitPart.seq)
        return list((await self.session.scalars(stmt)).all())

    async def of_payment(self, payment_id: str) -> list[Split]:
        stmt = sa.select(Split).where(Split.payment_id == payment_id).order_by(Split.id)
        return list((await self.session.scalars(stmt)).all())

    async def due(self, now: dt.datetime, limit: int) -> list[str]:
        stmt = (
            sa.select(Split.id)
            .where(Split.status == SplitStatus.processing, Split.due_at <= now)
            .order_by(Split.due_at)
            .limit(limit)
        )
        return list((await self.session.scalars(stmt)).all())

    async def search(
        self, app_id: str, livemode: bool, *, payment_id: str | None, limit: int,
        starting_after: str | None,
    ) -> tuple[list[Split], bool]:  # fmt: skip
        stmt = sa.select(Split).where(Split.app_id == app_id, Split.livemode == livemode)
        if payment_id:
            stmt = stmt.where(Split.payment_id == payment_id)
        if starting_after:
            stmt = stmt.where(Split.id < starting_after)
        rows = list((await self.session.scalars(stmt.order_by(Split.id.desc())
                                                 .limit(limit + 1))).all())  # fmt: skip
        return rows[:limit], len(rows) > limit

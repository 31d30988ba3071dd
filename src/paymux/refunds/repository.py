"""Every query of refunds."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.refunds.models import Refund, RefundStatus


class RefundRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, refund: Refund) -> None:
        self.session.add(refund)

    async def get(self, app_id: str, livemode: bool, refund_id: str) -> Refund | None:
        stmt = sa.select(Refund).where(
            Refund.id == refund_id, Refund.app_id == app_id, Refund.livemode == livemode
        )
        return (await self.session.scalars(stmt)).first()

    async def lock(self, refund_id: str) -> Refund | None:
        stmt = (
            sa.select(Refund)
            .where(Refund.id == refund_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(stmt)).first()

    async def find_by_out_refund_no(
        self, app_id: str, livemode: bool, out_refund_no: str
    ) -> Refund | None:
        stmt = sa.select(Refund).where(
            Refund.app_id == app_id, Refund.livemode == livemode,
            Refund.out_refund_no == out_refund_no,
        )  # fmt: skip
        return (await self.session.scalars(stmt)).first()

    async def committed_amount(self, payment_id: str, attempt_id: str | None) -> int:
        """What of the payment's money (taken by ``attempt_id``, its paid attempt) is refunded,
        on its way back or waiting for a risk review; a second order's automatic refund is
        apart."""
        stmt = sa.select(sa.func.coalesce(sa.func.sum(Refund.amount), 0)).where(
            Refund.payment_id == payment_id,
            Refund.attempt_id.is_not_distinct_from(attempt_id),
            Refund.status.in_([RefundStatus.review, RefundStatus.pending, RefundStatus.succeeded]),
        )
        return int(await self.session.scalar(stmt) or 0)

    async def fee_returned(self, payment_id: str, attempt_id: str | None) -> int:
        """The channel fee refunds of the payment (pending or succeeded) give back."""
        stmt = sa.select(sa.func.coalesce(sa.func.sum(Refund.fee_returned), 0)).where(
            Refund.payment_id == payment_id,
            Refund.attempt_id.is_not_distinct_from(attempt_id),
            Refund.status.in_([RefundStatus.review, RefundStatus.pending, RefundStatus.succeeded]),
        )
        return int(await self.session.scalar(stmt) or 0)

    async def search(
        self, app_id: str, livemode: bool, *, payment_id: str | None, status: str | None,
        limit: int, starting_after: str | None,
    ) -> tuple[list[Refund], bool]:  # fmt: skip
        stmt = sa.select(Refund).where(Refund.app_id == app_id, Refund.livemode == livemode)
        if payment_id is not None:
            stmt = stmt.where(Refund.payment_id == payment_id)
        if status is not None:
            stmt = stmt.where(Refund.status == status)
        if starting_after is not None:
            stmt = stmt.where(Refund.id < starting_after)
        rows = list(
            (await self.session.scalars(stmt.order_by(Refund.id.desc()).limit(limit + 1))).all()
        )
        return rows[:limit], len(rows) > limit

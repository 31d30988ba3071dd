"""Escrow (担保交易): a payment whose money waits in the merchant's escrow account until the
buyer confirms, the platform releases it, or the auto-confirm deadline passes. Refunds while
held come out of escrow; a full refund ends the escrow."""

from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.funds import hooks
from paymux.funds.models import EscrowState, PaymentFunds
from paymux.funds.repository import FundsRepository
from paymux.kit import clock
from paymux.kit.errors import Conflict, NotFound
from paymux.payments.models import Payment
from paymux.payments.repository import PaymentRepository
from paymux.payments.states import PaymentStatus
from paymux.runtime import Runtime
from paymux.webhooks import service as webhooks

log = structlog.get_logger(__name__)

RELEASERS = ("buyer", "platform", "auto")


async def release(session: AsyncSession, payment_id: str, *, by: str) -> PaymentFunds:
    """Release a held escrow (the payment row is locked first, like every money change)."""
    assert by in RELEASERS
    payment = await PaymentRepository(session).lock(payment_id)
    funds = await FundsRepository(session).lock(payment_id)
    if funds is None or funds.escrow_state == EscrowState.none:
        raise Conflict("not_escrow", "The payment was not made with escrow.")
    if payment.status != PaymentStatus.succeeded or not funds.gross:
        raise Conflict("escrow_not_held", "The payment has not been paid into escrow yet.")
    await hooks.escrow_released(session, payment, by=by)
    await webhooks.emit(
        session, app_id=payment.app_id, livemode=payment.livemode, type="escrow.released",
        data={"payment": payment.id, "released_by": by, "amount": funds.remaining,
              "currency": payment.currency},
    )  # fmt: skip
    return funds


async def release_for_app(
    session: AsyncSession, *, app_id: str, livemode: bool, payment_id: str, by: str
) -> tuple[Payment, PaymentFunds]:
    payment = await PaymentRepository(session).get(app_id, livemode, payment_id)
    if payment is None:
        raise NotFound("payment", payment_id)
    funds = await release(session, payment.id, by=by)
    return payment, funds


async def auto_confirm(rt: Runtime, *, limit: int = 100) -> int:
    """Release escrows whose auto-confirm deadline has passed (the worker's job)."""
    async with rt.db.read() as session:
        due = await FundsRepository(session).escrow_due(clock.now(), limit)
    released = 0
    for payment_id in due:
        try:
            async with rt.db.transaction() as session:
                funds = await FundsRepository(session).get(payment_id)
                if funds is None or funds.escrow_state != EscrowState.held:
                    continue
                if funds.refund_reserved:
                    continue  # a refund is in flight; release once it has ended
                await release(session, payment_id, by="auto")
                released += 1
        except Conflict as exc:
            log.info("escrow_auto_confirm_skipped", payment=payment_id, code=exc.code)
    return released

"""What happens to money when a payment succeeds or its escrow is released: the funds posting
with the channel's fee and the merchant's settlement date, then the splits now due. Called by
payments and escrow inside their transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channel_accounts.models import ChannelAccount
from paymux.funds import service as funds_service
from paymux.kit import clock
from paymux.ledger.models import LedgerAccount
from paymux.payments.models import Payment
from paymux.risk import hooks as risk_hooks
from paymux.settlement import policy
from paymux.settlement import service as settlement
from paymux.splits import service as splits


async def payment_succeeded(
    session: AsyncSession, payment: Payment, *, source: LedgerAccount | None = None
) -> None:
    fee_bps = 0
    if source is None and payment.channel_account_id is not None:
        account = await session.get(ChannelAccount, payment.channel_account_id)
        fee_bps = account.fee_rate_bps if account is not None else 0
    terms = await settlement.terms_of(session, payment.merchant_id)
    held = await risk_hooks.payment_succeeded(session, payment)
    funds = await funds_service.on_payment_succeeded(
        session, payment, source=source, channel_fee_bps=fee_bps,
        settle_after=policy.due_at(terms, clock.now()), risk_hold=held,
    )  # fmt: skip
    if not held:
        await splits.on_money_moved(session, payment, funds)


async def risk_hold_released(session: AsyncSession, payment: Payment) -> None:
    terms = await settlement.terms_of(session, payment.merchant_id)
    funds = await funds_service.release_risk_hold(
        session, payment, settle_after=policy.due_at(terms, clock.now())
    )
    await splits.on_money_moved(session, payment, funds)


async def escrow_released(session: AsyncSession, payment: Payment, *, by: str) -> None:
    terms = await settlement.terms_of(session, payment.merchant_id)
    funds = await funds_service.release_escrow(
        session, payment, by=by, settle_after=policy.due_at(terms, clock.now())
    )
    await splits.on_money_moved(session, payment, funds)

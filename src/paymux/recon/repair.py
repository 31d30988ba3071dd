"""Safe automatic repair, never from the bill alone: a bill line that says a payment was paid
while we say it was not (掉单) is checked by *querying the channel*; only a confirmed success of
the same amount and currency, on a payment still open, is applied — through the very path a
notification or the janitor takes (:func:`paymux.payments.transitions.apply_state`: the
payment's state, its ledger posting and its webhook, each once). A payment already closed here
gets a suggested refund instead. A refund we still have pending is asked about through the
refunds janitor (:func:`paymux.refunds.service.resolve`), which settles it through the refund
state machine. A success of ours is never flipped by reconciliation.

A payout (a transfer) a funds bill lists while ours is still pending or processing is asked
about too (:func:`confirm_payout`): a confirmed transfer of the same amount is recorded through
the payouts' own path (:func:`paymux.payouts.service.record`, as its notification would be).

No query here runs inside a database transaction (invariant 6).
"""

from __future__ import annotations

from enum import StrEnum
from typing import cast

import structlog

from paymux.channel_accounts import service as channel_service
from paymux.channels import base
from paymux.payments import transitions
from paymux.payments.models import Attempt
from paymux.payments.repository import PaymentRepository
from paymux.payments.states import FINAL_ATTEMPT, AttemptStatus, PaymentStatus
from paymux.payouts import service as payouts
from paymux.payouts.models import Payout, PayoutStatus
from paymux.payouts.repository import PayoutRepository
from paymux.refunds import service as refunds
from paymux.refunds.models import Refund, RefundStatus
from paymux.runtime import Runtime

log = structlog.get_logger(__name__)


class Confirmed(StrEnum):
    repaired = "repaired"
    """The channel confirmed the payment; it succeeded here now (ledger and webhook once)."""
    closed_here = "closed_here"
    """The channel confirmed it, but our payment was already closed: refund suggested."""
    already = "already"
    """It had succeeded here meanwhile (a notification or the janitor got there first)."""
    disagrees = "disagrees"
    """The channel's own answer does not confirm the bill (not paid, or another amount)."""
    unreachable = "unreachable"
    """The channel could not be asked: nothing is known."""


async def confirm_payment(rt: Runtime, attempt_id: str) -> tuple[Confirmed, str]:
    """Ask the channel about one attempt the bill lists as paid; apply a confirmed success.
    Returns the outcome and a sentence for the break's history."""
    async with rt.db.read() as session:
        attempt = await PaymentRepository(session).get_attempt(attempt_id)
        assert attempt is not None
        account = await channel_service.account_of(session, attempt.channel_account_id)
    adapter = channel_service.adapter_for(rt.vault, account, rt.channel_http)
    try:
        state = await adapter.query_payment(attempt_id, channel_trade_no=attempt.channel_trade_no)
    except base.ChannelError as exc:
        log.info("recon_query_failed", attempt=attempt_id, code=exc.code)
        return Confirmed.unreachable, f"the channel could not be asked ({exc.code})"
    if state.status is not base.ChannelPaymentStatus.succeeded:
        return Confirmed.disagrees, f"the channel's query says {state.status.value}"
    problem = transitions.amount_problem(state, attempt)
    if problem is not None:
        return Confirmed.disagrees, (
            f"the channel's query says paid {state.amount} {state.currency}, not "
            f"{attempt.amount} {attempt.currency}"
        )
    async with rt.db.transaction() as session:
        repo = PaymentRepository(session)
        payment = await repo.lock(attempt.payment_id)
        fresh = await repo.get_attempt(attempt_id)
        assert fresh is not None
        if fresh.status == AttemptStatus.succeeded:
            return Confirmed.already, "the payment had succeeded here meanwhile"
        if (
            payment.status != PaymentStatus.pending
            or payment.current_attempt_id != fresh.id
            or fresh.status in FINAL_ATTEMPT
        ):
            return Confirmed.closed_here, (
                f"the channel confirms it was paid, but the payment is {payment.status} here"
            )
        await transitions.apply_state(session, payment, fresh, state, rt.settings.public_url)
        if not _succeeded(fresh):
            return Confirmed.disagrees, "the channel's confirmation could not be applied"
    log.warning("recon_repaired_payment", payment=attempt.payment_id, attempt=attempt_id)
    return Confirmed.repaired, "the channel's query confirmed the payment; applied"


def _succeeded(attempt: Attempt) -> bool:
    return attempt.status == AttemptStatus.succeeded


async def settle_refund(rt: Runtime, refund_id: str) -> tuple[RefundStatus | None, str]:
    """Ask the channel about a refund pending here, through the refunds janitor; its status
    after (None: the channel could not be asked, it stays pending) and a sentence."""
    try:
        await refunds.resolve(rt, refund_id)
    except base.ChannelError as exc:  # resolve keeps technical failures to itself; be safe
        return None, f"the channel could not be asked ({exc.code})"
    async with rt.db.read() as session:
        refund = await session.get(Refund, refund_id)
        assert refund is not None
        status = RefundStatus(refund.status)
    if status == RefundStatus.pending:
        return None, "the refund is still pending at the channel (or it could not be asked)"
    return status, f"the channel's query settled the refund as {status.value}"


async def confirm_payout(rt: Runtime, payout_id: str) -> tuple[Confirmed, str]:
    """Ask the channel about a payout a funds bill lists as paid while ours is not final;
    record a confirmed transfer of the same amount. Returns the outcome and a sentence."""
    async with rt.db.read() as session:
        payout = await session.get(Payout, payout_id)
        assert payout is not None
        account = await channel_service.account_of(session, payout.channel_account_id)
    adapter = channel_service.adapter_for(rt.vault, account, rt.channel_http)
    if not callable(getattr(adapter, "query_transfer", None)):
        return Confirmed.unreachable, "the channel cannot be asked about transfers"
    payer = cast(base.TransferCapable, adapter)
    try:
        state = await payer.query_transfer(payout_id)
    except base.ChannelError as exc:
        log.info("recon_query_failed", payout=payout_id, code=exc.code)
        return Confirmed.unreachable, f"the channel could not be asked ({exc.code})"
    if state.status is not base.ChannelTransferStatus.succeeded:
        return Confirmed.disagrees, f"the channel's query says {state.status.value}"
    if state.amount is not None and state.amount != payout.amount:
        return Confirmed.disagrees, (
            f"the channel's query says {state.amount} was paid, not {payout.amount}"
        )
    async with rt.db.transaction() as session:
        locked = await PayoutRepository(session).lock(payout_id)
        assert locked is not None
        if locked.status == PayoutStatus.succeeded:
            return Confirmed.already, "the payout had succeeded here meanwhile"
        if locked.status == PayoutStatus.failed:
            return Confirmed.closed_here, (
                "the channel confirms the transfer, but the payout failed here and its money "
                "went back to the balance"
            )
        await payouts.record(session, locked, state)
    log.warning("recon_repaired_payout", payout=payout_id)
    return Confirmed.repaired, "the channel's query confirmed the transfer; recorded"

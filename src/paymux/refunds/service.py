"""Refunds: reserve the amount under the payment's lock, ask the channel account that took the
money (outside any transaction), record its answer; the janitor resolves what the answer left
open. A payment is never refunded beyond its amount, even under concurrent requests: creates of
one payment serialise on its row lock and count every pending and succeeded refund.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channel_accounts import service as channel_service
from paymux.channel_accounts.models import ChannelAccount
from paymux.channel_accounts.repository import ChannelAccountRepository
from paymux.channels import base, registry
from paymux.funds import service as funds_service
from paymux.funds.repository import FundsRepository
from paymux.kit import clock
from paymux.kit.errors import Conflict, NotFound
from paymux.kit.ids import new_id
from paymux.payments.models import Attempt
from paymux.payments.repository import PaymentRepository
from paymux.payments.states import AttemptStatus, PaymentStatus
from paymux.payments.transitions import next_query_at
from paymux.refunds.models import REFUND_TRANSITIONS, Refund, RefundStatus
from paymux.refunds.repository import RefundRepository
from paymux.refunds.schemas import RefundCreate, RefundOut
from paymux.risk import hooks as risk
from paymux.runtime import Runtime
from paymux.splits import service as splits
from paymux.webhooks import service as webhooks

log = structlog.get_logger(__name__)

Answer = base.RefundState | base.ChannelError
"""What a channel call produced: a state, or the error it raised."""


async def get(session: AsyncSession, *, app_id: str, livemode: bool, refund_id: str) -> Refund:
    refund = await RefundRepository(session).get(app_id, livemode, refund_id)
    if refund is None:
        raise NotFound("refund", refund_id)
    return refund


async def create(rt: Runtime, *, app_id: str, livemode: bool, req: RefundCreate,
                 screen: bool = True) -> Refund:  # fmt: skip
    """Reserve and ask for a refund. ``screen``: run the risk rules (not for the refund a
    declined risk review makes itself)."""
    async with rt.db.transaction() as session:
        refund, fresh = await _reserve(session, rt, app_id=app_id, livemode=livemode, req=req,
                                       screen=screen)  # fmt: skip
        if refund.status == RefundStatus.review:
            return refund
        if refund.channel_account_id is None:  # a wallet payment: the ledger is the channel
            if fresh:
                await _move(session, refund, RefundStatus.succeeded)
            return refund
        account = await _account(session, refund.channel_account_id)
        paid = await _paid_attempt(session, refund)
    if not fresh:
        return refund
    answer = await _ask(rt, refund, account, paid)
    return await _record(rt, refund.id, answer)


async def _reserve(
    session: AsyncSession,
    rt: Runtime,
    *,
    app_id: str,
    livemode: bool,
    req: RefundCreate,
    screen: bool = True,
) -> tuple[Refund, bool]:
    payments = PaymentRepository(session)
    found = await payments.get(app_id, livemode, req.payment)
    if found is None:
        raise NotFound("payment", req.payment)
    payment = await payments.lock(found.id)
    repo = RefundRepository(session)
    existing = await repo.find_by_out_refund_no(app_id, livemode, req.out_refund_no)
    if existing is not None:
        if existing.payment_id == payment.id and req.amount in (None, existing.amount):
            return existing, False
        raise Conflict(
            "duplicate_out_refund_no",
            f"out_refund_no {req.out_refund_no!r} was used for another refund.",
            param="out_refund_no",
        )
    if payment.status != PaymentStatus.succeeded:
        raise Conflict(
            "payment_not_refundable", f"The payment is {payment.status}; only succeeded "
            "payments can be refunded.", param="payment",
        )  # fmt: skip
    refundable = payment.amount - await repo.committed_amount(
        payment.id, payment.current_attempt_id
    )
    amount = req.amount if req.amount is not None else refundable
    if refundable <= 0 or amount > refundable:
        raise Conflict(
            "refund_exceeds_payment",
            f"{refundable} of the payment's {payment.amount} can still be refunded.",
            param="amount",
        )
    attempt = None
    if payment.current_attempt_id is not None:
        attempt = await payments.get_attempt(payment.current_attempt_id)
        assert attempt is not None and attempt.status == AttemptStatus.succeeded
    screened = await risk.screen_refund(session, payment, amount) if screen else None
    waits = screened is not None and risk.waits(screened)
    call_seconds = rt.settings.channel_timeout_seconds
    refund = Refund(
        id=new_id("re"), app_id=app_id, livemode=livemode, payment_id=payment.id,
        attempt_id=attempt.id if attempt else None,
        channel=attempt.channel if attempt else payment.channel or "wallet",
        channel_account_id=attempt.channel_account_id if attempt else None,
        out_refund_no=req.out_refund_no, amount=amount, currency=payment.currency,
        reason=req.reason, status=RefundStatus.review if waits else RefundStatus.pending,
        query_count=0, split_returns={},
        query_due_at=(clock.now() + dt.timedelta(seconds=call_seconds + 5)
                      if attempt and not waits else None),
    )  # fmt: skip
    repo.add(refund)
    try:
        await session.flush()
    except sa.exc.IntegrityError:
        raise Conflict(
            "duplicate_out_refund_no",
            f"out_refund_no {req.out_refund_no!r} was used for another refund.",
            param="out_refund_no",
        ) from None
    funds = await FundsRepository(session).get(payment.id)
    legs, returned = ([], {}) if funds is None else await splits.refund_returns(
        session, funds, amount)  # fmt: skip
    refund.split_returns = returned
    if funds is not None and attempt is not None and funds.channel_fee and \
            base.returns_fee_on_refund(registry.get(attempt.channel)):  # fmt: skip
        given = await repo.fee_returned(payment.id, attempt.id)
        refund.fee_returned = funds_service.fee_share(
            funds, amount, given, last=amount == refundable
        )
    refund.ledger_hold_id = await funds_service.reserve_refund(
        session, payment, refund.id, amount, returns=legs, fee_returned=refund.fee_returned or 0
    )
    if screened is not None:
        await risk.money_out_created(session, screened, refund.id, "refunds")
    return refund, True


async def review_closed(session: AsyncSession, refund_id: str, approved: bool) -> None:
    """A risk review of a waiting refund closed: approved, it is asked for (by
    :func:`resolve`, which the caller runs after this commits); declined, it fails and its
    reservation is released."""
    refund = await RefundRepository(session).lock(refund_id)
    assert refund is not None
    if refund.status != RefundStatus.review:
        return
    if approved:
        refund.status = RefundStatus.pending
        refund.query_due_at = clock.now() if refund.attempt_id else None
        return
    await _move(session, refund, RefundStatus.failed,
                failure=("risk_declined", "Declined by risk review."))  # fmt: skip


async def _paid_attempt(session: AsyncSession, refund: Refund) -> Attempt:
    """The attempt that took the money the refund gives back."""
    assert refund.attempt_id is not None
    attempt = await PaymentRepository(session).get_attempt(refund.attempt_id)
    assert attempt is not None
    return attempt


async def _account(session: AsyncSession, account_id: str) -> ChannelAccount:
    account = await ChannelAccountRepository(session).get(account_id)
    assert account is not None
    return account


async def _ask(rt: Runtime, refund: Refund, account: ChannelAccount, paid: Attempt) -> Answer:
    """Send (or re-send: the refund number makes it the same request) the refund."""
    adapter = channel_service.adapter_for(rt.vault, account, rt.channel_http)
    request = base.CreateRefund(
        out_refund_no=refund.id, out_trade_no=paid.id, channel_trade_no=paid.channel_trade_no,
        amount=refund.amount, total_amount=paid.amount, currency=refund.currency,
        notify_url=channel_service.notify_url(rt.settings.public_url, account),
        reason=refund.reason,
    )  # fmt: skip
    try:
        return await adapter.create_refund(request)
    except base.ChannelError as exc:
        log.info("channel_refund_error", refund=refund.id, code=exc.code, kind=type(exc).__name__)
        return exc


async def _record(rt: Runtime, refund_id: str, answer: Answer) -> Refund:
    async with rt.db.transaction() as session:
        refund = await RefundRepository(session).lock(refund_id)
        assert refund is not None
        if isinstance(answer, base.BusinessError):
            await _move(session, refund, RefundStatus.failed, failure=(answer.code, answer.message))
        elif isinstance(answer, base.ChannelError):  # unknown or retryable: the janitor asks
            if refund.status == RefundStatus.pending:
                refund.query_due_at = next_query_at(refund.query_count)
        else:
            await apply_state(session, refund, answer)
    return refund


async def apply_state(session: AsyncSession, refund: Refund, state: base.RefundState) -> bool:
    """Apply the channel's view of a locked refund; stale and repeated views change nothing."""
    if state.channel_refund_no and not refund.channel_refund_no:
        refund.channel_refund_no = state.channel_refund_no[:64]
    if state.status is base.ChannelRefundStatus.succeeded:
        return await _move(session, refund, RefundStatus.succeeded, at=state.refunded_at)
    if state.status is base.ChannelRefundStatus.failed:
        failure = (state.failure_code or "refund_failed", state.failure_message)
        return await _move(session, refund, RefundStatus.failed, failure=failure)
    if refund.status == RefundStatus.pending and state.status is base.ChannelRefundStatus.pending:
        refund.query_due_at = next_query_at(max(refund.query_count, 1))
    return False


async def _move(
    session: AsyncSession, refund: Refund, target: RefundStatus, *,
    failure: tuple[str, str | None] | None = None, at: dt.datetime | None = None,
) -> bool:  # fmt: skip
    current = RefundStatus(refund.status)
    if current == target:
        return False
    if target not in REFUND_TRANSITIONS[current]:
        log.error("refund_state_conflict", refund=refund.id, current=current, target=target)
        return False
    refund.status = target
    refund.query_due_at = None
    succeeded = target == RefundStatus.succeeded
    payment = await PaymentRepository(session).lock(refund.payment_id)
    if refund.ledger_hold_id is not None:
        returned = refund.split_returns or {}
        await funds_service.finish_refund(
            session, refund.payment_id, refund.ledger_hold_id, refund.amount,
            succeeded=succeeded, returned=sum(returned.values()),
        )  # fmt: skip
        if not succeeded:
            await splits.undo_returns(session, returned)
    if succeeded:
        refund.succeeded_at = at or clock.now()
        if refund.attempt_id == payment.current_attempt_id:  # not a second order's money
            payment.amount_refunded = (payment.amount_refunded or 0) + refund.amount
    elif failure is not None:
        refund.failure_code = failure[0][:64]
        refund.failure_message = (failure[1] or "")[:500] or None
    await webhooks.emit(
        session, app_id=refund.app_id, livemode=refund.livemode, type=f"refund.{target.value}",
        data=RefundOut.of(refund).model_dump(mode="json"),
    )  # fmt: skip
    return True


async def apply_notification(
    session: AsyncSession, account: ChannelAccount, state: base.RefundState, *, strict: bool = True
) -> str:
    """A verified refund notification, cross-checked against our own refund. An unknown refund
    is refused (``strict``) or, for a refund riding on another notification, ignored."""
    refund = await RefundRepository(session).lock(state.out_refund_no)
    if refund is None or refund.channel_account_id != account.id:
        if not strict:
            return "no_change"
        raise base.InvalidNotification("unknown_refund", "No such refund for this account.")
    # A refund notified on its own says what it refunded (one riding on a trade's notification,
    # Alipay's, reports only the trade's running total): a success that does not, or any
    # amount or currency not ours, is refused like a payment's (payments.transitions).
    succeeded = state.status is base.ChannelRefundStatus.succeeded
    if strict and succeeded and (state.amount is None or state.currency is None):
        raise base.InvalidNotification("amount_missing", "Refund success without its amount.")
    if (state.amount is not None and state.amount != refund.amount) or (
        state.currency is not None and state.currency != refund.currency
    ):
        raise base.InvalidNotification(
            "amount_mismatch",
            f"Notified refund of {state.amount} {state.currency}, ours is {refund.amount} "
            f"{refund.currency}.",
        )
    return "applied" if await apply_state(session, refund, state) else "no_change"


async def resolve(rt: Runtime, refund_id: str) -> None:
    """The janitor: ask the channel about a pending refund; re-send it if the channel never got
    it (same refund number, so at most one refund happens)."""
    async with rt.db.read() as session:
        refund = await session.get(Refund, refund_id)
        if refund is None or refund.status != RefundStatus.pending:
            return
        assert refund.channel_account_id is not None and refund.attempt_id is not None
        account = await _account(session, refund.channel_account_id)
        paid = await _paid_attempt(session, refund)
    adapter = channel_service.adapter_for(rt.vault, account, rt.channel_http)
    answer: Answer
    try:
        state = await adapter.query_refund(
            refund.id, refund.attempt_id, channel_refund_no=refund.channel_refund_no
        )
    except base.ChannelError as exc:  # a failed query is never a failed refund
        answer = base.UnknownOutcome(exc.code, exc.message)
    else:
        found = state.status is not base.ChannelRefundStatus.not_found
        answer = state if found else await _ask(rt, refund, account, paid)
    async with rt.db.transaction() as session:
        locked = await RefundRepository(session).lock(refund_id)
        assert locked is not None
        locked.query_count += 1
    await _record(rt, refund_id, answer)
    await _flag_if_overdue(rt, refund_id)


async def _flag_if_overdue(rt: Runtime, refund_id: str) -> None:
    """Once, when a refund is still pending ``refund_attention_seconds`` after it was asked
    for: flag it and tell the merchant (``refund.requires_attention``). It stays pending and
    queried — failing it here could refund twice if the channel did pay it back."""
    async with rt.db.transaction() as session:
        refund = await RefundRepository(session).lock(refund_id)
        assert refund is not None
        overdue = refund.created_at + dt.timedelta(seconds=rt.settings.refund_attention_seconds)
        if refund.status != RefundStatus.pending or refund.attention_at or clock.now() < overdue:
            return
        refund.attention_at = clock.now()
        log.error("refund_requires_attention", refund=refund.id, channel=refund.channel)
        await webhooks.emit(session, app_id=refund.app_id, livemode=refund.livemode,
                            type="refund.requires_attention",
                            data=RefundOut.of(refund).model_dump(mode="json"))  # fmt: skip

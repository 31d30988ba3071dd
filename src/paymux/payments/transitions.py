"""What the channel says, applied: the transitions of attempts and payments inside the caller's
transaction (no network I/O here).

Every status change goes through the transition tables in :mod:`paymux.payments.states` while
the payment row is locked, and emits its webhook event in the same transaction (outbox). A
channel's success is applied only with the order's own amount and currency; an order closed
unpaid means the merchant's close, the expiry or the customer's decline by what the gateway knows.
"""

from __future__ import annotations

import datetime as dt

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channel_accounts.models import ChannelAccount
from paymux.channels import base
from paymux.funds import hooks
from paymux.kit import clock
from paymux.kit.ids import new_id
from paymux.ledger.models import LedgerAccount
from paymux.payments.models import Attempt, Payment
from paymux.payments.repository import PaymentRepository
from paymux.payments.schemas import PaymentOut
from paymux.payments.states import (
    ATTEMPT_CLOSING,
    FINAL_ATTEMPT,
    REVERSE_MARKS,
    AttemptStatus,
    PaymentStatus,
    can_transition_attempt,
    can_transition_payment,
)
from paymux.refunds.models import Refund, RefundStatus
from paymux.refunds.repository import RefundRepository
from paymux.routing import service as routing
from paymux.webhooks import service as webhooks

log = structlog.get_logger(__name__)

QUERY_BACKOFF_SECONDS = (5, 30, 120, 600, 3600)
"""When the janitor queries an attempt whose outcome it does not know, by query count."""
PENDING_FIRST_QUERY = 1
"""A pending attempt (waiting for the customer) is first queried at QUERY_BACKOFF[1]."""
EXPIRY_RETRY_SECONDS = 30.0

EVENT_OF = {
    PaymentStatus.succeeded: "payment.succeeded",
    PaymentStatus.failed: "payment.failed",
    PaymentStatus.closed: "payment.closed",
    PaymentStatus.expired: "payment.expired",
}

# The channel's view of an order → (attempt status, payment status) it implies.
_CHANNEL_TO_STATUS: dict[base.ChannelPaymentStatus, tuple[AttemptStatus, PaymentStatus | None]] = {
    base.ChannelPaymentStatus.pending: (AttemptStatus.pending, None),
    base.ChannelPaymentStatus.succeeded: (AttemptStatus.succeeded, PaymentStatus.succeeded),
    base.ChannelPaymentStatus.failed: (AttemptStatus.failed, PaymentStatus.failed),
    base.ChannelPaymentStatus.closed: (AttemptStatus.closed, PaymentStatus.closed),
}


def next_query_at(count: int) -> dt.datetime:
    wait = QUERY_BACKOFF_SECONDS[min(count, len(QUERY_BACKOFF_SECONDS) - 1)]
    return clock.now() + dt.timedelta(seconds=wait)


# ------------------------------------------------------------------ transitions (in a tx)
async def _emit(session: AsyncSession, payment: Payment, public_url: str) -> None:
    event_type = EVENT_OF.get(PaymentStatus(payment.status))
    if event_type is None:
        return
    data = PaymentOut.of(payment, public_url=public_url).model_dump(mode="json")
    await webhooks.emit(
        session, app_id=payment.app_id, livemode=payment.livemode, type=event_type, data=data
    )


def move_attempt(attempt: Attempt, target: AttemptStatus) -> bool:
    current = AttemptStatus(attempt.status)
    if current == target:
        return False
    if not can_transition_attempt(current, target):
        log.error("attempt_state_conflict", attempt=attempt.id, current=current, target=target)
        return False
    attempt.status = target
    if target in FINAL_ATTEMPT:
        attempt.query_due_at = None
    return True


async def move_payment(
    session: AsyncSession,
    payment: Payment,
    target: PaymentStatus,
    public_url: str,
    *,
    failure: tuple[str, str | None] | None = None,
    source: LedgerAccount | None = None,
) -> bool:
    current = PaymentStatus(payment.status)
    if current == target:
        return False
    if not can_transition_payment(current, target):
        # e.g. the channel reports a payment we had closed: money moved that we must give back.
        log.critical("payment_state_conflict", payment=payment.id, current=current, target=target)
        return False
    now = clock.now()
    payment.status = target
    payment.expiry_due_at = None
    if target is PaymentStatus.succeeded:
        payment.paid_at = payment.paid_at or now
        await hooks.payment_succeeded(session, payment, source=source)
    elif target in (PaymentStatus.closed, PaymentStatus.expired):
        payment.closed_at = now
    if failure is not None:
        payment.failure_code, payment.failure_message = failure
    await _emit(session, payment, public_url)
    return True


CLOSE_EXPIRY_SKEW = dt.timedelta(seconds=60)
"""A channel that closes an order at its own timeout (set to our ``expires_at``) may do so a
little before our clock reaches it: a close this near the expiry is the expiry."""


def amount_problem(state: base.PaymentState, attempt: Attempt) -> str | None:
    """Why the channel's view of an order cannot be applied, or None. A success that does not
    say how much it took, or any view whose amount or currency differs from the order, is
    refused: a valid signature alone does not make a report about *this* order's money."""
    if state.status is base.ChannelPaymentStatus.succeeded and (
        state.amount is None or state.currency is None
    ):
        return "amount_missing"
    if (state.amount is not None and state.amount != attempt.amount) or (
        state.currency is not None and state.currency != attempt.currency
    ):
        return "amount_mismatch"
    return None


def _unpaid_outcome(
    payment: Payment, attempt: Attempt, state: base.PaymentState
) -> tuple[PaymentStatus, tuple[str, str | None] | None]:
    """What a ``failed`` or ``closed`` channel state means for the payment (docs/api.md,
    "Final statuses"): a failure is ``failed`` with its category; a close is ours
    (``closed``), the expiry (``expired``) or the customer or channel giving up (``failed``)."""
    if state.status is base.ChannelPaymentStatus.failed:
        code = state.failure_code or base.FailureCategory.payment_declined
        return PaymentStatus.failed, (code, state.failure_message)
    if attempt.error_code == ATTEMPT_CLOSING:
        return PaymentStatus.closed, None
    if clock.now() >= payment.expires_at - CLOSE_EXPIRY_SKEW:
        return PaymentStatus.expired, None
    code = state.failure_code or base.FailureCategory.customer_declined
    message = state.failure_message or "The order was closed at the channel before it expired."
    return PaymentStatus.failed, (code, message)


async def apply_state(
    session: AsyncSession, payment: Payment, attempt: Attempt, state: base.PaymentState,
    public_url: str,
) -> bool:  # fmt: skip
    """Apply a channel's authoritative view of an attempt. ``payment`` must be locked.
    Returns whether anything changed; stale and repeated states change nothing, and so does a
    state :func:`amount_problem` refuses (the janitor asks the channel again)."""
    if attempt.error_code in REVERSE_MARKS:
        # A payment-code order being (or already) reversed: a reversed paid order refunds the
        # customer, so no late report may make this payment succeed (payments/barcode.py).
        log.info("state_after_reverse_ignored", attempt=attempt.id, status=state.status)
        return False
    problem = amount_problem(state, attempt)
    if problem is not None:
        log.warning("channel_state_refused", attempt=attempt.id, code=problem,
                    status=state.status, amount=state.amount, currency=state.currency)  # fmt: skip
        return False
    if state.status is base.ChannelPaymentStatus.not_found:
        return await _attempt_never_created(session, payment, attempt, public_url)
    if (
        attempt.status == AttemptStatus.succeeded
        and state.status is base.ChannelPaymentStatus.closed
    ):
        # Alipay reports TRADE_CLOSED for a paid order once it is fully refunded: that is the
        # refund's business, not a change of this payment.
        return False
    if (
        state.status is base.ChannelPaymentStatus.succeeded
        and attempt.status in (AttemptStatus.closed, AttemptStatus.failed)
        and attempt.id != payment.current_attempt_id
    ):
        # A switched-away order, closed here, paid anyway: its money goes back.
        if attempt.late_success_at is not None:
            return False
        attempt.channel_trade_no = attempt.channel_trade_no or state.channel_trade_no
        await _late_success(session, payment, attempt, public_url)
        return True
    attempt_target, payment_target = _CHANNEL_TO_STATUS[state.status]
    changed = move_attempt(attempt, attempt_target)
    if state.channel_trade_no and not attempt.channel_trade_no:
        attempt.channel_trade_no = state.channel_trade_no
    if changed and attempt_target is AttemptStatus.succeeded:
        await routing.record_success(session, account_id=attempt.channel_account_id,
                                     method=attempt.method)  # fmt: skip
    if attempt_target is AttemptStatus.pending and changed:
        attempt.query_due_at = next_query_at(PENDING_FIRST_QUERY)
    failure = None
    if payment_target in (PaymentStatus.failed, PaymentStatus.closed):
        payment_target, failure = _unpaid_outcome(payment, attempt, state)
        if changed and state.channel_code:  # the channel's own code stays on the attempt
            attempt.error_code = state.channel_code[:64]
            attempt.error_message = (state.failure_message or "")[:500] or None
    if (
        changed
        and payment_target is PaymentStatus.succeeded
        and attempt.id != payment.current_attempt_id
        and payment.status == PaymentStatus.succeeded
    ):
        await _late_success(session, payment, attempt, public_url)
        return changed
    if (
        payment_target is PaymentStatus.succeeded
        and attempt.id != payment.current_attempt_id
        and payment.cashier_methods is not None
        and payment.status == PaymentStatus.pending
    ):
        # A cashier payment switched away from this attempt, paid anyway before its close:
        # the payment succeeds once, with this attempt (the other one is closed by the switch
        # or the expiry).
        log.warning("late_success_of_switched_attempt", payment=payment.id, attempt=attempt.id)
        payment.current_attempt_id = attempt.id
        payment.channel = attempt.channel
        payment.channel_account_id = attempt.channel_account_id
        payment.method = attempt.method
    if payment_target is None or attempt.id != payment.current_attempt_id:
        return changed
    if (
        payment_target is PaymentStatus.failed
        and payment.cashier_methods is not None
        and clock.now() < payment.expires_at
    ):
        # A declined attempt of a cashier payment: the payment stays open and the cashier
        # offers the other methods.
        payment.next_action = {
            "type": "redirect",
            "url": f"{public_url.rstrip('/')}/pay/{payment.id}",
        }
        return changed
    if payment_target is PaymentStatus.succeeded:
        payment.channel_trade_no = state.channel_trade_no or attempt.channel_trade_no
        payment.paid_at = state.paid_at or clock.now()
    moved = await move_payment(session, payment, payment_target, public_url, failure=failure)
    return changed or moved


async def _late_success(
    session: AsyncSession, payment: Payment, attempt: Attempt, public_url: str
) -> None:
    """A second order of a paid payment was paid too (a switched-away order paid after its
    close): the payment stays succeeded once; the attempt is flagged, the merchant told, and
    the second money refunded automatically."""
    log.critical("late_success_second_money", payment=payment.id, attempt=attempt.id,
                 amount=attempt.amount)  # fmt: skip
    now = clock.now()
    attempt.late_success_at = now
    # The second money goes back through the refunds domain: the refund is recorded here and
    # sent by its janitor (due now), which finds it unknown at the channel and asks for it.
    RefundRepository(session).add(Refund(
        id=new_id("re"), app_id=payment.app_id, livemode=payment.livemode,
        payment_id=payment.id, attempt_id=attempt.id, channel=attempt.channel,
        channel_account_id=attempt.channel_account_id, out_refund_no=f"late_{attempt.id}"[:64],
        amount=attempt.amount, currency=attempt.currency, reason="late_success_refunded",
        status=RefundStatus.pending, query_count=0, split_returns={}, query_due_at=now,
    ))  # fmt: skip
    data = PaymentOut.of(payment, public_url=public_url).model_dump(mode="json")
    data["late_attempt"] = {"id": attempt.id, "channel": attempt.channel,
                            "channel_trade_no": attempt.channel_trade_no,
                            "amount": attempt.amount, "currency": attempt.currency}  # fmt: skip
    await webhooks.emit(session, app_id=payment.app_id, livemode=payment.livemode,
                        type="payment.late_success", data=data)  # fmt: skip


async def _attempt_never_created(
    session: AsyncSession, payment: Payment, attempt: Attempt, public_url: str
) -> bool:
    """The channel has no such order: the create never reached it (or it never existed)."""
    if attempt.status not in (AttemptStatus.created, AttemptStatus.unknown):
        # Normal for redirect methods: the channel opens the order only when the customer
        # arrives (Alipay page/wap/app), so a pending attempt may not exist there yet.
        log.info("order_not_yet_at_channel", attempt=attempt.id, status=attempt.status)
        return False
    move_attempt(attempt, AttemptStatus.failed)
    attempt.error_code = attempt.error_code or "not_created_at_channel"
    if attempt.id != payment.current_attempt_id:
        return True
    await move_payment(
        session, payment, PaymentStatus.failed, public_url,
        failure=("channel_error", "The channel never received the order."),
    )  # fmt: skip
    return True


async def apply_notification(
    session: AsyncSession, account: ChannelAccount, state: base.PaymentState, public_url: str
) -> str:
    """Apply a verified notification after cross-checking it against our own records.

    Raises InvalidNotification — the inbox then keeps the notification as ``rejected``,
    applies nothing and refuses it so the channel retries — if the order is not this
    account's, or :func:`amount_problem` refuses its amount: a valid signature alone does not
    make a notification about *this* order."""
    # The account as the inbox just read it serves this transaction too (its fee): no re-read.
    # The identity map holds objects weakly: keep the merged copy for the transaction's life.
    session.info.setdefault("held", []).append(await session.merge(account, load=False))
    repo = PaymentRepository(session)
    found = await repo.lock_with_attempt(state.out_trade_no)
    if found is None or found[1].channel_account_id != account.id:
        raise base.InvalidNotification("unknown_order", "No such order for this channel account.")
    payment, attempt = found
    problem = amount_problem(state, attempt)
    if problem is not None:
        raise base.InvalidNotification(
            problem,
            f"Notified {state.status} with {state.amount} {state.currency}, order is "
            f"{attempt.amount} {attempt.currency}.",
        )
    changed = await apply_state(session, payment, attempt, state, public_url)
    return "applied" if changed else "no_change"

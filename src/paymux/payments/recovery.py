"""A retry after a crash: the payment an earlier run of the very same request made.

A create that died while it waited on the channel (the process killed, the request cancelled)
leaves its payment behind, and its idempotency reservation until the lease runs out. The
client's retry — same ``Idempotency-Key``, same body — then takes the reservation over and
runs the create again, which finds the payment by its ``request_key`` and answers with it:
never a second payment, never a second channel order.

What the dead run got from the channel is unknown, so nothing is guessed:

- its answer was recorded (the attempt is past ``created``), or the payment is final: the
  payment as it stands;
- the answer was not recorded: the channel is asked (a query changes nothing). If it has no
  such order, the create never reached it and is sent now — the same attempt, so the same
  order number at the channel; if it has the order, its state is applied (the ``next_action``
  the dead run received is lost: the payment stays ``pending`` without it until the customer
  pays or it expires); if the channel cannot be reached, the janitor keeps asking;
- payment codes are left to their own janitor (``barcode.resolve``), which reverses an order
  whose outcome stays unknown.
"""

from __future__ import annotations

import datetime as dt

import structlog

from paymux.channel_accounts import service as channel_service
from paymux.channels import base, registry
from paymux.kit import clock
from paymux.payments import service, transitions
from paymux.payments.models import Attempt, Payment
from paymux.payments.repository import PaymentRepository
from paymux.payments.schemas import PaymentCreate
from paymux.payments.states import AttemptStatus, PaymentStatus
from paymux.runtime import Runtime

log = structlog.get_logger(__name__)


async def recover(
    rt: Runtime, *, app_id: str, livemode: bool, req: PaymentCreate, request_key: str
) -> Payment | None:
    """This request's payment, brought as far as is safe; None if the request made none."""
    async with rt.db.read() as session:
        repo = PaymentRepository(session)
        payment = await repo.find_by_out_trade_no(app_id, livemode, req.out_trade_no)
        if payment is None or payment.request_key != request_key:
            return None  # none, or another request's: the create answers (duplicate → 409)
        attempt = (
            await repo.get_attempt(payment.current_attempt_id)
            if payment.current_attempt_id
            else None
        )
    log.info("payment_recovered", payment=payment.id, attempt=attempt.id if attempt else None)
    if (
        attempt is None
        or attempt.status != AttemptStatus.created
        or payment.status != PaymentStatus.pending
        or attempt.method in registry.barcode_methods()
    ):
        return payment
    return await _resume(rt, payment, attempt, req)


async def _resume(rt: Runtime, payment: Payment, attempt: Attempt, req: PaymentCreate) -> Payment:
    """The dead run's create answer was never recorded: ask the channel before anything."""
    async with rt.db.read() as session:
        account = await channel_service.account_of(session, attempt.channel_account_id)
    adapter = channel_service.adapter_for(rt.vault, account, rt.channel_http)
    try:
        state = await adapter.query_payment(attempt.id, channel_trade_no=attempt.channel_trade_no)
    except base.ChannelError as exc:
        log.info("recovery_query_failed", attempt=attempt.id, code=exc.code)
        return payment
    call_seconds = rt.settings.channel_timeout_seconds
    async with rt.db.transaction() as session:
        repo = PaymentRepository(session)
        payment = await repo.lock(payment.id)
        fresh = await repo.get_attempt(attempt.id)
        assert fresh is not None
        if fresh.status != AttemptStatus.created or payment.current_attempt_id != fresh.id:
            return payment  # the janitor (or another retry) got there first
        if state.status is not base.ChannelPaymentStatus.not_found:
            await transitions.apply_state(session, payment, fresh, state, rt.settings.public_url)
            return payment
        # Keep the janitor off the attempt while its create is (re)sent, as a new one would.
        fresh.query_due_at = clock.now() + dt.timedelta(
            seconds=call_seconds + transitions.QUERY_BACKOFF_SECONDS[0]
        )
    outcome = await service._call_create(
        rt, payment, attempt, account, profit_sharing=service.wants_profit_sharing(req)
    )
    payment, _ = await service._record_create(
        rt, payment.id, attempt.id, outcome, plan=None, call_seconds=call_seconds
    )
    return payment

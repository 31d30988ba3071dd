"""A payment after its create: closing and expiring it everywhere (a payment-code order is
reversed instead), the customer's return from the channel, and the janitor that asks channels
about attempts whose outcome is not known yet. The state changes themselves are
:mod:`paymux.payments.service`'s."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence

import structlog

from paymux.channel_accounts import service as channel_service
from paymux.channels import base, registry
from paymux.kit import clock
from paymux.kit.errors import Conflict, UpstreamError
from paymux.payments import barcode
from paymux.payments.models import Attempt, Payment
from paymux.payments.repository import PaymentRepository
from paymux.payments.service import get
from paymux.payments.states import ATTEMPT_CLOSING, FINAL_ATTEMPT, AttemptStatus, PaymentStatus
from paymux.payments.transitions import apply_state, move_attempt, move_payment, next_query_at
from paymux.runtime import Runtime

log = structlog.get_logger(__name__)


# ------------------------------------------------------------------ close and expire
async def close(rt: Runtime, *, app_id: str, livemode: bool, payment_id: str) -> Payment:
    """Close an unpaid payment, at the channel first so it can no longer be paid there."""
    async with rt.db.read() as session:
        payment = await get(session, app_id=app_id, livemode=livemode, payment_id=payment_id)
    if payment.status == PaymentStatus.closed:
        return payment
    if payment.status != PaymentStatus.pending:
        raise Conflict(
            "payment_not_closable", f"The payment is {payment.status}; only pending ones close."
        )
    payment = await _close_everywhere(rt, payment.id, PaymentStatus.closed)
    if payment.status == PaymentStatus.succeeded:
        raise Conflict("payment_succeeded", "The customer paid before the payment could close.")
    return payment


async def expire(rt: Runtime, payment_id: str) -> Payment:
    return await _close_everywhere(rt, payment_id, PaymentStatus.expired)


async def _close_everywhere(rt: Runtime, payment_id: str, target: PaymentStatus) -> Payment:
    public_url = rt.settings.public_url
    async with rt.db.read() as session:
        attempts = await PaymentRepository(session).open_attempts(payment_id)
        accounts = {
            a.id: await channel_service.account_of(session, a.channel_account_id) for a in attempts
        }
        found = await PaymentRepository(session).get_public(payment_id)
        assert found is not None
        method = found.method
    if barcode.handles(method) and attempts:
        # A payment-code order is not closed but reversed (撤销): that also returns money the
        # customer may have paid meanwhile. The payment ends failed, payment_reversed.
        for attempt in attempts:
            payment = await barcode.reverse(rt, attempt.id, barcode.CLOSED_FAILURE)
        return payment
    if target is PaymentStatus.closed:
        await _mark_closing(rt, [a.id for a in attempts])
    for attempt in attempts:
        adapter = channel_service.adapter_for(rt.vault, accounts[attempt.id], rt.channel_http)
        try:
            await adapter.close_payment(attempt.id, channel_trade_no=attempt.channel_trade_no)
        except base.BusinessError as exc:
            if exc.code != "already_paid":
                raise UpstreamError(
                    "channel_error", f"The channel refused to close: {exc}"
                ) from exc
            state = await _query(adapter, attempt.id, attempt.channel_trade_no)
            async with rt.db.transaction() as session:
                repo = PaymentRepository(session)
                payment = await repo.lock(payment_id)
                fresh = await repo.get_attempt(attempt.id)
                assert fresh is not None
                await apply_state(session, payment, fresh, state, public_url)
            return payment
        except base.ChannelError as exc:
            raise UpstreamError(
                "channel_unavailable", f"Could not reach the channel to close: {exc.code}"
            ) from exc
    async with rt.db.transaction() as session:
        repo = PaymentRepository(session)
        payment = await repo.lock(payment_id)
        if payment.status != PaymentStatus.pending:
            return payment
        for attempt in await repo.open_attempts(payment_id):
            move_attempt(attempt, AttemptStatus.closed)
        await move_payment(session, payment, target, public_url)
    return payment


async def _mark_closing(rt: Runtime, attempt_ids: list[str]) -> None:
    """Record that we ask the channel to close these attempts, before asking: whatever then
    reports them closed reports our close (``closed``), not a customer's decline."""
    async with rt.db.transaction() as session:
        repo = PaymentRepository(session)
        for attempt_id in attempt_ids:
            attempt = await repo.get_attempt(attempt_id)
            if attempt is not None and attempt.status not in FINAL_ATTEMPT:
                attempt.error_code = ATTEMPT_CLOSING


async def _query(
    adapter: base.ChannelAdapter, out_trade_no: str, channel_trade_no: str | None
) -> base.PaymentState:
    try:
        return await adapter.query_payment(out_trade_no, channel_trade_no=channel_trade_no)
    except base.ChannelError as exc:
        raise UpstreamError(
            "channel_unavailable", f"Could not query the channel: {exc.code}"
        ) from exc


# ------------------------------------------------------------------ the customer's return
async def on_customer_return(rt: Runtime, payment_id: str) -> Payment | None:
    """The customer came back from the channel: a pending payment's current attempt is
    queried now (and, for channels that capture on approval such as PayPal, finished), rather
    than at the janitor's next turn. Whatever the return URL's query string claims is ignored:
    only the channel's answer counts. None if there is no such payment."""
    async with rt.db.read() as session:
        payment = await PaymentRepository(session).get_public(payment_id)
    if payment is None:
        return None
    if payment.status == PaymentStatus.pending and payment.current_attempt_id:
        await resolve_attempt(rt, payment.current_attempt_id)
        async with rt.db.read() as session:
            payment = await PaymentRepository(session).get_public(payment_id)
    return payment


# ------------------------------------------------------------------ janitor
async def resolve_attempt(rt: Runtime, attempt_id: str) -> None:
    """Ask the channel about one attempt and apply the answer; schedule the next question if
    the attempt is still open."""
    async with rt.db.read() as session:
        attempt = await PaymentRepository(session).get_attempt(attempt_id)
        if attempt is None or attempt.status in FINAL_ATTEMPT:
            return
        account = await channel_service.account_of(session, attempt.channel_account_id)
    if attempt.method in registry.barcode_methods():
        await barcode.resolve(rt, attempt_id)
        return
    adapter = channel_service.adapter_for(rt.vault, account, rt.channel_http)
    state: base.PaymentState | None
    try:
        state = await adapter.query_payment(attempt_id, channel_trade_no=attempt.channel_trade_no)
    except base.ChannelError as exc:
        log.info("janitor_query_failed", attempt=attempt_id, code=exc.code)
        state = None
    async with rt.db.transaction() as session:
        repo = PaymentRepository(session)
        payment = await repo.lock(attempt.payment_id)
        fresh = await repo.get_attempt(attempt_id)
        assert fresh is not None
        if state is not None:
            await apply_state(session, payment, fresh, state, rt.settings.public_url)
        if fresh.status not in FINAL_ATTEMPT:
            fresh.query_count += 1
            fresh.query_due_at = next_query_at(fresh.query_count)


# ------------------------------------------------------------------ switching methods
def being_opened(attempt: Attempt, call_seconds: float) -> bool:
    """The attempt's create call is under way now (not one whose process died mid-call long
    ago): a switch must wait for it."""
    age = clock.now() - attempt.created_at
    return attempt.status == AttemptStatus.created and age <= dt.timedelta(
        seconds=2 * call_seconds + 5
    )


async def close_switched_orders(
    rt: Runtime, payment_id: str, orders: Sequence[tuple[str, str, str | None]],
    restore: Callable[[str], Awaitable[None]],
) -> None:  # fmt: skip
    """Close at their channels the orders (attempt id, account id, channel number) a switch
    has marked closing — outside any transaction — and mark each closed once it is. A close
    that fails calls ``restore(attempt id)`` (the order stays the payment's) and raises; an
    order already paid there is restored, then applied as the channel says, and raises
    ``payment_succeeded``."""
    for attempt_id, account_id, trade_no in orders:
        async with rt.db.read() as session:
            account = await channel_service.account_of(session, account_id)
        adapter = channel_service.adapter_for(rt.vault, account, rt.channel_http)
        try:
            await adapter.close_payment(attempt_id, channel_trade_no=trade_no)
        except base.BusinessError as exc:
            await restore(attempt_id)
            if exc.code != "already_paid":
                message = f"The channel refused to close: {exc}"
                raise UpstreamError("channel_error", message) from exc
            await resolve_attempt(rt, attempt_id)  # the channel's answer applies
            raise Conflict("payment_succeeded",
                           "The previous method was paid before the switch.") from exc  # fmt: skip
        except base.ChannelError as exc:
            await restore(attempt_id)
            message = f"Could not close the previous order: {exc.code}"
            raise UpstreamError("channel_unavailable", message) from exc
        async with rt.db.transaction() as session:
            repo = PaymentRepository(session)
            await repo.lock(payment_id)
            closed = await repo.get_attempt(attempt_id)
            if closed is not None:
                move_attempt(closed, AttemptStatus.closed)

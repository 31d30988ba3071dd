"""The cashier: which methods can serve a cashier payment now, in which order and why
(:func:`view`), and the customer's choice (:func:`choose`), which opens the attempt through
routing and closes the previous one at its channel first — one payable order at a time.

A payment risk control challenged (and the merchant has not verified, :mod:`paymux.payments.
verification`) offers only the methods routing can serve through a channel that steps up
(3-D Secure), and its attempts go only there; the wallet balance is not offered. With no such
method the cashier offers none until the merchant verifies the customer."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from paymux.cashier import ordering
from paymux.channels import base, registry
from paymux.kit import clock
from paymux.kit.errors import Conflict, InvalidRequest, NotFound
from paymux.payments import lifecycle
from paymux.payments import service as payments
from paymux.payments.models import Attempt, Payment
from paymux.payments.repository import PaymentRepository
from paymux.payments.states import ATTEMPT_CLOSING, AttemptStatus, PaymentStatus
from paymux.payments.transitions import move_attempt
from paymux.risk import hooks as risk
from paymux.routing import service as routing
from paymux.runtime import Runtime
from paymux.wallets import pay as wallet_pay

log = structlog.get_logger(__name__)

environment_of = ordering.environment_of


@dataclass(frozen=True)
class Option:
    method: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class CashierView:
    payment: Payment
    options: tuple[Option, ...]
    environment: str
    current_method: str | None
    can_switch: bool
    wallet_balance: int | None = None
    """The customer's available wallet balance when the payment may be paid from it."""


_CUSTOMER_PARAMS = ("customer", "client_ip")
"""Request problems the cashier itself resolves (the payer's id from the in-wallet OAuth, the
customer's IP): they do not make a method unavailable."""


def _open(payment: Payment) -> bool:
    return payment.status == PaymentStatus.pending and clock.now() < payment.expires_at


async def _eligible(rt: Runtime, payment: Payment) -> list[str]:
    """The methods routing could serve this payment with now (currency, amount limits, an
    enabled account of the app and mode, breaker, maintenance), in the merchant's order."""
    wanted = [m for m in payment.cashier_methods or [] if m != payments.WALLET_METHOD]
    if not payment.cashier_methods:
        wanted = sorted(registry.all_methods() - registry.barcode_methods())
    eligible: list[str] = []
    step_up = risk.needs_step_up(payment)
    async with rt.db.read() as session:
        for method in wanted:
            request = base.PaymentRequest(
                method=method, amount=payment.amount, currency=payment.currency,
                subject=payment.subject, description=payment.description,
                client_ip=payment.client_ip, customer=dict(payment.customer or {}),
            )  # fmt: skip
            refused = {
                channel: problem
                for channel, problem in registry.refusals(request).items()
                if not (problem.param or "").startswith(_CUSTOMER_PARAMS)
            }
            if refused and len(refused) == len(registry.channels_for_method(method)):
                continue
            try:
                found = await routing.plan(
                    session, app_id=payment.app_id, livemode=payment.livemode, method=method,
                    currency=payment.currency, amount=payment.amount,
                    customer=dict(payment.customer or {}), metadata=dict(payment.metadata_ or {}),
                    refusals=refused,
                )  # fmt: skip
            except InvalidRequest:
                continue
            if step_up and payments.step_up_plan(found) is None:
                continue  # challenged: only a channel that authenticates the payer will do
            eligible.append(method)
    return eligible


async def _last_used(rt: Runtime, payment: Payment) -> str | None:
    if not payment.customer_ref:
        return None
    async with rt.db.read() as session:
        return await PaymentRepository(session).last_succeeded_method(
            payment.app_id, payment.livemode, payment.customer_ref
        )


async def _options(
    rt: Runtime, payment: Payment, environment: str, wallet_balance: int | None = None
) -> tuple[Option, ...]:
    eligible = await _eligible(rt, payment)
    ranked = ordering.order(
        eligible, environment=environment, last_used=await _last_used(rt, payment),
        merchant_order=payment.cashier_methods or (),
        region=(payment.customer or {}).get("region"),
    )  # fmt: skip
    # The platform's own balance needs no channel and works in any environment: first.
    balance = () if wallet_balance is None else (Option(payments.WALLET_METHOD, ("wallet",)),)
    return balance + tuple(Option(r.method, r.reasons) for r in ranked)


async def _current(rt: Runtime, payment: Payment) -> Attempt | None:
    if payment.current_attempt_id is None:
        return None
    async with rt.db.read() as session:
        attempt = await PaymentRepository(session).get_attempt(payment.current_attempt_id)
    if attempt is None or attempt.status not in (
        AttemptStatus.created, AttemptStatus.pending, AttemptStatus.unknown
    ):  # fmt: skip
        return None
    if attempt.status != AttemptStatus.created and not attempt.next_action:
        # A create whose answer was lost: the order may be open at the channel, but there is
        # nothing to show the customer. Choosing (again) closes it and opens a fresh one.
        return None
    return attempt


async def view(rt: Runtime, payment_id: str, *, user_agent: str) -> CashierView | None:
    """The cashier of a payment by its public id; None if there is no such payment."""
    async with rt.db.read() as session:
        payment = await PaymentRepository(session).get_public(payment_id)
    if payment is None:
        return None
    environment = ordering.environment_of(user_agent)
    if payment.cashier_methods is None or not _open(payment):
        return CashierView(payment, (), environment, None, False)
    balance = None if risk.needs_step_up(payment) else await wallet_pay.available(rt, payment)
    options = await _options(rt, payment, environment, balance)
    current = await _current(rt, payment)
    current_method = current.method if current is not None else None
    can_switch = any(o.method != current_method for o in options)
    return CashierView(payment, options, environment, current_method, can_switch, balance)


async def choose(
    rt: Runtime, payment_id: str, method: str, *, user_agent: str,
    payer: Mapping[str, str] | None = None, client_ip: str | None = None,
    payer_account: str | None = None,
) -> Payment:  # fmt: skip
    """Open an attempt for ``method`` through routing (failover included), closing the open
    one at its channel first: never two payable orders at once. ``client_ip`` is the
    customer's address as the cashier saw it (WeChat H5 requires it and checks it against the
    device that opens its page); the merchant's own value, given at creation, is kept.
    ``wallet`` pays from the customer's balance at once (:mod:`paymux.wallets.pay`)."""
    async with rt.db.read() as session:
        payment = await PaymentRepository(session).get_public(payment_id)
    if payment is None:
        raise NotFound("payment", payment_id)
    if method == payments.WALLET_METHOD:
        if risk.needs_step_up(payment):
            raise InvalidRequest("method_unavailable", "The balance cannot serve this payment "
                                 "now.", param="method")  # fmt: skip
        return await wallet_pay.pay(rt, payment_id)
    if payment.cashier_methods is None:
        raise Conflict("not_a_cashier_payment", "This payment's method was fixed at creation.")
    if payment.status != PaymentStatus.pending:
        raise Conflict("payment_final", f"The payment is {payment.status}.")
    if not _open(payment):
        raise Conflict("payment_expired", "The payment has expired.")
    environment = ordering.environment_of(user_agent)
    if method not in {o.method for o in await _options(rt, payment, environment)}:
        raise InvalidRequest("method_unavailable", f"{method!r} cannot serve this payment now.",
                             param="method")  # fmt: skip
    call_seconds = rt.settings.channel_timeout_seconds
    started = time.monotonic()
    # 1. Claim the switch under the payment's lock: the open attempts are marked closing, the
    #    new attempt is inserted (``created``) and pointed at. A concurrent choose() sees it.
    async with rt.db.transaction() as session:
        repo = PaymentRepository(session)
        payment = await repo.lock(payment_id)
        if payment.status != PaymentStatus.pending:
            raise Conflict("payment_final", f"The payment is {payment.status}.")
        previous = await repo.open_attempts(payment.id)
        for attempt in previous:
            if lifecycle.being_opened(attempt, call_seconds):
                raise Conflict("choice_in_progress", "Another method is being opened now.")
        if _showing(payment, previous, method, payer):
            return payment  # chosen again (a reload, a double click): the same order
        if payer:
            payment.customer = {**(payment.customer or {}), **dict(payer)}
        if client_ip and not payment.client_ip:
            payment.client_ip = client_ip
        payment.method = method
        plan = await routing.plan(
            session, app_id=payment.app_id, livemode=payment.livemode, method=method,
            currency=payment.currency, amount=payment.amount, customer=dict(payment.customer),
            metadata=dict(payment.metadata_ or {}),
            refusals=payments.prechecks(payments.as_request(payment), method),
        )  # fmt: skip
        if payer_account is not None:
            plan = routing.pin(plan, payer_account)
        if risk.needs_step_up(payment):
            stepping = payments.step_up_plan(plan)
            if stepping is None:
                raise InvalidRequest("method_unavailable", f"{method!r} cannot serve this "
                                     "payment now.", param="method")  # fmt: skip
            plan = stepping
        pick = await routing.next_candidate(session, plan)
        if pick is None:
            routing.raise_exhausted(plan, method, payment.currency)
        attempt = payments.new_attempt(payment, pick, call_seconds)
        for old in previous:
            old.error_code = ATTEMPT_CLOSING
        payments.point_at(payment, attempt)
        payment.next_action = None
        repo.add(attempt)
        previous_ids = [(a.id, a.channel_account_id, a.channel_trade_no) for a in previous]
    # 2. Close the previous orders at their channels (outside any transaction).
    await lifecycle.close_switched_orders(
        rt, payment.id, previous_ids, lambda old_id: _abandon(rt, payment.id, attempt.id, old_id)
    )
    # 3. Open the new order through the usual create path (failover included).
    result, _ = await payments.run_attempts(rt, payment, attempt, plan, started=started)
    return result


def _showing(
    payment: Payment, open_attempts: list[Attempt], method: str,
    payer: Mapping[str, str] | None,
) -> bool:  # fmt: skip
    """The payment's one open order is of ``method``, shows the customer something, and the
    payer is unchanged."""
    if len(open_attempts) != 1 or open_attempts[0].id != payment.current_attempt_id:
        return False
    current = open_attempts[0]
    same_payer = all((payment.customer or {}).get(k) == v for k, v in (payer or {}).items())
    return (
        current.method == method and current.status == AttemptStatus.pending
        and bool(current.next_action) and same_payer
    )  # fmt: skip


async def _abandon(rt: Runtime, payment_id: str, new_id: str, old_id: str) -> None:
    """The previous order could not be closed: it stays the payment's, the new one is dropped
    before it ever reached a channel."""
    async with rt.db.transaction() as session:
        repo = PaymentRepository(session)
        payment = await repo.lock(payment_id)
        new = await repo.get_attempt(new_id)
        old = await repo.get_attempt(old_id)
        assert new is not None and old is not None
        move_attempt(new, AttemptStatus.failed)
        new.error_code = "previous_not_closed"
        if new.limit_day is not None:
            await routing.release(session, new.channel_account_id, new.limit_day, new.amount)
        old.error_code = None
        payment.current_attempt_id = old.id
        payment.channel, payment.channel_account_id = old.channel, old.channel_account_id
        payment.method = old.method
        payment.next_action = old.next_action

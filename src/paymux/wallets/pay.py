"""Paying a cashier payment from the customer's wallet balance (余额支付).

The platform names the customer's wallet when it creates the payment (``customer.wallet``,
checked then by :func:`paymux.payments.service.payable_wallet`) and enables the method by listing
``wallet`` in ``allowed_methods``; the cashier then offers "Balance" with the wallet's available
balance. Choosing it pays at once, in ONE transaction under the payment's row lock: the payment
must still be open with no open channel order, the wallet's ``available`` account is debited
(the ledger refuses beyond it, counting what holds reserve; ``frozen`` is another account) and
the merchant credited by the very path a channel's success takes
(:func:`paymux.payments.transitions.move_payment` → funds → settlement date → splits), which
also enqueues ``payment.succeeded`` once. The books: wallet available (debit) → merchant
escrow/pending (credit), no channel fee and no clearing leg — the merchant's pending settlement
is the amount, as for a card payment whose fee the platform bears in channel cost.

Idempotent and concurrent-safe: the payment's lock serialises payers, a paid payment is never
paid twice (the status guard, and the ledger key ``payment:<id>``), and a repeat of a wallet pay
that already went through answers the paid payment. An open channel order (the customer
switched to the balance) is closed at its channel first, outside any transaction, exactly as a
switch between methods does; if it was paid meanwhile, that payment wins and the balance is
untouched; a success of it reported after the wallet paid is refunded by the late-success path.
"""

from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit import clock
from paymux.kit.errors import Conflict, InvalidRequest, NotFound, PaymuxError
from paymux.ledger import chart
from paymux.ledger.chart import Purpose
from paymux.payments import lifecycle
from paymux.payments.models import Payment
from paymux.payments.repository import PaymentRepository
from paymux.payments.service import WALLET_METHOD, payable_wallet
from paymux.payments.states import ATTEMPT_CLOSING, PaymentStatus
from paymux.payments.transitions import move_payment
from paymux.runtime import Runtime
from paymux.wallets import service as wallets
from paymux.wallets.models import Wallet

log = structlog.get_logger(__name__)

NOT_ALLOWED = "wallet_not_allowed"
INSUFFICIENT = "insufficient_funds"


def wallet_id_of(payment: Payment) -> str | None:
    """The wallet a cashier payment may be paid from: enabled (``wallet`` in its allowed
    methods) and named by the platform (``customer.wallet``); otherwise None."""
    if not payment.cashier_methods or WALLET_METHOD not in payment.cashier_methods:
        return None
    wallet_id = (payment.customer or {}).get("wallet")
    return str(wallet_id) if wallet_id else None


async def _wallet(session: AsyncSession, payment: Payment) -> Wallet:
    wallet_id = wallet_id_of(payment)
    if wallet_id is None:
        raise InvalidRequest(NOT_ALLOWED, "This payment cannot be paid from a balance.",
                             param="method")  # fmt: skip
    try:
        return await payable_wallet(
            session, wallet_id, app_id=payment.app_id, livemode=payment.livemode,
            currency=payment.currency,
        )  # fmt: skip
    except PaymuxError:  # checked at create; never says more to the page than "not allowed"
        raise InvalidRequest(NOT_ALLOWED, "This payment cannot be paid from a balance.",
                             param="method") from None  # fmt: skip


async def available(rt: Runtime, payment: Payment) -> int | None:
    """The balance the cashier shows (spendable now: neither frozen nor held), or None when
    the payment cannot be paid from a wallet."""
    if wallet_id_of(payment) is None:
        return None
    async with rt.db.read() as session:
        try:
            wallet = await _wallet(session, payment)
        except InvalidRequest:
            return None
        return (await wallets.balances(session, wallet)).available


def _paid_by_wallet(payment: Payment) -> bool:
    return payment.status == PaymentStatus.succeeded and payment.method == WALLET_METHOD


def _check_open(payment: Payment) -> None:
    if payment.cashier_methods is None:
        raise Conflict("not_a_cashier_payment", "This payment's method was fixed at creation.")
    if payment.status != PaymentStatus.pending:
        raise Conflict("payment_final", f"The payment is {payment.status}.")
    if clock.now() >= payment.expires_at:
        raise Conflict("payment_expired", "The payment has expired.")


def _short(balance: int, payment: Payment) -> Conflict:
    return Conflict(INSUFFICIENT, f"The balance ({balance}) is less than the payment "
                    f"({payment.amount} {payment.currency}).", param="method")  # fmt: skip


async def pay(rt: Runtime, payment_id: str) -> Payment:
    """Pay the cashier payment ``payment_id`` from its customer's wallet, once. A refusal
    (not enabled, short balance, final or expired payment) changes nothing."""
    async with rt.db.read() as session:
        payment = await PaymentRepository(session).get_public(payment_id)
        if payment is None:
            raise NotFound("payment", payment_id)
        if _paid_by_wallet(payment):
            return payment  # a double click, a retry after the answer was lost
        _check_open(payment)
        wallet = await _wallet(session, payment)
        balance = (await wallets.balances(session, wallet)).available
    if balance < payment.amount:  # before anything moves: a short balance keeps the open order
        raise _short(balance, payment)
    await _close_open_orders(rt, payment_id)
    return await _debit(rt, payment_id)


async def _debit(rt: Runtime, payment_id: str) -> Payment:
    """The payment itself: one transaction, under the payment's lock."""
    async with rt.db.transaction() as session:
        repo = PaymentRepository(session)
        payment = await repo.lock(payment_id)
        if _paid_by_wallet(payment):
            return payment
        _check_open(payment)
        if await repo.open_attempts(payment.id):
            # A channel order opened meanwhile (another tab chose a method): one payable
            # order at a time; the customer sees it and may switch again.
            raise Conflict("choice_in_progress", "Another method is being opened now.")
        wallet = await _wallet(session, payment)
        source = await chart.wallet(session, wallet.id, Purpose.available, wallet.currency)
        if source.available < payment.amount:
            raise _short(source.available, payment)
        payment.method = WALLET_METHOD
        payment.channel = WALLET_METHOD
        payment.channel_account_id = payment.current_attempt_id = None
        payment.channel_trade_no = payment.next_action = None
        payment.paid_at = clock.now()
        # The ledger refuses an overdraft (insufficient_funds) and the whole transaction,
        # payment status included, rolls back.
        await move_payment(session, payment, PaymentStatus.succeeded, rt.settings.public_url,
                           source=source)  # fmt: skip
    log.info("wallet_payment_succeeded", payment=payment.id, wallet=wallet.id)
    return payment


async def _close_open_orders(rt: Runtime, payment_id: str) -> None:
    """The customer switched to the balance: the payment's open channel orders are marked
    closing and unpointed under its lock, then closed at their channels (outside any
    transaction). A close that fails puts the order back as the payment's; one already paid
    there makes the payment succeed with it."""
    async with rt.db.transaction() as session:
        repo = PaymentRepository(session)
        payment = await repo.lock(payment_id)
        if payment.status != PaymentStatus.pending:
            return  # _debit says why
        previous = await repo.open_attempts(payment.id)
        call_seconds = rt.settings.channel_timeout_seconds
        if any(lifecycle.being_opened(a, call_seconds) for a in previous):
            raise Conflict("choice_in_progress", "Another method is being opened now.")
        for attempt in previous:
            attempt.error_code = ATTEMPT_CLOSING
        if previous:
            payment.current_attempt_id = payment.channel = payment.channel_account_id = None
            payment.next_action = None
        orders = [(a.id, a.channel_account_id, a.channel_trade_no) for a in previous]
    await lifecycle.close_switched_orders(
        rt, payment_id, orders, lambda attempt_id: _restore(rt, payment_id, attempt_id)
    )


async def _restore(rt: Runtime, payment_id: str, attempt_id: str) -> None:
    """An order that could not be closed stays the payment's (if nothing replaced it)."""
    async with rt.db.transaction() as session:
        repo = PaymentRepository(session)
        payment = await repo.lock(payment_id)
        old = await repo.get_attempt(attempt_id)
        assert old is not None
        if old.error_code == ATTEMPT_CLOSING:
            old.error_code = None
        if payment.status == PaymentStatus.pending and payment.current_attempt_id is None:
            payment.current_attempt_id = old.id
            payment.channel, payment.channel_account_id = old.channel, old.channel_account_id
            payment.method, payment.next_action = old.method, old.next_action

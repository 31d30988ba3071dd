"""The payment lifecycle: create at a channel, apply what the channel says, close, expire.

Two kinds of function live here, and their names say which:

- functions taking an ``AsyncSession`` change rows inside the caller's transaction and never do
  network I/O (``apply_state``, ``apply_notification``, ``record_…``);
- orchestrators taking the ``Runtime`` (``create``, ``close``, ``expire``, ``resolve_attempt``)
  open short transactions of their own and call the channel **between** them, never inside one.

Every status change goes through the transition tables in :mod:`paymux.payments.states` while
the payment row is locked, and emits its webhook event in the same transaction (outbox).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channels import base
from paymux.channels import service as channel_service
from paymux.channels.models import ChannelAccount
from paymux.funds import hooks
from paymux.funds import service as funds
from paymux.kit import clock, money
from paymux.kit.errors import Conflict, InvalidRequest, NotFound
from paymux.kit.ids import new_id
from paymux.ledger import chart
from paymux.ledger.chart import Purpose
from paymux.ledger.models import LedgerAccount
from paymux.payments.models import Attempt, Payment
from paymux.payments.repository import PaymentRepository
from paymux.payments.schemas import PaymentCreate, PaymentOut
from paymux.payments.states import (
    ATTEMPT_CLOSING,
    FINAL_ATTEMPT,
    REVERSE_MARKS,
    AttemptStatus,
    PaymentStatus,
    can_transition_attempt,
    can_transition_payment,
)
from paymux.routing import service as routing
from paymux.runtime import Runtime
from paymux.splits import service as splits
from paymux.wallets.models import Wallet
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


def _move_attempt(attempt: Attempt, target: AttemptStatus) -> bool:
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


async def _move_payment(
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
    attempt_target, payment_target = _CHANNEL_TO_STATUS[state.status]
    changed = _move_attempt(attempt, attempt_target)
    if changed and attempt_target is AttemptStatus.succeeded:
        await routing.record_success(session, account_id=attempt.channel_account_id,
                                     method=attempt.method)  # fmt: skip
    if state.channel_trade_no and not attempt.channel_trade_no:
        attempt.channel_trade_no = state.channel_trade_no
    if attempt_target is AttemptStatus.pending and changed:
        attempt.query_due_at = next_query_at(PENDING_FIRST_QUERY)
    failure = None
    if payment_target in (PaymentStatus.failed, PaymentStatus.closed):
        payment_target, failure = _unpaid_outcome(payment, attempt, state)
        if changed and state.channel_code:  # the channel's own code stays on the attempt
            attempt.error_code = state.channel_code[:64]
            attempt.error_message = (state.failure_message or "")[:500] or None
    if payment_target is None or attempt.id != payment.current_attempt_id:
        return changed
    if payment_target is PaymentStatus.succeeded:
        payment.channel_trade_no = state.channel_trade_no or attempt.channel_trade_no
        payment.paid_at = state.paid_at or clock.now()
    moved = await _move_payment(session, payment, payment_target, public_url, failure=failure)
    return changed or moved


async def _attempt_never_created(
    session: AsyncSession, payment: Payment, attempt: Attempt, public_url: str
) -> bool:
    """The channel has no such order: the create never reached it (or it never existed)."""
    if attempt.status not in (AttemptStatus.created, AttemptStatus.unknown):
        # Normal for redirect methods: the channel opens the order only when the customer
        # arrives (Alipay page/wap/app), so a pending attempt may not exist there yet.
        log.info("order_not_yet_at_channel", attempt=attempt.id, status=attempt.status)
        return False
    _move_attempt(attempt, AttemptStatus.failed)
    attempt.error_code = attempt.error_code or "not_created_at_channel"
    if attempt.id != payment.current_attempt_id:
        return True
    await _move_payment(
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
    repo = PaymentRepository(session)
    attempt = await repo.get_attempt(state.out_trade_no)
    if attempt is None or attempt.channel_account_id != account.id:
        raise base.InvalidNotification("unknown_order", "No such order for this channel account.")
    problem = amount_problem(state, attempt)
    if problem is not None:
        raise base.InvalidNotification(
            problem,
            f"Notified {state.status} with {state.amount} {state.currency}, order is "
            f"{attempt.amount} {attempt.currency}.",
        )
    payment = await repo.lock(attempt.payment_id)
    await session.refresh(attempt)
    changed = await apply_state(session, payment, attempt, state, public_url)
    return "applied" if changed else "no_change"


# ------------------------------------------------------------------ create
@dataclass(frozen=True)
class _Outcome:
    kind: str
    """``created``, ``declined``, ``unknown`` or ``retryable``."""
    created: base.CreatedPayment | None = None
    error: base.ChannelError | None = None
    latency_ms: int = 0


def _validate(req: PaymentCreate) -> dict[str, base.RequestProblem]:
    money.check_amount(req.amount, req.currency)
    if req.method not in base.all_methods():
        raise InvalidRequest(
            "unsupported_method",
            f"Unknown method {req.method!r}; known: {', '.join(sorted(base.all_methods()))}.",
            param="method",
        )
    return prechecks(req)


def prechecks(req: PaymentCreate, method: str | None = None) -> dict[str, base.RequestProblem]:
    """Everything knowable before a channel call (DESIGN §3.12), per channel offering the
    method: a 400 that creates nothing when every one of them refuses the request; otherwise
    the refusing channels with why, for routing to leave out (and to explain with a 400 if no
    other account of the app can take it)."""
    method = method or req.method
    request = base.PaymentRequest(
        method=method, amount=req.amount, currency=req.currency, subject=req.subject,
        description=req.description, client_ip=req.client_ip, customer=dict(req.customer),
    )  # fmt: skip
    refused = base.refusals(request)
    if refused and len(refused) == len(base.channels_for_method(method)):
        problem = next(iter(refused.values()))
        raise InvalidRequest(problem.code, problem.message, param=problem.param)
    return refused


def _new_attempt(payment: Payment, pick: routing.Pick, call_seconds: float) -> Attempt:
    # Due for a query shortly after the create call must have ended: if this process dies
    # mid-call, the janitor finds the attempt still ``created`` and asks the channel.
    due = clock.now() + dt.timedelta(seconds=call_seconds + QUERY_BACKOFF_SECONDS[0])
    account = pick.account
    return Attempt(
        id=new_id("att"),
        payment_id=payment.id,
        channel=account.channel,
        channel_account_id=account.id,
        method=payment.method,
        amount=payment.amount,
        currency=payment.currency,
        status=AttemptStatus.created,
        query_due_at=due,
        query_count=0,
        routing=pick.explanation,
        limit_day=pick.limit_day,
    )


def _point_at(payment: Payment, attempt: Attempt) -> None:
    payment.current_attempt_id = attempt.id
    payment.channel = attempt.channel
    payment.channel_account_id = attempt.channel_account_id


WALLET_METHOD = "wallet"
"""Pay with a wallet's balance (``customer.wallet``): settled in the ledger, no channel."""


def _new_payment(
    req: PaymentCreate, *, app_id: str, merchant_id: str, livemode: bool,
    expires_at: dt.datetime, request_key: str | None = None,
) -> Payment:  # fmt: skip
    return Payment(
        id=new_id("pay"), app_id=app_id, merchant_id=merchant_id, livemode=livemode,
        out_trade_no=req.out_trade_no, amount=req.amount, currency=req.currency,
        method=req.method, status=PaymentStatus.pending, subject=req.subject,
        description=req.description, customer=dict(req.customer),
        metadata_=dict(req.metadata), return_url=req.return_url, client_ip=req.client_ip,
        customer_ref=req.customer.get("id"),
        expires_at=expires_at, expiry_due_at=expires_at, amount_refunded=0,
        request_key=request_key,
    )  # fmt: skip


async def _insert(
    session: AsyncSession, payment: Payment, req: PaymentCreate, top_up_wallet_id: str | None
) -> None:
    """Insert a new payment with its funds plan and declared split (a duplicate number is a
    409 and inserts nothing)."""
    repo = PaymentRepository(session)
    if await repo.find_by_out_trade_no(payment.app_id, payment.livemode,
                                       payment.out_trade_no) is not None:  # fmt: skip
        raise _duplicate(payment.out_trade_no)
    repo.add(payment)
    try:  # the payment first: the unit of work does not order unrelated mappers by FK
        await session.flush()
    except sa.exc.IntegrityError:
        raise _duplicate(payment.out_trade_no) from None
    escrow_seconds = req.escrow.auto_confirm_in if req.escrow else None
    session.add(funds.plan(payment, escrow_seconds=escrow_seconds,
                           top_up_wallet_id=top_up_wallet_id))  # fmt: skip
    await session.flush()
    if req.split is not None:
        await splits.declare(session, payment, req.split)


async def _create_wallet_payment(
    rt: Runtime, *, app_id: str, merchant_id: str, livemode: bool, req: PaymentCreate,
    request_key: str | None,
) -> Payment:  # fmt: skip
    """Pay with wallet balance: no channel, final at once, refused (creating nothing) when the
    wallet is short."""
    money.check_amount(req.amount, req.currency)
    wallet_id = req.customer.get("wallet")
    if not wallet_id:
        raise InvalidRequest("customer_required", "wallet needs customer.wallet.",
                             param="customer.wallet")  # fmt: skip
    now = clock.now()
    async with rt.db.transaction() as session:
        wallet = await session.get(Wallet, wallet_id)
        if wallet is None or (wallet.app_id, wallet.livemode) != (app_id, livemode):
            raise NotFound("wallet", wallet_id)
        if wallet.currency != req.currency:
            raise InvalidRequest("currency_mismatch", f"The wallet holds {wallet.currency}.",
                                 param="currency")  # fmt: skip
        payment = _new_payment(req, app_id=app_id, merchant_id=merchant_id, livemode=livemode,
                               expires_at=now, request_key=request_key)  # fmt: skip
        payment.channel = "wallet"
        await _insert(session, payment, req, None)
        source = await chart.wallet(session, wallet.id, Purpose.available, wallet.currency)
        payment.paid_at = now
        await _move_payment(session, payment, PaymentStatus.succeeded, rt.settings.public_url,
                            source=source)  # fmt: skip
    return payment


async def create(
    rt: Runtime, *, app_id: str, merchant_id: str, livemode: bool, req: PaymentCreate,
    top_up_wallet_id: str | None = None, request_key: str | None = None,
) -> tuple[Payment, int]:  # fmt: skip
    """Create a payment and its order at the first channel account that accepts it.
    Returns the payment and the milliseconds spent waiting for channels.

    ``request_key`` (:func:`paymux.kit.idempotency.request_key`) marks the payment as this
    request's: when an earlier run of the very same request (same key, same body) died after
    creating it, the payment is answered as far as it is safely known instead of a
    ``duplicate_out_trade_no`` (:mod:`paymux.payments.recovery`)."""
    # Both build on this module: payment codes wait synchronously, crash recovery resumes.
    from paymux.payments import barcode, recovery

    if request_key is not None:
        recovered = await recovery.recover(
            rt, app_id=app_id, livemode=livemode, req=req, request_key=request_key
        )
        if recovered is not None:
            return recovered, 0
    if barcode.handles(req.method):
        return await barcode.create(
            rt, app_id=app_id, merchant_id=merchant_id, livemode=livemode, req=req,
            request_key=request_key,
        )  # fmt: skip
    if req.method == WALLET_METHOD:
        if top_up_wallet_id is not None:
            raise InvalidRequest("unsupported_method", "A wallet cannot top itself up.",
                                 param="method")  # fmt: skip
        wallet_payment = await _create_wallet_payment(
            rt, app_id=app_id, merchant_id=merchant_id, livemode=livemode, req=req,
            request_key=request_key,
        )  # fmt: skip
        return wallet_payment, 0
    refusals = _validate(req)
    profit_sharing = wants_profit_sharing(req)
    now = clock.now()
    ttl = req.expires_in or rt.settings.payment_expiry_seconds
    call_seconds = rt.settings.channel_timeout_seconds
    expires_at = now + dt.timedelta(seconds=ttl)
    started = time.monotonic()
    budget = rt.settings.routing_failover_budget_seconds
    async with rt.db.transaction() as session:
        plan = await routing.plan(
            session, app_id=app_id, livemode=livemode, method=req.method,
            currency=req.currency, amount=req.amount, pinned=req.channel,
            customer=dict(req.customer), metadata=dict(req.metadata), refusals=refusals,
        )  # fmt: skip
        payment = _new_payment(req, app_id=app_id, merchant_id=merchant_id, livemode=livemode,
                               expires_at=expires_at, request_key=request_key)  # fmt: skip
        await _insert(session, payment, req, top_up_wallet_id)
        pick = await routing.next_candidate(session, plan)
        if pick is None:  # every candidate's daily limit or breaker probe was taken meanwhile
            routing.raise_exhausted(plan, req.method, req.currency)
        attempt = _new_attempt(payment, pick, call_seconds)
        _point_at(payment, attempt)
        session.add(attempt)
    account = pick.account
    channel_ms = 0
    while True:
        outcome = await _call_create(rt, payment, attempt, account,
                                     profit_sharing=profit_sharing)  # fmt: skip
        channel_ms += outcome.latency_ms
        may_fail_over = time.monotonic() - started < budget
        payment, next_attempt = await _record_create(
            rt, payment.id, attempt.id, outcome, plan=plan if may_fail_over else None,
            call_seconds=call_seconds,
        )  # fmt: skip
        if next_attempt is None:
            break
        attempt = next_attempt
        account = plan.accounts[attempt.channel_account_id]
    return payment, channel_ms


def wants_profit_sharing(req: PaymentCreate) -> bool:
    """A channel split needs the order kept splittable at the channel from its creation."""
    return bool(req.split and req.split.receivers and req.split.receivers[0].wallet is None)


def _duplicate(out_trade_no: str) -> Conflict:
    return Conflict(
        "duplicate_out_trade_no",
        f"A payment with out_trade_no {out_trade_no!r} exists already.",
        param="out_trade_no",
    )


async def _call_create(
    rt: Runtime, payment: Payment, attempt: Attempt, account: ChannelAccount,
    *, profit_sharing: bool = False,
) -> _Outcome:  # fmt: skip
    adapter = channel_service.adapter_for(rt.vault, account, rt.channel_http)
    request = base.CreatePayment(
        out_trade_no=attempt.id, method=payment.method, amount=payment.amount,
        currency=payment.currency, subject=payment.subject,
        notify_url=channel_service.notify_url(rt.settings.public_url, account),
        expires_at=payment.expires_at,
        description=payment.description, return_url=return_url(rt.settings.public_url, payment),
        client_ip=payment.client_ip, customer=payment.customer or {},
        profit_sharing=profit_sharing,
    )  # fmt: skip
    started = time.perf_counter()
    created: base.CreatedPayment | None = None
    error: base.ChannelError | None = None
    try:
        created = await adapter.create_payment(request)
        kind = "created"
    except base.BusinessError as exc:
        kind, error = "declined", exc
    except base.RetryableError as exc:
        kind, error = "retryable", exc
    except base.ChannelError as exc:  # UnknownOutcome and anything unclassified
        kind, error = "unknown", exc
    latency = int((time.perf_counter() - started) * 1000)
    if error is not None:
        log.info("channel_create_error", attempt=attempt.id, kind=kind, code=error.code)
    return _Outcome(kind=kind, created=created, error=error, latency_ms=latency)


def _fails_over(outcome: _Outcome) -> bool:
    """A technical error before the channel acted, or the channel's own limit/risk refusal:
    another channel may take the payment. An unknown outcome never fails over: the order may
    exist, and a second one elsewhere could charge the customer twice."""
    if outcome.kind == "retryable":
        return True
    return outcome.kind == "declined" and isinstance(outcome.error, base.RoutableDecline)


async def _record_create(
    rt: Runtime, payment_id: str, attempt_id: str, outcome: _Outcome, *,
    plan: routing.Plan | None, call_seconds: float,
) -> tuple[Payment, Attempt | None]:  # fmt: skip
    """Apply one create call's outcome; on a failure another channel may fix, start the next
    candidate's attempt in the same transaction (``plan`` None: the time budget is spent)."""
    public_url = rt.settings.public_url
    async with rt.db.transaction() as session:
        repo = PaymentRepository(session)
        payment = await repo.lock(payment_id)
        attempt = await repo.get_attempt(attempt_id)
        assert attempt is not None
        attempt.channel_latency_ms = outcome.latency_ms
        if outcome.error is not None:
            attempt.error_code = outcome.error.code[:64]
            attempt.error_message = outcome.error.message[:500]
        await routing.record_call(
            session, app_id=payment.app_id, account_id=attempt.channel_account_id,
            method=attempt.method, ok=outcome.kind in ("created", "declined"),
            accepted=outcome.kind in ("created", "declined"), latency_ms=outcome.latency_ms,
        )  # fmt: skip
        if outcome.kind == "created":
            assert outcome.created is not None
            await _record_created(session, payment, attempt, outcome.created, public_url)
            return payment, None
        if outcome.kind == "unknown":
            if _move_attempt(attempt, AttemptStatus.unknown):
                attempt.query_due_at = next_query_at(0)
            return payment, None
        _move_attempt(attempt, AttemptStatus.failed)
        if attempt.limit_day is not None:  # the channel took nothing: give the limit back
            await routing.release(session, attempt.channel_account_id, attempt.limit_day,
                                  attempt.amount)  # fmt: skip
        assert outcome.error is not None
        if plan is not None and _fails_over(outcome):
            plan.tried.append({"account": attempt.channel_account_id, "kind": outcome.kind,
                               "code": outcome.error.code[:64]})  # fmt: skip
            pick = await routing.next_candidate(session, plan)
            if pick is not None:
                following = _new_attempt(payment, pick, call_seconds)
                _point_at(payment, following)
                session.add(following)
                return payment, following
        declined = outcome.kind == "declined"
        category = getattr(outcome.error, "category", None)
        code = (category or outcome.error.code) if declined else "channel_unavailable"
        await _move_payment(
            session, payment, PaymentStatus.failed, public_url,
            failure=(code[:64], outcome.error.message[:500]),
        )  # fmt: skip
    return payment, None


async def _record_created(
    session: AsyncSession, payment: Payment, attempt: Attempt, created: base.CreatedPayment,
    public_url: str,
) -> None:  # fmt: skip
    action = created.next_action.to_dict() if created.next_action else None
    attempt.next_action = action
    attempt.channel_trade_no = attempt.channel_trade_no or created.channel_trade_no
    if payment.status == PaymentStatus.pending:
        payment.next_action = action
    # A notification may have beaten the create answer; then this state is old news. The
    # answer is the channel's to our own signed request for this attempt's amount, so a
    # synchronous success (a payment code) took that amount.
    state = base.PaymentState(
        out_trade_no=attempt.id, status=created.status, channel_trade_no=created.channel_trade_no,
        amount=attempt.amount, currency=attempt.currency,
    )  # fmt: skip
    await apply_state(session, payment, attempt, state, public_url)


# ------------------------------------------------------------------ read
async def get(session: AsyncSession, *, app_id: str, livemode: bool, payment_id: str) -> Payment:
    payment = await PaymentRepository(session).get(app_id, livemode, payment_id)
    if payment is None:
        raise NotFound("payment", payment_id)
    return payment


# ------------------------------------------------------------------ the customer's return
def return_url(public_url: str, payment: Payment) -> str:
    """Where a channel sends the customer back (after a redirect, a form, 3-D Secure): the
    gateway, which asks the channel at once and then forwards to the merchant's
    ``return_url`` (or the hosted page)."""
    return f"{public_url.rstrip('/')}/pay/{payment.id}/return"

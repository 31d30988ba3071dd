"""Creating payments: validation and channel pre-checks, routing, the channel call, failover.

Two kinds of function live here, and their names say which:

- functions taking an ``AsyncSession`` change rows inside the caller's transaction and never do
  network I/O (``_insert``, ``_record_…``);
- the orchestrator taking the ``Runtime`` (``create``) opens short transactions of its own and
  calls the channel **between** them, never inside one.

What the channel says afterwards is applied by :mod:`paymux.payments.transitions`; close, expiry
and the janitor are :mod:`paymux.payments.lifecycle`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channel_accounts import service as channel_service
from paymux.channel_accounts.models import ChannelAccount
from paymux.channels import base, registry
from paymux.funds import service as funds
from paymux.kit import clock, money
from paymux.kit.errors import Conflict, InvalidRequest, NotFound
from paymux.kit.ids import new_id
from paymux.ledger import chart
from paymux.ledger.chart import Purpose
from paymux.payments.models import Attempt, Payment
from paymux.payments.repository import PaymentRepository
from paymux.payments.schemas import PaymentCreate
from paymux.payments.states import (
    AttemptStatus,
    PaymentStatus,
)
from paymux.payments.transitions import (
    PENDING_FIRST_QUERY,
    QUERY_BACKOFF_SECONDS,
    apply_state,
    move_attempt,
    move_payment,
    next_query_at,
)
from paymux.risk import hooks as risk
from paymux.routing import service as routing
from paymux.runtime import Runtime
from paymux.splits import service as splits
from paymux.wallets.models import OwnerType, Wallet

log = structlog.get_logger(__name__)


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
    if req.method not in registry.all_methods():
        raise InvalidRequest(
            "unsupported_method",
            f"Unknown method {req.method!r}; known: {', '.join(sorted(registry.all_methods()))}.",
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
    refused = registry.refusals(request)
    if refused and len(refused) == len(registry.channels_for_method(method)):
        problem = next(iter(refused.values()))
        raise InvalidRequest(problem.code, problem.message, param=problem.param)
    return refused


def as_request(payment: Payment) -> PaymentCreate:
    """A payment already made, as the request the channels' pre-checks judge (a cashier's
    choice, a verified payment's first order)."""
    return PaymentCreate(
        amount=payment.amount, currency=payment.currency, method=payment.method,
        out_trade_no=payment.out_trade_no, subject=payment.subject,
        description=payment.description, customer=dict(payment.customer or {}),
        client_ip=payment.client_ip,
    )  # fmt: skip


def new_attempt(payment: Payment, pick: routing.Pick, call_seconds: float) -> Attempt:
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


def point_at(payment: Payment, attempt: Attempt) -> None:
    payment.current_attempt_id = attempt.id
    payment.channel = attempt.channel
    payment.channel_account_id = attempt.channel_account_id


WALLET_METHOD = "wallet"
"""Pay with a wallet's balance (``customer.wallet``): settled in the ledger, no channel."""
CASHIER_METHOD = "cashier"
"""The customer picks the method on the hosted cashier: created with no channel attempt."""


def cashier_action(public_url: str, payment: Payment) -> dict[str, str]:
    return {"type": "redirect", "url": f"{public_url.rstrip('/')}/pay/{payment.id}"}


VERIFICATION_REQUIRED = "required"
"""``Payment.verification`` status: challenged, waiting for the merchant's own verification."""
VERIFIED = "verified"
"""``Payment.verification`` status: the merchant verified the customer (``POST …/verify``)."""


def verify_action(public_url: str, payment: Payment) -> dict[str, str]:
    """A challenged payment no channel can step up: the merchant verifies the customer its own
    way (SMS, ID) and then calls ``verify_url``; only then is a channel called."""
    return {"type": "verify",
            "verify_url": f"{public_url.rstrip('/')}/v1/payments/{payment.id}/verify"}  # fmt: skip


def step_up_plan(plan: routing.Plan) -> routing.Plan | None:
    """Only the plan's candidates whose channel can step up (3-D Secure), in the plan's
    order, so failover never lands where the challenge would be lost; None if there is none
    (the payment then waits for the merchant's verification)."""
    order = plan.decision.order
    able = {c.account_id: registry.can_step_up(plan.accounts[c.account_id].channel) for c in order}
    kept = [c for c in order if able[c.account_id]]
    if not kept:
        return None
    skipped = [
        {"account": c.account_id, "reason": "step_up_unsupported"}
        for c in order if not able[c.account_id]
    ]  # fmt: skip
    decision = dataclasses.replace(plan.decision, order=kept)
    return dataclasses.replace(plan, decision=decision, skipped=[*plan.skipped, *skipped])


def _allowed_methods(req: PaymentCreate) -> list[str]:
    allowed = list(req.allowed_methods or [])
    if req.method != CASHIER_METHOD:
        if req.allowed_methods is not None:
            raise InvalidRequest("parameter_invalid", "allowed_methods needs method cashier.",
                                 param="allowed_methods")  # fmt: skip
        return allowed
    known = (registry.all_methods() - registry.barcode_methods()) | {WALLET_METHOD}
    for method in allowed:
        if method not in known:
            raise InvalidRequest("unsupported_method", f"Unknown method {method!r}.",
                                 param="allowed_methods")  # fmt: skip
    if len(set(allowed)) != len(allowed):
        raise InvalidRequest("parameter_invalid", "allowed_methods has a method twice.",
                             param="allowed_methods")  # fmt: skip
    return allowed


async def _create_cashier_payment(
    rt: Runtime, *, app_id: str, merchant_id: str, livemode: bool, req: PaymentCreate,
    request_key: str | None,
) -> Payment:  # fmt: skip
    """A cashier payment: no attempt until the customer chooses; ``next_action`` sends them to
    the hosted cashier (:mod:`paymux.cashier.service`)."""
    money.check_amount(req.amount, req.currency)
    allowed = _allowed_methods(req)
    ttl = req.expires_in or rt.settings.payment_expiry_seconds
    expires_at = clock.now() + dt.timedelta(seconds=ttl)
    async with rt.db.transaction() as session:
        screened = await risk.screen_payment(
            session, req, app_id=app_id, merchant_id=merchant_id, livemode=livemode
        )
        allowed = risk.allowed_methods(screened, allowed)
        if req.customer.get("wallet"):  # the balance the cashier may offer (wallets/pay.py)
            await payable_wallet(session, req.customer["wallet"], app_id=app_id,
                                 livemode=livemode, currency=req.currency)  # fmt: skip
        payment = _new_payment(req, app_id=app_id, merchant_id=merchant_id, livemode=livemode,
                               expires_at=expires_at, request_key=request_key)  # fmt: skip
        payment.cashier_methods = allowed
        payment.next_action = cashier_action(rt.settings.public_url, payment)
        if risk.challenged(screened):  # the cashier offers only step-up methods until verified
            payment.verification = {"status": VERIFICATION_REQUIRED}
        await _insert(session, payment, req, None)
        await risk.payment_created(session, screened, payment, req)
    return payment


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
    session: AsyncSession, payment: Payment, req: PaymentCreate, top_up_wallet_id: str | None,
    attempt: Attempt | None = None,
) -> None:  # fmt: skip
    """Insert a new payment, then its funds plan and first attempt, then its declared split
    (a duplicate number is a 409 and inserts nothing). The attempt is pointed at before the
    payment is inserted, so the pointer costs no UPDATE."""
    repo = PaymentRepository(session)
    repo.add(payment)
    try:  # the payment first: the unit of work does not order unrelated mappers by FK
        await session.flush()
    except sa.exc.IntegrityError:
        raise _duplicate(payment.out_trade_no) from None
    escrow_seconds = req.escrow.auto_confirm_in if req.escrow else None
    session.add(funds.plan(payment, escrow_seconds=escrow_seconds,
                           top_up_wallet_id=top_up_wallet_id))  # fmt: skip
    if attempt is not None:
        repo.add(attempt)
    await session.flush()
    if req.split is not None:
        await splits.declare(session, payment, req.split)


async def payable_wallet(
    session: AsyncSession, wallet_id: str, *, app_id: str, livemode: bool, currency: str
) -> Wallet:
    """The user wallet ``customer.wallet`` names, if a payment of this app, mode and currency
    may be paid from it. Another app's or the other mode's wallet is exactly as missing as one
    that does not exist (the answer reveals nothing); a merchant's (shop's) wallet is not a
    customer's balance."""
    wallet = await session.get(Wallet, wallet_id)
    if wallet is None or (wallet.app_id, wallet.livemode) != (app_id, livemode):
        raise NotFound("wallet", wallet_id)
    if wallet.owner_type != OwnerType.user:
        raise InvalidRequest("wallet_not_allowed", "Only a user's wallet pays for a payment.",
                             param="customer.wallet")  # fmt: skip
    if wallet.currency != currency:
        raise InvalidRequest("currency_mismatch", f"The wallet holds {wallet.currency}.",
                             param="currency")  # fmt: skip
    return wallet


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
        wallet = await payable_wallet(session, wallet_id, app_id=app_id, livemode=livemode,
                                      currency=req.currency)  # fmt: skip
        screened = await risk.screen_payment(
            session, req, app_id=app_id, merchant_id=merchant_id, livemode=livemode
        )
        risk.at_the_counter(screened)  # nothing to step up: paid at once
        risk.check_method(screened, req.method)
        payment = _new_payment(req, app_id=app_id, merchant_id=merchant_id, livemode=livemode,
                               expires_at=now, request_key=request_key)  # fmt: skip
        payment.channel = "wallet"
        await _insert(session, payment, req, None)
        await risk.payment_created(session, screened, payment, req)
        source = await chart.wallet(session, wallet.id, Purpose.available, wallet.currency)
        payment.paid_at = now
        await move_payment(session, payment, PaymentStatus.succeeded, rt.settings.public_url,
                            source=source)  # fmt: skip
    return payment


async def create(
    rt: Runtime, *, app_id: str, merchant_id: str, livemode: bool, req: PaymentCreate,
    top_up_wallet_id: str | None = None, request_key: str | None = None,
) -> tuple[Payment, int]:  # fmt: skip
    """Create a payment and its order at the first channel account that accepts it (or pay it
    from a wallet). Returns the payment and the milliseconds spent waiting for channels.

    The flow of every method but a payment code, for a request not seen before: callers go
    through :func:`paymux.payments.intake.create`, which resumes a crashed run of the same
    request and sends payment codes to :mod:`paymux.payments.barcode` first."""
    if req.method == WALLET_METHOD:
        if top_up_wallet_id is not None:
            raise InvalidRequest("unsupported_method", "A wallet cannot top itself up.",
                                 param="method")  # fmt: skip
        wallet_payment = await _create_wallet_payment(
            rt, app_id=app_id, merchant_id=merchant_id, livemode=livemode, req=req,
            request_key=request_key,
        )  # fmt: skip
        return wallet_payment, 0
    if req.method == CASHIER_METHOD:
        cashier_payment = await _create_cashier_payment(
            rt, app_id=app_id, merchant_id=merchant_id, livemode=livemode, req=req,
            request_key=request_key,
        )  # fmt: skip
        return cashier_payment, 0
    _allowed_methods(req)
    refusals = _validate(req)
    profit_sharing = wants_profit_sharing(req)
    now = clock.now()
    ttl = req.expires_in or rt.settings.payment_expiry_seconds
    call_seconds = rt.settings.channel_timeout_seconds
    expires_at = now + dt.timedelta(seconds=ttl)
    started = time.monotonic()
    async with rt.db.transaction() as session:
        screened = await risk.screen_payment(
            session, req, app_id=app_id, merchant_id=merchant_id, livemode=livemode
        )
        risk.check_method(screened, req.method)
        refusals = risk.refusals(screened, req.method, refusals)
        plan = await routing.plan(
            session, app_id=app_id, livemode=livemode, method=req.method,
            currency=req.currency, amount=req.amount, pinned=req.channel,
            customer=dict(req.customer), metadata=dict(req.metadata), refusals=refusals,
        )  # fmt: skip
        payment = _new_payment(req, app_id=app_id, merchant_id=merchant_id, livemode=livemode,
                               expires_at=expires_at, request_key=request_key)  # fmt: skip
        if risk.challenged(screened):
            stepping = step_up_plan(plan)
            if stepping is None:  # no candidate can step up: the merchant verifies first
                payment.verification = {"status": VERIFICATION_REQUIRED, "channel": req.channel,
                                        "profit_sharing": profit_sharing}  # fmt: skip
                payment.next_action = verify_action(rt.settings.public_url, payment)
                await _insert(session, payment, req, top_up_wallet_id)
                await risk.payment_created(session, screened, payment, req)
                return payment, 0
            plan = stepping
        pick = await routing.next_candidate(session, plan)
        if pick is None:  # every candidate's daily limit or breaker probe was taken meanwhile
            routing.raise_exhausted(plan, req.method, req.currency)
        attempt = new_attempt(payment, pick, call_seconds)
        point_at(payment, attempt)
        await _insert(session, payment, req, top_up_wallet_id, attempt)
        await risk.payment_created(session, screened, payment, req)
    return await run_attempts(rt, payment, attempt, plan, started=started,
                              profit_sharing=profit_sharing)  # fmt: skip


async def run_attempts(
    rt: Runtime, payment: Payment, attempt: Attempt, plan: routing.Plan, *, started: float,
    profit_sharing: bool = False,
) -> tuple[Payment, int]:  # fmt: skip
    """Call the channel for ``attempt`` (inserted, status ``created``) and fail over along
    ``plan`` within the time budget. Returns the payment and the milliseconds channels took."""
    call_seconds = rt.settings.channel_timeout_seconds
    budget = rt.settings.routing_failover_budget_seconds
    account = plan.accounts[attempt.channel_account_id]
    channel_ms = 0
    while True:
        outcome = await _call_create(rt, payment, attempt, account,
                                     profit_sharing=profit_sharing)  # fmt: skip
        channel_ms += outcome.latency_ms
        if await _record_pending(rt, payment, attempt, outcome):
            break
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


DUPLICATE = "duplicate_out_trade_no"


def _duplicate(out_trade_no: str) -> Conflict:
    return Conflict(
        DUPLICATE,
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
        cancel_url=cancel_url(rt.settings.public_url, payment),
        client_ip=payment.client_ip, customer=payment.customer or {},
        profit_sharing=profit_sharing,
        step_up=risk.needs_step_up(payment) and registry.can_step_up(account.channel),
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
            if move_attempt(attempt, AttemptStatus.unknown):
                attempt.query_due_at = next_query_at(0)
            return payment, None
        move_attempt(attempt, AttemptStatus.failed)
        if attempt.limit_day is not None:  # the channel took nothing: give the limit back
            await routing.release(session, attempt.channel_account_id, attempt.limit_day,
                                  attempt.amount)  # fmt: skip
        assert outcome.error is not None
        if plan is not None and _fails_over(outcome):
            plan.tried.append({"account": attempt.channel_account_id, "kind": outcome.kind,
                               "code": outcome.error.code[:64]})  # fmt: skip
            pick = await routing.next_candidate(session, plan)
            if pick is not None:
                following = new_attempt(payment, pick, call_seconds)
                point_at(payment, following)
                session.add(following)
                return payment, following
        declined = outcome.kind == "declined"
        category = getattr(outcome.error, "category", None)
        code = (category or outcome.error.code) if declined else "channel_unavailable"
        if payment.cashier_methods is not None and payment.status == PaymentStatus.pending:
            # A cashier payment stays open: the customer picks another method.
            payment.next_action = cashier_action(public_url, payment)
            return payment, None
        await move_payment(
            session, payment, PaymentStatus.failed, public_url,
            failure=(code[:64], outcome.error.message[:500]),
        )  # fmt: skip
    return payment, None


class _Raced(Exception):
    """Something (a notification) moved the attempt first: the general path applies it."""


async def _record_pending(
    rt: Runtime, payment: Payment, attempt: Attempt, outcome: _Outcome
) -> bool:
    """The common answer — the order is open, waiting for the customer — in guarded UPDATEs
    (the payment first, as every path locks it) with no row loaded; ``payment`` and
    ``attempt`` are updated to match. False when it is another answer or the payment or the
    attempt moved meanwhile (a notification came first): nothing is written then, and
    :func:`_record_create` applies the answer under the payment's lock like any other."""
    created = outcome.created
    if created is None or created.status is not base.ChannelPaymentStatus.pending:
        return False
    action = created.next_action.to_dict() if created.next_action else None
    due = next_query_at(PENDING_FIRST_QUERY)
    try:
        async with rt.db.statement() as session:
            if not await PaymentRepository(session).open_pending(
                payment.id, attempt.id, next_action=action,
                channel_trade_no=created.channel_trade_no, latency_ms=outcome.latency_ms,
                query_due_at=due,
            ):  # fmt: skip
                raise _Raced
            await routing.record_call(
                session, app_id=payment.app_id, account_id=attempt.channel_account_id,
                method=attempt.method, ok=True, accepted=True, latency_ms=outcome.latency_ms,
            )  # fmt: skip
    except _Raced:
        return False
    payment.next_action = attempt.next_action = action
    attempt.status, attempt.query_due_at = AttemptStatus.pending, due
    attempt.channel_trade_no = attempt.channel_trade_no or created.channel_trade_no
    attempt.channel_latency_ms = outcome.latency_ms
    return True


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


def cancel_url(public_url: str, payment: Payment) -> str:
    """Where a customer who cancels on the channel's page goes (PayPal's "Cancel"): back to the
    hosted page, which offers the other methods — never the merchant's success URL."""
    return f"{public_url.rstrip('/')}/pay/{payment.id}?cancelled=1"

"""Payment-code (付款码) payments: the merchant scans the code the customer's wallet shows.

Methods: a channel's own (``wechat_barcode``, ``alipay_barcode``) or the aggregate ``barcode``,
which finds the wallet from the code through the :class:`~paymux.channels.base.PaymentCodeRule`
each channel declares (no table here: a channel that takes 云闪付 codes declares "19 digits
starting 62" and ``barcode`` routes them to it).

The flow, unlike every other method, is synchronous for the merchant:

1. ``customer.auth_code`` is checked (digits; the method's rule) before anything is stored; a
   code no configured channel takes is a 400 ``unsupported_auth_code`` and creates nothing.
2. One attempt at the *first* account that offers the wallet's method: a code belongs to one
   wallet, so a barcode payment is never retried on another channel. The code itself is stored
   and returned masked (``13**********6789``); the clear code only travels to the channel.
3. The request then waits, up to ``settings.barcode_wait_seconds``, querying at the channel's
   interval while the customer confirms (WeChat USERPAYING, Alipay 10003 WAIT_BUYER_PAY), and
   answers ``succeeded``, ``failed`` or ``pending``. The janitor carries on with a pending one.
4. Once the outcome is still unknown at the channel's limit
   (:class:`~paymux.channels.base.BarcodeTerms`, counted from the charge), the order is
   reversed at the channel (WeChat 撤销 ``…/reverse``, Alipay ``alipay.trade.cancel``): it can
   no longer be paid and money it took goes back to the customer. The attempt is marked
   ``reversing`` *before* the call, so from then on nothing the channel reports can make the
   payment succeed (:func:`paymux.payments.transitions.apply_state` ignores it): the books never
   count a reversed payment as paid, even when a success notification arrives late. The
   reverse is repeated until the channel confirms; the payment then ends ``failed`` with
   ``payment_reversed``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import structlog

from paymux.channel_accounts import service as channel_service
from paymux.channel_accounts.models import ChannelAccount
from paymux.channels import base, registry
from paymux.kit import clock, money
from paymux.kit.errors import InvalidRequest
from paymux.payments import service, transitions
from paymux.payments.models import Attempt, Payment
from paymux.payments.repository import PaymentRepository
from paymux.payments.schemas import PaymentCreate
from paymux.payments.states import (
    ATTEMPT_REVERSED,
    ATTEMPT_REVERSING,
    FINAL_ATTEMPT,
    AttemptStatus,
    PaymentStatus,
)
from paymux.risk import hooks as risk
from paymux.routing import service as routing
from paymux.runtime import Runtime

log = structlog.get_logger(__name__)

BARCODE_METHOD = "barcode"
"""The aggregate method: the wallet is detected from ``customer.auth_code``."""
REVERSED_FAILURE = (
    "payment_reversed",
    "The customer did not confirm in time; the order was reversed at the channel and any "
    "money taken goes back to the customer.",
)
_DEFAULT_TERMS = base.BarcodeTerms(poll_seconds=5.0, reverse_after_seconds=45.0)


def handles(method: str) -> bool:
    """Whether ``method`` is a payment-code method (this module's business)."""
    return method == BARCODE_METHOD or method in registry.barcode_methods()


def mask(code: str) -> str:
    """What is kept of a payment code: enough to recognise it on a receipt, not to reuse it."""
    keep_head, keep_tail = 2, 4
    if len(code) <= keep_head + keep_tail:
        return "*" * len(code)
    return code[:keep_head] + "*" * (len(code) - keep_head - keep_tail) + code[-keep_tail:]


def resolve_method(req: PaymentCreate) -> str:
    """The concrete payment-code method for a request, after checking its code."""
    code = req.customer.get("auth_code") or ""
    param = "customer.auth_code"
    if not code:
        raise InvalidRequest("customer_required", f"{req.method} needs {param}.", param=param)
    if not (code.isascii() and code.isdigit()):
        raise InvalidRequest("invalid_auth_code", "A payment code is digits only.", param=param)
    if req.method == BARCODE_METHOD:
        methods = registry.methods_for_payment_code(code)
        if len(methods) != 1:
            raise InvalidRequest(
                "unsupported_auth_code",
                "No configured wallet takes this payment code."
                if not methods
                else f"The payment code fits several wallets: {', '.join(methods)}.",
                param=param,
            )
        return methods[0]
    if not any(rule.matches(code) for rule in registry.payment_code_rules(req.method)):
        raise InvalidRequest(
            "invalid_auth_code", f"Not a payment code {req.method} takes.", param=param
        )
    return req.method


def _terms(adapter: object) -> base.BarcodeTerms:
    terms = getattr(adapter, "barcode_terms", None)
    return terms if isinstance(terms, base.BarcodeTerms) else _DEFAULT_TERMS


def _poll_seconds(rt: Runtime, terms: base.BarcodeTerms) -> float:
    return rt.settings.barcode_poll_seconds or terms.poll_seconds


def _give_up_at(attempt: Attempt, terms: base.BarcodeTerms) -> dt.datetime:
    return clock.aware(attempt.created_at) + dt.timedelta(seconds=terms.reverse_after_seconds)


# ------------------------------------------------------------------ create
async def create(
    rt: Runtime, *, app_id: str, merchant_id: str, livemode: bool, req: PaymentCreate,
    request_key: str | None = None,
) -> tuple[Payment, int]:  # fmt: skip
    """Charge the customer's payment code and wait (bounded) for the outcome."""
    money.check_amount(req.amount, req.currency)
    method = resolve_method(req)
    refusals = service.prechecks(req, method)
    auth_code = req.customer["auth_code"]
    stored = req.model_copy(
        update={"method": method, "customer": {**req.customer, "auth_code": mask(auth_code)}}
    )
    now = clock.now()
    expires_at = now + dt.timedelta(seconds=req.expires_in or rt.settings.payment_expiry_seconds)
    async with rt.db.transaction() as session:
        screened = await risk.screen_payment(
            session, stored, app_id=app_id, merchant_id=merchant_id, livemode=livemode
        )
        risk.at_the_counter(screened)
        risk.check_method(screened, method)
        refusals = risk.refusals(screened, method, refusals)
        try:
            plan = await routing.plan(
                session, app_id=app_id, livemode=livemode, method=method,
                currency=req.currency, amount=req.amount, pinned=req.channel,
                customer=dict(stored.customer), metadata=dict(req.metadata),
                refusals=refusals,
            )  # fmt: skip
        except InvalidRequest as exc:
            if req.method != BARCODE_METHOD or exc.code != "method_unavailable":
                raise
            raise InvalidRequest(
                "unsupported_auth_code",
                f"The payment code is a {method} code, which no enabled channel account of "
                "this app takes.",
                param="customer.auth_code",
            ) from exc
        payment = service._new_payment(stored, app_id=app_id, merchant_id=merchant_id,
                                       livemode=livemode, expires_at=expires_at,
                                       request_key=request_key)  # fmt: skip
        pick = await routing.next_candidate(session, plan)
        if pick is None:
            routing.raise_exhausted(plan, method, req.currency)
        account = pick.account  # a code belongs to one wallet: never another channel
        attempt = service.new_attempt(payment, pick, rt.settings.channel_timeout_seconds)
        service.point_at(payment, attempt)
        await service._insert(session, payment, stored, None, attempt)
        await risk.payment_created(session, screened, payment, stored)
    outcome = await _charge(rt, payment, attempt, account, auth_code)
    payment, _ = await service._record_create(
        rt, payment.id, attempt.id, outcome, plan=None,
        call_seconds=rt.settings.channel_timeout_seconds,
    )  # fmt: skip
    if payment.status == PaymentStatus.pending:
        payment = await _wait(rt, payment.id, attempt.id, account)
    return payment, outcome.latency_ms


async def _charge(
    rt: Runtime, payment: Payment, attempt: Attempt, account: ChannelAccount, auth_code: str
) -> service._Outcome:
    """The one create call, with the clear code (only in memory, never stored or logged)."""
    adapter = channel_service.adapter_for(rt.vault, account, rt.channel_http)
    request = base.CreatePayment(
        out_trade_no=attempt.id, method=payment.method, amount=payment.amount,
        currency=payment.currency, subject=payment.subject,
        notify_url=channel_service.notify_url(rt.settings.public_url, account),
        expires_at=payment.expires_at, description=payment.description,
        client_ip=payment.client_ip, customer={**payment.customer, "auth_code": auth_code},
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
    except base.ChannelError as exc:
        kind, error = "unknown", exc
    latency = int((time.perf_counter() - started) * 1000)
    if error is not None:
        log.info("barcode_charge_error", attempt=attempt.id, kind=kind, code=error.code)
    return service._Outcome(kind=kind, created=created, error=error, latency_ms=latency)


async def _wait(rt: Runtime, payment_id: str, attempt_id: str, account: ChannelAccount) -> Payment:
    """Poll until final, the request's budget or the channel's limit (then reverse)."""
    adapter = channel_service.adapter_for(rt.vault, account, rt.channel_http)
    terms = _terms(adapter)
    poll = _poll_seconds(rt, terms)
    answer_by = clock.now() + dt.timedelta(seconds=rt.settings.barcode_wait_seconds)
    while True:
        payment, attempt = await _load(rt, payment_id, attempt_id)
        give_up = _give_up_at(attempt, terms)
        now = clock.now()
        if payment.status != PaymentStatus.pending or attempt.status in FINAL_ATTEMPT:
            return payment
        if now >= give_up:
            return await reverse(rt, attempt_id)
        if now >= answer_by:
            break
        wait = min(poll, (min(answer_by, give_up) - now).total_seconds())
        await asyncio.sleep(max(wait, 0.0))
        await _query_and_apply(rt, adapter, payment_id, attempt_id)
    await _schedule(rt, attempt_id, terms, poll)
    return payment


async def _load(rt: Runtime, payment_id: str, attempt_id: str) -> tuple[Payment, Attempt]:
    async with rt.db.read() as session:
        payment = await session.get(Payment, payment_id)
        attempt = await PaymentRepository(session).get_attempt(attempt_id)
        assert payment is not None and attempt is not None
        return payment, attempt


async def _query_and_apply(
    rt: Runtime, adapter: base.ChannelAdapter, payment_id: str, attempt_id: str
) -> None:
    """Ask the channel once and apply a state it knows. ``not_found`` is no news here: the
    charge may still be arriving, and the limit's reverse settles it either way."""
    try:
        state = await adapter.query_payment(attempt_id)
    except base.ChannelError as exc:
        log.info("barcode_query_failed", attempt=attempt_id, code=exc.code)
        return
    if state.status is base.ChannelPaymentStatus.not_found:
        return
    async with rt.db.transaction() as session:
        repo = PaymentRepository(session)
        payment = await repo.lock(payment_id)
        fresh = await repo.get_attempt(attempt_id)
        assert fresh is not None
        await transitions.apply_state(session, payment, fresh, state, rt.settings.public_url)


async def _schedule(rt: Runtime, attempt_id: str, terms: base.BarcodeTerms, poll: float) -> None:
    """The janitor's next look: the channel's poll interval, and no later than the limit."""
    async with rt.db.transaction() as session:
        attempt = await PaymentRepository(session).get_attempt(attempt_id)
        assert attempt is not None
        if attempt.status not in FINAL_ATTEMPT:
            attempt.query_due_at = min(
                clock.now() + dt.timedelta(seconds=poll), _give_up_at(attempt, terms)
            )


# ------------------------------------------------------------------ janitor and reverse
async def resolve(rt: Runtime, attempt_id: str) -> None:
    """The janitor's turn for a payment-code attempt: query; reverse once past the limit (or
    again, if an earlier reverse was not confirmed)."""
    async with rt.db.read() as session:
        attempt = await PaymentRepository(session).get_attempt(attempt_id)
        if attempt is None or attempt.status in FINAL_ATTEMPT:
            return
        account = await channel_service.account_of(session, attempt.channel_account_id)
    adapter = channel_service.adapter_for(rt.vault, account, rt.channel_http)
    terms = _terms(adapter)
    if attempt.error_code != ATTEMPT_REVERSING:
        await _query_and_apply(rt, adapter, attempt.payment_id, attempt_id)
        _, attempt = await _load(rt, attempt.payment_id, attempt_id)
        if attempt.status in FINAL_ATTEMPT:
            return
        if clock.now() < _give_up_at(attempt, terms):
            await _schedule(rt, attempt_id, terms, _poll_seconds(rt, terms))
            return
    await reverse(rt, attempt_id)


CLOSED_FAILURE = (
    "payment_reversed",
    "Closed by the merchant: the order was reversed at the channel and any money taken goes "
    "back to the customer.",
)


async def reverse(
    rt: Runtime, attempt_id: str, failure: tuple[str, str] = REVERSED_FAILURE
) -> Payment:
    """Reverse a payment-code order (its outcome stayed unknown, or the merchant closes it),
    and end the payment ``failed`` with ``failure`` once the channel confirms. Not confirmed:
    the attempt stays ``reversing`` and the janitor calls again."""
    public_url = rt.settings.public_url
    async with rt.db.transaction() as session:
        repo = PaymentRepository(session)
        attempt = await repo.get_attempt(attempt_id)
        assert attempt is not None
        payment = await repo.lock(attempt.payment_id)
        await session.refresh(attempt)
        if attempt.status in FINAL_ATTEMPT:
            return payment
        attempt.error_code = ATTEMPT_REVERSING  # from now on, no success is believed
        account = await channel_service.account_of(session, attempt.channel_account_id)
    adapter = channel_service.adapter_for(rt.vault, account, rt.channel_http)
    reverser = getattr(adapter, "reverse_payment", None)
    confirmed: base.ReversedPayment | None = None
    if reverser is None:
        log.critical("barcode_channel_cannot_reverse", attempt=attempt_id)
    else:
        try:
            confirmed = await reverser(attempt_id, channel_trade_no=attempt.channel_trade_no)
        except base.ChannelError as exc:
            level = log.critical if isinstance(exc, base.BusinessError) else log.warning
            level("barcode_reverse_failed", attempt=attempt_id, code=exc.code)
    async with rt.db.transaction() as session:
        repo = PaymentRepository(session)
        payment = await repo.lock(attempt.payment_id)
        fresh = await repo.get_attempt(attempt_id)
        assert fresh is not None
        if confirmed is None:
            terms = _terms(adapter)
            fresh.query_due_at = clock.now() + dt.timedelta(seconds=_poll_seconds(rt, terms))
            return payment
        fresh.error_code = ATTEMPT_REVERSED
        fresh.error_message = (
            "reversed at the channel; money returned to the customer"
            if confirmed.refunded
            else "reversed at the channel"
        )
        transitions.move_attempt(fresh, AttemptStatus.closed)
        if payment.current_attempt_id == fresh.id:
            await transitions.move_payment(
                session, payment, PaymentStatus.failed, public_url, failure=failure
            )
    log.info("barcode_reversed", attempt=attempt_id, refunded=confirmed.refunded)
    return payment

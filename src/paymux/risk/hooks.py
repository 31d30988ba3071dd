"""Where payments meet the risk engine: the request's features, what a decision does to the
create path (block, restrict, review) and to a success (hold, post-payment rules).

Called by :mod:`paymux.payments.service` inside its create transaction (before routing) and by
:mod:`paymux.funds.hooks` inside the success transaction; nothing here does network I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channels import base, registry
from paymux.kit import clock
from paymux.kit.errors import InvalidRequest
from paymux.payments.models import Payment
from paymux.payments.repository import PaymentRepository
from paymux.payments.schemas import PaymentCreate
from paymux.risk import decisions, reviews, signals
from paymux.risk.attributes import EventType
from paymux.risk.decisions import Screening
from paymux.risk.features import velocity
from paymux.risk.models import Verdict
from paymux.risk.repository import DecisionRepository

PAYER_FIELDS = ("payer_account", "openid", "sub_openid", "buyer_id", "buyer_open_id")
"""Which ``customer`` field names the payer's account at the channel, first found wins."""


def _signals(req: PaymentCreate) -> dict[str, Any]:
    sig = req.risk
    values: dict[str, Any] = {
        "method": req.method, "channel": req.channel,
        "ip": req.client_ip or req.customer.get("ip"),
    }  # fmt: skip
    if sig is not None:
        values.update(device_id=sig.device_id, user_agent=sig.user_agent, sku=sig.sku,
                      quantity=sig.quantity)  # fmt: skip
    return {k: v for k, v in values.items() if v is not None}


def _payer(customer: Mapping[str, Any]) -> str | None:
    return next((str(customer[f]) for f in PAYER_FIELDS if customer.get(f)), None)


def payment_request(
    req: PaymentCreate, *, app_id: str, merchant_id: str, livemode: bool
) -> signals.Request:
    sig = req.risk
    return signals.Request(
        event=EventType.payment_create, merchant_id=merchant_id, app_id=app_id,
        livemode=livemode, subject_type="payment", amount=req.amount, currency=req.currency,
        values=_signals(req), customer_ref=req.customer.get("id"),
        kyc_level=sig.kyc_level if sig else None,
        customer_since=sig.account_created_at if sig else None,
    )  # fmt: skip


async def screen_payment(
    session: AsyncSession, req: PaymentCreate, *, app_id: str, merchant_id: str, livemode: bool
) -> Screening:
    """Screen a new payment; a block is :func:`decisions.refuse` (nothing is created)."""
    return await screen_or_refuse(
        session, payment_request(req, app_id=app_id, merchant_id=merchant_id, livemode=livemode)
    )


async def screen_or_refuse(session: AsyncSession, request: signals.Request) -> Screening:
    """Screen a payment, payout, transfer or refund; a block is :func:`decisions.refuse`. If
    the engine fails, money in proceeds and money out waits for review (the failure policy)."""
    screened = await decisions.screen(session, request)
    if screened.verdict is Verdict.block:
        decisions.refuse(session, screened)
    return screened


def at_the_counter(screened: Screening) -> None:
    """A payment that cannot be challenged (a payment code at the till, a wallet balance paid
    at once): a ``challenge`` goes through and opens a review instead."""
    if screened.verdict is Verdict.challenge:
        screened.verdict = Verdict.review
        if screened.decision is not None:
            screened.decision.outcome = Verdict.review


def check_method(screened: Screening, method: str) -> None:
    """A method the decision does not leave is a 400 naming the ones it does."""
    allowed = screened.restrict_methods
    if allowed is not None and method not in allowed:
        raise InvalidRequest("risk_method_restricted", "This payment may only use "
                             f"{', '.join(sorted(allowed)) or 'no method'}.",
                             param="method")  # fmt: skip


def allowed_methods(screened: Screening, methods: list[str]) -> list[str]:
    """A cashier's methods, less those the decision does not leave (none left: a 400)."""
    allowed = screened.restrict_methods
    if allowed is None:
        return methods
    kept = [m for m in methods if m in allowed] if methods else sorted(allowed)
    if not kept:
        check_method(screened, methods[0])
    return kept


def refusals(
    screened: Screening, method: str, refused: dict[str, base.RequestProblem]
) -> dict[str, base.RequestProblem]:
    """Routing leaves out the channels the decision does not leave, as if they refused."""
    return _channel_refusals(screened.restrict_channels, method, refused)


async def payment_refusals(
    session: AsyncSession, payment: Payment, refused: dict[str, base.RequestProblem]
) -> dict[str, base.RequestProblem]:
    """:func:`refusals` for a payment routed after its creation (once the merchant verified
    a challenged customer): the channels its decision left, read back from the decision."""
    decision_id = (payment.risk or {}).get("decision")
    if decision_id is None:
        return refused
    found = await decisions.get(session, payment.merchant_id, payment.livemode, decision_id)
    allowed = frozenset(found.restrict_channels) if found and found.restrict_channels else None
    return _channel_refusals(allowed, payment.method, refused)


def challenged(screened: Screening) -> bool:
    """A ``challenge`` decision: the payer authenticates strongly at a channel that can step
    up (3-D Secure), or else the merchant verifies them before any channel is called."""
    return screened.verdict is Verdict.challenge


def needs_step_up(payment: Payment) -> bool:
    """The payment was challenged and the merchant has not verified the customer: its
    attempts ask their channel to step up (where the channel can)."""
    risk = payment.risk or {}
    verified = (payment.verification or {}).get("status") == "verified"
    return risk.get("outcome") == Verdict.challenge.value and not verified


def _channel_refusals(
    allowed: frozenset[str] | None, method: str, refused: dict[str, base.RequestProblem]
) -> dict[str, base.RequestProblem]:
    if allowed is None:
        return refused
    problem = base.RequestProblem("risk_channel_restricted", "This payment may only be routed "
                                  f"to {', '.join(sorted(allowed))}.", "channel")  # fmt: skip
    out = dict(refused)
    for channel in registry.channels_for_method(method):
        if channel not in allowed:
            out.setdefault(channel, problem)
    return out


def _stored_signals(req: PaymentCreate) -> dict[str, Any]:
    sig = req.risk
    return sig.model_dump(mode="json", exclude_none=True) if sig is not None else {}


async def payment_created(
    session: AsyncSession, screened: Screening, payment: Payment, req: PaymentCreate
) -> None:
    """The payment is inserted: its decision and counters, in the same transaction; a review
    opens now for ``review`` (a ``hold`` opens its review when the money is taken)."""
    decision = await decisions.note(session, screened, payment.id, "payments")
    stored = _stored_signals(req)
    if decision is None and not stored:
        return
    risk: dict[str, Any] = {"signals": stored} if stored else {}
    if decision is not None:
        risk.update(decision=decision.id, outcome=decision.outcome.value,
                    unevaluated=decision.unevaluated)  # fmt: skip
        if decision.outcome == Verdict.review:
            review = await reviews.open_review(session, decision, Verdict.review)
            risk["review"] = review.id
    payment.risk = risk


def stored_request(
    payment: Payment,
    event: EventType,
    *,
    amount: int | None = None,
    subject_type: str = "payment",
    **extra: Any,
) -> signals.Request:
    """A request of ``event`` about a payment already made, from what it stored: its method,
    channel, IP, the merchant's signals and the payer's account (post-payment rules, a refund,
    a second look after the engine failed)."""
    stored = (payment.risk or {}).get("signals", {})
    values: dict[str, Any] = {
        "method": payment.method, "channel": payment.channel, "ip": payment.client_ip,
        "device_id": stored.get("device_id"), "user_agent": stored.get("user_agent"),
        "sku": stored.get("sku"), "quantity": stored.get("quantity"),
        "payer_account": _payer(payment.customer or {}), **extra,
    }  # fmt: skip
    return signals.Request(
        event=event, merchant_id=payment.merchant_id, app_id=payment.app_id,
        livemode=payment.livemode, subject_type=subject_type,
        amount=payment.amount if amount is None else amount, currency=payment.currency,
        values={k: v for k, v in values.items() if v is not None},
        customer_ref=payment.customer_ref, kyc_level=stored.get("kyc_level"),
        subject_id=payment.id if subject_type == "payment" else None,
    )  # fmt: skip


async def payment_succeeded(session: AsyncSession, payment: Payment) -> bool:
    """The payment's money was taken: run the post-payment rules, count the success toward
    the payer's features, and say whether the money is held (a ``hold`` decision at create
    or now; a post-payment ``block`` cannot refuse money already taken, so it holds too)."""
    screened = await decisions.screen(session, stored_request(payment, EventType.payment_succeeded))
    await decisions.note(session, screened, payment.id, None)
    await signals.count_payer(session, screened.request, payment.paid_at or payment.created_at)
    risk = dict(payment.risk or {})
    held_at_create = risk.get("outcome") == Verdict.hold.value
    post = screened.verdict
    if not held_at_create and post not in (Verdict.hold, Verdict.block, Verdict.review):
        return False
    decision = screened.decision
    if held_at_create or decision is None:
        found = await decisions.get(session, payment.merchant_id, payment.livemode,
                                    risk["decision"])  # fmt: skip
        assert found is not None
        decision, outcome = found, Verdict.hold
    else:
        outcome = Verdict.review if post is Verdict.review else Verdict.hold
    if "review" not in risk:
        review = await reviews.open_review(session, decision, outcome)
        risk["review"] = review.id
    if outcome is Verdict.hold:
        risk["held"] = True
    payment.risk = risk
    return outcome is Verdict.hold


# -- money out: payouts, wallet transfers, refunds --------------------------------------------

WAITS = frozenset({Verdict.review, Verdict.hold, Verdict.challenge})
"""For money out, these mean: not sent until a reviewer approves (issue 14)."""


def waits(screened: Screening) -> bool:
    return screened.verdict in WAITS


def payout_request(
    *, merchant_id: str, app_id: str, livemode: bool, amount: int, currency: str,
    customer_ref: str, kyc_level: int, payee_account: str, payee_type: str, balance: int,
) -> signals.Request:  # fmt: skip
    """A payout as the rules see it (its source is the ``customer``)."""
    return signals.Request(
        event=EventType.payout_create, merchant_id=merchant_id, app_id=app_id,
        livemode=livemode, subject_type="payout", amount=amount, currency=currency,
        values={"payee_account": payee_account, "payee_type": payee_type, "balance": balance},
        customer_ref=customer_ref, kyc_level=kyc_level,
    )  # fmt: skip


async def payout_failed(session: AsyncSession, request: signals.Request,
                        created_at: dt.datetime) -> None:  # fmt: skip
    """A payout failed or was declined: it no longer uses up its source's counters (the
    withdrawal limits count what is paid or on its way)."""
    await velocity.record(session, request.subjects(), "payouts", request.amount, created_at,
                          undo=True)  # fmt: skip


async def money_out_created(
    session: AsyncSession, screened: Screening, subject_id: str, measure: str | None
) -> str | None:
    """The payout, transfer or refund exists: its decision and counters; the id of the review
    it waits for, if it waits."""
    decision = await decisions.note(session, screened, subject_id, measure)
    if decision is None or not waits(screened):
        return None
    outcome = Verdict.hold if screened.verdict is Verdict.hold else Verdict.review
    return (await reviews.open_review(session, decision, outcome)).id


async def screen_refund(session: AsyncSession, payment: Payment, amount: int) -> Screening:
    """Screen a refund of ``payment``."""
    paid = payment.paid_at or payment.created_at
    return await screen_or_refuse(session, stored_request(
        payment, EventType.refund_create, amount=amount, subject_type="refund",
        payment_amount=payment.amount, refunded_amount=payment.amount_refunded or 0,
        payment_age_hours=int((clock.now() - paid).total_seconds() // 3600),
    ))  # fmt: skip


# -- the failure policy's second look ------------------------------------------------------------


async def reevaluate_payment(session: AsyncSession, decision_id: str) -> Verdict | None:
    """Screen again a payment that went ahead unevaluated (the engine had failed): the
    decision gets the rules' results; what they would have stopped opens a review (the money
    is already moving). None when the engine fails again (tried again later)."""
    decision = await DecisionRepository(session).get(None, None, decision_id)
    if decision is None or decision.reevaluated_at is not None or decision.subject_id is None:
        return None
    payment = await PaymentRepository(session).lock(decision.subject_id)
    screened = await decisions.screen(session, stored_request(payment, EventType.payment_create))
    second = screened.decision
    if second is not None and second.unevaluated:
        return None
    decision.reevaluated_at = clock.now()
    if second is None:  # no rules in force any more: nothing to look at again
        return Verdict.allow
    decision.results, decision.features = second.results, second.features
    decision.versions, decision.score = second.versions, second.score
    if screened.verdict in (Verdict.block, Verdict.hold, Verdict.review, Verdict.challenge):
        risk = dict(payment.risk or {})
        if "review" not in risk:
            risk["review"] = (await reviews.open_review(session, decision, Verdict.review)).id
            payment.risk = risk
    return screened.verdict

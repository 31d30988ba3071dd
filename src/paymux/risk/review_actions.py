"""What closing a review does to the money it is about.

- a payment under ``review``: approved, nothing changes; declined, a succeeded payment is
  refunded in full (the reviewer judged it fraud).
- a ``hold``: approved, the held money goes where it would have gone (escrow or pending, its
  settlement clock starting now); declined, it is refunded in full through the channel.
- money out (payouts, transfers, refunds) waiting for approval: approved, it is sent;
  declined, it is cancelled and its hold returned (each domain's ``review_closed``).

The review closes in one transaction with the ledger moves it causes; a refund it asks for is
made after that commit with a deterministic ``out_refund_no`` (``risk_<review>``), so a retry —
by the reviewer, or by the worker's :func:`finish_declines` after a crash — is the same refund.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.funds import hooks as funds_hooks
from paymux.funds.repository import FundsRepository
from paymux.kit import clock
from paymux.kit.errors import Conflict, InvalidRequest
from paymux.payments.models import Payment
from paymux.payments.repository import PaymentRepository
from paymux.payments.states import PaymentStatus
from paymux.payouts import service as payouts
from paymux.refunds import service as refunds
from paymux.refunds.schemas import RefundCreate
from paymux.risk import reviews, service
from paymux.risk.models import ReviewState, RiskReview
from paymux.risk.repository import DecisionRepository
from paymux.risk.schemas import ItemIn, ListAddition
from paymux.runtime import Runtime
from paymux.wallets import service as wallets

log = structlog.get_logger(__name__)

Releaser = Callable[[AsyncSession, str, bool], Awaitable[None]]
RELEASERS: dict[str, Releaser] = {
    "payout": payouts.review_closed,
    "transfer": wallets.transfer_review_closed,
    "refund": refunds.review_closed,
}
"""What approving (True) or declining money out does, per subject type, in the closing
transaction."""


def refund_number(review: RiskReview) -> str:
    return f"risk_{review.id}"


@dataclass(frozen=True)
class Closed:
    review: RiskReview
    refund: str | None = None
    """The refund a decline made, if any."""


async def _payment_effect(session: AsyncSession, review: RiskReview, approved: bool) -> bool:
    """The payment side of a closing review; True when a refund must follow."""
    payment = await PaymentRepository(session).lock(review.subject_id)
    funds = await FundsRepository(session).lock(payment.id)
    _mark(payment, review)
    if approved:
        if funds is not None and funds.risk_held:
            await funds_hooks.risk_hold_released(session, payment)
        return False
    return payment.status == PaymentStatus.succeeded and payment.amount_refunded < payment.amount


def _mark(payment: Payment, review: RiskReview) -> None:
    risk = dict(payment.risk or {})
    risk["review_state"] = str(review.state)
    if review.state == ReviewState.approved:
        risk.pop("held", None)
    payment.risk = risk


async def close(
    rt: Runtime, review_id: str, state: ReviewState, *, merchant_id: str | None,
    livemode: bool | None, by: str, reason: str, add_to_list: ListAddition | None = None,
) -> Closed:  # fmt: skip
    """Approve or decline an open review (a closed one is a 409) and do what it says."""
    refund_due = False
    async with rt.db.transaction() as session:
        review = await reviews.get(session, merchant_id, livemode, review_id, lock=True)
        if review.state != ReviewState.open:
            raise Conflict("review_closed", f"Review {review.id} is already {review.state}.")
        await reviews.close(session, review, state, by=by, reason=reason)
        approved = state is ReviewState.approved
        if review.subject_type == "payment":
            refund_due = await _payment_effect(session, review, approved)
        else:
            await RELEASERS[review.subject_type](session, review.subject_id, approved)
        if add_to_list is not None:
            who = service.Owner(merchant_id, review.livemode, by)
            await _add_to_list(session, review, who, add_to_list)
    refund = await _refund(rt, review) if refund_due else None
    if review.subject_type == "refund" and approved:
        await refunds.resolve(rt, review.subject_id)  # ask the channel now (else: the janitor)
    return Closed(review, refund)


async def _refund(rt: Runtime, review: RiskReview) -> str | None:
    """Refund what is left of a declined payment (idempotent by its number)."""
    try:
        made = await refunds.create(rt, app_id=review.app_id, livemode=review.livemode,
                                    req=RefundCreate(payment=review.subject_id,
                                                     out_refund_no=refund_number(review),
                                                     reason="risk review declined"),
                                    screen=False)  # fmt: skip
    except Exception as exc:  # the worker's finish_declines tries again
        log.warning("risk_decline_refund_failed", review=review.id, error=type(exc).__name__)
        return None
    return made.id


async def _add_to_list(
    session: AsyncSession, review: RiskReview, who: service.Owner, addition: ListAddition
) -> None:
    """Put one of the decision's feature values (``attribute``) on one of the owner's lists."""
    decision = await DecisionRepository(session).get(review.merchant_id, review.livemode,
                                                     review.decision_id)  # fmt: skip
    assert decision is not None
    value = (decision.features or {}).get(addition.attribute)
    if value is None:
        raise InvalidRequest(
            "attribute_unknown",
            f"The decision has no value of {addition.attribute!r} to add.",
            param="add_to_list.attribute",
        )
    found = await service.get_list(session, who, addition.list, review.livemode, changing=True)
    item = ItemIn(value=str(value), reason=addition.reason or f"review {review.id}")
    await service.add_items(session, who, found, [item])


async def finish_declines(rt: Runtime, limit: int = 100) -> int:
    """Declined reviews of payments whose money is still held and unrefunded: refund them
    (a crash between the decline and its refund)."""
    async with rt.db.read() as session:
        due = await DecisionRepository(session).declined_holds(limit)
    made = 0
    for review in due:
        made += await _refund(rt, review) is not None
    return made


async def expire(rt: Runtime, now_limit: int = 100) -> int:
    """Close the reviews past their deadline with their default (the worker, every minute)."""
    async with rt.db.read() as session:
        due = await DecisionRepository(session).overdue(clock.now(), now_limit)
    closed = 0
    for review_id, on_expiry in due:
        state = ReviewState(on_expiry)
        try:
            await close(rt, review_id, state, merchant_id=None, livemode=None,
                        by="system:deadline", reason="the review's deadline passed")  # fmt: skip
        except Conflict:
            continue  # closed by a person meanwhile
        closed += 1
    return closed


__all__ = ["RELEASERS", "Closed", "close", "expire", "finish_declines"]

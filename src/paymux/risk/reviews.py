"""The review queue: decisions a person must look at. Opening, assigning, listing and closing
a review live here; what a closed review does to its payment, refund, payout or transfer is
:mod:`paymux.risk.review_actions` (it calls the domains that move the money).

Each review has a deadline; when it passes, the worker closes it with the event's default
(:data:`ON_EXPIRY`): a payment that went through under review is approved, held money and
money waiting to go out is declined — nothing leaves, or stays held, on nobody's word.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit import clock
from paymux.kit.errors import Conflict, NotFound
from paymux.kit.ids import new_id
from paymux.risk import audit
from paymux.risk.attributes import EventType
from paymux.risk.models import ReviewState, RiskDecision, RiskReview, Verdict
from paymux.risk.repository import DecisionRepository
from paymux.webhooks import service as webhooks

DEADLINES: dict[tuple[EventType, Verdict], dt.timedelta] = {
    (EventType.payment_create, Verdict.review): dt.timedelta(hours=72),
    (EventType.payment_create, Verdict.hold): dt.timedelta(hours=72),
    (EventType.payment_succeeded, Verdict.review): dt.timedelta(hours=72),
    (EventType.payment_succeeded, Verdict.hold): dt.timedelta(hours=72),
}
"""How long a review may stay open, per event and outcome (default :data:`DEFAULT_DEADLINE`)."""
DEFAULT_DEADLINE = dt.timedelta(hours=24)

ON_EXPIRY: dict[tuple[str, Verdict], ReviewState] = {
    ("payment", Verdict.review): ReviewState.approved,
    ("payment", Verdict.hold): ReviewState.declined,
}
"""What an expired review becomes, per subject and outcome (else: declined)."""


def _event(decision: RiskDecision) -> EventType:
    return EventType(decision.event)


async def open_review(
    session: AsyncSession, decision: RiskDecision, outcome: Verdict
) -> RiskReview:
    """A review of ``decision`` (one per decision), and ``risk.review.opened``."""
    now = clock.now()
    assert decision.subject_id is not None
    review = RiskReview(
        id=new_id("rrv"), decision_id=decision.id, merchant_id=decision.merchant_id,
        app_id=decision.app_id, livemode=decision.livemode,
        subject_type=decision.subject_type, subject_id=decision.subject_id, outcome=outcome,
        state=ReviewState.open, reason="", assignee=None,
        deadline=now + DEADLINES.get((_event(decision), outcome), DEFAULT_DEADLINE),
        on_expiry=ON_EXPIRY.get((decision.subject_type, outcome), ReviewState.declined),
        version=1, created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(review)
    await session.flush()
    await webhooks.emit(session, app_id=review.app_id, livemode=review.livemode,
                        type="risk.review.opened", data=view(review))  # fmt: skip
    return review


def view(r: RiskReview) -> dict[str, Any]:
    """A review as the API and webhooks show it."""
    return {
        "id": r.id, "object": "risk.review", "livemode": r.livemode, "decision": r.decision_id,
        "subject_type": r.subject_type, "subject_id": r.subject_id, "outcome": r.outcome,
        "state": r.state, "reason": r.reason, "assignee": r.assignee,
        "deadline": int(r.deadline.timestamp()), "on_expiry": r.on_expiry,
        "closed_by": r.closed_by,
        "closed_at": int(r.closed_at.timestamp()) if r.closed_at else None,
        "created": int(r.created_at.timestamp()),
    }  # fmt: skip


async def get(session: AsyncSession, merchant_id: str | None, livemode: bool | None,
              review_id: str, *, lock: bool = False) -> RiskReview:  # fmt: skip
    found = await DecisionRepository(session).review(merchant_id, livemode, review_id, lock=lock)
    if found is None:
        raise NotFound("review", review_id)
    return found


async def assign(session: AsyncSession, review: RiskReview, assignee: str | None, *,
                 by: str) -> RiskReview:  # fmt: skip
    if review.state != ReviewState.open:
        raise Conflict("review_closed", f"Review {review.id} is {review.state}.")
    before = review.assignee
    review.assignee = assignee
    review.updated_at = clock.now()
    _audit(session, review, by, "review.assigned", before=before, after=assignee)
    return review


def _audit(session: AsyncSession, review: RiskReview, by: str, action: str, **detail: Any) -> None:
    audit.record(
        session,
        owner=review.merchant_id,
        livemode=review.livemode,
        actor=by,
        action=action,
        object_type="risk.review",
        object_id=review.id,
        **detail,
    )


async def close(session: AsyncSession, review: RiskReview, state: ReviewState, *, by: str,
                reason: str) -> RiskReview:  # fmt: skip
    """Close an open review (the caller holds its row lock) and emit ``risk.review.closed``."""
    if review.state != ReviewState.open:
        raise Conflict("review_closed", f"Review {review.id} is already {review.state}.")
    now = clock.now()
    review.state, review.reason, review.closed_by, review.closed_at = state, reason, by, now
    review.updated_at = now
    _audit(session, review, by, f"review.{state}", reason=reason)
    await session.flush()
    await webhooks.emit(session, app_id=review.app_id, livemode=review.livemode,
                        type="risk.review.closed", data=view(review))  # fmt: skip
    return review

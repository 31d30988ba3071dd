"""Worker jobs of the payments domain: the janitor (query attempts whose outcome we do not
know, or that never got a notification) and expiry (close at the channel, then ``expired``)."""

from __future__ import annotations

import structlog

from paymux.kit.db import Due, claim_due
from paymux.kit.errors import PaymuxError
from paymux.payments import lifecycle, transitions
from paymux.payments.models import Attempt, Payment
from paymux.payments.states import AttemptStatus, PaymentStatus
from paymux.runtime import Runtime

log = structlog.get_logger(__name__)

LEASE_SECONDS = 60.0

QUERY_DUE = Due(Attempt.query_due_at, (Attempt.status.in_([
    AttemptStatus.created, AttemptStatus.unknown, AttemptStatus.pending,
]),))  # fmt: skip
EXPIRY_DUE = Due(Payment.expiry_due_at, (Payment.status == PaymentStatus.pending,))


async def query_due(rt: Runtime, *, limit: int = 50) -> int:
    """Query every open attempt whose next query is due. Returns how many were handled."""
    async with rt.db.transaction() as session:
        attempts = await claim_due(
            session, Attempt, QUERY_DUE, limit=limit, lease_seconds=LEASE_SECONDS
        )
        ids = [a.id for a in attempts]
    for attempt_id in ids:
        try:
            await lifecycle.resolve_attempt(rt, attempt_id)
        except Exception:  # one bad attempt must not stop the others; its lease retries it
            log.exception("janitor_failed", attempt=attempt_id)
    return len(ids)


async def expire_due(rt: Runtime, *, limit: int = 50) -> int:
    """Close payments past their expiry at the channel, then mark them ``expired``."""
    async with rt.db.transaction() as session:
        payments = await claim_due(
            session, Payment, EXPIRY_DUE, limit=limit,
            lease_seconds=transitions.EXPIRY_RETRY_SECONDS,
        )  # fmt: skip
        ids = [p.id for p in payments]
    for payment_id in ids:
        try:
            await lifecycle.expire(rt, payment_id)
        except PaymuxError as exc:  # channel unreachable: the lease brings it back later
            log.warning("expiry_deferred", payment=payment_id, code=exc.code)
        except Exception:
            log.exception("expiry_failed", payment=payment_id)
    return len(ids)

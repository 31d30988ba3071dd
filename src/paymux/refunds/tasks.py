"""Worker job of refunds: the janitor asks channels about refunds still pending."""

from __future__ import annotations

import structlog

from paymux.kit.db import Due, claim_due
from paymux.refunds import service
from paymux.refunds.models import Refund, RefundStatus
from paymux.runtime import Runtime

log = structlog.get_logger(__name__)

LEASE_SECONDS = 60.0
DUE = Due(Refund.query_due_at, (Refund.status == RefundStatus.pending,))


async def query_due(rt: Runtime, *, limit: int = 50) -> int:
    async with rt.db.transaction() as session:
        refunds = await claim_due(session, Refund, DUE, limit=limit, lease_seconds=LEASE_SECONDS)
        ids = [r.id for r in refunds]
    for refund_id in ids:
        try:
            await service.resolve(rt, refund_id)
        except Exception:  # one bad refund must not stop the others; its lease retries it
            log.exception("refund_janitor_failed", refund=refund_id)
    return len(ids)

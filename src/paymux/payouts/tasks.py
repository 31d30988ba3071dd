"""Worker job of payouts: the standard batch when its time comes, and queries of payouts the
channel has not finished."""

from __future__ import annotations

import structlog

from paymux.kit.db import any_due, claim_due
from paymux.payouts import service
from paymux.payouts.models import Payout, PayoutStatus
from paymux.runtime import Runtime

log = structlog.get_logger(__name__)


async def send_due(rt: Runtime, *, limit: int = 100) -> int:
    where = [Payout.status.in_([PayoutStatus.pending, PayoutStatus.processing])]
    if not await any_due(rt.db, Payout.due_at, where=where):
        return 0
    async with rt.db.transaction() as session:
        claimed = await claim_due(session, Payout, Payout.due_at, where=where, limit=limit,
                                  lease_seconds=60.0)  # fmt: skip
        ids = [p.id for p in claimed]
    for payout_id in ids:
        try:
            await service.send(rt, payout_id)
        except Exception:  # its lease retries it
            log.exception("payout_send_failed", payout=payout_id)
    return len(ids)

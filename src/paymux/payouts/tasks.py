"""Worker job of payouts: the standard batch when its time comes, and queries of payouts the
channel has not finished."""

from __future__ import annotations

import structlog

from paymux.kit.db import Due, claim_due
from paymux.payouts import service
from paymux.payouts.models import Payout, PayoutStatus
from paymux.runtime import Runtime

log = structlog.get_logger(__name__)

DUE = Due(Payout.due_at, (Payout.status.in_([PayoutStatus.pending, PayoutStatus.processing]),))


async def send_due(rt: Runtime, *, limit: int = 100) -> int:
    async with rt.db.transaction() as session:
        claimed = await claim_due(session, Payout, DUE, limit=limit, lease_seconds=60.0)
        ids = [p.id for p in claimed]
    for payout_id in ids:
        try:
            await service.send(rt, payout_id)
        except Exception:  # its lease retries it
            log.exception("payout_send_failed", payout=payout_id)
    return len(ids)

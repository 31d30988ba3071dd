"""Worker job of splits: send channel splits and ask about those in flight."""

from __future__ import annotations

import structlog

from paymux.kit.db import Due, claim_due
from paymux.runtime import Runtime
from paymux.splits import service
from paymux.splits.models import Split, SplitStatus

log = structlog.get_logger(__name__)

DUE = Due(Split.due_at, (Split.status == SplitStatus.processing,))


async def process_due(rt: Runtime, *, limit: int = 50) -> int:
    async with rt.db.transaction() as session:
        claimed = await claim_due(session, Split, DUE, limit=limit, lease_seconds=60.0)
        ids = [s.id for s in claimed]
    for split_id in ids:
        try:
            await service.process(rt, split_id)
        except Exception:  # its lease retries it
            log.exception("split_process_failed", split=split_id)
    return len(ids)

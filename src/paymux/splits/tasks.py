"""Worker job of splits: send channel splits and ask about those in flight."""

from __future__ import annotations

import structlog

from paymux.kit.db import any_due, claim_due
from paymux.runtime import Runtime
from paymux.splits import service
from paymux.splits.models import Split, SplitStatus

log = structlog.get_logger(__name__)


async def process_due(rt: Runtime, *, limit: int = 50) -> int:
    where = [Split.status == SplitStatus.processing]
    if not await any_due(rt.db, Split.due_at, where=where):
        return 0
    async with rt.db.transaction() as session:
        claimed = await claim_due(session, Split, Split.due_at, where=where, limit=limit,
                                  lease_seconds=60.0)  # fmt: skip
        ids = [s.id for s in claimed]
    for split_id in ids:
        try:
            await service.process(rt, split_id)
        except Exception:  # its lease retries it
            log.exception("split_process_failed", split=split_id)
    return len(ids)

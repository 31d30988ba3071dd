"""Worker job of the ledger: void holds whose ``expires_at`` has passed."""

from __future__ import annotations

from paymux.kit.db import any_due
from paymux.ledger import service
from paymux.ledger.models import LedgerTransaction, TxStatus
from paymux.runtime import Runtime


async def void_expired(rt: Runtime, *, limit: int = 100) -> int:
    where = [LedgerTransaction.status == TxStatus.pending]
    if not await any_due(rt.db, LedgerTransaction.expires_at, where=where):
        return 0
    async with rt.db.transaction() as session:
        return await service.void_expired_holds(session, limit=limit)

"""Worker job of the ledger: void holds whose ``expires_at`` has passed."""

from __future__ import annotations

from paymux.kit.db import Due
from paymux.ledger import service
from paymux.ledger.models import LedgerTransaction, TxStatus
from paymux.runtime import Runtime

DUE = Due(LedgerTransaction.expires_at, (LedgerTransaction.status == TxStatus.pending,))


async def void_expired(rt: Runtime, *, limit: int = 100) -> int:
    async with rt.db.transaction() as session:
        return await service.void_expired_holds(session, limit=limit)

"""Worker jobs of money at rest: settle what is due, release escrows past their deadline."""

from __future__ import annotations

from paymux.escrow import service as escrow
from paymux.funds.models import EscrowState, PaymentFunds
from paymux.kit.db import any_due
from paymux.runtime import Runtime
from paymux.settlement import service


async def settle_due(rt: Runtime, *, limit: int = 500) -> int:
    where = [PaymentFunds.settlement_id.is_(None), PaymentFunds.gross > 0]
    if not await any_due(rt.db, PaymentFunds.settle_due_at, where=where):
        return 0
    async with rt.db.transaction() as session:
        return len(await service.settle_due(session, limit=limit))


async def release_escrows(rt: Runtime, *, limit: int = 100) -> int:
    where = [PaymentFunds.escrow_state == EscrowState.held]
    if not await any_due(rt.db, PaymentFunds.escrow_deadline, where=where):
        return 0
    return await escrow.auto_confirm(rt, limit=limit)

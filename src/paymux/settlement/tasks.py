"""Worker jobs of money at rest: settle what is due, release escrows past their deadline."""

from __future__ import annotations

from paymux.escrow import service as escrow
from paymux.funds.models import EscrowState, PaymentFunds
from paymux.kit.db import Due
from paymux.runtime import Runtime
from paymux.settlement import service

SETTLE_DUE = Due(
    PaymentFunds.settle_due_at, (PaymentFunds.settlement_id.is_(None), PaymentFunds.gross > 0)
)
ESCROW_DUE = Due(PaymentFunds.escrow_deadline, (PaymentFunds.escrow_state == EscrowState.held,))


async def settle_due(rt: Runtime, *, limit: int = 500) -> int:
    async with rt.db.transaction() as session:
        return len(await service.settle_due(session, limit=limit))


async def release_escrows(rt: Runtime, *, limit: int = 100) -> int:
    return await escrow.auto_confirm(rt, limit=limit)

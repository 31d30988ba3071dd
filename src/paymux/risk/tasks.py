"""What the worker runs for risk: reviews past their deadline closed with their default,
refunds of declined holds finished after a crash, counters no window reads purged."""

from __future__ import annotations

from paymux.kit import clock
from paymux.risk import review_actions
from paymux.risk.features import velocity
from paymux.runtime import Runtime

EVERY_SECONDS = 60.0
PURGE_EVERY_SECONDS = 3600.0


async def reviews_due(rt: Runtime) -> int:
    """Expired reviews, then declined holds still unrefunded."""
    return await review_actions.expire(rt) + await review_actions.finish_declines(rt)


async def purge_features(rt: Runtime) -> int:
    """Delete buckets and links older than every window (in batches, until none is left)."""
    total = 0
    while True:
        async with rt.db.transaction() as session:
            gone = await velocity.purge(session, clock.now())
        total += gone
        if not gone:
            return total

"""What the worker runs for risk: reviews past their deadline closed with their default,
refunds of declined holds finished after a crash, counters no window reads purged."""

from __future__ import annotations

from paymux.kit import clock
from paymux.risk import hooks, review_actions
from paymux.risk.features import velocity
from paymux.risk.repository import DecisionRepository
from paymux.runtime import Runtime

EVERY_SECONDS = 60.0
PURGE_EVERY_SECONDS = 3600.0


async def reviews_due(rt: Runtime) -> int:
    """Expired reviews, then declined holds still unrefunded."""
    return (
        await review_actions.expire(rt)
        + await review_actions.finish_declines(rt)
        + await reevaluate(rt)
    )


async def reevaluate(rt: Runtime, limit: int = 100) -> int:
    """Payments that went ahead unevaluated, screened again now that the engine may work."""
    async with rt.db.read() as session:
        due = await DecisionRepository(session).unevaluated(limit)
    done = 0
    for decision_id in due:
        async with rt.db.transaction() as session:
            done += await hooks.reevaluate_payment(session, decision_id) is not None
    return done


async def purge_features(rt: Runtime) -> int:
    """Delete buckets and links older than every window (in batches, until none is left)."""
    total = 0
    while True:
        async with rt.db.transaction() as session:
            gone = await velocity.purge(session, clock.now())
        total += gone
        if not gone:
            return total

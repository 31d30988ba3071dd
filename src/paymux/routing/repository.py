"""All routing SQL: rules and settings, statistics buckets, daily limit usage, breakers.

Counters are changed by single statements (UPSERTs and guarded UPDATEs), never read-then-write
in Python, so several API processes on PostgreSQL can share them without losing updates.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit import clock
from paymux.kit.db import insert_of
from paymux.routing.models import (
    BreakerState,
    RoutingBreaker,
    RoutingLimitUsage,
    RoutingRule,
    RoutingSettings,
    RoutingStat,
)


def _insert(session: AsyncSession, model: type[Any]) -> Any:
    return insert_of(session.get_bind().dialect.name)(model)


_STAT_FIELDS = ("account_id", "method", "minute", "accepted", "succeeded", "errors", "latency_ms")


@functools.cache
def _stat_upsert(dialect: str, prefix: str = "") -> Any:
    """Add to a minute's counters (built once per dialect: every create and success runs it);
    ``prefix``: of the parameters' names."""
    stmt = insert_of(dialect)(RoutingStat).values(
        {name: sa.bindparam(prefix + name) for name in _STAT_FIELDS}
    )
    excluded = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["account_id", "method", "minute"],
        set_={
            "accepted": RoutingStat.accepted + excluded.accepted,
            "succeeded": RoutingStat.succeeded + excluded.succeeded,
            "errors": RoutingStat.errors + excluded.errors,
            "latency_ms": RoutingStat.latency_ms + excluded.latency_ms,
        },
    )


def _count_success() -> Any:
    b = RoutingBreaker
    when = b.__table__.c.window_start.type
    now = sa.bindparam("b_now", type_=when)
    fresh = sa.or_(b.window_start.is_(None), b.window_start < sa.bindparam("b_from", type_=when))
    return (
        sa.update(b)
        .where(b.account_id == sa.bindparam("b_account"), b.state == BreakerState.closed.value)
        .values(
            consecutive_errors=0,
            window_start=sa.case((fresh, now), else_=b.window_start),
            window_total=sa.case((fresh, 1), else_=b.window_total + 1),
            window_errors=sa.case((fresh, 0), else_=b.window_errors),
        )
        .execution_options(synchronize_session=False)
    )


_COUNT_SUCCESS = _count_success()
"""Built once: every create that went well runs it."""
_PG_GOOD_CALL = _count_success().add_cte(_stat_upsert("postgresql", "s_").cte("stat"))
"""A good call's minute counters and its closed breaker's count in one statement (PostgreSQL:
the counters' upsert as a data-modifying CTE, which runs whatever the UPDATE matches)."""


class RoutingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ---------------------------------------------------------------- rules and settings
    async def settings(self, app_id: str, livemode: bool) -> RoutingSettings | None:
        return await self.session.get(RoutingSettings, (app_id, livemode))

    async def settings_for_update(self, app_id: str, livemode: bool) -> RoutingSettings:
        """The settings row of the app's mode, created if missing, locked: every rule edit
        takes it first, which serialises the edits of one app and mode (positions, version)."""
        stmt = _insert(self.session, RoutingSettings).values(
            app_id=app_id, livemode=livemode, version=1, strategy="score", weight_success=1.0,
            weight_cost=0.05, weight_latency=0.01, exploration=0.05, updated_at=clock.now(),
        )  # fmt: skip
        await self.session.execute(
            stmt.on_conflict_do_nothing(index_elements=["app_id", "livemode"])
        )
        row = await self.session.scalar(
            sa.select(RoutingSettings)
            .where(RoutingSettings.app_id == app_id, RoutingSettings.livemode == livemode)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert row is not None
        return row

    async def version(self, app_id: str, livemode: bool) -> int:
        found = await self.session.scalar(
            sa.select(RoutingSettings.version).where(
                RoutingSettings.app_id == app_id, RoutingSettings.livemode == livemode
            )
        )
        return found or 0

    async def rules(self, app_id: str, livemode: bool) -> list[RoutingRule]:
        rows = await self.session.scalars(
            sa.select(RoutingRule)
            .where(RoutingRule.app_id == app_id, RoutingRule.livemode == livemode)
            .order_by(RoutingRule.position, RoutingRule.id)
        )
        return list(rows)

    async def rule(self, app_id: str, livemode: bool, rule_id: str) -> RoutingRule | None:
        return await self.session.scalar(
            sa.select(RoutingRule).where(
                RoutingRule.app_id == app_id,
                RoutingRule.livemode == livemode,
                RoutingRule.id == rule_id,
            )
        )

    # ---------------------------------------------------------------- statistics
    async def add_stat(
        self, account_id: str, method: str, minute: dt.datetime, *, accepted: int = 0,
        succeeded: int = 0, errors: int = 0, latency_ms: int = 0,
    ) -> None:  # fmt: skip
        await self.session.execute(
            _stat_upsert(self.session.get_bind().dialect.name),
            {"account_id": account_id, "method": method, "minute": minute, "accepted": accepted,
             "succeeded": succeeded, "errors": errors, "latency_ms": latency_ms},
        )  # fmt: skip

    async def stats_since(
        self, account_ids: Sequence[str], since: dt.datetime
    ) -> list[RoutingStat]:
        if not account_ids:
            return []
        rows = await self.session.scalars(
            sa.select(RoutingStat).where(
                RoutingStat.account_id.in_(account_ids), RoutingStat.minute >= since
            )
        )
        return list(rows)

    # ---------------------------------------------------------------- daily limits
    async def reserve(
        self, account_id: str, day: dt.date, amount: int, *, max_count: int | None,
        max_amount: int | None,
    ) -> bool:  # fmt: skip
        """Count one more payment of ``amount`` against the day's limits, or nothing if that
        would exceed them: one guarded UPDATE, so concurrent reservations never overshoot."""
        await self.session.execute(
            _insert(self.session, RoutingLimitUsage)
            .values(account_id=account_id, day=day, count=0, amount=0)
            .on_conflict_do_nothing(index_elements=["account_id", "day"])
        )
        stmt = (
            sa.update(RoutingLimitUsage)
            .where(RoutingLimitUsage.account_id == account_id, RoutingLimitUsage.day == day)
            .values(count=RoutingLimitUsage.count + 1, amount=RoutingLimitUsage.amount + amount)
        )
        if max_count is not None:
            stmt = stmt.where(RoutingLimitUsage.count + 1 <= max_count)
        if max_amount is not None:
            stmt = stmt.where(RoutingLimitUsage.amount + amount <= max_amount)
        result = await self.session.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def release(self, account_id: str, day: dt.date, amount: int) -> None:
        await self.session.execute(
            sa.update(RoutingLimitUsage)
            .where(
                RoutingLimitUsage.account_id == account_id,
                RoutingLimitUsage.day == day,
                RoutingLimitUsage.count > 0,
            )
            .values(count=RoutingLimitUsage.count - 1, amount=RoutingLimitUsage.amount - amount)
        )

    async def usage(self, account_id: str, day: dt.date) -> RoutingLimitUsage | None:
        return await self.session.scalar(
            sa.select(RoutingLimitUsage)
            .where(RoutingLimitUsage.account_id == account_id, RoutingLimitUsage.day == day)
            .execution_options(populate_existing=True)
        )

    # ---------------------------------------------------------------- breakers
    async def breakers(self, account_ids: Sequence[str]) -> list[RoutingBreaker]:
        if not account_ids:
            return []
        rows = await self.session.scalars(
            sa.select(RoutingBreaker)
            .where(RoutingBreaker.account_id.in_(account_ids))
            .execution_options(populate_existing=True)
        )
        return list(rows)

    async def count_good_call(
        self, account_id: str, method: str, minute: dt.datetime, *, accepted: int,
        latency_ms: int, now: dt.datetime, window_from: dt.datetime,
    ) -> bool:  # fmt: skip
        """:meth:`add_stat` and :meth:`count_success_if_closed` for a call that went well: one
        statement on PostgreSQL, two elsewhere; whether the breaker was closed."""
        if self.session.get_bind().dialect.name != "postgresql":
            await self.add_stat(account_id, method, minute, accepted=accepted,
                                latency_ms=latency_ms)  # fmt: skip
            return await self.count_success_if_closed(account_id, now, window_from)
        stat = (account_id, method, minute, accepted, 0, 0, latency_ms)
        result = await self.session.execute(_PG_GOOD_CALL, {
            **{f"s_{name}": value for name, value in zip(_STAT_FIELDS, stat, strict=True)},
            "b_account": account_id, "b_now": now, "b_from": window_from,
        })  # fmt: skip
        return bool(getattr(result, "rowcount", 0) == 1)

    async def count_success_if_closed(
        self, account_id: str, now: dt.datetime, window_from: dt.datetime
    ) -> bool:
        """A call that went well, counted on a closed breaker in one UPDATE (a window older than
        ``window_from`` starts again); False when there is no row or it is not closed."""
        result = await self.session.execute(
            _COUNT_SUCCESS, {"b_account": account_id, "b_now": now, "b_from": window_from}
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    async def breaker_for_update(self, account_id: str) -> RoutingBreaker:
        await self.session.execute(
            _insert(self.session, RoutingBreaker)
            .values(
                account_id=account_id,
                state=BreakerState.closed.value,
                consecutive_errors=0,
                window_total=0,
                window_errors=0,
            )
            .on_conflict_do_nothing(index_elements=["account_id"])
        )
        row = await self.session.scalar(
            sa.select(RoutingBreaker)
            .where(RoutingBreaker.account_id == account_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert row is not None
        return row

    async def claim_probe(
        self, account_id: str, now: dt.datetime, stale_before: dt.datetime
    ) -> bool:
        """Let exactly one attempt probe an open breaker whose cooldown is over (or replace a
        probe whose process died): a guarded UPDATE only one concurrent caller can win."""
        result = await self.session.execute(
            sa.update(RoutingBreaker)
            .where(
                RoutingBreaker.account_id == account_id,
                sa.or_(
                    sa.and_(
                        RoutingBreaker.state == BreakerState.open.value,
                        RoutingBreaker.opened_at <= stale_before,
                    ),
                    sa.and_(
                        RoutingBreaker.state == BreakerState.half_open.value,
                        RoutingBreaker.probe_started_at <= stale_before,
                    ),
                ),
            )
            .values(state=BreakerState.half_open.value, probe_started_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

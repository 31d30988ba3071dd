"""Every query of webhook endpoints, events, deliveries and attempts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from paymux.kit import clock
from paymux.kit.db import Due, claim_due, claim_statement
from paymux.webhooks.models import (
    DeliveryStatus,
    Event,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

_PG_LOG_DELIVERED = sa.text("""
WITH logged AS (
    INSERT INTO webhook_attempts
        (id, delivery_id, attempted_at, status_code, error, duration_ms, response_excerpt)
    SELECT * FROM unnest(CAST(:a_id AS varchar[]), CAST(:a_delivery AS varchar[]),
                         CAST(:a_at AS timestamptz[]), CAST(:a_code AS integer[]),
                         CAST(:a_error AS varchar[]), CAST(:a_ms AS integer[]),
                         CAST(:a_excerpt AS varchar[]))
)
UPDATE webhook_deliveries AS d
SET status = 'delivered', attempt_count = d.attempt_count + 1, last_status_code = u.code,
    delivered_at = u.at, last_error = NULL, next_attempt_at = NULL, updated_at = :now
FROM unnest(CAST(:d_id AS varchar[]), CAST(:d_prev AS integer[]), CAST(:d_code AS integer[]),
            CAST(:d_at AS timestamptz[])) AS u (id, prev, code, at)
WHERE d.id = u.id AND d.status = 'pending' AND d.attempt_count = u.prev
""")
"""A batch whose every attempt was answered 2xx, logged and moved on in one statement over
arrays (one prepared statement whatever the batch's size; atomic without a transaction)."""
_ATTEMPT_PARAMS = {"a_id": "id", "a_delivery": "delivery_id", "a_at": "attempted_at",
                   "a_code": "status_code", "a_error": "error", "a_ms": "duration_ms",
                   "a_excerpt": "response_excerpt"}  # fmt: skip

_E: sa.Table = Event.__table__  # type: ignore[assignment]
_D: sa.Table = WebhookDelivery.__table__  # type: ignore[assignment]
_EVENT = sa.insert(_E).values(
    id=sa.bindparam("e_id", type_=sa.String), app_id=sa.bindparam("e_app", type_=sa.String),
    livemode=sa.bindparam("e_live", type_=sa.Boolean),
    type=sa.bindparam("e_type", type_=sa.String), data=sa.bindparam("e_data", type_=_E.c.data.type),
    created_at=sa.bindparam("e_at", type_=_E.c.created_at.type),
)  # fmt: skip
_PG_EVENT_AND_DELIVERIES = (
    sa.insert(_D)
    .from_select(
        ["id", "event_id", "endpoint_id", "status", "attempt_count", "next_attempt_at",
         "created_at", "updated_at"],
        sa.select(
            sa.func.unnest(sa.bindparam("d_id", type_=postgresql.ARRAY(sa.String))),
            sa.bindparam("e_id", type_=sa.String),
            sa.func.unnest(sa.bindparam("d_endpoint", type_=postgresql.ARRAY(sa.String))),
            sa.literal(DeliveryStatus.pending.value), sa.literal(0),
            sa.bindparam("e_at", type_=_E.c.created_at.type),
            sa.bindparam("e_at", type_=_E.c.created_at.type),
            sa.bindparam("e_at", type_=_E.c.created_at.type),
        ),
    )
    .add_cte(_EVENT.cte("event"))
)  # fmt: skip
"""An event and its deliveries in one statement (PostgreSQL: the event's INSERT as a CTE;
foreign keys are checked at the statement's end, when the event is there)."""


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: WebhookEndpoint | Event | WebhookDelivery | WebhookAttempt) -> None:
        self.session.add(obj)

    async def record_event(
        self, event: dict[str, Any], endpoint_ids: Sequence[str], delivery_ids: Sequence[str]
    ) -> None:
        """Insert an event (``e_*`` values) and a pending delivery to each endpoint, due at
        once: one statement on PostgreSQL, two elsewhere."""
        conn = await self.session.connection()
        if delivery_ids and conn.dialect.name == "postgresql":
            params = {**event, "d_id": list(delivery_ids), "d_endpoint": list(endpoint_ids)}
            await conn.execute(_PG_EVENT_AND_DELIVERIES, params)
            return
        await conn.execute(_EVENT, event)
        if delivery_ids:
            now = event["e_at"]
            rows = [{"id": d, "event_id": event["e_id"], "endpoint_id": e,
                     "status": DeliveryStatus.pending, "attempt_count": 0, "next_attempt_at": now,
                     "created_at": now, "updated_at": now}
                    for d, e in zip(delivery_ids, endpoint_ids, strict=True)]  # fmt: skip
            await conn.execute(sa.insert(_D), rows)

    # ---------------------------------------------------------------- endpoints
    async def endpoint(
        self, app_id: str, livemode: bool, endpoint_id: str
    ) -> WebhookEndpoint | None:
        stmt = sa.select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id,
            WebhookEndpoint.app_id == app_id,
            WebhookEndpoint.livemode == livemode,
            WebhookEndpoint.deleted_at.is_(None),
        )
        return (await self.session.scalars(stmt)).first()

    async def endpoints(self, app_id: str, livemode: bool) -> list[WebhookEndpoint]:
        stmt = (
            sa.select(WebhookEndpoint)
            .where(
                WebhookEndpoint.app_id == app_id,
                WebhookEndpoint.livemode == livemode,
                WebhookEndpoint.deleted_at.is_(None),
            )
            .order_by(WebhookEndpoint.id)
        )
        return list((await self.session.scalars(stmt)).all())

    async def endpoints_by_id(self, ids: Sequence[str]) -> dict[str, WebhookEndpoint]:
        if not ids:
            return {}
        stmt = sa.select(WebhookEndpoint).where(WebhookEndpoint.id.in_(set(ids)))
        return {e.id: e for e in (await self.session.scalars(stmt)).all()}

    async def cancel_pending(self, endpoint_id: str, reason: str) -> int:
        return await self._cancel(WebhookDelivery.endpoint_id == endpoint_id, reason)

    async def cancel(self, delivery_ids: Sequence[str], reason: str) -> int:
        """These deliveries, if still pending, never to be attempted."""
        return await self._cancel(WebhookDelivery.id.in_(delivery_ids), reason)

    async def _cancel(self, which: sa.ColumnElement[bool], reason: str) -> int:
        stmt = (
            sa.update(WebhookDelivery)
            .where(which, WebhookDelivery.status == DeliveryStatus.pending)
            .values(status=DeliveryStatus.canceled, next_attempt_at=None, last_error=reason)
            .execution_options(synchronize_session=False)
        )
        result = await self.session.execute(stmt)
        return int(getattr(result, "rowcount", 0) or 0)

    # ---------------------------------------------------------------- events
    async def event(self, app_id: str, livemode: bool, event_id: str) -> Event | None:
        stmt = sa.select(Event).where(
            Event.id == event_id, Event.app_id == app_id, Event.livemode == livemode
        )
        return (await self.session.scalars(stmt)).first()

    async def events(
        self,
        app_id: str,
        livemode: bool,
        *,
        type_: str | None,
        limit: int,
        starting_after: str | None,
    ) -> tuple[list[Event], bool]:
        """Newest first; the cursor is the last id seen (ids sort by creation time)."""
        stmt = sa.select(Event).where(Event.app_id == app_id, Event.livemode == livemode)
        if type_ is not None:
            stmt = stmt.where(Event.type == type_)
        if starting_after is not None:
            stmt = stmt.where(Event.id < starting_after)
        rows = list(
            (await self.session.scalars(stmt.order_by(Event.id.desc()).limit(limit + 1))).all()
        )
        return rows[:limit], len(rows) > limit

    async def events_about(self, app_id: str, livemode: bool, object_id: str) -> list[Event]:
        """The events whose object is ``object_id`` (e.g. a payment's), oldest first. An
        operator's look-up (``paymux payment show``): it reads the JSON, no index behind it."""
        stmt = sa.select(Event).where(
            Event.app_id == app_id,
            Event.livemode == livemode,
            Event.data["id"].as_string() == object_id,
        )
        return list((await self.session.scalars(stmt.order_by(Event.id))).all())

    async def events_by_id(self, ids: Sequence[str]) -> dict[str, Event]:
        if not ids:
            return {}
        stmt = sa.select(Event).where(Event.id.in_(set(ids)))
        return {e.id: e for e in (await self.session.scalars(stmt)).all()}

    # ---------------------------------------------------------------- deliveries
    async def claim_due(
        self, due: Due, *, limit: int, lease_seconds: float
    ) -> list[tuple[WebhookDelivery, Event, WebhookEndpoint]]:
        """Claim the due deliveries (:func:`paymux.kit.db.claim_due`) with each one's event and
        endpoint, in delivery id order: on PostgreSQL one statement (the claim as a
        data-modifying CTE joined to both), atomic without a transaction; elsewhere three."""
        if self.session.get_bind().dialect.name != "postgresql":
            deliveries = await claim_due(self.session, WebhookDelivery, due, limit=limit,
                                         lease_seconds=lease_seconds)  # fmt: skip
            events = await self.events_by_id([d.event_id for d in deliveries])
            endpoints = await self.endpoints_by_id([d.endpoint_id for d in deliveries])
            return [(d, events[d.event_id], endpoints[d.endpoint_id]) for d in deliveries]
        claim = claim_statement(WebhookDelivery, due, limit=limit, lease_seconds=lease_seconds)
        claimed = claim.returning(*_D.c).cte("claimed")
        delivery = aliased(WebhookDelivery, claimed)
        stmt = (
            sa.select(delivery, Event, WebhookEndpoint)
            .join(Event, Event.id == delivery.event_id)
            .join(WebhookEndpoint, WebhookEndpoint.id == delivery.endpoint_id)
            .order_by(delivery.id)
            .execution_options(populate_existing=True)
        )
        return [(d, e, p) for d, e, p in (await self.session.execute(stmt)).all()]

    async def deliveries_of(self, event_id: str) -> list[WebhookDelivery]:
        stmt = (
            sa.select(WebhookDelivery)
            .where(WebhookDelivery.event_id == event_id)
            .order_by(WebhookDelivery.id)
        )
        return list((await self.session.scalars(stmt)).all())

    async def attempts_of(self, delivery_ids: Sequence[str]) -> dict[str, list[WebhookAttempt]]:
        found: dict[str, list[WebhookAttempt]] = {d: [] for d in delivery_ids}
        if not delivery_ids:
            return found
        stmt = (
            sa.select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(delivery_ids)))
            .order_by(WebhookAttempt.id)
        )
        for attempt in (await self.session.scalars(stmt)).all():
            found[attempt.delivery_id].append(attempt)
        return found

    async def log_attempts(self, rows: list[dict[str, Any]]) -> None:
        await self.session.execute(sa.insert(WebhookAttempt), rows)

    async def log_delivered(
        self, attempts: list[dict[str, Any]], rows: list[tuple[str, int, int, dt.datetime]]
    ) -> int:
        """:meth:`log_attempts` and :meth:`mark_delivered` together, for a batch answered 2xx
        throughout: one statement on PostgreSQL, two elsewhere (in the caller's transaction).
        How many deliveries moved."""
        conn = await self.session.connection()
        if conn.dialect.name != "postgresql":
            await self.log_attempts(attempts)
            return await self.mark_delivered(rows)
        params: dict[str, Any] = {
            name: [a[column] for a in attempts] for name, column in _ATTEMPT_PARAMS.items()
        }
        params.update(
            d_id=[r[0] for r in rows], d_prev=[r[1] - 1 for r in rows],
            d_code=[r[2] for r in rows], d_at=[r[3] for r in rows], now=clock.now(),
        )  # fmt: skip
        result = await conn.execute(_PG_LOG_DELIVERED, params)
        return int(getattr(result, "rowcount", 0) or 0)

    async def mark_delivered(self, rows: list[tuple[str, int, int, dt.datetime]]) -> int:
        """``(delivery id, attempt number, status code, attempted at)`` → delivered, in one
        UPDATE guarded per row (still pending, this attempt next); how many moved."""
        d = WebhookDelivery
        ids = [row[0] for row in rows]
        result = await self.session.execute(
            sa.update(d)
            .where(
                d.status == DeliveryStatus.pending,
                sa.tuple_(d.id, d.attempt_count).in_([(row[0], row[1] - 1) for row in rows]),
            )
            .values(
                status=DeliveryStatus.delivered,
                attempt_count=d.attempt_count + 1,
                last_status_code=sa.case({row[0]: row[2] for row in rows}, value=d.id),
                delivered_at=sa.case(
                    {row[0]: sa.literal(row[3], d.delivered_at.type) for row in rows}, value=d.id
                ),
                last_error=None,
                next_attempt_at=None,
            )
            .execution_options(synchronize_session=False)
        )
        assert len(ids) == len(set(ids))
        return int(getattr(result, "rowcount", 0) or 0)

    async def lock_delivery(self, delivery_id: str) -> WebhookDelivery:
        stmt = (
            sa.select(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(stmt)).one()

    async def lock_endpoint(self, endpoint_id: str) -> WebhookEndpoint:
        stmt = (
            sa.select(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(stmt)).one()

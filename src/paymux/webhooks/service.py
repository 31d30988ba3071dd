"""Merchant webhooks: the outbox (``emit``), endpoint management, delivery bookkeeping.

``emit`` runs inside the caller's transaction, so an event exists exactly when the change it
reports was committed. Deliveries are made by the worker (``webhooks.tasks``), outside any
transaction, and recorded here: delivered on 2xx; the endpoint disabled on 410; otherwise retried
on a jittered schedule of about three days (honouring a bounded ``Retry-After``), then failed.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit import clock
from paymux.kit.cache import TtlCache
from paymux.kit.crypto import Vault
from paymux.kit.egress import EgressGuard, EgressRefused, EgressUnresolved
from paymux.kit.errors import InvalidRequest, NotFound
from paymux.kit.ids import new_id
from paymux.webhooks import signing
from paymux.webhooks.models import (
    DeliveryStatus,
    Event,
    WebhookDelivery,
    WebhookEndpoint,
)
from paymux.webhooks.repository import WebhookRepository

log = structlog.get_logger(__name__)

EVENT_TYPES: tuple[str, ...] = (
    "payment.succeeded",
    "payment.failed",
    "payment.closed",
    "payment.expired",
    "payment.late_success",
    "refund.succeeded",
    "refund.failed",
    "refund.requires_attention",
    "escrow.released",
    "split.succeeded",
    "split.partial",
    "split.failed",
    "split.reversed",
    "settlement.paid",
    "payout.processing",
    "payout.succeeded",
    "payout.failed",
    "recon.run.completed",
    "recon.break.opened",
    "risk.blocked",
    "risk.review.opened",
    "risk.review.closed",
)
"""Every event type paymux emits; endpoints subscribe to some of them or to ``*``."""

RETRY_SCHEDULE_SECONDS: tuple[int, ...] = (
    5, 60, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 12 * 3600, 12 * 3600, 12 * 3600,
    18 * 3600,
)  # fmt: skip
"""Waits after each failed attempt: 12 attempts over about 3 days (71.6 h before jitter)."""
JITTER = 0.1
"""Each wait is stretched or shrunk by up to 10% so retries of one outage spread out."""
RETRY_AFTER_MAX_SECONDS = 6 * 3600
"""A receiver's ``Retry-After`` (429/503) can postpone the next attempt by at most this."""
MAX_ATTEMPTS = len(RETRY_SCHEDULE_SECONDS) + 1

ATTEMPTS = Counter(
    "paymux_webhook_attempts_total", "Webhook delivery attempts by outcome", ["outcome"]
)


def _secret_context(endpoint_id: str) -> str:
    return f"webhook_endpoint:{endpoint_id}"


def endpoint_secret(vault: Vault, endpoint: WebhookEndpoint) -> str:
    return vault.decrypt(endpoint.secret_enc, context=_secret_context(endpoint.id)).decode()


# ------------------------------------------------------------------ outbox
@dataclass(frozen=True)
class Subscriber:
    """An enabled endpoint as :func:`emit` needs it (a snapshot, cached per app and mode)."""

    id: str
    events: tuple[str, ...]

    def wants(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events


_subscribers: TtlCache[tuple[str, bool], tuple[Subscriber, ...]] = TtlCache("webhook_subscribers")
"""Every event reads its app's endpoints. An endpoint created in another process receives the
events emitted from a second later (at once in this one); one deleted or disabled elsewhere may
still get a delivery queued in that second, which the worker cancels (it checks the endpoint
before every attempt)."""


async def subscribers(session: AsyncSession, app_id: str, livemode: bool) -> tuple[Subscriber, ...]:
    async def load() -> tuple[Subscriber, ...]:
        endpoints = await WebhookRepository(session).endpoints(app_id, livemode)
        live = (e for e in endpoints if e.enabled and e.deleted_at is None)
        return tuple(Subscriber(e.id, tuple(e.events)) for e in live)

    return await _subscribers.get_or_load((app_id, livemode), load)


def _endpoints_changed(endpoint: WebhookEndpoint) -> None:
    _subscribers.forget((endpoint.app_id, endpoint.livemode))


async def emit(
    session: AsyncSession, *, app_id: str, livemode: bool, type: str, data: dict[str, Any]
) -> Event:
    """Record an event and a pending delivery for each endpoint subscribed to it, written at
    once in the caller's transaction (the returned event is a copy, not in the session)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    now = clock.now()
    event = Event(id=new_id("evt"), app_id=app_id, livemode=livemode, type=type, data=data,
                  created_at=now)  # fmt: skip
    targets = [s.id for s in await subscribers(session, app_id, livemode) if s.wants(type)]
    values = {"e_id": event.id, "e_app": app_id, "e_live": livemode, "e_type": type,
              "e_data": data, "e_at": now}  # fmt: skip
    await WebhookRepository(session).record_event(values, targets, [new_id("wd") for _ in targets])
    return event


def _new_delivery(event_id: str, endpoint_id: str, due: dt.datetime) -> WebhookDelivery:
    return WebhookDelivery(
        id=new_id("wd"), event_id=event_id, endpoint_id=endpoint_id,
        status=DeliveryStatus.pending, attempt_count=0, next_attempt_at=due,
    )  # fmt: skip


def payload(event: Event) -> bytes:
    """The body POSTed for an event: the same bytes on every attempt."""
    envelope = {
        "id": event.id,
        "object": "event",
        "type": event.type,
        "created": int(event.created_at.timestamp()),
        "livemode": event.livemode,
        "data": {"object": event.data},
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


# ------------------------------------------------------------------ endpoints
@dataclass(frozen=True)
class VettedUrl:
    """An endpoint URL that passed :func:`vet_url` for one mode; the only kind an endpoint is
    created with."""

    url: str
    livemode: bool


async def vet_url(egress: EgressGuard, url: str, *, livemode: bool) -> VettedUrl:
    """Refuse a URL that is malformed, plain http in live mode, or whose host is (or resolves
    to) an address the egress guard refuses. A name that does not resolve yet is accepted: the
    guard checks again at every delivery. Resolves DNS, so call it before opening a
    transaction."""
    invalid = InvalidRequest("url_invalid", "url must be an absolute http(s) URL.", param="url")
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise invalid from None
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        raise invalid
    if livemode and parts.scheme != "https":
        raise InvalidRequest("url_invalid", "Live-mode endpoints must use https.", param="url")
    try:
        await egress.resolve(parts.hostname, port)
    except EgressRefused as exc:
        raise InvalidRequest(
            "url_not_allowed", f"Webhook URLs must point at a public address: {exc}.", param="url"
        ) from None
    except EgressUnresolved:
        pass
    try:
        httpx.URL(url)  # what the worker will send to
    except httpx.InvalidURL:
        raise invalid from None
    return VettedUrl(url, livemode)


def _check_events(events: Sequence[str]) -> list[str]:
    chosen = sorted({e.strip() for e in events})
    if not chosen:
        raise InvalidRequest("events_invalid", "Subscribe to at least one event.", param="events")
    unknown = [e for e in chosen if e != "*" and e not in EVENT_TYPES]
    if unknown:
        raise InvalidRequest(
            "events_invalid",
            f"Unknown event types {unknown}; known: {', '.join(EVENT_TYPES)} or *.",
            param="events",
        )
    return ["*"] if "*" in chosen else chosen


async def create_endpoint(
    session: AsyncSession,
    vault: Vault,
    *,
    app_id: str,
    livemode: bool,
    url: VettedUrl,
    events: Sequence[str],
    description: str | None = None,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its ``whsec_`` secret (returned this once, stored encrypted)."""
    if url.livemode != livemode:
        raise ValueError("the url was vetted for the other mode")
    endpoint_id = new_id("we")
    secret = signing.generate_secret()
    endpoint = WebhookEndpoint(
        id=endpoint_id, app_id=app_id, livemode=livemode, url=url.url,
        events=_check_events(events), description=description, enabled=True,
        secret_enc=vault.encrypt(secret.encode(), context=_secret_context(endpoint_id)),
    )  # fmt: skip
    WebhookRepository(session).add(endpoint)
    await session.flush()
    _endpoints_changed(endpoint)
    return endpoint, secret


async def get_endpoint(
    session: AsyncSession, *, app_id: str, livemode: bool, endpoint_id: str
) -> WebhookEndpoint:
    endpoint = await WebhookRepository(session).endpoint(app_id, livemode, endpoint_id)
    if endpoint is None:
        raise NotFound("webhook endpoint", endpoint_id)
    return endpoint


async def delete_endpoint(
    session: AsyncSession, *, app_id: str, livemode: bool, endpoint_id: str
) -> WebhookEndpoint:
    """Soft-delete (its delivery log stays); pending deliveries to it are canceled."""
    endpoint = await get_endpoint(
        session, app_id=app_id, livemode=livemode, endpoint_id=endpoint_id
    )
    endpoint.deleted_at = clock.now()
    endpoint.enabled = False
    endpoint.disabled_reason = "deleted"
    _endpoints_changed(endpoint)
    await WebhookRepository(session).cancel_pending(endpoint.id, "endpoint deleted")
    return endpoint


async def get_event(session: AsyncSession, *, app_id: str, livemode: bool, event_id: str) -> Event:
    event = await WebhookRepository(session).event(app_id, livemode, event_id)
    if event is None:
        raise NotFound("event", event_id)
    return event


async def resend(
    session: AsyncSession,
    *,
    app_id: str,
    event_id: str,
    endpoint_id: str | None = None,
    livemode: bool | None = None,
) -> list[WebhookDelivery]:
    """Queue the event again, now, to one endpoint or to every endpoint subscribed to it."""
    repo = WebhookRepository(session)
    if livemode is None:  # the CLI acts for the operator and names the event alone
        found = await repo.events_by_id([event_id])
        event = found.get(event_id)
        if event is None or event.app_id != app_id:
            raise NotFound("event", event_id)
    else:
        event = await get_event(session, app_id=app_id, livemode=livemode, event_id=event_id)
    if endpoint_id is not None:
        endpoint = await repo.endpoint(app_id, event.livemode, endpoint_id)
        if endpoint is None:
            raise NotFound("webhook endpoint", endpoint_id)
        if not endpoint.enabled:
            raise InvalidRequest(
                "endpoint_disabled",
                f"Endpoint {endpoint_id} is disabled ({endpoint.disabled_reason}).",
                param="endpoint",
            )
        targets = [endpoint]
    else:
        targets = [e for e in await repo.endpoints(app_id, event.livemode) if e.wants(event.type)]
        if not targets:
            raise InvalidRequest("no_endpoints", "No enabled endpoint is subscribed to this event.")
    now = clock.now()
    deliveries = [_new_delivery(event.id, t.id, now) for t in targets]
    for delivery in deliveries:
        repo.add(delivery)
    await session.flush()
    return deliveries


# ------------------------------------------------------------------ delivery outcomes
@dataclass(frozen=True)
class Outcome:
    """What one HTTP attempt produced."""

    attempted_at: dt.datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    response_excerpt: str | None = None
    retry_after: str | None = None


def next_wait_seconds(attempts_made: int, retry_after: float | None = None) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` attempts; None when exhausted."""
    if attempts_made >= MAX_ATTEMPTS:
        return None
    base = RETRY_SCHEDULE_SECONDS[attempts_made - 1]
    wait = base * random.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        wait = max(wait, min(retry_after, RETRY_AFTER_MAX_SECONDS))
    return wait


def parse_retry_after(value: str | None, now: dt.datetime) -> float | None:
    """``Retry-After`` as delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((clock.aware(when) - now).total_seconds(), 0.0)


def _delivered(outcome: Outcome) -> bool:
    code = outcome.status_code
    return code is not None and 200 <= code < 300


async def record_outcomes(
    session: AsyncSession, results: Sequence[tuple[str, int, Outcome]]
) -> None:
    """Log a batch's attempts and move its deliveries on: every attempt logged in one INSERT,
    every 2xx in one guarded UPDATE, each other answer on its own row (retry, 410, give up).
    ``(delivery id, attempt number, outcome)``: the number guards against a stale worker (one
    whose lease ran out and whose delivery was retried by another) moving a delivery twice."""
    if not results:
        return
    repo = WebhookRepository(session)
    rows = [_attempt_row(d, o) for d, _, o in results]
    delivered = [(d, n, o.status_code or 0, o.attempted_at) for d, n, o in results if _delivered(o)]
    if len(delivered) == len(results):  # the common batch: one statement on PostgreSQL
        ATTEMPTS.labels("delivered").inc(await repo.log_delivered(rows, delivered))
        return
    await repo.log_attempts(rows)
    if delivered:
        ATTEMPTS.labels("delivered").inc(await repo.mark_delivered(delivered))
    for delivery_id, number, outcome in results:
        if not _delivered(outcome):
            await _move_on(repo, delivery_id, number, outcome)


def all_delivered(outcomes: Sequence[Outcome]) -> bool:
    """Whether :func:`record_outcomes` of these is one statement (autocommit is enough)."""
    return all(_delivered(o) for o in outcomes)


def _attempt_row(delivery_id: str, outcome: Outcome) -> dict[str, Any]:
    return {
        "id": new_id("wa"), "delivery_id": delivery_id, "attempted_at": outcome.attempted_at,
        "status_code": outcome.status_code, "error": outcome.error,
        "duration_ms": outcome.duration_ms, "response_excerpt": outcome.response_excerpt,
    }  # fmt: skip


async def record_outcome(
    session: AsyncSession, delivery_id: str, attempt_number: int, outcome: Outcome
) -> WebhookDelivery:
    """One attempt of :func:`record_outcomes`; returns the delivery as it stands after it."""
    await record_outcomes(session, [(delivery_id, attempt_number, outcome)])
    return await WebhookRepository(session).lock_delivery(delivery_id)


async def _move_on(
    repo: WebhookRepository, delivery_id: str, attempt_number: int, outcome: Outcome
) -> None:
    """A non-2xx answer (or none): retry later, give up, or — 410 — disable the endpoint."""
    delivery = await repo.lock_delivery(delivery_id)
    if delivery.status != DeliveryStatus.pending or delivery.attempt_count != attempt_number - 1:
        return
    delivery.attempt_count = attempt_number
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    code = outcome.status_code
    if code == 410:
        endpoint = await repo.lock_endpoint(delivery.endpoint_id)
        if endpoint.enabled:
            endpoint.enabled = False
            endpoint.disabled_reason = "gone: the endpoint answered 410"
            _endpoints_changed(endpoint)
            log.warning("webhook_endpoint_disabled", endpoint=endpoint.id, url=endpoint.url)
        delivery.status = DeliveryStatus.canceled
        delivery.next_attempt_at = None
        await repo.cancel_pending(endpoint.id, "endpoint answered 410 Gone")
        ATTEMPTS.labels("gone").inc()
        return
    retry_after = (
        parse_retry_after(outcome.retry_after, outcome.attempted_at) if code in (429, 503) else None
    )
    wait = next_wait_seconds(attempt_number, retry_after)
    if wait is None:
        delivery.status = DeliveryStatus.failed
        delivery.next_attempt_at = None
        ATTEMPTS.labels("failed").inc()
        log.warning("webhook_delivery_failed", delivery=delivery.id, attempts=attempt_number)
    else:
        delivery.next_attempt_at = clock.now() + dt.timedelta(seconds=wait)
        ATTEMPTS.labels("retry").inc()

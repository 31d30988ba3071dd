"""Worker job: deliver due webhooks.

A batch is claimed in one short transaction (its rows leased with ``FOR UPDATE SKIP LOCKED``),
POSTed concurrently with no transaction open, and the outcomes recorded in another. A worker
that dies between the two loses nothing: the lease runs out and the delivery is tried again
(at-least-once; ``webhook-id`` lets receivers deduplicate).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import structlog

from paymux.kit import clock
from paymux.kit.crypto import DecryptionError
from paymux.kit.db import Due
from paymux.kit.egress import EgressRefused
from paymux.runtime import Runtime
from paymux.webhooks import service, signing
from paymux.webhooks.models import DeliveryStatus, WebhookDelivery
from paymux.webhooks.repository import WebhookRepository

log = structlog.get_logger(__name__)

LEASE_SECONDS = 60.0
"""Longer than any attempt can take (the webhook client's timeout is 10 s)."""
DUE = Due(WebhookDelivery.next_attempt_at, (WebhookDelivery.status == DeliveryStatus.pending,))
EXCERPT_BYTES = 200
"""How much of a 2xx answer's body is kept (and read at all); nothing of any other answer."""


@dataclass(frozen=True)
class _Send:
    delivery_id: str
    attempt_number: int
    event_id: str
    url: str
    secret: str
    body: bytes


async def deliver_due(rt: Runtime, *, limit: int = 50) -> int:
    """Attempt every delivery that is due. Returns how many were attempted or canceled."""
    async with rt.db.statement() as session:  # one statement on PostgreSQL
        claimed = await WebhookRepository(session).claim_due(
            DUE, limit=limit, lease_seconds=LEASE_SECONDS
        )
    if not claimed:
        return 0
    sends: list[_Send] = []
    canceled: dict[str, list[str]] = {}
    """Why → the deliveries canceled for it (their endpoint is disabled or deleted)."""
    for delivery, event, endpoint in claimed:
        if not endpoint.enabled or endpoint.deleted_at is not None:
            why = f"endpoint disabled: {endpoint.disabled_reason}"
            canceled.setdefault(why, []).append(delivery.id)
            continue
        try:
            secret = service.endpoint_secret(rt.vault, endpoint)
        except DecryptionError:
            log.error("webhook_secret_unreadable", endpoint=endpoint.id)
            continue  # stays leased; retried when the lease runs out (key misconfiguration)
        sends.append(
            _Send(
                delivery.id, delivery.attempt_count + 1, delivery.event_id, endpoint.url,
                secret, service.payload(event),
            )
        )  # fmt: skip
    if canceled:
        async with rt.db.transaction() as session:
            for why, ids in canceled.items():
                await WebhookRepository(session).cancel(ids, why)
    outcomes = await asyncio.gather(*(_post(rt.webhook_http, s) for s in sends))
    recording = rt.db.statement() if service.all_delivered(outcomes) else rt.db.transaction()
    async with recording as session:
        await service.record_outcomes(session, [
            (send.delivery_id, send.attempt_number, outcome)
            for send, outcome in zip(sends, outcomes, strict=True)
        ])  # fmt: skip
    return len(claimed)


async def _post(http: httpx.AsyncClient, send: _Send) -> service.Outcome:
    started_at = clock.now()
    started = time.perf_counter()
    headers = signing.headers(send.secret, send.event_id, int(started_at.timestamp()), send.body)
    headers["user-agent"] = "paymux-webhooks/1"

    def elapsed() -> int:
        return int((time.perf_counter() - started) * 1000)

    try:
        async with http.stream(
            "POST", send.url, content=send.body, headers=headers, follow_redirects=False
        ) as response:
            code = response.status_code
            excerpt = await _excerpt(response) if 200 <= code < 300 else None
            retry_after = response.headers.get("retry-after")
    except EgressRefused as exc:  # nothing was connected to; retried like any failure
        return service.Outcome(
            attempted_at=started_at, duration_ms=elapsed(), error=f"refused: {exc}"[:500]
        )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL: a URL httpx cannot send
        return service.Outcome(
            attempted_at=started_at, duration_ms=elapsed(),
            error=f"{type(exc).__name__}: {exc}"[:500],
        )  # fmt: skip
    return service.Outcome(
        attempted_at=started_at, duration_ms=elapsed(), status_code=code,
        response_excerpt=excerpt, retry_after=retry_after,
    )  # fmt: skip


async def _excerpt(response: httpx.Response) -> str | None:
    """The start of a body, read no further than the excerpt (a receiver can send gigabytes)."""
    head = b""
    async for chunk in response.aiter_bytes():
        head += chunk
        if len(head) >= EXCERPT_BYTES:
            break
    return head[:EXCERPT_BYTES].decode("utf-8", "replace") or None

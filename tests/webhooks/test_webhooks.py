"""Merchant webhooks: Standard Webhooks signatures (checked by the stock ``standardwebhooks``
library), the outbox, delivery with retries/Retry-After/410, the attempt log, resend, and the
endpoints/events API. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any

import pytest
import sqlalchemy as sa
from standardwebhooks import Webhook, WebhookVerificationError

from paymux.kit.db import Due, claim_due
from paymux.webhooks import service, signing, tasks
from paymux.webhooks.models import DeliveryStatus, Event, WebhookDelivery
from tests.conftest import MERCHANT_SITE, Stack, Tenant, make_tenant


# ------------------------------------------------------------------ signing
def test_our_signature_verifies_with_standardwebhooks() -> None:
    secret = signing.generate_secret()
    body = json.dumps({"id": "evt_1", "type": "payment.succeeded"}).encode()
    headers = signing.headers(secret, "evt_1", int(time.time()), body)
    assert Webhook(secret).verify(body, headers)["id"] == "evt_1"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"evt_1", b"evt_2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.generate_secret()).verify(body, headers)


def test_our_verify_accepts_standardwebhooks_and_rejects_forgeries() -> None:
    secret = signing.generate_secret()
    body = b'{"hello":"world"}'
    now = dt.datetime.now(dt.UTC)
    theirs = Webhook(secret).sign("msg_abc", now, body.decode())
    headers = {"webhook-id": "msg_abc", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": theirs}  # fmt: skip
    assert signing.verify(secret, headers, body)
    assert not signing.verify(secret, headers, body + b" ")
    assert not signing.verify(secret, {**headers, "webhook-id": "msg_other"}, body)
    assert not signing.verify(signing.generate_secret(), headers, body)
    stale = int(now.timestamp()) + signing.TOLERANCE_SECONDS + 1
    assert not signing.verify(secret, headers, body, now=stale)
    assert not signing.verify(secret, {**headers, "webhook-signature": ""}, body)
    assert not signing.verify(secret, {**headers, "webhook-timestamp": "soon"}, body)


def test_schedule_spans_about_three_days() -> None:
    total_hours = sum(service.RETRY_SCHEDULE_SECONDS) / 3600
    assert 66 <= total_hours <= 78
    assert service.MAX_ATTEMPTS == len(service.RETRY_SCHEDULE_SECONDS) + 1
    waits = {service.next_wait_seconds(1) for _ in range(50)}
    assert len(waits) > 1 and all(4.5 <= w <= 5.5 for w in waits if w is not None)
    assert service.next_wait_seconds(service.MAX_ATTEMPTS) is None
    assert service.next_wait_seconds(1, retry_after=600) == 600
    assert service.next_wait_seconds(1, retry_after=10**9) == service.RETRY_AFTER_MAX_SECONDS


# ------------------------------------------------------------------ helpers
async def add_endpoint(stack: Stack, tenant: Tenant, path: str, events: Any = ("*",)) -> Any:
    r = await stack.client.post(
        "/v1/webhook_endpoints",
        json={"url": f"{MERCHANT_SITE}{path}", "events": list(events)},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    return r.json()


async def emit(stack: Stack, tenant: Tenant, type_: str = "payment.succeeded") -> str:
    async with stack.runtime.db.transaction() as session:
        event = await service.emit(
            session, app_id=tenant.app_id, livemode=False, type=type_,
            data={"id": "pay_test", "object": "payment", "status": type_.split(".")[1]},
        )  # fmt: skip
        return event.id


async def deliveries(stack: Stack, tenant: Tenant, event_id: str) -> list[dict[str, Any]]:
    r = await stack.client.get(f"/v1/events/{event_id}/deliveries", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


async def deliver(stack: Stack) -> int:
    total = 0
    while handled := await tasks.deliver_due(stack.runtime, limit=100):
        total += handled
    return total


def seconds_until(stamp: str, clock: Any) -> float:
    return (dt.datetime.fromisoformat(stamp) - clock.now()).total_seconds()


# ------------------------------------------------------------------ API
async def test_endpoint_lifecycle_and_secret_shown_once(stack: Stack, tenant: Tenant) -> None:
    created = await add_endpoint(stack, tenant, "/a", ["payment.succeeded", "payment.failed"])
    assert created["secret"].startswith("whsec_") and created["enabled"] is True
    assert created["events"] == ["payment.failed", "payment.succeeded"]
    listed = (await stack.client.get("/v1/webhook_endpoints", headers=tenant.headers)).json()
    assert [e["id"] for e in listed["data"]] == [created["id"]]
    assert listed["data"][0]["secret"] is None
    one = await stack.client.get(f"/v1/webhook_endpoints/{created['id']}", headers=tenant.headers)
    assert one.status_code == 200 and one.json()["secret"] is None

    other = await make_tenant(stack)
    hidden = await stack.client.get(f"/v1/webhook_endpoints/{created['id']}", headers=other.headers)
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "resource_missing"
    assert (await stack.client.delete(
        f"/v1/webhook_endpoints/{created['id']}", headers=other.headers
    )).status_code == 404  # fmt: skip

    deleted = await stack.client.delete(
        f"/v1/webhook_endpoints/{created['id']}", headers=tenant.headers
    )
    assert deleted.json() == {"id": created["id"], "object": "webhook_endpoint", "deleted": True}
    assert (await stack.client.get("/v1/webhook_endpoints", headers=tenant.headers)).json()[
        "data"
    ] == []
    # A deleted endpoint gets nothing more.
    event_id = await emit(stack, tenant)
    assert await deliveries(stack, tenant, event_id) == []


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"url": "ftp://merchant.test/x"}, "url_invalid", "url"),
        ({"url": "not a url"}, "url_invalid", "url"),
        ({"url": "http://merchant.test/x", "events": ["payment.exploded"]}, "events_invalid",
         "events"),
        ({"url": "http://merchant.test/x", "events": []}, "events_invalid", "events"),
        ({"url": "http://merchant.test/x", "secret": "whsec_mine"}, "parameter_invalid", "secret"),
        ({"events": ["*"]}, "parameter_invalid", "url"),
    ],
)  # fmt: skip
async def test_bad_endpoint_requests_are_rejected(
    stack: Stack, tenant: Tenant, body: dict[str, Any], code: str, param: str
) -> None:
    r = await stack.client.post("/v1/webhook_endpoints", json=body, headers=tenant.headers)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["param"] == param
    listed = (await stack.client.get("/v1/webhook_endpoints", headers=tenant.headers)).json()
    assert listed["data"] == []


async def test_webhook_api_needs_a_key(stack: Stack) -> None:
    for method, path in (("GET", "/v1/webhook_endpoints"), ("GET", "/v1/events"),
                         ("POST", "/v1/webhook_endpoints")):  # fmt: skip
        r = await stack.client.request(method, path, json={})
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"


async def test_events_list_filter_cursor_and_isolation(stack: Stack, tenant: Tenant) -> None:
    types = ("payment.succeeded", "payment.failed", "payment.succeeded", "payment.closed")
    ids = [await emit(stack, tenant, t) for t in types]
    first = (await stack.client.get("/v1/events?limit=3", headers=tenant.headers)).json()
    assert [e["id"] for e in first["data"]] == ids[::-1][:3] and first["has_more"]
    rest = (await stack.client.get(
        f"/v1/events?limit=3&starting_after={first['data'][-1]['id']}", headers=tenant.headers
    )).json()  # fmt: skip
    assert [e["id"] for e in rest["data"]] == [ids[0]] and not rest["has_more"]
    succeeded = (await stack.client.get(
        "/v1/events?type=payment.succeeded", headers=tenant.headers
    )).json()  # fmt: skip
    assert [e["id"] for e in succeeded["data"]] == [ids[2], ids[0]]
    one = (await stack.client.get(f"/v1/events/{ids[1]}", headers=tenant.headers)).json()
    assert one["type"] == "payment.failed" and one["data"]["object"]["id"] == "pay_test"
    other = await make_tenant(stack)
    hidden = await stack.client.get(f"/v1/events/{ids[1]}", headers=other.headers)
    assert hidden.status_code == 404
    assert (await stack.client.get("/v1/events", headers=other.headers)).json()["data"] == []


# ------------------------------------------------------------------ outbox
async def test_event_is_written_only_with_its_transaction(stack: Stack, tenant: Tenant) -> None:
    await add_endpoint(stack, tenant, f"/{tenant.app_id}/rollback")
    with pytest.raises(RuntimeError):
        async with stack.runtime.db.transaction() as session:
            await service.emit(session, app_id=tenant.app_id, livemode=False,
                               type="payment.succeeded", data={"id": "pay_x"})  # fmt: skip
            raise RuntimeError("the change failed")
    async with stack.runtime.db.read() as session:
        events = (await session.scalars(
            sa.select(Event).where(Event.app_id == tenant.app_id)
        )).all()  # fmt: skip
    assert events == []


async def test_subscriptions_filter_events(stack: Stack, tenant: Tenant) -> None:
    only_failed = await add_endpoint(stack, tenant, f"/{tenant.app_id}/f", ["payment.failed"])
    everything = await add_endpoint(stack, tenant, f"/{tenant.app_id}/all")
    succeeded = await emit(stack, tenant, "payment.succeeded")
    failed = await emit(stack, tenant, "payment.failed")
    assert [d["endpoint"] for d in await deliveries(stack, tenant, succeeded)] == [everything["id"]]
    assert sorted(d["endpoint"] for d in await deliveries(stack, tenant, failed)) == sorted(
        [only_failed["id"], everything["id"]]
    )


# ------------------------------------------------------------------ delivery
async def test_delivered_signed_and_logged(stack: Stack, tenant: Tenant) -> None:
    path = f"/{tenant.app_id}/ok"
    endpoint = await add_endpoint(stack, tenant, path)
    event_id = await emit(stack, tenant)
    await deliver(stack)
    (received,) = stack.receiver.for_path(path)
    payload = Webhook(endpoint["secret"]).verify(received.body, received.headers)
    assert payload["id"] == event_id and payload["type"] == "payment.succeeded"
    assert payload["livemode"] is False and payload["data"]["object"]["id"] == "pay_test"
    assert received.headers["webhook-id"] == event_id
    (delivery,) = await deliveries(stack, tenant, event_id)
    assert delivery["status"] == "delivered" and delivery["attempt_count"] == 1
    assert [a["status_code"] for a in delivery["attempts"]] == [200]
    assert await deliver(stack) == 0  # nothing delivered twice


async def test_retries_on_errors_with_backoff_until_delivered(
    stack: Stack, tenant: Tenant, clock: Any
) -> None:
    path = f"/{tenant.app_id}/flaky"
    await add_endpoint(stack, tenant, path)
    stack.receiver.answer(path, 500, 502)
    event_id = await emit(stack, tenant)

    await deliver(stack)
    (d,) = await deliveries(stack, tenant, event_id)
    assert d["status"] == "pending" and d["attempt_count"] == 1 and d["last_status_code"] == 500
    assert 4.0 <= seconds_until(d["next_attempt_at"], clock) <= 5.6
    assert await deliver(stack) == 0  # not due yet

    clock.advance(6)
    await deliver(stack)
    (d,) = await deliveries(stack, tenant, event_id)
    assert d["attempt_count"] == 2 and 50 <= seconds_until(d["next_attempt_at"], clock) <= 66

    clock.advance(70)
    await deliver(stack)
    (d,) = await deliveries(stack, tenant, event_id)
    assert d["status"] == "delivered" and d["next_attempt_at"] is None
    assert [a["status_code"] for a in d["attempts"]] == [500, 502, 200]
    bodies = {r.body for r in stack.receiver.for_path(path)}
    ids = {r.headers["webhook-id"] for r in stack.receiver.for_path(path)}
    assert len(bodies) == 1 and ids == {event_id}  # the same message every time


async def test_retry_after_is_honoured_and_bounded(
    stack: Stack, tenant: Tenant, clock: Any
) -> None:
    path = f"/{tenant.app_id}/busy"
    await add_endpoint(stack, tenant, path)
    stack.receiver.answer(path, (429, {"Retry-After": "900"}), (503, {"Retry-After": "99999999"}))
    event_id = await emit(stack, tenant)
    await deliver(stack)
    (d,) = await deliveries(stack, tenant, event_id)
    assert 890 <= seconds_until(d["next_attempt_at"], clock) <= 900
    clock.advance(901)
    await deliver(stack)
    (d,) = await deliveries(stack, tenant, event_id)
    wait = seconds_until(d["next_attempt_at"], clock)
    assert service.RETRY_AFTER_MAX_SECONDS - 10 <= wait <= service.RETRY_AFTER_MAX_SECONDS


async def test_unreachable_endpoint_is_retried_with_the_error_logged(
    stack: Stack, tenant: Tenant
) -> None:
    url = await service.vet_url(
        stack.runtime.egress, "http://127.0.0.1:9/closed-port", livemode=False
    )  # loopback is allowed in the tests, as in the demo
    async with stack.runtime.db.transaction() as session:
        await service.create_endpoint(
            session, stack.runtime.vault, app_id=tenant.app_id, livemode=False,
            url=url, events=["*"],
        )  # fmt: skip
    event_id = await emit(stack, tenant)
    await deliver(stack)
    (d,) = await deliveries(stack, tenant, event_id)
    assert d["status"] == "pending" and d["attempt_count"] == 1
    (attempt,) = d["attempts"]
    assert attempt["status_code"] is None and "Connect" in attempt["error"]


async def test_gone_disables_the_endpoint(stack: Stack, tenant: Tenant, clock: Any) -> None:
    path = f"/{tenant.app_id}/gone"
    endpoint = await add_endpoint(stack, tenant, path)
    stack.receiver.answer(path, 500)
    first = await emit(stack, tenant)
    await deliver(stack)  # first fails and waits
    stack.receiver.answer(path, 410)
    second = await emit(stack, tenant)
    await deliver(stack)  # second gets 410
    r = await stack.client.get(f"/v1/webhook_endpoints/{endpoint['id']}", headers=tenant.headers)
    assert r.json()["enabled"] is False and "410" in r.json()["disabled_reason"]
    assert [d["status"] for d in await deliveries(stack, tenant, second)] == ["canceled"]
    assert [d["status"] for d in await deliveries(stack, tenant, first)] == ["canceled"]
    third = await emit(stack, tenant)
    assert await deliveries(stack, tenant, third) == []
    clock.advance(3600)
    await deliver(stack)
    assert len(stack.receiver.for_path(path)) == 2
    resend = await stack.client.post(
        f"/v1/events/{first}/resend", json={"endpoint": endpoint["id"]}, headers=tenant.headers
    )
    assert resend.status_code == 400 and resend.json()["error"]["code"] == "endpoint_disabled"


async def test_gives_up_after_about_three_days(stack: Stack, tenant: Tenant, clock: Any) -> None:
    path = f"/{tenant.app_id}/down"
    await add_endpoint(stack, tenant, path)
    stack.receiver.answer(path, *([500] * (service.MAX_ATTEMPTS + 2)))
    event_id = await emit(stack, tenant)
    started = clock.now()
    for _ in range(service.MAX_ATTEMPTS):
        await deliver(stack)
        (d,) = await deliveries(stack, tenant, event_id)
        if d["status"] != "pending":
            break
        clock.advance(max(seconds_until(d["next_attempt_at"], clock), 0) + 1)
    assert d["status"] == "failed" and d["attempt_count"] == service.MAX_ATTEMPTS
    assert len(d["attempts"]) == service.MAX_ATTEMPTS
    span = (clock.now() - started).total_seconds() / 3600
    assert 60 <= span <= 85
    assert len(stack.receiver.for_path(path)) == service.MAX_ATTEMPTS
    clock.advance(86400)
    await deliver(stack)
    assert len(stack.receiver.for_path(path)) == service.MAX_ATTEMPTS


async def test_concurrent_workers_deliver_each_event_once(stack: Stack, tenant: Tenant) -> None:
    path = f"/{tenant.app_id}/many"
    await add_endpoint(stack, tenant, path)
    event_ids = [await emit(stack, tenant) for _ in range(30)]
    counts = await asyncio.gather(*(tasks.deliver_due(stack.runtime, limit=7) for _ in range(6)))
    await deliver(stack)
    received = [r.headers["webhook-id"] for r in stack.receiver.for_path(path)]
    assert sorted(received) == sorted(event_ids)
    assert sum(counts) <= 30


async def test_worker_crash_after_claim_is_redelivered_after_the_lease(
    stack: Stack, tenant: Tenant, clock: Any
) -> None:
    path = f"/{tenant.app_id}/crash"
    await add_endpoint(stack, tenant, path)
    event_id = await emit(stack, tenant)
    async with stack.runtime.db.transaction() as session:  # a worker claims, then dies
        only_this = Due(tasks.DUE.column, (*tasks.DUE.where, WebhookDelivery.event_id == event_id))
        claimed = await claim_due(
            session, WebhookDelivery, only_this, limit=10, lease_seconds=tasks.LEASE_SECONDS
        )
        assert len(claimed) == 1
    await deliver(stack)
    assert stack.receiver.for_path(path) == []
    clock.advance(tasks.LEASE_SECONDS + 1)
    await deliver(stack)
    assert [r.headers["webhook-id"] for r in stack.receiver.for_path(path)] == [event_id]


async def test_a_claim_brings_each_delivery_with_its_event_and_endpoint(
    stack: Stack, tenant: Tenant
) -> None:
    """Leased as claim_due leases, in id order, each with its own event and endpoint; on
    PostgreSQL in one statement with no transaction around it."""
    from paymux.webhooks.repository import WebhookRepository

    first = await add_endpoint(stack, tenant, f"/{tenant.app_id}/one")
    second = await add_endpoint(stack, tenant, f"/{tenant.app_id}/two")
    event_ids = {await emit(stack, tenant) for _ in range(3)}
    only = Due(tasks.DUE.column, (*tasks.DUE.where, WebhookDelivery.event_id.in_(event_ids)))
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement.split()[0].upper())

    engine = stack.runtime.db.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        async with stack.runtime.db.statement() as session:
            claimed = await WebhookRepository(session).claim_due(only, limit=10,
                                                                 lease_seconds=60)  # fmt: skip
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert len(claimed) == 6
    assert [d.id for d, _, _ in claimed] == sorted(d.id for d, _, _ in claimed)
    for delivery, event, endpoint in claimed:
        assert delivery.event_id == event.id and delivery.endpoint_id == endpoint.id
    assert {e.id for _, e, _ in claimed} == event_ids
    assert {p.id for _, _, p in claimed} == {first["id"], second["id"]}
    if not stack.runtime.db.is_sqlite:
        assert sent == ["WITH"]
    async with stack.runtime.db.statement() as session:  # leased: nobody else gets them now
        assert await WebhookRepository(session).claim_due(only, limit=10, lease_seconds=60) == []


async def test_a_stale_worker_cannot_move_a_delivery_twice(stack: Stack, tenant: Tenant) -> None:
    path = f"/{tenant.app_id}/stale"
    await add_endpoint(stack, tenant, path)
    event_id = await emit(stack, tenant)
    await deliver(stack)
    (d,) = await deliveries(stack, tenant, event_id)
    late = service.Outcome(attempted_at=dt.datetime.now(dt.UTC), duration_ms=3, status_code=500)
    async with stack.runtime.db.transaction() as session:
        after = await service.record_outcome(session, d["id"], 1, late)
        assert after.status == DeliveryStatus.delivered
    (d,) = await deliveries(stack, tenant, event_id)
    assert d["status"] == "delivered" and d["attempt_count"] == 1
    assert [a["status_code"] for a in d["attempts"]] == [200, 500]  # logged, not applied


async def test_a_batch_of_answers_moves_only_the_deliveries_it_still_holds(
    stack: Stack, tenant: Tenant
) -> None:
    """A batch's 2xx answers are applied in one guarded UPDATE: a stale worker's late 200 for
    a delivery another worker already finished is logged and changes nothing, while the
    batch's live answers are applied."""
    path = f"/{tenant.app_id}/batch"
    await add_endpoint(stack, tenant, path)
    done_id = await emit(stack, tenant)
    await deliver(stack)
    (done,) = await deliveries(stack, tenant, done_id)
    assert done["status"] == "delivered"
    live_id = await emit(stack, tenant)  # a second event, this worker's to answer
    (live,) = await deliveries(stack, tenant, live_id)
    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    late = service.Outcome(attempted_at=at, duration_ms=3, status_code=200)
    fresh = service.Outcome(attempted_at=at, duration_ms=4, status_code=204)
    async with stack.runtime.db.transaction() as session:
        await service.record_outcomes(session, [(done["id"], 1, late), (live["id"], 1, fresh)])
    (done_after,) = await deliveries(stack, tenant, done_id)
    (live_after,) = await deliveries(stack, tenant, live_id)
    assert done_after["attempt_count"] == 1 and done_after["delivered_at"] == done["delivered_at"]
    assert [a["status_code"] for a in done_after["attempts"]] == [200, 200]  # logged only
    assert live_after["status"] == "delivered" and live_after["attempt_count"] == 1
    assert live_after["last_status_code"] == 204
    assert dt.datetime.fromisoformat(live_after["delivered_at"]) == at


# ------------------------------------------------------------------ resend
async def test_resend_by_api(stack: Stack, tenant: Tenant) -> None:
    path = f"/{tenant.app_id}/resend"
    endpoint = await add_endpoint(stack, tenant, path)
    event_id = await emit(stack, tenant)
    await deliver(stack)
    r = await stack.client.post(f"/v1/events/{event_id}/resend", headers=tenant.headers)
    assert r.status_code == 200, r.text
    (queued,) = r.json()["data"]
    assert queued["status"] == "pending" and queued["endpoint"] == endpoint["id"]
    await deliver(stack)
    assert [x.headers["webhook-id"] for x in stack.receiver.for_path(path)] == [event_id] * 2
    assert [d["status"] for d in await deliveries(stack, tenant, event_id)] == ["delivered"] * 2

    missing = await stack.client.post("/v1/events/evt_nope/resend", headers=tenant.headers)
    assert missing.status_code == 404
    wrong = await stack.client.post(
        f"/v1/events/{event_id}/resend", json={"endpoint": "we_nope"}, headers=tenant.headers
    )
    assert wrong.status_code == 404
    other = await make_tenant(stack)
    assert (await stack.client.post(
        f"/v1/events/{event_id}/resend", headers=other.headers
    )).status_code == 404  # fmt: skip


async def test_resend_without_endpoints_is_a_clear_error(stack: Stack, tenant: Tenant) -> None:
    event_id = await emit(stack, tenant)
    r = await stack.client.post(f"/v1/events/{event_id}/resend", headers=tenant.headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "no_endpoints"


# ------------------------------------------------------------------ the subscriber cache
async def test_an_endpoint_changed_in_another_process_counts_within_a_second(
    stack: Stack, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events read their app's endpoints from a one-second cache. Another process's change
    (here: the database directly, so this process is not told) counts within that second; a
    delivery queued meanwhile for an endpoint deleted elsewhere is canceled, never sent."""
    from paymux.kit import cache
    from paymux.webhooks.models import WebhookEndpoint

    now = [1000.0]
    monkeypatch.setattr(cache, "monotonic", lambda: now[0])
    path = f"/{tenant.app_id}/elsewhere"
    endpoint = await add_endpoint(stack, tenant, path)  # this process: seen at once
    first = await emit(stack, tenant)
    assert [d["endpoint"] for d in await deliveries(stack, tenant, first)] == [endpoint["id"]]
    async with stack.runtime.db.transaction() as session:
        await session.execute(
            sa.update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint["id"])
            .values(enabled=False, deleted_at=dt.datetime.now(dt.UTC))
        )  # fmt: skip
    now[0] += 0.5
    stale = await emit(stack, tenant)  # inside the second: still queued for it …
    (queued,) = await deliveries(stack, tenant, stale)
    await deliver(stack)
    assert stack.receiver.for_path(path) == []  # nothing sent to the deleted endpoint
    (canceled,) = await deliveries(stack, tenant, stale)  # … and canceled by the worker
    assert queued["status"] == "pending" and canceled["status"] == "canceled"
    now[0] += 0.6
    assert await deliveries(stack, tenant, await emit(stack, tenant)) == []  # past it: gone

"""Webhook endpoints and the egress guard (SSRF): refused at registration (400, nothing stored)
and at delivery after resolution (no connection made, recorded as a failed attempt and
retried), live mode needs https, and nothing of a non-2xx answer's body is kept or shown. Every
test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from paymux.webhooks import service, tasks
from paymux.webhooks.models import WebhookAttempt, WebhookDelivery
from tests.conftest import Stack, Tenant
from tests.fixtures.egress import RecordingServer
from tests.kit.test_egress import REFUSED
from tests.webhooks.test_webhooks import deliver, deliveries, emit

PUBLIC = "93.184.215.14"


def url_of(host: str, port: int | None = None) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}{f':{port}' if port else ''}/hook"


async def endpoints_of(stack: Stack, tenant: Tenant) -> list[Any]:
    r = await stack.client.get("/v1/webhook_endpoints", headers=tenant.headers)
    return list(r.json()["data"])


@pytest.fixture
async def server() -> AsyncIterator[RecordingServer]:
    running = await RecordingServer().start()
    yield running
    await running.stop()


@pytest.fixture
async def no_loopback(
    stack: Stack, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[None]:
    """The stack's guard as in production: nothing allowed beyond public addresses (the
    stack's client is the production egress client for every host but merchant.test).

    Afterwards the tenant's endpoints are deleted, so their scheduled retries are canceled:
    left pending, later tests' deliveries (every due one, any tenant's) retried them under the
    suite's loopback allowance, and 6to4 of 127.0.0.1 is then a real connection that hangs
    until the 2 s timeout (~10 s of one webhook test)."""
    monkeypatch.setattr(stack.runtime.egress, "allow", ())
    yield
    for endpoint in await endpoints_of(stack, tenant):
        r = await stack.client.delete(f"/v1/webhook_endpoints/{endpoint['id']}",
                                      headers=tenant.headers)  # fmt: skip
        assert r.status_code == 200, r.text


async def store_endpoint(stack: Stack, tenant: Tenant, url: str) -> None:
    """An endpoint whose URL was fine when it was registered (or predates the guard)."""
    async with stack.runtime.db.transaction() as session:
        await service.create_endpoint(
            session, stack.runtime.vault, app_id=tenant.app_id, livemode=False,
            url=service.VettedUrl(url, livemode=False), events=["*"],
        )  # fmt: skip


# ------------------------------------------------------------------ registration
@pytest.mark.parametrize(("host", "reason"), REFUSED)
@pytest.mark.usefixtures("no_loopback")
async def test_non_public_targets_are_refused_at_registration(
    stack: Stack, tenant: Tenant, host: str, reason: str
) -> None:
    r = await stack.client.post(
        "/v1/webhook_endpoints", json={"url": url_of(host, 8080)}, headers=tenant.headers
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "url_not_allowed" and error["param"] == "url"
    assert reason in error["message"]
    assert await endpoints_of(stack, tenant) == []


@pytest.mark.usefixtures("no_loopback")
async def test_names_resolving_to_non_public_addresses_are_refused(
    stack: Stack, tenant: Tenant
) -> None:
    stack.resolver.set("intranet.shop.example", "10.0.0.7")
    stack.resolver.set("split.shop.example", [PUBLIC, "192.168.1.1"])
    stack.resolver.set("shop.example", PUBLIC)
    for host, address in (("intranet.shop.example", "10.0.0.7"),
                          ("split.shop.example", "192.168.1.1")):  # fmt: skip
        r = await stack.client.post(
            "/v1/webhook_endpoints", json={"url": url_of(host)}, headers=tenant.headers
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "url_not_allowed"
        assert address in r.json()["error"]["message"]
    assert await endpoints_of(stack, tenant) == []
    ok = await stack.client.post(
        "/v1/webhook_endpoints", json={"url": url_of("shop.example")}, headers=tenant.headers
    )
    assert ok.status_code == 201, ok.text
    # A name that does not resolve yet is accepted; every delivery checks it again.
    later = await stack.client.post(
        "/v1/webhook_endpoints", json={"url": url_of("soon.shop.example")}, headers=tenant.headers
    )
    assert later.status_code == 201, later.text


async def test_live_mode_requires_https(stack: Stack, tenant: Tenant) -> None:
    from paymux.merchants import service as merchant_service
    from paymux.merchants.models import Mode

    async with stack.runtime.db.transaction() as session:
        key = await merchant_service.issue_key(session, app_id=tenant.app_id, mode=Mode.live)
    live = {"Authorization": f"Bearer {key.secret}"}
    stack.resolver.set("live.shop.example", PUBLIC)
    plain = await stack.client.post(
        "/v1/webhook_endpoints", json={"url": "http://live.shop.example/h"}, headers=live
    )
    assert plain.status_code == 400 and plain.json()["error"]["code"] == "url_invalid"
    inside = await stack.client.post(
        "/v1/webhook_endpoints", json={"url": "https://10.0.0.1/h"}, headers=live
    )
    assert inside.status_code == 400 and inside.json()["error"]["code"] == "url_not_allowed"
    secure = await stack.client.post(
        "/v1/webhook_endpoints", json={"url": "https://live.shop.example/h"}, headers=live
    )
    assert secure.status_code == 201 and secure.json()["livemode"] is True


# ------------------------------------------------------------------ delivery
@pytest.mark.usefixtures("no_loopback")
@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0x7f.1", "127.1",
                                  "::ffff:127.0.0.1", "rebind.example"])  # fmt: skip
async def test_delivery_never_connects_to_a_refused_address(
    stack: Stack, tenant: Tenant, server: RecordingServer, host: str
) -> None:
    # rebind.example resolved to a public address when it was registered, then to loopback.
    stack.resolver.set("rebind.example", PUBLIC, "127.0.0.1")
    if host == "rebind.example":
        r = await stack.client.post(
            "/v1/webhook_endpoints", json={"url": url_of(host, server.port)},
            headers=tenant.headers,
        )  # fmt: skip
        assert r.status_code == 201, r.text
    else:
        await store_endpoint(stack, tenant, url_of(host, server.port))
    event_id = await emit(stack, tenant)
    await deliver(stack)
    assert server.connections == 0
    (d,) = await deliveries(stack, tenant, event_id)
    assert d["status"] == "pending" and d["attempt_count"] == 1  # retried on the schedule
    (attempt,) = d["attempts"]
    assert attempt["status_code"] is None and attempt["response_excerpt"] is None
    assert attempt["error"].startswith("refused: address ")
    assert (
        attempt["error"].endswith("127.0.0.1) is not allowed (loopback)")
        or attempt["error"] == "refused: address 127.0.0.1 is not allowed (loopback)"
    )


@pytest.mark.usefixtures("no_loopback")
@pytest.mark.parametrize(("host", "reason"), REFUSED)
async def test_every_refused_form_is_refused_at_delivery(
    stack: Stack, tenant: Tenant, host: str, reason: str
) -> None:
    await store_endpoint(stack, tenant, url_of(host, 8080))
    event_id = await emit(stack, tenant)
    await deliver(stack)
    (d,) = await deliveries(stack, tenant, event_id)
    (attempt,) = d["attempts"]
    if host == "0177.0.0.1":  # httpx will not even send to this form
        assert attempt["error"].startswith("InvalidURL: ")
    else:
        assert attempt["error"].startswith("refused: ") and reason in attempt["error"]


async def test_loopback_allowed_by_configuration_is_delivered(
    stack: Stack, tenant: Tenant, server: RecordingServer
) -> None:
    await store_endpoint(stack, tenant, url_of("127.0.0.1", server.port))  # tests allow it
    event_id = await emit(stack, tenant)
    await deliver(stack)
    assert server.connections == 1
    assert [d["status"] for d in await deliveries(stack, tenant, event_id)] == ["delivered"]


async def test_no_body_of_a_non_2xx_answer_is_stored_or_shown(
    stack: Stack, tenant: Tenant, server: RecordingServer, clock: Any
) -> None:
    server.status, server.body = 500, b"redis_version:7.2.4 internal secrets"
    await store_endpoint(stack, tenant, url_of("127.0.0.1", server.port))
    event_id = await emit(stack, tenant)
    await deliver(stack)
    server.status, server.body = 302, b"moved, with a secret"
    server.headers = {"location": "http://169.254.169.254/latest/meta-data/"}
    clock.advance(10)
    await deliver(stack)
    server.status, server.body = 200, b"ok " + b"x" * 5000
    clock.advance(120)
    await deliver(stack)
    assert server.connections == 3  # the redirect was not followed
    (d,) = await deliveries(stack, tenant, event_id)
    assert d["status"] == "delivered"
    assert [a["status_code"] for a in d["attempts"]] == [500, 302, 200]
    assert [a["response_excerpt"] for a in d["attempts"][:2]] == [None, None]
    assert d["attempts"][2]["response_excerpt"].startswith("ok xxx")
    assert len(d["attempts"][2]["response_excerpt"]) <= tasks.EXCERPT_BYTES
    async with stack.runtime.db.read() as session:
        stored = (await session.scalars(
            sa.select(WebhookAttempt.response_excerpt)
            .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
            .where(WebhookDelivery.event_id == event_id)
            .order_by(WebhookAttempt.attempted_at)
        )).all()  # fmt: skip
    assert stored[:2] == [None, None] and "secret" not in " ".join(s or "" for s in stored)

"""End to end over real HTTP on loopback: the gateway (API + worker in one process, as
``paymux demo`` runs it) with the sandboxes mounted, and a merchant webhook receiver, each a
real uvicorn server. The customer pays on the sandbox's own page by submitting its form."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from paymux.app import create_app
from paymux.channels.sandbox_kit import Outcome, Script
from paymux.config import Environment, Settings
from paymux.demo import make_sandboxes, provision
from paymux.kit import clock as kit_clock
from paymux.runtime import Runtime
from tests.fixtures.receiver import WebhookReceiver
from tests.fixtures.servers import free_port, serve


@dataclass
class Loopback:
    base: str
    key: str
    secret: str
    receiver: WebhookReceiver
    sandboxes: dict[str, Any]


@pytest.fixture(scope="module")
def loopback(database_url: str) -> Iterator[Loopback]:
    receiver = WebhookReceiver()
    with serve(receiver.app) as merchant_site:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        settings = Settings(
            env=Environment.test, database_url=database_url, public_url=base,
            channel_timeout_seconds=1.0, worker_poll_seconds=0.05, log_level="WARNING",
            egress_allow_nets=["127.0.0.0/8", "::1/128"],
            recon_schedule=False,  # the shared test database: other tests' accounts and days
        )  # fmt: skip
        sandboxes = make_sandboxes(httpx.AsyncClient(timeout=5.0))
        for sandbox in sandboxes.values():
            sandbox.core.hold_timeout_seconds = 3.0

        async def setup() -> Any:
            rt = Runtime.build(settings)
            try:
                return await provision(
                    rt, sandboxes, public_url=base, api_key=None,
                    webhook_url=f"{merchant_site}/hooks",
                )  # fmt: skip
            finally:
                await rt.aclose()

        done = asyncio.run(setup())
        app = create_app(settings, sandboxes=sandboxes, run_worker=True)
        with serve(app, port=port):
            yield Loopback(base, done.api_key, done.webhook_secret, receiver, sandboxes)


async def _poll(client: httpx.AsyncClient, url: str, headers: dict[str, str], want: str) -> Any:
    for _ in range(300):
        body = (await client.get(url, headers=headers)).json()
        if body["status"] == want:
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"stayed {body['status']}, wanted {want}")


async def test_customer_pays_on_the_sandbox_page_and_webhook_verifies(lb: Loopback) -> None:
    headers = {"Authorization": f"Bearer {lb.key}"}
    async with httpx.AsyncClient(base_url=lb.base, timeout=10) as client:
        for method in ("wechat_native", "alipay_qr", "alipay_page"):
            out_trade_no = uuid.uuid4().hex[:20]
            r = await client.post(
                "/v1/payments",
                json={"amount": 2500, "currency": "CNY", "method": method,
                      "out_trade_no": out_trade_no, "subject": "Loopback"},
                headers={**headers, "Idempotency-Key": out_trade_no},
            )  # fmt: skip
            assert r.status_code == 201, r.text
            payment = r.json()
            cashier = await client.get(payment["cashier_url"])
            assert cashier.status_code == 200
            action = payment["next_action"]
            link = action.get("code_url") or action.get("url")
            page = await client.get(link, follow_redirects=True)
            assert page.status_code == 200 and "<form" in page.text, page.text[:500]
            form_action = re.search(r'<form[^>]*action="([^"]*)"', page.text)
            target = httpx.URL(str(page.url)).join(form_action.group(1) if form_action else "")
            paid = await client.post(target, data={"result": "pay"})
            assert paid.status_code in (200, 303)
            done = await _poll(client, f"/v1/payments/{payment['id']}", headers, "succeeded")
            assert done["paid_at"]
    for _ in range(300):
        if len(lb.receiver.for_path("/hooks")) >= 3:
            break
        await asyncio.sleep(0.02)
    deliveries = lb.receiver.for_path("/hooks")
    assert [json.loads(d.body)["type"] for d in deliveries][-3:] == ["payment.succeeded"] * 3
    for d in deliveries:
        Webhook(lb.secret).verify(d.body, d.headers)


async def test_create_timeout_is_unknown_then_resolved_by_query(lb: Loopback) -> None:
    headers = {"Authorization": f"Bearer {lb.key}"}
    shifted = kit_clock.OffsetClock()
    previous = kit_clock.set_clock(shifted)
    try:
        async with httpx.AsyncClient(base_url=lb.base, timeout=10) as client:
            for method, channel in (("wechat_native", "wechatpay"), ("alipay_qr", "alipay")):
                subject = f"slow-{uuid.uuid4().hex[:6]}"
                lb.sandboxes[channel].core.add_script(
                    Script(outcome=Outcome.create_timeout, subject=subject)
                )
                r = await client.post(
                    "/v1/payments",
                    json={"amount": 300, "currency": "CNY", "method": method,
                          "out_trade_no": uuid.uuid4().hex[:20], "subject": subject},
                    headers=headers,
                )  # fmt: skip
                assert r.status_code == 201, r.text
                payment = r.json()
                assert payment["status"] == "pending" and payment["next_action"] is None
                order = next(o for o in lb.sandboxes[channel].core.orders.values()
                             if o.subject == subject)  # fmt: skip
                lb.sandboxes[channel].core.settle(order, paid=True)
                shifted.advance(10)
                done = await _poll(client, f"/v1/payments/{payment['id']}", headers, "succeeded")
                assert done["status"] == "succeeded"
    finally:
        kit_clock.set_clock(previous)


@pytest.fixture
def lb(loopback: Loopback) -> Loopback:
    return loopback

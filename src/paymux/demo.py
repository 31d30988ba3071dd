"""``paymux demo``: the gateway on SQLite with the channel sandboxes, a demo merchant and a demo
webhook receiver, in one process with its worker. Everything here is for trying paymux out."""

from __future__ import annotations

import html
import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from paymux.channels import service as channel_service
from paymux.kit.clock import now
from paymux.merchants import service as merchant_service
from paymux.merchants.models import Mode
from paymux.runtime import Runtime
from paymux.webhooks import service as webhook_service
from paymux.webhooks.signing import verify


def make_sandboxes(http: httpx.AsyncClient | None = None, **options: Any) -> dict[str, Any]:
    """One sandbox per built-in channel (``channels/<name>/sandbox.py``), by channel name;
    ``options`` (``time_scale``, ``hold_timeout_seconds``) go to every sandbox."""
    import importlib

    from paymux.channels.base import builtin_channel_names

    return {
        name: importlib.import_module(f"paymux.channels.{name}.sandbox").Sandbox(
            http=http, **options
        )
        for name in builtin_channel_names()
    }


@dataclass
class DemoSetup:
    merchant_id: str
    app_id: str
    api_key: str
    webhook_url: str
    webhook_secret: str
    channel_accounts: dict[str, str] = field(default_factory=dict)


async def provision(
    rt: Runtime,
    sandboxes: dict[str, Any],
    *,
    public_url: str,
    api_key: str | None,
    webhook_url: str | None,
) -> DemoSetup:
    """Create the demo merchant, its app, a test key, sandbox channel accounts, a webhook."""
    base = public_url.rstrip("/")
    async with rt.db.transaction() as session:
        merchant = await merchant_service.create_merchant(session, name="Demo shop")
        app = await merchant_service.create_app(session, merchant_id=merchant.id, name="demo")
        key = await merchant_service.issue_key(
            session, app_id=app.id, mode=Mode.test, secret=api_key
        )
        accounts = {}
        for name, sandbox in sandboxes.items():
            # Everything the channel offers enabled (e.g. payouts), where the sandbox says how.
            provision = getattr(sandbox, "provision_demo", sandbox.provision)
            credentials = provision(f"{base}/sandbox/{name}")
            account = await channel_service.add_account(
                session, rt.vault, app_id=app.id, channel=name, mode=Mode.test,
                credentials=credentials, fee_rate_bps=60, name=f"{name} sandbox",
            )  # fmt: skip
            accounts[name] = account.id
        url = webhook_url or f"{base}/demo/webhooks"
        _endpoint, secret = await webhook_service.create_endpoint(
            session, rt.vault, app_id=app.id, livemode=False, events=["*"],
            url=await webhook_service.vet_url(rt.egress, url, livemode=False),
        )  # fmt: skip
    return DemoSetup(merchant.id, app.id, key.secret, url, secret, accounts)


class DemoReceiver:
    """A merchant server's webhook endpoint: verifies each delivery and lists what arrived."""

    def __init__(self) -> None:
        self.secret: str | None = None
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=200)
        self.router = APIRouter(prefix="/demo", include_in_schema=False)
        self.router.add_api_route("/webhooks", self.receive, methods=["POST"])
        self.router.add_api_route("/webhooks", self.page, methods=["GET"])

    async def receive(self, request: Request) -> JSONResponse:
        body = await request.body()
        valid = self.secret is not None and verify(self.secret, dict(request.headers), body)
        try:
            event = json.loads(body)
        except ValueError:
            event = {}
        self.deliveries.appendleft({
            "received_at": now().isoformat(timespec="seconds"),
            "webhook_id": request.headers.get("webhook-id"),
            "signature_valid": valid,
            "type": event.get("type"),
            "event": event,
        })  # fmt: skip
        return JSONResponse({"received": True}, status_code=200 if valid else 400)

    async def page(self, request: Request) -> Any:
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse(list(self.deliveries))
        rows = "".join(
            f"<tr><td>{html.escape(d['received_at'])}</td><td>{html.escape(str(d['type']))}</td>"
            f"<td>{'✔ valid' if d['signature_valid'] else '✘ INVALID'}</td>"
            f"<td><pre>{html.escape(json.dumps(d['event'], indent=1, ensure_ascii=False))}</pre>"
            "</td></tr>"
            for d in self.deliveries
        )
        return HTMLResponse(
            "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=3>"
            "<title>paymux demo webhooks</title><body style='font-family:sans-serif'>"
            "<h1>Webhooks received by the demo merchant</h1>"
            "<table border=1 cellpadding=4><tr><th>received</th><th>type</th><th>signature</th>"
            f"<th>event</th></tr>{rows}</table>"
        )


def banner(setup: DemoSetup, public_url: str, database: Path) -> str:
    base = public_url.rstrip("/")
    curl = (
        f"curl -s {base}/v1/payments \\\n"
        f"  -H 'Authorization: Bearer {setup.api_key}' \\\n"
        "  -H 'Idempotency-Key: demo-order-1' \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        '  -d \'{"amount": 1999, "currency": "CNY", "method": "alipay_qr", '
        '"out_trade_no": "demo-order-1", "subject": "Demo T-shirt"}\''
    )
    return "\n".join([
        "",
        "paymux demo is running (sandbox channels, test mode)",
        f"  API base URL      {base}/v1",
        f"  API docs          {base}/docs",
        f"  Test API key      {setup.api_key}",
        f"  Webhooks go to    {setup.webhook_url}",
        f"  Webhook secret    {setup.webhook_secret}",
        f"  Deliveries page   {base}/demo/webhooks",
        f"  Database          {database}",
        "",
        "Create a payment:",
        curl,
        "",
        "Then open the payment's cashier_url (or next_action.code_url) in a browser and pay.",
        "",
    ])  # fmt: skip

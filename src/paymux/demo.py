"""``paymux demo``: the gateway on SQLite with the channel sandboxes, a demo merchant and a demo
webhook receiver, in one process with its worker. Everything here is for trying paymux out.

One demo per port and per database file: the port is bound and the file locked before anything
is touched (:func:`claim_port`, :class:`DatabaseLock`), so a second demo is refused instead of
deleting the running one's database."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shlex
import socket
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channel_accounts import service as channel_service
from paymux.kit.clock import now
from paymux.kit.web import RuntimeDep
from paymux.ledger import chart
from paymux.ledger import service as ledger
from paymux.ledger.chart import Purpose
from paymux.merchants import service as merchant_service
from paymux.merchants.models import Mode
from paymux.runtime import Runtime
from paymux.wallets import service as wallet_service
from paymux.wallets.schemas import WalletCreate
from paymux.webhooks import service as webhook_service
from paymux.webhooks.repository import WebhookRepository
from paymux.webhooks.signing import verify

_PAGE = Path(__file__).resolve().parent / "templates" / "demo_webhooks.html"


def make_sandboxes(http: httpx.AsyncClient | None = None, **options: Any) -> dict[str, Any]:
    """One sandbox per built-in channel (``channels/<name>/sandbox.py``), by channel name;
    ``options`` (``time_scale``, ``hold_timeout_seconds``) go to every sandbox."""
    import importlib

    from paymux.channels.registry import builtin_channel_names

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
    wallet_id: str | None = None
    """A demo customer's wallet with :data:`DEMO_WALLET_BALANCE` in it (余额支付 on the cashier)."""


DEMO_WALLET_BALANCE = 50_000
"""¥500.00 in the demo customer's wallet."""


async def _demo_wallet(session: AsyncSession, app_id: str, clearing_account_id: str | None) -> str:
    """A user wallet for the demo customer, topped up as if a top-up had been paid through the
    given sandbox channel account (its clearing account → the wallet's available balance)."""
    wallet = await wallet_service.create(
        session, app_id=app_id, livemode=False,
        body=WalletCreate(reference="demo-customer", currency="CNY"),
    )  # fmt: skip
    if clearing_account_id is not None:
        clearing = await chart.clearing(session, clearing_account_id, "CNY")
        available = await chart.wallet(session, wallet.id, Purpose.available, "CNY")
        await ledger.transfer(
            session, key=f"demo_top_up:{wallet.id}",
            legs=[ledger.debit(clearing, DEMO_WALLET_BALANCE),
                  ledger.credit(available, DEMO_WALLET_BALANCE)],
            description="demo top-up (as if paid in the channel sandbox)",
            metadata={"kind": "top_up", "demo": "true"},
        )  # fmt: skip
    return wallet.id


async def provision(
    rt: Runtime,
    sandboxes: dict[str, Any],
    *,
    public_url: str,
    api_key: str | None,
    webhook_url: str | None,
) -> DemoSetup:
    """Create the demo merchant, its app, a test key, sandbox channel accounts, a webhook and
    a demo customer's wallet with a balance."""
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
        wallet_id = await _demo_wallet(session, app.id, accounts.get("alipay"))
    return DemoSetup(merchant.id, app.id, key.secret, url, secret, accounts, wallet_id)


class DemoReceiver:
    """The demo merchant's webhook endpoint, and a page of its deliveries as the gateway sees
    them (pending, delivered, failed, each attempt's status line) next to what arrived here.

    ``GET /demo/webhooks`` is the page; it fetches ``GET /demo/webhooks/state`` every few
    seconds and patches its table in place (no reload, the scroll stays)."""

    def __init__(self) -> None:
        self.secret: str | None = None
        self.app_id: str | None = None
        self.url: str | None = None
        """Where the gateway reaches this receiver (its deliveries are the ones it can see)."""
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=200)
        self._seq = 0
        self.router = APIRouter(prefix="/demo", include_in_schema=False)
        self.router.add_api_route("/webhooks", self.receive, methods=["POST"])
        self.router.add_api_route("/webhooks", self.page, methods=["GET"])
        self.router.add_api_route("/webhooks/state", self.state, methods=["GET"])

    async def receive(self, request: Request) -> JSONResponse:
        body = await request.body()
        valid = self.secret is not None and verify(self.secret, dict(request.headers), body)
        try:
            event = json.loads(body)
        except ValueError:
            event = {}
        self._seq += 1
        self.deliveries.appendleft({
            "seq": self._seq,
            "received_at": now().isoformat(timespec="seconds"),
            "webhook_id": request.headers.get("webhook-id"),
            "signature_valid": valid,
            "type": event.get("type") if isinstance(event, dict) else None,
            "event": event,
        })  # fmt: skip
        return JSONResponse({"received": True}, status_code=200 if valid else 400)

    async def page(self, request: Request) -> Response:
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse(list(self.deliveries))
        nonce = secrets.token_urlsafe(16)
        body = _PAGE.read_text(encoding="utf-8").replace("{{nonce}}", nonce)
        csp = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        return HTMLResponse(body, headers={"Content-Security-Policy": csp,
                                           "Cache-Control": "no-store"})  # fmt: skip

    async def state(self, rt: RuntimeDep) -> JSONResponse:
        """The demo app's latest events with their deliveries, and what the receiver got."""
        gateway: list[dict[str, Any]] = []
        if self.app_id is not None:
            async with rt.db.read() as session:
                gateway = await delivery_view(session, self.app_id, limit=50)
        received = {d["webhook_id"]: d for d in self.deliveries}
        for row in gateway:
            got = received.get(row["event"]) if row["endpoint"] == self.url else None
            row["received"] = (
                None
                if got is None
                else {"received_at": got["received_at"], "signature_valid": got["signature_valid"]}
            )
        return JSONResponse({"deliveries": gateway, "received": list(self.deliveries)},
                            headers={"Cache-Control": "no-store"})  # fmt: skip


async def delivery_view(session: AsyncSession, app_id: str, *, limit: int) -> list[dict[str, Any]]:
    """Every delivery of the app's newest test-mode events, newest first, with each attempt's
    status line (never a response body)."""
    repo = WebhookRepository(session)
    events, _more = await repo.events(app_id, False, type_=None, limit=limit, starting_after=None)
    rows: list[dict[str, Any]] = []
    for event in events:
        deliveries = await repo.deliveries_of(event.id)
        endpoints = await repo.endpoints_by_id([d.endpoint_id for d in deliveries])
        attempts = await repo.attempts_of([d.id for d in deliveries])
        for d in deliveries:
            endpoint = endpoints.get(d.endpoint_id)
            rows.append({
                "id": d.id, "event": event.id, "type": event.type,
                "created_at": event.created_at.isoformat(timespec="seconds"),
                "endpoint": endpoint.url if endpoint else d.endpoint_id, "status": d.status,
                "attempt_count": d.attempt_count,
                "next_attempt_at": d.next_attempt_at.isoformat(timespec="seconds")
                if d.next_attempt_at and d.status == "pending" else None,
                "attempts": [{"at": a.attempted_at.isoformat(timespec="seconds"),
                              "status_code": a.status_code, "error": a.error,
                              "duration_ms": a.duration_ms} for a in attempts[d.id]],
                "data": event.data,
            })  # fmt: skip
    return rows


def cli_environment(database: Path, public_url: str) -> dict[str, str]:
    """What the ``paymux`` CLI needs in its environment to work on this demo's database."""
    return {
        "PAYMUX_ENV": "demo",
        "PAYMUX_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "PAYMUX_PUBLIC_URL": public_url.rstrip("/"),
    }


def banner(
    setup: DemoSetup, public_url: str, database: Path, operator_token: str | None = None
) -> str:
    base = public_url.rstrip("/")
    curl = (
        f"curl -s {base}/v1/payments \\\n"
        f"  -H 'Authorization: Bearer {setup.api_key}' \\\n"
        "  -H 'Idempotency-Key: demo-order-1' \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        '  -d \'{"amount": 1999, "currency": "CNY", "method": "alipay_qr", '
        '"out_trade_no": "demo-order-1", "subject": "Demo T-shirt"}\''
    )
    exports = [f"  export {k}={shlex.quote(v)}" for k, v in
               cli_environment(database, public_url).items()]  # fmt: skip
    return "\n".join([
        "",
        f"paymux demo is running at {base} (sandbox channels, test mode)",
        f"  API base URL      {base}/v1",
        f"  API docs          {base}/docs",
        f"  Merchant          {setup.merchant_id}",
        f"  App               {setup.app_id}",
        f"  Test API key      {setup.api_key}",
        f"  Webhooks go to    {setup.webhook_url}",
        f"  Webhook secret    {setup.webhook_secret}",
        f"  Deliveries page   {base}/demo/webhooks",
        f"  Demo wallet       {setup.wallet_id}",
        f"  Database          {database}",
        *([f"  Operator token    {operator_token}  (/v1/operator: reconciliation, ledger)"]
          if operator_token else []),
        "",
        "Create a payment:",
        curl,
        "",
        "Then open the payment's cashier_url (or next_action.code_url) in a browser and pay.",
        "To offer the demo customer's balance (¥500.00) on the cashier, create it with",
        '  "method": "cashier", "allowed_methods": ["wallet", "alipay_qr"], '
        '"customer": {"wallet": "$PAYMUX_WALLET"}',
        "",
        "Point another terminal (in this directory) at the demo, for curl and the paymux CLI:",
        f"  export PAYMUX_URL={shlex.quote(base)} PAYMUX_KEY={shlex.quote(setup.api_key)}",
        f"  export PAYMUX_APP={shlex.quote(setup.app_id)}",
        *([f"  export PAYMUX_WALLET={shlex.quote(setup.wallet_id)}"] if setup.wallet_id else []),
        *([f"  export PAYMUX_OPERATOR_TOKEN={shlex.quote(operator_token)}"]
          if operator_token else []),
        *exports,
        "  paymux payment list --app $PAYMUX_APP",
        "",
    ])  # fmt: skip


# ------------------------------------------------------------------ one demo per port and file
class DemoBusy(Exception):
    """The port or the database is taken; nothing was changed."""


def claim_port(host: str, port: int) -> socket.socket:
    """Bind the demo's port now (uvicorn listens on this very socket), so a busy port is found
    before any file is touched and nobody can take it in between."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP
    # (accepted ones inherit it); without it a response sent in two writes waits ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DemoBusy(f"port {port} on {host} is busy ({exc.strerror})") from None
    return sock


class DatabaseLock:
    """An exclusive ``flock`` on ``<database>.lock``, held for the demo's lifetime. The kernel
    drops it when the process ends, however it ends (kill -9 included): no stale lock."""

    def __init__(self, database: Path) -> None:
        self.path = Path(f"{database}.lock")
        self.fd: int | None = None

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock (pid, url), if anyone does."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.read(fd, 4096).decode(errors="replace")
                try:
                    found = json.loads(text)
                except ValueError:
                    found = {}
                return found if isinstance(found, dict) else {}
            return None
        finally:
            os.close(fd)

    def acquire(self, url: str) -> None:
        """Take the lock or raise :class:`DemoBusy`; never truncates a holder's lock file."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DemoBusy(f"the database {self.path.with_suffix('')} is in use"
                           f"{describe(self.holder())}") from None  # fmt: skip
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "url": url}).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return ""
    return f" by the paymux demo with pid {holder.get('pid')} at {holder.get('url')}"

"""Processes (demo, serve, worker), the database and tenant administration commands."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from paymux.cli.common import app, console, load_settings, run, show_json
from paymux.config import Environment, Settings
from paymux.kit import migrate
from paymux.kit.errors import PaymuxError
from paymux.merchants.models import Mode
from paymux.runtime import Runtime

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
merchant_app = typer.Typer(help="Merchants.", no_args_is_help=True)
app_app = typer.Typer(help="Apps (one integration of a merchant) and their API keys.")
channel_app = typer.Typer(help="Channel accounts of an app.", no_args_is_help=True)
webhook_app = typer.Typer(help="Webhook endpoints and deliveries.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(merchant_app, name="merchant")
app.add_typer(app_app, name="app")
app.add_typer(channel_app, name="channel")
app.add_typer(webhook_app, name="webhook")


# ------------------------------------------------------------------ processes
@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    api_key: Annotated[
        str | None, typer.Option(help="Use this test key (sk_test_…) instead of a random one.")
    ] = None,
    webhook_url: Annotated[
        str | None, typer.Option(help="Send webhooks here instead of the demo receiver.")
    ] = None,
    database: Annotated[Path, typer.Option(help="SQLite file, recreated at start.")] = Path(
        "paymux-demo.db"
    ),
) -> None:
    """Gateway + worker + every channel sandbox + a demo merchant, on SQLite."""
    import uvicorn

    from paymux import demo as demo_mod
    from paymux.app import create_app

    public_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"  # noqa: S104
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    settings = Settings(
        env=Environment.demo,
        database_url=f"sqlite+aiosqlite:///{database.resolve()}",
        public_url=public_url,
        worker_poll_seconds=0.2,
        egress_allow_nets=["127.0.0.0/8", "::1/128"],  # the demo receiver is on loopback
    )
    asyncio.run(migrate.upgrade(settings.database_url))
    receiver = demo_mod.DemoReceiver()
    notifier = httpx.AsyncClient(timeout=10.0)
    sandboxes = demo_mod.make_sandboxes(notifier)

    async def setup() -> demo_mod.DemoSetup:
        rt = Runtime.build(settings)
        try:
            return await demo_mod.provision(
                rt, sandboxes, public_url=public_url, api_key=api_key, webhook_url=webhook_url
            )
        finally:
            await rt.aclose()

    try:
        done = asyncio.run(setup())
    except PaymuxError as exc:
        console.print(f"[red]error[/red] {exc.code}: {exc.message}")
        raise typer.Exit(2) from None
    receiver.secret = done.webhook_secret
    application = create_app(
        settings, sandboxes=sandboxes, run_worker=True, extra_routers=[receiver.router]
    )
    console.print(
        demo_mod.banner(done, public_url, database.resolve()), highlight=False, soft_wrap=True
    )
    uvicorn.run(application, host=host, port=port, log_level="warning")


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(help="API processes.")] = 1,
    with_worker: Annotated[bool, typer.Option(help="Also run the job worker in-process.")] = False,
) -> None:
    """Run the API (configure with PAYMUX_* environment variables)."""
    import uvicorn

    load_settings()  # refuse bad configuration before forking
    if with_worker:
        os.environ["PAYMUX_RUN_WORKER"] = "1"
    uvicorn.run(
        "paymux.app:create_app", factory=True, host=host, port=port, workers=workers,
        log_level="warning", access_log=False,
    )  # fmt: skip


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="Run until nothing is due, then exit.")] = False,
) -> None:
    """Run background jobs: janitor queries, expiry, webhook deliveries, housekeeping."""
    from paymux.jobs.worker import Worker

    async def go(rt: Runtime) -> None:
        w = Worker(rt)
        if once:
            console.print(f"handled {await w.run_until_idle()} items")
        else:
            await w.run_forever()

    run(go)


@app.command()
def keygen() -> None:
    """Print a new random PAYMUX_MASTER_KEY."""
    typer.echo(base64.b64encode(secrets.token_bytes(32)).decode())


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations to PAYMUX_DATABASE_URL."""
    url = load_settings().database_url
    asyncio.run(migrate.upgrade(url, revision))
    console.print(f"database at {revision}")


# ------------------------------------------------------------------ administration
@merchant_app.command("create")
def merchant_create(name: str) -> None:
    """Create a merchant."""
    from paymux.merchants import service

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            m = await service.create_merchant(s, name=name)
            return {"id": m.id, "name": m.name}

    show_json(run(go))


@merchant_app.command("list")
def merchant_list() -> None:
    from paymux.merchants.repository import MerchantRepository

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        async with rt.db.read() as s:
            return [
                {"id": m.id, "name": m.name} for m in await MerchantRepository(s).list_merchants()
            ]

    show_json(run(go))


@app_app.command("create")
def app_create(merchant: str, name: Annotated[str, typer.Option()] = "default") -> None:
    """Create an app of MERCHANT."""
    from paymux.merchants import service

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            a = await service.create_app(s, merchant_id=merchant, name=name)
            return {"id": a.id, "merchant": a.merchant_id, "name": a.name}

    show_json(run(go))


@app_app.command("key")
def app_key(app_id: str, mode: Annotated[Mode, typer.Option()] = Mode.test) -> None:
    """Issue an API key for APP_ID (shown once)."""
    from paymux.merchants import service

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            issued = await service.issue_key(s, app_id=app_id, mode=mode)
            return {"id": issued.key.id, "mode": mode.value, "secret": issued.secret}

    show_json(run(go))


@channel_app.command("add")
def channel_add(
    app_id: str,
    channel: str,
    credentials: Annotated[Path, typer.Option(help="JSON file with the channel's credentials.")],
    mode: Annotated[Mode, typer.Option()] = Mode.test,
    methods: Annotated[str | None, typer.Option(help="Comma-separated; default all.")] = None,
    fee_bps: Annotated[int, typer.Option(help="Fee in basis points (60 = 0.6%).")] = 0,
    priority: Annotated[int, typer.Option(help="Lower is tried first.")] = 100,
    name: Annotated[str, typer.Option()] = "",
) -> None:
    """Configure CHANNEL for APP_ID; credentials are validated and encrypted at rest."""
    from paymux.channels import service

    try:
        creds = json.loads(credentials.read_text())
    except (OSError, ValueError) as exc:
        console.print(f"[red]error[/red] cannot read credentials: {exc}")
        raise typer.Exit(1) from None

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            acc = await service.add_account(
                s, rt.vault, app_id=app_id, channel=channel, mode=mode, credentials=creds,
                methods=methods.split(",") if methods else None, fee_rate_bps=fee_bps,
                priority=priority, name=name,
            )  # fmt: skip
            url = f"{rt.settings.public_url.rstrip('/')}/notify/{channel}/{acc.id}"
            return {"id": acc.id, "channel": channel, "methods": acc.methods, "notify_url": url}

    show_json(run(go))


@channel_app.command("list")
def channel_list(app_id: str) -> None:
    from paymux.channels.repository import ChannelRepository

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        async with rt.db.read() as s:
            return [
                {"id": a.id, "channel": a.channel, "mode": a.mode, "methods": a.methods,
                 "enabled": a.enabled, "priority": a.priority, "fee_rate_bps": a.fee_rate_bps}
                for a in await ChannelRepository(s).list_for_app(app_id)
            ]  # fmt: skip

    show_json(run(go))


@channel_app.command("enable")
def channel_enable(account_id: str, off: Annotated[bool, typer.Option("--off")] = False) -> None:
    """Enable (or with --off disable) a channel account."""
    from paymux.channels import service

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            acc = await service.update_account(s, account_id, enabled=not off)
            return {"id": acc.id, "enabled": acc.enabled}

    show_json(run(go))


@webhook_app.command("add")
def webhook_add(
    app_id: str,
    url: str,
    events: Annotated[str, typer.Option(help="Comma-separated event types or *.")] = "*",
    live: Annotated[bool, typer.Option(help="For live-mode events.")] = False,
) -> None:
    """Add a webhook endpoint (the whsec_ secret is shown once)."""
    from paymux.webhooks import service

    async def go(rt: Runtime) -> dict[str, Any]:
        vetted = await service.vet_url(rt.egress, url, livemode=live)
        async with rt.db.transaction() as s:
            ep, secret = await service.create_endpoint(
                s, rt.vault, app_id=app_id, livemode=live, url=vetted, events=events.split(",")
            )
            return {"id": ep.id, "url": ep.url, "secret": secret}

    show_json(run(go))


@webhook_app.command("resend")
def webhook_resend(
    app_id: str, event_id: str, endpoint: Annotated[str | None, typer.Option()] = None
) -> None:
    """Deliver EVENT_ID again (to every subscribed endpoint, or one)."""
    from paymux.webhooks import service

    async def go(rt: Runtime) -> Any:
        async with rt.db.transaction() as s:
            deliveries = await service.resend(
                s, app_id=app_id, event_id=event_id, endpoint_id=endpoint
            )
            return [{"id": d.id, "endpoint": d.endpoint_id, "status": d.status} for d in deliveries]

    show_json(run(go))

"""Processes (serve, worker), the database and tenant administration commands."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer

from paymux.cli.common import app, load_settings, run
from paymux.cli.output import emit, fail, note, progress
from paymux.kit import migrate
from paymux.merchants.models import Mode
from paymux.runtime import Runtime

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
merchant_app = typer.Typer(help="Merchants.", no_args_is_help=True)
app_app = typer.Typer(help="Apps (one integration of a merchant) and their API keys.",
                      no_args_is_help=True)  # fmt: skip
channel_app = typer.Typer(help="Channel accounts of an app.", no_args_is_help=True)
webhook_app = typer.Typer(help="Webhook endpoints and deliveries.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(merchant_app, name="merchant")
app.add_typer(app_app, name="app")
app.add_typer(channel_app, name="channel")
app.add_typer(webhook_app, name="webhook")


# ------------------------------------------------------------------ processes
@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="API processes.")] = 1,
    with_worker: Annotated[bool, typer.Option(help="Also run the job worker in-process.")] = False,
) -> None:
    """Run the API (configure with PAYMUX_* environment variables)."""
    import sys

    load_settings()  # refuse bad configuration before starting
    if with_worker:
        os.environ["PAYMUX_RUN_WORKER"] = "1"
    # The serving process starts afresh, without the CLI's modules (paymux.server says why).
    args = [sys.executable, "-P", "-m", "paymux.server", host, str(port), str(workers)]
    os.execv(sys.executable, args)  # noqa: S606 — our own interpreter, fixed arguments


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="Run until nothing is due, then exit.")] = False,
) -> None:
    """Run background jobs: janitor queries, expiry, webhook deliveries, housekeeping."""
    from paymux.jobs.worker import Worker

    async def go(rt: Runtime) -> None:
        w = Worker(rt)
        if once:
            emit({"handled": await w.run_until_idle()})
        else:
            await w.run_forever()

    run(go)


@app.command()
def keygen() -> None:
    """Print a new random PAYMUX_MASTER_KEY."""
    typer.echo(base64.b64encode(secrets.token_bytes(32)).decode())


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Alembic revision to reach.")] = "head",
) -> None:
    """Apply migrations to PAYMUX_DATABASE_URL."""
    url = load_settings().database_url
    with progress(f"migrating the database to {revision}"):
        asyncio.run(migrate.upgrade(url, revision))
    note(f"database at {revision}")


# ------------------------------------------------------------------ administration
@merchant_app.command("create")
def merchant_create(
    name: Annotated[str, typer.Argument(help="The merchant's display name.")],
) -> None:
    """Create a merchant."""
    from paymux.merchants import service

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            m = await service.create_merchant(s, name=name)
            return {"id": m.id, "name": m.name}

    emit(run(go))


@merchant_app.command("list")
def merchant_list() -> None:
    """Every merchant (id and name)."""
    from paymux.merchants.repository import MerchantRepository

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        async with rt.db.read() as s:
            return [
                {"id": m.id, "name": m.name} for m in await MerchantRepository(s).list_merchants()
            ]

    emit(run(go))


@merchant_app.command("timezone")
def merchant_timezone(
    merchant: Annotated[str, typer.Argument(help="The merchant (mch_…).")],
    zone: Annotated[str, typer.Argument(help="An IANA zone (Europe/Berlin), or 'default'.")],
) -> None:
    """Set the time zone of MERCHANT's customer pages ('default': the platform's)."""
    from paymux.merchants import service

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            m = await service.update_merchant(
                s, merchant_id=merchant, timezone=None if zone == "default" else zone,
                clear_timezone=zone == "default",
            )  # fmt: skip
            return {"id": m.id, "name": m.name, "timezone": m.timezone}

    emit(run(go))


@app_app.command("create")
def app_create(
    merchant: Annotated[str, typer.Argument(help="The merchant (mch_…).")],
    name: Annotated[str, typer.Option(help="A name to tell the merchant's apps apart.")] = (
        "default"),
) -> None:  # fmt: skip
    """Create an app of MERCHANT."""
    from paymux.merchants import service

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            a = await service.create_app(s, merchant_id=merchant, name=name)
            return {"id": a.id, "merchant": a.merchant_id, "name": a.name}

    emit(run(go))


@app_app.command("list")
def app_list(
    merchant: Annotated[str | None, typer.Option(help="Only this merchant's apps (mch_…).")] = None,
) -> None:
    """Apps with their merchant and API keys (mode and a masked hint, never the key)."""
    from paymux.merchants.repository import MerchantRepository

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        async with rt.db.read() as s:
            repo = MerchantRepository(s)
            apps = await repo.list_apps(merchant)
            keys = {a.id: await repo.list_keys(a.id) for a in apps}
        return [
            {"id": a.id, "merchant": a.merchant_id, "name": a.name,
             "modes": sorted({k.mode for k in keys[a.id] if k.revoked_at is None}),
             "keys": [{"id": k.id, "mode": k.mode, "key": f"sk_{k.mode}_…{k.hint}",
                       "revoked": k.revoked_at is not None} for k in keys[a.id]],
             "created_at": a.created_at}
            for a in apps
        ]  # fmt: skip

    emit(run(go), columns=("id", "merchant", "name", "modes", "keys[].key", "created_at"))


@app_app.command("brand")
def app_brand(
    app_id: str,
    display_name: Annotated[
        str | None, typer.Option("--name", help="The name customers see ('' removes it).")
    ] = None,
    logo: Annotated[
        Path | None,
        typer.Option(help="A PNG, JPEG or WebP file of at most 100 KB.", dir_okay=False),
    ] = None,
    no_logo: Annotated[bool, typer.Option("--no-logo", help="Remove the logo.")] = False,
) -> None:
    """Set APP_ID's brand on the cashier and store-code pages: display name and logo."""
    from paymux.merchants import service

    content = logo.read_bytes() if logo is not None else None

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            a = await service.update_app(
                s, app_id=app_id, display_name=display_name or None,
                clear_display_name=display_name == "", logo=content, clear_logo=no_logo,
            )  # fmt: skip
            return {"id": a.id, "display_name": a.display_name, "logo": service.logo_path(a)}

    emit(run(go))


@app_app.command("key")
def app_key(
    app_id: str,
    mode: Annotated[Mode, typer.Option(help="test (sandbox channels only) or live.")] = Mode.test,
) -> None:
    """Issue an API key for APP_ID (shown once)."""
    from paymux.merchants import service

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            issued = await service.issue_key(s, app_id=app_id, mode=mode)
            return {"id": issued.key.id, "mode": mode.value, "secret": issued.secret}

    emit(run(go))


@channel_app.command("add")
def channel_add(
    app_id: str,
    channel: str,
    credentials: Annotated[Path, typer.Option(help="JSON file with the channel's credentials.")],
    mode: Annotated[Mode, typer.Option(help="test or live.")] = Mode.test,
    methods: Annotated[str | None, typer.Option(help="Comma-separated; default all.")] = None,
    fee_bps: Annotated[int, typer.Option(help="Fee in basis points (60 = 0.6%).")] = 0,
    priority: Annotated[int, typer.Option(help="Lower is tried first.")] = 100,
    name: Annotated[str, typer.Option(help="A label for listings.")] = "",
) -> None:
    """Configure CHANNEL for APP_ID; credentials are validated and encrypted at rest."""
    from paymux.channel_accounts import service

    try:
        creds = json.loads(credentials.read_text())
    except (OSError, ValueError) as exc:
        fail("parameter_invalid", f"cannot read credentials: {exc}")

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            acc = await service.add_account(
                s, rt.vault, app_id=app_id, channel=channel, mode=mode, credentials=creds,
                methods=methods.split(",") if methods else None, fee_rate_bps=fee_bps,
                priority=priority, name=name,
            )  # fmt: skip
            url = f"{rt.settings.public_url.rstrip('/')}/notify/{channel}/{acc.id}"
            return {"id": acc.id, "channel": channel, "methods": acc.methods, "notify_url": url}

    emit(run(go))


@channel_app.command("list")
def channel_list(app_id: str) -> None:
    """APP_ID's channel accounts: channel, mode, methods, enabled, priority, fee."""
    from paymux.channel_accounts.repository import ChannelAccountRepository

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        async with rt.db.read() as s:
            return [
                {"id": a.id, "channel": a.channel, "mode": a.mode, "methods": a.methods,
                 "enabled": a.enabled, "priority": a.priority, "fee_rate_bps": a.fee_rate_bps}
                for a in await ChannelAccountRepository(s).list_for_app(app_id)
            ]  # fmt: skip

    emit(run(go))


@channel_app.command("enable")
def channel_enable(
    account_id: str, off: Annotated[bool, typer.Option("--off", help="Disable it instead.")] = False
) -> None:
    """Enable (or with --off disable) a channel account."""
    from paymux.channel_accounts import service

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            acc = await service.update_account(s, account_id, enabled=not off)
            return {"id": acc.id, "enabled": acc.enabled}

    emit(run(go))


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

    emit(run(go))


@webhook_app.command("resend")
def webhook_resend(
    app_id: str,
    event_id: str,
    endpoint: Annotated[str | None, typer.Option(help="Only to this endpoint (we_…).")] = None,
) -> None:
    """Deliver EVENT_ID again (to every subscribed endpoint, or one)."""
    from paymux.webhooks import service

    async def go(rt: Runtime) -> Any:
        async with rt.db.transaction() as s:
            deliveries = await service.resend(
                s, app_id=app_id, event_id=event_id, endpoint_id=endpoint
            )
            return [{"id": d.id, "endpoint": d.endpoint_id, "status": d.status} for d in deliveries]

    emit(run(go))

"""The ``paymux`` command: demo, serve, worker, database and tenant administration, and the
operator's money commands (refunds, ledger, wallets, splits, escrow, settlement, payouts)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import secrets
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.config import Environment, Settings, get_settings
from paymux.kit import migrate
from paymux.kit.errors import InvalidRequest, NotFound, PaymuxError
from paymux.merchants.models import Mode
from paymux.runtime import Runtime

app = typer.Typer(help="paymux — self-hosted aggregated payment gateway", no_args_is_help=True)
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

console = Console()
T = TypeVar("T")


def main() -> None:
    app()


def _settings() -> Settings:
    """The configuration, or a clear message and exit code 2 when it is invalid."""
    try:
        return get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            console.print(
                f"[red]configuration error[/red] {error['msg'].removeprefix('Value error, ')}"
            )
        raise typer.Exit(2) from None


def _run(work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run ``work`` with a runtime; domain errors become a clear message and exit code 1."""

    async def go() -> T:
        rt = Runtime.build(_settings())
        try:
            return await work(rt)
        finally:
            await rt.aclose()

    try:
        return asyncio.run(go())
    except PaymuxError as exc:
        console.print(f"[red]error[/red] {exc.code}: {exc.message}")
        raise typer.Exit(1) from None


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
    """Gateway + worker + WeChat Pay and Alipay sandboxes + a demo merchant, on SQLite."""
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

    _settings()  # refuse bad configuration before forking
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

    _run(go)


@app.command()
def keygen() -> None:
    """Print a new random PAYMUX_MASTER_KEY."""
    typer.echo(base64.b64encode(secrets.token_bytes(32)).decode())


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations to PAYMUX_DATABASE_URL."""
    url = _settings().database_url
    asyncio.run(migrate.upgrade(url, revision))
    console.print(f"database at {revision}")


# ------------------------------------------------------------------ administration
def _print(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


@merchant_app.command("create")
def merchant_create(name: str) -> None:
    """Create a merchant."""
    from paymux.merchants import service

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            m = await service.create_merchant(s, name=name)
            return {"id": m.id, "name": m.name}

    _print(_run(go))


@merchant_app.command("list")
def merchant_list() -> None:
    from paymux.merchants.repository import MerchantRepository

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        async with rt.db.read() as s:
            return [
                {"id": m.id, "name": m.name} for m in await MerchantRepository(s).list_merchants()
            ]

    _print(_run(go))


@app_app.command("create")
def app_create(merchant: str, name: Annotated[str, typer.Option()] = "default") -> None:
    """Create an app of MERCHANT."""
    from paymux.merchants import service

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            a = await service.create_app(s, merchant_id=merchant, name=name)
            return {"id": a.id, "merchant": a.merchant_id, "name": a.name}

    _print(_run(go))


@app_app.command("key")
def app_key(app_id: str, mode: Annotated[Mode, typer.Option()] = Mode.test) -> None:
    """Issue an API key for APP_ID (shown once)."""
    from paymux.merchants import service

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            issued = await service.issue_key(s, app_id=app_id, mode=mode)
            return {"id": issued.key.id, "mode": mode.value, "secret": issued.secret}

    _print(_run(go))


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

    _print(_run(go))


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

    _print(_run(go))


@channel_app.command("enable")
def channel_enable(account_id: str, off: Annotated[bool, typer.Option("--off")] = False) -> None:
    """Enable (or with --off disable) a channel account."""
    from paymux.channels import service

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            acc = await service.update_account(s, account_id, enabled=not off)
            return {"id": acc.id, "enabled": acc.enabled}

    _print(_run(go))


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
        async with rt.db.transaction() as s:
            ep, secret = await service.create_endpoint(
                s, rt.vault, app_id=app_id, livemode=live, url=url, events=events.split(",")
            )
            return {"id": ep.id, "url": ep.url, "secret": secret}

    _print(_run(go))


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

    _print(_run(go))


# ------------------------------------------------------------------ money (operators)
refund_app = typer.Typer(help="Refunds of payments.", no_args_is_help=True)
ledger_app = typer.Typer(help="The double-entry ledger: books, accounts, balances.",
                         no_args_is_help=True)  # fmt: skip
wallet_app = typer.Typer(help="Wallets: balances, transfers, freezes, points.",
                         no_args_is_help=True)  # fmt: skip
split_app = typer.Typer(help="Profit sharing (分账).", no_args_is_help=True)
escrow_app = typer.Typer(help="Escrow (担保交易).", no_args_is_help=True)
settlement_app = typer.Typer(help="Settlement terms, runs and reports.", no_args_is_help=True)
payout_app = typer.Typer(help="Withdrawals (提现).", no_args_is_help=True)
for _group, _name in ((refund_app, "refund"), (ledger_app, "ledger"), (wallet_app, "wallet"),
                      (split_app, "split"), (escrow_app, "escrow"),
                      (settlement_app, "settlement"), (payout_app, "payout")):  # fmt: skip
    app.add_typer(_group, name=_name)

M = TypeVar("M", bound=BaseModel)
Live = Annotated[bool, typer.Option("--live", help="Live-mode objects (default: test mode).")]
Limit = Annotated[int, typer.Option(min=1, max=100, help="At most this many, newest first.")]
After = Annotated[str | None, typer.Option(help="Cursor: the last id of the previous page.")]
OutNo = Annotated[
    str | None, typer.Option(help="Your request number; repeating it is the same request "
                             "(default: a new one).")]  # fmt: skip


def _body(model: type[M], **fields: Any) -> M:
    """A request model from the command's options; invalid input is a clear message and exit
    code 1, before anything is touched."""
    try:
        return model(**fields)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "input"
            message = error["msg"].removeprefix("Value error, ")
            console.print(f"[red]error[/red] parameter_invalid: {where}: {message}")
        raise typer.Exit(1) from None


def _new_no(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def _page(rows: list[Any], has_more: bool) -> dict[str, Any]:
    """The API's list shape, so scripts read CLI and API output alike."""
    return {"object": "list", "data": rows, "has_more": has_more}


async def _find(session: AsyncSession, model: type[T], what: str, ident: str) -> T:
    """An object by id across tenants (the operator's view), or ``resource_missing``."""
    found = await session.get(model, ident)
    if found is None:
        raise NotFound(what, ident)
    return found


# -------------------------------------------------- refunds
@refund_app.command("create")
def refund_create(
    payment_id: str,
    amount: Annotated[int | None, typer.Option(
        help="Minor units; default everything still refundable.")] = None,
    reason: Annotated[str | None, typer.Option()] = None,
    out_refund_no: OutNo = None,
) -> None:  # fmt: skip
    """Refund a succeeded payment through the channel account that took the money."""
    from paymux.payments.models import Payment
    from paymux.refunds import service
    from paymux.refunds.schemas import RefundCreate, RefundOut

    req = _body(RefundCreate, payment=payment_id, amount=amount, reason=reason,
                out_refund_no=out_refund_no or _new_no("cli"))  # fmt: skip

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            payment = await _find(s, Payment, "payment", payment_id)
        refund = await service.create(rt, app_id=payment.app_id, livemode=payment.livemode,
                                      req=req)  # fmt: skip
        return RefundOut.of(refund).model_dump(mode="json")

    _print(_run(go))


@refund_app.command("show")
def refund_show(refund_id: str) -> None:
    from paymux.refunds.models import Refund
    from paymux.refunds.schemas import RefundOut

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            refund = await _find(s, Refund, "refund", refund_id)
            return RefundOut.of(refund).model_dump(mode="json")

    _print(_run(go))


@refund_app.command("list")
def refund_list(
    payment_id: str,
    status: Annotated[str | None, typer.Option(help="pending, succeeded or failed.")] = None,
    limit: Limit = 20,
    starting_after: After = None,
) -> None:
    """The refunds of a payment, newest first."""
    from paymux.payments.models import Payment
    from paymux.refunds.repository import RefundRepository
    from paymux.refunds.schemas import RefundOut

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            payment = await _find(s, Payment, "payment", payment_id)
            rows, more = await RefundRepository(s).search(
                payment.app_id, payment.livemode, payment_id=payment.id, status=status,
                limit=limit, starting_after=starting_after,
            )  # fmt: skip
            return _page([RefundOut.of(r).model_dump(mode="json") for r in rows], more)

    _print(_run(go))


# -------------------------------------------------- ledger
def _as_of(text: str | None) -> dt.datetime | None:
    """An ISO 8601 moment; without a zone it is UTC."""
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        console.print(f"[red]error[/red] parameter_invalid: as_of: not an ISO 8601 time: {text!r}")
        raise typer.Exit(1) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@ledger_app.command("trial-balance")
def ledger_trial_balance(
    currency: Annotated[str | None, typer.Option(help="Only this currency (or PTS).")] = None,
) -> None:
    """Σ debits and Σ credits of every posted entry per currency; exit code 1 if they differ."""
    from paymux.ledger.repository import LedgerRepository

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            totals = await LedgerRepository(s).totals_by_currency()
        return {
            "object": "trial_balance",
            "currencies": {c: {"debits": d, "credits": k, "balanced": d == k}
                           for c, (d, k) in sorted(totals.items())
                           if currency is None or c == currency},
        }  # fmt: skip

    report = _run(go)
    _print(report)
    broken = [c for c, t in report["currencies"].items() if not t["balanced"]]
    if broken:
        console.print(f"[red]error[/red] ledger_unbalanced: {', '.join(broken)}")
        raise typer.Exit(1)


@ledger_app.command("accounts")
def ledger_accounts(
    owner: Annotated[str, typer.Argument(help="wal_…, mch_…, chn_… or platform.")],
    live: Live = False,
) -> None:
    """The ledger accounts of an owner, with their ids and balances."""
    from paymux.ledger import chart
    from paymux.ledger.repository import LedgerRepository

    kinds = {"wal": "wallet", "mch": "merchant", "chn": "channel_account"}
    owner_type = "platform" if owner == "platform" else kinds.get(owner.partition("_")[0])
    if owner_type is None:
        console.print(f"[red]error[/red] parameter_invalid: owner: {owner!r} is not a wallet, "
                      "merchant, channel account or platform")  # fmt: skip
        raise typer.Exit(1)
    owner_id = {"platform": "live" if live else "test",
                "merchant": chart.mode_owner(owner, live)}.get(owner_type, owner)  # fmt: skip

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        async with rt.db.read() as s:
            accounts = await LedgerRepository(s).accounts_of(owner_type, owner_id)
        return [{"id": a.id, "purpose": a.purpose, "currency": a.currency, "normal": a.normal,
                 "balance": a.balance, "available": a.available} for a in accounts]  # fmt: skip

    _print(_run(go))


@ledger_app.command("account")
def ledger_account(
    account_id: str,
    as_of: Annotated[str | None, typer.Option(
        help="Also the posted balance at this moment (ISO 8601, UTC if no zone).")] = None,
) -> None:  # fmt: skip
    """One ledger account: balance, what holds reserve, and optionally a past balance."""
    from paymux.ledger import service
    from paymux.ledger.endpoints import AccountOut

    moment = _as_of(as_of)

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            a = await service.get_account(s, account_id)
            past = await service.balance_as_of(s, a.id, moment) if moment else None
        return AccountOut(
            id=a.id, owner_type=a.owner_type, owner_id=a.owner_id, purpose=a.purpose,
            currency=a.currency, normal=a.normal, balance=a.balance, available=a.available,
            pending_debits=a.pending_debits, pending_credits=a.pending_credits,
            version=a.version, balance_as_of=past,
        ).model_dump(mode="json")  # fmt: skip

    _print(_run(go))


@ledger_app.command("statement")
def ledger_statement(account_id: str, limit: Limit = 20, starting_after: After = None) -> None:
    """The account's posted entries, newest first (cursor: an entry id)."""
    from paymux.ledger import service
    from paymux.ledger.repository import LedgerRepository

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            await service.get_account(s, account_id)
            rows, more = await LedgerRepository(s).statement(
                [account_id], limit=limit, starting_after=starting_after
            )
        return _page([
            {"id": e.id, "transaction": tx.id, "side": e.side, "amount": e.amount,
             "currency": e.currency, "description": tx.description, "key": tx.key,
             "posted_at": tx.posted_at}
            for e, tx in rows
        ], more)  # fmt: skip

    _print(_run(go))


@ledger_app.command("balances")
def ledger_balances(
    merchant_id: str, currency: Annotated[str, typer.Option()] = "CNY", live: Live = False
) -> None:
    """A merchant's money: in escrow, pending settlement, available, held."""
    from paymux.merchants.repository import MerchantRepository
    from paymux.wallets import service

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            if await MerchantRepository(s).get_merchant(merchant_id) is None:
                raise NotFound("merchant", merchant_id)
            amounts = await service.merchant_balance(s, merchant_id, live, currency)
        return {"object": "balance", "merchant": merchant_id, "livemode": live,
                "currency": currency, **amounts}  # fmt: skip

    _print(_run(go))


# -------------------------------------------------- wallets
async def _wallet_out(session: AsyncSession, wallet: Any) -> dict[str, Any]:
    from paymux.wallets import service
    from paymux.wallets.schemas import WalletOut

    return WalletOut.of(wallet, await service.balances(session, wallet)).model_dump(mode="json")


@wallet_app.command("create")
def wallet_create(
    app_id: str,
    reference: Annotated[str, typer.Option(help="Your id of the owner (user or shop id).")],
    owner_type: Annotated[str, typer.Option(help="user or merchant.")] = "user",
    currency: Annotated[str, typer.Option()] = "CNY",
    level: Annotated[int, typer.Option(help="Verification level 0–2 (payout limits).")] = 0,
    live: Live = False,
) -> None:
    """Open a wallet for APP_ID."""
    from paymux.merchants.repository import MerchantRepository
    from paymux.wallets import service
    from paymux.wallets.schemas import WalletCreate

    body = _body(WalletCreate, reference=reference, owner_type=owner_type, currency=currency,
                 verification_level=level)  # fmt: skip

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            if await MerchantRepository(s).get_app(app_id) is None:
                raise NotFound("app", app_id)
            wallet = await service.create(s, app_id=app_id, livemode=live, body=body)
            return await _wallet_out(s, wallet)

    _print(_run(go))


@wallet_app.command("show")
def wallet_show(wallet_id: str) -> None:
    """A wallet with its balances: available, held, frozen, pending, points."""
    from paymux.wallets.models import Wallet

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:  # balances open missing sub-accounts
            return await _wallet_out(s, await _find(s, Wallet, "wallet", wallet_id))

    _print(_run(go))


@wallet_app.command("list")
def wallet_list(
    app_id: str,
    reference: Annotated[str | None, typer.Option()] = None,
    live: Live = False,
    limit: Limit = 20,
    starting_after: After = None,
) -> None:
    """The wallets of APP_ID, newest first."""
    from paymux.wallets import service

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            rows, more = await service.search(s, app_id, live, reference=reference, limit=limit,
                                              starting_after=starting_after)  # fmt: skip
            return _page([await _wallet_out(s, w) for w in rows], more)

    _print(_run(go))


@wallet_app.command("transfer")
def wallet_transfer(
    source: str,
    destination: str,
    amount: Annotated[int, typer.Option(help="Minor units.")],
    out_transfer_no: OutNo = None,
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Move money from SOURCE's available balance to DESTINATION (wallets of one app)."""
    from paymux.wallets import service
    from paymux.wallets.models import Wallet
    from paymux.wallets.schemas import TransferCreate

    body = _body(TransferCreate, source=source, destination=destination, amount=amount,
                 out_transfer_no=out_transfer_no or _new_no("cli"),
                 description=description)  # fmt: skip

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            wallet = await _find(s, Wallet, "wallet", source)
            out = await service.transfer(s, app_id=wallet.app_id, livemode=wallet.livemode,
                                         body=body)  # fmt: skip
            return out.model_dump(mode="json")

    _print(_run(go))


def _freeze(wallet_id: str, action: str, amount: int, out_request_no: str | None,
            reason: str) -> None:  # fmt: skip
    from paymux.wallets import service
    from paymux.wallets.models import Wallet
    from paymux.wallets.schemas import FreezeCreate

    body = _body(FreezeCreate, action=action, amount=amount, reason=reason,
                 out_request_no=out_request_no or _new_no("cli"))  # fmt: skip

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            wallet = await _find(s, Wallet, "wallet", wallet_id)
            await service.freeze(s, wallet, body)
            return await _wallet_out(s, wallet)

    _print(_run(go))


@wallet_app.command("freeze")
def wallet_freeze(
    wallet_id: str, amount: Annotated[int, typer.Option(help="Minor units.")],
    out_request_no: OutNo = None, reason: Annotated[str, typer.Option()] = "",
) -> None:  # fmt: skip
    """Move money from available to frozen (e.g. during a dispute)."""
    _freeze(wallet_id, "freeze", amount, out_request_no, reason)


@wallet_app.command("unfreeze")
def wallet_unfreeze(
    wallet_id: str, amount: Annotated[int, typer.Option(help="Minor units.")],
    out_request_no: OutNo = None, reason: Annotated[str, typer.Option()] = "",
) -> None:  # fmt: skip
    """Move frozen money back to available."""
    _freeze(wallet_id, "unfreeze", amount, out_request_no, reason)


@wallet_app.command("points")
def wallet_points(
    wallet_id: str,
    action: Annotated[str, typer.Argument(help="grant or redeem.")],
    points: Annotated[int, typer.Argument(help="How many points.")],
    out_request_no: OutNo = None,
    reason: Annotated[str, typer.Option()] = "",
) -> None:
    """Grant or redeem loyalty points (unit PTS, never mixed with money)."""
    from paymux.wallets import service
    from paymux.wallets.models import Wallet
    from paymux.wallets.schemas import PointsCreate

    body = _body(PointsCreate, action=action, points=points, reason=reason,
                 out_request_no=out_request_no or _new_no("cli"))  # fmt: skip

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            wallet = await _find(s, Wallet, "wallet", wallet_id)
            await service.points(s, wallet, body)
            return await _wallet_out(s, wallet)

    _print(_run(go))


@wallet_app.command("level")
def wallet_level(
    wallet_id: str, level: Annotated[int, typer.Argument(help="Verification level 0–2.")]
) -> None:
    """Set the wallet's verification level (it sets the withdrawal limits)."""
    from paymux.wallets.models import Wallet
    from paymux.wallets.schemas import WalletUpdate

    body = _body(WalletUpdate, verification_level=level)

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            wallet = await _find(s, Wallet, "wallet", wallet_id)
            wallet.verification_level = body.verification_level
            return await _wallet_out(s, wallet)

    _print(_run(go))


@wallet_app.command("statement")
def wallet_statement(wallet_id: str, limit: Limit = 20, starting_after: After = None) -> None:
    """The wallet's statement (流水), newest first (cursor: a line id)."""
    from paymux.wallets import service
    from paymux.wallets.models import Wallet

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            wallet = await _find(s, Wallet, "wallet", wallet_id)
            lines, more = await service.statement(s, wallet, limit=limit,
                                                  starting_after=starting_after)  # fmt: skip
            return _page([line.model_dump(mode="json") for line in lines], more)

    _print(_run(go))


# -------------------------------------------------- splits and escrow
def _receiver(text: str) -> dict[str, Any]:
    """``wal_…=500`` (a fixed amount in minor units) or ``wal_…=12.5%`` (of the base)."""
    wallet, _, share = text.partition("=")
    try:
        if share.endswith("%"):
            bps = Decimal(share[:-1]) * 100
            if bps != bps.to_integral_value():
                raise InvalidOperation
            return {"wallet": wallet, "percent_bps": int(bps)}
        return {"wallet": wallet, "amount": int(share, 10)}
    except (InvalidOperation, ValueError):
        console.print(f"[red]error[/red] parameter_invalid: receiver: {text!r} is not "
                      "WALLET=AMOUNT or WALLET=PERCENT% (at most two decimals)")  # fmt: skip
        raise typer.Exit(1) from None


def _split_out(split: Any, parts: list[Any]) -> dict[str, Any]:
    from paymux.splits.schemas import SplitOut

    return SplitOut.of(split, parts).model_dump(mode="json")


@split_app.command("create")
def split_create(
    payment_id: str,
    receiver: Annotated[list[str] | None, typer.Option(
        help="WALLET=AMOUNT (minor units) or WALLET=PERCENT%; repeat for each receiver.")] = None,
    commission_bps: Annotated[int, typer.Option(help="Platform commission, basis points.")] = 0,
    commission_amount: Annotated[int, typer.Option(help="Fixed commission, minor units.")] = 0,
    trigger: Annotated[str, typer.Option(help="realtime, on_release or manual.")] = "realtime",
    spec: Annotated[Path | None, typer.Option(
        help="JSON file with the whole split (as in POST /v1/splits, without payment); "
             "for receivers at the channel.")] = None,
) -> None:  # fmt: skip
    """Declare a split of a payment; it runs at once when its trigger has passed."""
    from paymux.payments.models import Payment
    from paymux.splits import service
    from paymux.splits.schemas import SplitSpec

    if spec is not None:
        try:
            fields = json.loads(spec.read_text())
        except (OSError, ValueError) as exc:
            console.print(f"[red]error[/red] cannot read split spec: {exc}")
            raise typer.Exit(1) from None
    else:
        fields = {"trigger": trigger, "commission_bps": commission_bps,
                  "commission_amount": commission_amount,
                  "receivers": [_receiver(r) for r in receiver or []]}  # fmt: skip
    if not isinstance(fields, dict):
        console.print("[red]error[/red] parameter_invalid: the split spec is not a JSON object")
        raise typer.Exit(1)
    body = _body(SplitSpec, **fields)

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            found = await _find(s, Payment, "payment", payment_id)
            payment = await service.payment_for(s, found.app_id, found.livemode, found.id)
            split, parts = await service.declare(s, payment, body)
            return _split_out(split, parts)

    _print(_run(go))


@split_app.command("show")
def split_show(split_id: str) -> None:
    from paymux.splits.models import Split
    from paymux.splits.repository import SplitRepository

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            split = await _find(s, Split, "split", split_id)
            return _split_out(split, await SplitRepository(s).parts(split.id))

    _print(_run(go))


@split_app.command("list")
def split_list(payment_id: str) -> None:
    """The splits of a payment, newest first."""
    from paymux.payments.models import Payment
    from paymux.splits.repository import SplitRepository

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            payment = await _find(s, Payment, "payment", payment_id)
            repo = SplitRepository(s)
            rows, more = await repo.search(
                payment.app_id,
                payment.livemode,
                payment_id=payment.id,
                limit=100,
                starting_after=None,
            )
            return _page([_split_out(x, await repo.parts(x.id)) for x in rows], more)

    _print(_run(go))


@split_app.command("execute")
def split_execute(split_id: str) -> None:
    """Run a ``manual`` (or any still scheduled) split now."""
    from paymux.splits import service
    from paymux.splits.models import Split
    from paymux.splits.repository import SplitRepository

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            found = await _find(s, Split, "split", split_id)
            payment = await service.payment_for(s, found.app_id, found.livemode, found.payment_id)
            split = await SplitRepository(s).lock(found.id)
            assert split is not None
            await service.execute(s, split, payment)
            return _split_out(split, await SplitRepository(s).parts(split.id))

    _print(_run(go))


@escrow_app.command("release")
def escrow_release(
    payment_id: str,
    by: Annotated[str, typer.Option(help="platform (e.g. after appraisal) or buyer.")] = "platform",
) -> None:
    """Release a payment's escrow to the merchant; its settlement clock starts."""
    from paymux.escrow import service
    from paymux.funds.schemas import FundsOut
    from paymux.payments.models import Payment

    if by not in ("platform", "buyer"):
        console.print(f"[red]error[/red] parameter_invalid: by: {by!r} is not platform or buyer")
        raise typer.Exit(1)

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            await _find(s, Payment, "payment", payment_id)
            return FundsOut.of(await service.release(s, payment_id, by=by)).model_dump(mode="json")

    _print(_run(go))


# -------------------------------------------------- settlement
@settlement_app.command("config")
def settlement_config(
    merchant_id: str,
    cycle: Annotated[str | None, typer.Option(help="T0, T1, TN or weekly.")] = None,
    days: Annotated[int | None, typer.Option(help="N of T+N.")] = None,
    weekday: Annotated[int | None, typer.Option(help="0 = Monday (weekly cycle).")] = None,
    fee_bps: Annotated[int | None, typer.Option(help="Basis points (60 = 0.6%).")] = None,
    fee_fixed: Annotated[int | None, typer.Option(help="Minor units per payment.")] = None,
    fee_min: Annotated[int | None, typer.Option(help="Minor units.")] = None,
    fee_max: Annotated[int | None, typer.Option(help="Minor units; -1 for none.")] = None,
) -> None:
    """Show a merchant's settlement terms, or change the ones given (the rest stay)."""
    from paymux.merchants.repository import MerchantRepository
    from paymux.settlement import service
    from paymux.settlement.schemas import SettlementConfigIn, SettlementConfigOut

    changes: dict[str, Any] = {k: v for k, v in {"cycle": cycle, "days": days, "weekday": weekday,
               "fee_bps": fee_bps, "fee_fixed": fee_fixed, "fee_min": fee_min,
               "fee_max": fee_max}.items() if v is not None}  # fmt: skip
    if changes.get("fee_max") == -1:
        changes["fee_max"] = None

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            if await MerchantRepository(s).get_merchant(merchant_id) is None:
                raise NotFound("merchant", merchant_id)
            config = await service.config_of(s, merchant_id)
            if changes:
                now = SettlementConfigOut.of(config).model_dump(exclude={"merchant_id"})
                try:
                    body = SettlementConfigIn(**(now | changes))
                except ValidationError as exc:
                    raise InvalidRequest("parameter_invalid", str(exc.errors()[0]["msg"]).
                                         removeprefix("Value error, ")) from None  # fmt: skip
                config = await service.configure(s, merchant_id, body)
            return SettlementConfigOut.of(config).model_dump(mode="json")

    _print(_run(go))


@settlement_app.command("run")
def settlement_run() -> None:
    """Settle every payment that is due now (what the worker does on its schedule)."""
    from paymux.settlement import service
    from paymux.settlement.schemas import SettlementOut

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        async with rt.db.transaction() as s:
            batches = await service.settle_due(s)
            return [SettlementOut.of(b).model_dump(mode="json") for b in batches]

    _print(_run(go))


@settlement_app.command("list")
def settlement_list(
    merchant_id: str, live: Live = False, limit: Limit = 20, starting_after: After = None
) -> None:
    """A merchant's settlement batches, newest first."""
    from paymux.settlement.repository import SettlementRepository
    from paymux.settlement.schemas import SettlementOut

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            rows, more = await SettlementRepository(s).search(
                merchant_id, live, limit=limit, starting_after=starting_after
            )
            return _page([SettlementOut.of(b).model_dump(mode="json") for b in rows], more)

    _print(_run(go))


@settlement_app.command("show")
def settlement_show(settlement_id: str) -> None:
    from paymux.settlement.models import Settlement
    from paymux.settlement.schemas import SettlementOut

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            batch = await _find(s, Settlement, "settlement", settlement_id)
            return SettlementOut.of(batch).model_dump(mode="json")

    _print(_run(go))


@settlement_app.command("report")
def settlement_report(
    settlement_id: str,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="Write the CSV here.")] = None,
) -> None:  # fmt: skip
    """The batch's CSV report: one line per payment and a total line."""
    from paymux.settlement import service
    from paymux.settlement.models import Settlement

    async def go(rt: Runtime) -> str:
        async with rt.db.read() as s:
            batch = await _find(s, Settlement, "settlement", settlement_id)
            return await service.report_csv(s, batch)

    text = _run(go)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        console.print(f"[red]error[/red] cannot write the report: {exc}")
        raise typer.Exit(1) from None
    console.print(f"wrote {output}")


# -------------------------------------------------- payouts
@payout_app.command("create")
def payout_create(
    app_id: str,
    amount: Annotated[int, typer.Option(help="Minor units.")],
    to: Annotated[str, typer.Option(help="The payee's account (login id, user id, openid).")],
    to_type: Annotated[str, typer.Option(help="alipay_login_id, alipay_user_id, "
                                         "alipay_open_id or wechat_openid.")],
    source: Annotated[str, typer.Option(
        help="merchant (its available balance) or a wallet id.")] = "merchant",
    name: Annotated[str | None, typer.Option(help="The payee's real name.")] = None,
    speed: Annotated[str, typer.Option(help="standard (next day's batch) or express.")] = (
        "standard"
    ),
    currency: Annotated[str, typer.Option()] = "CNY",
    out_payout_no: OutNo = None,
    live: Live = False,
) -> None:  # fmt: skip
    """Withdraw from APP_ID's merchant balance or one of its wallets; express is sent now."""
    from paymux.merchants.repository import MerchantRepository
    from paymux.payouts import service
    from paymux.payouts.models import Payout
    from paymux.payouts.schemas import PayoutCreate, PayoutOut

    body = _body(PayoutCreate, source=source, amount=amount, currency=currency, speed=speed,
                 destination={"type": to_type, "account": to, "name": name},
                 out_payout_no=out_payout_no or _new_no("cli"))  # fmt: skip

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            application = await MerchantRepository(s).get_app(app_id)
            if application is None:
                raise NotFound("app", app_id)
            payout, created = await service.create(
                s, app_id=app_id, merchant_id=application.merchant_id, livemode=live, body=body
            )
        if created and payout.speed == "express":
            await service.send(rt, payout.id)
        async with rt.db.read() as s:
            return PayoutOut.of(await _find(s, Payout, "payout", payout.id)).model_dump(
                mode="json")  # fmt: skip

    _print(_run(go))


@payout_app.command("show")
def payout_show(payout_id: str) -> None:
    from paymux.payouts.models import Payout
    from paymux.payouts.schemas import PayoutOut

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            return PayoutOut.of(await _find(s, Payout, "payout", payout_id)).model_dump(
                mode="json")  # fmt: skip

    _print(_run(go))


@payout_app.command("list")
def payout_list(
    app_id: str, live: Live = False, limit: Limit = 20, starting_after: After = None
) -> None:
    """APP_ID's payouts, newest first."""
    from paymux.payouts.repository import PayoutRepository
    from paymux.payouts.schemas import PayoutOut

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            rows, more = await PayoutRepository(s).search(
                app_id, live, limit=limit, starting_after=starting_after
            )
            return _page([PayoutOut.of(p).model_dump(mode="json") for p in rows], more)

    _print(_run(go))


@payout_app.command("run")
def payout_run() -> None:
    """Send the payouts that are due (the standard batch) and ask about those in flight."""
    from paymux.payouts import tasks

    async def go(rt: Runtime) -> dict[str, Any]:
        return {"handled": await tasks.send_due(rt)}

    _print(_run(go))

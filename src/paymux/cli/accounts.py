"""The operator's ledger and wallet commands: books, accounts, balances, statements."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.cli.common import (
    After,
    Limit,
    Live,
    OutNo,
    find_object,
    new_request_no,
    page_of,
    parse_body,
    run,
)
from paymux.cli.output import emit, fail
from paymux.kit.errors import NotFound
from paymux.runtime import Runtime

ledger_app = typer.Typer(help="The double-entry ledger: books, accounts, balances.",
                         no_args_is_help=True)  # fmt: skip
wallet_app = typer.Typer(help="Wallets: balances, transfers, freezes, points.",
                         no_args_is_help=True)  # fmt: skip


# -------------------------------------------------- ledger
def _as_of(text: str | None) -> dt.datetime | None:
    """An ISO 8601 moment; without a zone it is UTC."""
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        fail("parameter_invalid", f"as_of: not an ISO 8601 time: {text!r}")
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

    report = run(go)
    emit(report)
    broken = [c for c, t in report["currencies"].items() if not t["balanced"]]
    if broken:
        fail("ledger_unbalanced", f"{', '.join(broken)}")


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
        fail("parameter_invalid", f"owner: {owner!r} is not a wallet, "
                      "merchant, channel account or platform")  # fmt: skip
    owner_id = {"platform": "live" if live else "test",
                "merchant": chart.mode_owner(owner, live)}.get(owner_type, owner)  # fmt: skip

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        async with rt.db.read() as s:
            accounts = await LedgerRepository(s).accounts_of(owner_type, owner_id)
        return [{"id": a.id, "purpose": a.purpose, "currency": a.currency, "normal": a.normal,
                 "balance": a.balance, "available": a.available} for a in accounts]  # fmt: skip

    emit(run(go))


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

    emit(run(go))


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
        return page_of([
            {"id": e.id, "transaction": tx.id, "side": e.side, "amount": e.amount,
             "currency": e.currency, "description": tx.description, "key": tx.key,
             "posted_at": tx.posted_at}
            for e, tx in rows
        ], more)  # fmt: skip

    emit(run(go))


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

    emit(run(go))


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

    body = parse_body(WalletCreate, reference=reference, owner_type=owner_type, currency=currency,
                 verification_level=level)  # fmt: skip

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            if await MerchantRepository(s).get_app(app_id) is None:
                raise NotFound("app", app_id)
            wallet = await service.create(s, app_id=app_id, livemode=live, body=body)
            return await _wallet_out(s, wallet)

    emit(run(go))


@wallet_app.command("show")
def wallet_show(wallet_id: str) -> None:
    """A wallet with its balances: available, held, frozen, pending, points."""
    from paymux.wallets.models import Wallet

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:  # balances open missing sub-accounts
            return await _wallet_out(s, await find_object(s, Wallet, "wallet", wallet_id))

    emit(run(go))


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
            return page_of([await _wallet_out(s, w) for w in rows], more)

    emit(run(go))


@wallet_app.command("transfer")
def wallet_transfer(
    source: str,
    destination: str,
    amount: Annotated[int, typer.Option(help="Minor units.")],
    out_transfer_no: OutNo = None,
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Move money from SOURCE's available balance to DESTINATION (wallets of one app)."""
    from paymux.merchants.models import App
    from paymux.wallets import service
    from paymux.wallets.models import Wallet
    from paymux.wallets.schemas import TransferCreate

    body = parse_body(TransferCreate, source=source, destination=destination, amount=amount,
                 out_transfer_no=out_transfer_no or new_request_no("cli"),
                 description=description)  # fmt: skip

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            wallet = await find_object(s, Wallet, "wallet", source)
            app = await s.get(App, wallet.app_id)
            assert app is not None
            out = await service.transfer(s, app_id=wallet.app_id, livemode=wallet.livemode,
                                         body=body, merchant_id=app.merchant_id)  # fmt: skip
            return out.model_dump(mode="json")

    emit(run(go))


def _freeze(wallet_id: str, action: str, amount: int, out_request_no: str | None,
            reason: str) -> None:  # fmt: skip
    from paymux.wallets import service
    from paymux.wallets.models import Wallet
    from paymux.wallets.schemas import FreezeCreate

    body = parse_body(FreezeCreate, action=action, amount=amount, reason=reason,
                 out_request_no=out_request_no or new_request_no("cli"))  # fmt: skip

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            wallet = await find_object(s, Wallet, "wallet", wallet_id)
            await service.freeze(s, wallet, body)
            return await _wallet_out(s, wallet)

    emit(run(go))


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

    body = parse_body(PointsCreate, action=action, points=points, reason=reason,
                 out_request_no=out_request_no or new_request_no("cli"))  # fmt: skip

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            wallet = await find_object(s, Wallet, "wallet", wallet_id)
            await service.points(s, wallet, body)
            return await _wallet_out(s, wallet)

    emit(run(go))


@wallet_app.command("level")
def wallet_level(
    wallet_id: str, level: Annotated[int, typer.Argument(help="Verification level 0–2.")]
) -> None:
    """Set the wallet's verification level (it sets the withdrawal limits)."""
    from paymux.wallets.models import Wallet
    from paymux.wallets.schemas import WalletUpdate

    body = parse_body(WalletUpdate, verification_level=level)

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            wallet = await find_object(s, Wallet, "wallet", wallet_id)
            wallet.verification_level = body.verification_level
            return await _wallet_out(s, wallet)

    emit(run(go))


@wallet_app.command("statement")
def wallet_statement(wallet_id: str, limit: Limit = 20, starting_after: After = None) -> None:
    """The wallet's statement (流水), newest first (cursor: a line id)."""
    from paymux.wallets import service
    from paymux.wallets.models import Wallet

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            wallet = await find_object(s, Wallet, "wallet", wallet_id)
            lines, more = await service.statement(s, wallet, limit=limit,
                                                  starting_after=starting_after)  # fmt: skip
            return page_of([line.model_dump(mode="json") for line in lines], more)

    emit(run(go))

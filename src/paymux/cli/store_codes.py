"""``paymux store-codes …``: an app's static store codes (码牌) — create one and list them (the
printable QR is ``GET /v1/store_codes/{id}/qr.svg`` or ``qr.png``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from paymux.cli.common import After, Limit, Live, page_of, parse_body, run
from paymux.cli.output import emit
from paymux.runtime import Runtime

store_code_app = typer.Typer(help="Static store codes (码牌): create, list.", no_args_is_help=True)
LIST_COLUMNS = ("id", "name", "store_id", "amount", "currency", "active", "url")
AppOpt = Annotated[str, typer.Option("--app", help="The app (app_…).")]


@store_code_app.command("create")
def store_code_create(
    app_id: AppOpt,
    name: Annotated[str, typer.Argument(help="Shown to the customer; the payments' subject.")],
    store_id: Annotated[str, typer.Option("--store-id", help="Your id of the store.")],
    amount: Annotated[
        int | None, typer.Option(help="A fixed amount in minor units (default: the customer's).")
    ] = None,
    currency: Annotated[str, typer.Option(help="ISO currency.")] = "CNY",
    live: Live = False,
) -> None:
    """A new store code of an app; prints it with the URL its QR encodes."""
    from paymux.kit.errors import NotFound
    from paymux.merchants.repository import MerchantRepository
    from paymux.store_codes import service
    from paymux.store_codes.schemas import StoreCodeCreate, StoreCodeOut

    body = parse_body(StoreCodeCreate, name=name, store_id=store_id, amount=amount,
                      currency=currency)  # fmt: skip

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            if await MerchantRepository(s).get_app(app_id) is None:
                raise NotFound("app", app_id)
            code = await service.create(
                s, app_id=app_id, livemode=live, name=body.name, store_id=body.store_id,
                amount=body.amount, currency=body.currency, active=body.active,
            )  # fmt: skip
            return StoreCodeOut.of(code, public_url=rt.settings.public_url).model_dump(mode="json")

    emit(run(go))


@store_code_app.command("list")
def store_code_list(
    app_id: AppOpt, live: Live = False, limit: Limit = 20, starting_after: After = None
) -> None:
    """An app's store codes, newest first."""
    from paymux.store_codes.repository import StoreCodeRepository
    from paymux.store_codes.schemas import StoreCodeOut

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            rows, more = await StoreCodeRepository(s).list(
                app_id, live, limit=limit, starting_after=starting_after
            )
        url = rt.settings.public_url
        return page_of([StoreCodeOut.of(c, public_url=url).model_dump(mode="json") for c in rows],
                       more)  # fmt: skip

    emit(run(go), columns=LIST_COLUMNS)

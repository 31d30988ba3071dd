"""The operator's money commands: refunds, splits, escrow, settlement, payouts."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

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
from paymux.cli.output import emit, fail, note, progress
from paymux.kit.errors import InvalidRequest, NotFound
from paymux.runtime import Runtime

refund_app = typer.Typer(help="Refunds of payments.", no_args_is_help=True)
split_app = typer.Typer(help="Profit sharing (分账).", no_args_is_help=True)
escrow_app = typer.Typer(help="Escrow (担保交易).", no_args_is_help=True)
settlement_app = typer.Typer(help="Settlement terms, runs and reports.", no_args_is_help=True)
payout_app = typer.Typer(help="Withdrawals (提现).", no_args_is_help=True)


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

    req = parse_body(RefundCreate, payment=payment_id, amount=amount, reason=reason,
                out_refund_no=out_refund_no or new_request_no("cli"))  # fmt: skip

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            payment = await find_object(s, Payment, "payment", payment_id)
        refund = await service.create(rt, app_id=payment.app_id, livemode=payment.livemode,
                                      req=req)  # fmt: skip
        return RefundOut.of(refund).model_dump(mode="json")

    emit(run(go))


@refund_app.command("show")
def refund_show(refund_id: str) -> None:
    """One refund: amount, status, the channel's refund number."""
    from paymux.refunds.models import Refund
    from paymux.refunds.schemas import RefundOut

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            refund = await find_object(s, Refund, "refund", refund_id)
            return RefundOut.of(refund).model_dump(mode="json")

    emit(run(go))


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
            payment = await find_object(s, Payment, "payment", payment_id)
            rows, more = await RefundRepository(s).search(
                payment.app_id, payment.livemode, payment_id=payment.id, status=status,
                limit=limit, starting_after=starting_after,
            )  # fmt: skip
            return page_of([RefundOut.of(r).model_dump(mode="json") for r in rows], more)

    emit(run(go))


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
        fail("parameter_invalid", f"receiver: {text!r} is not "
                      "WALLET=AMOUNT or WALLET=PERCENT% (at most two decimals)")  # fmt: skip


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
            fail("parameter_invalid", f"cannot read split spec: {exc}")
    else:
        fields = {"trigger": trigger, "commission_bps": commission_bps,
                  "commission_amount": commission_amount,
                  "receivers": [_receiver(r) for r in receiver or []]}  # fmt: skip
    if not isinstance(fields, dict):
        fail("parameter_invalid", "the split spec is not a JSON object")
    body = parse_body(SplitSpec, **fields)

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            found = await find_object(s, Payment, "payment", payment_id)
            payment = await service.payment_for(s, found.app_id, found.livemode, found.id)
            split, parts = await service.declare(s, payment, body)
            return _split_out(split, parts)

    emit(run(go))


@split_app.command("show")
def split_show(split_id: str) -> None:
    """One split with its parts (receiver, amount, status)."""
    from paymux.splits.models import Split
    from paymux.splits.repository import SplitRepository

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            split = await find_object(s, Split, "split", split_id)
            return _split_out(split, await SplitRepository(s).parts(split.id))

    emit(run(go))


@split_app.command("list")
def split_list(payment_id: str) -> None:
    """The splits of a payment, newest first."""
    from paymux.payments.models import Payment
    from paymux.splits.repository import SplitRepository

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            payment = await find_object(s, Payment, "payment", payment_id)
            repo = SplitRepository(s)
            rows, more = await repo.search(
                payment.app_id,
                payment.livemode,
                payment_id=payment.id,
                limit=100,
                starting_after=None,
            )
            return page_of([_split_out(x, await repo.parts(x.id)) for x in rows], more)

    emit(run(go))


@split_app.command("execute")
def split_execute(split_id: str) -> None:
    """Run a ``manual`` (or any still scheduled) split now."""
    from paymux.splits import service
    from paymux.splits.models import Split
    from paymux.splits.repository import SplitRepository

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            found = await find_object(s, Split, "split", split_id)
            payment = await service.payment_for(s, found.app_id, found.livemode, found.payment_id)
            split = await SplitRepository(s).lock(found.id)
            assert split is not None
            await service.execute(s, split, payment)
            return _split_out(split, await SplitRepository(s).parts(split.id))

    emit(run(go))


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
        fail("parameter_invalid", f"by: {by!r} is not platform or buyer")

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as s:
            await find_object(s, Payment, "payment", payment_id)
            return FundsOut.of(await service.release(s, payment_id, by=by)).model_dump(mode="json")

    emit(run(go))


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

    emit(run(go))


@settlement_app.command("run")
def settlement_run() -> None:
    """Settle every payment that is due now (what the worker does on its schedule)."""
    from paymux.settlement import service
    from paymux.settlement.schemas import SettlementOut

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        async with rt.db.transaction() as s:
            batches = await service.settle_due(s)
            return [SettlementOut.of(b).model_dump(mode="json") for b in batches]

    with progress("settling the payments that are due"):
        batches = run(go)
    emit(batches)


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
            return page_of([SettlementOut.of(b).model_dump(mode="json") for b in rows], more)

    emit(run(go))


@settlement_app.command("show")
def settlement_show(settlement_id: str) -> None:
    """One settlement batch: gross, fees, net and its payments' count."""
    from paymux.settlement.models import Settlement
    from paymux.settlement.schemas import SettlementOut

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            batch = await find_object(s, Settlement, "settlement", settlement_id)
            return SettlementOut.of(batch).model_dump(mode="json")

    emit(run(go))


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
            batch = await find_object(s, Settlement, "settlement", settlement_id)
            return await service.report_csv(s, batch)

    with progress("exporting the settlement report"):
        text = run(go)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail("io_error", f"cannot write the report: {exc}")
    note(f"wrote {output}")


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

    body = parse_body(PayoutCreate, source=source, amount=amount, currency=currency, speed=speed,
                 destination={"type": to_type, "account": to, "name": name},
                 out_payout_no=out_payout_no or new_request_no("cli"))  # fmt: skip

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
            return PayoutOut.of(await find_object(s, Payout, "payout", payout.id)).model_dump(
                mode="json")  # fmt: skip

    emit(run(go))


@payout_app.command("show")
def payout_show(payout_id: str) -> None:
    """One payout (withdrawal): amount, destination, status at the channel."""
    from paymux.payouts.models import Payout
    from paymux.payouts.schemas import PayoutOut

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            return PayoutOut.of(await find_object(s, Payout, "payout", payout_id)).model_dump(
                mode="json")  # fmt: skip

    emit(run(go))


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
            return page_of([PayoutOut.of(p).model_dump(mode="json") for p in rows], more)

    emit(run(go))


@payout_app.command("run")
def payout_run() -> None:
    """Send the payouts that are due (the standard batch) and ask about those in flight."""
    from paymux.payouts import tasks

    async def go(rt: Runtime) -> dict[str, Any]:
        return {"handled": await tasks.send_due(rt)}

    with progress("sending due payouts"):
        handled = run(go)
    emit(handled)

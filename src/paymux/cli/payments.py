"""``paymux payment …``: the operator's view of payments — list, show (attempts and events) and
close (the API's close path: the channel is called outside any transaction)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from paymux.cli.common import After, Limit, find_object, run
from paymux.cli.output import emit
from paymux.merchants.models import Mode
from paymux.payments.states import PaymentStatus
from paymux.runtime import Runtime

payment_app = typer.Typer(help="Payments: list, inspect, close.", no_args_is_help=True)
LIST_COLUMNS = ("id", "status", "amount", "currency", "method", "channel", "out_trade_no",
                "created_at")  # fmt: skip


@payment_app.command("list")
def payment_list(
    app_id: Annotated[str, typer.Option("--app", help="The app (app_…).")],
    status: Annotated[PaymentStatus | None, typer.Option(help="Only payments in this status.")]
    = None,
    mode: Annotated[Mode, typer.Option(help="test or live payments.")] = Mode.test,
    out_trade_no: Annotated[str | None, typer.Option(help="Your order number.")] = None,
    limit: Limit = 20,
    starting_after: After = None,
) -> None:  # fmt: skip
    """An app's payments, newest first (the API's list, filtered)."""
    from paymux.payments.repository import PaymentRepository
    from paymux.payments.schemas import PaymentFilters, PaymentOut

    filters = PaymentFilters(out_trade_no=out_trade_no, status=status)

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            rows, more = await PaymentRepository(s).search(
                app_id, mode == Mode.live, filters, limit=limit, starting_after=starting_after
            )
        public_url = rt.settings.public_url
        return {"object": "list", "has_more": more,
                "data": [PaymentOut.of(p, public_url=public_url).model_dump(mode="json")
                         for p in rows]}  # fmt: skip

    emit(run(go), columns=LIST_COLUMNS)


@payment_app.command("show")
def payment_show(payment_id: str) -> None:
    """One payment with its channel attempts (routing decision included) and its events."""
    from paymux.payments.models import Payment
    from paymux.payments.repository import PaymentRepository
    from paymux.payments.schemas import AttemptOut, PaymentOut
    from paymux.webhooks.repository import WebhookRepository

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            payment = await find_object(s, Payment, "payment", payment_id)
            attempts = await PaymentRepository(s).attempts_of(payment.id)
            events = await WebhookRepository(s).events_about(
                payment.app_id, payment.livemode, payment.id
            )
        out = PaymentOut.of(payment, public_url=rt.settings.public_url)
        out.attempts = [AttemptOut.of(a) for a in attempts]
        shown = out.model_dump(mode="json")
        shown["events"] = [{"id": e.id, "type": e.type, "created_at": e.created_at.isoformat(),
                            "status": e.data.get("status")} for e in events]  # fmt: skip
        return shown

    emit(run(go))


@payment_app.command("close")
def payment_close(payment_id: str) -> None:
    """Close an unpaid payment at the channel and here, as ``POST /v1/payments/{id}/close``
    does; closing a closed payment changes nothing."""
    from paymux.payments import lifecycle
    from paymux.payments.models import Payment
    from paymux.payments.schemas import PaymentOut

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as s:
            found = await find_object(s, Payment, "payment", payment_id)
        # The session is closed: the channel call happens outside any transaction.
        closed = await lifecycle.close(
            rt, app_id=found.app_id, livemode=found.livemode, payment_id=found.id
        )
        return PaymentOut.of(closed, public_url=rt.settings.public_url).model_dump(mode="json")

    emit(run(go))

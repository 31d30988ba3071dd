"""``/pay/<payment id>``: the minimal hosted payment page — QR code or redirect, live status,
and the final screen. Reached by the payment's unguessable id; shows nothing secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import segno
from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from paymux.kit import money
from paymux.kit.errors import NotFound
from paymux.kit.idempotency import IdempotentRoute
from paymux.kit.web import ReadSessionDep, RuntimeDep, SessionDep
from paymux.payments import lifecycle
from paymux.payments.models import Payment
from paymux.payments.repository import PaymentRepository

router = APIRouter(tags=["cashier"], route_class=IdempotentRoute)

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def _status(payment: Payment) -> dict[str, Any]:
    return {
        "id": payment.id,
        "status": payment.status,
        "return_url": payment.return_url if payment.status == "succeeded" else None,
    }


async def _load(session: SessionDep, payment_id: str) -> Payment:
    payment = await PaymentRepository(session).get_public(payment_id)
    if payment is None:
        raise NotFound("payment", payment_id)
    return payment


@router.get("/pay/{payment_id}", response_class=HTMLResponse, include_in_schema=False)
async def pay_page(payment_id: str, session: ReadSessionDep) -> HTMLResponse:
    payment = await _load(session, payment_id)
    action = payment.next_action or {}
    qr_svg = None
    if action.get("type") == "qr_code" and action.get("code_url"):
        qr_svg = segno.make(action["code_url"], error="m").svg_inline(scale=6, border=2)
    html = _templates.get_template("pay.html").render(
        payment=payment,
        amount=money.to_major(payment.amount, payment.currency),
        action=action,
        qr_svg=qr_svg,
        final=payment.status != "pending",
    )
    return HTMLResponse(html)


@router.get("/pay/{payment_id}/return", include_in_schema=False)
async def customer_return(payment_id: str, rt: RuntimeDep) -> RedirectResponse:
    """Channels send the customer back here; we ask the channel, then hand the customer to the
    merchant's ``return_url`` (or this hosted page, which shows the outcome)."""
    payment = await lifecycle.on_customer_return(rt, payment_id)
    if payment is None:
        raise NotFound("payment", payment_id)
    return RedirectResponse(payment.return_url or f"/pay/{payment.id}", status_code=303)


@router.get("/pay/{payment_id}/status", include_in_schema=False)
async def pay_status(payment_id: str, session: ReadSessionDep) -> dict[str, Any]:
    return _status(await _load(session, payment_id))

"""``/pay/<payment id>``: the hosted cashier — the merchant's name and the amount, the QR code or
redirect with a live status and an expiry countdown, and the final screens (success back to the
merchant, failures explained from the error catalogue with a way back). Reached by the payment's
unguessable id; shows nothing secret. Pages are rendered through :mod:`paymux.web` (CSP with a
nonce, security headers, zh_CN/en)."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from paymux.cashier import inwallet, ordering, service
from paymux.cashier.errors import N_, customer_error
from paymux.cashier.sdk_policy import sdk_policy
from paymux.kit import clock
from paymux.kit.errors import NotFound, PaymuxError
from paymux.kit.idempotency import IdempotentRoute
from paymux.kit.web import ReadSessionDep, RuntimeDep
from paymux.merchants import service as merchant_service
from paymux.payments import lifecycle
from paymux.payments.models import Payment
from paymux.payments.repository import PaymentRepository
from paymux.runtime import Runtime
from paymux.web import Site, i18n, qr_code, static_router, wants_html

HERE = Path(__file__).resolve().parent
site = Site("cashier", [HERE / "templates"])
site.globals["customer_error"] = customer_error  # the SDK step shows declines in-page

router = APIRouter(tags=["cashier"], route_class=IdempotentRoute)
router.include_router(
    static_router({"cashier": HERE / "static", "web": HERE.parent / "web" / "static"})
)
router.include_router(inwallet.router)

METHOD_LABELS = {
    "wechat_native": N_("WeChat Pay QR code"),
    "wechat_h5": N_("WeChat Pay (mobile web)"),
    "wechat_jsapi": N_("WeChat Pay"),
    "alipay_qr": N_("Alipay QR code"),
    "alipay_page": N_("Alipay website"),
    "alipay_wap": N_("Alipay (mobile web)"),
    "alipay_jsapi": N_("Alipay"),
    "unionpay_qr": N_("UnionPay QR code"),
    "unionpay_gateway": N_("UnionPay online banking"),
    "unionpay_wap": N_("UnionPay (mobile web)"),
    "card": N_("Bank card"),
    "apple_pay": N_("Apple Pay"),
    "google_pay": N_("Google Pay"),
    "paypal": N_("PayPal"),
    "wallet": N_("Balance"),
}


WALLET_REFUSALS = frozenset({"insufficient_funds", "wallet_not_allowed"})
"""Refusals of paying from the balance that the page explains from the catalogue."""


@functools.lru_cache(maxsize=256)
def _qr_svg(code_url: str) -> str:
    """An order's QR never changes: drawn once per process (segno's mask choice alone is ~3 ms)
    and kept for the page's reloads and the customer's returns; 256 codes are ~2 MB."""
    return str(qr_code(code_url).svg_inline(scale=6, border=2))


def _status(payment: Payment) -> dict[str, Any]:
    return {
        "id": payment.id,
        "status": payment.status,
        "return_url": payment.return_url if payment.status == "succeeded" else None,
    }


def _state(payment: Payment, now: dt.datetime) -> str:
    """What the page shows: the payment's status, except that a pending payment past its expiry
    is shown (and treated) as expired before the janitor gets to it."""
    if payment.status == "pending":
        if clock.aware(payment.expires_at) <= now:
            return "expired"
        return "choose" if payment.current_attempt_id is None else "pending"
    return str(payment.status)


def _not_found(request: Request, payment_id: str) -> HTMLResponse:
    """A browser (it accepts text/html) gets a friendly page in its language; an API client
    the usual machine-readable ``not_found`` error."""
    if not wants_html(request):
        raise NotFound("payment", payment_id)
    return site.render(request, "not_found.html", status_code=404)


@router.get("/pay/{payment_id}", include_in_schema=False, response_model=None)
async def pay_page(
    request: Request, payment_id: str, rt: RuntimeDep, switch: bool = False,
    cancelled: bool = False,
) -> HTMLResponse | RedirectResponse:  # fmt: skip
    """``switch``: the customer asked for another method; ``cancelled``: the channel sent the
    customer back after a cancel (PayPal "Cancel") — both show the methods again, the
    cancelled one included (to try it again). Inside a wallet app, a payment that needs the
    payer's wallet id goes to the wallet's sign-in first (:func:`inwallet.auto_start`)."""
    return await _page(request, rt, payment_id, switch=switch, cancelled=cancelled)


async def _page(
    request: Request, rt: Runtime, payment_id: str, *, switch: bool = False,
    cancelled: bool = False, notice: str | None = None, status_code: int = 200,
) -> HTMLResponse | RedirectResponse:  # fmt: skip
    """The payment's page; ``notice`` (a catalogue code) explains why a choice was refused
    above the methods still open to the customer."""
    cashier = await service.view(rt, payment_id, user_agent=request.headers.get("user-agent", ""))
    if cashier is None:
        return _not_found(request, payment_id)
    payment = cashier.payment
    async with rt.db.read() as session:
        brand = await merchant_service.brand(session, payment.app_id)
    action = payment.next_action or {}
    state = _state(payment, clock.now())
    cashier_url = f"{rt.settings.public_url.rstrip('/')}/pay/{payment.id}"
    if state == "pending" and action.get("type") == "redirect" and action.get("url") == cashier_url:
        state = "choose"  # its attempt was declined: the payment waits for a method again
    retry = cancelled and state == "pending" and bool(cashier.options)
    # Inside a wallet app the one method is offered again after the customer left its sheet.
    again = ordering.in_wallet(cashier.environment) and action.get("type") == "sdk_params"
    if state == "pending" and (
        ((switch or notice) and (cashier.can_switch or again)) or retry
    ):  # fmt: skip
        state = "choose"
    target = inwallet.auto_start(cashier) if state == "choose" else None
    if target and not (switch or cancelled or notice):
        return RedirectResponse(target, status_code=303)
    qr_svg = None
    if state == "pending" and action.get("type") == "qr_code" and action.get("code_url"):
        qr_svg = _qr_svg(action["code_url"])
    aggregate_qr = None  # 一码付: the wallet that scans it opens this page and its own flow
    if state == "choose" and cashier.environment == ordering.DESKTOP and cashier.options:
        aggregate_qr = qr_code(cashier_url).svg_inline(scale=5, border=2)
    sdk = await inwallet.stand_in(rt, payment) if state == "pending" else None
    code = payment.failure_code if state == "failed" else state
    offer_again = retry or again  # the method just left is offered again
    ctx = {
        "payment": payment,
        "merchant_name": brand.name,
        "logo_url": brand.logo_url,
        "action": action,
        "qr_svg": qr_svg,
        "state": state,
        "error": customer_error(code),
        "options": [o for o in cashier.options
                    if (offer_again or o.method != cashier.current_method)
                    and not (notice and o.method == "wallet")],
        "cancelled": retry,
        "can_switch": cashier.can_switch,
        "method_label": _label_for(request),
        "wallet_balance": cashier.wallet_balance,
        "notice": customer_error(notice) if notice else None,
        "notice_code": notice,
        "cashier_url": cashier_url,
        "aggregate_qr": aggregate_qr,
        "sdk": sdk,
    }  # fmt: skip
    policy = sdk_policy(action, site.policy) if state == "pending" else None
    policy = policy or inwallet.policy_for(request, sdk)  # a wallet stand-in's own script
    return site.render(
        request, "pay.html", ctx, status_code=status_code, policy=policy,
        timezone=brand.timezone,
    )  # fmt: skip


@router.post("/pay/{payment_id}/method", include_in_schema=False, response_model=None)
async def pay_choose(
    request: Request, payment_id: str, rt: RuntimeDep, method: str = Form(max_length=32)
) -> RedirectResponse | HTMLResponse:
    """The customer picked a method: open (or switch to) its attempt, then show the page. A
    refusal (unknown or unavailable method, a final or expired payment) changes nothing: API
    clients get the machine-readable error, browsers a page that explains and leads back. A
    method that needs the payer's wallet id first (JSAPI) goes through the wallet's OAuth."""
    cashier = await service.view(rt, payment_id, user_agent=request.headers.get("user-agent", ""))
    if cashier is not None and method in {o.method for o in cashier.options}:
        if inwallet.payer_needed(cashier.payment, method):
            return RedirectResponse(f"/pay/{payment_id}/oauth/start?method={method}", 303)
    try:
        await service.choose(
            rt, payment_id, method, user_agent=request.headers.get("user-agent", ""),
            client_ip=request.client.host if request.client else None,
        )  # fmt: skip
    except PaymuxError as exc:
        if not wants_html(request):
            raise
        if exc.code in WALLET_REFUSALS:  # explained, with the methods still open
            return await _page(request, rt, payment_id, notice=exc.code,
                               status_code=exc.status_code)  # fmt: skip
        ctx = {"payment_id": payment_id, "reference": f"{payment_id} · {exc.code}"}
        return site.render(request, "refused.html", ctx, status_code=exc.status_code)
    return RedirectResponse(f"/pay/{payment_id}", status_code=303)


def _label_for(request: Request) -> Any:
    tr = i18n.translations(i18n.negotiate(request))

    def label(method: str) -> str:
        return tr.gettext(METHOD_LABELS.get(method, method))

    return label


@router.get("/pay/{payment_id}/live", include_in_schema=False)
async def pay_live(payment_id: str, session: ReadSessionDep) -> Response:
    """htmx polling: 204 while nothing changed, ``HX-Refresh`` once the page should re-render."""
    payment = await PaymentRepository(session).get_public(payment_id)
    if payment is None or _state(payment, clock.now()) != "pending":
        return Response(status_code=200, headers={"HX-Refresh": "true"})
    return Response(status_code=204)


@router.get("/pay/{payment_id}/return", include_in_schema=False, response_model=None)
async def customer_return(
    request: Request, payment_id: str, rt: RuntimeDep
) -> RedirectResponse | HTMLResponse:
    """Channels send the customer back here; we ask the channel, then hand the customer to the
    merchant's ``return_url`` (or this hosted page, which shows the outcome)."""
    payment = await lifecycle.on_customer_return(rt, payment_id)
    if payment is None:
        return _not_found(request, payment_id)
    target = payment.return_url if payment.status == "succeeded" and payment.return_url else None
    return RedirectResponse(target or f"/pay/{payment.id}", status_code=303)


@router.get("/pay/{payment_id}/status", include_in_schema=False, response_model=None)
async def pay_status(
    request: Request, payment_id: str, session: ReadSessionDep
) -> dict[str, Any] | HTMLResponse:
    payment = await PaymentRepository(session).get_public(payment_id)
    if payment is None:
        return _not_found(request, payment_id)
    return _status(payment)

"""``/v1/store_codes`` (API key) and the public amount page ``/s/<code>`` a printed QR opens."""

from __future__ import annotations

import io
import secrets
from pathlib import Path
from typing import Annotated

import segno
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from paymux.kit import money
from paymux.kit.errors import NotFound, PaymuxError
from paymux.kit.idempotency import IdempotentRoute
from paymux.kit.web import ListResponse, PageDep, ReadSessionDep, RuntimeDep, SessionDep
from paymux.merchants.auth import AuthDep
from paymux.store_codes import service
from paymux.store_codes.models import StoreCode
from paymux.store_codes.repository import StoreCodeRepository
from paymux.store_codes.schemas import StoreCodeCreate, StoreCodeOut, StoreCodeUpdate
from paymux.web import wants_html

router = APIRouter(prefix="/v1/store_codes", tags=["store_codes"], route_class=IdempotentRoute)
public_router = APIRouter(tags=["store_codes"])

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)

# Error correction Q survives a worn or partly covered print; a 4-module quiet zone is what
# scanners need around the symbol.
_QR_ERROR = "q"
_QR_BORDER = 4


@router.post("", status_code=201, response_model=StoreCodeOut)
async def create_store_code(
    body: StoreCodeCreate, auth: AuthDep, session: SessionDep, rt: RuntimeDep
) -> StoreCodeOut:
    """A static QR for a store: customers scan it with any wallet or camera, enter the amount
    (or pay the fixed ``amount``) and pay on the hosted cashier. Every payment it makes carries
    ``metadata.store_code`` (this id) and ``metadata.store_id``."""
    store_code = await service.create(
        session, app_id=auth.app_id, livemode=auth.livemode, name=body.name,
        store_id=body.store_id, amount=body.amount, currency=body.currency, active=body.active,
    )  # fmt: skip
    return StoreCodeOut.of(store_code, public_url=rt.settings.public_url)


@router.get("", response_model=ListResponse[StoreCodeOut])
async def list_store_codes(
    auth: AuthDep, session: ReadSessionDep, rt: RuntimeDep, page: PageDep
) -> ListResponse[StoreCodeOut]:
    """Newest first. Page with ``starting_after`` = the last id of the previous page."""
    rows, has_more = await StoreCodeRepository(session).list(
        auth.app_id, auth.livemode, limit=page.limit, starting_after=page.starting_after
    )
    return ListResponse[StoreCodeOut](
        data=[StoreCodeOut.of(s, public_url=rt.settings.public_url) for s in rows],
        has_more=has_more,
    )


@router.get("/{store_code_id}", response_model=StoreCodeOut)
async def retrieve_store_code(
    store_code_id: str, auth: AuthDep, session: ReadSessionDep, rt: RuntimeDep
) -> StoreCodeOut:
    store_code = await service.get(
        session, app_id=auth.app_id, livemode=auth.livemode, store_code_id=store_code_id
    )
    return StoreCodeOut.of(store_code, public_url=rt.settings.public_url)


@router.patch("/{store_code_id}", response_model=StoreCodeOut)
async def update_store_code(
    store_code_id: str, body: StoreCodeUpdate, auth: AuthDep, session: SessionDep,
    rt: RuntimeDep,
) -> StoreCodeOut:  # fmt: skip
    """Deactivate (``active: false``) or rename a code. An inactive code's page says so and
    makes no payment; printed copies start working again when it is reactivated."""
    store_code = await service.update(
        session, app_id=auth.app_id, livemode=auth.livemode, store_code_id=store_code_id,
        active=body.active, name=body.name,
    )  # fmt: skip
    return StoreCodeOut.of(store_code, public_url=rt.settings.public_url)


async def _qr(
    store_code_id: str, auth: AuthDep, session: ReadSessionDep, rt: RuntimeDep
) -> segno.QRCode:
    store_code = await service.get(
        session, app_id=auth.app_id, livemode=auth.livemode, store_code_id=store_code_id
    )
    return segno.make(service.url_of(rt.settings.public_url, store_code), error=_QR_ERROR)


@router.get("/{store_code_id}/qr.svg", response_class=Response)
async def store_code_svg(
    store_code_id: str, auth: AuthDep, session: ReadSessionDep, rt: RuntimeDep
) -> Response:
    """The printable QR as SVG (error correction Q, 4-module quiet zone)."""
    qr = await _qr(store_code_id, auth, session, rt)
    out = io.BytesIO()
    qr.save(out, kind="svg", scale=10, border=_QR_BORDER, xmldecl=True)
    return Response(out.getvalue(), media_type="image/svg+xml")


@router.get("/{store_code_id}/qr.png", response_class=Response)
async def store_code_png(
    store_code_id: str, auth: AuthDep, session: ReadSessionDep, rt: RuntimeDep
) -> Response:
    """The printable QR as PNG (error correction Q, 4-module quiet zone, 10 px per module)."""
    qr = await _qr(store_code_id, auth, session, rt)
    out = io.BytesIO()
    qr.save(out, kind="png", scale=10, border=_QR_BORDER)
    return Response(out.getvalue(), media_type="image/png")


def _html(template: str, status: int, **context: object) -> HTMLResponse:
    # No script at all; the one inline style block carries a per-response nonce. The page takes
    # money, so no other site may frame it (clickjacking) and the form posts only back here.
    nonce = secrets.token_urlsafe(16)
    html = _templates.get_template(template).render(nonce=nonce, **context)
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Content-Security-Policy": (
                f"default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'; "
                "frame-ancestors 'none'; base-uri 'none'"
            ),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )


def _page(
    store_code: StoreCode, *, error: str | None = None, amount_text: str = "", status: int = 200
) -> HTMLResponse:
    return _html(
        "store_code.html",
        status,
        store_code=store_code,
        fixed_amount=(
            money.to_major(store_code.amount, store_code.currency)
            if store_code.amount is not None
            else None
        ),
        form_token=service.new_form_token(),
        error=error,
        amount_text=amount_text,
    )


def _not_found(request: Request, code: str) -> HTMLResponse:
    """A browser (it accepts text/html) gets a friendly page; an API client the usual
    machine-readable ``resource_missing`` error."""
    if not wants_html(request):
        raise NotFound("store code", code)
    return _html("store_code_missing.html", 404)


@public_router.get("/s/{code}", response_class=HTMLResponse, include_in_schema=False)
async def store_code_page(request: Request, code: str, session: ReadSessionDep) -> HTMLResponse:
    """The page a printed code opens: the store's name and an amount field."""
    store_code = await service.active_by_code(session, code)
    if store_code is None:
        return _not_found(request, code)
    return _page(store_code)


@public_router.post("/s/{code}", response_class=HTMLResponse, include_in_schema=False)
async def store_code_submit(
    request: Request, code: str, rt: RuntimeDep,
    token: Annotated[str, Form(max_length=64)] = "",
    amount: Annotated[str, Form(max_length=64)] = "",
) -> Response:  # fmt: skip
    """Create the payment and send the customer to its cashier; a bad amount shows the page
    again with the reason."""
    try:
        payment = await service.pay(rt, code, amount_text=amount, form_token=token)
    except NotFound:
        return _not_found(request, code)
    except PaymuxError as exc:  # a bad amount, or a payment the gateway refuses
        if not wants_html(request):
            raise
        async with rt.db.read() as session:
            store_code = await service.active_by_code(session, code)
        if store_code is None:
            return _not_found(request, code)
        return _page(store_code, error=exc.message, amount_text=amount, status=400)
    return RedirectResponse(f"/pay/{payment.id}", status_code=303)

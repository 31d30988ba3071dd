"""``/v1/store_codes`` (API key) and the public amount page ``/s/<code>`` a printed QR opens,
rendered through :mod:`paymux.web` (shared layout, zh_CN/en, security headers) under a stricter
policy than the cashier's: no script, the form posts only to itself."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from paymux.kit.errors import NotFound, PaymuxError
from paymux.kit.idempotency import IdempotentRoute
from paymux.kit.web import ListResponse, PageDep, ReadSessionDep, RuntimeDep, SessionDep
from paymux.merchants import service as merchant_service
from paymux.merchants.auth import AuthDep
from paymux.runtime import Runtime
from paymux.store_codes import service
from paymux.store_codes.models import StoreCode
from paymux.store_codes.repository import StoreCodeRepository
from paymux.store_codes.schemas import StoreCodeCreate, StoreCodeOut, StoreCodeUpdate
from paymux.web import SecurityPolicy, Site, qr_code, wants_html
from paymux.web.ratelimit import RateLimited, RateLimiter

if TYPE_CHECKING:
    import segno

router = APIRouter(prefix="/v1/store_codes", tags=["store_codes"], route_class=IdempotentRoute)
public_router = APIRouter(tags=["store_codes"])

# The amount page runs no script at all and its form posts only back here; the URL carries the
# code, so no Referer leaves it; it takes money, so nobody may frame it (clickjacking).
POLICY = SecurityPolicy(
    frame_ancestors=(), scripts=False, form_actions=("'self'",), referrer_policy="no-referrer"
)
site = Site("store_codes", [Path(__file__).resolve().parent / "templates"], policy=POLICY)


class SubmitLimits:
    """Amount-page submissions: per client IP (one customer, or one attacker) and per code
    (a flood through many IPs at one store)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_ip = RateLimiter(capacity=10, per_seconds=60, clock=clock)
        self.per_code = RateLimiter(capacity=60, per_seconds=60, clock=clock)

    def hit(self, ip: str, code: str) -> int | None:
        """None if allowed, else the seconds to wait."""
        return self.per_ip.hit(ip) or self.per_code.hit(code[:64])


limits = SubmitLimits()

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
    return qr_code(service.url_of(rt.settings.public_url, store_code), error=_QR_ERROR)


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


def _client_ip(request: Request) -> str:
    # The peer address; behind a reverse proxy run uvicorn with --proxy-headers and
    # --forwarded-allow-ips so this is the customer's (docs/deploy.md).
    return request.client.host if request.client else "unknown"


def _limited(request: Request, code: str) -> Response | None:
    """A submit over the limits: 429 with ``Retry-After`` (per client IP, then per code)."""
    retry_after = limits.hit(_client_ip(request), code)
    if retry_after is None:
        return None
    refusal = RateLimited(retry_after)
    if not wants_html(request):
        return refusal.response()
    page = site.render(
        request, "store_code_limited.html", {"retry_after": retry_after}, status_code=429
    )
    page.headers["Retry-After"] = str(retry_after)
    return page


async def _page(
    request: Request, rt: Runtime, store_code: StoreCode, *, error: str | None = None,
    amount_text: str = "", status: int = 200,
) -> HTMLResponse:  # fmt: skip
    async with rt.db.read() as session:
        brand = await merchant_service.brand(session, store_code.app_id)
    ctx = {
        "store_code": store_code,
        "merchant_name": brand.name,
        "logo_url": brand.logo_url,
        "form_token": service.new_form_token(),
        "error": error,
        "amount_text": amount_text,
    }
    return site.render(request, "store_code.html", ctx, status_code=status, timezone=brand.timezone)


def _not_found(request: Request, code: str) -> HTMLResponse:
    """A browser (it accepts text/html) gets a friendly page; an API client the usual
    machine-readable ``resource_missing`` error."""
    if not wants_html(request):
        raise NotFound("store code", code)
    return site.render(request, "store_code_missing.html", status_code=404)


@public_router.get("/s/{code}", response_class=HTMLResponse, include_in_schema=False)
async def store_code_page(request: Request, code: str, rt: RuntimeDep) -> HTMLResponse:
    """The page a printed code opens: the merchant's brand, the store's name and an amount
    field (or the fixed amount)."""
    async with rt.db.read() as session:
        store_code = await service.active_by_code(session, code)
    if store_code is None:
        return _not_found(request, code)
    return await _page(request, rt, store_code)


@public_router.post("/s/{code}", response_class=HTMLResponse, include_in_schema=False)
async def store_code_submit(
    request: Request, code: str, rt: RuntimeDep,
    token: Annotated[str, Form(max_length=64)] = "",
    amount: Annotated[str, Form(max_length=64)] = "",
) -> Response:  # fmt: skip
    """Create the payment and send the customer to its cashier; a bad amount shows the page
    again with the reason. Rate-limited per client IP and per code (it creates payments)."""
    limited = _limited(request, code)
    if limited is not None:
        return limited
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
        return await _page(
            request, rt, store_code, error=service.customer_message(exc), amount_text=amount,
            status=400,
        )  # fmt: skip
    return RedirectResponse(f"/pay/{payment.id}", status_code=303)

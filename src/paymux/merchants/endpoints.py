"""``/v1/operator``: the platform operator's API (merchants, apps, keys; channel accounts are
:mod:`paymux.channel_accounts.endpoints`).

Authenticated by ``PAYMUX_OPERATOR_TOKEN``; disabled when it is unset.

Also the public ``/brand/<app>/logo/<digest>``: an app's uploaded logo, which the customer pages
show (served here, never from a merchant-given URL: the pages' CSP keeps ``img-src 'self'``).
"""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter
from fastapi.responses import Response

from paymux.kit.errors import InvalidRequest, NotFound
from paymux.kit.idempotency import IdempotentRoute
from paymux.kit.web import ReadSessionDep, RuntimeDep, SessionDep
from paymux.merchants import service
from paymux.merchants.auth import OperatorDep, forget_cached_keys
from paymux.merchants.models import App, Merchant
from paymux.merchants.repository import MerchantRepository
from paymux.merchants.schemas import (
    AppCreate,
    AppOut,
    AppUpdate,
    KeyCreate,
    KeyOut,
    MerchantCreate,
    MerchantOut,
    MerchantUpdate,
)
from paymux.web import platform_timezone

router = APIRouter(prefix="/v1/operator", tags=["operator"], route_class=IdempotentRoute)
public_router = APIRouter(tags=["brand"])


def _merchant_out(merchant: Merchant) -> MerchantOut:
    return MerchantOut(
        id=merchant.id, name=merchant.name, timezone=merchant.timezone or platform_timezone(),
        created_at=merchant.created_at,
    )  # fmt: skip


def _app_out(app: App, public_url: str) -> AppOut:
    path = service.logo_path(app)
    return AppOut(
        id=app.id, name=app.name, merchant=app.merchant_id, display_name=app.display_name,
        logo_url=f"{public_url.rstrip('/')}{path}" if path else None, created_at=app.created_at,
    )  # fmt: skip


@router.post("/merchants", status_code=201, response_model=MerchantOut)
async def create_merchant(body: MerchantCreate, _: OperatorDep, session: SessionDep) -> MerchantOut:
    """Onboard a merchant (then give it apps, keys and channel accounts)."""
    merchant = await service.create_merchant(session, name=body.name)
    return _merchant_out(merchant)


@router.get("/merchants", response_model=list[MerchantOut])
async def list_merchants(_: OperatorDep, session: ReadSessionDep) -> list[MerchantOut]:
    """Every merchant of the platform."""
    return [_merchant_out(m) for m in await MerchantRepository(session).list_merchants()]


@router.patch("/merchants/{merchant_id}", response_model=MerchantOut)
async def update_merchant(
    merchant_id: str, body: MerchantUpdate, _: OperatorDep, session: SessionDep
) -> MerchantOut:
    """Rename a merchant or set the time zone of its customer pages (the cashier's "pay
    before" time). ``"timezone": null`` goes back to the platform's zone."""
    merchant = await service.update_merchant(
        session, merchant_id=merchant_id, name=body.name, timezone=body.timezone,
        clear_timezone="timezone" in body.model_fields_set and body.timezone is None,
    )  # fmt: skip
    return _merchant_out(merchant)


@router.post("/merchants/{merchant_id}/apps", status_code=201, response_model=AppOut)
async def create_app(
    merchant_id: str, body: AppCreate, _: OperatorDep, session: SessionDep, rt: RuntimeDep
) -> AppOut:
    """A new app of the merchant: its own keys, channel accounts, routing and webhooks."""
    app = await service.create_app(session, merchant_id=merchant_id, name=body.name)
    return _app_out(app, rt.settings.public_url)


@router.patch("/apps/{app_id}", response_model=AppOut)
async def update_app(
    app_id: str, body: AppUpdate, _: OperatorDep, session: SessionDep, rt: RuntimeDep
) -> AppOut:
    """Rename an app or set its brand on the cashier and store-code pages: ``display_name``
    and ``logo`` (base64 of a PNG, JPEG or WebP image of at most 100 KB, checked by its
    content; never SVG). ``null`` removes either."""
    sent = body.model_fields_set
    logo = None
    if body.logo is not None:
        try:
            logo = base64.b64decode(body.logo, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("logo_unsupported", "logo must be base64.", param="logo") from None
    app = await service.update_app(
        session, app_id=app_id, name=body.name, display_name=body.display_name,
        clear_display_name="display_name" in sent and body.display_name is None,
        logo=logo, clear_logo="logo" in sent and body.logo is None,
    )  # fmt: skip
    return _app_out(app, rt.settings.public_url)


@router.post("/apps/{app_id}/keys", status_code=201, response_model=KeyOut)
async def create_key(app_id: str, body: KeyCreate, _: OperatorDep, session: SessionDep) -> KeyOut:
    issued = await service.issue_key(session, app_id=app_id, mode=body.mode)
    key = issued.key
    return KeyOut(
        id=key.id, app=app_id, mode=key.mode, hint=key.hint, secret=issued.secret,
        created_at=key.created_at,
    )  # fmt: skip


@router.delete("/apps/{app_id}/keys/{key_id}", response_model=KeyOut)
async def revoke_key(app_id: str, key_id: str, _: OperatorDep, session: SessionDep) -> KeyOut:
    key = await service.revoke_key(session, app_id=app_id, key_id=key_id)
    forget_cached_keys()
    return KeyOut(
        id=key.id, app=app_id, mode=key.mode, hint=key.hint, created_at=key.created_at,
        revoked_at=key.revoked_at,
    )  # fmt: skip


@public_router.get("/brand/{app_id}/logo/{digest}", include_in_schema=False)
async def app_logo(app_id: str, digest: str, session: ReadSessionDep) -> Response:
    """The logo by its content's digest: a new upload gets a new URL, so this one may be
    cached for a year. nosniff and a no-content CSP: it is only ever an image."""
    found = await MerchantRepository(session).logo(app_id, digest[:64])
    if found is None:
        raise NotFound("logo", digest)
    content, content_type = found
    return Response(
        content,
        media_type=content_type,
        headers={
            "Cache-Control": "public, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cross-Origin-Resource-Policy": "same-origin",
        },
    )

"""``/v1/operator``: the platform operator's API (merchants, apps, keys; channel accounts are
:mod:`paymux.channel_accounts.endpoints`).

Authenticated by ``PAYMUX_OPERATOR_TOKEN``; disabled when it is unset.
"""

from __future__ import annotations

from fastapi import APIRouter

from paymux.kit.idempotency import IdempotentRoute
from paymux.kit.web import ReadSessionDep, SessionDep
from paymux.merchants import service
from paymux.merchants.auth import OperatorDep, forget_cached_keys
from paymux.merchants.repository import MerchantRepository
from paymux.merchants.schemas import (
    AppCreate,
    AppOut,
    KeyCreate,
    KeyOut,
    MerchantCreate,
    MerchantOut,
)

router = APIRouter(prefix="/v1/operator", tags=["operator"], route_class=IdempotentRoute)


@router.post("/merchants", status_code=201, response_model=MerchantOut)
async def create_merchant(body: MerchantCreate, _: OperatorDep, session: SessionDep) -> MerchantOut:
    """Onboard a merchant (then give it apps, keys and channel accounts)."""
    merchant = await service.create_merchant(session, name=body.name)
    return MerchantOut(id=merchant.id, name=merchant.name, created_at=merchant.created_at)


@router.get("/merchants", response_model=list[MerchantOut])
async def list_merchants(_: OperatorDep, session: ReadSessionDep) -> list[MerchantOut]:
    """Every merchant of the platform."""
    return [
        MerchantOut(id=m.id, name=m.name, created_at=m.created_at)
        for m in await MerchantRepository(session).list_merchants()
    ]


@router.post("/merchants/{merchant_id}/apps", status_code=201, response_model=AppOut)
async def create_app(
    merchant_id: str, body: AppCreate, _: OperatorDep, session: SessionDep
) -> AppOut:
    """A new app of the merchant: its own keys, channel accounts, routing and webhooks."""
    app = await service.create_app(session, merchant_id=merchant_id, name=body.name)
    return AppOut(id=app.id, name=app.name, merchant=app.merchant_id, created_at=app.created_at)


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

"""``/v1/operator/…/channel_accounts``: the operator adds, lists and changes an app's channel
accounts. Authenticated like the rest of the operator API (``PAYMUX_OPERATOR_TOKEN``)."""

from __future__ import annotations

from fastapi import APIRouter

from paymux.channel_accounts import service as channel_service
from paymux.channel_accounts.repository import ChannelAccountRepository
from paymux.channel_accounts.schemas import (
    ChannelAccountCreate,
    ChannelAccountOut,
    ChannelAccountUpdate,
)
from paymux.kit.errors import NotFound
from paymux.kit.idempotency import IdempotentRoute
from paymux.kit.web import ReadSessionDep, RuntimeDep, SessionDep
from paymux.merchants.auth import OperatorDep
from paymux.merchants.repository import MerchantRepository

router = APIRouter(prefix="/v1/operator", tags=["operator"], route_class=IdempotentRoute)


@router.post("/apps/{app_id}/channel_accounts", status_code=201, response_model=ChannelAccountOut)
async def add_channel_account(
    app_id: str, body: ChannelAccountCreate, _: OperatorDep, session: SessionDep, rt: RuntimeDep
) -> ChannelAccountOut:
    account = await channel_service.add_account(
        session, rt.vault, app_id=app_id, channel=body.channel, mode=body.mode,
        credentials=body.credentials, methods=body.methods, currencies=body.currencies,
        fee_rate_bps=body.fee_rate_bps, priority=body.priority, enabled=body.enabled,
        name=body.name,
    )  # fmt: skip
    return ChannelAccountOut.of(account, public_url=rt.settings.public_url)


@router.get("/apps/{app_id}/channel_accounts", response_model=list[ChannelAccountOut])
async def list_channel_accounts(
    app_id: str, _: OperatorDep, session: ReadSessionDep, rt: RuntimeDep
) -> list[ChannelAccountOut]:
    if await MerchantRepository(session).get_app(app_id) is None:
        raise NotFound("app", app_id)
    accounts = await ChannelAccountRepository(session).list_for_app(app_id)
    return [ChannelAccountOut.of(a, public_url=rt.settings.public_url) for a in accounts]


@router.patch("/channel_accounts/{account_id}", response_model=ChannelAccountOut)
async def update_channel_account(
    account_id: str, body: ChannelAccountUpdate, _: OperatorDep, session: SessionDep,
    rt: RuntimeDep,
) -> ChannelAccountOut:  # fmt: skip
    account = await channel_service.update_account(
        session, account_id, enabled=body.enabled, priority=body.priority,
        fee_rate_bps=body.fee_rate_bps,
    )  # fmt: skip
    return ChannelAccountOut.of(account, public_url=rt.settings.public_url)

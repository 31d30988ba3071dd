"""``/v1/settlements`` (merchant) and settlement terms (operator)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from paymux.kit.errors import NotFound
from paymux.kit.idempotency import IdempotentRoute
from paymux.kit.web import ListResponse, PageDep, ReadSessionDep, SessionDep
from paymux.merchants.auth import AuthDep, OperatorDep
from paymux.merchants.repository import MerchantRepository
from paymux.settlement import service
from paymux.settlement.repository import SettlementRepository
from paymux.settlement.schemas import SettlementConfigIn, SettlementConfigOut, SettlementOut

router = APIRouter(prefix="/v1", tags=["settlement"], route_class=IdempotentRoute)


@router.get("/settlements", response_model=ListResponse[SettlementOut])
async def list_settlements(
    auth: AuthDep, session: ReadSessionDep, page: PageDep
) -> ListResponse[SettlementOut]:
    """The merchant's settlements in the key's mode, newest first. A settlement is
    merchant-level (it moves the merchant's balance), so every app of the merchant sees it;
    its report lists only the calling app's payments."""
    rows, has_more = await SettlementRepository(session).search(
        auth.merchant_id, auth.livemode, limit=page.limit, starting_after=page.starting_after
    )
    return ListResponse[SettlementOut](data=[SettlementOut.of(s) for s in rows],
                                       has_more=has_more)  # fmt: skip


@router.get("/settlements/{settlement_id}", response_model=SettlementOut)
async def retrieve_settlement(
    settlement_id: str, auth: AuthDep, session: ReadSessionDep
) -> SettlementOut:
    found = await service.get(session, auth.merchant_id, auth.livemode, settlement_id)
    return SettlementOut.of(found)


@router.get("/settlements/{settlement_id}/report.csv", response_class=PlainTextResponse)
async def settlement_report(
    settlement_id: str, auth: AuthDep, session: ReadSessionDep
) -> PlainTextResponse:
    """The batch's report: one CSV line per payment of the calling app and a total line of
    those (the settlement's own totals cover every app of the merchant)."""
    found = await service.get(session, auth.merchant_id, auth.livemode, settlement_id)
    return PlainTextResponse(
        await service.report_csv(session, found, app_id=auth.app_id), media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{found.id}.csv"'},
    )  # fmt: skip


@router.put("/operator/merchants/{merchant_id}/settlement", response_model=SettlementConfigOut)
async def configure_settlement(
    merchant_id: str, body: SettlementConfigIn, _: OperatorDep, session: SessionDep
) -> SettlementConfigOut:
    """Set a merchant's settlement cycle and fee rule (applies to money that arrives after)."""
    if await MerchantRepository(session).get_merchant(merchant_id) is None:
        raise NotFound("merchant", merchant_id)
    return SettlementConfigOut.of(await service.configure(session, merchant_id, body))


@router.get("/operator/merchants/{merchant_id}/settlement", response_model=SettlementConfigOut)
async def show_settlement(
    merchant_id: str, _: OperatorDep, session: ReadSessionDep
) -> SettlementConfigOut:
    return SettlementConfigOut.of(await service.config_of(session, merchant_id))

"""``/v1/payouts``: thin HTTP over payouts.service."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from paymux.kit.idempotency import IdempotentRoute
from paymux.kit.web import ListResponse, PageDep, ReadSessionDep, RuntimeDep
from paymux.merchants.auth import AuthDep
from paymux.payouts import service
from paymux.payouts.models import Payout, Speed
from paymux.payouts.repository import PayoutRepository
from paymux.payouts.schemas import PayoutCreate, PayoutOut

router = APIRouter(prefix="/v1/payouts", tags=["payouts"], route_class=IdempotentRoute)


@router.post("", status_code=201, response_model=PayoutOut)
async def create_payout(body: PayoutCreate, auth: AuthDep, rt: RuntimeDep) -> JSONResponse:
    """Withdraw from the merchant's available balance or a wallet. The amount and fee are held
    at once; ``express`` payouts are sent now, ``standard`` ones in the next day's batch. A
    repeat with the same ``out_payout_no`` returns the first payout (200)."""
    async with rt.db.transaction() as session:
        payout, created = await service.create(
            session, app_id=auth.app_id, merchant_id=auth.merchant_id, livemode=auth.livemode,
            body=body,
        )  # fmt: skip
    if created and payout.speed == Speed.express:
        await service.send(rt, payout.id)
    async with rt.db.read() as session:
        fresh = await session.get(Payout, payout.id)
        assert fresh is not None
    return JSONResponse(PayoutOut.of(fresh).model_dump(mode="json"),
                        status_code=201 if created else 200)  # fmt: skip


@router.get("", response_model=ListResponse[PayoutOut])
async def list_payouts(
    auth: AuthDep, session: ReadSessionDep, page: PageDep
) -> ListResponse[PayoutOut]:
    rows, has_more = await PayoutRepository(session).search(
        auth.app_id, auth.livemode, limit=page.limit, starting_after=page.starting_after
    )
    return ListResponse[PayoutOut](data=[PayoutOut.of(p) for p in rows], has_more=has_more)


@router.get("/{payout_id}", response_model=PayoutOut)
async def retrieve_payout(payout_id: str, auth: AuthDep, session: ReadSessionDep) -> PayoutOut:
    return PayoutOut.of(await service.get(session, auth.app_id, auth.livemode, payout_id))

"""``/v1/refunds``: thin HTTP over refunds.service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from paymux.kit.idempotency import IdempotentRoute
from paymux.kit.web import ListResponse, PageDep, ReadSessionDep, RuntimeDep
from paymux.merchants.auth import AuthDep
from paymux.refunds import service
from paymux.refunds.models import RefundStatus
from paymux.refunds.repository import RefundRepository
from paymux.refunds.schemas import RefundCreate, RefundOut

router = APIRouter(prefix="/v1/refunds", tags=["refunds"], route_class=IdempotentRoute)


@router.post("", status_code=201, response_model=RefundOut)
async def create_refund(body: RefundCreate, auth: AuthDep, rt: RuntimeDep) -> RefundOut:
    """Refund all or part of a succeeded payment, by the channel account that took it."""
    refund = await service.create(rt, app_id=auth.app_id, livemode=auth.livemode, req=body)
    return RefundOut.of(refund)


@router.get("", response_model=ListResponse[RefundOut])
async def list_refunds(
    auth: AuthDep, session: ReadSessionDep, page: PageDep,
    payment: Annotated[str | None, Query(max_length=40)] = None,
    status: RefundStatus | None = None,
) -> ListResponse[RefundOut]:  # fmt: skip
    rows, has_more = await RefundRepository(session).search(
        auth.app_id, auth.livemode, payment_id=payment, status=status, limit=page.limit,
        starting_after=page.starting_after,
    )  # fmt: skip
    return ListResponse[RefundOut](data=[RefundOut.of(r) for r in rows], has_more=has_more)


@router.get("/{refund_id}", response_model=RefundOut)
async def retrieve_refund(refund_id: str, auth: AuthDep, session: ReadSessionDep) -> RefundOut:
    refund = await service.get(
        session, app_id=auth.app_id, livemode=auth.livemode, refund_id=refund_id
    )
    return RefundOut.of(refund)

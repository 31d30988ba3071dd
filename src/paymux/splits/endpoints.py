"""``/v1/splits``: thin HTTP over splits.service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from paymux.kit.idempotency import IdempotentRoute
from paymux.kit.web import ListResponse, PageDep, ReadSessionDep, SessionDep
from paymux.merchants.auth import AuthDep
from paymux.splits import service
from paymux.splits.repository import SplitRepository
from paymux.splits.schemas import SplitCreate, SplitOut

router = APIRouter(prefix="/v1/splits", tags=["splits"], route_class=IdempotentRoute)


@router.post("", status_code=201, response_model=SplitOut)
async def create_split(body: SplitCreate, auth: AuthDep, session: SessionDep) -> SplitOut:
    """Declare receivers for a payment after its creation; runs at once when its trigger has
    passed (``realtime`` on a succeeded payment)."""
    payment = await service.payment_for(session, auth.app_id, auth.livemode, body.payment)
    split, parts = await service.declare(session, payment, body)
    return SplitOut.of(split, parts)


@router.post("/{split_id}/execute", response_model=SplitOut)
async def execute_split(split_id: str, auth: AuthDep, session: SessionDep) -> SplitOut:
    """Run a ``manual`` split (or any scheduled one) now."""
    split = await service.get(session, auth.app_id, auth.livemode, split_id)
    payment = await service.payment_for(session, auth.app_id, auth.livemode, split.payment_id)
    locked = await SplitRepository(session).lock(split.id)
    assert locked is not None
    await service.execute(session, locked, payment)
    return SplitOut.of(locked, await SplitRepository(session).parts(locked.id))


@router.get("", response_model=ListResponse[SplitOut])
async def list_splits(
    auth: AuthDep, session: ReadSessionDep, page: PageDep,
    payment: Annotated[str | None, Query(max_length=40)] = None,
) -> ListResponse[SplitOut]:  # fmt: skip
    repo = SplitRepository(session)
    rows, has_more = await repo.search(
        auth.app_id,
        auth.livemode,
        payment_id=payment,
        limit=page.limit,
        starting_after=page.starting_after,
    )
    data = [SplitOut.of(s, await repo.parts(s.id)) for s in rows]
    return ListResponse[SplitOut](data=data, has_more=has_more)


@router.get("/{split_id}", response_model=SplitOut)
async def retrieve_split(split_id: str, auth: AuthDep, session: ReadSessionDep) -> SplitOut:
    split = await service.get(session, auth.app_id, auth.livemode, split_id)
    return SplitOut.of(split, await SplitRepository(session).parts(split.id))

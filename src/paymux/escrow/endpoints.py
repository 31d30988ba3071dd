"""``/v1/payments/{id}/escrow/…``: the buyer's confirmation and the platform's release."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from paymux.escrow import service
from paymux.funds.schemas import FundsOut
from paymux.kit.idempotency import IdempotentRoute
from paymux.kit.web import SessionDep
from paymux.merchants.auth import AuthDep

router = APIRouter(prefix="/v1/payments", tags=["escrow"], route_class=IdempotentRoute)


async def _release(payment_id: str, auth: AuthDep, session: SessionDep,
                   by: Literal["buyer", "platform"]) -> FundsOut:  # fmt: skip
    _, funds = await service.release_for_app(
        session, app_id=auth.app_id, livemode=auth.livemode, payment_id=payment_id, by=by
    )
    return FundsOut.of(funds)


@router.post("/{payment_id}/escrow/confirm", response_model=FundsOut)
async def confirm_receipt(payment_id: str, auth: AuthDep, session: SessionDep) -> FundsOut:
    """The buyer confirmed receipt (确认收货): release the escrow to the merchant."""
    return await _release(payment_id, auth, session, "buyer")


@router.post("/{payment_id}/escrow/release", response_model=FundsOut)
async def release_escrow(payment_id: str, auth: AuthDep, session: SessionDep) -> FundsOut:
    """The platform releases the escrow (e.g. after appraisal)."""
    return await _release(payment_id, auth, session, "platform")

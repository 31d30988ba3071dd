"""``/v1/payments``: thin HTTP over payments.intake (create), service (read) and lifecycle."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response

from paymux.cashier import service as cashier
from paymux.funds.repository import FundsRepository
from paymux.funds.schemas import FundsOut
from paymux.kit.idempotency import IdempotentRoute, RequestKeyDep
from paymux.kit.web import ListResponse, PageDep, ReadSessionDep, RuntimeDep
from paymux.merchants.auth import AuthDep
from paymux.payments import intake, lifecycle, service, verification
from paymux.payments.repository import PaymentRepository
from paymux.payments.schemas import (
    AttemptOut,
    PaymentCreate,
    PaymentFilters,
    PaymentOut,
    PaymentVerify,
)
from paymux.payments.states import PaymentStatus

router = APIRouter(prefix="/v1/payments", tags=["payments"], route_class=IdempotentRoute)


@router.post("", status_code=201, response_model=PaymentOut)
async def create_payment(
    body: PaymentCreate, response: Response, auth: AuthDep, rt: RuntimeDep,
    request_key: RequestKeyDep,
) -> PaymentOut:  # fmt: skip
    """Create a payment and its order at a channel; answer with ``next_action``.

    A request the channels would refuse for its own sake (a missing field, an amount below a
    channel's minimum) is a 400 that creates nothing, so the same ``out_trade_no`` can be sent
    again corrected. A retry with the same ``Idempotency-Key`` and body after the first try
    died (a crash mid-request) answers with the payment that try made."""
    payment, spent = await intake.create(
        rt, app_id=auth.app_id, merchant_id=auth.merchant_id, livemode=auth.livemode,
        req=body, request_key=request_key,
    )  # fmt: skip
    response.headers["Paymux-Channel-Time-Ms"] = str(spent)
    return PaymentOut.of(payment, public_url=rt.settings.public_url)


@router.get("", response_model=ListResponse[PaymentOut])
async def list_payments(
    auth: AuthDep, rt: RuntimeDep, session: ReadSessionDep, page: PageDep,
    out_trade_no: Annotated[str | None, Query(max_length=64)] = None,
    status: PaymentStatus | None = None,
    created_gte: dt.datetime | None = None,
    created_lt: dt.datetime | None = None,
    store_code: Annotated[str | None, Query(max_length=40)] = None,
) -> ListResponse[PaymentOut]:  # fmt: skip
    """Newest first. Page with ``starting_after`` = the last id of the previous page.
    ``store_code`` (``sc_…``): only the payments customers made through that store code."""
    filters = PaymentFilters(
        out_trade_no=out_trade_no, status=status, created_gte=created_gte,
        created_lt=created_lt, store_code=store_code,
    )  # fmt: skip
    rows, has_more = await PaymentRepository(session).search(
        auth.app_id, auth.livemode, filters, limit=page.limit, starting_after=page.starting_after
    )
    public_url = rt.settings.public_url
    return ListResponse[PaymentOut](
        data=[PaymentOut.of(p, public_url=public_url) for p in rows], has_more=has_more
    )


@router.get("/{payment_id}", response_model=PaymentOut, response_model_exclude_none=False)
async def retrieve_payment(
    payment_id: str, auth: AuthDep, rt: RuntimeDep, session: ReadSessionDep,
    expand: Annotated[list[Literal["attempts", "cashier"]], Query()] = [],  # noqa: B006
    user_agent: Annotated[str, Header(max_length=1000)] = "",
) -> PaymentOut:  # fmt: skip
    """A payment; ``expand=attempts`` adds every channel attempt with the routing decision
    behind it (candidates considered, why excluded, scores, the rule, why this one);
    ``expand=cashier`` the methods the cashier offers now, best first, with why (for the
    environment of the ``User-Agent`` sent: forward the customer's)."""
    payment = await service.get(
        session, app_id=auth.app_id, livemode=auth.livemode, payment_id=payment_id
    )
    out = PaymentOut.of(payment, public_url=rt.settings.public_url)
    funds = await FundsRepository(session).get(payment.id)
    if funds is not None and funds.gross:
        out.funds = FundsOut.of(funds).model_dump(mode="json")
    if "attempts" in expand:
        attempts = await PaymentRepository(session).attempts_of(payment.id)
        out.attempts = [AttemptOut.of(a) for a in attempts]
    if "cashier" in expand:
        found = await cashier.view(rt, payment.id, user_agent=user_agent)
        if found is not None:
            out.cashier = {
                "environment": found.environment,
                "options": [
                    {"method": o.method, "reasons": list(o.reasons)} for o in found.options
                ],
                "current_method": found.current_method,
                "can_switch": found.can_switch,
            }
    return out


@router.post("/{payment_id}/close", response_model=PaymentOut)
async def close_payment(payment_id: str, auth: AuthDep, rt: RuntimeDep) -> PaymentOut:
    """Close an unpaid payment at the channel and here; closing a closed payment is a no-op."""
    payment = await lifecycle.close(
        rt, app_id=auth.app_id, livemode=auth.livemode, payment_id=payment_id
    )
    return PaymentOut.of(payment, public_url=rt.settings.public_url)


@router.post("/{payment_id}/verify", response_model=PaymentOut)
async def verify_payment(
    payment_id: str, body: PaymentVerify, auth: AuthDep, rt: RuntimeDep
) -> PaymentOut:
    """Record that you verified the customer of a challenged payment your own way (an SMS
    code, an identity document), so that it may proceed.

    A payment risk control challenged, whose channel cannot authenticate the customer itself
    (3-D Secure), is created with no order at any channel and ``next_action: {"type":
    "verify"}``. Once you call this, it is routed and its order opened: the answer carries the
    usual ``next_action`` (a QR code, a redirect…). A challenged cashier payment offers only
    the methods that can authenticate the customer until you verify it, then all of them.
    Verifying again answers the payment as it is (nothing happens twice); a payment that does
    not wait for a verification (never challenged, already final or expired) is a 409
    ``payment_not_awaiting_verification``."""
    payment = await verification.verify(
        rt, app_id=auth.app_id, livemode=auth.livemode, payment_id=payment_id, body=body
    )
    return PaymentOut.of(payment, public_url=rt.settings.public_url)

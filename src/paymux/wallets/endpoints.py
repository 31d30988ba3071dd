"""``/v1/wallets`` and ``/v1/wallet_transfers``: thin HTTP over wallets.service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit.idempotency import IdempotentRoute, RequestKeyDep
from paymux.kit.web import ListResponse, PageDep, ReadSessionDep, RuntimeDep, SessionDep
from paymux.merchants.auth import AuthDep
from paymux.payments import intake as payments
from paymux.payments.schemas import PaymentCreate, PaymentOut
from paymux.wallets import service
from paymux.wallets.models import Wallet
from paymux.wallets.schemas import (
    FreezeCreate,
    PointsCreate,
    StatementLine,
    TopUpCreate,
    TransferCreate,
    TransferOut,
    WalletCreate,
    WalletOut,
    WalletUpdate,
)

router = APIRouter(prefix="/v1", tags=["wallets"], route_class=IdempotentRoute)


async def _out(session: AsyncSession, wallet: Wallet) -> WalletOut:
    return WalletOut.of(wallet, await service.balances(session, wallet))


@router.post("/wallets", status_code=201, response_model=WalletOut)
async def create_wallet(body: WalletCreate, auth: AuthDep, session: SessionDep) -> WalletOut:
    wallet = await service.create(session, app_id=auth.app_id, livemode=auth.livemode, body=body)
    return await _out(session, wallet)


@router.get("/wallets/{wallet_id}", response_model=WalletOut)
async def retrieve_wallet(wallet_id: str, auth: AuthDep, session: ReadSessionDep) -> WalletOut:
    wallet = await service.get(session, auth.app_id, auth.livemode, wallet_id)
    return await _out(session, wallet)


@router.post("/wallets/{wallet_id}", response_model=WalletOut)
async def update_wallet(
    wallet_id: str, body: WalletUpdate, auth: AuthDep, session: SessionDep
) -> WalletOut:
    wallet = await service.get(session, auth.app_id, auth.livemode, wallet_id)
    wallet.verification_level = body.verification_level
    return await _out(session, wallet)


@router.get("/wallets/{wallet_id}/transactions", response_model=ListResponse[StatementLine])
async def wallet_statement(
    wallet_id: str, auth: AuthDep, session: ReadSessionDep, page: PageDep
) -> ListResponse[StatementLine]:
    """The wallet's statement (流水), newest first; ``starting_after`` a line id."""
    wallet = await service.get(session, auth.app_id, auth.livemode, wallet_id)
    lines, has_more = await service.statement(
        session, wallet, limit=page.limit, starting_after=page.starting_after
    )
    return ListResponse[StatementLine](data=lines, has_more=has_more)


@router.post("/wallets/{wallet_id}/freezes", response_model=WalletOut)
async def freeze_wallet(
    wallet_id: str, body: FreezeCreate, auth: AuthDep, session: SessionDep
) -> WalletOut:
    wallet = await service.get(session, auth.app_id, auth.livemode, wallet_id)
    await service.freeze(session, wallet, body)
    return await _out(session, wallet)


@router.post("/wallets/{wallet_id}/points", response_model=WalletOut)
async def wallet_points(
    wallet_id: str, body: PointsCreate, auth: AuthDep, session: SessionDep
) -> WalletOut:
    wallet = await service.get(session, auth.app_id, auth.livemode, wallet_id)
    await service.points(session, wallet, body)
    return await _out(session, wallet)


@router.post("/wallets/{wallet_id}/top_ups", status_code=201, response_model=PaymentOut)
async def top_up_wallet(
    wallet_id: str, body: TopUpCreate, auth: AuthDep, rt: RuntimeDep, request_key: RequestKeyDep
) -> PaymentOut:
    """Create a payment whose money goes into the wallet instead of the merchant's balance.

    Like a payment create, a retry with the same ``Idempotency-Key`` and body after the first
    try died answers with the payment that try made."""
    async with rt.db.read() as session:
        wallet = await service.get(session, auth.app_id, auth.livemode, wallet_id)
    req = PaymentCreate(
        amount=body.amount, currency=wallet.currency, method=body.method,
        out_trade_no=body.out_trade_no, subject=body.subject, customer=body.customer,
        return_url=body.return_url, metadata={"wallet_top_up": wallet.id},
    )  # fmt: skip
    payment, _ = await payments.create(
        rt, app_id=auth.app_id, merchant_id=auth.merchant_id, livemode=auth.livemode, req=req,
        top_up_wallet_id=wallet.id, request_key=request_key,
    )  # fmt: skip
    return PaymentOut.of(payment, public_url=rt.settings.public_url)


@router.post("/wallet_transfers", status_code=201, response_model=TransferOut)
async def create_transfer(body: TransferCreate, auth: AuthDep, session: SessionDep) -> TransferOut:
    """Move money between two wallets of the app; ``out_transfer_no`` makes a retry the same
    transfer."""
    return await service.transfer(session, app_id=auth.app_id, livemode=auth.livemode, body=body,
                                  merchant_id=auth.merchant_id)  # fmt: skip


@router.get("/balance")
async def merchant_balance(
    auth: AuthDep, session: ReadSessionDep,
    currency: Annotated[str, Query(pattern=r"^[A-Z]{3}$")] = "CNY",
) -> dict[str, object]:  # fmt: skip
    """The merchant's money: in escrow, pending settlement, available (less what open holds
    reserve) and held."""
    return {
        "object": "balance",
        "livemode": auth.livemode,
        "currency": currency,
        **await service.merchant_balance(session, auth.merchant_id, auth.livemode, currency),
    }

"""Wallets: balances and statements from the ledger; transfers, freezes and points as ledger
transactions keyed by the caller's request number (a retry is the same transaction)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit.errors import Conflict, InvalidRequest, NotFound
from paymux.kit.ids import new_id
from paymux.ledger import chart
from paymux.ledger import service as ledger
from paymux.ledger.chart import POINTS, Purpose
from paymux.ledger.models import LedgerAccount, LedgerTransaction, TxStatus
from paymux.ledger.repository import LedgerRepository
from paymux.risk import hooks as risk
from paymux.risk import signals
from paymux.risk.attributes import EventType
from paymux.wallets.models import Wallet
from paymux.wallets.schemas import (
    Balances,
    FreezeCreate,
    PointsCreate,
    StatementLine,
    TransferCreate,
    TransferOut,
    WalletCreate,
)

SUB_ACCOUNTS = (Purpose.available, Purpose.frozen, Purpose.pending)


async def create(session: AsyncSession, *, app_id: str, livemode: bool,
                 body: WalletCreate) -> Wallet:  # fmt: skip
    stmt = sa.select(Wallet).where(
        Wallet.app_id == app_id, Wallet.livemode == livemode,
        Wallet.reference == body.reference, Wallet.currency == body.currency,
    )  # fmt: skip
    if (await session.scalars(stmt)).first() is not None:
        raise Conflict("wallet_exists", f"A {body.currency} wallet for {body.reference!r} exists.",
                       param="reference")  # fmt: skip
    wallet = Wallet(
        id=new_id("wal"), app_id=app_id, livemode=livemode, owner_type=body.owner_type,
        reference=body.reference, currency=body.currency,
        verification_level=body.verification_level,
    )  # fmt: skip
    session.add(wallet)
    try:
        async with session.begin_nested():
            await session.flush()
    except sa.exc.IntegrityError:
        raise Conflict("wallet_exists", f"A {body.currency} wallet for {body.reference!r} "
                       "exists.", param="reference") from None  # fmt: skip
    for purpose in SUB_ACCOUNTS:
        await chart.wallet(session, wallet.id, purpose, wallet.currency)
    await chart.wallet(session, wallet.id, Purpose.points, POINTS)
    return wallet


async def get(session: AsyncSession, app_id: str, livemode: bool, wallet_id: str) -> Wallet:
    wallet = await session.get(Wallet, wallet_id)
    if wallet is None or (wallet.app_id, wallet.livemode) != (app_id, livemode):
        raise NotFound("wallet", wallet_id)
    return wallet


async def search(
    session: AsyncSession, app_id: str, livemode: bool, *, reference: str | None, limit: int,
    starting_after: str | None,
) -> tuple[list[Wallet], bool]:  # fmt: skip
    """The app's wallets, newest first (cursor: a wallet id); for the operator CLI."""
    stmt = sa.select(Wallet).where(Wallet.app_id == app_id, Wallet.livemode == livemode)
    if reference is not None:
        stmt = stmt.where(Wallet.reference == reference)
    if starting_after is not None:
        stmt = stmt.where(Wallet.id < starting_after)
    rows = list((await session.scalars(stmt.order_by(Wallet.id.desc()).limit(limit + 1))).all())
    return rows[:limit], len(rows) > limit


async def _accounts(session: AsyncSession, wallet: Wallet) -> dict[Purpose, LedgerAccount]:
    accounts = {p: await chart.wallet(session, wallet.id, p, wallet.currency)
                for p in SUB_ACCOUNTS}  # fmt: skip
    accounts[Purpose.points] = await chart.wallet(session, wallet.id, Purpose.points, POINTS)
    return accounts


async def balances(session: AsyncSession, wallet: Wallet) -> Balances:
    a = await _accounts(session, wallet)
    return Balances(
        available=a[Purpose.available].available, held=a[Purpose.available].pending_out,
        frozen=a[Purpose.frozen].balance, pending=a[Purpose.pending].balance,
        points=a[Purpose.points].balance,
    )  # fmt: skip


async def transfer(session: AsyncSession, *, app_id: str, livemode: bool,
                   body: TransferCreate, merchant_id: str) -> TransferOut:  # fmt: skip
    if body.source == body.destination:
        raise InvalidRequest("same_wallet", "Source and destination are the same wallet.",
                             param="destination")  # fmt: skip
    source = await get(session, app_id, livemode, body.source)
    destination = await get(session, app_id, livemode, body.destination)
    if source.currency != destination.currency:
        raise InvalidRequest("currency_mismatch", "The wallets hold different currencies.",
                             param="destination")  # fmt: skip
    src = await chart.wallet(session, source.id, Purpose.available, source.currency)
    dst = await chart.wallet(session, destination.id, Purpose.available, destination.currency)
    key = f"wallet_transfer:{app_id}:{livemode}:{body.out_transfer_no}"
    done = await LedgerRepository(session).transaction_by_key(key)
    screened = None
    if done is None:
        screened = await risk.screen_or_refuse(session, signals.Request(
            event=EventType.wallet_transfer, merchant_id=merchant_id, app_id=app_id,
            livemode=livemode, subject_type="transfer", amount=body.amount,
            currency=source.currency,
            values={"counterparty_id": destination.reference, "balance": src.available},
            customer_ref=source.reference, kyc_level=source.verification_level,
        ))  # fmt: skip
    post = ledger.hold if screened is not None and risk.waits(screened) else ledger.transfer
    tx = done or await post(
        session, key=key,
        legs=[ledger.debit(src, body.amount), ledger.credit(dst, body.amount)],
        description=body.description or f"transfer {source.id} → {destination.id}",
        metadata={"out_transfer_no": body.out_transfer_no, "kind": "wallet_transfer"},
    )  # fmt: skip
    if screened is not None:
        await risk.money_out_created(session, screened, tx.id, "transfers")
    return _transfer_out(tx, source, destination, body)


def _transfer_out(tx: LedgerTransaction, source: Wallet, destination: Wallet,
                  body: TransferCreate) -> TransferOut:  # fmt: skip
    status = {TxStatus.pending: "review", TxStatus.voided: "canceled"}.get(
        TxStatus(tx.status), "succeeded")  # fmt: skip
    return TransferOut(
        id=tx.id, source=source.id, destination=destination.id, amount=body.amount,
        currency=source.currency, out_transfer_no=body.out_transfer_no, status=status,
        created_at=tx.created_at,
    )  # fmt: skip


async def transfer_review_closed(session: AsyncSession, tx_id: str, approved: bool) -> None:
    """A risk review of a waiting transfer closed: approved, it is posted; declined, voided."""
    await (ledger.post_hold if approved else ledger.void_hold)(session, tx_id)


async def freeze(session: AsyncSession, wallet: Wallet, body: FreezeCreate) -> LedgerTransaction:
    """Move money between available and frozen (e.g. a dispute); refused beyond the balance."""
    available = await chart.wallet(session, wallet.id, Purpose.available, wallet.currency)
    frozen = await chart.wallet(session, wallet.id, Purpose.frozen, wallet.currency)
    src, dst = (available, frozen) if body.action == "freeze" else (frozen, available)
    return await ledger.transfer(
        session, key=f"wallet_freeze:{wallet.id}:{body.out_request_no}",
        legs=[ledger.debit(src, body.amount), ledger.credit(dst, body.amount)],
        description=body.reason or body.action, metadata={"kind": body.action},
    )  # fmt: skip


async def points(session: AsyncSession, wallet: Wallet, body: PointsCreate) -> LedgerTransaction:
    """Grant or redeem points (a non-currency unit issued by the platform)."""
    mine = await chart.wallet(session, wallet.id, Purpose.points, POINTS)
    issued = await chart.platform(session, wallet.livemode, Purpose.points_issued, POINTS)
    legs = ([ledger.debit(issued, body.points), ledger.credit(mine, body.points)]
            if body.action == "grant" else
            [ledger.debit(mine, body.points), ledger.credit(issued, body.points)])  # fmt: skip
    return await ledger.transfer(
        session, key=f"wallet_points:{wallet.id}:{body.out_request_no}", legs=legs,
        description=body.reason or body.action, metadata={"kind": f"points_{body.action}"},
    )  # fmt: skip


async def statement(
    session: AsyncSession, wallet: Wallet, *, limit: int, starting_after: str | None
) -> tuple[list[StatementLine], bool]:
    """The wallet's 流水: every posted movement of its sub-accounts, newest first."""
    accounts = await _accounts(session, wallet)
    purpose_of = {a.id: p for p, a in accounts.items()}
    rows, has_more = await LedgerRepository(session).statement(
        list(purpose_of), limit=limit, starting_after=starting_after
    )
    lines = []
    for entry, tx in rows:
        account = accounts[purpose_of[entry.account_id]]
        incoming = entry.side == account.normal
        lines.append(StatementLine(
            id=entry.id, account=purpose_of[entry.account_id].value,
            direction="in" if incoming else "out", amount=entry.amount, currency=entry.currency,
            description=tx.description, transaction=tx.id,
            metadata={k: str(v) for k, v in (tx.metadata_ or {}).items()},
            created_at=entry.created_at,
        ))  # fmt: skip
    return lines, has_more


async def merchant_balance(
    session: AsyncSession, merchant_id: str, livemode: bool, currency: str
) -> dict[str, int]:
    accounts = await chart.merchant_balances(session, merchant_id, livemode, currency)
    escrow, pending, available = (accounts[p] for p in
                                  (Purpose.escrow, Purpose.pending, Purpose.available))  # fmt: skip
    return {
        "escrow": escrow.balance if escrow else 0,
        "pending": pending.available if pending else 0,
        "available": available.available if available else 0,
        "held": sum(a.pending_out for a in accounts.values() if a is not None),
        "risk_hold": held.balance if (held := accounts[Purpose.risk_hold]) else 0,
    }

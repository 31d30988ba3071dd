"""Posting to the ledger. Every function takes the caller's session and never commits, so a
ledger posting commits with the business change it records (payment success, refund, …).

Rules enforced here, whatever the caller: legs balance per currency; an account only takes legs
in its own currency; accounts are row-locked in one global order before their balances move; an
account without ``allow_negative`` never goes below zero counting what its open holds reserve;
a key is one transaction (the same legs again return it, other legs are a 409); a hold is posted
or voided once; a transaction is reversed at most once. A refused operation changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit import clock
from paymux.kit.errors import Conflict, NotFound
from paymux.kit.ids import new_id
from paymux.ledger import posting
from paymux.ledger.models import LedgerAccount, LedgerTransaction, Side, TxStatus
from paymux.ledger.posting import Item, Leg, Posted, Transfer
from paymux.ledger.repository import LedgerRepository

__all__ = ["Leg", "Posted", "Transfer", "credit", "debit", "transfer", "transfer_many"]


def debit(account: LedgerAccount | str, amount: int) -> Leg:
    return Leg(account if isinstance(account, str) else account.id, Side.debit, amount)


def credit(account: LedgerAccount | str, amount: int) -> Leg:
    return Leg(account if isinstance(account, str) else account.id, Side.credit, amount)


# ------------------------------------------------------------------ accounts
async def open_account(
    session: AsyncSession,
    *,
    owner_type: str,
    owner_id: str,
    purpose: str,
    currency: str,
    normal: Side,
    allow_negative: bool = False,
) -> LedgerAccount:
    """The account for (owner, purpose, currency), created on first use (race-safe)."""
    repo = LedgerRepository(session)
    found = await repo.find_account(owner_type, owner_id, purpose, currency)
    if found is not None:
        return found
    account = LedgerAccount(
        id=new_id("la"), owner_type=owner_type, owner_id=owner_id, purpose=purpose,
        currency=currency, normal=normal, allow_negative=allow_negative, balance=0,
        pending_debits=0, pending_credits=0, version=0,
    )  # fmt: skip
    try:
        async with session.begin_nested():
            repo.add(account)
            await session.flush()
    except sa.exc.IntegrityError:  # opened concurrently by another transaction
        found = await repo.find_account(owner_type, owner_id, purpose, currency)
        assert found is not None
        return found
    return account


async def get_account(session: AsyncSession, account_id: str) -> LedgerAccount:
    account = await LedgerRepository(session).get_account(account_id)
    if account is None:
        raise NotFound("ledger account", account_id)
    return account


async def get_transaction(session: AsyncSession, tx_id: str) -> LedgerTransaction | None:
    return await session.get(LedgerTransaction, tx_id)


async def balance_as_of(session: AsyncSession, account_id: str, as_of: dt.datetime) -> int:
    """The posted balance (on the account's normal side) at a past moment, from its entries."""
    repo = LedgerRepository(session)
    account = await repo.get_account(account_id)
    if account is None:
        raise NotFound("ledger account", account_id)
    debits, credits = await repo.posted_sums(account_id, as_of)
    return debits - credits if account.normal == Side.debit else credits - debits


# ------------------------------------------------------------------ transactions
async def transfer(
    session: AsyncSession, *, key: str, legs: Sequence[Leg], description: str = "",
    metadata: dict[str, Any] | None = None,
) -> LedgerTransaction:  # fmt: skip
    """Post a balanced transaction now."""
    return await posting.post_one(
        session, Item(key, legs, TxStatus.posted, description, metadata or {})
    )


async def transfer_many(session: AsyncSession, transfers: Sequence[Transfer]) -> list[Posted]:
    """Post many balanced transactions at once, all or nothing, in the caller's transaction.

    The batch ends exactly where posting the same transfers one by one with :func:`transfer`
    would, at a fraction of the cost: a handful of statements for the whole batch (the touched
    accounts locked once in id order, so concurrent batches over the same accounts wait for each
    other instead of deadlocking), each touched account updated once.

    - Idempotency: a key recorded already (before, or earlier in this batch) with the same legs
      is not applied again — its :class:`Posted` says ``replayed`` and names the transaction
      that recorded it; a key reused for other legs refuses the batch (``ledger_key_reused``).
    - Floors: the transfers are applied in order; the first that would take an account without
      ``allow_negative`` below zero (counting what its open holds reserve) refuses the whole
      batch with ``insufficient_funds`` naming it (``param`` ``transfers[i]``, its key in the
      message). A refused batch changes nothing; to post the rest, drop that transfer and call
      again — the keys make a retry safe.
    - Any other bad transfer (key, legs, unknown account, unbalanced) refuses the batch too.

    Returns one :class:`Posted` per transfer, in order.
    """
    items = [Item(t.key, t.legs, TxStatus.posted, t.description, t.metadata or {})
             for t in transfers]  # fmt: skip
    try:
        return await posting.post_many(session, items)
    except sa.exc.IntegrityError as exc:
        # Only a key recorded by a concurrent transaction since the batch read the keys gets
        # here; the failed statement wrote nothing, and the caller's transaction must roll back.
        raise Conflict(
            "ledger_key_conflict",
            "A key of the batch was recorded concurrently; roll back and retry the batch.",
        ) from exc


async def hold(
    session: AsyncSession, *, key: str, legs: Sequence[Leg], description: str = "",
    metadata: dict[str, Any] | None = None, expires_at: dt.datetime | None = None,
) -> LedgerTransaction:  # fmt: skip
    """Reserve a balanced transaction: the money it moves out can no longer be spent, but no
    balance changes until :func:`post_hold`; :func:`void_hold` releases it."""
    return await posting.post_one(
        session, Item(key, legs, TxStatus.pending, description, metadata or {}, expires_at)
    )


async def post_hold(session: AsyncSession, tx_id: str) -> LedgerTransaction:
    return await _resolve_hold(session, tx_id, TxStatus.posted)


async def void_hold(session: AsyncSession, tx_id: str) -> LedgerTransaction:
    return await _resolve_hold(session, tx_id, TxStatus.voided)


async def reverse(
    session: AsyncSession, *, key: str, tx_id: str, description: str = ""
) -> LedgerTransaction:
    """Undo a posted transaction with its mirror image (entries are never edited)."""
    repo = LedgerRepository(session)
    original = await repo.lock_transaction(tx_id)
    if original is None:
        raise NotFound("ledger transaction", tx_id)
    existing = await repo.transaction_by_key(key)
    if existing is not None and existing.reverses_id == tx_id:
        return existing
    if original.status != TxStatus.posted:
        raise Conflict("transaction_not_posted", f"Only posted transactions can be reversed; "
                       f"{tx_id} is {original.status}.")  # fmt: skip
    if await repo.reversal_of(tx_id) is not None:
        raise Conflict("transaction_already_reversed", f"{tx_id} was reversed already.")
    mirror = [
        Leg(e.account_id, Side.credit if e.side == Side.debit else Side.debit, e.amount)
        for e in await repo.entries_of(tx_id)
    ]
    return await posting.post_one(
        session, Item(key, mirror, TxStatus.posted, description or f"reversal of {tx_id}",
                      {"reverses": tx_id}, reverses_id=tx_id),
    )  # fmt: skip


def _delta(account: LedgerAccount, leg: Leg) -> int:
    """How the leg moves the account's balance on its normal side."""
    return leg.amount if leg.side == account.normal else -leg.amount


async def _resolve_hold(session: AsyncSession, tx_id: str, target: TxStatus) -> LedgerTransaction:
    repo = LedgerRepository(session)
    tx = await repo.lock_transaction(tx_id)
    if tx is None:
        raise NotFound("ledger transaction", tx_id)
    if tx.status == target:
        return tx  # posting (or voiding) twice is the same single effect
    if tx.status != TxStatus.pending:
        raise Conflict("hold_not_pending", f"Hold {tx_id} is {tx.status}; it cannot be {target}.")
    entries = await repo.entries_of(tx_id)
    accounts = await repo.lock_accounts([e.account_id for e in entries])
    for entry in entries:
        account = accounts[entry.account_id]
        if entry.side == Side.debit:
            account.pending_debits -= entry.amount
        else:
            account.pending_credits -= entry.amount
        if target == TxStatus.posted:
            account.balance += _delta(account, Leg(entry.account_id, entry.side, entry.amount))
    for account in accounts.values():
        account.version += 1
    tx.status = target
    if target == TxStatus.posted:
        tx.posted_at = clock.now()
    return tx


async def void_expired_holds(session: AsyncSession, *, limit: int = 100) -> int:
    """Void holds past their ``expires_at`` (the worker's job)."""
    stmt = (
        sa.select(LedgerTransaction.id)
        .where(LedgerTransaction.status == TxStatus.pending,
               LedgerTransaction.expires_at.is_not(None),
               LedgerTransaction.expires_at <= clock.now())
        .limit(limit)
    )  # fmt: skip
    ids = list((await session.scalars(stmt)).all())
    for tx_id in ids:
        await void_hold(session, tx_id)
    return len(ids)

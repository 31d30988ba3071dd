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
import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit import clock
from paymux.kit.errors import Conflict, IdempotencyError, InvalidRequest, NotFound
from paymux.kit.ids import new_id
from paymux.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction, Side, TxStatus
from paymux.ledger.repository import LedgerRepository


@dataclass(frozen=True)
class Leg:
    account_id: str
    side: Side
    amount: int


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
    return await _record(session, key, legs, TxStatus.posted, description, metadata or {})


async def hold(
    session: AsyncSession, *, key: str, legs: Sequence[Leg], description: str = "",
    metadata: dict[str, Any] | None = None, expires_at: dt.datetime | None = None,
) -> LedgerTransaction:  # fmt: skip
    """Reserve a balanced transaction: the money it moves out can no longer be spent, but no
    balance changes until :func:`post_hold`; :func:`void_hold` releases it."""
    return await _record(
        session, key, legs, TxStatus.pending, description, metadata or {}, expires_at=expires_at
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
    return await _record(
        session, key, mirror, TxStatus.posted, description or f"reversal of {tx_id}",
        {"reverses": tx_id}, reverses_id=tx_id,
    )  # fmt: skip


def _fingerprint(legs: Sequence[Leg], status: TxStatus, reverses_id: str | None) -> str:
    canonical = sorted((leg.account_id, leg.side.value, leg.amount) for leg in legs)
    raw = json.dumps([canonical, status.value, reverses_id], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


def _validate(legs: Sequence[Leg]) -> None:
    if len(legs) < 2:
        raise InvalidRequest("ledger_legs_invalid", "A transaction needs at least two legs.")
    for leg in legs:
        if not isinstance(leg.amount, int) or isinstance(leg.amount, bool) or leg.amount <= 0:
            raise InvalidRequest(
                "ledger_legs_invalid", f"Leg amounts are positive integers, not {leg.amount!r}."
            )


def _delta(account: LedgerAccount, leg: Leg) -> int:
    """How the leg moves the account's balance on its normal side."""
    return leg.amount if leg.side == account.normal else -leg.amount


async def _record(
    session: AsyncSession, key: str, legs: Sequence[Leg], status: TxStatus, description: str,
    metadata: dict[str, Any], *, expires_at: dt.datetime | None = None,
    reverses_id: str | None = None,
) -> LedgerTransaction:  # fmt: skip
    if not key or len(key) > 200:
        raise InvalidRequest("ledger_key_invalid", "A ledger key is 1–200 characters.")
    _validate(legs)
    fingerprint = _fingerprint(legs, status, reverses_id)
    repo = LedgerRepository(session)
    accounts = await repo.lock_accounts([leg.account_id for leg in legs])
    # After the locks: a concurrent twin holding them has committed, so its key is visible.
    existing = await repo.transaction_by_key(key)
    if existing is not None:
        if existing.fingerprint != fingerprint:
            raise IdempotencyError(
                "ledger_key_reused", f"Ledger key {key!r} was used for a different transaction."
            )
        return existing
    missing = {leg.account_id for leg in legs} - accounts.keys()
    if missing:
        raise NotFound("ledger account", sorted(missing)[0])
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for leg in legs:
        account = accounts[leg.account_id]
        sums[account.currency][0 if leg.side == Side.debit else 1] += leg.amount
    unbalanced = {c: s for c, s in sums.items() if s[0] != s[1]}
    if unbalanced:
        raise InvalidRequest(
            "ledger_unbalanced", f"Debits and credits differ per currency: {unbalanced}."
        )
    _apply(accounts, legs, status)
    now = clock.now()
    tx = LedgerTransaction(
        id=new_id("ltx"), key=key, fingerprint=fingerprint, status=status,
        description=description[:500], metadata_=metadata, reverses_id=reverses_id,
        expires_at=expires_at, posted_at=now if status == TxStatus.posted else None,
    )  # fmt: skip
    repo.add(tx)
    await session.flush()  # the transaction row before its entries (FK order)
    for leg in legs:
        repo.add(
            LedgerEntry(
                id=new_id("le"), transaction_id=tx.id, account_id=leg.account_id,
                side=leg.side, amount=leg.amount, currency=accounts[leg.account_id].currency,
            )
        )  # fmt: skip
    await session.flush()
    return tx


def _apply(accounts: dict[str, LedgerAccount], legs: Sequence[Leg], status: TxStatus) -> None:
    """Move balances (posted) or reservations (pending), checking every floor first so a refusal
    leaves every account as it was."""
    balance = {a.id: a.balance for a in accounts.values()}
    pending_out = {a.id: a.pending_out for a in accounts.values()}
    for leg in legs:
        account = accounts[leg.account_id]
        delta = _delta(account, leg)
        if status == TxStatus.posted:
            balance[account.id] += delta
        elif delta < 0:
            pending_out[account.id] -= delta
    for account in accounts.values():
        if account.allow_negative:
            continue
        if balance[account.id] - pending_out[account.id] < 0 and (
            balance[account.id] < account.balance or pending_out[account.id] > account.pending_out
        ):
            raise Conflict(
                "insufficient_funds",
                f"Ledger account {account.id} has {account.available} available.",
            )
    for leg in legs:
        account = accounts[leg.account_id]
        if status == TxStatus.posted:
            account.balance += _delta(account, leg)
        elif leg.side == Side.debit:
            account.pending_debits += leg.amount
        else:
            account.pending_credits += leg.amount
    for account in accounts.values():
        account.version += 1


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

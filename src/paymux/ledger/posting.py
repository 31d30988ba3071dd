"""The one write path of the ledger: plan a list of transactions in Python over the locked
accounts, then write them with a fixed handful of statements, whatever their number.

``transfer``, ``hold`` and ``reverse`` post one transaction through here, ``transfer_many`` a
whole batch. Per call: one ``SELECT … FOR UPDATE`` of every touched account in id order (one
global lock order, so concurrent calls over overlapping accounts wait instead of deadlocking),
one ``SELECT`` of the keys already recorded (batches; a single transaction lets ``INSERT … ON
CONFLICT DO NOTHING`` find its key instead), then the writes: transactions, entries, and one
update per touched account with its net change — three statements, or one on PostgreSQL
(:mod:`paymux.ledger.repository`). The ORM is not involved: at ~1.5 ms of Python per flushed
transaction it was what limited the ledger's rate, not the database.

Planning walks the transactions in order, as if each were posted alone, so a batch ends exactly
where the same transactions posted one by one would (balances, reservations, versions), and the
first that would break a floor is the one named when the batch is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from paymux.kit import clock
from paymux.kit.errors import Conflict, IdempotencyError, InvalidRequest, NotFound, PaymuxError
from paymux.kit.ids import new_ids
from paymux.ledger.models import LedgerAccount, LedgerTransaction, Side, TxStatus
from paymux.ledger.repository import AccountRow, LedgerRepository, Writes


@dataclass(frozen=True)
class Leg:
    account_id: str
    side: Side
    amount: int


@dataclass(frozen=True)
class Transfer:
    """One balanced transaction of a :func:`paymux.ledger.service.transfer_many` batch."""

    key: str
    legs: Sequence[Leg]
    description: str = ""
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class Posted:
    """What a batch did with one of its transfers."""

    id: str
    """The ledger transaction that records it."""
    key: str
    replayed: bool
    """The key was recorded already (earlier, or earlier in the same batch) with the same legs:
    nothing was applied again."""


@dataclass(frozen=True)
class Item:
    """One transaction to record (any kind: transfer, hold, reversal)."""

    key: str
    legs: Sequence[Leg]
    status: TxStatus = TxStatus.posted
    description: str = ""
    metadata: dict[str, Any] | None = None
    expires_at: dt.datetime | None = None
    reverses_id: str | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.legs, self.status, self.reverses_id)


_COMPACT = json.JSONEncoder(separators=(",", ":")).encode


def fingerprint(legs: Sequence[Leg], status: TxStatus, reverses_id: str | None) -> str:
    """What a key stands for: the same legs (in any order), status and reversed transaction.

    The format is stored (every recorded key's fingerprint), so it never changes: the sides and
    status are str enums, which JSON writes as their values.
    """
    canonical = sorted([(leg.account_id, leg.side, leg.amount) for leg in legs])
    return hashlib.sha256(_COMPACT([canonical, status, reverses_id]).encode()).hexdigest()


# ------------------------------------------------------------------ validation
def where(batch: bool, index: int, key: str) -> str:
    return f"transfers[{index}] (key {key!r}): " if batch else ""


def validate(item: Item, *, batch: bool, index: int) -> None:
    """Shape checks that need no database: bad input is refused before any lock is taken."""
    at = where(batch, index, item.key)
    param = f"transfers[{index}]" if batch else None
    if not isinstance(item.key, str) or not item.key or len(item.key) > 200:
        raise InvalidRequest("ledger_key_invalid", f"{at}A ledger key is 1–200 characters.",
                             param=param)  # fmt: skip
    if len(item.legs) < 2:
        raise InvalidRequest("ledger_legs_invalid", f"{at}A transaction needs at least two legs.",
                             param=param)  # fmt: skip
    for leg in item.legs:
        amount = leg.amount
        if type(amount) is not int or amount <= 0:
            raise InvalidRequest("ledger_legs_invalid",
                                 f"{at}Leg amounts are positive integers, not {amount!r}.",
                                 param=param)  # fmt: skip
        if leg.side not in (Side.debit, Side.credit):
            raise InvalidRequest("ledger_legs_invalid", f"{at}A leg is a debit or a credit.",
                                 param=param)  # fmt: skip


# ------------------------------------------------------------------ planning
class _Account:
    """A locked account while a plan moves it: its state now, and where it started."""

    __slots__ = ("balance", "credit_normal", "currency", "floor", "last", "need",
                 "pending_credits", "pending_debits", "row", "versions")  # fmt: skip

    def __init__(self, row: AccountRow) -> None:
        self.row = row
        self.currency = row.currency
        self.credit_normal = row.normal == Side.credit
        self.floor = not row.allow_negative
        self.balance = row.balance
        self.pending_debits = row.pending_debits
        self.pending_credits = row.pending_credits
        self.versions = 0
        self.last = -1
        self.need: int | None = None
        """Blind plans: the least available amount the account must start with for every
        transaction that lowers it to keep it at or above zero (``None``: no such one)."""

    @property
    def pending_out(self) -> int:
        return self.pending_debits if self.credit_normal else self.pending_credits


@dataclass
class Plan:
    writes: Writes
    posted: list[Posted]
    accounts: dict[str, _Account]


def plan(
    items: Sequence[Item], fingerprints: Sequence[str], rows: dict[str, AccountRow],
    recorded: dict[str, tuple[str, str]], *, batch: bool, blind: bool = False,
) -> Plan:  # fmt: skip
    """Apply ``items`` in order to the locked accounts (in memory), or raise naming the first
    that cannot be recorded. ``recorded``: key → (transaction id, fingerprint) of keys already
    in the ledger.

    ``blind``: the rows' balances are unknown (zeros stand for them) and floors are not checked
    but turned into each account's :attr:`_Account.need`, which the write checks against the
    locked row — the net moves and versions do not depend on where the accounts start.
    """
    accounts = {i: _Account(r) for i, r in rows.items()}
    tx_ids = new_ids("ltx", len(items))
    writes = Writes(now=clock.now())
    posted: list[Posted] = []
    in_batch: dict[str, tuple[int, str, str]] = {}  # key → (index, fingerprint, tx id)
    add_entry = writes.add_entry
    for n, (item, fp) in enumerate(zip(items, fingerprints, strict=True)):
        key = item.key
        if key in recorded:
            tx_id, fp_then = recorded[key]
            if fp_then != fp:
                raise _reused(key, batch, n)
            posted.append(Posted(tx_id, key, True))
            continue
        if key in in_batch:
            first, fp_then, tx_id = in_batch[key]
            if fp_then != fp:
                raise _reused(key, batch, n, first)
            posted.append(Posted(tx_id, key, True))
            continue
        tx_id = tx_ids[n]
        _move(accounts, item, n, batch, blind)
        in_batch[key] = (n, fp, tx_id)
        posted.append(Posted(tx_id, key, False))
        writes.add_transaction(tx_id, key, fp, item.status, item.description, item.metadata,
                               item.reverses_id, item.expires_at)  # fmt: skip
        for leg in item.legs:
            add_entry(tx_id, leg.account_id, leg.side, leg.amount,
                      accounts[leg.account_id].currency)  # fmt: skip
    for account in accounts.values():
        if account.versions:
            row = account.row
            writes.add_move(row.id, account.balance - row.balance,
                            account.pending_debits - row.pending_debits,
                            account.pending_credits - row.pending_credits,
                            account.versions)  # fmt: skip
            if blind:
                writes.expect(row.currency, row.normal, row.allow_negative, account.need)
    writes.e_id = new_ids("le", len(writes.e_tx))
    return Plan(writes, posted, accounts)


def _reused(key: str, batch: bool, index: int, first: int | None = None) -> IdempotencyError:
    if first is not None:
        message = (f"transfers[{index}] reuses key {key!r} of transfers[{first}] for a "
                   "different transaction.")  # fmt: skip
    else:
        message = (f"{where(batch, index, key)}Ledger key {key!r} was used for a different "
                   "transaction.")  # fmt: skip
    return IdempotencyError(
        "ledger_key_reused", message, param=f"transfers[{index}]" if batch else None
    )


def _move(accounts: dict[str, _Account], item: Item, n: int, batch: bool, blind: bool) -> None:
    """Apply one transaction to the accounts in memory, or raise leaving them as they were."""
    param = f"transfers[{n}]" if batch else None
    sums: dict[str, list[int]] = {}
    for leg in item.legs:
        account = accounts.get(leg.account_id)
        if account is None:
            missing = NotFound("ledger account", leg.account_id)
            if batch:
                missing.message = f"{where(batch, n, item.key)}{missing.message}"
                missing.args = (missing.message,)
                missing.param = param
            raise missing
        sums.setdefault(account.currency, [0, 0])[leg.side == Side.credit] += leg.amount
    unbalanced = {c: s for c, s in sums.items() if s[0] != s[1]}
    if unbalanced:
        raise InvalidRequest(
            "ledger_unbalanced",
            f"{where(batch, n, item.key)}Debits and credits differ per currency: {unbalanced}.",
            param=param,
        )
    before: dict[str, tuple[int, int, int]] = {}
    posting = item.status == TxStatus.posted
    for leg in item.legs:
        account = accounts[leg.account_id]
        if leg.account_id not in before:
            before[leg.account_id] = (account.balance, account.pending_debits,
                                      account.pending_credits)  # fmt: skip
        debit_leg = leg.side == Side.debit
        if posting:
            normal_side = debit_leg != account.credit_normal
            account.balance += leg.amount if normal_side else -leg.amount
        elif debit_leg:
            account.pending_debits += leg.amount
        else:
            account.pending_credits += leg.amount
    for account_id, (balance, debits, credits) in before.items():
        account = accounts[account_id]
        pending_then = debits if account.credit_normal else credits
        if not account.floor or (account.balance >= balance
                                 and account.pending_out <= pending_then):  # fmt: skip
            continue  # only money leaving (or reserved) can break a floor
        if blind:  # from a start of zero: how much must have been available to stay ≥ 0
            need = account.pending_out - account.balance
            if account.need is None or need > account.need:
                account.need = need
            continue
        if account.balance - account.pending_out < 0:
            for a_id, (b, d, c) in before.items():  # leave every account as it was
                undo = accounts[a_id]
                undo.balance, undo.pending_debits, undo.pending_credits = b, d, c
            raise Conflict(
                "insufficient_funds",
                f"{where(batch, n, item.key)}Ledger account {account_id} has "
                f"{balance - pending_then} available.", param=param,
            )  # fmt: skip
    for account_id in before:
        account = accounts[account_id]
        if account.last != n:
            account.last = n
            account.versions += 1


# ------------------------------------------------------------------ posting
_KINDS: dict[str, tuple[str, str, bool]] = {}
"""Account id → (currency, normal side, allow_negative), which never change once an account is
opened: what a blind plan needs of an account. The checked write verifies each against the
locked row, so an entry that were wrong would only send the posting down the exact path."""
_KINDS_MAX = 100_000


async def _blind_rows(repo: LedgerRepository, ids: Collection[str]) -> dict[str, AccountRow] | None:
    """The accounts as a blind plan takes them (balances unknown), or None if one is missing."""
    missing = [i for i in ids if i not in _KINDS]
    if missing:
        found = await repo.account_kinds(missing)
        if len(_KINDS) + len(found) > _KINDS_MAX:
            _KINDS.clear()
        _KINDS.update(found)
        if len(found) < len(missing):
            return None  # the exact path names the unknown account
    kinds = _KINDS
    return {i: AccountRow(i, *kinds[i], 0, 0, 0, 0) for i in ids}


def _loaded(session: AsyncSession, ids: Collection[str]) -> bool:
    """Whether the session holds any of the accounts as objects (which the exact path keeps in
    step with what it writes)."""
    identity_map = session.sync_session.identity_map
    return bool(len(identity_map)) and any(
        identity_key(LedgerAccount, i) in identity_map for i in ids
    )


async def _post_blind(
    session: AsyncSession, repo: LedgerRepository, items: Sequence[Item],
    fingerprints: Sequence[str], ids: Collection[str], *, batch: bool,
) -> tuple[Plan, bool] | None:  # fmt: skip
    """The fast path: plan without reading balances, then lock, check and write in one
    statement; (the plan, whether it was written — a single transaction's concurrent twin may
    have recorded its key), or None when the exact path must decide (an account it must read,
    a floor a transfer may break, a key recorded already, objects of the session to keep in
    step, or no PostgreSQL)."""
    if not repo.checked_writes or _loaded(session, ids):
        return None
    rows = await _blind_rows(repo, ids)
    if rows is None:
        return None
    try:
        done = plan(items, fingerprints, rows, {}, batch=batch, blind=True)
    except PaymuxError:
        return None  # refused whatever the balances: the exact path says by which transfer
    held, written = await repo.write_checked(done.writes)
    if not held:
        return None
    if not written and batch:
        # A key of the batch was recorded by a transaction that committed while this one
        # waited for a row lock: the exact path reads it (as a replay, or a reused key).
        await repo.unwrite_transactions(done.writes.tx_id)
        return None
    return done, written


async def post_one(session: AsyncSession, item: Item) -> LedgerTransaction:
    """Record one transaction (or return the one its key already recorded with the same legs)."""
    validate(item, batch=False, index=0)
    fp = item.fingerprint
    repo = LedgerRepository(session)
    ids = {leg.account_id for leg in item.legs}
    fast = await _post_blind(session, repo, [item], [fp], ids, batch=False)
    if fast is not None:
        done, written = fast
        if not written:  # recorded a moment ago by a concurrent twin
            replay = await _replay(repo, item.key, fp)
            assert replay is not None
            return replay
        return _attach(session, done, item, fp)
    rows = await repo.lock_rows(ids)
    try:
        done = plan([item], [fp], rows, {}, batch=False)
    except PaymuxError:
        # Refused as new, but it may be a replay: the key decides, as if checked first.
        replay = await _replay(repo, item.key, fp)
        if replay is None:
            raise
        return replay
    if not await repo.write(done.writes, new_keys_only=True):
        # The key is recorded (maybe a moment ago, by a concurrent twin): nothing was written.
        replay = await _replay(repo, item.key, fp)
        assert replay is not None
        return replay
    _refresh(session, done.accounts)
    return _attach(session, done, item, fp)


async def post_many(session: AsyncSession, items: Sequence[Item]) -> list[Posted]:
    """Record a batch in one go: all of it, or (raising) none of it."""
    for n, item in enumerate(items):
        validate(item, batch=True, index=n)
    if not items:
        return []
    fingerprints = [fingerprint(item.legs, item.status, item.reverses_id) for item in items]
    repo = LedgerRepository(session)
    ids = {leg.account_id for item in items for leg in item.legs}
    fast = await _post_blind(session, repo, items, fingerprints, ids, batch=True)
    if fast is not None:
        return fast[0].posted
    rows = await repo.lock_rows(ids)
    recorded = await repo.recorded_keys({item.key for item in items})
    done = plan(items, fingerprints, rows, recorded, batch=True)
    if done.writes.tx_id:
        await repo.write(done.writes, new_keys_only=False)
        _refresh(session, done.accounts)
    return done.posted


async def _replay(repo: LedgerRepository, key: str, fp: str) -> LedgerTransaction | None:
    existing = await repo.transaction_by_key(key)
    if existing is None:
        return None
    if existing.fingerprint != fp:
        raise _reused(key, False, 0)
    return existing


def _refresh(session: AsyncSession, accounts: dict[str, _Account]) -> None:
    """Keep account objects the session has loaded in step with what was just written (the
    writes bypass the ORM), so a caller reading ``account.balance`` afterwards sees it."""
    identity_map = session.sync_session.identity_map
    if not len(identity_map):
        return
    for account_id, account in accounts.items():
        obj = identity_map.get(identity_key(LedgerAccount, account_id))
        if obj is None or not account.versions:
            continue
        for name, value in (("balance", account.balance),
                            ("pending_debits", account.pending_debits),
                            ("pending_credits", account.pending_credits),
                            ("version", account.row.version + account.versions)):  # fmt: skip
            set_committed_value(obj, name, value)


def _attach(session: AsyncSession, done: Plan, item: Item, fp: str) -> LedgerTransaction:
    """The written transaction as a persistent ORM object of the session (no extra query)."""
    w = done.writes
    tx = LedgerTransaction(
        id=w.tx_id[0], key=item.key, fingerprint=fp, status=item.status,
        description=w.description[0], metadata_=item.metadata or {},
        reverses_id=item.reverses_id, expires_at=item.expires_at,
        posted_at=w.now if item.status == TxStatus.posted else None, created_at=w.now,
    )  # fmt: skip
    make_transient_to_detached(tx)
    session.add(tx)
    return tx

"""The chart of accounts: which ledger account holds which money. Documented in docs/money.md.

Every account is (owner, purpose, currency). Live and test money never share an account: the
owner id of merchant, wallet and platform accounts carries the mode (channel accounts are of
one mode already).

Debit-normal (what the platform holds or has spent), may go negative:
- ``channel_account/<id>/clearing`` — money the channel holds for us (collected, not yet paid
  out or refunded by that channel account).
- ``platform/<mode>/channel_cost`` — fees the channels keep.

Credit-normal (what the platform owes), never below zero unless noted:
- ``merchant/<id>/escrow`` — paid into escrow, not yet released to the merchant.
- ``merchant/<id>/pending`` — released to the merchant, waiting for its settlement cycle.
- ``merchant/<id>/available`` — settled: withdrawable, and what refunds after settlement take.
- ``wallet/<id>/available``, ``…/frozen``, ``…/pending`` — a wallet's spendable, frozen and
  not-yet-settled money; ``…/points`` in the unit ``PTS``.
- ``platform/<mode>/fee_revenue`` — settlement fees, payout fees and split commissions.
- ``platform/<mode>/payouts_in_transit`` — withdrawals on their way through a channel.
- ``platform/<mode>/points_issued`` — debit-normal counterpart of every points balance (PTS).
- ``platform/<mode>/suspense``, ``…/fee_rounding`` — debit-normal, may go negative: where a
  reconciliation adjustment books a difference between a channel's bill and the books until it
  is explained (docs/reconciliation.md).
- ``platform/<mode>/settlement_in_transit`` — debit-normal: money a channel says it paid from
  its balance to the platform's bank account (a settlement in a funds bill), on its way to the
  bank; reconciliation books it from the channel account's clearing account.
"""

from __future__ import annotations

import weakref
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.ledger import service as ledger
from paymux.ledger.models import LedgerAccount, Side
from paymux.ledger.repository import LedgerRepository

POINTS = "PTS"
"""The unit of loyalty points: not a currency, never mixed with money in a transaction."""


class Purpose(StrEnum):
    clearing = "clearing"
    channel_cost = "channel_cost"
    escrow = "escrow"
    pending = "pending"
    available = "available"
    frozen = "frozen"
    points = "points"
    fee_revenue = "fee_revenue"
    payouts_in_transit = "payouts_in_transit"
    points_issued = "points_issued"
    suspense = "suspense"
    fee_rounding = "fee_rounding"
    settlement_in_transit = "settlement_in_transit"
    risk_hold = "risk_hold"
    """A merchant's money held by a risk decision until a review releases it."""


_DEBIT_NORMAL = {Purpose.clearing, Purpose.channel_cost, Purpose.points_issued,
                 Purpose.suspense, Purpose.fee_rounding,
                 Purpose.settlement_in_transit}  # fmt: skip


def mode_owner(owner_id: str, livemode: bool) -> str:
    return owner_id if livemode else f"{owner_id}:test"


_Key = tuple[str, str, str, str]
_IDS: weakref.WeakKeyDictionary[object, dict[_Key, str]] = weakref.WeakKeyDictionary()
"""Per database (engine): (owner type, owner, purpose, currency) → account id, for accounts a
committed transaction has seen. An account's id never changes and accounts are never deleted,
so the hot path names its accounts without reading them — and without loading them into the
session, which keeps the ledger's single-statement posting open to it."""
_IDS_MAX = 100_000


async def _account_id(
    session: AsyncSession, owner_type: str, owner_id: str, purpose: Purpose, currency: str
) -> str:
    """The account's id, the account opened on first use (race-safe)."""
    bind = session.get_bind()
    known = _IDS.get(bind)
    if known is None:
        known = _IDS.setdefault(bind, {})
    key = (owner_type, owner_id, purpose.value, currency)
    found = known.get(key)
    if found is not None:
        return found
    found = await LedgerRepository(session).find_account_id(*key)
    if found is None:
        debit_normal = purpose in _DEBIT_NORMAL
        found = (await ledger.open_account(
            session, owner_type=owner_type, owner_id=owner_id, purpose=purpose.value,
            currency=currency, normal=Side.debit if debit_normal else Side.credit,
            allow_negative=debit_normal,
        )).id  # fmt: skip

    def remember(_session: object, account_id: str = found) -> None:
        if len(known) >= _IDS_MAX:
            known.clear()
        known[key] = account_id

    # Only once committed: an account this transaction opened is gone if it rolls back.
    sa.event.listen(session.sync_session, "after_commit", remember, once=True)
    return found


async def _open(
    session: AsyncSession, owner_type: str, owner_id: str, purpose: Purpose, currency: str
) -> LedgerAccount:
    account_id = await _account_id(session, owner_type, owner_id, purpose, currency)
    return await ledger.get_account(session, account_id)


async def merchant_balances(
    session: AsyncSession, merchant_id: str, livemode: bool, currency: str
) -> dict[Purpose, LedgerAccount | None]:
    """The merchant's escrow, pending and available accounts if they exist (a read: opens
    nothing)."""
    repo = LedgerRepository(session)
    owner = mode_owner(merchant_id, livemode)
    return {p: await repo.find_account("merchant", owner, p.value, currency)
            for p in (Purpose.escrow, Purpose.pending, Purpose.available,
                      Purpose.risk_hold)}  # fmt: skip


# The accounts as objects (balances read in this transaction), and by id only (the hot path).
async def clearing(session: AsyncSession, channel_account_id: str, currency: str) -> LedgerAccount:
    return await _open(session, "channel_account", channel_account_id, Purpose.clearing, currency)


async def clearing_id(session: AsyncSession, channel_account_id: str, currency: str) -> str:
    return await _account_id(
        session, "channel_account", channel_account_id, Purpose.clearing, currency
    )


async def merchant(
    session: AsyncSession, merchant_id: str, livemode: bool, purpose: Purpose, currency: str
) -> LedgerAccount:
    owner = mode_owner(merchant_id, livemode)
    return await _open(session, "merchant", owner, purpose, currency)


async def merchant_account_id(
    session: AsyncSession, merchant_id: str, livemode: bool, purpose: Purpose, currency: str
) -> str:
    owner = mode_owner(merchant_id, livemode)
    return await _account_id(session, "merchant", owner, purpose, currency)


async def wallet(
    session: AsyncSession, wallet_id: str, purpose: Purpose, currency: str
) -> LedgerAccount:
    """A wallet's sub-account (wallet ids are of one mode already)."""
    return await _open(session, "wallet", wallet_id, purpose, currency)


async def wallet_account_id(
    session: AsyncSession, wallet_id: str, purpose: Purpose, currency: str
) -> str:
    return await _account_id(session, "wallet", wallet_id, purpose, currency)


async def platform(
    session: AsyncSession, livemode: bool, purpose: Purpose, currency: str
) -> LedgerAccount:
    return await _open(session, "platform", "live" if livemode else "test", purpose, currency)


async def platform_account_id(
    session: AsyncSession, livemode: bool, purpose: Purpose, currency: str
) -> str:
    return await _account_id(session, "platform", "live" if livemode else "test", purpose, currency)

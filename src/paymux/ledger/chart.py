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
"""

from __future__ import annotations

from enum import StrEnum

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


_DEBIT_NORMAL = {Purpose.clearing, Purpose.channel_cost, Purpose.points_issued}


def mode_owner(owner_id: str, livemode: bool) -> str:
    return owner_id if livemode else f"{owner_id}:test"


async def _open(
    session: AsyncSession, owner_type: str, owner_id: str, purpose: Purpose, currency: str
) -> LedgerAccount:
    debit_normal = purpose in _DEBIT_NORMAL
    return await ledger.open_account(
        session, owner_type=owner_type, owner_id=owner_id, purpose=purpose.value,
        currency=currency, normal=Side.debit if debit_normal else Side.credit,
        allow_negative=debit_normal,
    )  # fmt: skip


async def merchant_balances(
    session: AsyncSession, merchant_id: str, livemode: bool, currency: str
) -> dict[Purpose, LedgerAccount | None]:
    """The merchant's escrow, pending and available accounts if they exist (a read: opens
    nothing)."""
    repo = LedgerRepository(session)
    owner = mode_owner(merchant_id, livemode)
    return {p: await repo.find_account("merchant", owner, p.value, currency)
            for p in (Purpose.escrow, Purpose.pending, Purpose.available)}  # fmt: skip


async def clearing(session: AsyncSession, channel_account_id: str, currency: str) -> LedgerAccount:
    return await _open(session, "channel_account", channel_account_id, Purpose.clearing, currency)


async def merchant(
    session: AsyncSession, merchant_id: str, livemode: bool, purpose: Purpose, currency: str
) -> LedgerAccount:
    owner = mode_owner(merchant_id, livemode)
    return await _open(session, "merchant", owner, purpose, currency)


async def wallet(
    session: AsyncSession, wallet_id: str, purpose: Purpose, currency: str
) -> LedgerAccount:
    """A wallet's sub-account (wallet ids are of one mode already)."""
    return await _open(session, "wallet", wallet_id, purpose, currency)


async def platform(
    session: AsyncSession, livemode: bool, purpose: Purpose, currency: str
) -> LedgerAccount:
    return await _open(session, "platform", "live" if livemode else "test", purpose, currency)

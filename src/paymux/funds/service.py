"""The money of each payment, posted to the ledger in the caller's transaction.

- success: the channel's clearing account (or the paying wallet) → the merchant's escrow or
  pending account, or the wallet being topped up; the channel's fee → channel cost;
- refund: reserved (a ledger hold) from wherever the payment's money is now, posted when the
  channel confirms, voided when it fails;
- escrow release: escrow → pending, and the settlement clock starts.

Splits and settlement move the rest (``splits``, ``settlement``). Nothing here does I/O beyond
the session; the callers own locking of the payment row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.funds.models import EscrowState, PaymentFunds
from paymux.funds.repository import FundsRepository
from paymux.kit import clock, money
from paymux.kit.errors import Conflict
from paymux.ledger import chart
from paymux.ledger import service as ledger
from paymux.ledger.chart import Purpose
from paymux.ledger.models import LedgerAccount
from paymux.payments.models import Payment

DEFAULT_AUTO_CONFIRM = dt.timedelta(days=7)
PAYMENT_KEY_PREFIX = "payment:"
"""The ledger key of a payment's success posting is this + the payment id (reconciliation
finds a record's money in the books by it)."""
REFUND_KEY_PREFIX = "refund:"
"""The ledger key of a refund's hold (posted when the refund succeeds) is this + its id."""


def plan(
    payment: Payment, *, escrow_seconds: int | None = None, top_up_wallet_id: str | None = None
) -> PaymentFunds:
    """The funds row of a new payment: what should happen to its money once paid."""
    return PaymentFunds(
        payment_id=payment.id, app_id=payment.app_id, merchant_id=payment.merchant_id,
        livemode=payment.livemode, currency=payment.currency, source_account_id="",
        top_up_wallet_id=top_up_wallet_id, gross=0, channel_fee=0, refunded=0,
        refund_reserved=0, split_out=0, fee=0,
        escrow_state=EscrowState.held if escrow_seconds is not None else EscrowState.none,
        escrow_seconds=escrow_seconds, escrow_deadline=None, settle_due_at=None,
    )  # fmt: skip


async def _funds(session: AsyncSession, payment: Payment) -> PaymentFunds:
    repo = FundsRepository(session)
    funds = await repo.lock(payment.id)
    if funds is None:  # a payment made before funds were tracked: plain, no escrow
        funds = plan(payment)
        repo.add(funds)
        await session.flush()
    return funds


async def location(session: AsyncSession, funds: PaymentFunds) -> LedgerAccount:
    """The account where the payment's remaining money sits now."""
    return await ledger.get_account(session, await location_id(session, funds))


async def location_id(session: AsyncSession, funds: PaymentFunds) -> str:
    """The id of :func:`location`'s account (without reading it)."""
    if funds.top_up_wallet_id is not None:
        return await chart.wallet_account_id(session, funds.top_up_wallet_id, Purpose.available,
                                             funds.currency)  # fmt: skip
    if funds.risk_held:
        purpose = Purpose.risk_hold
    elif funds.escrow_state == EscrowState.held:
        purpose = Purpose.escrow
    elif funds.settlement_id is None:
        purpose = Purpose.pending
    else:
        purpose = Purpose.available
    return await chart.merchant_account_id(session, funds.merchant_id, funds.livemode, purpose,
                                           funds.currency)  # fmt: skip


def _start_clocks(funds: PaymentFunds, now: dt.datetime, settle_after: dt.datetime) -> None:
    """The money is the merchant's to come: escrow's auto-confirm deadline, or the day it
    settles (a wallet top-up neither)."""
    if funds.escrow_state == EscrowState.held:
        seconds = funds.escrow_seconds
        funds.escrow_deadline = now + (
            dt.timedelta(seconds=seconds) if seconds else DEFAULT_AUTO_CONFIRM
        )
    elif funds.top_up_wallet_id is None:
        funds.settle_due_at = settle_after


def _channel_fee(amount: int, rate_bps: int) -> int:
    """The channel's fee, rounded half up to the minor unit (what WeChat and Alipay do)."""
    return money.bps_of(amount, rate_bps)


async def on_payment_succeeded(
    session: AsyncSession, payment: Payment, *, source: LedgerAccount | None = None,
    channel_fee_bps: int = 0, settle_after: dt.datetime | None = None, risk_hold: bool = False,
) -> PaymentFunds:  # fmt: skip
    """Post the money of a payment that just succeeded (once: the ledger key is the payment).
    ``source`` is the paying wallet for wallet payments; by default the channel account's
    clearing account."""
    funds = await _funds(session, payment)
    if funds.gross:
        return funds
    # By id, nothing read: the posting is then one statement (ledger.posting's fast path).
    if source is None:
        assert payment.channel_account_id is not None
        source_id = await chart.clearing_id(session, payment.channel_account_id,
                                            payment.currency)  # fmt: skip
        funds.channel_fee = _channel_fee(payment.amount, channel_fee_bps)
    else:
        source_id = source.id
        funds.channel_fee = 0 if source.owner_type == "wallet" else _channel_fee(
            payment.amount, channel_fee_bps)  # fmt: skip
    now = clock.now()
    funds.source_account_id = source_id
    funds.gross = payment.amount
    funds.risk_held = risk_hold
    if not risk_hold:  # held: the escrow and settlement clocks start when it is released
        _start_clocks(funds, now, settle_after or now)
    target = await location_id(session, funds)
    legs = [ledger.credit(target, payment.amount)]
    if funds.channel_fee:
        cost = await chart.platform_account_id(session, payment.livemode, Purpose.channel_cost,
                                               payment.currency)  # fmt: skip
        legs.append(ledger.debit(cost, funds.channel_fee))
    if payment.amount - funds.channel_fee:
        legs.append(ledger.debit(source_id, payment.amount - funds.channel_fee))
    posted = await ledger.transfer(
        session, key=f"{PAYMENT_KEY_PREFIX}{payment.id}", legs=legs,
        description=f"payment {payment.id} succeeded", metadata={"payment": payment.id},
    )  # fmt: skip
    funds.posting_id = posted.id
    return funds


# ------------------------------------------------------------------ refunds
def fee_share(funds: PaymentFunds, amount: int, given: int, *, last: bool) -> int:
    """The part of the payment's channel fee a refund of ``amount`` gets back, when the channel
    returns fees: in proportion to the gross, rounded half up, never more than is left of the
    fee (``given`` went back with earlier refunds); the last refund gets all that is left."""
    left = max(funds.channel_fee - given, 0)
    if last or not funds.gross:
        return left
    share = (2 * funds.channel_fee * amount + funds.gross) // (2 * funds.gross)
    return min(share, left)


async def reserve_refund(
    session: AsyncSession, payment: Payment, refund_id: str, amount: int, *,
    returns: Sequence[ledger.Leg] = (), fee_returned: int = 0,
) -> str:  # fmt: skip
    """Hold the refund's amount where the payment's money is, with ``returns`` (the split
    receivers' share, debits) taken back in the same hold; refused, changing nothing, when the
    money is no longer there. Returns the hold's ledger transaction id.

    ``fee_returned``: the channel fee the channel gives back with the refund (see
    :func:`fee_share`): the source clearing account pays out that much less, and channel cost
    gets it back."""
    funds = await _funds(session, payment)
    if not funds.gross:
        raise Conflict("payment_not_refundable", "The payment's money has not arrived.")
    returned = sum(leg.amount for leg in returns)
    if amount > funds.remaining + returned:
        raise Conflict(
            "refund_exceeds_payment",
            f"{funds.remaining + returned} of the payment is left to refund (the rest was "
            "refunded or split off through the channel).", param="amount",
        )  # fmt: skip
    here = await location(session, funds)
    source = await ledger.get_account(session, funds.source_account_id)
    legs = [*returns]
    if fee_returned and source.owner_type == "channel_account":
        cost = await chart.platform_account_id(session, payment.livemode, Purpose.channel_cost,
                                               payment.currency)  # fmt: skip
        legs.append(ledger.credit(cost, fee_returned))
        if amount - fee_returned:
            legs.append(ledger.credit(source, amount - fee_returned))
    else:
        legs.append(ledger.credit(source, amount))
    if amount - returned:
        legs.append(ledger.debit(here, amount - returned))
    try:
        tx = await ledger.hold(
            session, key=f"{REFUND_KEY_PREFIX}{refund_id}", legs=legs,
            description=f"refund {refund_id} of {payment.id}",
            metadata={"payment": payment.id, "refund": refund_id},
        )  # fmt: skip
    except Conflict as exc:
        if exc.code != "insufficient_funds":
            raise
        raise Conflict(
            "insufficient_merchant_balance",
            "The money of this payment is no longer there (it was settled and withdrawn, or a "
            "split receiver spent its share).",
            param="amount",
        ) from None
    funds.refund_reserved += amount
    funds.split_out -= returned
    return tx.id


async def finish_refund(
    session: AsyncSession, payment_id: str, hold_id: str, amount: int, *, succeeded: bool,
    returned: int = 0,
) -> bool:  # fmt: skip
    """Post (money went back) or void (it did not) a refund's hold, once. Returns whether this
    call resolved it."""
    funds = await FundsRepository(session).lock(payment_id)
    assert funds is not None
    tx = await ledger.get_transaction(session, hold_id)
    if tx is None or tx.status != "pending":
        return False
    funds.refund_reserved -= amount
    if succeeded:
        await ledger.post_hold(session, hold_id)
        funds.refunded += amount
        if funds.escrow_state == EscrowState.held and funds.refunded >= funds.gross:
            funds.escrow_state = EscrowState.refunded
    else:
        await ledger.void_hold(session, hold_id)
        funds.split_out += returned
    return True


# ------------------------------------------------------------------ risk holds
async def release_risk_hold(
    session: AsyncSession, payment: Payment, *, settle_after: dt.datetime
) -> PaymentFunds:
    """A reviewer released a held payment: what is left goes where it would have gone (escrow,
    pending) and its escrow and settlement clocks start now."""
    funds = await _funds(session, payment)
    if not funds.risk_held:
        raise Conflict("payment_not_held", "The payment's money is not held by risk.")
    if funds.refund_reserved:
        raise Conflict("refund_in_progress", "Wait for the payment's refunds to finish.")
    held_id = await location_id(session, funds)
    funds.risk_held = False
    _start_clocks(funds, clock.now(), settle_after)
    amount = funds.remaining
    if amount:
        target = await location_id(session, funds)
        await ledger.transfer(
            session, key=f"risk_release:{payment.id}",
            legs=[ledger.debit(held_id, amount), ledger.credit(target, amount)],
            description=f"risk hold of {payment.id} released", metadata={"payment": payment.id},
        )  # fmt: skip
    return funds


# ------------------------------------------------------------------ escrow
async def release_escrow(
    session: AsyncSession, payment: Payment, *, by: str, settle_after: dt.datetime
) -> PaymentFunds:
    """Escrow → pending for what is left; the settlement clock starts now. Refunds in flight
    stay reserved in escrow until they end (then settle with the rest)."""
    funds = await _funds(session, payment)
    if funds.escrow_state != EscrowState.held:
        raise Conflict(
            "escrow_not_held", f"The payment's escrow is {funds.escrow_state}; nothing to release."
        )
    if funds.refund_reserved:
        raise Conflict("refund_in_progress", "Wait for the payment's refunds to finish.")
    amount = funds.remaining
    if amount:
        escrow = await location(session, funds)
        pending = await chart.merchant(session, funds.merchant_id, funds.livemode,
                                       Purpose.pending, funds.currency)  # fmt: skip
        await ledger.transfer(
            session, key=f"escrow_release:{payment.id}",
            legs=[ledger.debit(escrow, amount), ledger.credit(pending, amount)],
            description=f"escrow of {payment.id} released by {by}",
            metadata={"payment": payment.id},
        )  # fmt: skip
    funds.escrow_state = EscrowState.released
    funds.escrow_released_at = clock.now()
    funds.escrow_released_by = by
    funds.settle_due_at = settle_after
    return funds

"""Profit sharing. A split divides what is left of a paid payment (exact allocation) among
wallets here (one ledger transfer) or accounts at the channel (a ledger hold, the channel's
profit-sharing call by the worker, then post or void), plus a platform commission.

Refunds after a split take the receivers' proportional share back in the refund's own hold
(:func:`refund_returns`), so a failed refund gives it back and a successful one is final.
Channel splits cannot be taken back here: a refund can use only the unsplit remainder.
"""

from __future__ import annotations

import datetime as dt
from typing import cast

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channel_accounts import service as channel_service
from paymux.channel_accounts.models import ChannelAccount
from paymux.channels import base
from paymux.funds import service as funds_service
from paymux.funds.models import EscrowState, PaymentFunds
from paymux.funds.repository import FundsRepository
from paymux.kit import clock
from paymux.kit.errors import Conflict, InvalidRequest, NotFound
from paymux.kit.ids import new_id
from paymux.ledger import chart
from paymux.ledger import service as ledger
from paymux.ledger.chart import Purpose
from paymux.payments.models import Payment
from paymux.payments.repository import PaymentRepository
from paymux.payments.states import PaymentStatus
from paymux.runtime import Runtime
from paymux.splits.allocation import AllocationError, Share, allocate, proportional_return
from paymux.splits.models import SPLIT_TRANSITIONS, Split, SplitPart, SplitStatus, Trigger, Via
from paymux.splits.repository import SplitRepository
from paymux.splits.schemas import SplitOut, SplitSpec
from paymux.wallets.models import Wallet
from paymux.webhooks import service as webhooks

log = structlog.get_logger(__name__)

QUERY_BACKOFF = (5, 30, 120, 600, 1800, 3600)


async def declare(
    session: AsyncSession, payment: Payment, spec: SplitSpec
) -> tuple[Split, list[SplitPart]]:
    """Record a split of a (locked) payment; run it now if its trigger has passed."""
    if payment.status in (PaymentStatus.failed, PaymentStatus.closed, PaymentStatus.expired):
        raise Conflict("payment_not_splittable", f"The payment is {payment.status}.")
    via = Via.ledger if not spec.receivers or spec.receivers[0].wallet else Via.channel
    for receiver in spec.receivers:
        if receiver.wallet is not None:
            wallet = await session.get(Wallet, receiver.wallet)
            if wallet is None or (wallet.app_id, wallet.livemode) != (
                payment.app_id, payment.livemode,
            ):  # fmt: skip
                raise NotFound("wallet", receiver.wallet)
            if wallet.currency != payment.currency:
                raise InvalidRequest(
                    "currency_mismatch",
                    f"Wallet {wallet.id} holds "
                    f"{wallet.currency}, the payment is {payment.currency}.",
                )
    split = Split(
        id=new_id("spl"), app_id=payment.app_id, livemode=payment.livemode,
        payment_id=payment.id, currency=payment.currency, trigger=spec.trigger, via=via,
        status=SplitStatus.scheduled, commission_bps=spec.commission_bps,
        commission_fixed=spec.commission_amount, commission=0, commission_reversed=0,
        base_amount=0, total=0,
        query_count=0,
    )  # fmt: skip
    repo = SplitRepository(session)
    repo.add(split)
    await session.flush()
    parts = []
    for seq, receiver in enumerate(spec.receivers):
        part = SplitPart(
            id=new_id("spp"), split_id=split.id, seq=seq, wallet_id=receiver.wallet,
            channel_type=receiver.channel_type.value if receiver.channel_type else None,
            channel_receiver=receiver.channel_account, name=receiver.name,
            description=receiver.description, fixed_amount=receiver.amount,
            bps=receiver.percent_bps, amount=0, reversed=0,
        )  # fmt: skip
        repo.add(part)
        parts.append(part)
    await session.flush()
    if payment.status == PaymentStatus.succeeded and spec.trigger != Trigger.manual:
        funds = await FundsRepository(session).lock(payment.id)
        if funds is not None and _trigger_passed(split, funds):
            await execute(session, split, payment)
    return split, parts


def _trigger_passed(split: Split, funds: PaymentFunds) -> bool:
    if funds.escrow_state == EscrowState.held:
        return False
    if split.trigger == Trigger.on_release:
        return funds.escrow_state == EscrowState.released
    return split.trigger == Trigger.realtime


async def on_money_moved(session: AsyncSession, payment: Payment, funds: PaymentFunds) -> None:
    """After a payment succeeded or its escrow was released: run the splits now due. ``funds``
    is the payment's funds row, locked by the caller in this transaction."""
    for split in await SplitRepository(session).of_payment(payment.id):
        if split.status == SplitStatus.scheduled and _trigger_passed(split, funds):
            await execute(session, split, payment)


async def execute(session: AsyncSession, split: Split, payment: Payment) -> Split:
    """Divide what is left of the payment now. A split that cannot run fails (changing no
    money) with its reason."""
    if split.status != SplitStatus.scheduled:
        raise Conflict("split_not_scheduled", f"The split is {split.status}.")
    if payment.status != PaymentStatus.succeeded:
        raise Conflict("payment_not_splittable", "Only a succeeded payment can be split.")
    funds = await FundsRepository(session).lock(payment.id)
    assert funds is not None
    if funds.escrow_state == EscrowState.held:
        raise Conflict("escrow_held", "The payment's money is in escrow until released.")
    parts = await SplitRepository(session).parts(split.id)
    base_amount = funds.remaining
    shares = [Share(p.fixed_amount, p.bps) for p in parts]
    shares.append(Share(split.commission_fixed, split.commission_bps))
    try:
        amounts = allocate(base_amount, shares)
    except AllocationError as exc:
        return await _fail(session, split, "split_exceeds_payment", str(exc))
    for part, amount in zip(parts, amounts, strict=False):
        part.amount = amount
    split.base_amount = base_amount
    split.commission = amounts[-1]
    split.total = sum(amounts)
    split.executed_at = clock.now()
    if split.total == 0:
        return await _move(session, split, SplitStatus.succeeded)
    here = await funds_service.location(session, funds)
    legs = [ledger.debit(here, split.total)]
    if split.commission:
        revenue = await chart.platform(session, split.livemode, Purpose.fee_revenue,
                                       split.currency)  # fmt: skip
        legs.append(ledger.credit(revenue, split.commission))
    if split.via == Via.ledger:
        for part in parts:
            if part.amount:
                assert part.wallet_id is not None
                wallet = await chart.wallet(session, part.wallet_id, Purpose.available,
                                            split.currency)  # fmt: skip
                legs.append(ledger.credit(wallet, part.amount))
    else:
        assert payment.channel_account_id is not None
        clearing = await chart.clearing(session, payment.channel_account_id, split.currency)
        channel_total = split.total - split.commission
        if channel_total:
            legs.append(ledger.credit(clearing, channel_total))
    key = f"split:{split.id}"
    try:
        if split.via == Via.ledger:
            tx = await ledger.transfer(session, key=key, legs=legs, description=f"split {split.id}",
                                       metadata={"payment": payment.id})  # fmt: skip
        else:
            tx = await ledger.hold(session, key=key, legs=legs, description=f"split {split.id}",
                                   metadata={"payment": payment.id})  # fmt: skip
    except Conflict as exc:
        return await _fail(session, split, exc.code, exc.message)
    split.ledger_transaction_id = tx.id
    funds.split_out += split.total
    if split.via == Via.ledger:
        return await _move(session, split, SplitStatus.succeeded)
    split.due_at = clock.now()
    return await _move(session, split, SplitStatus.processing)


async def _fail(session: AsyncSession, split: Split, code: str, message: str) -> Split:
    split.failure_code = code[:64]
    split.failure_message = message[:500]
    return await _move(session, split, SplitStatus.failed)


async def _move(session: AsyncSession, split: Split, target: SplitStatus) -> Split:
    if target not in SPLIT_TRANSITIONS[SplitStatus(split.status)]:
        return split
    split.status = target
    if target != SplitStatus.processing:
        split.due_at = None
    if target in (SplitStatus.succeeded, SplitStatus.partial, SplitStatus.failed):
        parts = await SplitRepository(session).parts(split.id)
        await webhooks.emit(
            session, app_id=split.app_id, livemode=split.livemode, type=f"split.{target.value}",
            data=SplitOut.of(split, parts).model_dump(mode="json"),
        )  # fmt: skip
    return split


# ------------------------------------------------------------------ refunds after a split
async def refund_returns(
    session: AsyncSession, funds: PaymentFunds, amount: int
) -> tuple[list[ledger.Leg], dict[str, int]]:
    """The legs taking back the split receivers' proportional share of a refund of ``amount``
    (wallet receivers and commission), and how much each part returns. Reserves them on the
    parts; :func:`undo_returns` gives them back if the refund fails."""
    legs: list[ledger.Leg] = []
    returned: dict[str, int] = {}
    after = funds.refunded + funds.refund_reserved + amount
    for split in await SplitRepository(session).of_payment(funds.payment_id):
        if split.status != SplitStatus.succeeded or split.via != Via.ledger:
            continue
        for part in await SplitRepository(session).parts(split.id):
            back = proportional_return(part.amount, part.reversed, after, funds.gross)
            if back and part.wallet_id is not None:
                wallet = await chart.wallet(session, part.wallet_id, Purpose.available,
                                            split.currency)  # fmt: skip
                legs.append(ledger.debit(wallet, back))
                part.reversed += back
                returned[part.id] = back
        commission_back = proportional_return(
            split.commission, split.commission_reversed, after, funds.gross
        )
        if commission_back:
            revenue = await chart.platform(session, split.livemode, Purpose.fee_revenue,
                                           split.currency)  # fmt: skip
            legs.append(ledger.debit(revenue, commission_back))
            split.commission_reversed += commission_back
            returned[f"commission:{split.id}"] = commission_back
    return legs, returned


async def undo_returns(session: AsyncSession, returned: dict[str, int]) -> None:
    for key, back in returned.items():
        if key.startswith("commission:"):
            split = await session.get(Split, key.removeprefix("commission:"))
            if split is not None:
                split.commission_reversed -= back
            continue
        part = await session.get(SplitPart, key)
        if part is not None:
            part.reversed -= back


# ------------------------------------------------------------------ channel splits (worker)
async def process(rt: Runtime, split_id: str) -> None:
    """Send a processing channel split (or ask about it) and record the answer."""
    async with rt.db.read() as session:
        split = await session.get(Split, split_id)
        if split is None or split.status != SplitStatus.processing:
            return
        payment = await session.get(Payment, split.payment_id)
        assert payment is not None and payment.channel_account_id is not None
        account = await session.get(ChannelAccount, payment.channel_account_id)
        assert account is not None
        parts = await SplitRepository(session).parts(split.id)
    adapter = channel_service.adapter_for(rt.vault, account, rt.channel_http)
    state: base.SplitState | base.ChannelError
    if not hasattr(adapter, "create_split"):
        state = base.BusinessError(
            "split_not_supported", f"{account.channel} cannot split through its API here."
        )
    else:
        request = base.CreateSplit(
            out_order_no=split.id, out_trade_no=payment.current_attempt_id or "",
            channel_trade_no=payment.channel_trade_no or "",
            receivers=tuple(
                base.SplitReceiver(
                    type=base.SplitReceiverType(p.channel_type or "person"),
                    account=p.channel_receiver or "", amount=p.amount,
                    description=p.description, name=p.name,
                )
                for p in parts if p.amount
            ),
        )  # fmt: skip
        splitter = cast(base.SplitCapable, adapter)
        try:
            if split.query_count == 0:
                state = await splitter.create_split(request)
            else:
                found = await splitter.query_split(split.id, request.out_trade_no,
                                                   request.channel_trade_no)  # fmt: skip
                missing = found.status is base.ChannelSplitStatus.not_found
                state = await splitter.create_split(request) if missing else found
        except base.ChannelError as exc:
            state = exc
    async with rt.db.transaction() as session:
        locked = await SplitRepository(session).lock(split_id)
        assert locked is not None
        if locked.status != SplitStatus.processing:
            return
        locked.query_count += 1
        await _record(session, locked, state)


async def _record(
    session: AsyncSession, split: Split, state: base.SplitState | base.ChannelError
) -> None:
    if isinstance(state, base.SplitState) and state.status is base.ChannelSplitStatus.partial:
        return await _record_partial(session, split, state)
    succeeded = (
        isinstance(state, base.SplitState) and state.status is base.ChannelSplitStatus.succeeded
    )
    failed = isinstance(state, base.BusinessError) or (
        isinstance(state, base.SplitState) and state.status is base.ChannelSplitStatus.failed
    )
    if succeeded:
        assert split.ledger_transaction_id is not None
        await ledger.post_hold(session, split.ledger_transaction_id)
        await _set_results(session, split, base.ChannelSplitStatus.succeeded)
        await _move(session, split, SplitStatus.succeeded)
    elif failed:
        assert split.ledger_transaction_id is not None
        await ledger.void_hold(session, split.ledger_transaction_id)
        funds = await FundsRepository(session).lock(split.payment_id)
        assert funds is not None
        funds.split_out -= split.total
        await _set_results(session, split, base.ChannelSplitStatus.failed)
        code = state.code if isinstance(state, base.ChannelError) else (
            state.failure_code or "split_failed")  # fmt: skip
        message = state.message if isinstance(state, base.ChannelError) else (
            state.failure_message or "")  # fmt: skip
        await _fail(session, split, code, message)
    else:
        step = QUERY_BACKOFF[min(split.query_count, len(QUERY_BACKOFF) - 1)]
        split.due_at = clock.now() + dt.timedelta(seconds=step)


async def _set_results(session: AsyncSession, split: Split,
                       result: base.ChannelSplitStatus) -> None:  # fmt: skip
    for part in await SplitRepository(session).parts(split.id):
        if part.amount:
            part.result = result.value


async def _record_partial(session: AsyncSession, split: Split, state: base.SplitState) -> None:
    """Some receivers were paid, the others not: post the split's hold as it is, then bring the
    unpaid receivers' money back from the channel's clearing account to the merchant (at the
    channel it never left the merchant's account)."""
    parts = [p for p in await SplitRepository(session).parts(split.id) if p.amount]
    unpaid: list[SplitPart] = []
    for result in state.receivers:
        if result.status is not base.ChannelSplitStatus.failed:
            continue
        match = next((p for p in parts if p.channel_receiver == result.account
                      and p not in unpaid and result.amount in (None, p.amount)), None)  # fmt: skip
        if match is None:  # the channel names a receiver we did not send: never guess
            log.error("split_partial_unmatched", split=split.id, account=result.account)
            split.due_at = clock.now() + dt.timedelta(seconds=QUERY_BACKOFF[-1])
            return
        unpaid.append(match)
    assert split.ledger_transaction_id is not None
    await ledger.post_hold(session, split.ledger_transaction_id)
    back = sum(p.amount for p in unpaid)
    if back:
        payment = await session.get(Payment, split.payment_id)
        funds = await FundsRepository(session).lock(split.payment_id)
        assert payment is not None and payment.channel_account_id is not None
        assert funds is not None
        clearing = await chart.clearing(session, payment.channel_account_id, split.currency)
        here = await funds_service.location(session, funds)
        await ledger.transfer(
            session, key=f"split_unpaid:{split.id}",
            legs=[ledger.debit(clearing, back), ledger.credit(here, back)],
            description=f"split {split.id}: receivers the channel did not pay",
            metadata={"payment": split.payment_id, "split": split.id},
        )  # fmt: skip
        funds.split_out -= back
        split.total -= back
    for part in parts:
        part.result = "failed" if part in unpaid else "succeeded"
    split.failure_code = (state.failure_code or "partially_paid")[:64]
    split.failure_message = (state.failure_message or "")[:500] or None
    await _move(session, split, SplitStatus.partial)


async def get(session: AsyncSession, app_id: str, livemode: bool, split_id: str) -> Split:
    split = await SplitRepository(session).get(app_id, livemode, split_id)
    if split is None:
        raise NotFound("split", split_id)
    return split


async def payment_for(session: AsyncSession, app_id: str, livemode: bool,
                      payment_id: str) -> Payment:  # fmt: skip
    repo = PaymentRepository(session)
    found = await repo.get(app_id, livemode, payment_id)
    if found is None:
        raise NotFound("payment", payment_id)
    return await repo.lock(found.id)

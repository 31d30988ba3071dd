"""Payouts: on request the amount and fee are held on the source balance (limits checked under
the source account's lock, so concurrent requests cannot pass a limit or overdraw); express ones
are sent at once, standard ones in the next day's batch by the worker. The channel's transfer
number is the payout id, so re-sending after a crash or timeout cannot pay twice. Success posts
the hold and moves the money out of the channel's clearing account; failure voids it."""

from __future__ import annotations

import datetime as dt
from typing import cast

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channel_accounts import service as channel_service
from paymux.channel_accounts.models import ChannelAccount
from paymux.channels import base
from paymux.kit import clock, money
from paymux.kit.errors import Conflict, InvalidRequest, NotFound
from paymux.kit.ids import new_id
from paymux.ledger import chart
from paymux.ledger import service as ledger
from paymux.ledger.chart import Purpose
from paymux.ledger.repository import LedgerRepository
from paymux.merchants.models import App
from paymux.payouts import policy
from paymux.payouts.models import PAYOUT_TRANSITIONS, Payout, PayoutStatus, Speed
from paymux.payouts.repository import PayoutRepository
from paymux.payouts.schemas import PayoutCreate, PayoutOut
from paymux.risk import hooks as risk
from paymux.runtime import Runtime
from paymux.wallets.models import Wallet
from paymux.webhooks import service as webhooks

log = structlog.get_logger(__name__)

CHANNEL_FOR: dict[base.PayeeType, str] = {
    base.PayeeType.alipay_login_id: "alipay",
    base.PayeeType.alipay_user_id: "alipay",
    base.PayeeType.alipay_open_id: "alipay",
    base.PayeeType.wechat_openid: "wechatpay",
}
"""Which channel pays which kind of destination (bank cards: no channel yet)."""

PAYOUT_PAID_KEY_PREFIX = "payout_paid:"
"""Key prefix of a paid payout's ledger transaction (its money leaving the channel account's
clearing account); reconciliation finds a payout's books by it."""

QUERY_BACKOFF = (10, 60, 300, 1800, 3600, 6 * 3600)


def _duplicate(out_payout_no: str) -> Conflict:
    return Conflict("duplicate_out_payout_no",
                    f"out_payout_no {out_payout_no!r} was used for another payout.",
                    param="out_payout_no")  # fmt: skip


async def create(
    session: AsyncSession, *, app_id: str, merchant_id: str, livemode: bool, body: PayoutCreate
) -> tuple[Payout, bool]:
    """Hold and record a payout; (payout, created) — a repeat of the same request returns the
    first payout."""
    repo = PayoutRepository(session)
    existing = await repo.find(app_id, livemode, body.out_payout_no)
    if existing is not None:
        if (existing.amount, existing.destination_account) != (
            body.amount, body.destination.account):  # fmt: skip
            raise _duplicate(body.out_payout_no)
        return existing, False
    money.check_amount(body.amount, body.currency)
    channel = CHANNEL_FOR.get(body.destination.type)
    if channel is None:
        raise InvalidRequest(
            "unsupported_destination",
            f"No channel pays out to {body.destination.type} here.",
            param="destination.type",
        )
    account = await repo.transfer_account(app_id, channel, "live" if livemode else "test")
    if account is None:
        raise InvalidRequest("no_payout_channel", f"Configure a {channel} channel account to pay "
                             "out to this destination.", param="destination.type")  # fmt: skip
    if body.amount < policy.MIN_PAYOUT:
        raise InvalidRequest("amount_too_small", f"Payouts start at {policy.MIN_PAYOUT}.",
                             param="amount")  # fmt: skip
    customer: str | None = None
    if body.source == "merchant":
        source_type, source_id, level = "merchant", merchant_id, policy.MERCHANT_LEVEL
        src = await chart.merchant(session, merchant_id, livemode, Purpose.available,
                                   body.currency)  # fmt: skip
    else:
        wallet = await session.get(Wallet, body.source)
        if wallet is None or (wallet.app_id, wallet.livemode) != (app_id, livemode):
            raise NotFound("wallet", body.source)
        if wallet.currency != body.currency:
            raise InvalidRequest("currency_mismatch", f"The wallet holds {wallet.currency}.",
                                 param="currency")  # fmt: skip
        source_type, source_id, level = "wallet", wallet.id, wallet.verification_level
        customer = wallet.reference
        src = await chart.wallet(session, wallet.id, Purpose.available, wallet.currency)
    # Limits are risk rules (by KYC level, over the source's payout counters), screened under
    # the source account's row lock: concurrent payouts of one balance queue here and each
    # sees the counters of the one before, so neither a limit nor the balance is overrun.
    await LedgerRepository(session).lock_accounts([src.id])
    now = clock.now()
    screened = await risk.screen_or_refuse(session, risk.payout_request(
        merchant_id=merchant_id, app_id=app_id, livemode=livemode, amount=body.amount,
        currency=body.currency, customer_ref=customer or f"merchant:{merchant_id}",
        kyc_level=level, payee_account=body.destination.account,
        payee_type=body.destination.type.value,
        balance=(await ledger.get_account(session, src.id)).available,
    ))  # fmt: skip
    fee = policy.fee(body.speed, body.amount)
    payout_id = new_id("po")
    in_transit = await chart.platform(session, livemode, Purpose.payouts_in_transit,
                                      body.currency)  # fmt: skip
    legs = [ledger.debit(src, body.amount + fee), ledger.credit(in_transit, body.amount)]
    if fee:
        legs.append(
            ledger.credit(
                await chart.platform(session, livemode, Purpose.fee_revenue, body.currency), fee
            )
        )
    hold = await ledger.hold(session, key=f"payout:{payout_id}", legs=legs,
                             description=f"payout {payout_id}",
                             metadata={"payout": payout_id, "kind": "payout"})  # fmt: skip
    payout = Payout(
        id=payout_id, app_id=app_id, livemode=livemode, out_payout_no=body.out_payout_no,
        source_type=source_type, source_id=source_id, currency=body.currency,
        amount=body.amount, fee=fee, speed=body.speed, destination_type=body.destination.type,
        destination_account=body.destination.account, destination_name=body.destination.name,
        channel=channel, channel_account_id=account.id,
        status=PayoutStatus.review if risk.waits(screened) else PayoutStatus.pending,
        ledger_hold_id=hold.id, due_at=policy.send_at(body.speed, now), sent_count=0,
    )  # fmt: skip
    repo.add(payout)
    try:
        async with session.begin_nested():
            await session.flush()
    except sa.exc.IntegrityError:
        raise _duplicate(body.out_payout_no) from None
    await risk.money_out_created(session, screened, payout.id, "payouts")
    return payout, True


async def review_closed(session: AsyncSession, payout_id: str, approved: bool) -> None:
    """A risk review of a waiting payout closed: approved, it goes out as requested (express
    now, standard in the next batch); declined, its hold is voided."""
    payout = await PayoutRepository(session).lock(payout_id)
    assert payout is not None
    if payout.status != PayoutStatus.review:
        return
    if approved:
        payout.due_at = policy.send_at(Speed(payout.speed), clock.now())
        payout.status = PayoutStatus.pending
        return
    await ledger.void_hold(session, payout.ledger_hold_id)
    payout.failure_code, payout.failure_message = "risk_declined", "Declined by risk review."
    await _move(session, payout, PayoutStatus.failed)


async def send(rt: Runtime, payout_id: str) -> None:
    """Send a due payout, or ask the channel about one sent before; record the answer."""
    async with rt.db.read() as session:
        payout = await session.get(Payout, payout_id)
        if payout is None or payout.status not in (PayoutStatus.pending, PayoutStatus.processing):
            return
        account = await session.get(ChannelAccount, payout.channel_account_id)
        assert account is not None
    adapter = channel_service.adapter_for(rt.vault, account, rt.channel_http)
    answer: base.TransferState | base.ChannelError
    if not hasattr(adapter, "create_transfer"):
        answer = base.BusinessError("payout_not_supported", f"{account.channel} cannot pay out.")
    else:
        payer = cast(base.TransferCapable, adapter)
        request = base.CreateTransfer(
            out_biz_no=payout.id, amount=payout.amount, currency=payout.currency,
            payee_type=base.PayeeType(payout.destination_type),
            payee_account=payout.destination_account, payee_name=payout.destination_name,
            remark="提现", notify_url=channel_service.notify_url(rt.settings.public_url, account),
        )  # fmt: skip
        try:
            if payout.sent_count:
                found = await payer.query_transfer(payout.id)
                missing = found.status is base.ChannelTransferStatus.not_found
                answer = await payer.create_transfer(request) if missing else found
            else:
                answer = await payer.create_transfer(request)
        except base.ChannelError as exc:
            answer = exc
    async with rt.db.transaction() as session:
        locked = await PayoutRepository(session).lock(payout_id)
        assert locked is not None
        locked.sent_count += 1
        await record(session, locked, answer)


async def apply_notification(
    session: AsyncSession, account: ChannelAccount, state: base.TransferState
) -> str:
    """A verified transfer notification, cross-checked against our own payout."""
    payout = await PayoutRepository(session).lock(state.out_biz_no)
    if payout is None or payout.channel_account_id != account.id:
        raise base.InvalidNotification("unknown_payout", "No such payout for this account.")
    if state.amount is not None and state.amount != payout.amount:
        raise base.InvalidNotification(
            "amount_mismatch", f"Notified transfer of {state.amount}, ours is {payout.amount}."
        )
    if payout.status not in (PayoutStatus.pending, PayoutStatus.processing):
        return "no_change"
    if state.status not in (base.ChannelTransferStatus.succeeded,
                            base.ChannelTransferStatus.failed):  # fmt: skip
        return "no_change"
    await record(session, payout, state)
    return "applied"


async def record(
    session: AsyncSession, payout: Payout, answer: base.TransferState | base.ChannelError
) -> None:
    if isinstance(answer, base.TransferState):
        if answer.channel_transfer_no and not payout.channel_transfer_no:
            payout.channel_transfer_no = answer.channel_transfer_no[:64]
        status = answer.status
    else:
        status = (base.ChannelTransferStatus.failed if isinstance(answer, base.BusinessError)
                  else base.ChannelTransferStatus.pending)  # fmt: skip
    if status is base.ChannelTransferStatus.succeeded:
        await ledger.post_hold(session, payout.ledger_hold_id)
        in_transit = await chart.platform(session, payout.livemode, Purpose.payouts_in_transit,
                                          payout.currency)  # fmt: skip
        clearing = await chart.clearing(session, payout.channel_account_id, payout.currency)
        await ledger.transfer(
            session, key=f"{PAYOUT_PAID_KEY_PREFIX}{payout.id}",
            legs=[ledger.debit(in_transit, payout.amount), ledger.credit(clearing, payout.amount)],
            description=f"payout {payout.id} paid by {payout.channel}",
            metadata={"payout": payout.id, "kind": "payout"},
        )  # fmt: skip
        payout.succeeded_at = (answer.finished_at if isinstance(answer, base.TransferState)
                               else None) or clock.now()  # fmt: skip
        await _move(session, payout, PayoutStatus.succeeded)
    elif status is base.ChannelTransferStatus.failed:
        await ledger.void_hold(session, payout.ledger_hold_id)
        if isinstance(answer, base.ChannelError):
            payout.failure_code, payout.failure_message = answer.code[:64], answer.message[:500]
        else:
            payout.failure_code = (answer.failure_code or "payout_failed")[:64]
            payout.failure_message = (answer.failure_message or "")[:500] or None
        await _move(session, payout, PayoutStatus.failed)
    else:  # accepted, pending, unknown, or never reached the channel: ask again later
        step = QUERY_BACKOFF[min(payout.sent_count - 1, len(QUERY_BACKOFF) - 1)]
        payout.due_at = clock.now() + dt.timedelta(seconds=step)
        await _move(session, payout, PayoutStatus.processing)


async def _move(session: AsyncSession, payout: Payout, target: PayoutStatus) -> None:
    if payout.status == target or target not in PAYOUT_TRANSITIONS[PayoutStatus(payout.status)]:
        return
    payout.status = target
    if target in (PayoutStatus.succeeded, PayoutStatus.failed):
        payout.due_at = None
    if target == PayoutStatus.failed:
        await _give_back_limits(session, payout)
    await webhooks.emit(session, app_id=payout.app_id, livemode=payout.livemode,
                        type=f"payout.{target.value}",
                        data=PayoutOut.of(payout).model_dump(mode="json"))  # fmt: skip


async def _give_back_limits(session: AsyncSession, payout: Payout) -> None:
    """A failed payout stops counting toward its source's withdrawal limits."""
    app = await session.get(App, payout.app_id)
    assert app is not None
    if payout.source_type == "wallet":
        wallet = await session.get(Wallet, payout.source_id)
        assert wallet is not None
        customer, level = wallet.reference, wallet.verification_level
    else:
        customer, level = f"merchant:{app.merchant_id}", policy.MERCHANT_LEVEL
    await risk.payout_failed(session, risk.payout_request(
        merchant_id=app.merchant_id, app_id=payout.app_id, livemode=payout.livemode,
        amount=payout.amount, currency=payout.currency, customer_ref=customer, kyc_level=level,
        payee_account=payout.destination_account, payee_type=payout.destination_type,
        balance=0,
    ), payout.created_at)  # fmt: skip


async def get(session: AsyncSession, app_id: str, livemode: bool, payout_id: str) -> Payout:
    payout = await PayoutRepository(session).get(app_id, livemode, payout_id)
    if payout is None:
        raise NotFound("payout", payout_id)
    return payout

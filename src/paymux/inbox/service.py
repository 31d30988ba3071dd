"""The callback inbox: verify → store raw (unique on the channel's event) → apply once → ack.

A notification that fails verification is answered with a 4xx and leaves no trace but a log
line. One that verifies but fails the cross-check against our own order (another account's
order, a success without its amount, a wrong amount or currency) is kept raw as ``rejected``,
changes nothing and is refused so the channel sends it again; the janitor's query decides.
A redelivered rejected notification is checked again; any other duplicate is acknowledged
without effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channel_accounts import service as channel_service
from paymux.channel_accounts.models import ChannelAccount
from paymux.channel_accounts.repository import ChannelAccountRepository
from paymux.channels import base
from paymux.inbox.models import ChannelEvent
from paymux.inbox.repository import InboxRepository
from paymux.kit import clock
from paymux.kit.ids import new_id
from paymux.payments import transitions as payments
from paymux.payouts import service as payouts
from paymux.refunds import service as refunds
from paymux.runtime import Runtime

log = structlog.get_logger(__name__)

_KEPT_HEADERS = ("content-type", "user-agent", "request-id")
REJECTED = "rejected"


@dataclass(frozen=True)
class Received:
    ack: base.Ack
    result: str
    """``applied``, ``no_change``, ``duplicate``, ``rejected`` or ``unknown_account``."""


def _rejected(ack: base.Ack) -> base.Ack:
    # The channel's own refusal body, with a 4xx status so nothing upstream mistakes it for 2xx.
    return base.Ack(status_code=400, body=ack.body, media_type=ack.media_type)


async def _apply(
    rt: Runtime, session: AsyncSession, account: ChannelAccount, note: base.Notification
) -> str:
    """Apply a stored notification; ``applied`` if it changed anything, else ``no_change``."""
    if note.transfer is not None:
        return await payouts.apply_notification(session, account, note.transfer)
    results = []
    if note.refund is not None:  # first: refund → payment is the lock order everywhere
        # A refund riding on a trade notification (Alipay) may be one made outside paymux
        # (the merchant's Alipay console): not ours to apply, and no reason to refuse the trade.
        riding = note.payment is not None
        results.append(
            await refunds.apply_notification(session, account, note.refund, strict=not riding)
        )
    if note.payment is not None:
        results.append(
            await payments.apply_notification(
                session, account, note.payment, rt.settings.public_url
            )
        )
    return "applied" if "applied" in results else results[0]


async def receive(
    rt: Runtime, *, channel: str, account_id: str, headers: Mapping[str, str], body: bytes
) -> Received | None:
    """Handle one notification. None when the account does not exist (the caller answers 404)."""
    async with rt.db.read() as session:
        account = await ChannelAccountRepository(session).get(account_id)
    if account is None or account.channel != channel:
        return None
    adapter = channel_service.adapter_for(rt.vault, account, rt.channel_http)
    try:
        note = await adapter.parse_notification(headers, body)
    except base.InvalidNotification as exc:
        log.warning("notification_rejected", account=account_id, code=exc.code, why=exc.message)
        return Received(_rejected(adapter.ack(False)), "rejected")

    def stored(result: str) -> ChannelEvent:
        return ChannelEvent(
            id=new_id("cev"), channel=channel, channel_account_id=account_id,
            event_key=note.event_key[:128], out_trade_no=note.reference[:64],
            headers={k: v for k, v in headers.items() if k.lower().startswith(
                ("wechatpay-", *_KEPT_HEADERS))},
            body=body.decode("utf-8", errors="replace"), result=result, received_at=clock.now(),
        )  # fmt: skip

    try:
        async with rt.db.transaction() as session:
            repo = InboxRepository(session)
            # Stored as applied, what nearly every notification turns out to be, and corrected
            # below when it is not: one statement less on the common path (nobody sees the row
            # before the transaction commits, and then with its real result).
            event = stored("applied")
            if not await repo.insert_event(event):
                seen = await repo.get_event(account_id, event.event_key)
                if seen is None or seen.result != REJECTED:
                    return Received(adapter.ack(True), "duplicate")
                event = seen
            result = await _apply(rt, session, account, note)
            if result != event.result:
                await repo.set_result(event.id, result)
    except base.InvalidNotification as refused:
        # The refusal rolled back the apply and the event's row with it (no savepoint: two
        # round trips on every notification for the rare refusal). Keep what the channel sent,
        # as rejected; a row already there — rejected before, or applied by a redelivery that
        # raced this one — stays as it is.
        async with rt.db.transaction() as session:
            await InboxRepository(session).insert_event(stored(REJECTED))
        log.warning("notification_mismatch", account=account_id, code=refused.code,
                    why=refused.message)  # fmt: skip
        return Received(_rejected(adapter.ack(False)), REJECTED)
    log.info("notification", account=account_id, key=note.event_key, result=result)
    return Received(adapter.ack(True), result)

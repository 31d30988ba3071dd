"""The review queue's actions on a break. Every action needs a reason and is recorded with who
did it and when (``recon_break_events``). Actions that move money — a refund, an adjustment
above the account's ``approval_threshold`` — are only requested by one person and carried out
when a second, different person approves them (maker-checker)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channel_accounts.repository import ChannelAccountRepository
from paymux.kit import clock
from paymux.kit.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from paymux.kit.ids import new_id
from paymux.ledger import chart
from paymux.ledger import service as ledger
from paymux.ledger.chart import Purpose
from paymux.payments.models import Payment
from paymux.recon.models import (
    ApprovalState,
    BreakState,
    ReconApproval,
    ReconBreak,
    ReconBreakEvent,
    ReconConfig,
    Resolution,
)
from paymux.recon.repository import ReconRepository
from paymux.recon.schemas import (
    ApprovalOut,
    BreakAction,
    BreakDetail,
    BreakOut,
    ConfigIn,
    EventOut,
    Scope,
)
from paymux.refunds.models import Refund, RefundStatus
from paymux.refunds.repository import RefundRepository

_RESOLVING = {
    "link": Resolution.linked, "mark_received": Resolution.received,
    "ignore": Resolution.ignored, "void": Resolution.voided,
}  # fmt: skip


def _event(repo: ReconRepository, b: ReconBreak, action: str, actor: str, reason: str,
           **data: Any) -> None:  # fmt: skip
    repo.add(ReconBreakEvent(id=new_id("rbe"), break_id=b.id, action=action, actor=actor,
                             reason=reason, data=data))  # fmt: skip


async def _open_break(repo: ReconRepository, break_id: str, scope: Any) -> ReconBreak:
    b = await repo.lock_break(break_id)
    if b is None or not scope.sees(b.app_id, b.livemode):
        raise NotFound("break", break_id)
    return b


async def act(
    session: AsyncSession, break_id: str, body: BreakAction, *, actor: str, scope: Any
) -> tuple[ReconBreak, ReconApproval | None]:
    """Apply ``body`` to a break, or — for money-moving actions — request it for approval."""
    repo = ReconRepository(session)
    b = await _open_break(repo, break_id, scope)
    if b.state == BreakState.resolved:
        raise Conflict("break_resolved", f"The break was resolved ({b.resolution}).")
    if body.action in _RESOLVING:
        if body.action == "link" and not body.records:
            raise InvalidRequest("records_required", "Name the record(s) to link.",
                                 param="records")  # fmt: skip
        _resolve(b, _RESOLVING[body.action])
        _event(repo, b, body.action, actor, body.reason, records=body.records)
        return b, None
    if body.action == "accept":
        if body.until is None or clock.aware(body.until) <= clock.now():
            raise InvalidRequest("until_required", "Accept until a time in the future.",
                                 param="until")  # fmt: skip
        b.state, b.accepted_until = BreakState.accepted, clock.aware(body.until)
        b.accepted_class, b.accepted_amount = b.klass, b.delta
        _event(repo, b, "accepted", actor, body.reason, until=b.accepted_until.isoformat())
        return b, None
    if await repo.pending_approval(b.id) is not None:
        raise Conflict("approval_pending", "An action on this break is waiting for approval.")
    params: dict[str, Any]
    if body.action == "adjust":
        amount = body.amount or abs(b.delta)
        if amount == 0:
            raise InvalidRequest("nothing_to_adjust", "The break has no difference to book.")
        params = {"amount": amount, "account": body.account}
        config = await repo.config(b.channel_account_id)
        threshold = config.approval_threshold if config is not None else 0
        if amount <= threshold:
            await _adjust(session, b, params, actor, body.reason)
            return b, None
    else:  # refund: always a second approver
        if b.payment_id is None or b.kind != "payment" or b.channel_amount <= 0:
            raise Conflict("refund_not_applicable", "Only money received for a payment can be "
                           "refunded from a break.")  # fmt: skip
        params = {"amount": b.channel_amount + b.channel_fee, "payment_id": b.payment_id,
                  "attempt_id": b.key}  # fmt: skip
        amount = params["amount"]
    approval = ReconApproval(
        id=new_id("rap"), break_id=b.id, action=body.action, params=params, amount=amount,
        state=ApprovalState.pending, requested_by=actor, reason=body.reason,
        created_at=clock.now(),
    )  # fmt: skip
    repo.add(approval)
    _event(repo, b, "approval_requested", actor, body.reason, approval=approval.id,
           requested=body.action, amount=amount)  # fmt: skip
    return b, approval


async def decide(
    session: AsyncSession, approval_id: str, *, approve: bool, actor: str, reason: str,
    scope: Any,
) -> tuple[ReconBreak, ReconApproval]:  # fmt: skip
    """Approve (and carry out) or reject a requested action; never by its requester."""
    repo = ReconRepository(session)
    approval = await repo.lock_approval(approval_id)
    if approval is None:
        raise NotFound("approval", approval_id)
    b = await _open_break(repo, approval.break_id, scope)
    if approval.state != ApprovalState.pending:
        raise Conflict("approval_decided", f"The approval was {approval.state} already.")
    if approval.requested_by == actor:
        raise PermissionDenied(
            "second_approver_required", "A money-moving action needs a second, different approver."
        )
    approval.state = ApprovalState.approved if approve else ApprovalState.rejected
    approval.decided_by, approval.decided_reason = actor, reason
    approval.decided_at = clock.now()
    _event(repo, b, "approved" if approve else "rejected", actor, reason, approval=approval.id)
    if approve:
        if b.state == BreakState.resolved:
            raise Conflict("break_resolved", f"The break was resolved ({b.resolution}).")
        if approval.action == "adjust":
            await _adjust(session, b, approval.params, approval.requested_by, approval.reason)
        else:
            await _refund(session, b, approval)
    return b, approval


async def detail(session: AsyncSession, scope: Scope, break_id: str) -> BreakDetail:
    """A break with its whole history and approvals, if the scope sees it."""
    repo = ReconRepository(session)
    b = (await repo.breaks_by_id([break_id])).get(break_id)
    if b is None or not scope.sees(b.app_id, b.livemode):
        raise NotFound("break", break_id)
    return BreakDetail(
        **BreakOut.of(b).model_dump(),
        history=[EventOut.of(e) for e in await repo.events(b.id)],
        approvals=[ApprovalOut.of(a) for a in await repo.approvals(b.id)],
    )


async def configure(session: AsyncSession, account_id: str, body: ConfigIn) -> ConfigIn:
    """Save how a channel account is reconciled."""
    if await ChannelAccountRepository(session).get(account_id) is None:
        raise NotFound("channel account", account_id)
    repo = ReconRepository(session)
    config = await repo.config(account_id)
    if config is None:
        config = ReconConfig(channel_account_id=account_id)
        repo.add(config)
    for name, value in body.model_dump().items():
        setattr(config, name, value)
    return body


def _resolve(b: ReconBreak, resolution: Resolution) -> None:
    b.state, b.resolution, b.resolved_at = BreakState.resolved, resolution, clock.now()


async def _adjust(
    session: AsyncSession, b: ReconBreak, params: dict[str, Any], actor: str, reason: str
) -> None:
    """A balanced transaction between the channel account's clearing account and the
    platform's suspense (or fee-rounding) account: the channel holds more than our books
    (delta > 0) → debit clearing; less → credit it."""
    amount = int(params["amount"])
    clearing = await chart.clearing_id(session, b.channel_account_id, b.currency)
    purpose = Purpose.fee_rounding if params.get("account") == "fee_rounding" else Purpose.suspense
    other = await chart.platform_account_id(session, b.livemode, purpose, b.currency)
    legs = ([ledger.debit(clearing, amount), ledger.credit(other, amount)] if b.delta >= 0
            else [ledger.credit(clearing, amount), ledger.debit(other, amount)])  # fmt: skip
    tx = await ledger.transfer(
        session, key=f"recon_adjust:{b.id}:{b.last_run_id}", legs=legs,
        description=f"reconciliation adjustment of {b.id}",
        metadata={"break": b.id, "by": actor, "reason": reason[:200]},
    )  # fmt: skip
    _resolve(b, Resolution.adjusted)
    _event(ReconRepository(session), b, "adjusted", actor, reason, ledger_transaction=tx.id,
           amount=amount, account=purpose.value)  # fmt: skip


async def _refund(session: AsyncSession, b: ReconBreak, approval: ReconApproval) -> None:
    """Give back money the channel took for a payment closed here: a refund of the channel's
    order, recorded pending and sent by the refunds janitor (same refund number on every try,
    so at most one refund happens). No ledger hold: the money never entered our books."""
    params = approval.params
    payment = await session.get(Payment, params["payment_id"])
    assert payment is not None
    refund = Refund(
        id=new_id("re"), app_id=payment.app_id, livemode=payment.livemode,
        payment_id=payment.id, attempt_id=params["attempt_id"], channel=payment.channel or "",
        channel_account_id=b.channel_account_id, out_refund_no=f"recon_{b.id}"[:64],
        amount=int(params["amount"]), currency=b.currency, reason="recon_refund",
        status=RefundStatus.pending, query_count=0, split_returns={},
        query_due_at=clock.now() - dt.timedelta(seconds=1),
    )  # fmt: skip
    RefundRepository(session).add(refund)
    _resolve(b, Resolution.refunded)
    _event(ReconRepository(session), b, "refund_requested", approval.decided_by or "",
           approval.reason, refund=refund.id, amount=refund.amount)  # fmt: skip

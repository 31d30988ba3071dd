"""What every sandbox's daily bill shares: which payments and refunds a day's bill lists, and the
scripted discrepancies (:class:`BillTweak`) that let a test or a demo user see every kind of
reconciliation break. Each channel's sandbox renders :class:`DayBill` in its own file format.

Tweaks are queued through the control API (``POST /_sandbox/bill_tweaks``) for one bill day (in
the channel's time zone) and stay until cleared (``DELETE /_sandbox/bill_tweaks``), so a bill
fetched twice is the same file:

- ``amount``: the row of ``out_trade_no`` shows ``amount`` (minor units) instead of what was paid;
- ``fee``: the row of ``out_trade_no`` shows the fee ``amount``;
- ``duplicate``: the row of ``out_trade_no`` is listed twice;
- ``next_day``: the row of ``out_trade_no`` (paid on ``day``) is listed in the next day's bill;
- ``drop``: the row of ``out_trade_no`` is missing (the channel has no record of it);
- ``extra_payment``: a payment of ``amount`` the gateway never made (``out_trade_no`` optional);
- ``extra_refund``: a refund of ``amount`` on the order ``out_trade_no`` made only at the channel
  (its merchant portal), with a refund number the gateway never issued;
- ``corrupt_summary``: the summary totals are off by ``amount`` (default 1);
- ``bad_row``: one unreadable row is added.

An order paid at the channel whose notification never came is an order script with
``notify: "none"`` (:mod:`paymux.channels.sandbox_kit`): the bill lists it like any other.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from paymux.channels.sandbox_kit import (
    OrderStatus,
    RefundScript,
    RefundStatus,
    SandboxCore,
    SandboxOrder,
    SandboxRefund,
    Script,
)


class BillTweakKind(StrEnum):
    amount = "amount"
    fee = "fee"
    duplicate = "duplicate"
    next_day = "next_day"
    drop = "drop"
    extra_payment = "extra_payment"
    extra_refund = "extra_refund"
    corrupt_summary = "corrupt_summary"
    bad_row = "bad_row"


class BillTweak(BaseModel):
    day: dt.date
    """The bill day (the channel's time zone) the tweak changes."""
    kind: BillTweakKind
    out_trade_no: str | None = None
    """The order whose row is changed (the merchant's number as the channel knows it)."""
    amount: int | None = None
    """Minor units (``amount``, ``fee``, ``extra_payment``, ``extra_refund``,
    ``corrupt_summary``)."""


@dataclass
class BillEntry:
    """One row of a day's bill before the channel's format: a payment or a refund."""

    kind: Literal["payment", "refund"]
    order: SandboxOrder
    amount: int
    """Positive minor units: what was paid, or refunded."""
    fee: int
    """Positive minor units: the fee charged on a payment, or returned by a refund."""
    at: dt.datetime
    refund: SandboxRefund | None = None


@dataclass
class DayBill:
    entries: list[BillEntry] = field(default_factory=list)
    summary_offset: int = 0
    """Add to the summary's amount total (``corrupt_summary``)."""
    bad_rows: int = 0
    """Unreadable rows to write (``bad_row``)."""


def tweaks_of(core: SandboxCore) -> list[BillTweak]:
    return core.bill_tweaks


def day_bill(
    core: SandboxCore, day: dt.date, tz: dt.tzinfo, fee_of: Callable[[int], int],
    listed: Callable[[SandboxOrder], bool] = lambda order: True,
) -> DayBill:  # fmt: skip
    """The bill of ``day``: payments paid and refunds finished that day (in ``tz``), of the
    orders ``listed`` says belong to this bill, in time order, with the day's tweaks applied.
    ``fee_of(amount)`` is the channel's fee on an amount (a refund returns the fee of its own
    amount)."""
    tweaks = tweaks_of(core)
    late = [t for t in tweaks if t.kind is BillTweakKind.next_day]
    moved = {t.out_trade_no for t in late if t.day == day}
    came = {t.out_trade_no for t in late if t.day == day - dt.timedelta(days=1)}

    def on(moment: dt.datetime | None, target: dt.date) -> bool:
        return moment is not None and moment.astimezone(tz).date() == target

    entries: list[BillEntry] = []
    for order in list(core.orders.values()):
        if not listed(order) or order.status is not OrderStatus.succeeded:
            continue
        if (on(order.paid_at, day) and order.out_trade_no not in moved) or (
            on(order.paid_at, day - dt.timedelta(days=1)) and order.out_trade_no in came
        ):
            assert order.paid_at is not None
            entries.append(BillEntry("payment", order, order.amount, fee_of(order.amount),
                                     order.paid_at))  # fmt: skip
    for refund in list(core.refunds.values()):
        if (
            listed(refund.order)
            and refund.status is RefundStatus.succeeded
            and on(refund.finished_at or refund.created_at, day)
        ):
            entries.append(BillEntry("refund", refund.order, refund.amount,
                                     fee_of(refund.amount), refund.finished_at or
                                     refund.created_at, refund))  # fmt: skip
    bill = DayBill(entries)
    for tweak in tweaks:
        if tweak.day == day:
            _apply(core, bill, tweak, fee_of)
    bill.entries.sort(key=lambda e: e.at)
    return bill


def _apply(
    core: SandboxCore, bill: DayBill, tweak: BillTweak, fee_of: Callable[[int], int]
) -> None:
    kind = tweak.kind
    rows = [e for e in bill.entries if e.kind == "payment" and e.order.out_trade_no ==
            tweak.out_trade_no]  # fmt: skip
    if kind is BillTweakKind.amount and rows and tweak.amount is not None:
        rows[0].amount = tweak.amount
    elif kind is BillTweakKind.fee and rows and tweak.amount is not None:
        rows[0].fee = tweak.amount
    elif kind is BillTweakKind.duplicate and rows:
        bill.entries.append(replace(rows[0]))
    elif kind is BillTweakKind.drop and rows:
        bill.entries.remove(rows[0])
    elif kind is BillTweakKind.extra_payment:
        amount = tweak.amount or 100
        noon = dt.datetime.combine(tweak.day, dt.time(12), tzinfo=dt.UTC)
        order = SandboxOrder(
            out_trade_no=tweak.out_trade_no or "portal" + _stable(tweak, 12),
            channel_trade_no="9" + _stable(tweak, 27, "trade"), merchant_id="", amount=amount,
            currency=_currency(core), subject="channel only", notify_url=None, method="",
            script=Script(), created_at=noon, status=OrderStatus.succeeded, paid_at=noon,
        )  # fmt: skip
        bill.entries.append(BillEntry("payment", order, amount, fee_of(amount), noon))
    elif kind is BillTweakKind.extra_refund and tweak.out_trade_no:
        paid = core.find(tweak.out_trade_no)
        if paid is None:
            return
        amount = tweak.amount or paid.amount
        at = (paid.paid_at or paid.created_at) + dt.timedelta(minutes=1)
        refund = SandboxRefund(
            out_refund_no="portal" + _stable(tweak, 12), refund_no="5" + _stable(tweak, 27, "r"),
            order=paid, amount=amount, reason="merchant portal", notify_url=None,
            script=RefundScript(), created_at=at, status=RefundStatus.succeeded,
            finished_at=at,
        )  # fmt: skip
        bill.entries.append(BillEntry("refund", paid, amount, fee_of(amount), at, refund))
    elif kind is BillTweakKind.corrupt_summary:
        bill.summary_offset += tweak.amount or 1
    elif kind is BillTweakKind.bad_row:
        bill.bad_rows += 1


def _stable(tweak: BillTweak, size: int, salt: str = "") -> str:
    """A number made from the tweak itself: the same bill fetched twice is the same file."""
    text = f"{salt}|{tweak.day}|{tweak.kind}|{tweak.out_trade_no}|{tweak.amount}"
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def _currency(core: SandboxCore) -> str:
    for order in core.orders.values():
        return order.currency
    return "CNY"


def bill_router(core: SandboxCore) -> APIRouter:
    """The control API of bill tweaks, under ``/_sandbox``."""
    router = APIRouter(prefix="/_sandbox")

    @router.post("/bill_tweaks")
    async def add(tweak: BillTweak) -> dict[str, Any]:
        """Control API: script a discrepancy into a day's bill."""
        tweaks_of(core).append(tweak)
        return {"queued": len(tweaks_of(core))}

    @router.get("/bill_tweaks")
    async def show() -> list[dict[str, Any]]:
        return [t.model_dump(mode="json") for t in tweaks_of(core)]

    @router.delete("/bill_tweaks")
    async def clear() -> dict[str, Any]:
        tweaks_of(core).clear()
        return {"queued": 0}

    return router

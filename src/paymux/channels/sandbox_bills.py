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

**Fund-flow bills** (资金账单, :func:`day_funds`) list the same day's trade money (each payment
in, its fee out as part of its line, each refund out with the fee it returns), the day's
successful payouts (transfers) and, as the day's last line at 23:59:59, the sandbox's
**settlement**: the channel pays the whole balance out to the merchant's bank account (自动提现),
so a day opens at zero unless a tweak left something behind. Tweaks with ``"bill": "funds"``
change the fund-flow bill only (a trade tweak changes both, as the channel's money follows its
trade bill):

- ``drop``, ``amount``, ``duplicate``: the payout line of ``out_trade_no`` (our payout id);
- ``extra_payout``: a transfer of ``amount`` the gateway never made (``out_trade_no`` optional);
- ``settlement_amount``: the day's settlement pays ``amount`` instead of the balance (what it
  leaves, or overdraws, opens the next day);
- ``corrupt_summary`` and ``bad_row`` as for the trade bill.
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
    extra_payout = "extra_payout"
    settlement_amount = "settlement_amount"


class BillTweak(BaseModel):
    day: dt.date
    """The bill day (the channel's time zone) the tweak changes."""
    kind: BillTweakKind
    bill: Literal["trade", "funds"] = "trade"
    """Which of the day's bills it changes (``funds``: the fund-flow bill only)."""
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
        if tweak.day == day and tweak.bill == "trade":
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


FundsKind = Literal["payment", "refund", "payout", "settlement"]


@dataclass
class FundsEntry:
    """One line of a day's fund-flow bill before the channel's format."""

    kind: FundsKind
    amount: int
    """Signed minor units: into the balance positive (a payment), out of it negative."""
    fee: int
    """Minor units the channel kept (positive) or gave back (negative: a refund's share)."""
    at: dt.datetime
    reference: str | None
    """Our number: the order's, the refund's, or the payout's (``out_biz_no``); none for a
    settlement."""
    channel_ref: str
    """The channel's number of the line's business (trade, refund, transfer, settlement)."""
    balance: int = 0
    """The balance after the line (filled in by :func:`day_funds`)."""
    flow_no: str = ""
    """The channel's own number of the movement (资金流水单号), stable across fetches."""

    @property
    def net(self) -> int:
        return self.amount - self.fee


@dataclass
class DayFunds:
    opening: int
    entries: list[FundsEntry] = field(default_factory=list)
    summary_offset: int = 0
    bad_rows: int = 0

    @property
    def closing(self) -> int:
        return self.entries[-1].balance if self.entries else self.opening


SETTLED_AT = dt.time(23, 59, 59)
"""When a sandbox pays the day's balance out to the bank (the day's last line)."""


def day_funds(
    core: SandboxCore, day: dt.date, tz: dt.tzinfo, fee_of: Callable[[int], int],
    payouts: Callable[[dt.date], list[FundsEntry]],
    listed: Callable[[SandboxOrder], bool] = lambda order: True,
    trade: Callable[[dt.date], list[FundsEntry]] | None = None,
) -> DayFunds:  # fmt: skip
    """The fund-flow bill of ``day`` (see the module's docstring): the trade money of
    :func:`day_bill`, the payouts ``payouts(day)`` gives (the channel's successful transfers
    finished that day, ``amount`` negative), the day's funds tweaks, and the settlement of what
    is left at :data:`SETTLED_AT`; each line with the balance after it.

    ``trade(day)``, when given, is the day's trade money as the channel's own bill renders it,
    in place of :func:`day_bill`'s fee rule: a channel whose fees differ (Stripe adds a fixed
    part per payment; Stripe and PayPal keep their fee when a payment is refunded) settles what
    its own bill lists."""
    opening = _carried(core, day, tz, fee_of, payouts, listed, trade)
    funds = DayFunds(opening)
    if trade is not None:
        funds.entries.extend(trade(day))
    else:
        funds.entries.extend(_trade_money(core, day, tz, fee_of, listed))
    funds.entries.extend(payouts(day))
    settle = None
    for tweak in tweaks_of(core):
        if tweak.day != day or tweak.bill != "funds":
            continue
        if tweak.kind is BillTweakKind.settlement_amount:
            settle = tweak.amount
        else:
            _apply_funds(funds, tweak, tz)
    funds.entries.sort(key=lambda e: e.at)
    balance = opening
    for position, e in enumerate(funds.entries, 1):
        balance += e.net
        e.balance = balance
        e.flow_no = e.flow_no or _flow_no(day, position, e)
    paid = balance if settle is None else settle
    if paid:
        at = dt.datetime.combine(day, SETTLED_AT, tzinfo=tz)
        ref = "settle" + hashlib.sha256(f"{day}".encode()).hexdigest()[:20]
        funds.entries.append(FundsEntry("settlement", -paid, 0, at, None, ref, balance - paid,
                                        _flow_no(day, len(funds.entries) + 1, None)))  # fmt: skip
    return funds


def _trade_money(
    core: SandboxCore, day: dt.date, tz: dt.tzinfo, fee_of: Callable[[int], int],
    listed: Callable[[SandboxOrder], bool],
) -> list[FundsEntry]:  # fmt: skip
    """The day bill's payments and refunds as fund-flow lines (a refund returns its fee)."""
    out = []
    for t in day_bill(core, day, tz, fee_of, listed).entries:
        if t.kind == "payment":
            out.append(FundsEntry("payment", t.amount, t.fee, t.at, t.order.out_trade_no,
                                  t.order.channel_trade_no))  # fmt: skip
        else:
            assert t.refund is not None
            out.append(FundsEntry("refund", -t.amount, -t.fee, t.at, t.refund.out_refund_no,
                                  t.refund.refund_no))  # fmt: skip
    return out


def _carried(
    core: SandboxCore, day: dt.date, tz: dt.tzinfo, fee_of: Callable[[int], int],
    payouts: Callable[[dt.date], list[FundsEntry]], listed: Callable[[SandboxOrder], bool],
    trade: Callable[[dt.date], list[FundsEntry]] | None,
) -> int:  # fmt: skip
    """What the day before left in the balance: only a ``settlement_amount`` tweak leaves
    anything (the newest such day before ``day`` is read, which opens on its own carry)."""
    earlier = [t.day for t in tweaks_of(core) if t.bill == "funds"
               and t.kind is BillTweakKind.settlement_amount and t.day < day]  # fmt: skip
    if not earlier:
        return 0
    return day_funds(core, max(earlier), tz, fee_of, payouts, listed, trade).closing


def _apply_funds(funds: DayFunds, tweak: BillTweak, tz: dt.tzinfo) -> None:
    kind = tweak.kind
    rows = [e for e in funds.entries if e.kind == "payout" and e.reference == tweak.out_trade_no]
    if kind is BillTweakKind.amount and rows and tweak.amount is not None:
        rows[0].amount = -abs(tweak.amount)
    elif kind is BillTweakKind.duplicate and rows:
        funds.entries.append(replace(rows[0]))  # its own 资金流水单号 (another position)
    elif kind is BillTweakKind.drop and rows:
        funds.entries.remove(rows[0])
    elif kind is BillTweakKind.extra_payout:
        at = dt.datetime.combine(tweak.day, dt.time(15), tzinfo=tz)
        funds.entries.append(FundsEntry(
            "payout", -(tweak.amount or 100), 0, at,
            tweak.out_trade_no or "portal" + _stable(tweak, 12), "1" + _stable(tweak, 27, "t"),
        ))  # fmt: skip
    elif kind is BillTweakKind.corrupt_summary:
        funds.summary_offset += tweak.amount or 1
    elif kind is BillTweakKind.bad_row:
        funds.bad_rows += 1


def _flow_no(day: dt.date, position: int, e: FundsEntry | None) -> str:
    """A movement number made from what the line is (stable when the bill is fetched again)."""
    what = "settlement" if e is None else f"{e.kind}|{e.channel_ref}|{e.reference}|{e.amount}"
    return f"{day:%Y%m%d}" + hashlib.sha256(f"{position}|{what}".encode()).hexdigest()[:18]


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

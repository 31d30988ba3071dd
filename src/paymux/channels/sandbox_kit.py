"""Machinery every channel sandbox shares: order book, scripted outcomes, the customer page and
a notifier that retries like a real channel until the gateway acknowledges.

A channel's ``sandbox.py`` owns everything channel-specific (paths, signatures, encryption, wire
shapes) and plugs into :class:`SandboxCore` through two callbacks: how to build the signed
notification for an order, and how to recognise the gateway's acknowledgement.

Scripted outcomes are chosen per order, by the first script whose ``subject`` matches the order's
subject (or any script without one), consumed once per use unless ``sticky``:

- ``outcome``: ``manual`` (the customer pays or declines on the page), ``succeed`` / ``decline``
  (pay or fail at once, no customer), ``create_timeout`` (the order is created but the create
  response is held longer than any client waits), ``create_error`` (HTTP 500, nothing created).
- ``notify``: ``normal``, ``none`` (only a query learns the result), ``duplicate`` (sent twice at
  once), ``delayed`` (after ``delay`` seconds), ``out_of_order`` (an older event is delivered
  after a newer one), ``before_response`` (the notification is sent before the create answer).

Refunds have their own scripts (:class:`RefundScript`, consumed in order, matched by the paid
order's subject like order scripts): ``succeed`` (money back at once), ``delayed`` (accepted,
succeeds after ``delay`` seconds), ``fail`` (accepted, then closed/abnormal after ``delay``),
``refuse`` (refused at once with the channel's balance-short error), ``create_timeout`` (the
refund is made but its answer is held) and ``create_error`` (HTTP 500, nothing made), each with
a ``notify`` mode for channels that notify refunds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel

from paymux.kit import clock

log = structlog.get_logger(__name__)

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


class Outcome(StrEnum):
    manual = "manual"
    succeed = "succeed"
    decline = "decline"
    create_timeout = "create_timeout"
    create_error = "create_error"


class NotifyMode(StrEnum):
    normal = "normal"
    none = "none"
    duplicate = "duplicate"
    delayed = "delayed"
    out_of_order = "out_of_order"
    before_response = "before_response"


class OrderStatus(StrEnum):
    """Generic order state; each channel maps it onto its own wire vocabulary."""

    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"
    closed = "closed"


class RefundOutcome(StrEnum):
    succeed = "succeed"
    delayed = "delayed"
    fail = "fail"
    refuse = "refuse"
    create_timeout = "create_timeout"
    create_error = "create_error"


class RefundStatus(StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


class BarcodeOutcome(StrEnum):
    """What the customer's wallet does with a payment-code charge (付款码); each sandbox says
    how its channel answers each one."""

    paid = "paid"
    """Paid at once."""
    password_paid = "password_paid"
    """The customer is asked for the password and confirms after ``delay``: paid."""
    password_declined = "password_declined"
    """Asked for the password, the customer gives up after ``delay``: failed/closed."""
    password_forever = "password_forever"
    """Waiting until reversed (or paid/declined through ``/_sandbox/orders/{no}/pay``)."""
    insufficient_balance = "insufficient_balance"
    """Refused for the customer's balance, nothing charged."""
    invalid_code = "invalid_code"
    """Refused: the code is expired or unknown, nothing charged."""
    create_timeout = "create_timeout"
    """Paid, but the answer is held longer than any client waits."""
    create_error = "create_error"
    """A server error, nothing charged."""


class BarcodeScript(BaseModel):
    outcome: BarcodeOutcome = BarcodeOutcome.paid
    delay: float = 2.0
    subject: str | None = None
    sticky: bool = False


class _Matching(Protocol):
    subject: str | None
    sticky: bool


M = TypeVar("M", bound=_Matching)


def take_matching(queue: list[M], subject: str, default: Callable[[], M]) -> M:
    """The first queued script whose ``subject`` matches (None matches any), removed from the
    queue unless ``sticky``; ``default()`` when none does."""
    for i, script in enumerate(queue):
        if script.subject is None or script.subject == subject:
            if not script.sticky:
                del queue[i]
            return script
    return default()


class Script(BaseModel):
    outcome: Outcome = Outcome.manual
    notify: NotifyMode = NotifyMode.normal
    delay: float = 2.0
    subject: str | None = None
    sticky: bool = False


@dataclass
class SandboxOrder:
    out_trade_no: str
    channel_trade_no: str
    merchant_id: str
    amount: int
    currency: str
    subject: str
    notify_url: str | None
    method: str
    script: Script
    created_at: dt.datetime
    status: OrderStatus = OrderStatus.pending
    paid_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    return_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    notifications_sent: int = 0


class RefundScript(BaseModel):
    outcome: RefundOutcome = RefundOutcome.succeed
    notify: NotifyMode = NotifyMode.normal
    delay: float = 2.0
    subject: str | None = None
    """Matches the refunded order's subject; None matches any."""
    sticky: bool = False


class Scripted(Protocol):
    """A scripted outcome of a refund, transfer or split (:meth:`SandboxCore.play`)."""

    @property
    def outcome(self) -> RefundOutcome: ...

    @property
    def delay(self) -> float: ...


@dataclass
class SandboxRefund:
    out_refund_no: str
    refund_no: str
    """The channel's own refund id."""
    order: SandboxOrder
    amount: int
    reason: str | None
    notify_url: str | None
    script: RefundScript
    created_at: dt.datetime
    status: RefundStatus = RefundStatus.pending
    finished_at: dt.datetime | None = None
    notifications_sent: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def out_trade_no(self) -> str:
        return self.order.out_trade_no


Built = Awaitable[tuple[dict[str, str], bytes]] | tuple[dict[str, str], bytes]
NotificationBuilder = Callable[[SandboxOrder], Built]
RefundNotificationBuilder = Callable[[SandboxRefund], Built]
AckCheck = Callable[[httpx.Response], bool]


class SandboxCore:
    """State and behaviour shared by a channel sandbox: orders, scripts, notifications."""

    def __init__(
        self,
        *,
        channel: str,
        retry_schedule: Sequence[float],
        build_notification: NotificationBuilder | None = None,
        build_refund_notification: RefundNotificationBuilder | None = None,
        is_ack: AckCheck | None = None,
        http: httpx.AsyncClient | None = None,
        time_scale: float = 1.0,
        hold_timeout_seconds: float = 30.0,
    ) -> None:
        self.channel = channel
        self.retry_schedule = list(retry_schedule)
        self.build_notification = build_notification
        self.build_refund_notification = build_refund_notification
        self.is_ack = is_ack or (lambda r: 200 <= r.status_code < 300)
        self.http = http
        self.time_scale = time_scale
        self.hold_timeout_seconds = hold_timeout_seconds
        self.orders: dict[tuple[str, str], SandboxOrder] = {}
        self.by_trade_no: dict[str, SandboxOrder] = {}
        self.scripts: list[Script] = []
        self.refund_scripts: list[RefundScript] = []
        self.refunds: dict[tuple[str, str], SandboxRefund] = {}
        self.deliveries: list[dict[str, Any]] = []
        self.bill_tweaks: list[Any] = []
        """Scripted bill discrepancies (:mod:`paymux.channels.sandbox_bills`)."""
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ scripts and orders
    def add_script(self, script: Script) -> None:
        self.scripts.append(script)

    def take_script(self, subject: str) -> Script:
        return take_matching(self.scripts, subject, Script)

    def add_refund_script(self, script: RefundScript) -> None:
        self.refund_scripts.append(script)

    def take_refund_script(self, subject: str) -> RefundScript:
        return take_matching(self.refund_scripts, subject, RefundScript)

    def new_trade_no(self, prefix: str = "") -> str:
        return prefix + clock.now().strftime("%Y%m%d") + secrets.token_hex(8)

    def add_order(self, order: SandboxOrder) -> SandboxOrder:
        self.orders[(order.merchant_id, order.out_trade_no)] = order
        self.by_trade_no[order.out_trade_no] = order
        return order

    def get_order(self, merchant_id: str, out_trade_no: str) -> SandboxOrder | None:
        return self.orders.get((merchant_id, out_trade_no))

    def find(self, out_trade_no: str) -> SandboxOrder | None:
        return self.by_trade_no.get(out_trade_no)

    def alias(self, name: str, order: SandboxOrder) -> None:
        """Let the control API find ``order`` by another number too (the channel's own id, or
        the merchant's number when the channel's differs)."""
        self.by_trade_no.setdefault(name, order)

    # ------------------------------------------------------------ refunds
    def get_refund(self, merchant_id: str, out_refund_no: str) -> SandboxRefund | None:
        return self.refunds.get((merchant_id, out_refund_no))

    def refundable(self, order: SandboxOrder) -> int:
        """What of a paid order can still be refunded (pending refunds count)."""
        if order.status is not OrderStatus.succeeded:
            return 0
        taken = sum(
            r.amount for r in self.refunds.values()
            if r.order is order and r.status is not RefundStatus.failed
        )  # fmt: skip
        return order.amount - taken

    def refunds_of(self, order: SandboxOrder) -> list[SandboxRefund]:
        return [r for r in self.refunds.values() if r.order is order]

    def add_refund(self, refund: SandboxRefund) -> SandboxRefund:
        """Record an accepted refund. The channel sandbox has already checked the refundable
        amount and handled ``refuse``/``create_error`` (which create nothing)."""
        self.refunds[(refund.order.merchant_id, refund.out_refund_no)] = refund
        return refund

    async def play(self, script: Scripted, finish: Callable[[bool], object]) -> None:
        """Play the scripted outcome of an accepted request (a refund, transfer or split) before
        its answer is sent: ``succeed`` and ``create_timeout`` finish it now, ``delayed`` and
        ``fail`` after ``script.delay``; ``create_timeout`` then holds the answer. ``refuse`` and
        ``create_error`` create nothing, so the channel sandbox answers them before this."""
        outcome = script.outcome
        if outcome in (RefundOutcome.succeed, RefundOutcome.create_timeout):
            finish(True)
        elif outcome in (RefundOutcome.delayed, RefundOutcome.fail):
            self.spawn(self._finish_later(script.delay, finish, outcome is RefundOutcome.delayed))
        if outcome is RefundOutcome.create_timeout:
            await asyncio.sleep(self.hold_timeout_seconds)

    async def _finish_later(
        self, delay: float, finish: Callable[[bool], object], succeeded: bool
    ) -> None:
        await asyncio.sleep(delay * self.time_scale)
        finish(succeeded)

    async def after_refund(self, refund: SandboxRefund) -> None:
        """Apply the refund's script once it exists (before its answer is sent)."""
        await self.play(refund.script, lambda ok: self._finish_and_notify(refund, ok))

    def _finish_and_notify(self, refund: SandboxRefund, succeeded: bool) -> None:
        if self.finish_refund(refund, succeeded=succeeded):
            self.spawn(self.notify_refund(refund))

    def finish_refund(self, refund: SandboxRefund, *, succeeded: bool) -> bool:
        if refund.status is not RefundStatus.pending:
            return False
        refund.status = RefundStatus.succeeded if succeeded else RefundStatus.failed
        refund.finished_at = clock.now()
        return True

    async def notify_refund(self, refund: SandboxRefund) -> None:
        """Deliver the refund's notification (if the channel sends one) per its script."""
        if self.build_refund_notification is None:
            return
        await self._notify(refund, refund.script, self.build_refund_notification)

    # ------------------------------------------------------------ lifecycle
    async def after_create(self, order: SandboxOrder) -> None:
        """Apply the order's script once it exists (before the create answer is sent)."""
        script = order.script
        if script.outcome in (Outcome.succeed, Outcome.decline):
            paid = script.outcome is Outcome.succeed
            if script.notify is NotifyMode.before_response:
                self.settle(order, paid=paid)
                await self._deliver_once_then_retry(order)
            else:
                self.settle(order, paid=paid)
                self.spawn(self.notify(order))
        if script.outcome is Outcome.create_timeout:
            await asyncio.sleep(self.hold_timeout_seconds)

    def settle(self, order: SandboxOrder, *, paid: bool) -> bool:
        """Move a pending order to paid or failed. False if it is no longer pending."""
        if order.status is not OrderStatus.pending:
            return False
        order.status = OrderStatus.succeeded if paid else OrderStatus.failed
        if paid:
            order.paid_at = clock.now()
        return True

    def close(self, order: SandboxOrder) -> bool:
        if order.status is OrderStatus.succeeded:
            return False
        if order.status is OrderStatus.pending:
            order.status = OrderStatus.closed
            order.closed_at = clock.now()
        return True

    async def late_success(self, order: SandboxOrder) -> bool:
        """Scripted race: the customer's payment lands although the order was closed (or
        failed) meanwhile — what a gateway's late-success handling must absorb. The order is
        paid and notified as usual. False if it was already paid."""
        if order.status is OrderStatus.succeeded:
            return False
        order.status, order.closed_at = OrderStatus.pending, None
        if not self.settle(order, paid=True):
            return False
        self.spawn(self.notify(order))
        return True

    async def customer_action(self, order: SandboxOrder, *, paid: bool) -> bool:
        if not self.settle(order, paid=paid):
            return False
        self.spawn(self.notify(order))
        return True

    # ------------------------------------------------------------ notifications
    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def notification_for(self, order: SandboxOrder) -> tuple[dict[str, str], bytes]:
        """The signed notification the channel would send now for ``order``."""
        assert self.build_notification is not None
        return await self._build(order, self.build_notification)

    @staticmethod
    async def _build(subject: Any, builder: Callable[[Any], Built]) -> tuple[dict[str, str], bytes]:
        built = builder(subject)
        if asyncio.iscoroutine(built) or isinstance(built, Awaitable):
            return await built
        return built

    async def _post(
        self, subject: SandboxOrder | SandboxRefund, headers: dict[str, str], body: bytes
    ) -> bool:
        """POST one notification about an order or a refund; True when acknowledged."""
        if not subject.notify_url or self.http is None:
            return False
        about = {"out_trade_no": subject.out_trade_no}
        if isinstance(subject, SandboxRefund):
            about["out_refund_no"] = subject.out_refund_no
        try:
            response = await self.http.post(subject.notify_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self.deliveries.append({**about, "error": repr(exc)})
            return False
        subject.notifications_sent += 1
        ok = self.is_ack(response)
        self.deliveries.append({**about, "status": response.status_code, "acked": ok})
        return ok

    async def _deliver_once_then_retry(self, order: SandboxOrder) -> None:
        assert self.build_notification is not None
        headers, body = await self._build(order, self.build_notification)
        if not await self._post(order, headers, body):
            self.spawn(self._retry(order, headers, body))

    async def _retry(
        self, subject: SandboxOrder | SandboxRefund, headers: dict[str, str], body: bytes
    ) -> None:
        for wait in self.retry_schedule:
            await asyncio.sleep(wait * self.time_scale)
            if await self._post(subject, headers, body):
                return

    async def notify(self, order: SandboxOrder) -> None:
        """Deliver the order's notification according to its script, retrying until acked."""
        if self.build_notification is None:
            return
        await self._notify(order, order.script, self.build_notification)

    async def _notify(
        self, subject: SandboxOrder | SandboxRefund, script: Script | RefundScript,
        builder: Callable[[Any], Built],
    ) -> None:  # fmt: skip
        mode = script.notify
        if mode is NotifyMode.none:
            return
        if mode is NotifyMode.delayed:
            await asyncio.sleep(script.delay * self.time_scale)
        headers, body = await self._build(subject, builder)
        if mode is NotifyMode.duplicate:
            results = await asyncio.gather(
                self._post(subject, headers, body), self._post(subject, headers, body)
            )
            if any(results):
                return
        elif await self._post(subject, headers, body):
            return
        await self._retry(subject, headers, body)


def _web_url(value: str | None) -> str | None:
    """``value`` if it is an absolute http(s) URL (a return target), else None."""
    if value and value.startswith(("https://", "http://")):
        return value
    return None


class PageAction(BaseModel):
    result: str = "pay"


def customer_router(core: SandboxCore, *, title: str, brand_color: str) -> APIRouter:
    """The sandbox's customer page: what a wallet app shows after the QR is scanned, or the
    cashier a redirect lands on. ``/_sandbox/pay/{out_trade_no}`` and the control API."""
    router = APIRouter(prefix="/_sandbox")

    @router.get("/pay/{out_trade_no}", response_class=HTMLResponse)
    async def page(out_trade_no: str, redirect_url: str | None = None) -> HTMLResponse:
        """``redirect_url``: where the channel returns the customer once they paid or gave up
        (WeChat H5 appends it to ``h5_url``)."""
        order = core.find(out_trade_no)
        if order is None:
            raise HTTPException(404, "no such order")
        html = _templates.get_template("sandbox_pay.html").render(
            order=order, title=title, brand_color=brand_color,
            redirect_url=_web_url(redirect_url),
            amount=f"{order.amount / 100:.2f}" if order.currency != "JPY" else str(order.amount),
        )  # fmt: skip
        return HTMLResponse(html)

    @router.post("/pay/{out_trade_no}")
    async def act(
        request: Request, out_trade_no: str, result: str = Form("pay"),
        redirect_url: str | None = Form(None),
    ) -> Any:  # fmt: skip
        """``pay`` or ``decline`` (a pending order only: a closed one stays closed), or
        ``cancel``: the customer leaves without paying, to ``redirect_url``, else the order's
        ``cancel_url`` (``extra``), else its return URL."""
        order = core.find(out_trade_no)
        if order is None:
            raise HTTPException(404, "no such order")
        back = _web_url(redirect_url)
        if result == "cancel":
            target = back or order.extra.get("cancel_url") or order.return_url
            return RedirectResponse(target or str(request.url), status_code=303)
        if result not in ("pay", "decline"):
            raise HTTPException(400, "result must be pay, decline or cancel")
        await core.customer_action(order, paid=result == "pay")
        if back and order.status is not OrderStatus.pending:
            return RedirectResponse(back, status_code=303)
        if order.return_url and order.status is OrderStatus.succeeded:
            return RedirectResponse(order.return_url, status_code=303)
        return RedirectResponse(str(request.url), status_code=303)

    @router.post("/orders/{out_trade_no}/late_success")
    async def late_success(out_trade_no: str) -> dict[str, Any]:
        """Control API: let a closed (or failed) order succeed late, as when the customer's
        payment crossed the close; notified like any payment."""
        order = core.find(out_trade_no)
        if order is None:
            raise HTTPException(404, "no such order")
        changed = await core.late_success(order)
        return {"out_trade_no": out_trade_no, "status": order.status, "changed": changed}

    @router.post("/orders/{out_trade_no}/pay")
    async def api_act(out_trade_no: str, body: PageAction) -> dict[str, Any]:
        """Control API: pay (``{"result": "pay"}``) or decline (``"decline"``) an order."""
        order = core.find(out_trade_no)
        if order is None:
            raise HTTPException(404, "no such order")
        changed = await core.customer_action(order, paid=body.result == "pay")
        return {"out_trade_no": out_trade_no, "status": order.status, "changed": changed}

    @router.get("/orders/{out_trade_no}")
    async def show(out_trade_no: str) -> dict[str, Any]:
        order = core.find(out_trade_no)
        if order is None:
            raise HTTPException(404, "no such order")
        return {
            "out_trade_no": order.out_trade_no,
            "channel_trade_no": order.channel_trade_no,
            "status": order.status,
            "amount": order.amount,
            "notifications_sent": order.notifications_sent,
        }

    @router.post("/scripts")
    async def add_script(script: Script) -> dict[str, Any]:
        """Control API: queue a scripted outcome for the next matching order."""
        core.add_script(script)
        return {"queued": len(core.scripts)}

    @router.delete("/scripts")
    async def clear_scripts() -> dict[str, Any]:
        core.scripts.clear()
        core.refund_scripts.clear()
        return {"queued": 0}

    @router.post("/refund_scripts")
    async def add_refund_script(script: RefundScript) -> dict[str, Any]:
        """Control API: queue a scripted outcome for the next matching refund."""
        core.add_refund_script(script)
        return {"queued": len(core.refund_scripts)}

    @router.get("/orders/{out_trade_no}/refunds")
    async def show_refunds(out_trade_no: str) -> list[dict[str, Any]]:
        order = core.find(out_trade_no)
        if order is None:
            raise HTTPException(404, "no such order")
        return [
            {"out_refund_no": r.out_refund_no, "refund_no": r.refund_no, "amount": r.amount,
             "status": r.status, "notifications_sent": r.notifications_sent}
            for r in core.refunds_of(order)
        ]  # fmt: skip

    return router


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    """PKCS#8 PEM of a key pair a sandbox made for a merchant (what the merchant would download)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_key_pem(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()

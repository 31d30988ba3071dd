"""The contract between the gateway and a payment channel.

Domain services only see the normalised types here; every channel-specific fact lives in
``channels/<name>/``. Errors are drawn once, at the top, in three kinds that decide what the
gateway may do next:

- :class:`RetryableError`: a technical failure where the channel certainly did *not* act
  (connection refused, DNS, a request rejected before processing). Safe to retry or fail over.
- :class:`BusinessError`: the channel answered and said no (declined, invalid parameter, order
  already closed). Final for this request.
  :class:`RoutableDecline` is the kind of refusal another channel may not share (the merchant
  account's limit or risk control): routing may fail over on it.
- :class:`UnknownOutcome`: the request may or may not have taken effect (timeout, 5xx, a response
  we could not verify). Never retried elsewhere; resolved by querying the channel.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol

import httpx
from pydantic import BaseModel


# ---------------------------------------------------------------- errors
class ChannelError(Exception):
    """Base of every error an adapter raises."""

    def __init__(self, code: str, message: str = "", *, raw: Any = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message or code
        self.raw = raw


class RetryableError(ChannelError):
    """Technical failure; the channel did not act. Safe to retry / fail over."""


class BusinessError(ChannelError):
    """The channel refused; final for this request. ``category`` is the normalised reason
    (a :class:`FailureCategory`) when the refusal fails a payment; ``code`` stays the
    channel's own."""

    def __init__(
        self, code: str, message: str = "", *, raw: Any = None, category: str | None = None
    ) -> None:
        super().__init__(code, message, raw=raw)
        self.category = category


class RoutableDecline(BusinessError):
    """The channel refused for reasons of its own — the merchant account's limits or risk
    control (quota reached, account restricted) — not because of the payment or the customer.
    Final at this channel; another channel account may take the payment (routing fails over).
    Each adapter's error table says which of its codes mean this."""


class UnknownOutcome(ChannelError):
    """The request may or may not have taken effect; resolve by querying."""


class InvalidNotification(ChannelError):
    """A notification failed verification (signature, decryption, identity, freshness)."""


class InvalidCredentials(ValueError):
    """Channel configuration credentials are malformed or incomplete."""


# ---------------------------------------------------------------- normalised types
class ChannelPaymentStatus(StrEnum):
    """A channel's view of one order, normalised."""

    pending = "pending"
    """Created at the channel, not yet paid (NOTPAY, USERPAYING, WAIT_BUYER_PAY)."""
    succeeded = "succeeded"
    """Paid (SUCCESS, TRADE_SUCCESS, TRADE_FINISHED)."""
    failed = "failed"
    """The channel says the payment failed (PAYERROR, a declined card or capture); the state's
    ``failure_code`` says why, as a :class:`FailureCategory`."""
    closed = "closed"
    """Closed at the channel unpaid; can no longer be paid (CLOSED, REVOKED, TRADE_CLOSED, a
    canceled intent, a voided order). The channel rarely says who closed it, so the gateway
    decides what it means: its own close request → ``closed``, past the payment's expiry →
    ``expired``, otherwise the customer (or the channel) gave up → ``failed`` with the state's
    ``failure_code`` (``customer_declined`` unless the adapter knows better)."""
    not_found = "not_found"
    """The channel has no such order (the create never reached it)."""


class FailureCategory(StrEnum):
    """Why a payment failed, the same on every channel (``Payment.failure_code``); the channel's
    own code is kept on the attempt (``error_code``). Each adapter maps its codes onto these."""

    customer_declined = "customer_declined"
    """The customer declined or gave up on the channel's page (an Alipay trade closed unpaid
    before its expiry without our close request, a Stripe intent canceled as abandoned)."""
    card_declined = "card_declined"
    """The card issuer or bank refused (Stripe ``card_declined``/``expired_card``/…, UnionPay
    card errors, PayPal ``INSTRUMENT_DECLINED``)."""
    insufficient_funds = "insufficient_funds"
    """The customer's balance or credit was short."""
    risk_declined = "risk_declined"
    """The channel's or the issuer's risk control refused (fraud, restricted card)."""
    authentication_failed = "authentication_failed"
    """The customer did not pass the card's authentication (3-D Secure)."""
    payment_declined = "payment_declined"
    """The channel says the payment failed without saying why (WeChat ``PAYERROR``, UnionPay
    ``01``)."""


class NextActionType(StrEnum):
    qr_code = "qr_code"
    """Show ``code_url`` as a QR code for the customer's wallet app to scan."""
    redirect = "redirect"
    """Send the customer's browser to ``url``."""
    form = "form"
    """Render ``html`` (an auto-submitting form) in the customer's browser."""
    sdk_params = "sdk_params"
    """Hand ``params`` to the wallet's client SDK (JSAPI, app, mini-program)."""


@dataclass(frozen=True)
class NextAction:
    type: NextActionType
    code_url: str | None = None
    url: str | None = None
    html: str | None = None
    params: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type.value}
        for key in ("code_url", "url", "html", "params"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data


@dataclass(frozen=True)
class CreatePayment:
    """What the gateway asks a channel to create. ``out_trade_no`` is our attempt id: a retry
    of the same attempt is the same request to the channel."""

    out_trade_no: str
    method: str
    amount: int
    currency: str
    subject: str
    notify_url: str
    expires_at: dt.datetime
    description: str | None = None
    return_url: str | None = None
    cancel_url: str | None = None
    """Where the channel sends a customer who cancels on its page (PayPal ``cancel_url``): the
    cashier (``/pay/{id}?cancelled=1``), never the success return. Channels without a cancel
    target ignore it; None falls back to ``return_url``."""
    client_ip: str | None = None
    customer: Mapping[str, Any] = field(default_factory=dict)
    """Channel customer identifiers: ``openid`` (WeChat JSAPI/mini), ``buyer_id`` (Alipay)…"""
    profit_sharing: bool = False
    """Ask the channel to keep the money splittable (WeChat ``settle_info.profit_sharing``; an
    Alipay trade needs nothing at creation). Set when the channel account does splits itself."""
    step_up: bool = False
    """Authenticate the payer strongly where the channel can: 3-D Secure (Stripe
    ``request_three_d_secure=challenge``). Set only for a channel whose adapter says
    ``supports_step_up`` (:func:`supports_step_up`), when risk control challenged the payment;
    other adapters never see it set."""


@dataclass(frozen=True)
class PaymentRequest:
    """What the merchant asked for, before anything exists: what a channel's pre-check
    (``check_request``) judges. Amounts in ISO minor units."""

    method: str
    amount: int
    currency: str
    subject: str
    description: str | None = None
    client_ip: str | None = None
    customer: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestProblem:
    """Why a channel would refuse a request for the request's own sake (a 400 that creates
    nothing): a machine-readable ``code`` (``amount_too_small``, ``parameter_missing``…), the
    request field it is about (``param``, dotted: ``customer.openid``) and a message."""

    code: str
    message: str
    param: str


def amount_limits(
    request: PaymentRequest, *, minimum: int | None = None, maximum: int | None = None
) -> list[RequestProblem]:
    """The problem of an amount outside ``minimum``..``maximum`` (minor units), if any."""
    what = f"minor units of {request.currency} for {request.method}"
    if minimum is not None and request.amount < minimum:
        return [RequestProblem("amount_too_small", f"At least {minimum} {what}.", "amount")]
    if maximum is not None and request.amount > maximum:
        return [RequestProblem("amount_too_large", f"At most {maximum} {what}.", "amount")]
    return []


def ip_problem(value: str | None, *, required: bool) -> list[RequestProblem]:
    """``client_ip`` missing (when ``required``) or not an IPv4/IPv6 address."""
    if not value:
        message = "This method needs the payer's IP address (client_ip)."
        return [RequestProblem("parameter_missing", message, "client_ip")] if required else []
    try:
        ipaddress.ip_address(value)
    except ValueError:
        message = f"client_ip {value!r} is not an IP address."
        return [RequestProblem("parameter_invalid", message, "client_ip")]
    return []


@dataclass(frozen=True)
class CreatedPayment:
    channel_trade_no: str | None
    next_action: NextAction | None
    status: ChannelPaymentStatus = ChannelPaymentStatus.pending
    raw: Any = None


@dataclass(frozen=True)
class PaymentState:
    """A channel's authoritative view of an order (from a query or a notification).

    A ``succeeded`` state must carry ``amount`` and ``currency`` as the channel reported them:
    the gateway refuses one without them, or with either differing from the order
    (:func:`paymux.payments.transitions.apply_state`)."""

    out_trade_no: str
    status: ChannelPaymentStatus
    channel_trade_no: str | None = None
    amount: int | None = None
    currency: str | None = None
    paid_at: dt.datetime | None = None
    failure_code: str | None = None
    """For ``failed`` (and ``closed``, in case the gateway decides it failed): a
    :class:`FailureCategory` value."""
    failure_message: str | None = None
    channel_code: str | None = None
    """The channel's own code of a failure or close (``PAYERROR``, ``TRADE_CLOSED``,
    ``insufficient_funds``, ``64``…), kept on the attempt."""
    raw: Any = None


class ChannelRefundStatus(StrEnum):
    """A channel's view of one refund, normalised."""

    pending = "pending"
    """Accepted, money not yet back (WeChat PROCESSING; Alipay: accepted without fund change)."""
    succeeded = "succeeded"
    """The money went back (WeChat SUCCESS; Alipay fund_change=Y / REFUND_SUCCESS)."""
    failed = "failed"
    """Will not happen as asked (WeChat CLOSED or ABNORMAL — abnormal needs an operator)."""
    not_found = "not_found"
    """The channel has no such refund (the request never reached it)."""


@dataclass(frozen=True)
class CreateRefund:
    """What the gateway asks a channel to refund. ``out_refund_no`` is our refund id: a retry
    is the same request to the channel, which refunds at most once per number."""

    out_refund_no: str
    out_trade_no: str
    """The attempt id that took the money (the channel's ``out_trade_no``)."""
    channel_trade_no: str | None
    amount: int
    """To refund now, in minor units."""
    total_amount: int
    """What the order was paid (WeChat requires it)."""
    currency: str
    notify_url: str
    reason: str | None = None


def returns_fee_on_refund(adapter: object) -> bool:
    """Whether the channel gives back a refund's share of the payment's fee (its class or
    instance says ``refund_returns_fee = True``: WeChat Pay, Alipay and UnionPay do, Stripe and
    PayPal keep their fee). The ledger books the share the refund returns, so a bill's refund
    line and our books agree on its fee."""
    return bool(getattr(adapter, "refund_returns_fee", False))


@dataclass(frozen=True)
class RefundState:
    """A channel's authoritative view of a refund (from its answer, a query or a notification)."""

    out_refund_no: str
    status: ChannelRefundStatus
    out_trade_no: str | None = None
    channel_refund_no: str | None = None
    amount: int | None = None
    currency: str | None = None
    refunded_at: dt.datetime | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    raw: Any = None


class ChannelTransferStatus(StrEnum):
    """A channel's view of one payout transfer, normalised."""

    pending = "pending"
    """Accepted, not yet final (Alipay DEALING/WAIT_PAY; WeChat ACCEPTED/PROCESSING/…)."""
    succeeded = "succeeded"
    failed = "failed"
    """Will not arrive; the money is back in (or never left) the platform's channel account."""
    not_found = "not_found"


class PayeeType(StrEnum):
    """Whom a transfer pays. Each channel accepts some of these."""

    alipay_login_id = "alipay_login_id"
    """An Alipay account (email or phone number); Alipay checks ``name`` against it."""
    alipay_user_id = "alipay_user_id"
    """An Alipay user id (``2088…``)."""
    alipay_open_id = "alipay_open_id"
    wechat_openid = "wechat_openid"
    """A WeChat user's openid under the platform's appid."""
    bank_card = "bank_card"


@dataclass(frozen=True)
class CreateTransfer:
    """A payout from the platform's channel account to a person. ``out_biz_no`` is our payout
    id: a retry is the same request, which the channel pays at most once."""

    out_biz_no: str
    amount: int
    currency: str
    payee_type: PayeeType
    payee_account: str
    payee_name: str | None
    remark: str
    notify_url: str


@dataclass(frozen=True)
class TransferState:
    out_biz_no: str
    status: ChannelTransferStatus
    channel_transfer_no: str | None = None
    amount: int | None = None
    finished_at: dt.datetime | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    raw: Any = None


class SplitReceiverType(StrEnum):
    merchant = "merchant"
    """Another merchant at the channel (WeChat ``MERCHANT_ID``; Alipay ``userId`` of a
    company account)."""
    person = "person"
    """A person (WeChat ``PERSONAL_OPENID``; Alipay ``loginName`` or ``userId``)."""


@dataclass(frozen=True)
class SplitReceiver:
    type: SplitReceiverType
    account: str
    amount: int
    description: str
    name: str | None = None
    """Real name: WeChat requires it (encrypted) for ``MERCHANT_ID`` receivers."""


class ChannelSplitStatus(StrEnum):
    pending = "pending"
    """Accepted (WeChat PROCESSING); receivers not yet paid."""
    succeeded = "succeeded"
    """Every receiver was paid (WeChat FINISHED with every receiver SUCCESS; Alipay SUCCESS)."""
    failed = "failed"
    """No receiver was or will be paid (WeChat: every receiver CLOSED; Alipay FAIL)."""
    partial = "partial"
    """Final, and some receivers were paid while the others were not (their money stayed
    with the merchant): ``SplitState.receivers`` says which."""
    not_found = "not_found"


@dataclass(frozen=True)
class SplitReceiverResult:
    """One receiver's outcome in a split, as the channel reports it."""

    account: str
    status: ChannelSplitStatus
    """``succeeded``, ``failed`` or ``pending``."""
    amount: int | None = None
    failure_code: str | None = None


@dataclass(frozen=True)
class CreateSplit:
    """Split part of a paid order to receivers through the channel. ``out_order_no`` is our
    split id (idempotent at the channel)."""

    out_order_no: str
    out_trade_no: str
    channel_trade_no: str
    receivers: tuple[SplitReceiver, ...]
    finish: bool = True
    """Release (unfreeze) what is left to the merchant after this split (WeChat
    ``unfreeze_unsplit``)."""


@dataclass(frozen=True)
class SplitState:
    out_order_no: str
    status: ChannelSplitStatus
    channel_split_no: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    receivers: tuple[SplitReceiverResult, ...] = ()
    """Per receiver, when the channel reports them (needed for ``partial``)."""
    raw: Any = None


@dataclass(frozen=True)
class Ack:
    """The exact HTTP answer a channel expects to a notification."""

    status_code: int
    body: bytes
    media_type: str


@dataclass(frozen=True)
class Notification:
    """A verified, decrypted channel notification about a payment, a refund or a transfer
    (payout). A payment notification may carry a refund too: an Alipay refund changes the
    trade and is announced by the trade's own notification.

    ``event_key`` identifies the channel's event uniquely for this channel account (WeChat's
    notification ``id``, Alipay's ``notify_id``); the inbox is unique on it.
    """

    event_key: str
    payment: PaymentState | None = None
    """Set for payment notifications."""
    refund: RefundState | None = None
    """Set for refund notifications (WeChat ``REFUND.*``)."""
    transfer: TransferState | None = None
    """Set for payout notifications (WeChat ``MCHTRANSFER.BILL.FINISHED``); its ``out_biz_no``
    is our payout id."""
    raw: Any = None

    def __post_init__(self) -> None:
        if (self.transfer is None) == (self.payment is None and self.refund is None):
            raise ValueError("a notification is about a payment and/or refund, or a transfer")

    @property
    def reference(self) -> str:
        """Our number of what the notification is about: the order (``out_trade_no``) of a
        payment or refund, the payout id of a transfer."""
        if self.payment is not None:
            return self.payment.out_trade_no
        if self.refund is not None:
            assert self.refund.out_trade_no is not None
            return self.refund.out_trade_no
        assert self.transfer is not None
        return self.transfer.out_biz_no


# ---------------------------------------------------------------- the adapter contract
def supports_step_up(adapter: object) -> bool:
    """Whether the channel can authenticate the payer strongly when asked
    (:attr:`CreatePayment.step_up`): its class says ``supports_step_up = True`` (Stripe's
    3-D Secure challenge). A channel without it cannot, and a challenged payment routed there
    waits for the merchant's own verification instead."""
    return bool(getattr(adapter, "supports_step_up", False))


class ChannelAdapter(Protocol):
    """One channel account's client. Built per call with decrypted credentials and an injected
    ``httpx.AsyncClient``; holds no state beyond them."""

    name: ClassVar[str]
    methods: ClassVar[frozenset[str]]
    currencies: ClassVar[frozenset[str]]

    async def create_payment(self, request: CreatePayment) -> CreatedPayment: ...

    async def query_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> PaymentState:
        """Raises UnknownOutcome/RetryableError on technical failure; returns ``not_found``
        when the channel has no such order. ``channel_trade_no`` is the channel's own id when
        the create's answer gave one (channels that key orders by their own id need it; a
        channel must still resolve an order whose create answer was lost, e.g. by replaying
        the create under the same idempotency key)."""
        ...

    async def close_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> None:
        """Close an unpaid order so it can no longer be paid. Raises BusinessError with code
        ``already_paid`` if the order was paid meanwhile; closing a closed or unknown order is
        success."""
        ...

    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify (signature, freshness, identity against our credentials) and decode a
        notification. Raises InvalidNotification."""
        ...

    def ack(self, ok: bool) -> Ack:
        """The channel's exact acknowledgement (or refusal, so it retries)."""
        ...

    async def create_refund(self, request: CreateRefund) -> RefundState:
        """Ask for a refund of a paid order. Returns its state (``pending`` or ``succeeded``).
        Raises BusinessError when the channel refuses for good (e.g. ``refund_exceeds_payment``,
        ``insufficient_balance``), RetryableError before the channel accepted anything, and
        UnknownOutcome when it may have (timeouts, 5xx): the janitor then queries."""
        ...

    async def query_refund(
        self, out_refund_no: str, out_trade_no: str, *, channel_refund_no: str | None = None
    ) -> RefundState:
        """The refund's state; ``not_found`` when the channel has no such refund.
        ``channel_refund_no`` is the channel's own refund id when known."""
        ...


class TransferCapable(Protocol):
    """An adapter that can pay out (WeChat merchant transfer, Alipay uni.transfer). Same error
    rules as :class:`ChannelAdapter`: UnknownOutcome whenever the money may have moved."""

    payee_types: ClassVar[frozenset[PayeeType]]

    async def create_transfer(self, request: CreateTransfer) -> TransferState: ...

    async def query_transfer(self, out_biz_no: str) -> TransferState:
        """The transfer's state; ``not_found`` when the channel has no such transfer."""
        ...


class SplitCapable(Protocol):
    """An adapter that can split a paid order at the channel (WeChat profitsharing, Alipay
    order.settle). Receivers are registered with the channel by the adapter as needed."""

    async def create_split(self, request: CreateSplit) -> SplitState: ...

    async def query_split(self, out_order_no: str, out_trade_no: str,
                          channel_trade_no: str) -> SplitState: ...  # fmt: skip


# ---------------------------------------------------------------- payer identity (in-wallet OAuth)
@dataclass(frozen=True)
class PayerIdentity:
    """Who the payer is at the channel, from its OAuth: the ``customer`` field a JSAPI payment
    needs (``field``: ``openid`` for WeChat, ``buyer_id`` for Alipay) and its value."""

    field: str
    value: str
    raw: Any = None


class PayerAuthCapable(Protocol):
    """An adapter that identifies the payer inside the wallet app by the channel's silent web
    OAuth (WeChat ``snsapi_base``, Alipay ``auth_base``), for its JSAPI payments.

    ``payer_authorize_url`` is where to send the browser; the channel returns it to
    ``redirect_uri`` with a code (and ``state`` unchanged, which the caller must check).
    ``exchange_payer_code`` turns the code into the payer's id; BusinessError ``invalid_code``
    when the code is unknown, used or expired (authorize again), RetryableError/UnknownOutcome
    on technical failure (nothing is moved by an exchange: safe to authorize again).
    ``payer_authorize_url`` raises BusinessError ``oauth_not_configured`` for an account that
    cannot do the OAuth (e.g. WeChat without the official account's AppSecret)."""

    def payer_authorize_url(self, redirect_uri: str, state: str) -> str: ...

    async def exchange_payer_code(self, code: str) -> PayerIdentity: ...


def payer_auth_of(adapter: object) -> PayerAuthCapable | None:
    """``adapter`` as a :class:`PayerAuthCapable` when it implements the in-wallet OAuth."""
    if callable(getattr(adapter, "payer_authorize_url", None)) and callable(
        getattr(adapter, "exchange_payer_code", None)
    ):
        return adapter  # type: ignore[return-value]
    return None


@dataclass(frozen=True)
class SdkStandIn:
    """How a browser completes an SDK step (``sdk_params``) on a channel's *sandbox*, where no
    wallet app is there to take it: ``script_url`` defines the wallet's JS bridge
    (``WeixinJSBridge``, ``AlipayJSBridge``) in the page, ``page_url`` is a page that takes the
    app parameters as a GET form (plus ``return_url``), checks their signature as the wallet
    would and pays. A live account has none: the wallet app itself does it."""

    script_url: str | None = None
    page_url: str | None = None


class SdkStandInCapable(Protocol):
    """An adapter whose sandbox stands in for the wallet app's SDK (see :class:`SdkStandIn`);
    None for a live account, or a method without one."""

    def sdk_stand_in(self, method: str, params: Mapping[str, Any]) -> SdkStandIn | None: ...


def sdk_stand_in_of(adapter: object) -> SdkStandInCapable | None:
    """``adapter`` as an :class:`SdkStandInCapable` when it has a sandbox stand-in."""
    if callable(getattr(adapter, "sdk_stand_in", None)):
        return adapter  # type: ignore[return-value]
    return None


# ---------------------------------------------------------------- statements (对账单)
class StatementLineKind(StrEnum):
    """What one line of a channel's day statement records."""

    payment = "payment"
    """Money taken from a customer (WeChat ``SUCCESS`` row, Alipay 交易, UnionPay S22, Stripe
    ``charge``, PayPal T0006)."""
    refund = "refund"
    """Money given back (WeChat ``REFUND`` row, Alipay 退款, UnionPay S30, Stripe ``refund``,
    PayPal T1107)."""
    fee = "fee"
    """A charge of the channel's own that belongs to no payment (a Stripe ``stripe_fee``)."""
    payout = "payout"
    """Money we sent to a person through the channel's transfer API (a payout, 提现 of a wallet
    or merchant: WeChat 商家转账, Alipay 转账到支付宝账户/银行卡). ``out_trade_no`` is our payout
    id (the ``out_biz_no`` we sent), ``channel_trade_no`` the channel's transfer number;
    ``amount`` is negative. Fund-flow bills only."""
    settlement = "settlement"
    """The channel paid our balance out to our own bank account (WeChat 提现 / 自动提现, Alipay
    提现, UnionPay's 清算 of a settlement day, a Stripe ``payout``, a PayPal T04xx withdrawal).
    ``channel_trade_no`` is the channel's id of it (unique per channel account); ``amount`` is
    negative (positive: a settlement returned, e.g. a failed Stripe payout)."""
    other = "other"
    """Anything else the channel lists (adjustments, top-ups, …); see ``raw``."""


@dataclass(frozen=True)
class StatementLine:
    """One line of a channel's statement (bill) for a day, normalised; ``raw`` keeps the
    channel's own record (a bill row as a dict, a balance transaction, …).

    Sign convention, from the merchant's side: ``amount`` is what moved, positive into the
    merchant's account (a payment) and negative out of it (a refund); ``fee`` is what the
    channel charged, positive when charged and negative when given back (the share of a fee a
    refund returns). The money the line leaves with the merchant is ``amount - fee``."""

    kind: StatementLineKind
    amount: int
    """Signed, minor units of ``currency``."""
    currency: str
    fee: int = 0
    """Signed, minor units: positive = charged by the channel, negative = returned."""
    out_trade_no: str | None = None
    """Our order number (the attempt id) as the channel echoes it, when the line says."""
    out_refund_no: str | None = None
    """Our refund number as the channel echoes it (refund lines)."""
    channel_trade_no: str | None = None
    """The channel's id of the payment (WeChat transaction_id, Alipay trade_no, UnionPay
    queryId, Stripe charge, PayPal capture)."""
    channel_refund_no: str | None = None
    """The channel's id of the refund (refund lines)."""
    occurred_at: dt.datetime | None = None
    """When the channel says the line happened (aware)."""
    balance: int | None = None
    """The channel account's balance after this line, minor units, when the bill says (fund-flow
    bills: WeChat 账户结余, Alipay 账户余额)."""
    raw: Any = None

    @property
    def reference(self) -> str | None:
        """Our number the line is about: the refund's for a refund, else the order's."""
        if self.kind is StatementLineKind.refund:
            return self.out_refund_no
        return self.out_trade_no

    @property
    def net(self) -> int:
        """What the line leaves with the merchant."""
        return self.amount - self.fee


class StatementCapable(Protocol):
    """An adapter that reads the channel's statement (bill) of one day.

    ``day`` is the channel's own bill day in the channel's own time zone,
    ``statement_timezone`` (China time for WeChat Pay, Alipay and UnionPay, UTC for Stripe
    and PayPal). A day the channel has no bill for because nothing happened is ``[]``; a bill
    the channel has not made yet (today, or before its T+1 publication) raises RetryableError
    with code ``statement_not_ready``; technical failures raise as elsewhere."""

    statement_timezone: ClassVar[dt.tzinfo]

    async def statement(self, day: dt.date) -> list[StatementLine]: ...


# ---------------------------------------------------------------- payment codes (付款码)
@dataclass(frozen=True)
class PaymentCodeRule:
    """The shape of one wallet's payment code (付款码) a channel declares it takes for a method:
    all digits, one of ``lengths``, starting with one of ``prefixes``. The gateway detects the
    wallet of an aggregate ``barcode`` payment from these rules, so a new wallet (e.g. 云闪付:
    19 digits starting ``62``) is one rule in its channel, not a table in the core."""

    method: str
    lengths: frozenset[int]
    prefixes: tuple[str, ...]

    def matches(self, code: str) -> bool:
        return (
            code.isascii()
            and code.isdigit()
            and len(code) in self.lengths
            and code.startswith(self.prefixes)
        )


@dataclass(frozen=True)
class BarcodeTerms:
    """How long a channel says to wait for a customer confirming a payment-code charge (the
    password prompt) before reversing it, and how often to ask meanwhile."""

    poll_seconds: float
    """Query this often while the customer has not confirmed."""
    reverse_after_seconds: float
    """Give up (reverse the order) once the outcome is still unknown this long after the
    charge was sent."""


@dataclass(frozen=True)
class ReversedPayment:
    """The channel's confirmation that a payment-code order was reversed (撤销): it can no
    longer be paid, and money it had taken goes back to the customer."""

    out_trade_no: str
    refunded: bool | None = None
    """Whether the reverse returned money (Alipay says ``action=refund``; WeChat does not say)."""
    raw: Any = None


class BarcodeCapable(Protocol):
    """An adapter that charges a customer's payment code (付款码, merchant scans customer).

    ``create_payment`` for one of its ``payment_codes`` methods takes ``customer["auth_code"]``
    and answers synchronously: ``succeeded``, ``failed`` (BusinessError: declined, invalid
    code) or ``pending`` (the customer must confirm, e.g. enter a password). ``reverse_payment``
    reverses an order whose outcome stayed unknown; it raises UnknownOutcome/RetryableError
    until the channel confirms, so it is called again until it does."""

    payment_codes: ClassVar[tuple[PaymentCodeRule, ...]]
    barcode_terms: ClassVar[BarcodeTerms]

    async def reverse_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> ReversedPayment: ...


class AdapterFactory(Protocol):
    name: str
    methods: frozenset[str]
    currencies: frozenset[str]
    credentials_model: type[BaseModel]
    production_hosts: frozenset[str]
    """Hosts of the real channel; a test-mode configuration may never point at them."""
    required_customer: Mapping[str, tuple[str, ...]]
    """Per method, the ``customer`` fields the channel needs (``wechat_jsapi`` → ``openid``);
    checked before anything is created (:func:`request_problems`)."""
    # Optional: ``check_request(request: PaymentRequest) -> list[RequestProblem]`` (a static or
    # class method): everything else the channel would refuse about a request before acting —
    # amount limits, currency rules, field formats. Every built-in channel declares one; the
    # gateway answers 400 and creates nothing when no eligible channel account accepts.
    # Optional: ``livemode_of(credentials) -> bool | None`` for channels whose credentials
    # themselves say live or test (Stripe ``sk_test_…``): test credentials may then reach the
    # real host from a test-mode account (they cannot move money), and never serve live mode.

    def __call__(
        self, credentials: Mapping[str, Any], http: httpx.AsyncClient
    ) -> ChannelAdapter: ...

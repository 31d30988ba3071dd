"""The public shapes of the payments API."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from paymux.payments.models import Attempt, Payment
from paymux.splits.schemas import SplitSpec


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("return_url must be an http(s) URL")
    return value


ReturnUrl = Annotated[str, StringConstraints(max_length=2000), AfterValidator(_http_url)]
"""Where the customer is sent back: an absolute http(s) URL (every request that takes one)."""

OutTradeNo = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_\-|*.]+$")
]
"""The merchant's own order number. 32 characters is the tightest channel limit (WeChat)."""


class RiskSignals(BaseModel):
    """What the merchant knows about the buyer and the goods, for risk rules (every field
    optional; a rule reading a missing one applies its ``on_error``)."""

    model_config = ConfigDict(extra="forbid")

    device_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    user_agent: Annotated[str, StringConstraints(max_length=512)] | None = None
    sku: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    quantity: int | None = Field(default=None, ge=1, le=1_000_000)
    account_created_at: dt.datetime | None = Field(
        default=None, description="When the buyer's account at the merchant was opened."
    )
    kyc_level: int | None = Field(
        default=None, ge=0, le=9, description="The buyer's verification level at the merchant."
    )


class EscrowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auto_confirm_in: int = Field(
        default=7 * 86400,
        ge=60,
        le=90 * 86400,
        description="Seconds after payment when the escrow releases itself if nobody acted.",
    )


class PaymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: int = Field(gt=0, le=10**15, description="Minor units of `currency` (fen for CNY).")
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "CNY"
    method: Annotated[str, StringConstraints(min_length=1, max_length=32)] = Field(
        default="cashier",
        description="A payment method, or `cashier` (the default): the customer picks one on "
        "the hosted cashier (`next_action` redirects to `cashier_url`).",
    )
    allowed_methods: list[Annotated[str, StringConstraints(min_length=1, max_length=32)]] | None = (
        Field(
            default=None,
            max_length=32,
            description="With `method: cashier`: the methods the customer may choose from, in "
            "the merchant's preferred order (default: every method the app can serve).",
        )
    )
    out_trade_no: OutTradeNo
    subject: Annotated[str, StringConstraints(min_length=1, max_length=127, strip_whitespace=True)]
    description: Annotated[str, StringConstraints(max_length=1000)] | None = None
    expires_in: int | None = Field(
        default=None, ge=60, le=7 * 86400, description="Seconds until the payment expires."
    )
    customer: dict[str, Annotated[str, StringConstraints(max_length=128)]] = Field(
        default_factory=dict,
        description="Channel customer identifiers: `openid` (wechat_jsapi), `buyer_id`, `ip`; "
        "`wallet`: a user wallet of this app and mode (method `wallet`, or the cashier's "
        "balance when `allowed_methods` lists `wallet`).",
    )
    metadata: dict[str, Annotated[str, StringConstraints(max_length=500)]] = Field(
        default_factory=dict
    )
    return_url: ReturnUrl | None = None
    client_ip: Annotated[str, StringConstraints(max_length=64)] | None = None
    risk: RiskSignals | None = Field(
        default=None, description="Signals for risk rules: device, goods, the buyer's account."
    )
    channel: Annotated[str, StringConstraints(max_length=40)] | None = Field(
        default=None, description="Pin a channel (`wechatpay`) or a channel account (`chn_…`)."
    )
    escrow: EscrowSpec | None = Field(
        default=None, description="Hold the money in escrow until confirmed or released."
    )
    split: SplitSpec | None = Field(
        default=None, description="Profit sharing to run on success (or on escrow release)."
    )

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 50 or any(not 1 <= len(k) <= 40 for k in value):
            raise ValueError("metadata: at most 50 keys of 1–40 characters")
        return value


class PaymentVerify(BaseModel):
    """How the merchant verified the customer of a challenged payment, its own way."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["sms", "id_document", "other"] = Field(
        description="How the customer was verified: a code sent by SMS, an identity document, "
        "or another way of the merchant's."
    )
    reference: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        default=None, description="The merchant's own record of the check (a case or ticket id)."
    )


class Verification(BaseModel):
    """A challenged payment's verification by the merchant (risk ``challenge`` where no
    channel could step up)."""

    status: Literal["required", "verified"]
    method: str | None = None
    reference: str | None = None
    verified_at: dt.datetime | None = None


class Failure(BaseModel):
    code: str
    message: str | None


class AttemptOut(BaseModel):
    """One try at one channel account, with why routing chose it (``routing``)."""

    id: str
    object: Literal["payment_attempt"] = "payment_attempt"
    channel: str
    channel_account: str
    status: str
    channel_trade_no: str | None
    error_code: str | None
    error_message: str | None
    channel_latency_ms: int | None
    routing: dict[str, Any] | None
    late_success_at: dt.datetime | None = None
    """Paid although the payment was paid by another attempt: second money, to refund."""
    created_at: dt.datetime

    @classmethod
    def of(cls, attempt: Attempt) -> AttemptOut:
        return cls(
            id=attempt.id, channel=attempt.channel, channel_account=attempt.channel_account_id,
            status=attempt.status, channel_trade_no=attempt.channel_trade_no,
            error_code=attempt.error_code, error_message=attempt.error_message,
            channel_latency_ms=attempt.channel_latency_ms, routing=attempt.routing,
            late_success_at=attempt.late_success_at, created_at=attempt.created_at,
        )  # fmt: skip


class PaymentOut(BaseModel):
    id: str
    object: Literal["payment"] = "payment"
    livemode: bool
    status: str
    amount: int
    amount_refunded: int
    currency: str
    method: str
    channel: str | None
    channel_account: str | None
    channel_trade_no: str | None
    out_trade_no: str
    subject: str
    description: str | None
    next_action: dict[str, Any] | None
    cashier_url: str
    allowed_methods: list[str] | None = None
    """A cashier payment's methods in the merchant's order (empty: any)."""
    cashier: dict[str, Any] | None = None
    """The cashier's options, best first, with why: on retrieve with ``expand=cashier`` only."""
    failure: Failure | None
    customer: dict[str, Any]
    metadata: dict[str, Any]
    return_url: str | None
    expires_at: dt.datetime
    paid_at: dt.datetime | None
    closed_at: dt.datetime | None
    created_at: dt.datetime
    risk: dict[str, Any] | None = None
    """The risk decision on this payment (``decision``, ``outcome``, ``review``), if rules ran."""
    verification: Verification | None = None
    """Risk ``challenge`` without a channel able to step up: ``required`` until the merchant
    verifies the customer (``POST /v1/payments/{id}/verify``), then ``verified``."""
    funds: dict[str, Any] | None = None
    """Where the money is (escrow, refunds, splits, settlement): on retrieve only."""
    attempts: list[AttemptOut] | None = None
    """Every try at a channel, oldest first, with its routing explanation: on retrieve with
    ``expand=attempts`` only."""

    @classmethod
    def of(cls, payment: Payment, *, public_url: str) -> PaymentOut:
        failure = (
            Failure(code=payment.failure_code, message=payment.failure_message)
            if payment.failure_code
            else None
        )
        return cls(
            id=payment.id,
            livemode=payment.livemode,
            status=payment.status,
            amount=payment.amount,
            amount_refunded=payment.amount_refunded or 0,
            currency=payment.currency,
            method=payment.method,
            channel=payment.channel,
            channel_account=payment.channel_account_id,
            channel_trade_no=payment.channel_trade_no,
            out_trade_no=payment.out_trade_no,
            subject=payment.subject,
            description=payment.description,
            next_action=payment.next_action,
            cashier_url=f"{public_url.rstrip('/')}/pay/{payment.id}",
            allowed_methods=payment.cashier_methods,
            failure=failure,
            customer=payment.customer or {},
            metadata=payment.metadata_ or {},
            return_url=payment.return_url,
            expires_at=payment.expires_at,
            paid_at=payment.paid_at,
            closed_at=payment.closed_at,
            created_at=payment.created_at,
            risk=payment.risk_view(),
            verification=_verification(payment.verification),
        )


def _verification(stored: dict[str, Any] | None) -> Verification | None:
    if not stored:
        return None
    return Verification(
        status=stored["status"], method=stored.get("method"), reference=stored.get("reference"),
        verified_at=stored.get("verified_at"),
    )  # fmt: skip


class PaymentFilters(BaseModel):
    out_trade_no: str | None = None
    status: str | None = None
    created_gte: dt.datetime | None = None
    created_lt: dt.datetime | None = None
    store_code: str | None = None
    """Only the payments made through this store code (``sc_…``: ``metadata.store_code``)."""

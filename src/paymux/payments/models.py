"""Payments (what the merchant asked for) and attempts (one try at one channel account)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from paymux.kit.db import Base, JSONType, UTCDateTime
from paymux.kit.models import created_at_column, updated_at_column
from paymux.payments.states import AttemptStatus, PaymentStatus


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        sa.UniqueConstraint("app_id", "livemode", "out_trade_no"),
        sa.Index("ix_payments_app_created", "app_id", "livemode", "id"),
        sa.Index("ix_payments_expiry", "expires_at"),
        sa.Index("ix_payments_customer_ref", "app_id", "customer_ref"),
        # Reconciliation's local side: the payments an account took on a bill day.
        sa.Index("ix_payments_account_paid", "channel_account_id", "paid_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id"))
    merchant_id: Mapped[str] = mapped_column(sa.ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(sa.Boolean)
    out_trade_no: Mapped[str] = mapped_column(sa.String(64))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    method: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[PaymentStatus] = mapped_column(sa.String(16))
    subject: Mapped[str] = mapped_column(sa.String(256))
    description: Mapped[str | None] = mapped_column(sa.String(1000), nullable=True)
    customer: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    customer_ref: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    """``customer.id``: finds the customer's earlier payments (routing: new/returning, last
    successful channel)."""
    return_url: Mapped[str | None] = mapped_column(sa.String(2000), nullable=True)
    client_ip: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    risk: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    """Risk: the request's signals (``signals``) and the decision (``decision``, ``outcome``,
    ``review``) when rules ran; null when neither."""
    channel: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    channel_account_id: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    channel_trade_no: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    current_attempt_id: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    next_action: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    failure_code: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    failure_message: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expiry_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When the expiry job should (next) try to close this payment; null once final."""
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    amount_refunded: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    """Sum of the payment's succeeded refunds."""
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cashier_methods: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    """A cashier payment (``method: "cashier"``): the methods the customer may choose from, in
    the merchant's order (empty: any the app can serve). Null for a fixed-method payment."""
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    """Risk's ``challenge`` where no channel could step up: ``{"status": "required", …}`` while
    the payment waits, with no attempt, for the merchant to verify the customer (``POST
    /v1/payments/{id}/verify``); then ``"verified"`` with the ``method``, ``reference`` and
    ``verified_at`` the merchant gave. Null for a payment that never needed it."""
    request_key: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    """The ``Idempotency-Key`` and request that created this payment, hashed together
    (:func:`paymux.kit.idempotency.request_key`): a retry of that request after a crash finds
    its payment by it instead of a ``duplicate_out_trade_no``. Null without a key."""
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = updated_at_column()

    def risk_view(self) -> dict[str, Any] | None:
        """The risk decision as the payment shows it (its signals stay internal)."""
        risk = self.risk or {}
        if "decision" not in risk:
            return None
        return {k: risk.get(k) for k in ("decision", "outcome", "review", "unevaluated")}


class metadata_text(FunctionElement[str]):
    """``metadata.<key>`` as text, with the key inline in the SQL (a bound key would keep the
    planners from matching the expression index below)."""

    type = sa.String()
    inherit_cache = True


@compiles(metadata_text, "postgresql")
def _metadata_text_pg(element: metadata_text, compiler: Any, **kw: Any) -> str:
    column, key = list(element.clauses)
    return f"({compiler.process(column, **kw)} ->> '{key.value}')"


@compiles(metadata_text)
def _metadata_text(element: metadata_text, compiler: Any, **kw: Any) -> str:
    column, key = list(element.clauses)
    return f"json_extract({compiler.process(column, **kw)}, '$.{key.value}')"


def store_code_of() -> ColumnElement[str]:
    """The store code a payment was made with (``metadata.store_code``), as the index has it."""
    return metadata_text(Payment.metadata_, sa.literal("store_code"))


# The merchant lists a store's payments (GET /v1/payments?store_code=…) newest first.
sa.Index("ix_payments_store_code", Payment.app_id, Payment.livemode, store_code_of(), Payment.id)


class Attempt(Base):
    """One try of a payment at one channel account. Its id is the ``out_trade_no`` the channel
    sees, so retrying the same attempt is the same request to the channel."""

    __tablename__ = "payment_attempts"
    __table_args__ = (sa.Index("ix_payment_attempts_query_due", "query_due_at"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    payment_id: Mapped[str] = mapped_column(sa.ForeignKey("payments.id"), index=True)
    channel: Mapped[str] = mapped_column(sa.String(32))
    channel_account_id: Mapped[str] = mapped_column(sa.ForeignKey("channel_accounts.id"))
    method: Mapped[str] = mapped_column(sa.String(32))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[AttemptStatus] = mapped_column(sa.String(16))
    channel_trade_no: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    next_action: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    error_code: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    query_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When the janitor should next query the channel; null once final."""
    query_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    channel_latency_ms: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    routing: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    """Why this account: the candidates considered, filtered out (with reasons) and scored,
    the rule that matched and the choice (``routing.explain``)."""
    late_success_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When the channel reported this attempt paid although the payment had been paid by
    another (a switched-away order paid anyway): second money, flagged to the merchant."""
    limit_day: Mapped[dt.date | None] = mapped_column(sa.Date, nullable=True)
    """The day (China time) whose daily limit usage this attempt reserved; null if none."""
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = updated_at_column()

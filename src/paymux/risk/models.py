"""Risk control (风控): the lists rules look values up in (block and allow lists of IPs,
customers, devices, payer accounts, hashed phones and emails, SKUs, regions), of the platform or
of one merchant, in one mode, each item with why, who added it and until when."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit.db import Base, JSONType, UTCDateTime
from paymux.kit.models import created_at_column, updated_at_column


class ListType(StrEnum):
    """What a list holds; each type has its own normal form (:mod:`paymux.risk.values`)."""

    ip = "ip"
    """IPv4/IPv6 addresses and networks (CIDR): an address is in the list when it is one of
    its addresses or inside one of its networks."""
    customer_id = "customer_id"
    device_id = "device_id"
    payer_account = "payer_account"
    """The payer's account at the channel (an openid, an Alipay buyer id, a card fingerprint)."""
    email_hash = "email_hash"
    """SHA-256 of the trimmed, lower-cased e-mail address: the address itself is never kept."""
    phone_hash = "phone_hash"
    """SHA-256 of the phone number's digits (a leading + kept): the number is never kept."""
    sku = "sku"
    region = "region"
    """ISO 3166 country (``CN``) or subdivision (``CN-44``) codes, upper case."""


class RiskList(Base):
    __tablename__ = "risk_lists"
    __table_args__ = (
        sa.UniqueConstraint("owner", "livemode", "name"),
        sa.Index("ix_risk_lists_owner", "owner", "livemode", "id"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(40))
    """``platform``, or the merchant's id: whose rules may read it and who may change it."""
    livemode: Mapped[bool] = mapped_column(sa.Boolean)
    name: Mapped[str] = mapped_column(sa.String(64))
    """What rules call it by: ``list("blocked_regions")``."""
    type: Mapped[ListType] = mapped_column(sa.String(16))
    description: Mapped[str] = mapped_column(sa.String(500), default="")
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[dt.datetime] = created_at_column()
    revision: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    """Bumped with every change to its items: the engine reloads a list only when it moved."""


class RiskListItem(Base):
    __tablename__ = "risk_list_items"
    __table_args__ = (sa.UniqueConstraint("list_id", "value"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    list_id: Mapped[str] = mapped_column(sa.ForeignKey("risk_lists.id"))
    value: Mapped[str] = mapped_column(sa.String(128))
    """The normal form of the value (:func:`paymux.risk.values.normal`)."""
    network: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    """An IP network (CIDR) rather than one address: looked up by containment."""
    reason: Mapped[str] = mapped_column(sa.String(500))
    added_by: Mapped[str] = mapped_column(sa.String(128))
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """After this the item no longer counts (null: until removed)."""
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = updated_at_column()


class RuleSetState(StrEnum):
    draft = "draft"
    published = "published"
    """The owner's rule set in force (at most one per owner and mode)."""
    retired = "retired"
    """Was in force; a later version replaced it."""


class RuleAction(StrEnum):
    allow = "allow"
    block = "block"
    review = "review"
    hold = "hold"
    challenge = "challenge"
    score = "score"
    """Adds ``score`` to the decision's score instead of deciding."""
    restrict = "restrict"
    """Limits the methods or channels the request may use (``restrict_methods``,
    ``restrict_channels``) instead of deciding; routing obeys."""


class RuleMode(StrEnum):
    active = "active"
    shadow = "shadow"
    """Evaluated and recorded, never deciding."""
    disabled = "disabled"


class OnError(StrEnum):
    ignore = "ignore"
    review = "review"
    block = "block"


class RuleSet(Base):
    """An immutable, versioned set of rules of the platform or of a merchant, in one mode. A
    change is a new draft; publishing it gives it the next version and retires the one in
    force. Who made and who published each version is kept with it (its audit)."""

    __tablename__ = "risk_rule_sets"
    __table_args__ = (
        sa.UniqueConstraint("owner", "livemode", "version"),
        sa.Index("ix_risk_rule_sets_owner", "owner", "livemode", "state"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(40))
    livemode: Mapped[bool] = mapped_column(sa.Boolean)
    version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    """1, 2, … per owner and mode, given when published (null while a draft)."""
    state: Mapped[RuleSetState] = mapped_column(sa.String(16))
    note: Mapped[str] = mapped_column(sa.String(500), default="")
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[dt.datetime] = created_at_column()
    published_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    review_score: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    """A decision whose score reaches this goes to review (null: the default)."""
    block_score: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    """A decision whose score reaches this is blocked (null: the default)."""
    shadow_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """A draft running in shadow on live traffic since then (at most one per owner and mode):
    every rule evaluated and recorded with each decision, none deciding."""


class Rule(Base):
    __tablename__ = "risk_rules"
    __table_args__ = (sa.UniqueConstraint("rule_set_id", "position"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    rule_set_id: Mapped[str] = mapped_column(sa.ForeignKey("risk_rule_sets.id"))
    position: Mapped[int] = mapped_column(sa.Integer)
    name: Mapped[str] = mapped_column(sa.String(64))
    event: Mapped[str] = mapped_column(sa.String(32))
    expression: Mapped[str] = mapped_column(sa.String(2000))
    action: Mapped[RuleAction] = mapped_column(sa.String(16))
    score: Mapped[int] = mapped_column(sa.Integer, default=0)
    mode: Mapped[RuleMode] = mapped_column(sa.String(16))
    on_error: Mapped[OnError] = mapped_column(sa.String(16))
    restrict_methods: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    restrict_channels: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)


class Verdict(StrEnum):
    """What a decision lets the request do."""

    allow = "allow"
    block = "block"
    hold = "hold"
    """Money in: taken, kept in the merchant's risk-hold account until a review releases it.
    Money out: not sent until a review approves it."""
    challenge = "challenge"
    review = "review"
    """Money in: proceeds, and a review opens. Money out: not sent until approved."""


class RiskDecision(Base):
    """What the rules said about one request: the versions in force, every rule's result, the
    feature values they read and the time taken (a backtest replays ``features``)."""

    __tablename__ = "risk_decisions"
    __table_args__ = (
        sa.Index("ix_risk_decisions_merchant", "merchant_id", "livemode", "created_at"),
        sa.Index("ix_risk_decisions_subject", "subject_id"),
        sa.Index(
            "ix_risk_decisions_unevaluated",
            "created_at",
            postgresql_where=sa.text("unevaluated AND reevaluated_at IS NULL"),
            sqlite_where=sa.text("unevaluated AND reevaluated_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(sa.String(40))
    app_id: Mapped[str] = mapped_column(sa.String(40))
    livemode: Mapped[bool] = mapped_column(sa.Boolean)
    event: Mapped[str] = mapped_column(sa.String(32))
    subject_type: Mapped[str] = mapped_column(sa.String(16))
    """``payment``, ``refund``, ``payout`` or ``transfer``."""
    subject_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    """The object decided on (null when it was blocked: nothing was created)."""
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    outcome: Mapped[Verdict] = mapped_column(sa.String(16))
    score: Mapped[int] = mapped_column(sa.Integer, default=0)
    restrict_methods: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    restrict_channels: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    versions: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    """The rule set in force per owner: ``{"platform": {"id", "version"}, "merchant": …}``."""
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    """Per rule: owner, name, action, mode, result (hit / no_hit / error), error."""
    features: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    latency_us: Mapped[int] = mapped_column(sa.Integer, default=0)
    unevaluated: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    """The engine failed or ran out of time: the outcome is the failure policy's."""
    reevaluated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """An unevaluated decision, screened again afterwards by the worker (then its ``results``
    are the second screening's)."""
    created_at: Mapped[dt.datetime] = created_at_column()


class ReviewState(StrEnum):
    open = "open"
    approved = "approved"
    declined = "declined"


class RiskReview(Base):
    """A decision a person must look at: a held payment, a payout or transfer waiting, a
    payment that went through but looked wrong. ``deadline`` passes to ``on_expiry``."""

    __tablename__ = "risk_reviews"
    __table_args__ = (
        sa.Index("ix_risk_reviews_merchant", "merchant_id", "livemode", "state", "id"),
        sa.Index("ix_risk_reviews_due", "state", "deadline"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    decision_id: Mapped[str] = mapped_column(sa.ForeignKey("risk_decisions.id"), unique=True)
    merchant_id: Mapped[str] = mapped_column(sa.String(40))
    app_id: Mapped[str] = mapped_column(sa.String(40))
    livemode: Mapped[bool] = mapped_column(sa.Boolean)
    subject_type: Mapped[str] = mapped_column(sa.String(16))
    subject_id: Mapped[str] = mapped_column(sa.String(64))
    outcome: Mapped[Verdict] = mapped_column(sa.String(16))
    """``review`` or ``hold``: what the review releases when approved."""
    state: Mapped[ReviewState] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.String(500), default="")
    assignee: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    deadline: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    on_expiry: Mapped[ReviewState] = mapped_column(sa.String(16))
    closed_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = updated_at_column()


class RiskCustomer(Base):
    """When a merchant's customer was first seen and first paid (the ``customer.*``
    attributes); the merchant may say the account's age and KYC level in the request."""

    __tablename__ = "risk_customers"
    __table_args__ = (sa.PrimaryKeyConstraint("merchant_id", "livemode", "customer_ref"),)

    merchant_id: Mapped[str] = mapped_column(sa.String(40))
    livemode: Mapped[bool] = mapped_column(sa.Boolean)
    customer_ref: Mapped[str] = mapped_column(sa.String(128))
    first_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    first_paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class RuleTrip(Base):
    """A rule of a published set that erred on too many evaluations: it runs in shadow from
    then on (the set itself never changes), until a new version replaces the set."""

    __tablename__ = "risk_rule_trips"
    __table_args__ = (sa.PrimaryKeyConstraint("rule_set_id", "rule_name"),)

    rule_set_id: Mapped[str] = mapped_column(sa.String(40))
    rule_name: Mapped[str] = mapped_column(sa.String(64))
    evaluations: Mapped[int] = mapped_column(sa.Integer)
    errors: Mapped[int] = mapped_column(sa.Integer)
    tripped_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class RiskChange(Base):
    """The risk domain's audit trail: every change to lists, rule sets and reviews — who, when,
    what (append-only; nothing updates or deletes a row)."""

    __tablename__ = "risk_changes"
    __table_args__ = (sa.Index("ix_risk_changes_owner", "owner", "id"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(40))
    """``platform`` or the merchant whose object changed."""
    livemode: Mapped[bool | None] = mapped_column(sa.Boolean, nullable=True)
    actor: Mapped[str] = mapped_column(sa.String(128))
    action: Mapped[str] = mapped_column(sa.String(40))
    object_type: Mapped[str] = mapped_column(sa.String(20))
    object_id: Mapped[str] = mapped_column(sa.String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[dt.datetime] = created_at_column()

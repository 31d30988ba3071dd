"""The public shapes of risk lists."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from paymux.risk.attributes import EventType
from paymux.risk.models import (
    ListType,
    OnError,
    RiskList,
    RiskListItem,
    RuleAction,
    RuleMode,
)

NAME = r"^[a-z][a-z0-9_]{0,63}$"


class ListCreate(BaseModel):
    name: str = Field(pattern=NAME, description='What rules call it by: list("name").')
    type: ListType
    description: str = Field(default="", max_length=500)
    livemode: bool | None = None
    """Operator lists only: the mode (a merchant's list is in its key's mode)."""


class ListOut(BaseModel):
    object: Literal["risk.list"] = "risk.list"
    id: str
    owner: str
    """``platform`` or the merchant's id."""
    livemode: bool
    name: str
    type: str
    description: str
    created_by: str
    created_at: dt.datetime

    @classmethod
    def of(cls, x: RiskList) -> ListOut:
        return cls(id=x.id, owner=x.owner, livemode=x.livemode, name=x.name, type=x.type,
                   description=x.description, created_by=x.created_by,
                   created_at=x.created_at)  # fmt: skip


class ItemIn(BaseModel):
    value: str = Field(min_length=1, max_length=320)
    """In the list's type: an IP or CIDR, an id, an e-mail or phone (hashed here, never kept)
    or its SHA-256, a SKU, a region code."""
    reason: str = Field(min_length=3, max_length=500)
    expires_at: dt.datetime | None = None


class ItemsIn(BaseModel):
    items: list[ItemIn] = Field(min_length=1, max_length=1000)


class ItemOut(BaseModel):
    object: Literal["risk.list_item"] = "risk.list_item"
    id: str
    value: str
    network: bool
    reason: str
    added_by: str
    expires_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, x: RiskListItem) -> ItemOut:
        return cls(id=x.id, value=x.value, network=x.network, reason=x.reason,
                   added_by=x.added_by, expires_at=x.expires_at, created_at=x.created_at,
                   updated_at=x.updated_at)  # fmt: skip


class ItemsAdded(BaseModel):
    object: Literal["risk.list_items_added"] = "risk.list_items_added"
    list_id: str
    added: int
    updated: int
    """Values there already: their reason, expiry and who were replaced."""


class ItemRemoved(BaseModel):
    object: Literal["risk.list_item"] = "risk.list_item"
    list_id: str
    value: str
    deleted: Literal[True] = True


class ItemCheck(BaseModel):
    object: Literal["risk.list_check"] = "risk.list_check"
    list_id: str
    value: str
    """The value's normal form (a hash for e-mails and phones)."""
    listed: bool
    item: ItemOut | None


class RuleIn(BaseModel):
    name: str = Field(pattern=NAME)
    event: EventType
    expression: str = Field(min_length=1, max_length=2000)
    action: RuleAction
    score: int = Field(default=0, ge=-1000, le=1000)
    """``action: score`` only: what a hit adds to the decision's score."""
    mode: RuleMode = RuleMode.active
    on_error: OnError | None = None
    """What an evaluation error does (default: ``review`` for a block rule, else ``ignore``)."""
    restrict_methods: list[str] | None = Field(default=None, max_length=50)
    """``action: restrict`` only: the payment methods the request may still use."""
    restrict_channels: list[str] | None = Field(default=None, max_length=20)
    """``action: restrict`` only: the channels the request may still be routed to."""


class RuleSetCreate(BaseModel):
    rules: list[RuleIn] = Field(min_length=1, max_length=200)
    note: str = Field(default="", max_length=500)
    livemode: bool | None = None
    """Operator rule sets only: the mode."""
    review_score: int | None = Field(default=None, ge=1, le=100_000)
    """A decision whose score (the sum of the hit ``score`` rules) reaches this opens a review
    (default 50; of two rule sets in force, the lower counts)."""
    block_score: int | None = Field(default=None, ge=1, le=100_000)
    """A decision whose score reaches this is blocked (default 100)."""


class RuleOut(BaseModel):
    name: str
    event: str
    expression: str
    action: str
    score: int
    mode: str
    on_error: str
    restrict_methods: list[str] | None = None
    restrict_channels: list[str] | None = None
    attributes: list[str]
    lists: list[str]


class RuleSetOut(BaseModel):
    object: Literal["risk.rule_set"] = "risk.rule_set"
    id: str
    owner: str
    livemode: bool
    version: int | None
    state: str
    note: str
    review_score: int | None = None
    block_score: int | None = None
    shadow_since: dt.datetime | None = None
    """A draft running in shadow on live traffic: since when."""
    tripped: list[str] = []
    """The rules its error breaker moved to shadow."""
    rules: list[RuleOut]
    created_by: str
    created_at: dt.datetime
    published_by: str | None
    published_at: dt.datetime | None
    retired_at: dt.datetime | None


class DecisionOut(BaseModel):
    """What the rules said about one request."""

    id: str
    object: Literal["risk.decision"] = "risk.decision"
    livemode: bool
    event: str
    subject_type: str
    subject_id: str | None
    amount: int
    currency: str
    outcome: str
    score: int
    restrict_methods: list[str] | None
    restrict_channels: list[str] | None
    rule_sets: dict[str, Any]
    """The rule set in force per owner (``platform``, ``merchant``): id and version."""
    rules: list[dict[str, Any]]
    """Each rule's result: owner, name, action, mode, result (hit / no_hit / error), error."""
    features: dict[str, Any]
    """The feature values the rules read."""
    latency_us: int
    unevaluated: bool
    created: int


class ReviewOut(BaseModel):
    id: str
    object: Literal["risk.review"] = "risk.review"
    livemode: bool
    decision: str
    subject_type: str
    subject_id: str
    outcome: str
    state: str
    reason: str
    assignee: str | None
    deadline: int
    on_expiry: str
    closed_by: str | None
    closed_at: int | None
    created: int
    refund: str | None = None
    """On a decline that refunded the payment: the refund."""


class ListAddition(BaseModel):
    """Put one of the decision's feature values on a list while closing its review."""

    model_config = ConfigDict(extra="forbid")

    list: str = Field(min_length=1, max_length=40, description="The list's id (rls_…).")
    attribute: str = Field(
        min_length=1, max_length=64, description="The feature whose value to add: device_id, ip, …"
    )
    reason: str | None = Field(default=None, max_length=500)


class ReviewClose(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)
    add_to_list: ListAddition | None = None


class ReviewAssign(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee: str | None = Field(default=None, min_length=1, max_length=128)


class ShadowSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True


class PublishOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    confirm: bool = False
    """Publish although its block rules would have blocked more than the allowed share of the
    last days' traffic (the backtest run on publishing)."""


class BacktestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule_set: str = Field(min_length=1, max_length=40)
    """A rule set of the caller's (a draft, usually) to replay in place of the one in force."""
    start: dt.datetime
    end: dt.datetime
    limit: int = Field(default=50_000, ge=1, le=200_000)
    """At most this many stored decisions (oldest first)."""


class BacktestRule(BaseModel):
    name: str
    event: str
    action: str
    mode: str
    hits: int
    hit_amount: int
    errors: int
    unavailable: int
    """Decisions whose stored features lack an attribute this rule reads."""


class BacktestOut(BaseModel):
    object: Literal["risk.backtest"] = "risk.backtest"
    rule_set: str
    start: dt.datetime
    end: dt.datetime
    decisions: int
    """Stored decisions replayed (of the events the rule set has rules for)."""
    skipped: int
    """Decisions that could not be replayed (the engine had failed: no features)."""
    truncated: bool
    rules: list[BacktestRule]
    outcomes: dict[str, int]
    """The draft's outcomes: how many decisions each."""
    changes: dict[str, int]
    """``live→draft`` pairs that differ, with their counts."""
    changed_amount: int
    block_share: float
    """Of the replayed decisions, the share the draft blocks that live did not."""
    hits_refunded: int
    """Payments a draft rule hit (other than allow) that were refunded since."""
    hits_reviewed: int
    """Decisions a draft rule hit that had a review."""


class ChangeOut(BaseModel):
    """One change to the risk configuration: who, when, what."""

    id: str
    object: Literal["risk.change"] = "risk.change"
    livemode: bool | None
    actor: str
    action: str
    """``list.created``, ``list.items_added``, ``list.item_removed``, ``rule_set.created``,
    ``rule_set.published``, ``rule_set.shadow``, ``rule.tripped`` (by ``system:breaker``),
    ``review.assigned``, ``review.approved``, ``review.declined``."""
    object_type: str
    object_id: str
    detail: dict[str, Any]
    created_at: dt.datetime

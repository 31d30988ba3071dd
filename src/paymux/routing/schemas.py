"""The public shapes of routing rules and settings (``/v1/routing``)."""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from paymux.routing.models import RoutingRule, RoutingSettings, Strategy

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
HHMM = Annotated[str, StringConstraints(pattern=_HHMM.pattern)]
Short = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Target = Annotated[str, StringConstraints(min_length=1, max_length=40)]
"""A channel account id (``chn_…``), a channel name (``wechatpay``), or ``$preferred`` /
``$last`` (the customer's preferred / last successful channel)."""
SPECIAL_TARGETS = frozenset({"$preferred", "$last"})


class ActionType(StrEnum):
    priority = "priority"
    """Try ``targets`` in this order (each target's accounts by the default order)."""
    weighted = "weighted"
    """Pick the first target at random by ``weights`` (a volume split), the others after."""
    pin = "pin"
    """Only ``targets[0]``: no other channel, ever (no fallback)."""
    score = "score"
    """Only ``targets`` (all candidates if empty), ranked by the dynamic score."""


class Conditions(BaseModel):
    """Every condition given must hold (an absent one always holds). Times are China time."""

    model_config = ConfigDict(extra="forbid")

    methods: list[Short] | None = None
    currencies: list[Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]] | None = None
    amount_min: int | None = Field(default=None, ge=0, description="Inclusive, minor units.")
    amount_max: int | None = Field(default=None, ge=0, description="Inclusive, minor units.")
    time_from: HHMM | None = Field(default=None, description="HH:MM China time, inclusive.")
    time_to: HHMM | None = Field(
        default=None, description="HH:MM China time, exclusive; before time_from wraps midnight."
    )
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] | None = Field(
        default=None, description="0 = Monday, China time."
    )
    device_types: list[Short] | None = Field(default=None, description="customer.device_type")
    regions: list[Short] | None = Field(default=None, description="customer.region")
    customer_type: Literal["new", "returning"] | None = Field(
        default=None, description="Returning: the customer (customer.id) paid this app before."
    )
    preferred_channels: list[Short] | None = Field(
        default=None, description="customer.preferred_channel is one of these."
    )
    last_channels: list[Short] | None = Field(
        default=None, description="The customer's last successful payment went through one."
    )
    metadata: dict[Short, list[Annotated[str, StringConstraints(max_length=500)]]] | None = Field(
        default=None, description="Order metadata key → accepted values."
    )

    @model_validator(mode="after")
    def _coherent(self) -> Conditions:
        if (self.time_from is None) != (self.time_to is None):
            raise ValueError("time_from and time_to go together")
        if self.time_from is not None and self.time_from == self.time_to:
            raise ValueError("time_from and time_to must differ")
        if (
            self.amount_min is not None
            and self.amount_max is not None
            and self.amount_min > self.amount_max
        ):
            raise ValueError("amount_min must not exceed amount_max")
        for name in ("methods", "currencies", "device_types", "regions", "weekdays"):
            value = getattr(self, name)
            if value is not None and not value:
                raise ValueError(f"{name} must not be empty (leave it out to match any)")
        return self


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: ActionType
    targets: list[Target] = Field(default_factory=list, max_length=50)
    weights: list[Annotated[int, Field(ge=0, le=1_000_000)]] | None = None
    fallback: bool = Field(
        default=True,
        description="After the targets, try the other candidates (never for pin).",
    )

    @model_validator(mode="after")
    def _coherent(self) -> Action:
        if self.type is not ActionType.score and not self.targets:
            raise ValueError(f"a {self.type} action needs targets")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError("targets must not repeat")
        if self.type is ActionType.pin and len(self.targets) != 1:
            raise ValueError("a pin action has exactly one target")
        if self.type is ActionType.weighted:
            if self.weights is None or len(self.weights) != len(self.targets):
                raise ValueError("a weighted action needs one weight per target")
            if sum(self.weights) <= 0:
                raise ValueError("weights must not all be zero")
        elif self.weights is not None:
            raise ValueError("weights belong to split actions only")
        for target in self.targets:
            if target.startswith("$") and target not in SPECIAL_TARGETS:
                raise ValueError(f"unknown special target {target!r}; known: $preferred, $last")
        return self


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(max_length=200)] = ""
    position: int | None = Field(
        default=None, ge=0, description="Where in the app's list (0 = first); default: last."
    )
    enabled: bool = True
    conditions: Conditions = Field(default_factory=Conditions)
    action: Action


class RuleOut(BaseModel):
    id: str
    object: Literal["routing_rule"] = "routing_rule"
    livemode: bool
    name: str
    position: int
    enabled: bool
    conditions: dict[str, Any]
    action: dict[str, Any]
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, rule: RoutingRule, version: int) -> RuleOut:
        return cls(
            id=rule.id, livemode=rule.livemode, name=rule.name, position=rule.position,
            enabled=rule.enabled,
            conditions=rule.conditions, action=rule.action, version=version,
            created_at=rule.created_at, updated_at=rule.updated_at,
        )  # fmt: skip


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: Strategy | None = None
    weight_success: float | None = Field(default=None, ge=0, le=100)
    weight_cost: float | None = Field(default=None, ge=0, le=100)
    weight_latency: float | None = Field(default=None, ge=0, le=100)
    exploration: float | None = Field(default=None, ge=0, le=10)


class SettingsOut(BaseModel):
    object: Literal["routing_settings"] = "routing_settings"
    livemode: bool
    version: int
    strategy: str
    weight_success: float
    weight_cost: float
    weight_latency: float
    exploration: float

    @classmethod
    def of(cls, row: RoutingSettings) -> SettingsOut:
        return cls(
            livemode=row.livemode, version=row.version, strategy=row.strategy,
            weight_success=row.weight_success,
            weight_cost=row.weight_cost, weight_latency=row.weight_latency,
            exploration=row.exploration,
        )  # fmt: skip


class MaintenanceWindow(BaseModel):
    """A channel account's maintenance window in China time: weekly (``start``/``end`` as
    HH:MM, optional ``weekdays``, 0 = Monday; end before start wraps midnight) or once (ISO
    datetimes; without a zone they are China time)."""

    model_config = ConfigDict(extra="forbid")

    start: str
    end: str
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] | None = None

    @model_validator(mode="after")
    def _coherent(self) -> MaintenanceWindow:
        weekly = bool(_HHMM.match(self.start)) and bool(_HHMM.match(self.end))
        if weekly:
            if self.start == self.end:
                raise ValueError("start and end must differ")
            return self
        if self.weekdays is not None:
            raise ValueError("weekdays belong to weekly (HH:MM) windows")
        try:
            start, end = dt.datetime.fromisoformat(self.start), dt.datetime.fromisoformat(self.end)
        except ValueError:
            raise ValueError("start/end: HH:MM (weekly) or ISO datetimes (once)") from None
        if (start.tzinfo is None) != (end.tzinfo is None) or start >= end:
            raise ValueError("a one-off window needs start before end")
        return self


class AccountRouting(BaseModel):
    """A channel account's routing configuration: fees, limits, maintenance windows. Fields
    left out stay as they are; ``null`` removes a limit."""

    model_config = ConfigDict(extra="forbid")

    fee_rate_bps: int | None = Field(default=None, ge=0, le=10_000)
    fee_fixed: int | None = Field(default=None, ge=0)
    fee_min: int | None = Field(default=None, ge=0)
    fee_max: int | None = Field(default=None, ge=0)
    min_amount: int | None = Field(default=None, ge=1)
    max_amount: int | None = Field(default=None, ge=1)
    daily_amount_limit: int | None = Field(default=None, ge=1)
    daily_count_limit: int | None = Field(default=None, ge=1)
    maintenance: list[MaintenanceWindow] | None = Field(default=None, max_length=100)
    priority: int | None = Field(default=None, ge=0, le=1_000_000)
    enabled: bool | None = None


class AccountRoutingOut(BaseModel):
    id: str
    object: Literal["channel_account_routing"] = "channel_account_routing"
    livemode: bool
    channel: str
    enabled: bool
    priority: int
    fee_rate_bps: int
    fee_fixed: int
    fee_min: int | None
    fee_max: int | None
    min_amount: int | None
    max_amount: int | None
    daily_amount_limit: int | None
    daily_count_limit: int | None
    maintenance: list[dict[str, Any]]

    @classmethod
    def of(cls, account: Any) -> AccountRoutingOut:
        return cls(
            id=account.id, livemode=account.mode == "live", channel=account.channel,
            enabled=account.enabled,
            priority=account.priority, fee_rate_bps=account.fee_rate_bps,
            fee_fixed=account.fee_fixed or 0, fee_min=account.fee_min, fee_max=account.fee_max,
            min_amount=account.min_amount, max_amount=account.max_amount,
            daily_amount_limit=account.daily_amount_limit,
            daily_count_limit=account.daily_count_limit,
            maintenance=list(account.maintenance or []),
        )  # fmt: skip

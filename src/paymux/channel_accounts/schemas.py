"""Shapes of the operator API's channel accounts."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from paymux.channel_accounts import service as channel_service
from paymux.channel_accounts.models import ChannelAccount
from paymux.merchants.models import Mode
from paymux.routing.schemas import AccountRoutingOut


class ChannelAccountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    mode: Mode = Mode.test
    credentials: dict[str, Any]
    methods: list[str] | None = None
    currencies: list[str] | None = None
    fee_rate_bps: int = Field(default=0, ge=0, le=10_000)
    priority: int = Field(default=100, ge=0, le=1_000_000)
    enabled: bool = True
    name: Annotated[str, StringConstraints(max_length=200)] = ""


class ChannelAccountUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = None
    priority: int | None = Field(default=None, ge=0, le=1_000_000)
    fee_rate_bps: int | None = Field(default=None, ge=0, le=10_000)


_ROUTING_FIELDS = {
    "fee_fixed", "fee_min", "fee_max", "min_amount", "max_amount", "daily_amount_limit",
    "daily_count_limit", "maintenance",
}  # fmt: skip


class ChannelAccountOut(BaseModel):
    """Never carries the credentials: they go in, they do not come out."""

    id: str
    object: Literal["channel_account"] = "channel_account"
    app: str
    channel: str
    mode: str
    name: str
    methods: list[str]
    currencies: list[str]
    fee_rate_bps: int
    priority: int
    enabled: bool
    notify_url: str
    routing: dict[str, Any]
    """Fees, limits and maintenance windows (set with ``PATCH /v1/routing/accounts/{id}``)."""
    created_at: dt.datetime

    @classmethod
    def of(cls, account: ChannelAccount, *, public_url: str) -> ChannelAccountOut:
        return cls(
            id=account.id, app=account.app_id, channel=account.channel, mode=account.mode,
            name=account.name, methods=account.methods, currencies=account.currencies,
            fee_rate_bps=account.fee_rate_bps, priority=account.priority, enabled=account.enabled,
            notify_url=channel_service.notify_url(public_url, account),
            routing=AccountRoutingOut.of(account).model_dump(
                mode="json", include=_ROUTING_FIELDS
            ),
            created_at=account.created_at,
        )  # fmt: skip

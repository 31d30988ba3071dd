"""The public shapes of the webhook endpoints and events API."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from paymux.webhooks.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    events: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=lambda: ["*"], max_length=50,
        description="Event types to receive, or `[\"*\"]` for all.",
    )  # fmt: skip
    description: Annotated[str, StringConstraints(max_length=500)] | None = None


class EndpointOut(BaseModel):
    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    livemode: bool
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None
    created_at: dt.datetime
    secret: str | None = Field(default=None, description="Only in the response that created it.")

    @classmethod
    def of(cls, endpoint: WebhookEndpoint, secret: str | None = None) -> EndpointOut:
        return cls(
            id=endpoint.id, livemode=endpoint.livemode, url=endpoint.url,
            events=list(endpoint.events), description=endpoint.description,
            enabled=endpoint.enabled, disabled_reason=endpoint.disabled_reason,
            created_at=endpoint.created_at, secret=secret,
        )  # fmt: skip


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True


class EventOut(BaseModel):
    id: str
    object: Literal["event"] = "event"
    type: str
    livemode: bool
    created: int
    data: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls(
            id=event.id, type=event.type, livemode=event.livemode,
            created=int(event.created_at.timestamp()), data={"object": event.data},
        )  # fmt: skip


class AttemptOut(BaseModel):
    attempted_at: dt.datetime
    status_code: int | None
    error: str | None
    duration_ms: int
    response_excerpt: str | None = Field(
        description="The start of the body of a 2xx answer; never anything of another answer."
    )

    @classmethod
    def of(cls, attempt: WebhookAttempt) -> AttemptOut:
        code = attempt.status_code
        delivered = code is not None and 200 <= code < 300  # rows from before the rule too
        return cls(
            attempted_at=attempt.attempted_at, status_code=code,
            error=attempt.error, duration_ms=attempt.duration_ms,
            response_excerpt=attempt.response_excerpt if delivered else None,
        )  # fmt: skip


class DeliveryOut(BaseModel):
    id: str
    object: Literal["webhook_delivery"] = "webhook_delivery"
    event: str
    endpoint: str
    status: str
    attempt_count: int
    next_attempt_at: dt.datetime | None
    last_status_code: int | None
    delivered_at: dt.datetime | None
    created_at: dt.datetime
    attempts: list[AttemptOut] = Field(default_factory=list)

    @classmethod
    def of(
        cls, delivery: WebhookDelivery, attempts: list[WebhookAttempt] | None = None
    ) -> DeliveryOut:
        return cls(
            id=delivery.id, event=delivery.event_id, endpoint=delivery.endpoint_id,
            status=delivery.status, attempt_count=delivery.attempt_count,
            next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
            last_status_code=delivery.last_status_code, delivered_at=delivery.delivered_at,
            created_at=delivery.created_at,
            attempts=[AttemptOut.of(a) for a in attempts or []],
        )  # fmt: skip


class ResendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: Annotated[str, StringConstraints(max_length=40)] | None = Field(
        default=None, description="Only this endpoint; default every subscribed endpoint."
    )

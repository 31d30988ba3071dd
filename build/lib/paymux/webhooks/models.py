"""Merchant webhooks: endpoints, the event outbox, deliveries and every delivery attempt."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit.db import Base, JSONType, UTCDateTime
from paymux.kit.models import created_at_column, updated_at_column


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"
    __table_args__ = (sa.Index("ix_webhook_endpoints_app", "app_id", "livemode"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id"))
    livemode: Mapped[bool] = mapped_column(sa.Boolean)
    url: Mapped[str] = mapped_column(sa.String(2000))
    events: Mapped[list[str]] = mapped_column(JSONType)
    """Event types this endpoint receives; ``["*"]`` for all."""
    description: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    secret_enc: Mapped[str] = mapped_column(sa.Text)
    """The ``whsec_`` secret, encrypted by the vault with the endpoint id as context."""
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = updated_at_column()

    def wants(self, event_type: str) -> bool:
        return (
            self.enabled
            and self.deleted_at is None
            and ("*" in self.events or event_type in self.events)
        )


class Event(Base):
    """The outbox: written in the same transaction as the change it reports."""

    __tablename__ = "events"
    __table_args__ = (sa.Index("ix_events_app_id", "app_id", "livemode", "id"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id"))
    livemode: Mapped[bool] = mapped_column(sa.Boolean)
    type: Mapped[str] = mapped_column(sa.String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = created_at_column()


class DeliveryStatus(StrEnum):
    pending = "pending"
    """Waiting for its (next) attempt at ``next_attempt_at``."""
    delivered = "delivered"
    failed = "failed"
    """Every retry was used up."""
    canceled = "canceled"
    """The endpoint was disabled or deleted before the event got through."""


class WebhookDelivery(Base):
    """One event to one endpoint, tried until it is delivered or the schedule runs out."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.Index("ix_webhook_deliveries_due", "next_attempt_at"),
        sa.Index("ix_webhook_deliveries_endpoint", "endpoint_id", "status"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.ForeignKey("events.id"), index=True)
    endpoint_id: Mapped[str] = mapped_column(sa.ForeignKey("webhook_endpoints.id"))
    status: Mapped[DeliveryStatus] = mapped_column(sa.String(16))
    attempt_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """Due time of the next attempt (also the worker's claim lease); null once final."""
    last_status_code: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = updated_at_column()


class WebhookAttempt(Base):
    """The log of every HTTP attempt of a delivery."""

    __tablename__ = "webhook_attempts"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(sa.ForeignKey("webhook_deliveries.id"), index=True)
    attempted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    status_code: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    duration_ms: Mapped[int] = mapped_column(sa.Integer)
    response_excerpt: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)

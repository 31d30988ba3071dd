"""Routing data: per-app and per-mode rules and settings, and the shared health of channel
accounts.

Rules and settings belong to one mode (``livemode``) like every other merchant object: a test
key reads and edits only the test ones, and a live payment is routed by the live ones only.

Everything lives in the database the API processes already share (no Redis): rules and settings
change rarely and are cached per process behind a version number; statistics are minute buckets
written with one UPSERT per outcome; daily limits and breakers are rows changed by guarded
UPDATEs, which is what makes them correct across several processes.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit.db import Base, JSONType, UTCDateTime
from paymux.kit.models import created_at_column, updated_at_column


class Strategy(StrEnum):
    """How candidates no rule orders are ranked."""

    score = "score"
    """By the dynamic score: success estimate, fee, latency, health (the default)."""
    priority = "priority"
    """By each account's static ``priority`` (the behaviour before smart routing)."""


class BreakerState(StrEnum):
    closed = "closed"
    """Healthy: traffic flows."""
    open = "open"
    """Too many technical errors: no traffic until the cooldown has passed."""
    half_open = "half_open"
    """Cooldown over: exactly one probe attempt is in flight; its outcome closes or re-opens."""


class RoutingSettings(Base):
    """One row per app and mode: strategy, score weights, and the version every rule edit of
    that mode bumps."""

    __tablename__ = "routing_settings"

    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id"), primary_key=True)
    livemode: Mapped[bool] = mapped_column(sa.Boolean, primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    """Bumped by every edit of this app's rules or settings in this mode; caches compare it."""
    strategy: Mapped[str] = mapped_column(sa.String(16), default=Strategy.score.value)
    weight_success: Mapped[float] = mapped_column(sa.Float, default=1.0)
    weight_cost: Mapped[float] = mapped_column(sa.Float, default=0.05)
    """Score lost per percentage point of fee (0.05: 1% fee weighs like 5 points of success)."""
    weight_latency: Mapped[float] = mapped_column(sa.Float, default=0.01)
    """Score lost per second of recent mean create latency."""
    exploration: Mapped[float] = mapped_column(sa.Float, default=0.05)
    """Weight of the exploration bonus for accounts with little recent traffic."""
    updated_at: Mapped[dt.datetime] = updated_at_column()


class RoutingRule(Base):
    """One rule of an app in one mode: conditions → action; the rules of an app's mode are
    evaluated by ``position``. Its account targets are channel accounts of the same mode."""

    __tablename__ = "routing_rules"
    __table_args__ = (
        sa.Index("ix_routing_rules_app_mode_position", "app_id", "livemode", "position"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id"))
    livemode: Mapped[bool] = mapped_column(sa.Boolean)
    position: Mapped[int] = mapped_column(sa.Integer)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    conditions: Mapped[dict[str, Any]] = mapped_column(JSONType)
    action: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = updated_at_column()


class RoutingStat(Base):
    """Outcomes of one channel account and method in one minute (UTC, truncated)."""

    __tablename__ = "routing_stats"

    account_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    method: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    minute: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    accepted: Mapped[int] = mapped_column(sa.Integer, default=0)
    """Orders the channel accepted (the denominator of the success rate)."""
    succeeded: Mapped[int] = mapped_column(sa.Integer, default=0)
    errors: Mapped[int] = mapped_column(sa.Integer, default=0)
    """Technical failures and timeouts (the health signal, not the success rate)."""
    latency_ms: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    """Sum of create latencies of accepted orders and errors."""


class RoutingLimitUsage(Base):
    """What one channel account has taken on one day (China time) against its daily limits."""

    __tablename__ = "routing_limit_usage"

    account_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    day: Mapped[dt.date] = mapped_column(sa.Date, primary_key=True)
    count: Mapped[int] = mapped_column(sa.Integer, default=0)
    amount: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class RoutingBreaker(Base):
    """The circuit breaker of one channel account, shared by every process."""

    __tablename__ = "routing_breakers"

    account_id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    state: Mapped[str] = mapped_column(sa.String(16), default=BreakerState.closed.value)
    consecutive_errors: Mapped[int] = mapped_column(sa.Integer, default=0)
    window_start: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    window_total: Mapped[int] = mapped_column(sa.Integer, default=0)
    window_errors: Mapped[int] = mapped_column(sa.Integer, default=0)
    opened_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    probe_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

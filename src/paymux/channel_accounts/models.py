"""Channel accounts: an app's configured credentials at a channel, with its fees and limits."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit.db import Base, JSONType
from paymux.kit.models import created_at_column, updated_at_column


class ChannelAccount(Base):
    """One app's account at one channel: credentials (encrypted), methods offered, fees."""

    __tablename__ = "channel_accounts"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id"), index=True)
    channel: Mapped[str] = mapped_column(sa.String(32))
    mode: Mapped[str] = mapped_column(sa.String(8))
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    methods: Mapped[list[str]] = mapped_column(JSONType)
    currencies: Mapped[list[str]] = mapped_column(JSONType)
    credentials_enc: Mapped[str] = mapped_column(sa.Text)
    fee_rate_bps: Mapped[int] = mapped_column(sa.Integer, default=0)
    """Channel fee in basis points of the amount (60 = 0.6%)."""
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    priority: Mapped[int] = mapped_column(sa.Integer, default=100)
    """Lower is tried first."""
    fee_fixed: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    """Fixed fee per payment in minor units, on top of ``fee_rate_bps``."""
    fee_min: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    fee_max: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    min_amount: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    """Smallest amount per payment this account takes (minor units); null: no limit."""
    max_amount: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    daily_amount_limit: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    """Most this account may take per day (China time), counted atomically by routing."""
    daily_count_limit: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    maintenance: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONType, default=list, server_default="[]"
    )
    """Maintenance windows in China time: ``{"weekdays": [0..6], "start": "HH:MM", "end":
    "HH:MM"}`` (weekly) or ``{"start": ISO datetime, "end": ISO datetime}`` (once)."""
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = updated_at_column()

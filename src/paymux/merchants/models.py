"""Merchants own apps; an app is one integration with its keys, endpoints and channels."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit.db import Base, UTCDateTime
from paymux.kit.models import created_at_column


class Mode(StrEnum):
    test = "test"
    """Sandbox money: only ever reaches sandbox channels."""
    live = "live"
    """Real money: only ever reaches real channels."""


class Merchant(Base):
    __tablename__ = "merchants"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    timezone: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    """IANA zone of the times on the merchant's customer pages; null: the platform's
    (``PAYMUX_WEB_TIMEZONE``)."""
    created_at: Mapped[dt.datetime] = created_at_column()


class App(Base):
    __tablename__ = "apps"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(sa.ForeignKey("merchants.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    display_name: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    """The brand customers see on the cashier and store-code pages; null: merchant · app name."""
    logo: Mapped[bytes | None] = mapped_column(sa.LargeBinary, nullable=True, deferred=True)
    """The uploaded logo (PNG, JPEG or WebP, checked by content). Deferred: API-key lookups load
    apps on the hot path and must not drag the image along."""
    logo_type: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    logo_digest: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    """SHA-256 of ``logo``: part of its URL, so the image can be cached for a year."""
    created_at: Mapped[dt.datetime] = created_at_column()


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id"), index=True)
    mode: Mapped[Mode] = mapped_column(sa.String(8))
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    hint: Mapped[str] = mapped_column(sa.String(16))
    """Last characters of the key, to recognise it in listings."""
    created_at: Mapped[dt.datetime] = created_at_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

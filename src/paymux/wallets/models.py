"""Wallets (钱包账户): a user's or merchant's money kept by the platform, on the ledger as
sub-accounts ``available``, ``frozen``, ``pending`` and ``points`` (unit PTS)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit.db import Base
from paymux.kit.models import created_at_column, updated_at_column


class OwnerType(StrEnum):
    user = "user"
    merchant = "merchant"


class Wallet(Base):
    __tablename__ = "wallets"
    __table_args__ = (
        sa.UniqueConstraint("app_id", "livemode", "reference", "currency"),
        sa.Index("ix_wallets_app", "app_id", "livemode", "id"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id"))
    livemode: Mapped[bool] = mapped_column(sa.Boolean)
    owner_type: Mapped[OwnerType] = mapped_column(sa.String(16))
    reference: Mapped[str] = mapped_column(sa.String(64))
    """The platform's own id of the owner (its user or shop id)."""
    currency: Mapped[str] = mapped_column(sa.String(3))
    verification_level: Mapped[int] = mapped_column(sa.Integer, default=0)
    """KYC level (0 none, 1 real name, 2 real name + bank card): sets withdrawal limits."""
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = updated_at_column()

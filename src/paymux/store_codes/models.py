"""Store codes: one printable QR per store of an app, in one mode."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit.db import Base
from paymux.kit.models import created_at_column, updated_at_column


class StoreCode(Base):
    """A static code a store prints: ``/s/<code>`` opens the amount page, which creates a
    cashier payment carrying this code's id and ``store_id``."""

    __tablename__ = "store_codes"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id"), index=True)
    livemode: Mapped[bool] = mapped_column(sa.Boolean)
    code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    """The unguessable part of the public URL; never the id (ids sort by time)."""
    name: Mapped[str] = mapped_column(sa.String(127))
    store_id: Mapped[str] = mapped_column(sa.String(64))
    """The merchant's own id of the store, copied into every payment's metadata."""
    amount: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    """A fixed amount in minor units; null: the customer enters it."""
    currency: Mapped[str] = mapped_column(sa.String(3))
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = updated_at_column()

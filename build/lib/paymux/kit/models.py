"""Column helpers shared by every domain's models."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit import clock
from paymux.kit.db import UTCDateTime


def created_at_column() -> Mapped[dt.datetime]:
    return mapped_column(UTCDateTime(), default=clock.now, nullable=False)


def updated_at_column() -> Mapped[dt.datetime]:
    return mapped_column(UTCDateTime(), default=clock.now, onupdate=clock.now, nullable=False)

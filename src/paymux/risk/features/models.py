"""Velocity counters and links: what the velocity and link attributes of
:mod:`paymux.risk.attributes` are computed from.

Neither table holds a raw personal value: a subject's value (a customer id, a device id, an
IP, a payer account) is kept only as :func:`paymux.risk.features.velocity.subject_key`, a hash
of the value in its scope (mode, and the merchant for ids that are the merchant's own).

Both tables are keyed by their natural key (no surrogate id): the primary key is the index a
window read walks — one range scan per subject, measure and resolution — and the one an upsert
conflicts on. ``count`` and ``total`` are deliberately *not* in an index (no covering index):
every payment updates them, and an index on them would turn each update into index writes
(no HOT updates) for reads that could not be index-only on such hot pages anyway.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit.db import Base, UTCDateTime


class Resolution(StrEnum):
    """How wide one counter bucket is. Each velocity window reads one resolution
    (:data:`paymux.risk.features.velocity.WINDOWS`): fine enough that the window's edge, up to
    one bucket wide, is small beside the window, coarse enough that a window is few rows."""

    minute = "minute"
    """60 s buckets: the 10 m and 1 h windows."""
    hour = "hour"
    """3600 s buckets: the 24 h and 7 d windows."""
    day = "day"
    """UTC-day buckets: the 30 d window."""

    @property
    def seconds(self) -> int:
        return _SECONDS[self]


_SECONDS = {Resolution.minute: 60, Resolution.hour: 3600, Resolution.day: 86400}


class RiskCounter(Base):
    """How many events of one measure (and the sum of their amounts) one subject had in one
    bucket of one resolution."""

    __tablename__ = "risk_counters"
    __table_args__ = (
        # What :func:`paymux.risk.features.velocity.purge` deletes: buckets older than any
        # window of their resolution reads. Neither column ever changes, so updates of the
        # counts stay HOT (no index write) on PostgreSQL.
        # bucket_start alone: with the resolution too it matched a window read's equality and
        # range as well as the primary key does, and a planner without statistics took it
        # over the primary key (every subject's buckets scanned; bench/risk.py).
        sa.Index("ix_risk_counters_expiry", "bucket_start"),
    )

    subject: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    """A :data:`paymux.risk.attributes.SUBJECTS` name (``customer``, ``device``, …)."""
    key: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    """The hash of the subject's value in its scope (never the value)."""
    measure: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    """A :data:`paymux.risk.attributes.MEASURES` noun (``payments``, ``declined``, …)."""
    resolution: Mapped[Resolution] = mapped_column(sa.String(8), primary_key=True)
    bucket_start: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    """The bucket's first instant (UTC, a multiple of the resolution since the epoch)."""
    count: Mapped[int] = mapped_column(sa.Integer)
    total: Mapped[int] = mapped_column(sa.BigInteger)
    """The sum of the events' amounts in minor units (all currencies added, as the
    ``sum_…`` attributes say); 0 for measures that keep no sum."""


class RiskLink(Base):
    """One pair of subjects seen together (a customer on a device, …): when first and last."""

    __tablename__ = "risk_links"
    __table_args__ = (
        # A distinct count in a window is a range scan on last_seen within one per-subject
        # value, answered from this index alone (it holds every column the count reads).
        sa.Index("ix_risk_links_window", "per_subject", "per_key", "counted_subject", "last_seen"),
        sa.Index("ix_risk_links_expiry", "last_seen"),
    )

    per_subject: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    per_key: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    counted_subject: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    counted_key: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    first_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    """To the minute (a touch within the minute it was last seen writes nothing)."""

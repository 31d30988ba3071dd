"""The one injectable clock.

Every piece of code that needs "now" (expiry, schedules, signature freshness) calls
:func:`now`, so tests can freeze or advance time without patching modules.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FrozenClock:
    """A clock that only moves when told to (tests)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime.now(dt.UTC)

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += dt.timedelta(seconds=seconds)

    def set(self, when: dt.datetime) -> None:
        self._now = when


class OffsetClock:
    """Real time shifted by an offset: lets end-to-end tests jump ahead while time still flows."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += dt.timedelta(seconds=seconds)


_clock: Clock = SystemClock()


def now() -> dt.datetime:
    """Current UTC time from the installed clock (always timezone-aware)."""
    return _clock.now()


def set_clock(clock: Clock) -> Clock:
    """Install ``clock``; returns the previous one so callers can restore it."""
    global _clock
    previous, _clock = _clock, clock
    return previous


def aware(value: dt.datetime) -> dt.datetime:
    """Treat naive datetimes (SQLite returns them) as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)

"""Withdrawal limits by verification level and fee tiers (pure; no I/O)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from paymux.kit import money
from paymux.payouts.models import Speed
from paymux.settlement.policy import TIMEZONE


@dataclass(frozen=True)
class Limits:
    per_payout: int
    daily_count: int
    daily_amount: int


LIMITS: dict[int, Limits] = {
    0: Limits(per_payout=500_00, daily_count=3, daily_amount=1_000_00),
    1: Limits(per_payout=50_000_00, daily_count=10, daily_amount=200_000_00),
    2: Limits(per_payout=500_000_00, daily_count=20, daily_amount=1_000_000_00),
}
"""Per verification level (0 none, 1 real name, 2 real name + card), in fen."""

MERCHANT_LEVEL = 2
"""Merchants are verified when they are onboarded."""

MIN_PAYOUT = 1_00
EXPRESS_RATE_BPS = 10
EXPRESS_FEE_MIN = 1_00
EXPRESS_FEE_MAX = 25_00
BATCH_HOUR = 10
"""Standard payouts go out in the batch at 10:00 China time on the next day."""


def fee(speed: Speed, amount: int) -> int:
    if speed == Speed.standard:
        return 0
    value = money.bps_of(amount, EXPRESS_RATE_BPS)
    return min(max(value, EXPRESS_FEE_MIN), EXPRESS_FEE_MAX)


def send_at(speed: Speed, now: dt.datetime) -> dt.datetime:
    if speed == Speed.express:
        return now
    local = now.astimezone(TIMEZONE)
    batch = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(BATCH_HOUR),
                                TIMEZONE)  # fmt: skip
    return batch.astimezone(dt.UTC)


def day_start(now: dt.datetime) -> dt.datetime:
    local = now.astimezone(TIMEZONE)
    return dt.datetime.combine(local.date(), dt.time(), TIMEZONE).astimezone(dt.UTC)

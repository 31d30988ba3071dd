"""Payout fees and schedules (pure; no I/O). Limits by verification level are risk rules: the
platform's rule set (its first version: the migration ``a9d3e5f7b1c2``), see docs/risk.md."""

from __future__ import annotations

import datetime as dt

from paymux.kit import money
from paymux.payouts.models import Speed
from paymux.settlement.policy import TIMEZONE

MERCHANT_LEVEL = 2
"""Merchants are verified when they are onboarded (their KYC level for the limit rules)."""

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

"""The withdrawal limits by KYC level paymux starts with: per payout, payouts a day and amount
a day, in fen. They are rules — the platform's first rule set (migration ``a9d3e5f7b1c2``
puts them in force) and the ``group_buying`` preset's, which extends them to transfers — so
a platform changes them by publishing a rule set, never in code."""

from __future__ import annotations

from dataclasses import dataclass


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

"""Dividing an amount exactly: fixed parts first, then percentages of the base, rounded down,
with the leftover cents given by largest remainder when the percentages claim the whole base.
The parts never exceed the base and always sum to what they claim (no cent created or lost)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Share:
    fixed: int = 0
    bps: int = 0
    """Basis points of the base (10,000 = all of it)."""


class AllocationError(ValueError):
    pass


def allocate(base: int, shares: Sequence[Share]) -> list[int]:
    """The amount of each share of ``base`` (minor units)."""
    if base < 0:
        raise AllocationError("base must not be negative")
    if any(s.fixed < 0 or s.bps < 0 for s in shares):
        raise AllocationError("shares must not be negative")
    total_bps = sum(s.bps for s in shares)
    if total_bps > 10_000:
        raise AllocationError("percentages add up to more than 100%")
    exact = [base * s.bps for s in shares]  # in units of 1/10,000
    amounts = [e // 10_000 + s.fixed for e, s in zip(exact, shares, strict=True)]
    if total_bps == 10_000 and all(s.fixed == 0 for s in shares):
        leftover = base - sum(amounts)
        order = sorted(range(len(shares)), key=lambda i: (-(exact[i] % 10_000), i))
        for i in order[:leftover]:
            amounts[i] += 1
    if sum(amounts) > base:
        raise AllocationError(f"the shares ({sum(amounts)}) exceed the amount ({base})")
    return amounts


def proportional_return(part: int, returned: int, refunded_total: int, gross: int) -> int:
    """What a part must give back so that, after refunds totalling ``refunded_total`` of
    ``gross``, it has returned ``floor(part × refunded_total / gross)`` overall (a full refund
    returns all of it; partial refunds never return more than their proportion)."""
    if gross <= 0:
        return 0
    owed = part * min(refunded_total, gross) // gross
    return max(owed - returned, 0)

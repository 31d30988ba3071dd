"""Pure scoring: what one channel account is worth for one payment right now. No I/O.

The score of an account is

    w_success · p̂  +  w_explore · bonus  −  w_cost · fee%  −  w_latency · seconds  −  w_health · e

- ``p̂``: the success rate of orders the account accepted recently (succeeded / accepted) shrunk
  towards a prior, so a handful of outcomes cannot swing it (a Beta(α, β) posterior mean);
- ``bonus``: an upper-confidence exploration term, large for accounts with little recent
  traffic, so an account that recovered (or is new) gets traffic again instead of starving;
- ``fee%``: the fee of *this* amount in percent (rate + fixed, clamped to min/max);
- ``seconds``: the recent mean create latency;
- ``e``: the recent technical error rate (timeouts, 5xx, refused connections) — the breaker
  removes an account that fails outright; this term steers away from a flaky one before that.

The score, its weights and rates are dimensionless floats that only rank accounts; no money is
computed from them. The fee itself (:func:`fee_of`) is integer minor units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from paymux.kit import money

PRIOR_RATE = 0.9
"""What a payment method's success rate is assumed to be before any evidence."""
PRIOR_WEIGHT = 20.0
"""How many observed orders the prior is worth."""
HEALTH_WEIGHT = 1.0
"""Score lost at a 100% recent technical error rate."""


@dataclass(frozen=True)
class Weights:
    success: float = 1.0
    cost: float = 0.05
    latency: float = 0.01
    exploration: float = 0.05


@dataclass(frozen=True)
class Fee:
    rate_bps: int = 0
    fixed: int = 0
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class Window:
    """An account's recent outcomes for one method (summed minute buckets)."""

    accepted: int = 0
    succeeded: int = 0
    errors: int = 0
    latency_ms: int = 0
    """Sum over ``accepted + errors`` calls."""
    recent_accepted: int = 0
    recent_errors: int = 0
    """Calls in the short health window (the last couple of minutes)."""

    @cached_property
    def settled(self) -> tuple[float, float, float, dict[str, float]]:
        """What the score takes from this window alone, worked out once per window (windows
        are cached for a couple of seconds): success estimate, mean latency in seconds,
        error rate, and their rounded explanation components."""
        p, latency_s, errors = (
            success_estimate(self),
            mean_latency_ms(self) / 1000.0,
            error_rate(self),
        )
        shown = {
            "success": round(p, 4),
            "latency_ms": round(latency_s * 1000.0, 1),
            "error_rate": round(errors, 4),
        }
        return p, latency_s, errors, shown


@dataclass(frozen=True)
class Score:
    total: float
    components: dict[str, float] = field(default_factory=dict)


def fee_of(amount: int, fee: Fee) -> int:
    """The channel's fee for ``amount`` minor units: rate (rounded half up) + fixed, clamped."""
    value = money.bps_of(amount, fee.rate_bps) + fee.fixed
    if fee.minimum is not None:
        value = max(value, fee.minimum)
    if fee.maximum is not None:
        value = min(value, fee.maximum)
    return max(value, 0)


def success_estimate(window: Window) -> float:
    """Posterior mean of the success rate under a Beta prior centred on :data:`PRIOR_RATE`."""
    alpha = PRIOR_RATE * PRIOR_WEIGHT
    succeeded = min(window.succeeded, window.accepted)
    return (succeeded + alpha) / (window.accepted + PRIOR_WEIGHT)


def _traffic_term(total_accepted: int) -> float:
    """The exploration bonus grows with everyone's traffic and shrinks with an account's own."""
    return 2.0 * math.log(total_accepted + 2)


def error_rate(window: Window) -> float:
    calls = window.recent_accepted + window.recent_errors
    return window.recent_errors / calls if calls else 0.0


def mean_latency_ms(window: Window) -> float:
    calls = window.accepted + window.errors
    return window.latency_ms / calls if calls else 0.0


Terms = tuple[float, float, int, float]
"""One account's (total rounded to 6 places, exploration bonus, fee in minor units, fee %)."""


class Base(NamedTuple):
    """The part of an account's score that does not depend on the amount, for one set of
    competitors (the exploration bonus depends on everyone's traffic): worked out once per
    set while the windows are cached, then priced per payment by :func:`priced`."""

    lead: float
    """``w_success · p̂ + w_explore · bonus``."""
    latency: float
    """``w_latency · seconds``."""
    health: float
    """``HEALTH_WEIGHT · e``."""
    bonus: float


def _base(window: Window, traffic: float, weights: Weights) -> Base:
    p, latency_s, errors, _ = window.settled
    bonus = math.sqrt(traffic / (window.accepted + 1))  # UCB1-style: everyone's vs its own
    return Base(weights.success * p + weights.exploration * bonus, weights.latency * latency_s,
                HEALTH_WEIGHT * errors, bonus)  # fmt: skip


def bases(windows: Sequence[Window], weights: Weights) -> list[Base]:
    """The amount-free part of each competitor's score."""
    traffic = _traffic_term(sum(window.accepted for window in windows))
    return [_base(window, traffic, weights) for window in windows]


def priced(bases_: Sequence[Base], fees: Sequence[Fee], amount: int, w_cost: float) -> list[Terms]:
    """Each competitor's terms for ``amount``: its base less the cost of its fee (the fee as
    :func:`fee_of` works it out, its clamps skipped when there are none: this runs for every
    account of every payment)."""
    out: list[Terms] = []
    for base, fee in zip(bases_, fees, strict=True):
        fee_minor = money.bps_of(amount, fee.rate_bps) + fee.fixed
        if fee.minimum is not None or fee.maximum is not None or fee_minor < 0:
            fee_minor = fee_of(amount, fee)
        fee_pct = 100.0 * fee_minor / amount if amount > 0 else 0.0
        total = base.lead - w_cost * fee_pct - base.latency - base.health
        out.append((round(total, 6), base.bonus, fee_minor, fee_pct))
    return out


def terms(amount: int, competitors: Sequence[tuple[Fee, Window]], weights: Weights) -> list[Terms]:
    """The terms of each (fee, window) of the accounts competing for one payment, in one pass:
    what ranks them (their totals), with the rest of :func:`components`' inputs."""
    found = bases([window for _, window in competitors], weights)
    return priced(found, [fee for fee, _ in competitors], amount, weights.cost)


def components(window: Window, of: Terms) -> dict[str, float]:
    """A score's parts as the routing explanation shows them (rounded)."""
    _, bonus, fee_minor, fee_pct = of
    shown = window.settled[3]
    return {
        "success": shown["success"],
        "exploration": round(bonus, 4),
        "fee": fee_minor,
        "fee_pct": round(fee_pct, 4),
        "latency_ms": shown["latency_ms"],
        "error_rate": shown["error_rate"],
    }


def score(*, amount: int, fee: Fee, window: Window, total_accepted: int, weights: Weights) -> Score:
    base = _base(window, _traffic_term(total_accepted), weights)
    (of,) = priced([base], [fee], amount, weights.cost)
    return Score(total=of[0], components=components(window, of))

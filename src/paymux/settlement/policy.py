"""Settlement dates and fees: pure functions of a merchant's terms (no I/O)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from paymux.kit import money
from paymux.settlement.models import Cycle, SettlementConfig

TIMEZONE = ZoneInfo("Asia/Shanghai")
"""Settlement days are calendar days in China Standard Time, like the channels' bills."""


def default_config(merchant_id: str) -> SettlementConfig:
    return SettlementConfig(
        merchant_id=merchant_id, cycle=Cycle.t1, days=1, weekday=0, fee_bps=0, fee_fixed=0,
        fee_min=0, fee_max=None,
    )  # fmt: skip


@dataclass(frozen=True)
class Terms:
    """When a merchant's money may settle: the part of its :class:`SettlementConfig` that
    every payment's success reads (a snapshot, cached by ``settlement.service.terms_of``)."""

    cycle: str
    days: int
    weekday: int

    @classmethod
    def of(cls, config: SettlementConfig) -> Terms:
        return cls(cycle=config.cycle, days=config.days, weekday=config.weekday)


def due_at(config: SettlementConfig | Terms, since: dt.datetime) -> dt.datetime:
    """When money that became the merchant's at ``since`` may be settled."""
    if config.cycle == Cycle.t0:
        return since
    local = since.astimezone(TIMEZONE)
    midnight = dt.datetime.combine(local.date(), dt.time(), TIMEZONE)
    if config.cycle == Cycle.weekly:
        ahead = (config.weekday - local.weekday() - 1) % 7 + 1
        return (midnight + dt.timedelta(days=ahead)).astimezone(dt.UTC)
    days = 1 if config.cycle == Cycle.t1 else max(config.days, 0)
    return (midnight + dt.timedelta(days=days)).astimezone(dt.UTC) if days else since


def fee(config: SettlementConfig, amount: int) -> int:
    """The fee on settling ``amount``: percentage (half up) + fixed, clamped to [min, max] and
    never more than the amount itself."""
    if amount <= 0:
        return 0
    value = money.bps_of(amount, config.fee_bps) + config.fee_fixed
    value = max(value, config.fee_min)
    if config.fee_max is not None:
        value = min(value, config.fee_max)
    return min(value, amount)

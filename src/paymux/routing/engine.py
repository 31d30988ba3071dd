"""The routing decision as a pure function: snapshot in, ordered candidates and explanation out.

:func:`decide` does no I/O. The service (:mod:`paymux.routing.service`) feeds it cached
snapshots — accounts, rules, settings, statistics, breaker states — and then reserves daily
limits and breaker probes in the database, in the order this returns.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from paymux.routing import scoring
from paymux.routing.models import BreakerState, Strategy
from paymux.routing.schemas import ActionType

CHINA = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
"""China Standard Time: UTC+8 all year (no daylight saving)."""
BREAKER_COOLDOWN = dt.timedelta(seconds=30)
"""How long an open breaker keeps an account out before one probe may go through."""


REFUSED_BY_CHANNEL = "refused_by_channel"
"""Exclusion reason: the account's channel would refuse the request itself (its pre-check)."""


@dataclass(frozen=True)
class AccountView:
    id: str
    channel: str
    methods: frozenset[str]
    currencies: frozenset[str]
    priority: int = 100
    fee: scoring.Fee = field(default_factory=scoring.Fee)
    min_amount: int | None = None
    max_amount: int | None = None
    daily_amount_limit: int | None = None
    daily_count_limit: int | None = None
    maintenance: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class RuleView:
    id: str
    name: str
    conditions: Mapping[str, Any]
    action: Mapping[str, Any]


@dataclass(frozen=True)
class BreakerView:
    state: str = BreakerState.closed.value
    opened_at: dt.datetime | None = None
    probe_started_at: dt.datetime | None = None


@dataclass(frozen=True)
class Request:
    method: str
    currency: str
    amount: int
    pinned: str | None = None
    device_type: str | None = None
    region: str | None = None
    preferred_channel: str | None = None
    returning: bool | None = None
    """None: unknown (no customer.id)."""
    last_channel: str | None = None
    last_account: str | None = None
    """The channel and account of the customer's last succeeded payment of this app."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    refused_by: frozenset[str] = frozenset()
    """Channels whose pre-check refuses this request (``channels.registry.refusals``)."""


@dataclass(frozen=True)
class Snapshot:
    accounts: Sequence[AccountView]
    rules: Sequence[RuleView] = ()
    strategy: str = Strategy.score.value
    weights: scoring.Weights = field(default_factory=scoring.Weights)
    windows: Mapping[tuple[str, str], scoring.Window] = field(default_factory=dict)
    """(account id, method) → recent outcomes."""
    breakers: Mapping[str, BreakerView] = field(default_factory=dict)
    version: int = 0


@dataclass(frozen=True)
class Choice:
    account_id: str
    probe: bool
    """The account's breaker is open past its cooldown: this attempt must win the probe."""
    why: str


@dataclass
class Decision:
    order: list[Choice]
    explanation: dict[str, Any]


# ------------------------------------------------------------------ time
def china(now: dt.datetime) -> dt.datetime:
    return now.astimezone(CHINA)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _in_daily_window(local: dt.datetime, start: str, end: str) -> bool:
    """[start, end) in minutes of the day; end before start wraps midnight."""
    now_m, start_m, end_m = local.hour * 60 + local.minute, _minutes(start), _minutes(end)
    if start_m < end_m:
        return start_m <= now_m < end_m
    return now_m >= start_m or now_m < end_m


def in_maintenance(windows: Sequence[Mapping[str, Any]], now: dt.datetime) -> bool:
    """Whether ``now`` falls in one of an account's maintenance windows (China time)."""
    local = china(now)
    for window in windows:
        start, end = str(window.get("start", "")), str(window.get("end", ""))
        if ":" in start and len(start) == 5:
            weekdays = window.get("weekdays")
            if not _in_daily_window(local, start, end):
                continue
            # A window wrapping midnight belongs to the weekday it started on.
            day = local.date()
            if _minutes(start) > _minutes(end) and local.hour * 60 + local.minute < _minutes(end):
                day -= dt.timedelta(days=1)
            if weekdays is None or day.weekday() in weekdays:
                return True
            continue
        begin, finish = dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)
        begin = begin if begin.tzinfo else begin.replace(tzinfo=CHINA)
        finish = finish if finish.tzinfo else finish.replace(tzinfo=CHINA)
        if begin <= now < finish:
            return True
    return False


# ------------------------------------------------------------------ rules
def matches(conditions: Mapping[str, Any], req: Request, now: dt.datetime) -> bool:
    """Whether every condition given holds for this request (absent ones always hold)."""
    c = conditions
    if c.get("methods") is not None and req.method not in c["methods"]:
        return False
    if c.get("currencies") is not None and req.currency not in c["currencies"]:
        return False
    if c.get("amount_min") is not None and req.amount < c["amount_min"]:
        return False
    if c.get("amount_max") is not None and req.amount > c["amount_max"]:
        return False
    local = china(now)
    if c.get("time_from") is not None and not _in_daily_window(local, c["time_from"], c["time_to"]):
        return False
    if c.get("weekdays") is not None and local.weekday() not in c["weekdays"]:
        return False
    if c.get("device_types") is not None and req.device_type not in c["device_types"]:
        return False
    if c.get("regions") is not None and req.region not in c["regions"]:
        return False
    if c.get("customer_type") is not None:
        if req.returning is None or req.returning != (c["customer_type"] == "returning"):
            return False
    if c.get("preferred_channels") is not None:
        if req.preferred_channel not in c["preferred_channels"]:
            return False
    if c.get("last_channels") is not None and not (
        {req.last_channel, req.last_account} & set(c["last_channels"])
    ):
        return False
    for key, allowed in (c.get("metadata") or {}).items():
        if req.metadata.get(key) not in allowed:
            return False
    return True


def needs_history(rules: Sequence[RuleView]) -> bool:
    """Whether any rule looks at the customer's history (an extra query per payment)."""
    for rule in rules:
        c = rule.conditions
        if c.get("customer_type") is not None or c.get("last_channels") is not None:
            return True
        if "$last" in (rule.action.get("targets") or []):
            return True
    return False


def _resolve(target: str, req: Request) -> str | None:
    if target == "$preferred":
        return req.preferred_channel
    if target == "$last":
        return req.last_account or req.last_channel
    return target


def _hits(target: str | None, account: AccountView) -> bool:
    return target is not None and target in (account.id, account.channel)


# ------------------------------------------------------------------ the decision
def _filter(
    account: AccountView, req: Request, snap: Snapshot, now: dt.datetime
) -> tuple[str | None, bool]:
    """(reason it is out or None, whether it goes in as a breaker probe)."""
    if req.method not in account.methods:
        return "method_not_offered", False
    if req.currency not in account.currencies:
        return "currency_not_offered", False
    if account.min_amount is not None and req.amount < account.min_amount:
        return "below_min_amount", False
    if account.max_amount is not None and req.amount > account.max_amount:
        return "above_max_amount", False
    if account.daily_amount_limit is not None and req.amount > account.daily_amount_limit:
        return "above_daily_amount_limit", False
    if account.maintenance and in_maintenance(account.maintenance, now):
        return "in_maintenance", False
    if req.pinned is not None and not _hits(req.pinned, account):
        return "not_the_requested_channel", False
    if account.channel in req.refused_by:
        return REFUSED_BY_CHANNEL, False
    breaker = snap.breakers.get(account.id)
    if breaker is None or breaker.state == BreakerState.closed.value:
        return None, False
    if breaker.state == BreakerState.open.value:
        if breaker.opened_at is not None and now - breaker.opened_at < BREAKER_COOLDOWN:
            return "breaker_open", False
        return None, True
    # half-open: one probe is in flight; a stale one (its process died) may be replaced.
    started = breaker.probe_started_at
    if started is not None and now - started < BREAKER_COOLDOWN:
        return "breaker_probe_in_flight", False
    return None, True


def decide(
    req: Request, snap: Snapshot, now: dt.datetime, rng: random.Random | None = None
) -> Decision:
    """Filter, apply the first matching rule (unless the request names a channel), rank.

    The returned order is what may be tried, first to last; the explanation lists every
    account with why it is in or out and its score."""
    rng = rng or random.Random()
    explained: dict[str, dict[str, Any]] = {}
    eligible: list[AccountView] = []
    probes: set[str] = set()
    for account in snap.accounts:
        reason, probe = _filter(account, req, snap, now)
        explained[account.id] = {"account": account.id, "channel": account.channel}
        if reason is not None:
            explained[account.id]["excluded"] = reason
            continue
        eligible.append(account)
        if probe:
            probes.add(account.id)
            explained[account.id]["breaker_probe"] = True
    total = sum(snap.windows.get((a.id, req.method), scoring.Window()).accepted for a in eligible)
    scores: dict[str, float] = {}
    for account in eligible:
        window = snap.windows.get((account.id, req.method), scoring.Window())
        result = scoring.score(
            amount=req.amount, fee=account.fee, window=window, total_accepted=total,
            weights=snap.weights,
        )  # fmt: skip
        scores[account.id] = result.total
        explained[account.id].update(score=result.total, components=result.components)

    def default_order(accounts: Sequence[AccountView]) -> list[AccountView]:
        if snap.strategy == Strategy.priority.value:
            return sorted(accounts, key=lambda a: (a.priority, a.id))
        return sorted(accounts, key=lambda a: (-scores[a.id], a.priority, a.id))

    rule_info: dict[str, Any] | None = None
    why_default = "priority" if snap.strategy == Strategy.priority.value else "score"
    tiers: list[tuple[list[AccountView], str]]
    if req.pinned is not None:
        tiers = [(default_order(eligible), f"requested channel {req.pinned}, by {why_default}")]
    else:
        rule = next((r for r in snap.rules if matches(r.conditions, req, now)), None)
        if rule is None:
            tiers = [(default_order(eligible), f"default order by {why_default}")]
        else:
            rule_info = {"id": rule.id, "name": rule.name, "action": rule.action.get("type")}
            tiers = _apply(rule, req, eligible, default_order, scores, rng)
    order: list[Choice] = []
    seen: set[str] = set()
    for accounts, why in tiers:
        for account in accounts:
            if account.id in seen:
                continue
            seen.add(account.id)
            order.append(Choice(account.id, account.id in probes, why))
    for rank, choice in enumerate(order, start=1):
        explained[choice.account_id]["rank"] = rank
        explained[choice.account_id]["why"] = choice.why
    for account in eligible:
        if account.id not in seen:
            explained[account.id]["excluded"] = "excluded_by_rule"
    return Decision(
        order=order,
        explanation={
            "version": snap.version,
            "strategy": snap.strategy,
            "override": req.pinned,
            "rule": rule_info,
            "candidates": list(explained.values()),
        },
    )


def _apply(
    rule: RuleView, req: Request, eligible: list[AccountView],
    default_order: Any, scores: Mapping[str, float], rng: random.Random,
) -> list[tuple[list[AccountView], str]]:  # fmt: skip
    action = rule.action
    kind = ActionType(action["type"])
    label = f"rule {rule.name or rule.id}"
    targets = [_resolve(t, req) for t in action.get("targets") or []]
    fallback = bool(action.get("fallback", True)) and kind is not ActionType.pin
    tiers: list[tuple[list[AccountView], str]] = []
    if kind is ActionType.priority:
        for position, target in enumerate(targets, start=1):
            hit = [a for a in eligible if _hits(target, a)]
            tiers.append((default_order(hit), f"{label}: priority {position} ({target})"))
    elif kind is ActionType.pin:
        hit = [a for a in eligible if _hits(targets[0], a)]
        tiers.append((default_order(hit), f"{label}: pinned to {targets[0]}"))
    elif kind is ActionType.score:
        hit = [a for a in eligible if not targets or any(_hits(t, a) for t in targets)]
        ranked = sorted(hit, key=lambda a: (-scores[a.id], a.priority, a.id))
        tiers.append((ranked, f"{label}: by score"))
    else:  # weighted: draw the first target by weight among those with an eligible account
        weights = list(action.get("weights") or [])
        live = [
            (t, w) for t, w in zip(targets, weights, strict=True)
            if w > 0 and any(_hits(t, a) for a in eligible)
        ]  # fmt: skip
        if live:
            pick = rng.uniform(0, sum(w for _, w in live))
            chosen = live[-1][0]
            for target, weight in live:
                pick -= weight
                if pick <= 0:
                    chosen = target
                    break
            share = next(w for t, w in live if t == chosen) / sum(w for _, w in live)
            hit = [a for a in eligible if _hits(chosen, a)]
            tiers.append((default_order(hit), f"{label}: split drew {chosen} ({share:.0%})"))
            rest = sorted((x for x in live if x[0] != chosen), key=lambda x: -x[1])
            for target, _ in rest:
                hit = [a for a in eligible if _hits(target, a)]
                tiers.append((default_order(hit), f"{label}: split fallback {target}"))
    if fallback:
        tiers.append((default_order(eligible), f"{label}: fallback by default order"))
    return tiers

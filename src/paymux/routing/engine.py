"""The routing decision as a pure function: snapshot in, ordered candidates and explanation out.

:func:`decide` does no I/O. The service (:mod:`paymux.routing.service`) feeds it cached
snapshots — accounts, rules, settings, statistics, breaker states — and then reserves daily
limits and breaker probes in the database, in the order this returns.
"""

from __future__ import annotations

import datetime as dt
import operator
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

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

    @cached_property
    def windows(self) -> tuple[_Weekly | _Once, ...]:
        """``maintenance``, parsed once per view (views are cached while unchanged)."""
        return compile_maintenance(self.maintenance)


@dataclass(frozen=True)
class RuleView:
    id: str
    name: str
    conditions: Mapping[str, Any]
    action: Mapping[str, Any]

    @cached_property
    def holds(self) -> Check:
        """``conditions`` compiled once per view (views live as long as their rules version)."""
        return _all_of(compile_conditions(self.conditions))


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


class Choice(NamedTuple):
    """One candidate of the order (a named tuple: a decision makes one per eligible account)."""

    account_id: str
    probe: bool
    """The account's breaker is open past its cooldown: this attempt must win the probe."""
    why: str


@dataclass
class Decision:
    order: list[Choice]
    explain: Callable[[], dict[str, Any]] = field(repr=False, compare=False)
    """Renders :attr:`explanation`; kept apart so a decision costs only what its order needs."""

    @cached_property
    def explanation(self) -> dict[str, Any]:
        """Why: the rules version, strategy, override, the rule that applied and every account
        with why it is in or out, its score and rank (stored on the attempt). Worked out on
        first use, from the decision's own inputs, the same every time."""
        return self.explain()


# ------------------------------------------------------------------ time
def china(now: dt.datetime) -> dt.datetime:
    return now.astimezone(CHINA)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


@dataclass(frozen=True)
class Moment:
    """``now`` as conditions and maintenance windows read it, converted once per decision."""

    now: dt.datetime
    minute: int
    """Minute of the day, China time."""
    weekday: int
    """0 = Monday, China time."""

    @classmethod
    def of(cls, now: dt.datetime) -> Moment:
        local = china(now)
        return cls(now, local.hour * 60 + local.minute, local.weekday())


def _in_minutes(minute: int, start: int, end: int) -> bool:
    """[start, end) in minutes of the day; end before start wraps midnight."""
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


@dataclass(frozen=True)
class _Weekly:
    start: int
    end: int
    weekdays: frozenset[int] | None

    def covers(self, at: Moment) -> bool:
        if not _in_minutes(at.minute, self.start, self.end):
            return False
        if self.weekdays is None:
            return True
        # A window wrapping midnight belongs to the weekday it started on.
        day = at.weekday
        if self.start > self.end and at.minute < self.end:
            day = (day - 1) % 7
        return day in self.weekdays


@dataclass(frozen=True)
class _Once:
    begin: dt.datetime
    finish: dt.datetime

    def covers(self, at: Moment) -> bool:
        return self.begin <= at.now < self.finish


def _china_aware(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=CHINA)


def compile_maintenance(windows: Sequence[Mapping[str, Any]]) -> tuple[_Weekly | _Once, ...]:
    """Maintenance windows (as stored: weekly ``HH:MM`` or one-off ISO datetimes, China time
    unless zoned) parsed once, to be checked against a :class:`Moment`."""
    compiled: list[_Weekly | _Once] = []
    for window in windows:
        start, end = str(window.get("start", "")), str(window.get("end", ""))
        if ":" in start and len(start) == 5:
            weekdays = window.get("weekdays")
            compiled.append(
                _Weekly(_minutes(start), _minutes(end),
                        None if weekdays is None else frozenset(weekdays))
            )  # fmt: skip
        else:
            compiled.append(_Once(_china_aware(start), _china_aware(end)))
    return tuple(compiled)


def in_maintenance(windows: Sequence[Mapping[str, Any]], now: dt.datetime) -> bool:
    """Whether ``now`` falls in one of an account's maintenance windows (China time)."""
    at = Moment.of(now)
    return any(w.covers(at) for w in compile_maintenance(windows))


# ------------------------------------------------------------------ rules
Check = Callable[[Request, Moment], bool]
"""One compiled rule condition."""

_MEMBERSHIP = (
    ("methods", "method"),
    ("currencies", "currency"),
    ("device_types", "device_type"),
    ("regions", "region"),
    ("preferred_channels", "preferred_channel"),
)
"""Conditions that list the accepted values of one request field."""


def _one_of(field_name: str, allowed: frozenset[Any]) -> Check:
    get = operator.attrgetter(field_name)
    return lambda req, at: get(req) in allowed


def _metadata_check(key: str, allowed: frozenset[str]) -> Check:
    return lambda req, at: req.metadata.get(key) in allowed


def compile_conditions(conditions: Mapping[str, Any]) -> tuple[Check, ...]:
    """A rule's conditions as checks (all must hold), their value lists made sets once."""
    c = conditions
    checks: list[Check] = [
        _one_of(attr, frozenset(c[key])) for key, attr in _MEMBERSHIP if c.get(key) is not None
    ]
    low, high = c.get("amount_min"), c.get("amount_max")
    if low is not None:
        checks.append(lambda req, at: req.amount >= low)
    if high is not None:
        checks.append(lambda req, at: req.amount <= high)
    if c.get("time_from") is not None:
        start, end = _minutes(c["time_from"]), _minutes(c["time_to"])
        checks.append(lambda req, at: _in_minutes(at.minute, start, end))
    if c.get("weekdays") is not None:
        weekdays = frozenset(c["weekdays"])
        checks.append(lambda req, at: at.weekday in weekdays)
    if c.get("customer_type") is not None:
        returning = c["customer_type"] == "returning"
        checks.append(lambda req, at: req.returning is not None and req.returning == returning)
    if c.get("last_channels") is not None:
        last = frozenset(c["last_channels"])
        checks.append(lambda req, at: req.last_channel in last or req.last_account in last)
    for key, allowed in (c.get("metadata") or {}).items():
        checks.append(_metadata_check(key, frozenset(allowed)))
    return tuple(checks)


def _all_of(checks: tuple[Check, ...]) -> Check:
    if len(checks) == 1:
        return checks[0]

    def holds(req: Request, at: Moment) -> bool:
        for check in checks:
            if not check(req, at):
                return False
        return True

    return holds


def matches(conditions: Mapping[str, Any], req: Request, now: dt.datetime) -> bool:
    """Whether every condition given holds for this request (absent ones always hold)."""
    return _all_of(compile_conditions(conditions))(req, Moment.of(now))


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
_CLOSED = BreakerState.closed.value
_OPEN = BreakerState.open.value
_PRIORITY = Strategy.priority.value
_NO_TRAFFIC = scoring.Window()


def _under_maintenance(account: AccountView, at: Moment) -> bool:
    for window in account.windows:
        if window.covers(at):
            return True
    return False


def _filter(
    account: AccountView, req: Request, snap: Snapshot, at: Moment
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
    if account.maintenance and _under_maintenance(account, at):
        return "in_maintenance", False
    if req.pinned is not None and not _hits(req.pinned, account):
        return "not_the_requested_channel", False
    if account.channel in req.refused_by:
        return REFUSED_BY_CHANNEL, False
    breaker = snap.breakers.get(account.id)
    if breaker is None or breaker.state == _CLOSED:
        return None, False
    if breaker.state == _OPEN:
        if breaker.opened_at is not None and at.now - breaker.opened_at < BREAKER_COOLDOWN:
            return "breaker_open", False
        return None, True
    # half-open: one probe is in flight; a stale one (its process died) may be replaced.
    started = breaker.probe_started_at
    if started is not None and at.now - started < BREAKER_COOLDOWN:
        return "breaker_probe_in_flight", False
    return None, True


def decide(
    req: Request, snap: Snapshot, now: dt.datetime, rng: random.Random | None = None
) -> Decision:
    """Filter, apply the first matching rule (unless the request names a channel), rank.

    The returned order is what may be tried, first to last; the explanation lists every
    account with why it is in or out and its score."""
    rng = rng or random.Random()
    at = Moment.of(now)
    excluded: dict[str, str] = {}
    eligible: list[AccountView] = []
    probes: set[str] = set()
    for account in snap.accounts:
        reason, probe = _filter(account, req, snap, at)
        if reason is not None:
            excluded[account.id] = reason
            continue
        eligible.append(account)
        if probe:
            probes.add(account.id)
    windows = [snap.windows.get((a.id, req.method), _NO_TRAFFIC) for a in eligible]
    terms = scoring.terms(
        req.amount, [(a.fee, w) for a, w in zip(eligible, windows, strict=True)], snap.weights
    )
    scores = {account.id: of[0] for account, of in zip(eligible, terms, strict=True)}

    if snap.strategy == _PRIORITY:
        ranked = sorted(eligible, key=lambda a: (a.priority, a.id))
    else:
        ranked = sorted(eligible, key=lambda a: (-scores[a.id], a.priority, a.id))
    rule: RuleView | None = None
    why_default = "priority" if snap.strategy == _PRIORITY else "score"
    tiers: list[tuple[list[AccountView], str]]
    if req.pinned is not None:
        tiers = [(ranked, f"requested channel {req.pinned}, by {why_default}")]
    else:
        for candidate in snap.rules:
            if candidate.holds(req, at):
                rule = candidate
                break
        if rule is None:
            tiers = [(ranked, f"default order by {why_default}")]
        else:
            tiers = _apply(rule, req, eligible, ranked, scores, rng)
    order: list[Choice] = []
    seen: set[str] = set()
    for accounts, why in tiers:
        for account in accounts:
            if account.id in seen:
                continue
            seen.add(account.id)
            order.append(Choice(account.id, account.id in probes, why))

    def explain() -> dict[str, Any]:
        scored = {
            account.id: (of[0], scoring.components(window, of))
            for account, window, of in zip(eligible, windows, terms, strict=True)
        }
        return {
            "version": snap.version,
            "strategy": snap.strategy,
            "override": req.pinned,
            "rule": None
            if rule is None
            else {"id": rule.id, "name": rule.name, "action": rule.action.get("type")},
            "candidates": _candidates(snap.accounts, excluded, probes, scored, order),
        }

    return Decision(order=order, explain=explain)


def _candidates(
    accounts: Sequence[AccountView], excluded: Mapping[str, str], probes: set[str],
    scored: Mapping[str, tuple[float, dict[str, float]]], order: Sequence[Choice],
) -> list[dict[str, Any]]:  # fmt: skip
    """Every account with why it is out, or its score and its rank (or that a rule left it
    out): what the attempt stores as its routing explanation."""
    ranked = {choice.account_id: (rank, choice.why) for rank, choice in enumerate(order, 1)}
    candidates: list[dict[str, Any]] = []
    for account in accounts:
        entry: dict[str, Any] = {"account": account.id, "channel": account.channel}
        candidates.append(entry)
        reason = excluded.get(account.id)
        if reason is not None:
            entry["excluded"] = reason
            continue
        if account.id in probes:
            entry["breaker_probe"] = True
        entry["score"], entry["components"] = scored[account.id]
        place = ranked.get(account.id)
        if place is None:
            entry["excluded"] = "excluded_by_rule"
        else:
            entry["rank"], entry["why"] = place
    return candidates


def _apply(
    rule: RuleView, req: Request, eligible: list[AccountView], ranked: list[AccountView],
    scores: Mapping[str, float], rng: random.Random,
) -> list[tuple[list[AccountView], str]]:  # fmt: skip
    """The tiers ``rule``'s action makes; ``ranked``: the eligible accounts in default order
    (each target's accounts keep that order)."""
    action = rule.action
    kind = ActionType(action["type"])
    label = f"rule {rule.name or rule.id}"
    targets = [_resolve(t, req) for t in action.get("targets") or []]
    fallback = bool(action.get("fallback", True)) and kind is not ActionType.pin
    found: dict[str | None, list[AccountView]] = {None: []}

    def hits(target: str | None) -> list[AccountView]:
        if target not in found:
            found[target] = [a for a in ranked if a.id == target or a.channel == target]
        return found[target]

    tiers: list[tuple[list[AccountView], str]] = []
    if kind is ActionType.priority:
        for position, target in enumerate(targets, start=1):
            tiers.append((hits(target), f"{label}: priority {position} ({target})"))
    elif kind is ActionType.pin:
        tiers.append((hits(targets[0]), f"{label}: pinned to {targets[0]}"))
    elif kind is ActionType.score:
        hit = [a for a in eligible if not targets or any(_hits(t, a) for t in targets)]
        by_score = sorted(hit, key=lambda a: (-scores[a.id], a.priority, a.id))
        tiers.append((by_score, f"{label}: by score"))
    else:  # weighted: draw the first target by weight among those with an eligible account
        weights = list(action.get("weights") or [])
        live = [(t, w) for t, w in zip(targets, weights, strict=True) if w > 0 and hits(t)]
        if live:
            pick = rng.uniform(0, sum(w for _, w in live))
            chosen = live[-1][0]
            for target, weight in live:
                pick -= weight
                if pick <= 0:
                    chosen = target
                    break
            share = next(w for t, w in live if t == chosen) / sum(w for _, w in live)
            tiers.append((hits(chosen), f"{label}: split drew {chosen} ({share:.0%})"))
            rest = sorted((x for x in live if x[0] != chosen), key=lambda x: -x[1])
            for target, _ in rest:
                tiers.append((hits(target), f"{label}: split fallback {target}"))
    if fallback:
        tiers.append((ranked, f"{label}: fallback by default order"))
    return tiers

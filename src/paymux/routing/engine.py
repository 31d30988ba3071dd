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

    @cached_property
    def weekly(self) -> tuple[_Weekly, ...]:
        """The weekly windows: whether one covers a moment depends on its minute alone."""
        return tuple(w for w in self.windows if isinstance(w, _Weekly))

    @cached_property
    def once(self) -> tuple[_Once, ...]:
        return tuple(w for w in self.windows if isinstance(w, _Once))


@dataclass(frozen=True)
class RuleView:
    id: str
    name: str
    conditions: Mapping[str, Any]
    action: Mapping[str, Any]

    @cached_property
    def gate(self) -> tuple[tuple[int, frozenset[Any]], ...]:
        """The conditions on the request's gate fields (:data:`_MEMBERSHIP`), as (position in
        :func:`_gate_of`, accepted values): what a snapshot indexes its rules by."""
        return _gate_conditions(self.conditions)

    @cached_property
    def rest(self) -> Check | None:
        """The other conditions compiled once per view (views live as long as their rules
        version); None: there are none."""
        checks = _other_checks(self.conditions)
        return _all_of(tuple(checks)) if checks else None

    @cached_property
    def kind(self) -> ActionType:
        return ActionType(self.action["type"])

    @cached_property
    def holds(self) -> Check:
        """All the conditions."""
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
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    """What decisions on this snapshot work out once (its accounts per method and currency
    with their base scores, its rules per gate): a snapshot is immutable, so it is reused by
    the service while its inputs are unchanged, and this with it."""


class Choice(NamedTuple):
    """One candidate of the order (a named tuple: a decision makes one per eligible account)."""

    account_id: str
    probe: bool
    """The account's breaker is open past its cooldown: this attempt must win the probe."""
    why: str


_choice = tuple.__new__
"""Makes a :class:`Choice` without its Python-level ``__new__`` (a decision makes many)."""


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


class Moment(NamedTuple):
    """``now`` as conditions and maintenance windows read it, converted once per decision (a
    named tuple: one is made per decision)."""

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


def _gate_conditions(conditions: Mapping[str, Any]) -> tuple[tuple[int, frozenset[Any]], ...]:
    return tuple(
        (position, frozenset(conditions[key]))
        for position, (key, _) in enumerate(_MEMBERSHIP)
        if conditions.get(key) is not None
    )


def _gate_of(req: Request) -> tuple[Any, ...]:
    """The request's values of the :data:`_MEMBERSHIP` fields, in that order."""
    return (req.method, req.currency, req.device_type, req.region, req.preferred_channel)


def _other_checks(conditions: Mapping[str, Any]) -> list[Check]:
    c = conditions
    checks: list[Check] = []
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
    return checks


def compile_conditions(conditions: Mapping[str, Any]) -> tuple[Check, ...]:
    """A rule's conditions as checks (all must hold), their value lists made sets once."""
    membership = [
        _one_of(_MEMBERSHIP[position][1], allowed)
        for position, allowed in _gate_conditions(conditions)
    ]
    return (*membership, *_other_checks(conditions))


def _all_of(checks: Sequence[Check]) -> Check:
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


def _down(snap: Snapshot, at: Moment) -> frozenset[str]:
    """The snapshot's accounts in a weekly maintenance window this minute (worked out once
    per minute of the snapshot's life)."""

    def make() -> frozenset[str]:
        return frozenset(
            a.id for a in snap.accounts if a.maintenance and any(w.covers(at) for w in a.weekly)
        )

    down: frozenset[str] = _memo(snap, ("down", at.minute, at.weekday), make)
    return down


def _filter(
    account: AccountView, req: Request, snap: Snapshot, at: Moment
) -> tuple[str | None, bool]:
    """(reason it is out or None, whether it goes in as a breaker probe)."""
    if req.method not in account.methods:
        return "method_not_offered", False
    if req.currency not in account.currencies:
        return "currency_not_offered", False
    return _admits(account, snap.breakers.get(account.id), req, at, _down(snap, at))


def _admits(
    account: AccountView, breaker: BreakerView | None, req: Request, at: Moment,
    down: frozenset[str],
) -> tuple[str | None, bool]:  # fmt: skip
    """:func:`_filter` for an account that offers the request's method and currency; ``down``:
    the accounts in a weekly maintenance window now."""
    if account.min_amount is not None and req.amount < account.min_amount:
        return "below_min_amount", False
    if account.max_amount is not None and req.amount > account.max_amount:
        return "above_max_amount", False
    if account.daily_amount_limit is not None and req.amount > account.daily_amount_limit:
        return "above_daily_amount_limit", False
    if account.id in down or (account.once and any(w.covers(at) for w in account.once)):
        return "in_maintenance", False
    if req.pinned is not None and not _hits(req.pinned, account):
        return "not_the_requested_channel", False
    if account.channel in req.refused_by:
        return REFUSED_BY_CHANNEL, False
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


@dataclass(frozen=True)
class _Lane:
    """A snapshot's accounts offering one method in one currency, in snapshot order, with what
    their scores take from the snapshot alone (when all of them compete)."""

    accounts: tuple[AccountView, ...]
    breakers: tuple[BreakerView | None, ...]
    windows: tuple[scoring.Window, ...]
    bases: tuple[scoring.Base, ...]


_MEMO_LIMIT = 512
"""Entries a snapshot's memo holds before it starts again (gates are request values)."""


def _memo(snap: Snapshot, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
    found = snap.memo.get(key)
    if found is None:
        if len(snap.memo) >= _MEMO_LIMIT:
            snap.memo.clear()
        found = snap.memo[key] = make()
    return found


def _lane(snap: Snapshot, method: str, currency: str) -> _Lane:
    def make() -> _Lane:
        accounts = tuple(
            a for a in snap.accounts if method in a.methods and currency in a.currencies
        )
        windows = tuple(snap.windows.get((a.id, method), _NO_TRAFFIC) for a in accounts)
        return _Lane(accounts, tuple(snap.breakers.get(a.id) for a in accounts), windows,
                     tuple(scoring.bases(windows, snap.weights)))  # fmt: skip

    lane: _Lane = _memo(snap, ("lane", method, currency), make)
    return lane


def _gated(snap: Snapshot, gate: tuple[Any, ...]) -> tuple[RuleView, ...]:
    """The rules whose gate conditions this request's gate values pass, in order."""

    def make() -> tuple[RuleView, ...]:
        return tuple(
            rule for rule in snap.rules
            if all(gate[position] in allowed for position, allowed in rule.gate)
        )  # fmt: skip

    rules: tuple[RuleView, ...] = _memo(snap, ("rules", *gate), make)
    return rules


def decide(
    req: Request, snap: Snapshot, now: dt.datetime, rng: random.Random | None = None
) -> Decision:
    """Filter, apply the first matching rule (unless the request names a channel), rank.

    The returned order is what may be tried, first to last; the explanation lists every
    account with why it is in or out and its score."""
    rng = rng or random.Random()
    at = Moment.of(now)
    lane = _lane(snap, req.method, req.currency)
    eligible: list[AccountView] = []
    windows: list[scoring.Window] = []
    probes: set[str] = set()
    down = _down(snap, at)
    for account, breaker, window in zip(lane.accounts, lane.breakers, lane.windows, strict=True):
        reason, probe = _admits(account, breaker, req, at, down)
        if reason is None:
            eligible.append(account)
            windows.append(window)
            if probe:
                probes.add(account.id)
    everyone = len(eligible) == len(lane.accounts)
    bases = lane.bases if everyone else scoring.bases(windows, snap.weights)
    terms = scoring.priced(bases, [a.fee for a in eligible], req.amount, snap.weights.cost)
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
        for candidate in _gated(snap, _gate_of(req)):
            rest = candidate.rest
            if rest is None or rest(req, at):
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
            order.append(_choice(Choice, (account.id, account.id in probes, why)))

    def explain() -> dict[str, Any]:
        scored = {
            account.id: (of[0], scoring.components(window, of))
            for account, window, of in zip(eligible, windows, terms, strict=True)
        }
        excluded = {
            account.id: _filter(account, req, snap, at)[0] or ""
            for account in snap.accounts
            if account.id not in scored
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
    kind = rule.kind
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

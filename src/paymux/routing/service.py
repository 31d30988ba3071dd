"""Which channel accounts may take a payment, in which order, and what their outcomes teach.

The hot path per payment: one query for the app's accounts of the payment's mode (needed
anyway), a version check of that mode's rules at most once a second, statistics and breaker
states from an in-process cache refreshed every couple of seconds, then the pure
:func:`paymux.routing.engine.decide`. In the database, per attempt: a guarded UPDATE reserving
the daily limit (if the account has one), a guarded UPDATE claiming a breaker probe (only when
a breaker is open), and one statistics UPSERT plus one breaker row update per outcome.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channel_accounts.models import ChannelAccount
from paymux.channel_accounts.repository import ChannelAccountRepository
from paymux.channels.base import RequestProblem
from paymux.kit import clock
from paymux.kit.db import Database, after_commit
from paymux.kit.errors import InvalidRequest
from paymux.merchants.models import Mode
from paymux.routing import engine, scoring
from paymux.routing.models import BreakerState
from paymux.routing.repository import RoutingRepository

RULES_TTL = dt.timedelta(seconds=1)
"""How often a process checks the app's rules version (edits elsewhere apply within this)."""
STATS_TTL = dt.timedelta(seconds=2)
"""How often a process re-reads statistics and breaker states."""
SUCCESS_WINDOW = dt.timedelta(minutes=15)
HEALTH_WINDOW = dt.timedelta(minutes=2)
BREAKER_CONSECUTIVE = 5
"""Consecutive technical errors that open a breaker."""
BREAKER_RATE_WINDOW = dt.timedelta(seconds=60)
BREAKER_RATE_MIN_CALLS = 20
BREAKER_RATE = 0.5
"""Error share over the rate window (with at least the minimum of calls) that opens it too."""

_rng = random.Random()


# ------------------------------------------------------------------ caches
@dataclass
class _Rules:
    version: int
    checked_at: dt.datetime
    rules: list[engine.RuleView]
    strategy: str
    weights: scoring.Weights
    needs_history: bool


@dataclass
class _Health:
    loaded_at: dt.datetime
    account_ids: frozenset[str]
    windows: dict[tuple[str, str], scoring.Window]
    breakers: dict[str, engine.BreakerView]


_Key = tuple[str, bool]
"""(app id, livemode): rules, settings and accounts never cross modes."""


@dataclass
class _Caches:
    rules: dict[_Key, _Rules] = field(default_factory=dict)
    health: dict[_Key, _Health] = field(default_factory=dict)
    views: dict[tuple[str, str], tuple[list[Any], engine.AccountView]] = field(default_factory=dict)
    """(app id, account id) → (the account's routing fields as last read, their view)."""
    snapshots: dict[_Key, engine.Snapshot] = field(default_factory=dict)
    """The last snapshot per app and mode, reused (with what decisions memoised on it) while
    its views, rules and health are the very objects cached above."""


_caches = _Caches()


def clear_caches(app_id: str | None = None) -> None:
    """Forget cached rules, health and account views of both modes (after an edit in this
    process; tests)."""
    caches: tuple[dict[Any, Any], ...] = (
        _caches.rules, _caches.health, _caches.views, _caches.snapshots,
    )  # fmt: skip
    for cache in caches:
        for key in [k for k in cache if app_id is None or k[0] == app_id]:
            del cache[key]


async def _rules(session: AsyncSession, key: _Key, now: dt.datetime) -> _Rules:
    cached = _caches.rules.get(key)
    if cached is not None and now - cached.checked_at < RULES_TTL:
        return cached
    repo = RoutingRepository(session)
    version = await repo.version(*key)
    if cached is not None and cached.version == version:
        cached.checked_at = now
        return cached
    settings = await repo.settings(*key)
    rows = await repo.rules(*key)
    views = [
        engine.RuleView(id=r.id, name=r.name, conditions=r.conditions, action=r.action)
        for r in rows
        if r.enabled
    ]
    loaded = _Rules(
        version=version,
        checked_at=now,
        rules=views,
        needs_history=engine.needs_history(views),
        strategy=settings.strategy if settings else "score",
        weights=scoring.Weights(
            success=settings.weight_success, cost=settings.weight_cost,
            latency=settings.weight_latency, exploration=settings.exploration,
        ) if settings else scoring.Weights(),
    )  # fmt: skip
    _caches.rules[key] = loaded
    return loaded


async def _health(
    session: AsyncSession, key: _Key, account_ids: Sequence[str], now: dt.datetime
) -> _Health:
    ids = frozenset(account_ids)
    cached = _caches.health.get(key)
    if cached is not None and cached.account_ids >= ids and now - cached.loaded_at < STATS_TTL:
        return cached
    repo = RoutingRepository(session)
    health_since = now - HEALTH_WINDOW
    sums: dict[tuple[str, str], list[int]] = {}
    for row in await repo.stats_since(sorted(ids), now - SUCCESS_WINDOW):
        acc = sums.setdefault((row.account_id, row.method), [0, 0, 0, 0, 0, 0])
        acc[0] += row.accepted
        acc[1] += row.succeeded
        acc[2] += row.errors
        acc[3] += row.latency_ms
        if clock.aware(row.minute) >= health_since.replace(second=0, microsecond=0):
            acc[4] += row.accepted
            acc[5] += row.errors
    windows = {
        key: scoring.Window(
            accepted=v[0],
            succeeded=v[1],
            errors=v[2],
            latency_ms=v[3],
            recent_accepted=v[4],
            recent_errors=v[5],
        )
        for key, v in sums.items()
    }
    breakers = {
        b.account_id: engine.BreakerView(
            state=b.state,
            opened_at=clock.aware(b.opened_at) if b.opened_at else None,
            probe_started_at=clock.aware(b.probe_started_at) if b.probe_started_at else None,
        )
        for b in await repo.breakers(sorted(ids))
    }
    loaded = _Health(loaded_at=now, account_ids=ids, windows=windows, breakers=breakers)
    _caches.health[key] = loaded
    return loaded


# ------------------------------------------------------------------ views
_ROUTING_FIELDS = (
    "channel", "methods", "currencies", "priority", "fee_rate_bps", "fee_fixed", "fee_min",
    "fee_max", "min_amount", "max_amount", "daily_amount_limit", "daily_count_limit",
    "maintenance",
)  # fmt: skip
"""The columns :func:`account_view` reads."""


def _routing_fields(account: ChannelAccount) -> list[Any]:
    # The loaded row's own values: reading them past the ORM's attribute instrumentation is
    # what makes checking a cached view cheaper than building it (any not loaded: getattr).
    loaded = account.__dict__
    return [loaded[f] if f in loaded else getattr(account, f) for f in _ROUTING_FIELDS]


def cached_view(account: ChannelAccount) -> engine.AccountView:
    """The account's view, reused while the row read now has the same routing fields, so its
    maintenance windows are parsed once per change rather than once per payment. The row is
    read per payment anyway (its credentials make the call), so an edit from any process — or
    one that bumps no rules version, like an account added or disabled — counts at once."""
    key = (account.app_id, account.id)
    fields = _routing_fields(account)
    cached = _caches.views.get(key)
    if cached is not None and cached[0] == fields:
        return cached[1]
    view = account_view(account)
    # A copy: the row's JSON lists may be edited in place later, in this very session.
    _caches.views[key] = (copy.deepcopy(fields), view)
    return view


def account_view(account: ChannelAccount) -> engine.AccountView:
    return engine.AccountView(
        id=account.id,
        channel=account.channel,
        methods=frozenset(account.methods),
        currencies=frozenset(account.currencies),
        priority=account.priority,
        fee=scoring.Fee(
            rate_bps=account.fee_rate_bps,
            fixed=account.fee_fixed or 0,
            minimum=account.fee_min,
            maximum=account.fee_max,
        ),
        min_amount=account.min_amount,
        max_amount=account.max_amount,
        daily_amount_limit=account.daily_amount_limit,
        daily_count_limit=account.daily_count_limit,
        maintenance=tuple(account.maintenance or ()),
    )


def china_day(now: dt.datetime) -> dt.date:
    return engine.china(now).date()


# ------------------------------------------------------------------ planning
@dataclass
class Plan:
    """The routing decision of one payment, consumed candidate by candidate."""

    accounts: dict[str, ChannelAccount]
    decision: engine.Decision
    amount: int
    cursor: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    tried: list[dict[str, str]] = field(default_factory=list)


async def _history(
    session: AsyncSession, app_id: str, livemode: bool, customer_ref: str
) -> tuple[bool, str | None, str | None]:
    """(returning, last successful channel, its account) of a customer of this app."""
    # Imported here: payments build on routing, not the reverse (one query, shared with the
    # cashier's "last used method").
    from paymux.payments.repository import PaymentRepository

    last = await PaymentRepository(session).last_success(app_id, livemode, customer_ref)
    if last is None:
        return False, None, None
    return True, last.channel, last.account_id


async def plan(
    session: AsyncSession,
    *,
    app_id: str,
    livemode: bool,
    method: str,
    currency: str,
    amount: int,
    pinned: str | None = None,
    customer: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    refusals: Mapping[str, RequestProblem] | None = None,
) -> Plan:
    """Decide the order in which this payment's candidates may be tried: only the accounts,
    rules and settings of the payment's mode take part. ``refusals``: the channels that would
    refuse the request itself, with why; their accounts are left out and, if no other can take
    it, the first one's problem is the 400."""
    now = clock.now()
    mode = Mode.live if livemode else Mode.test
    accounts = await ChannelAccountRepository(session).list_for_app(
        app_id, mode=mode.value, enabled_only=True
    )
    rules = await _rules(session, (app_id, livemode), now)
    health = await _health(session, (app_id, livemode), [a.id for a in accounts], now)
    customer = customer or {}
    returning, last_channel, last_account = None, None, None
    ref = customer.get("id")
    if ref and rules.needs_history:
        returning, last_channel, last_account = await _history(session, app_id, livemode, str(ref))
    req = engine.Request(
        method=method, currency=currency, amount=amount, pinned=pinned,
        device_type=customer.get("device_type"), region=customer.get("region"),
        preferred_channel=customer.get("preferred_channel"), returning=returning,
        last_channel=last_channel, last_account=last_account,
        metadata={k: str(v) for k, v in (metadata or {}).items()},
        refused_by=frozenset(refusals or ()),
    )  # fmt: skip
    snapshot = _snapshot((app_id, livemode), [cached_view(a) for a in accounts], rules, health)
    decision = engine.decide(req, snapshot, now, _rng)
    if not decision.order:
        _refused(decision, {a.id: a.channel for a in accounts}, refusals or {})
        _unavailable(mode, method, currency, pinned, decision)
    return Plan(accounts={a.id: a for a in accounts}, decision=decision, amount=amount)


def _snapshot(
    key: _Key, views: list[engine.AccountView], rules: _Rules, health: _Health
) -> engine.Snapshot:
    last = _caches.snapshots.get(key)
    # Each load of rules or health makes new objects (a rules list per version, a windows
    # and breakers dict per health read): the same objects mean the same inputs.
    if (
        last is not None and last.rules is rules.rules and last.windows is health.windows
        and last.breakers is health.breakers and len(last.accounts) == len(views)
        and all(a is b for a, b in zip(last.accounts, views, strict=True))
    ):  # fmt: skip
        return last
    snapshot = _caches.snapshots[key] = engine.Snapshot(
        accounts=views, rules=rules.rules, strategy=rules.strategy, weights=rules.weights,
        windows=health.windows, breakers=health.breakers, version=rules.version,
    )  # fmt: skip
    return snapshot


def _refused(
    decision: engine.Decision, channels: Mapping[str, str],
    refusals: Mapping[str, RequestProblem],
) -> None:  # fmt: skip
    """Raise the channel's own reason when a pre-check ruled out an account that would
    otherwise have been a candidate: the merchant can fix the request."""
    for candidate in decision.explanation["candidates"]:
        if candidate.get("excluded") == engine.REFUSED_BY_CHANNEL:
            problem = refusals[channels[candidate["account"]]]
            raise InvalidRequest(problem.code, problem.message, param=problem.param)


def _unavailable(
    mode: Mode, method: str, currency: str, pinned: str | None, decision: engine.Decision
) -> None:
    what = f" through {pinned!r}" if pinned else ""
    reasons = sorted(
        {c["excluded"] for c in decision.explanation["candidates"] if "excluded" in c}
        - {"method_not_offered"}
    )
    why = f" ({', '.join(reasons)})" if reasons else ""
    raise InvalidRequest(
        "method_unavailable",
        f"No enabled {mode.value}-mode channel account of this app offers {method!r} in "
        f"{currency}{what}{why}.",
        param="method",
    )


def raise_exhausted(plan: Plan, method: str, currency: str) -> NoReturn:
    """Every candidate was ruled out at reservation time (daily limits, breaker probes)."""
    reasons = sorted({s["reason"] for s in plan.skipped}) or ["no_candidate"]
    raise InvalidRequest(
        "method_unavailable",
        f"No channel account of this app can take {method!r} in {currency} now "
        f"({', '.join(reasons)}).",
        param="method",
    )


@dataclass(frozen=True)
class Pick:
    account: ChannelAccount
    limit_day: dt.date | None
    explanation: dict[str, Any]


def pin(plan: Plan, account_id: str) -> Plan:
    """Only ``account_id`` of the plan's candidates (no failover to another): for a payer id
    that only that account's app can use (a WeChat openid belongs to one appid)."""
    kept = [c for c in plan.decision.order if c.account_id == account_id]
    skipped = [
        {"account": c.account_id, "reason": "payer_identified_by_another_account"}
        for c in plan.decision.order if c.account_id != account_id
    ]  # fmt: skip
    decision = dataclasses.replace(plan.decision, order=kept)
    return dataclasses.replace(plan, decision=decision, skipped=[*plan.skipped, *skipped])


async def next_candidate(session: AsyncSession, plan: Plan) -> Pick | None:
    """The next candidate that can take the payment now: its daily limit reserved and, if its
    breaker is open, the probe claimed — both atomically in ``session``'s transaction."""
    repo = RoutingRepository(session)
    now = clock.now()
    while plan.cursor < len(plan.decision.order):
        choice = plan.decision.order[plan.cursor]
        plan.cursor += 1
        account = plan.accounts[choice.account_id]
        day: dt.date | None = None
        if account.daily_count_limit is not None or account.daily_amount_limit is not None:
            day = china_day(now)
            if not await repo.reserve(
                account.id, day, plan.amount, max_count=account.daily_count_limit,
                max_amount=account.daily_amount_limit,
            ):  # fmt: skip
                plan.skipped.append({"account": account.id, "reason": "daily_limit_reached"})
                continue
        if choice.probe and not await repo.claim_probe(
            account.id, now, now - engine.BREAKER_COOLDOWN
        ):
            if day is not None:
                await repo.release(account.id, day, plan.amount)
            plan.skipped.append({"account": account.id, "reason": "breaker_probe_taken"})
            continue
        explanation = dict(plan.decision.explanation)
        explanation.update(
            chosen=account.id,
            why=choice.why + (" (breaker probe)" if choice.probe else ""),
            attempt=len(plan.tried) + 1,
            skipped=list(plan.skipped),
            failover_from=list(plan.tried),
        )
        return Pick(account=account, limit_day=day, explanation=explanation)
    return None


# ------------------------------------------------------------------ learning
def _minute(now: dt.datetime) -> dt.datetime:
    return now.replace(second=0, microsecond=0)


async def record_call(
    session: AsyncSession, *, app_id: str, account_id: str, method: str, ok: bool,
    accepted: bool, latency_ms: int,
) -> None:  # fmt: skip
    """One create call's outcome: ``ok`` — the channel answered (accepted or declined);
    otherwise a technical error or timeout, which counts against the breaker. A good call is
    counted after the caller's transaction commits (its rows are every create's on the
    account, :func:`paymux.kit.db.after_commit`); an error in it, as it may open the breaker."""
    now = clock.now()
    if ok:

        async def count(db: Database) -> None:
            # The counters and the breaker's count: one autocommit statement on PostgreSQL;
            # only a breaker that is not simply closed takes a transaction.
            async with db.statement() as later:
                closed = await RoutingRepository(later).count_good_call(
                    account_id, method, _minute(now), accepted=int(accepted),
                    latency_ms=max(latency_ms, 0), now=now, window_from=now - BREAKER_RATE_WINDOW,
                )  # fmt: skip
            if closed:
                return  # the common case: a closed breaker stays closed
            async with db.transaction() as later:
                await _move_breaker(later, app_id=app_id, account_id=account_id, ok=True, now=now)

        after_commit(session, count)
        return
    await RoutingRepository(session).add_stat(
        account_id, method, _minute(now), accepted=int(accepted), errors=1,
        latency_ms=max(latency_ms, 0),
    )  # fmt: skip
    await _move_breaker(session, app_id=app_id, account_id=account_id, ok=False, now=now)


async def _move_breaker(
    session: AsyncSession, *, app_id: str, account_id: str, ok: bool, now: dt.datetime
) -> None:
    """Count one call on the account's breaker under its row lock, opening or closing it."""
    repo = RoutingRepository(session)
    breaker = await repo.breaker_for_update(account_id)
    before = breaker.state
    start = clock.aware(breaker.window_start) if breaker.window_start else None
    if start is None or now - start > BREAKER_RATE_WINDOW:
        breaker.window_start, breaker.window_total, breaker.window_errors = now, 0, 0
    breaker.window_total += 1
    if ok:
        breaker.consecutive_errors = 0
        if breaker.state != BreakerState.closed.value:
            breaker.state = BreakerState.closed.value
            breaker.opened_at = breaker.probe_started_at = None
    else:
        breaker.window_errors += 1
        breaker.consecutive_errors += 1
        tripped = breaker.consecutive_errors >= BREAKER_CONSECUTIVE or (
            breaker.window_total >= BREAKER_RATE_MIN_CALLS
            and breaker.window_errors / breaker.window_total >= BREAKER_RATE
        )
        if breaker.state == BreakerState.half_open.value or (
            breaker.state == BreakerState.closed.value and tripped
        ):
            breaker.state = BreakerState.open.value
            breaker.opened_at, breaker.probe_started_at = now, None
    if breaker.state != before:
        clear_caches(app_id)


async def record_success(session: AsyncSession, *, account_id: str, method: str) -> None:
    """Counted once the caller's transaction has committed (see :func:`record_call`)."""
    minute = _minute(clock.now())

    async def count(db: Database) -> None:
        async with db.statement() as later:
            await RoutingRepository(later).add_stat(account_id, method, minute, succeeded=1)

    after_commit(session, count)


async def release(session: AsyncSession, account_id: str, day: dt.date, amount: int) -> None:
    """Give back a daily-limit reservation the channel never used (it refused the order)."""
    await RoutingRepository(session).release(account_id, day, amount)

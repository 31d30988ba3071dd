"""Screening one request: the rules in force, the features they read, the decision, its record.

Every money movement calls :func:`screen` inside its own transaction, before anything reaches
a channel; :func:`note` then counts the request toward the velocity features (in the same
transaction as the object it created, so a counter is exact: it is there if and only if the
payment is). A blocked request creates nothing: its caller rolls back and calls
:func:`record_block` in a transaction of its own, which stores the decision, counts the block
and emits ``risk.blocked``.

Failure policy: if the engine itself fails (a bug, the database) or the evaluation exceeds its
time budget, money in proceeds (flagged ``unevaluated`` and screened again later by the
worker) and money out goes to review. A rule that merely errors is the rule's ``on_error``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit import clock
from paymux.kit.db import Database, after_rollback
from paymux.kit.errors import PaymuxError
from paymux.kit.ids import new_id
from paymux.risk import breaker, engine, rulesets, service, signals
from paymux.risk.attributes import EventType
from paymux.risk.models import RiskDecision, RuleAction, RuleSetState, Verdict
from paymux.risk.repository import DecisionRepository, RuleSetRepository
from paymux.risk.rules import Outcome, RuleResult, evaluate_all
from paymux.risk.service import PLATFORM
from paymux.webhooks import service as webhooks

log = structlog.get_logger(__name__)

BUDGET_SECONDS = 0.05
"""An evaluation slower than this is treated as an engine failure (the failure policy): the
setting ``risk_budget_ms``, set when the runtime is built."""

MONEY_OUT = frozenset({EventType.payout_create, EventType.wallet_transfer})


class RiskDeclined(PaymuxError):
    """A request the rules blocked: generic on purpose (the caller learns nothing of why)."""

    status_code = 402
    type = "risk_error"

    def __init__(self) -> None:
        super().__init__("risk_declined", "The request was declined.")


@dataclass(slots=True)
class Screening:
    """What a domain hands the engine about one request (a :class:`signals.Request`) and,
    once screened, the decision: not yet in the session (see :func:`note`)."""

    request: signals.Request
    decision: RiskDecision | None = None
    verdict: Verdict = Verdict.allow
    restrict_methods: frozenset[str] | None = None
    restrict_channels: frozenset[str] | None = None
    features: dict[str, Any] = field(default_factory=dict)


# -- the rule sets in force ---------------------------------------------------------------------

_sets: dict[str, engine.LoadedSet] = {}
"""Compiled published sets by id: a published set never changes, so this never goes stale."""


async def _load(session: AsyncSession, owner: str, livemode: bool) -> tuple[str, ...]:
    """The keys of the owner's sets to run: the published one (with its tripped rules) and a
    draft in shadow. Published sets never change, so each compiled form is cached by a key
    naming what it depends on."""
    repo = RuleSetRepository(session)
    keys = []
    tag = owner if owner == PLATFORM else engine.MERCHANT
    for found in await repo.in_force(owner, livemode):
        shadow = found.state == RuleSetState.draft
        tripped = frozenset() if shadow else await repo.tripped(found.id)
        key = f"{found.id}|shadow" if shadow else f"{found.id}|{','.join(sorted(tripped))}"
        if key not in _sets:
            _sets[key] = engine.load(
                found.id, tag, found.version or 0, found.review_score, found.block_score,
                await repo.rules_of(found.id), shadow=shadow, tripped=tripped,
            )  # fmt: skip
        keys.append(key)
    return tuple(keys)


async def policy(session: AsyncSession, event: EventType, merchant_id: str,
                 livemode: bool) -> engine.Policy:  # fmt: skip
    sets: list[engine.LoadedSet] = []
    for owner in (PLATFORM, merchant_id):
        found, ids = rulesets.in_force.get((owner, livemode))
        if not found or ids is None:
            ids = rulesets.in_force.put((owner, livemode), await _load(session, owner, livemode))
        sets.extend(_sets[i] for i in ids)
    return engine.policy(event, sets)


# -- screening ------------------------------------------------------------------------------------


def _result(rule: engine.LoadedRule, outcome: Outcome) -> dict[str, Any]:
    out: dict[str, Any] = {"owner": rule.owner, "name": rule.name, "action": rule.action.value,
                           "mode": rule.mode.value, "result": outcome.result.value}  # fmt: skip
    if outcome.error:
        out["error"] = outcome.error
        out["on_error"] = rule.on_error.value
    if rule.action is RuleAction.score:
        out["score"] = rule.score
    if rule.shadow_set:
        out["shadow_set"] = True
    if rule.tripped:
        out["tripped"] = True
    return out


def _results(pol: engine.Policy, outcomes: Collection[Outcome]) -> list[dict[str, Any]]:
    return [_result(r, o) for r, o in zip(pol.rules, outcomes, strict=True)]


async def screen(session: AsyncSession, request: signals.Request) -> Screening:
    """Decide on ``request`` with the rules in force for its event; never raises for a rule's
    or the engine's failure (the failure policy decides instead). No rules in force: allow,
    and no decision is recorded."""
    out = Screening(request)
    started = time.perf_counter()
    try:
        pol = await policy(session, request.event, request.merchant_id, request.livemode)
        if not pol.rules:
            return out
        started = time.perf_counter()  # the budget is the evaluation's, not a set's first load
        names = pol.attributes
        features = await signals.features(session, request, names, clock.now())
        lists = await service.cached_lists(session, request.merchant_id, request.livemode,
                                           pol.lists)  # fmt: skip
        evaluation = evaluate_all(pol.compiled, features, lists)
        decided = engine.decide(pol, evaluation.outcomes)
        breaker.observe(session, pol.rules, evaluation.outcomes, request.event.value)
        elapsed = time.perf_counter() - started
        if elapsed > BUDGET_SECONDS:
            raise TimeoutError(f"risk evaluation took {elapsed * 1000:.1f} ms")
    except Exception as exc:  # the failure policy, never a 500
        log.warning("risk_engine_failed", risk_event=request.event.value, error=type(exc).__name__,
                    detail=str(exc)[:200])  # fmt: skip
        return _unevaluated(out, started)
    out.verdict = decided.verdict
    out.restrict_methods = decided.restrict_methods
    out.restrict_channels = decided.restrict_channels
    out.features = dict(sorted(features.items()))  # all computed: what a backtest replays
    results = _results(pol, evaluation.outcomes)
    out.decision = _decision(request, out, score=decided.score, versions=pol.versions,
                             results=results, started=started)  # fmt: skip
    errors = sum(1 for o in evaluation.outcomes if o.result is RuleResult.error)
    if errors:
        log.info("risk_rule_errors", risk_event=request.event.value, errors=errors)
    return out


def _decision(request: signals.Request, out: Screening, *, score: int,
              versions: dict[str, Any], results: list[dict[str, Any]], started: float,
              unevaluated: bool = False) -> RiskDecision:  # fmt: skip
    return RiskDecision(
        id=new_id("rdc"), merchant_id=request.merchant_id, app_id=request.app_id,
        livemode=request.livemode, event=request.event.value,
        subject_type=request.subject_type, subject_id=request.subject_id,
        amount=request.amount, currency=request.currency, outcome=out.verdict, score=score,
        restrict_methods=sorted(out.restrict_methods) if out.restrict_methods else None,
        restrict_channels=sorted(out.restrict_channels) if out.restrict_channels else None,
        versions=versions, results=results, features=_jsonable(out.features),
        latency_us=int((time.perf_counter() - started) * 1_000_000), unevaluated=unevaluated,
        created_at=clock.now(),
    )  # fmt: skip


def _unevaluated(out: Screening, started: float) -> Screening:
    out.verdict = Verdict.review if out.request.event in MONEY_OUT else Verdict.allow
    out.decision = _decision(out.request, out, score=0, versions={}, results=[],
                             started=started, unevaluated=True)  # fmt: skip
    return out


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in values.items()}


async def note(session: AsyncSession, screened: Screening, subject_id: str,
               measure: str | None) -> RiskDecision | None:  # fmt: skip
    """The request went ahead as ``subject_id``: store its decision (if any) and count it
    toward ``measure``'s velocity features, in the caller's transaction."""
    request = screened.request
    if screened.decision is not None:
        screened.decision.subject_id = subject_id
        session.add(screened.decision)
    await signals.count(session, request, measure, clock.now())
    return screened.decision


def refuse(session: AsyncSession, screened: Screening) -> NoReturn:
    """A blocked request: raise the generic ``risk_declined``, so that the caller's
    transaction rolls back and creates nothing; once it has, :func:`record_block` keeps the
    decision in a transaction of its own."""

    async def record(db: Database) -> None:
        async with db.transaction() as later:
            await record_block(later, screened)

    after_rollback(session, record)
    raise RiskDeclined()


async def record_block(session: AsyncSession, screened: Screening) -> RiskDecision:
    """A blocked request: its decision, its ``blocked`` count and ``risk.blocked``."""
    decision = screened.decision
    assert decision is not None
    session.add(decision)
    await signals.count(session, screened.request, "blocked", clock.now())
    await webhooks.emit(session, app_id=decision.app_id, livemode=decision.livemode,
                        type="risk.blocked", data=decision_view(decision))  # fmt: skip
    return decision


def decision_view(d: RiskDecision) -> dict[str, Any]:
    """The decision as the API and webhooks show it."""
    return {
        "id": d.id, "object": "risk.decision", "livemode": d.livemode, "event": d.event,
        "subject_type": d.subject_type, "subject_id": d.subject_id, "amount": d.amount,
        "currency": d.currency, "outcome": d.outcome, "score": d.score,
        "restrict_methods": d.restrict_methods, "restrict_channels": d.restrict_channels,
        "rule_sets": d.versions, "rules": d.results, "features": d.features,
        "latency_us": d.latency_us, "unevaluated": d.unevaluated,
        "created": int(d.created_at.timestamp()),
    }  # fmt: skip


async def get(session: AsyncSession, merchant_id: str | None, livemode: bool | None,
              decision_id: str) -> RiskDecision | None:  # fmt: skip
    return await DecisionRepository(session).get(merchant_id, livemode, decision_id)

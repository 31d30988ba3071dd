"""Backtests: replay a rule set (a draft, usually) over the feature snapshots stored with the
decisions of a time range, in place of its owner's set that was in force, and report what it
would have done — each rule's hits and amount, the outcomes, what changed against live and how
the hits overlap with what was later refunded or reviewed.

The other owner's rules are not re-run: their results are taken from each decision as
recorded, so replaying the set that was in force gives back exactly the live outcomes. Lists
are read as they are now. A rule reading an attribute that a decision did not store (only the
request's and time's attributes are always stored, velocity and customer ones when a rule in
force read them) is counted ``unavailable`` for that decision, not as an error.

Publishing a set with block rules runs a backtest over the last :data:`GUARD_DAYS` days first:
if it would have blocked more than :data:`BLOCK_SHARE_CONFIRM` of that traffic beyond what was
blocked live, publishing needs ``confirm``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit import clock
from paymux.kit.errors import Conflict, InvalidRequest
from paymux.risk import engine, rulesets, service
from paymux.risk.attributes import EventType
from paymux.risk.models import (
    OnError,
    RiskDecision,
    RuleAction,
    RuleMode,
    RuleSet,
    Verdict,
)
from paymux.risk.repository import DecisionRepository, RuleSetRepository
from paymux.risk.rules import Outcome, RuleResult, evaluate_all
from paymux.risk.schemas import BacktestOut, BacktestRule
from paymux.risk.service import Owner

GUARD_DAYS = 7
BLOCK_SHARE_CONFIRM = 0.05
GUARD_LIMIT = 20_000
GUARD_MIN_DECISIONS = 20
"""Fewer decisions than this say nothing about a share: no confirmation is asked."""
MAX_RANGE = dt.timedelta(days=92)


@dataclass(slots=True)
class _Tally:
    rule: engine.LoadedRule
    hits: int = 0
    hit_amount: int = 0
    errors: int = 0
    unavailable: int = 0


@dataclass(slots=True)
class _Report:
    decisions: int = 0
    skipped: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    changes: Counter[str] = field(default_factory=Counter)
    changed_amount: int = 0
    newly_blocked: int = 0
    hit_subjects: list[str] = field(default_factory=list)
    hit_decisions: list[str] = field(default_factory=list)


def _recorded(result: Mapping[str, Any]) -> tuple[engine.LoadedRule, Outcome]:
    """The other owner's rule as a decision recorded it."""
    rule = engine.LoadedRule(
        owner=result["owner"], name=result["name"], action=RuleAction(result["action"]),
        score=int(result.get("score", 0)), mode=RuleMode(result["mode"]),
        on_error=OnError(result.get("on_error", OnError.ignore)), restrict_methods=None,
        restrict_channels=None, compiled=None,
    )  # fmt: skip
    return rule, Outcome(RuleResult(result["result"]))


def _thresholds(decision: RiskDecision, draft: engine.LoadedSet) -> tuple[int, int]:
    """The draft's thresholds and the other owner's as recorded: the lower counts."""
    other = [v for k, v in (decision.versions or {}).items()
             if k != draft.owner and not k.endswith("_shadow")]  # fmt: skip
    review = [s for s in (draft.review_score, *(v.get("review_score") for v in other)) if s]
    block = [s for s in (draft.block_score, *(v.get("block_score") for v in other)) if s]
    return (min(review, default=engine.DEFAULT_REVIEW_SCORE),
            min(block, default=engine.DEFAULT_BLOCK_SCORE))  # fmt: skip


async def _load(session: AsyncSession, found: RuleSet, owner_tag: str) -> engine.LoadedSet:
    rows = await RuleSetRepository(session).rules_of(found.id)
    return engine.load(found.id, owner_tag, found.version or 0, found.review_score,
                       found.block_score, rows)  # fmt: skip


async def replay(
    session: AsyncSession, who: Owner, found: RuleSet, start: dt.datetime, end: dt.datetime,
    *, limit: int,
) -> BacktestOut:  # fmt: skip
    tag = engine.PLATFORM if who.merchant_id is None else engine.MERCHANT
    draft = await _load(session, found, tag)
    tallies = {(e, r.name): _Tally(r) for e, rules in draft.rules.items() for r in rules}
    report = _Report()
    events = [e.value for e in draft.rules]
    rows = await DecisionRepository(session).in_range(
        who.merchant_id, found.livemode, events, start, end, limit + 1
    )
    truncated = len(rows) > limit
    lists_by_merchant: dict[str, Mapping[str, frozenset[str]]] = {}
    for decision in rows[:limit]:
        if decision.unevaluated:
            report.skipped += 1
            continue
        event = EventType(decision.event)
        rules = draft.rules[event]
        lists = lists_by_merchant.get(decision.merchant_id)
        if lists is None:
            names = frozenset(n for rs in draft.rules.values() for r in rs
                              if r.compiled for n in r.compiled.lists)  # fmt: skip
            lists = lists_by_merchant[decision.merchant_id] = await service.cached_lists(
                session, decision.merchant_id, decision.livemode, names
            )
        _replay_one(decision, event, rules, lists, draft, tallies, report)
    return _out(found, start, end, truncated, tallies, report,
                await _overlap(session, report))  # fmt: skip


def _replay_one(
    decision: RiskDecision, event: EventType, rules: Sequence[engine.LoadedRule],
    lists: Mapping[str, frozenset[str]], draft: engine.LoadedSet,
    tallies: dict[tuple[EventType, str], _Tally], report: _Report,
) -> None:  # fmt: skip
    features = decision.features or {}
    evaluation = evaluate_all([r.compiled for r in rules if r.compiled], features, lists)
    pairs: list[tuple[engine.LoadedRule, Outcome]] = []
    others = [r for r in decision.results or [] if r["owner"] != draft.owner
              and not r.get("shadow_set")]  # fmt: skip
    pairs.extend(_recorded(r) for r in others if r["owner"] == engine.PLATFORM)
    hit = False
    for rule, outcome in zip(rules, evaluation.outcomes, strict=True):
        tally = tallies[(event, rule.name)]
        assert rule.compiled is not None
        if outcome.result is RuleResult.error and not rule.compiled.attributes <= features.keys():
            tally.unavailable += 1
        elif outcome.result is RuleResult.error:
            tally.errors += 1
        elif outcome.result is RuleResult.hit:
            tally.hits += 1
            tally.hit_amount += decision.amount
            hit = hit or (rule.action is not RuleAction.allow and rule.mode is RuleMode.active)
        pairs.append((rule, outcome))
    pairs.extend(_recorded(r) for r in others if r["owner"] != engine.PLATFORM)
    review, block = _thresholds(decision, draft)
    verdict = engine.decide_pairs(pairs, review, block).verdict
    report.decisions += 1
    report.outcomes[verdict.value] += 1
    live = Verdict(decision.outcome)
    if verdict != live:
        report.changes[f"{live.value}→{verdict.value}"] += 1
        report.changed_amount += decision.amount
        report.newly_blocked += verdict is Verdict.block
    if hit:
        report.hit_decisions.append(decision.id)
        if decision.subject_type == "payment" and decision.subject_id:
            report.hit_subjects.append(decision.subject_id)


async def _overlap(session: AsyncSession, report: _Report) -> tuple[int, int]:
    repo = DecisionRepository(session)
    return (
        await repo.refunded_payments(sorted(set(report.hit_subjects))),
        await repo.reviewed_decisions(report.hit_decisions),
    )


def _out(found: RuleSet, start: dt.datetime, end: dt.datetime, truncated: bool,
         tallies: Mapping[tuple[EventType, str], _Tally], report: _Report,
         overlap: tuple[int, int]) -> BacktestOut:  # fmt: skip
    rules = [BacktestRule(name=t.rule.name, event=event.value, action=t.rule.action.value,
                          mode=t.rule.mode.value, hits=t.hits, hit_amount=t.hit_amount,
                          errors=t.errors, unavailable=t.unavailable)
             for (event, _), t in tallies.items()]  # fmt: skip
    share = report.newly_blocked / report.decisions if report.decisions else 0.0
    return BacktestOut(
        rule_set=found.id, start=start, end=end, decisions=report.decisions,
        skipped=report.skipped, truncated=truncated, rules=rules,
        outcomes=dict(report.outcomes), changes=dict(report.changes),
        changed_amount=report.changed_amount, block_share=round(share, 6),
        hits_refunded=overlap[0], hits_reviewed=overlap[1],
    )  # fmt: skip


async def run(session: AsyncSession, who: Owner, rule_set_id: str, start: dt.datetime,
              end: dt.datetime, *, limit: int) -> BacktestOut:  # fmt: skip
    """``POST /v1/risk/backtests``: replay the caller's rule set over ``[start, end)``."""
    if end <= start or end - start > MAX_RANGE:
        raise InvalidRequest("parameter_invalid", f"end must follow start, by at most "
                             f"{MAX_RANGE.days} days.", param="end")  # fmt: skip
    found = await rulesets.get(session, who, rule_set_id)
    return await replay(session, who, found, start, end, limit=limit)


async def publish(session: AsyncSession, who: Owner, rule_set_id: str, *,
                  confirm: bool) -> RuleSet:  # fmt: skip
    """Publish, after the guard: a set with active block rules is replayed over the last
    days; blocking more than the allowed share beyond live needs ``confirm``."""
    found = await rulesets.get(session, who, rule_set_id)
    blocks = any(r.action == RuleAction.block and r.mode == RuleMode.active
                 for r in await RuleSetRepository(session).rules_of(found.id))  # fmt: skip
    if blocks and not confirm and found.state == "draft":
        now = clock.now()
        report = await replay(session, who, found, now - dt.timedelta(days=GUARD_DAYS), now,
                              limit=GUARD_LIMIT)  # fmt: skip
        if report.decisions >= GUARD_MIN_DECISIONS and report.block_share > BLOCK_SHARE_CONFIRM:
            raise Conflict("rule_set_needs_confirmation",
                           f"Its block rules would have blocked {report.block_share:.1%} of the "
                           f"last {GUARD_DAYS} days' {report.decisions} decisions beyond what "
                           f"was blocked (more than {BLOCK_SHARE_CONFIRM:.0%}): publish again "
                           "with confirm: true if that is meant.")  # fmt: skip
    return await rulesets.publish(session, who, rule_set_id)

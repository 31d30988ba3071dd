"""The rules in force and how their results make one decision (pure: no I/O).

A published rule set never changes, so its compiled rules are cached by the set's id forever;
what is in force is asked of the database on every evaluation (one indexed read), which is how
a newly published version takes over in every process at once, without a restart.

Precedence (issue 14): a platform block > any allow > a merchant block > hold > challenge >
review > the score thresholds > allow. A rule in ``shadow`` mode is evaluated and recorded but
never decides; a ``disabled`` one is not loaded. A rule that errors applies its ``on_error``
(``ignore``, ``review`` or ``block``). ``restrict`` rules limit the methods and channels the
request may use whatever the outcome; the limits of several rules intersect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from paymux.risk.attributes import EventType
from paymux.risk.models import OnError, Rule, RuleAction, RuleMode, Verdict
from paymux.risk.rules import CompiledRule, Outcome, RuleResult, compile_rule

PLATFORM = "platform"
MERCHANT = "merchant"

DEFAULT_REVIEW_SCORE = 50
DEFAULT_BLOCK_SCORE = 100

_RANK = {Verdict.hold: 3, Verdict.challenge: 2, Verdict.review: 1}


@dataclass(frozen=True, slots=True)
class LoadedRule:
    """One rule of a rule set in force, compiled."""

    owner: str
    """:data:`PLATFORM` or :data:`MERCHANT`: whose rule set it is in."""
    name: str
    action: RuleAction
    score: int
    mode: RuleMode
    on_error: OnError
    restrict_methods: frozenset[str] | None
    restrict_channels: frozenset[str] | None
    compiled: CompiledRule | None = field(repr=False)
    """None only for a rule rebuilt from a stored decision (a backtest's other owner)."""
    shadow_set: bool = False
    """A rule of a draft running in shadow (recorded, never deciding)."""
    tripped: bool = False
    """Moved to shadow by its error rate (:mod:`paymux.risk.breaker`)."""
    set_id: str = ""


@dataclass(frozen=True, slots=True)
class LoadedSet:
    """A published rule set: its version and its enabled rules by event type."""

    id: str
    owner: str
    version: int | None
    review_score: int | None
    block_score: int | None
    rules: Mapping[EventType, tuple[LoadedRule, ...]]
    shadow: bool = False


def load(set_id: str, owner: str, version: int, review_score: int | None,
         block_score: int | None, rows: Iterable[Rule], *, shadow: bool = False,
         tripped: frozenset[str] = frozenset()) -> LoadedSet:  # fmt: skip
    """Compile a set's rules (they were validated when saved). ``shadow``: a draft running in
    shadow, every rule recorded and none deciding; ``tripped``: rules its error breaker moved
    to shadow."""
    by_event: dict[EventType, list[LoadedRule]] = {}
    for row in rows:
        if row.mode == RuleMode.disabled:
            continue
        event = EventType(row.event)
        quiet = shadow or row.name in tripped
        by_event.setdefault(event, []).append(
            LoadedRule(
                owner=owner, name=row.name, action=RuleAction(row.action), score=row.score,
                mode=RuleMode.shadow if quiet else RuleMode(row.mode),
                on_error=OnError(row.on_error),
                restrict_methods=frozenset(row.restrict_methods) if row.restrict_methods else None,
                restrict_channels=(frozenset(row.restrict_channels)
                                   if row.restrict_channels else None),
                compiled=compile_rule(row.expression, event), shadow_set=shadow,
                tripped=row.name in tripped, set_id=set_id,
            )
        )  # fmt: skip
    frozen = {event: tuple(rules) for event, rules in by_event.items()}
    return LoadedSet(set_id, owner, None if shadow else version, review_score, block_score,
                     MappingProxyType(frozen), shadow)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules one event of one merchant runs: the platform's first, then the merchant's."""

    event: EventType
    sets: tuple[LoadedSet, ...]
    rules: tuple[LoadedRule, ...]
    review_score: int
    block_score: int

    @property
    def attributes(self) -> frozenset[str]:
        return frozenset(a for r in self.rules if r.compiled for a in r.compiled.attributes)

    @property
    def lists(self) -> frozenset[str]:
        return frozenset(n for r in self.rules if r.compiled for n in r.compiled.lists)

    @property
    def compiled(self) -> list[CompiledRule]:
        return [r.compiled for r in self.rules if r.compiled is not None]

    @property
    def versions(self) -> dict[str, dict[str, Any]]:
        """The published set in force per owner, and a draft in shadow as ``<owner>_shadow``."""
        return {(f"{s.owner}_shadow" if s.shadow else s.owner): {
            "id": s.id, "version": s.version, "review_score": s.review_score,
            "block_score": s.block_score} for s in self.sets}  # fmt: skip


def policy(event: EventType, sets: Sequence[LoadedSet]) -> Policy:
    """The policy of ``event`` from the sets in force (platform first). Thresholds: the
    stricter (lower) of the sets' own, so a merchant cannot loosen the platform's."""
    ordered = sorted(sets, key=lambda s: (s.owner != PLATFORM, s.shadow))
    rules = tuple(r for s in ordered for r in s.rules.get(event, ()))
    live = [s for s in ordered if not s.shadow]
    review = min((s.review_score for s in live if s.review_score is not None),
                 default=DEFAULT_REVIEW_SCORE)  # fmt: skip
    block = min((s.block_score for s in live if s.block_score is not None),
                default=DEFAULT_BLOCK_SCORE)  # fmt: skip
    return Policy(event, tuple(ordered), rules, review, block)


@dataclass(frozen=True, slots=True)
class Decided:
    """The outcome of one evaluation, and why."""

    verdict: Verdict
    score: int
    restrict_methods: frozenset[str] | None
    restrict_channels: frozenset[str] | None
    reasons: tuple[str, ...]
    """The rules that made the verdict (``owner:name``), for the decision record."""


def _effective(rule: LoadedRule, outcome: Outcome) -> RuleAction | None:
    """What a rule's result asks for: its action on a hit, its ``on_error`` on an error."""
    if outcome.result is RuleResult.hit:
        return rule.action
    if outcome.result is RuleResult.error:
        return {OnError.review: RuleAction.review, OnError.block: RuleAction.block}.get(
            rule.on_error
        )
    return None


def _intersect(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    if a is None:
        return b
    return a if b is None else a & b


def decide(pol: Policy, outcomes: Sequence[Outcome]) -> Decided:
    """Apply the precedence to the outcomes of ``pol.rules`` (same order)."""
    return decide_pairs(list(zip(pol.rules, outcomes, strict=True)), pol.review_score,
                        pol.block_score)  # fmt: skip


def decide_pairs(pairs: Sequence[tuple[LoadedRule, Outcome]], review_score: int,
                 block_score: int) -> Decided:  # fmt: skip
    """The precedence over rules and their outcomes (a backtest mixes a draft's rules with
    the other owner's results as recorded)."""
    platform_block: list[str] = []
    allows: list[str] = []
    blocks: list[str] = []
    ranked: dict[Verdict, list[str]] = {}
    score = 0
    methods: frozenset[str] | None = None
    channels: frozenset[str] | None = None
    for rule, outcome in pairs:
        if rule.mode is not RuleMode.active:
            continue
        action = _effective(rule, outcome)
        if action is None:
            continue
        tag = f"{rule.owner}:{rule.name}"
        if action is RuleAction.block:
            (platform_block if rule.owner == PLATFORM else blocks).append(tag)
        elif action is RuleAction.allow:
            allows.append(tag)
        elif action is RuleAction.score:
            score += rule.score
        elif action is RuleAction.restrict:
            methods = _intersect(methods, rule.restrict_methods)
            channels = _intersect(channels, rule.restrict_channels)
        else:
            ranked.setdefault(Verdict(action.value), []).append(tag)

    def out(verdict: Verdict, reasons: Sequence[str]) -> Decided:
        return Decided(verdict, score, methods, channels, tuple(reasons))

    if platform_block:
        return out(Verdict.block, platform_block)
    if allows:
        return out(Verdict.allow, allows)
    if blocks:
        return out(Verdict.block, blocks)
    for verdict in sorted(ranked, key=_RANK.__getitem__, reverse=True):
        return out(verdict, ranked[verdict])
    if score >= block_score:
        return out(Verdict.block, [f"score:{score}"])
    if score >= review_score:
        return out(Verdict.review, [f"score:{score}"])
    return out(Verdict.allow, [])

"""The error breaker: a rule that errs on more than 20% of its evaluations within five
minutes (at least :data:`MIN_EVALUATIONS` of them) moves itself to shadow — recorded in
``risk_rule_trips`` (its published set never changes) — and raises an alert.

Counting is per process (a fleet trips a rule as soon as any one process sees the rate); the
trip itself is shared through the database, and every process runs the rule in shadow within
a second (the rule sets in force are cached that long).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit import clock
from paymux.kit.db import Database, after_commit, after_rollback, insert_of
from paymux.risk import audit
from paymux.risk.engine import LoadedRule
from paymux.risk.models import RuleMode, RuleSet, RuleTrip
from paymux.risk.rules import Outcome, RuleResult

log = structlog.get_logger(__name__)

WINDOW_SECONDS = 300
ERROR_SHARE = 0.2
MIN_EVALUATIONS = 20

RULE_ERRORS = Counter("paymux_risk_rule_errors_total", "Risk rule evaluations that erred",
                      ["event"])  # fmt: skip
TRIPS = Counter("paymux_risk_rule_trips_total", "Risk rules moved to shadow by their error rate")


@dataclass(slots=True)
class _Window:
    start: float
    evaluations: int = 0
    errors: int = 0


_windows: dict[tuple[str, str], _Window] = {}
_tripped: set[tuple[str, str]] = set()


def observe(session: AsyncSession, rules: Sequence[LoadedRule],
            outcomes: Sequence[Outcome], event: str) -> None:  # fmt: skip
    """Count the active rules' evaluations and errors; trip the ones over the share."""
    now = clock.now().timestamp()
    for rule, outcome in zip(rules, outcomes, strict=True):
        erred = outcome.result is RuleResult.error
        if erred:
            RULE_ERRORS.labels(event).inc()
        if rule.mode is not RuleMode.active or not rule.set_id:
            continue
        key = (rule.set_id, rule.name)
        window = _windows.get(key)
        if window is None or now - window.start >= WINDOW_SECONDS:
            window = _windows[key] = _Window(now)
        window.evaluations += 1
        window.errors += erred
        if (window.evaluations >= MIN_EVALUATIONS and key not in _tripped
                and window.errors > ERROR_SHARE * window.evaluations):  # fmt: skip
            _trip(session, rule, window)


def _trip(session: AsyncSession, rule: LoadedRule, window: _Window) -> None:
    _tripped.add((rule.set_id, rule.name))
    TRIPS.inc()
    log.error("risk_rule_tripped", rule_set=rule.set_id, rule=rule.name, owner=rule.owner,
              evaluations=window.evaluations, errors=window.errors)  # fmt: skip
    values = {"rule_set_id": rule.set_id, "rule_name": rule.name,
              "evaluations": window.evaluations, "errors": window.errors,
              "tripped_at": clock.now()}  # fmt: skip

    async def record(db: Database) -> None:
        from paymux.risk import rulesets

        async with db.transaction() as later:
            dialect = later.get_bind().dialect.name
            done = await later.execute(insert_of(dialect)(RuleTrip).values(**values)
                                       .on_conflict_do_nothing())  # fmt: skip
            found = await later.get(RuleSet, rule.set_id)
            if getattr(done, "rowcount", 0) and found is not None:  # once, in the audit trail
                audit.record(later, owner=found.owner, livemode=found.livemode,
                             actor="system:breaker", action="rule.tripped",
                             object_type="risk.rule_set", object_id=found.id, rule=rule.name,
                             evaluations=window.evaluations, errors=window.errors)  # fmt: skip
        rulesets.forget()

    after_commit(session, record)
    after_rollback(session, record)


def reset() -> None:
    """Forget every window (tests)."""
    _windows.clear()
    _tripped.clear()

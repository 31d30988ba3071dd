"""Rule sets: the platform's and each merchant's rules, versioned and immutable. A draft is
validated rule by rule when saved (:func:`paymux.risk.rules.compile_rule`: syntax, known
attributes and functions, types, a run on sample input) and every list it names must be one
its owner's rules can read; publishing it gives it the next version and retires the one in
force, in one transaction, so the engine swaps rule sets without a restart. A change is a new
draft: nothing published is ever edited."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channels import registry
from paymux.kit import clock
from paymux.kit.cache import TtlCache
from paymux.kit.errors import Conflict, InvalidRequest, NotFound
from paymux.kit.ids import new_id
from paymux.risk import audit, rules, service
from paymux.risk.models import OnError, Rule, RuleAction, RuleSet, RuleSetState
from paymux.risk.repository import RiskListRepository, RuleSetRepository
from paymux.risk.schemas import RuleIn, RuleOut, RuleSetCreate, RuleSetOut
from paymux.risk.service import Owner, _mode

in_force: TtlCache[tuple[str, bool], tuple[str, ...]] = TtlCache("risk_rule_sets")
"""The id of each owner's (and mode's) published rule set, for the engine (an empty tuple:
none). A set published in another process is in force everywhere within a second; in the
publishing process at once (:func:`forget`)."""


def forget(owner: str | None = None, livemode: bool | None = None) -> None:
    """This process published a rule set or changed a list: the engine uses the new one now."""
    if owner is None or livemode is None:
        in_force.forget()
    else:
        in_force.forget((owner, livemode))
    service.lists_cache.forget()


def default_on_error(action: RuleAction) -> OnError:
    """A block rule that cannot be evaluated sends the request to review; any other is
    ignored (issue 14's failure policy)."""
    return OnError.review if action is RuleAction.block else OnError.ignore


def _check_restrict(rule: RuleIn, n: int) -> None:
    """A restrict rule names what it leaves (known methods, channels); no other rule does."""
    restricting = rule.restrict_methods is not None or rule.restrict_channels is not None
    if rule.action is not RuleAction.restrict:
        if restricting:
            raise InvalidRequest("parameter_invalid", "restrict_methods and restrict_channels "
                                 "need action restrict.", param=f"rules[{n}].action")  # fmt: skip
        return
    if not rule.restrict_methods and not rule.restrict_channels:
        raise InvalidRequest("parameter_missing", "A restrict rule names the methods or "
                             "channels it leaves.",
                             param=f"rules[{n}].restrict_methods")  # fmt: skip
    known_methods = registry.all_methods() | {"wallet"}
    for name in rule.restrict_methods or ():
        if name not in known_methods:
            raise InvalidRequest("unsupported_method", f"Unknown method {name!r}.",
                                 param=f"rules[{n}].restrict_methods")  # fmt: skip
    for name in rule.restrict_channels or ():
        if name not in registry.all_channels():
            raise InvalidRequest("unknown_channel", f"Unknown channel {name!r}.",
                                 param=f"rules[{n}].restrict_channels")  # fmt: skip


async def create_draft(session: AsyncSession, who: Owner, body: RuleSetCreate) -> RuleSet:
    livemode = _mode(who, body.livemode)
    compiled = []
    names = set()
    for n, rule in enumerate(body.rules):
        where = f"rules[{n}].expression"
        try:
            compiled.append(rules.compile_rule(rule.expression, rule.event))
        except rules.RuleInvalid as exc:
            raise InvalidRequest(exc.code, f"rules[{n}] ({rule.name}): {exc.message}",
                                 param=where) from None  # fmt: skip
        _check_restrict(rule, n)
        if rule.name in names:
            raise InvalidRequest("rule_name_repeated", f"Two rules are named {rule.name!r}.",
                                 param=f"rules[{n}].name")  # fmt: skip
        names.add(rule.name)
    wanted = {name for c in compiled for name in c.lists}
    there = await RiskListRepository(session).live_values(who.readable(), livemode, wanted,
                                                          clock.now())  # fmt: skip
    known = {name for _, name in there}
    for n, c in enumerate(compiled):
        missing = sorted(c.lists - known)
        if missing:
            raise InvalidRequest("rule_unknown_list", f"rules[{n}] reads list {missing[0]!r}, "
                                 "which its owner's rules cannot read (no such list).",
                                 param=f"rules[{n}].expression")  # fmt: skip
    found = RuleSet(id=new_id("rrs"), owner=who.owner, livemode=livemode, version=None,
                    state=RuleSetState.draft, note=body.note, created_by=who.actor,
                    review_score=body.review_score, block_score=body.block_score)  # fmt: skip
    session.add(found)
    await session.flush()  # the set before its rules (their foreign key)
    for n, rule in enumerate(body.rules):
        session.add(Rule(
            id=new_id("rru"), rule_set_id=found.id, position=n, name=rule.name,
            event=rule.event.value, expression=rule.expression, action=rule.action,
            score=rule.score if rule.action is RuleAction.score else 0, mode=rule.mode,
            on_error=rule.on_error or default_on_error(rule.action),
            restrict_methods=rule.restrict_methods, restrict_channels=rule.restrict_channels,
        ))  # fmt: skip
    await session.flush()
    _audit(session, who, found, "rule_set.created", rules=[r.name for r in body.rules],
           note=body.note)  # fmt: skip
    return found


def _audit(session: AsyncSession, who: Owner, found: RuleSet, action: str, **detail: Any) -> None:
    audit.record(
        session,
        owner=found.owner,
        livemode=found.livemode,
        actor=who.actor,
        action=action,
        object_type="risk.rule_set",
        object_id=found.id,
        **detail,
    )


async def get(session: AsyncSession, who: Owner, rule_set_id: str) -> RuleSet:
    """A rule set of the caller's own (a merchant's are its own; the operator's the
    platform's, in either mode)."""
    found = await RuleSetRepository(session).get(who.owner, who.livemode, rule_set_id)
    if found is None:
        raise NotFound("rule set", rule_set_id)
    return found


async def _draft(repo: RuleSetRepository, who: Owner, rule_set_id: str, doing: str) -> RuleSet:
    """The caller's draft, locked; anything else is a 404 or a 409 saying what a draft does."""
    found = await repo.get(who.owner, who.livemode, rule_set_id, lock=True)
    if found is None:
        raise NotFound("rule set", rule_set_id)
    if found.state != RuleSetState.draft:
        raise Conflict("rule_set_not_draft", f"Rule set {found.id} is {found.state}: only a "
                       f"draft {doing}.")  # fmt: skip
    return found


async def publish(session: AsyncSession, who: Owner, rule_set_id: str) -> RuleSet:
    """Put a draft in force: the next version; the one in force before is retired."""
    repo = RuleSetRepository(session)
    found = await _draft(repo, who, rule_set_id,
                         "can be published (make a new draft to change it)")  # fmt: skip
    now = clock.now()
    retired = []
    for old in await repo.published(found.owner, found.livemode):
        old.state, old.retired_at = RuleSetState.retired, now
        retired.append(old.id)
    found.version = await repo.last_version(found.owner, found.livemode) + 1
    found.state, found.published_by, found.published_at = RuleSetState.published, who.actor, now
    found.shadow_since = None
    try:
        async with session.begin_nested():
            await session.flush()
    except sa.exc.IntegrityError:
        raise Conflict("rule_set_publish_conflict", "Another rule set was published at the same "
                       "moment; try again.") from None  # fmt: skip
    forget(found.owner, found.livemode)
    _audit(session, who, found, "rule_set.published", version=found.version, retired=retired)
    return found


async def shadow(session: AsyncSession, who: Owner, rule_set_id: str, enabled: bool) -> RuleSet:
    """Run a draft in shadow on live traffic (every rule recorded with each decision, none
    deciding), replacing the owner's draft in shadow before; or stop."""
    repo = RuleSetRepository(session)
    found = await _draft(repo, who, rule_set_id, "runs in shadow")
    if enabled:
        for other in await repo.in_force(found.owner, found.livemode):
            if other.state == RuleSetState.draft and other.id != found.id:
                other.shadow_since = None
        found.shadow_since = found.shadow_since or clock.now()
    else:
        found.shadow_since = None
    await session.flush()
    forget(found.owner, found.livemode)
    _audit(session, who, found, "rule_set.shadow", enabled=enabled)
    return found


async def out(session: AsyncSession, found: RuleSet) -> RuleSetOut:
    shown = []
    for rule in await RuleSetRepository(session).rules_of(found.id):
        compiled = rules.compile_rule(rule.expression, rule.event)
        shown.append(RuleOut(name=rule.name, event=rule.event, expression=rule.expression,
                             action=rule.action, score=rule.score, mode=rule.mode,
                             on_error=rule.on_error, restrict_methods=rule.restrict_methods,
                             restrict_channels=rule.restrict_channels,
                             attributes=sorted(compiled.attributes),
                             lists=sorted(compiled.lists)))  # fmt: skip
    return RuleSetOut(id=found.id, owner=found.owner, livemode=found.livemode,
                      version=found.version, state=found.state, note=found.note, rules=shown,
                      review_score=found.review_score, block_score=found.block_score,
                      shadow_since=found.shadow_since,
                      tripped=sorted(await RuleSetRepository(session).tripped(found.id)),
                      created_by=found.created_by, created_at=found.created_at,
                      published_by=found.published_by, published_at=found.published_at,
                      retired_at=found.retired_at)  # fmt: skip


async def listed(
    session: AsyncSession, who: Owner, *, limit: int, starting_after: str | None
) -> tuple[list[RuleSet], bool]:
    return await RuleSetRepository(session).listed(who.owner, who.livemode, limit=limit,
                                                   starting_after=starting_after)  # fmt: skip

"""Run-time edits of an app's routing: rules, settings, channel account routing fields.

Each edit acts in one mode (the caller key's): rules, settings and accounts of the other mode
do not exist for it. Every edit locks the settings row of the app's mode, bumps its
``version`` (other processes notice within :data:`paymux.routing.service.RULES_TTL`) and drops
this process's cache at once.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channel_accounts.models import ChannelAccount
from paymux.channel_accounts.repository import ChannelAccountRepository
from paymux.channels import registry
from paymux.kit.errors import InvalidRequest, NotFound
from paymux.kit.ids import new_id
from paymux.merchants.models import Mode
from paymux.routing import service
from paymux.routing.models import RoutingRule, RoutingSettings
from paymux.routing.repository import RoutingRepository
from paymux.routing.schemas import SPECIAL_TARGETS, AccountRouting, RuleIn, SettingsIn


def _mode(livemode: bool) -> str:
    return (Mode.live if livemode else Mode.test).value


async def _bump(session: AsyncSession, app_id: str, livemode: bool) -> RoutingSettings:
    row = await RoutingRepository(session).settings_for_update(app_id, livemode)
    row.version += 1
    service.clear_caches(app_id)
    return row


async def _check_targets(session: AsyncSession, app_id: str, livemode: bool, body: RuleIn) -> None:
    """Targets (and ``last_channels``) must name this app's accounts of the rule's mode or known
    channels: a typo — or an account of the other mode, which never takes this mode's
    payments — would silently route nothing. The other mode's accounts are refused exactly like
    unknown ids, so a test key learns nothing about live ones."""
    mode = _mode(livemode)
    accounts = {
        a.id for a in await ChannelAccountRepository(session).list_for_app(app_id, mode=mode)
    }
    refs = [(t, "action.targets") for t in body.action.targets if t not in SPECIAL_TARGETS]
    refs += [(t, "conditions.last_channels") for t in body.conditions.last_channels or []]
    for target, param in refs:
        if target in accounts or target in registry.all_channels():
            continue
        raise InvalidRequest(
            "unknown_target",
            f"{target!r} is neither a {mode}-mode channel account of this app nor a channel "
            f"({', '.join(sorted(registry.all_channels()))}).",
            param=param,
        )
    methods = body.conditions.methods or []
    unknown = sorted(set(methods) - registry.all_methods())
    if unknown:
        raise InvalidRequest(
            "unsupported_method", f"Unknown method(s): {', '.join(unknown)}.",
            param="conditions.methods",
        )  # fmt: skip


def _place(rules: list[RoutingRule], rule: RoutingRule, position: int | None) -> None:
    """Put ``rule`` at ``position`` (end if None) and number all 0..n-1."""
    others = [r for r in rules if r.id != rule.id]
    index = len(others) if position is None else min(position, len(others))
    others.insert(index, rule)
    for number, item in enumerate(others):
        item.position = number


async def _rule(session: AsyncSession, app_id: str, livemode: bool, rule_id: str) -> RoutingRule:
    """A rule of this app and mode; another mode's rule does not exist for the caller."""
    rule = await RoutingRepository(session).rule(app_id, livemode, rule_id)
    if rule is None:
        raise NotFound("routing rule", rule_id)
    return rule


async def list_rules(
    session: AsyncSession, app_id: str, *, livemode: bool
) -> tuple[list[RoutingRule], int]:
    repo = RoutingRepository(session)
    return await repo.rules(app_id, livemode), await repo.version(app_id, livemode)


async def create_rule(
    session: AsyncSession, app_id: str, body: RuleIn, *, livemode: bool
) -> tuple[RoutingRule, int]:
    settings = await _bump(session, app_id, livemode)
    await _check_targets(session, app_id, livemode, body)
    repo = RoutingRepository(session)
    rules = await repo.rules(app_id, livemode)
    rule = RoutingRule(
        id=new_id("rr"), app_id=app_id, livemode=livemode, position=len(rules), name=body.name,
        enabled=body.enabled, conditions=body.conditions.model_dump(exclude_none=True),
        action=body.action.model_dump(mode="json", exclude_none=True),
    )  # fmt: skip
    _place(rules, rule, body.position)
    session.add(rule)
    await session.flush()
    return rule, settings.version


async def update_rule(
    session: AsyncSession, app_id: str, rule_id: str, body: RuleIn, *, livemode: bool
) -> tuple[RoutingRule, int]:
    settings = await _bump(session, app_id, livemode)
    rule = await _rule(session, app_id, livemode, rule_id)
    await _check_targets(session, app_id, livemode, body)
    rule.name, rule.enabled = body.name, body.enabled
    rule.conditions = body.conditions.model_dump(exclude_none=True)
    rule.action = body.action.model_dump(mode="json", exclude_none=True)
    rules = await RoutingRepository(session).rules(app_id, livemode)
    _place(rules, rule, body.position if body.position is not None else rule.position)
    await session.flush()
    return rule, settings.version


async def delete_rule(
    session: AsyncSession, app_id: str, rule_id: str, *, livemode: bool
) -> tuple[RoutingRule, int]:
    settings = await _bump(session, app_id, livemode)
    rule = await _rule(session, app_id, livemode, rule_id)
    await session.delete(rule)
    await session.flush()
    rest = await RoutingRepository(session).rules(app_id, livemode)
    for number, item in enumerate(rest):
        item.position = number
    return rule, settings.version


async def get_settings(session: AsyncSession, app_id: str, *, livemode: bool) -> RoutingSettings:
    return await RoutingRepository(session).settings_for_update(app_id, livemode)


async def update_settings(
    session: AsyncSession, app_id: str, body: SettingsIn, *, livemode: bool
) -> RoutingSettings:
    settings = await _bump(session, app_id, livemode)
    for key, value in body.model_dump(exclude_none=True).items():
        setattr(settings, key, value.value if hasattr(value, "value") else value)
    await session.flush()
    return settings


async def configure_account(
    session: AsyncSession, app_id: str, account_id: str, body: AccountRouting, *, livemode: bool
) -> ChannelAccount:
    """Set a channel account's fees, limits and maintenance windows (given fields only). Only
    a caller of the account's mode may: for the other mode it does not exist."""
    account = await ChannelAccountRepository(session).get_for_app(app_id, account_id)
    if account is None or account.mode != _mode(livemode):
        raise NotFound("channel account", account_id)
    await _bump(session, app_id, livemode)
    for key in body.model_fields_set:
        value = getattr(body, key)
        if key == "maintenance":
            value = [w.model_dump(exclude_none=True) for w in value or []]
        elif key in ("fee_rate_bps", "fee_fixed", "priority", "enabled") and value is None:
            raise InvalidRequest("parameter_invalid", f"{key} cannot be null.", param=key)
        setattr(account, key, value)
    pairs = (("fee_min", "fee_max"), ("min_amount", "max_amount"))
    for low, high in pairs:
        lo, hi = getattr(account, low), getattr(account, high)
        if lo is not None and hi is not None and lo > hi:
            raise InvalidRequest("parameter_invalid", f"{low} exceeds {high}.", param=low)
    await session.flush()
    return account

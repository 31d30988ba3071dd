"""Run-time edits of an app's routing: rules, settings, channel account routing fields.

Every edit locks the app's settings row, bumps its ``version`` (other processes notice within
:data:`paymux.routing.service.RULES_TTL`) and drops this process's cache at once.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channels import base
from paymux.channels.models import ChannelAccount
from paymux.channels.repository import ChannelRepository
from paymux.kit.errors import InvalidRequest, NotFound
from paymux.kit.ids import new_id
from paymux.routing import service
from paymux.routing.models import RoutingRule, RoutingSettings
from paymux.routing.repository import RoutingRepository
from paymux.routing.schemas import SPECIAL_TARGETS, AccountRouting, RuleIn, SettingsIn


async def _bump(session: AsyncSession, app_id: str) -> RoutingSettings:
    row = await RoutingRepository(session).settings_for_update(app_id)
    row.version += 1
    service.clear_caches(app_id)
    return row


async def _check_targets(session: AsyncSession, app_id: str, body: RuleIn) -> None:
    """Targets must name this app's accounts or known channels: a typo would silently route
    nothing."""
    accounts = {a.id for a in await ChannelRepository(session).list_for_app(app_id)}
    for target in body.action.targets:
        if target in SPECIAL_TARGETS or target in accounts or target in base.all_channels():
            continue
        raise InvalidRequest(
            "unknown_target",
            f"{target!r} is neither a channel account of this app nor a channel "
            f"({', '.join(sorted(base.all_channels()))}).",
            param="action.targets",
        )
    methods = body.conditions.methods or []
    unknown = sorted(set(methods) - base.all_methods())
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


async def list_rules(session: AsyncSession, app_id: str) -> tuple[list[RoutingRule], int]:
    repo = RoutingRepository(session)
    return await repo.rules(app_id), await repo.version(app_id)


async def create_rule(session: AsyncSession, app_id: str, body: RuleIn) -> tuple[RoutingRule, int]:
    settings = await _bump(session, app_id)
    await _check_targets(session, app_id, body)
    repo = RoutingRepository(session)
    rules = await repo.rules(app_id)
    rule = RoutingRule(
        id=new_id("rr"), app_id=app_id, position=len(rules), name=body.name,
        enabled=body.enabled, conditions=body.conditions.model_dump(exclude_none=True),
        action=body.action.model_dump(mode="json", exclude_none=True),
    )  # fmt: skip
    _place(rules, rule, body.position)
    session.add(rule)
    await session.flush()
    return rule, settings.version


async def update_rule(
    session: AsyncSession, app_id: str, rule_id: str, body: RuleIn
) -> tuple[RoutingRule, int]:
    settings = await _bump(session, app_id)
    repo = RoutingRepository(session)
    rule = await repo.rule(app_id, rule_id)
    if rule is None:
        raise NotFound("routing rule", rule_id)
    await _check_targets(session, app_id, body)
    rule.name, rule.enabled = body.name, body.enabled
    rule.conditions = body.conditions.model_dump(exclude_none=True)
    rule.action = body.action.model_dump(mode="json", exclude_none=True)
    _place(await repo.rules(app_id), rule, body.position if body.position is not None
           else rule.position)  # fmt: skip
    await session.flush()
    return rule, settings.version


async def delete_rule(session: AsyncSession, app_id: str, rule_id: str) -> tuple[RoutingRule, int]:
    settings = await _bump(session, app_id)
    repo = RoutingRepository(session)
    rule = await repo.rule(app_id, rule_id)
    if rule is None:
        raise NotFound("routing rule", rule_id)
    await session.delete(rule)
    await session.flush()
    rest = await repo.rules(app_id)
    for number, item in enumerate(rest):
        item.position = number
    return rule, settings.version


async def get_settings(session: AsyncSession, app_id: str) -> RoutingSettings:
    return await RoutingRepository(session).settings_for_update(app_id)


async def update_settings(session: AsyncSession, app_id: str, body: SettingsIn) -> RoutingSettings:
    settings = await _bump(session, app_id)
    for key, value in body.model_dump(exclude_none=True).items():
        setattr(settings, key, value.value if hasattr(value, "value") else value)
    await session.flush()
    return settings


async def configure_account(
    session: AsyncSession, app_id: str, account_id: str, body: AccountRouting
) -> ChannelAccount:
    """Set a channel account's fees, limits and maintenance windows (given fields only)."""
    account = await ChannelRepository(session).get_for_app(app_id, account_id)
    if account is None:
        raise NotFound("channel account", account_id)
    await _bump(session, app_id)
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

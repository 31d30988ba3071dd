"""``/v1/routing``: an app's routing rules, settings and channel account routing fields.

Edits apply at once in this process and within a second in every other one (no restart)."""

from __future__ import annotations

from fastapi import APIRouter

from paymux.kit.web import ListResponse, ReadSessionDep, SessionDep
from paymux.merchants.auth import AuthDep
from paymux.routing import rules
from paymux.routing.schemas import (
    AccountRouting,
    AccountRoutingOut,
    RuleIn,
    RuleOut,
    SettingsIn,
    SettingsOut,
)

router = APIRouter(prefix="/v1/routing", tags=["routing"])


@router.get("/rules", response_model=ListResponse[RuleOut])
async def list_rules(auth: AuthDep, session: ReadSessionDep) -> ListResponse[RuleOut]:
    """The app's rules in evaluation order: the first whose conditions all hold decides."""
    found, version = await rules.list_rules(session, auth.app_id)
    return ListResponse[RuleOut](data=[RuleOut.of(r, version) for r in found], has_more=False)


@router.post("/rules", status_code=201, response_model=RuleOut)
async def create_rule(body: RuleIn, auth: AuthDep, session: SessionDep) -> RuleOut:
    """Add a rule (at ``position``, default last). Targets must be this app's channel
    accounts, channel names, ``$preferred`` or ``$last``."""
    rule, version = await rules.create_rule(session, auth.app_id, body)
    return RuleOut.of(rule, version)


@router.put("/rules/{rule_id}", response_model=RuleOut)
async def replace_rule(rule_id: str, body: RuleIn, auth: AuthDep, session: SessionDep) -> RuleOut:
    """Replace a rule's conditions and action (and move it if ``position`` is given)."""
    rule, version = await rules.update_rule(session, auth.app_id, rule_id, body)
    return RuleOut.of(rule, version)


@router.delete("/rules/{rule_id}", response_model=RuleOut)
async def delete_rule(rule_id: str, auth: AuthDep, session: SessionDep) -> RuleOut:
    """Remove a rule; the ones after it move up."""
    rule, version = await rules.delete_rule(session, auth.app_id, rule_id)
    return RuleOut.of(rule, version)


@router.get("/settings", response_model=SettingsOut)
async def get_settings(auth: AuthDep, session: SessionDep) -> SettingsOut:
    """Strategy (``score`` or static ``priority``) and the score weights."""
    return SettingsOut.of(await rules.get_settings(session, auth.app_id))


@router.patch("/settings", response_model=SettingsOut)
async def update_settings(body: SettingsIn, auth: AuthDep, session: SessionDep) -> SettingsOut:
    """Change the strategy or weights (success vs cost vs latency, exploration)."""
    return SettingsOut.of(await rules.update_settings(session, auth.app_id, body))


@router.patch("/accounts/{account_id}", response_model=AccountRoutingOut)
async def configure_account(
    account_id: str, body: AccountRouting, auth: AuthDep, session: SessionDep
) -> AccountRoutingOut:
    """Set a channel account's fees (rate + fixed, min/max), per-payment and daily limits,
    and maintenance windows (China time)."""
    return AccountRoutingOut.of(
        await rules.configure_account(session, auth.app_id, account_id, body)
    )

"""``/v1/routing``: an app's routing rules, settings and channel account routing fields.

Each mode has its own: a test key reads and changes only test-mode rules, settings and
accounts (the live ones answer 404 / are refused as targets), a live key only live ones.

Edits apply at once in this process and within a second in every other one (no restart)."""

from __future__ import annotations

from fastapi import APIRouter

from paymux.kit.idempotency import IdempotentRoute
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

router = APIRouter(prefix="/v1/routing", tags=["routing"], route_class=IdempotentRoute)


@router.get("/rules", response_model=ListResponse[RuleOut])
async def list_rules(auth: AuthDep, session: ReadSessionDep) -> ListResponse[RuleOut]:
    """The app's rules of the key's mode in evaluation order: the first whose conditions all
    hold decides."""
    found, version = await rules.list_rules(session, auth.app_id, livemode=auth.livemode)
    return ListResponse[RuleOut](data=[RuleOut.of(r, version) for r in found], has_more=False)


@router.post("/rules", status_code=201, response_model=RuleOut)
async def create_rule(body: RuleIn, auth: AuthDep, session: SessionDep) -> RuleOut:
    """Add a rule (at ``position``, default last). Targets must be this app's channel
    accounts of the key's mode, channel names, ``$preferred`` or ``$last``."""
    rule, version = await rules.create_rule(session, auth.app_id, body, livemode=auth.livemode)
    return RuleOut.of(rule, version)


@router.put("/rules/{rule_id}", response_model=RuleOut)
async def replace_rule(rule_id: str, body: RuleIn, auth: AuthDep, session: SessionDep) -> RuleOut:
    """Replace a rule's conditions and action (and move it if ``position`` is given)."""
    rule, version = await rules.update_rule(
        session, auth.app_id, rule_id, body, livemode=auth.livemode
    )
    return RuleOut.of(rule, version)


@router.delete("/rules/{rule_id}", response_model=RuleOut)
async def delete_rule(rule_id: str, auth: AuthDep, session: SessionDep) -> RuleOut:
    """Remove a rule; the ones after it move up."""
    rule, version = await rules.delete_rule(session, auth.app_id, rule_id, livemode=auth.livemode)
    return RuleOut.of(rule, version)


@router.get("/settings", response_model=SettingsOut)
async def get_settings(auth: AuthDep, session: SessionDep) -> SettingsOut:
    """Strategy (``score`` or static ``priority``) and the score weights of the key's mode."""
    return SettingsOut.of(await rules.get_settings(session, auth.app_id, livemode=auth.livemode))


@router.patch("/settings", response_model=SettingsOut)
async def update_settings(body: SettingsIn, auth: AuthDep, session: SessionDep) -> SettingsOut:
    """Change the strategy or weights (success vs cost vs latency, exploration)."""
    return SettingsOut.of(
        await rules.update_settings(session, auth.app_id, body, livemode=auth.livemode)
    )


@router.patch("/accounts/{account_id}", response_model=AccountRoutingOut)
async def configure_account(
    account_id: str, body: AccountRouting, auth: AuthDep, session: SessionDep
) -> AccountRoutingOut:
    """Set a channel account's fees (rate + fixed, min/max), per-payment and daily limits,
    and maintenance windows (China time). Only a key of the account's mode may (otherwise
    404)."""
    return AccountRoutingOut.of(
        await rules.configure_account(
            session, auth.app_id, account_id, body, livemode=auth.livemode
        )
    )

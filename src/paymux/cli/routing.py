"""``paymux routing …``: an app's routing rules, settings and account routing fields, edited
at run time (running API processes pick edits up within a second).

Each command acts in one mode, ``--mode test`` (the default, like ``paymux channel add``) or
``--mode live``, as an API key of that mode would: the other mode's rules and accounts are not
found."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from paymux.cli.common import console, parse_body, run, show_json
from paymux.merchants.models import Mode
from paymux.routing import rules
from paymux.routing.schemas import (
    AccountRouting,
    AccountRoutingOut,
    RuleIn,
    RuleOut,
    SettingsIn,
    SettingsOut,
)
from paymux.runtime import Runtime

routing_app = typer.Typer(help="Smart routing: rules, weights, account limits.",
                          no_args_is_help=True)  # fmt: skip
App = Annotated[str, typer.Option("--app", help="The app (app_…).")]
File = Annotated[Path, typer.Option("--file", help="A JSON document (as the API takes).")]
ModeOpt = Annotated[
    Mode, typer.Option("--mode", help="The mode whose routing to act on (test or live).")
]


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        console.print(f"[red]error[/red] parameter_invalid: {path}: {exc}")
        raise typer.Exit(1) from None
    if not isinstance(data, dict):
        console.print(f"[red]error[/red] parameter_invalid: {path}: not a JSON object")
        raise typer.Exit(1)
    return data


@routing_app.command("rules")
def list_rules(app: App, mode: ModeOpt = Mode.test) -> None:
    """The app's rules in evaluation order."""

    async def work(rt: Runtime) -> list[dict[str, Any]]:
        async with rt.db.read() as session:
            found, version = await rules.list_rules(session, app, livemode=mode is Mode.live)
        return [RuleOut.of(r, version).model_dump(mode="json") for r in found]

    show_json(run(work))


@routing_app.command("add")
def add_rule(app: App, file: File, mode: ModeOpt = Mode.test) -> None:
    """Add a rule from a JSON file."""
    body = parse_body(RuleIn, **_load(file))

    async def work(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as session:
            rule, version = await rules.create_rule(session, app, body, livemode=mode is Mode.live)
        return RuleOut.of(rule, version).model_dump(mode="json")

    show_json(run(work))


@routing_app.command("replace")
def replace_rule(app: App, rule_id: str, file: File, mode: ModeOpt = Mode.test) -> None:
    """Replace a rule's conditions and action from a JSON file."""
    body = parse_body(RuleIn, **_load(file))

    async def work(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as session:
            rule, version = await rules.update_rule(session, app, rule_id, body,
                                                    livemode=mode is Mode.live)  # fmt: skip
        return RuleOut.of(rule, version).model_dump(mode="json")

    show_json(run(work))


@routing_app.command("delete")
def delete_rule(app: App, rule_id: str, mode: ModeOpt = Mode.test) -> None:
    """Remove a rule."""

    async def work(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as session:
            rule, version = await rules.delete_rule(
                session, app, rule_id, livemode=mode is Mode.live
            )
        return RuleOut.of(rule, version).model_dump(mode="json")

    show_json(run(work))


@routing_app.command("settings")
def settings(
    app: App,
    mode: ModeOpt = Mode.test,
    strategy: Annotated[str | None, typer.Option(help="score | priority")] = None,
    weight_success: float | None = None,
    weight_cost: float | None = None,
    weight_latency: float | None = None,
    exploration: float | None = None,
) -> None:
    """Show, or change, the strategy and score weights."""
    body = parse_body(SettingsIn, strategy=strategy, weight_success=weight_success,
                      weight_cost=weight_cost, weight_latency=weight_latency,
                      exploration=exploration)  # fmt: skip

    async def work(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as session:
            if body.model_dump(exclude_none=True):
                row = await rules.update_settings(session, app, body, livemode=mode is Mode.live)
            else:
                row = await rules.get_settings(session, app, livemode=mode is Mode.live)
        return SettingsOut.of(row).model_dump(mode="json")

    show_json(run(work))


@routing_app.command("account")
def account(app: App, account_id: str, file: File, mode: ModeOpt = Mode.test) -> None:
    """Set a channel account's fees, limits and maintenance windows from a JSON file."""
    body = parse_body(AccountRouting, **_load(file))

    async def work(rt: Runtime) -> dict[str, Any]:
        async with rt.db.transaction() as session:
            found = await rules.configure_account(session, app, account_id, body,
                                                     livemode=mode is Mode.live)  # fmt: skip
        return AccountRoutingOut.of(found).model_dump(mode="json")

    show_json(run(work))

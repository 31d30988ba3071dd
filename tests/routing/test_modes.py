"""Modes never cross in routing (DESIGN §3.10, issue 10 item 2): a test key reads and changes
only test-mode rules, settings and account routing fields, a live key only live ones, a rule
references only its own mode's accounts, and a payment is routed by its own mode's rules and
settings. Every endpoint of ``/v1/routing`` is exercised in both directions, on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from paymux.channel_accounts import service as channel_service
from paymux.cli import app as cli_app
from paymux.config import get_settings
from paymux.merchants import service as merchant_service
from paymux.merchants.models import Mode
from paymux.routing import service as routing
from paymux.routing.endpoints import router as routing_router
from tests.conftest import Stack
from tests.routing import scripted
from tests.routing.scripted import METHOD

ROUTING_ENDPOINTS = {
    ("GET", "/v1/routing/rules"),
    ("POST", "/v1/routing/rules"),
    ("PUT", "/v1/routing/rules/{rule_id}"),
    ("DELETE", "/v1/routing/rules/{rule_id}"),
    ("GET", "/v1/routing/settings"),
    ("PATCH", "/v1/routing/settings"),
    ("PATCH", "/v1/routing/accounts/{account_id}"),
}
"""Every routing endpoint; the first test checks the router serves exactly these, so a new one
cannot be added without a mode test here."""


@pytest.fixture(autouse=True)
def _scripted_channel() -> Iterator[None]:
    yield from scripted.registered()
    routing.clear_caches()


@dataclass
class Side:
    """One mode of the app: its key and its two scripted channel accounts."""

    livemode: bool
    headers: dict[str, str]
    accounts: list[str]


@dataclass
class App:
    app_id: str
    sides: dict[str, Side]


async def two_modes(stack: Stack) -> App:
    """An app with a test and a live key and two accounts in each mode (priority 1, 2)."""
    tag = uuid.uuid4().hex[:8]
    async with stack.runtime.db.transaction() as session:
        merchant = await merchant_service.create_merchant(session, name="Two modes")
        app = await merchant_service.create_app(session, merchant_id=merchant.id, name="web")
        sides = {}
        for mode in (Mode.test, Mode.live):
            key = await merchant_service.issue_key(session, app_id=app.id, mode=mode)
            ids = []
            for number in (1, 2):
                credentials: dict[str, Any] = {"label": f"{tag}-{mode.value}-{number}"}
                if mode is Mode.live:
                    credentials["gateway"] = "https://routetest.example"
                account = await channel_service.add_account(
                    session, stack.runtime.vault, app_id=app.id, channel="routetest",
                    mode=mode, credentials=credentials, priority=number,
                )  # fmt: skip
                ids.append(account.id)
            sides[mode.value] = Side(
                livemode=mode is Mode.live,
                headers={"Authorization": f"Bearer {key.secret}"},
                accounts=ids,
            )
    return App(app.id, sides)


DIRECTIONS = pytest.mark.parametrize(
    ("actor", "other"), [("test", "live"), ("live", "test")], ids=["test-key", "live-key"]
)


def pin(account: str, name: str = "") -> dict[str, Any]:
    return {"name": name, "action": {"type": "pin", "targets": [account]}}


async def add_rule(stack: Stack, side: Side, body: dict[str, Any]) -> dict[str, Any]:
    r = await stack.client.post("/v1/routing/rules", headers=side.headers, json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def rules_of(stack: Stack, side: Side) -> list[dict[str, Any]]:
    r = await stack.client.get("/v1/routing/rules", headers=side.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


async def settings_of(stack: Stack, side: Side) -> dict[str, Any]:
    r = await stack.client.get("/v1/routing/settings", headers=side.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def operator_accounts(stack: Stack, app_id: str) -> dict[str, dict[str, Any]]:
    r = await stack.client.get(
        f"/v1/operator/apps/{app_id}/channel_accounts",
        headers={"Authorization": f"Bearer {stack.runtime.settings.operator_token}"},
    )
    assert r.status_code == 200, r.text
    return {a["id"]: a for a in r.json()}


def test_these_are_all_the_routing_endpoints() -> None:
    served = {
        (method, route.path)
        for route in routing_router.routes
        for method in getattr(route, "methods", ())
    }
    assert served == ROUTING_ENDPOINTS


# ------------------------------------------------------------------ rules
@DIRECTIONS
async def test_a_key_lists_only_its_modes_rules(stack: Stack, actor: str, other: str) -> None:
    app = await two_modes(stack)
    mine = await add_rule(stack, app.sides[actor], pin(app.sides[actor].accounts[1]))
    theirs = await add_rule(stack, app.sides[other], pin(app.sides[other].accounts[1]))
    assert mine["livemode"] is app.sides[actor].livemode
    assert [r["id"] for r in await rules_of(stack, app.sides[actor])] == [mine["id"]]
    assert [r["id"] for r in await rules_of(stack, app.sides[other])] == [theirs["id"]]
    # Positions and versions are counted per mode.
    assert mine["position"] == theirs["position"] == 0


@DIRECTIONS
async def test_a_key_cannot_replace_or_delete_the_other_modes_rule(
    stack: Stack, actor: str, other: str
) -> None:
    app = await two_modes(stack)
    me, them = app.sides[actor], app.sides[other]
    theirs = await add_rule(stack, them, pin(them.accounts[1], "theirs"))
    unknown = await stack.client.delete("/v1/routing/rules/rr_doesnotexist", headers=me.headers)
    assert unknown.status_code == 404
    replaced = await stack.client.put(
        f"/v1/routing/rules/{theirs['id']}", headers=me.headers, json={"name": "hijacked",
                                                                     "action": {"type": "score"}},
    )  # fmt: skip
    deleted = await stack.client.delete(f"/v1/routing/rules/{theirs['id']}", headers=me.headers)
    for r in (replaced, deleted):
        assert r.status_code == 404, r.text
        # As if it did not exist: the same answer as for an id nobody has.
        assert r.json()["error"]["code"] == unknown.json()["error"]["code"]
        assert r.json()["error"]["type"] == unknown.json()["error"]["type"]
    (still,) = await rules_of(stack, them)
    assert (still["id"], still["name"], still["action"]) == (
        theirs["id"],
        "theirs",
        theirs["action"],
    )
    assert still["version"] == theirs["version"]


@DIRECTIONS
async def test_a_rule_cannot_reference_the_other_modes_account(
    stack: Stack, actor: str, other: str
) -> None:
    app = await two_modes(stack)
    me, them = app.sides[actor], app.sides[other]
    before = await settings_of(stack, me)
    foreign = them.accounts[0]
    bodies = [
        pin(foreign),
        {"action": {"type": "weighted", "targets": [me.accounts[0], foreign], "weights": [1, 1]}},
        {"conditions": {"last_channels": [foreign]}, "action": {"type": "score"}},
    ]
    params = ["action.targets", "action.targets", "conditions.last_channels"]
    for body, param in zip(bodies, params, strict=True):
        r = await stack.client.post("/v1/routing/rules", headers=me.headers, json=body)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert (error["code"], error["param"]) == ("unknown_target", param)
        assert foreign in error["message"]
    assert await rules_of(stack, me) == [] and await rules_of(stack, them) == []
    # Nor by replacing an own rule: it stays as it was.
    mine = await add_rule(stack, me, pin(me.accounts[1], "mine"))
    r = await stack.client.put(
        f"/v1/routing/rules/{mine['id']}", headers=me.headers, json=pin(foreign)
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_target"
    (kept,) = await rules_of(stack, me)
    assert kept["action"]["targets"] == [me.accounts[1]] and kept["version"] == mine["version"]
    assert mine["version"] == before["version"] + 1  # the refused creates bumped nothing


# ------------------------------------------------------------------ settings
@DIRECTIONS
async def test_settings_are_per_mode(stack: Stack, actor: str, other: str) -> None:
    app = await two_modes(stack)
    me, them = app.sides[actor], app.sides[other]
    untouched = await settings_of(stack, them)
    r = await stack.client.patch(
        "/v1/routing/settings", headers=me.headers,
        json={"strategy": "priority", "weight_cost": 2.5},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert (r.json()["strategy"], r.json()["livemode"]) == ("priority", me.livemode)
    assert (await settings_of(stack, me))["weight_cost"] == 2.5
    assert await settings_of(stack, them) == untouched
    assert untouched["strategy"] == "score" and untouched["livemode"] is them.livemode


# ------------------------------------------------------------------ account routing fields
@DIRECTIONS
async def test_a_key_cannot_change_the_other_modes_account(
    stack: Stack, actor: str, other: str
) -> None:
    app = await two_modes(stack)
    me, them = app.sides[actor], app.sides[other]
    foreign = them.accounts[0]
    nobody = await stack.client.patch(
        "/v1/routing/accounts/chn_doesnotexist", headers=me.headers, json={"enabled": False}
    )
    r = await stack.client.patch(
        f"/v1/routing/accounts/{foreign}", headers=me.headers,
        json={"enabled": False, "daily_count_limit": 1},
    )  # fmt: skip
    assert r.status_code == nobody.status_code == 404, r.text
    assert r.json()["error"]["code"] == nobody.json()["error"]["code"]
    assert foreign in r.json()["error"]["message"]  # names only what the caller sent
    account = (await operator_accounts(stack, app.app_id))[foreign]
    assert account["enabled"] is True
    # The owner's key may.
    own = await stack.client.patch(
        f"/v1/routing/accounts/{foreign}", headers=them.headers, json={"daily_count_limit": 7}
    )
    assert own.status_code == 200, own.text
    assert (own.json()["daily_count_limit"], own.json()["livemode"]) == (7, them.livemode)


# ------------------------------------------------------------------ payments
async def pay(stack: Stack, side: Side) -> dict[str, Any]:
    body = {"amount": 1000, "method": METHOD, "subject": "modes",
            "out_trade_no": uuid.uuid4().hex[:20]}  # fmt: skip
    r = await stack.client.post("/v1/payments", headers=side.headers, json=body)
    assert r.status_code == 201, r.text
    payment = r.json()
    r = await stack.client.get(
        f"/v1/payments/{payment['id']}", headers=side.headers, params={"expand": "attempts"}
    )
    (attempt,) = r.json()["attempts"]
    return {"payment": payment, "routing": attempt["routing"]}


async def test_a_payment_is_routed_by_its_own_modes_rules_and_settings(stack: Stack) -> None:
    app = await two_modes(stack)
    test, live = app.sides["test"], app.sides["live"]
    # Test mode: pinned to its second account, static priority. Live mode: default settings,
    # a rule pinning its second account only for large amounts (never matches 1000).
    test_rule = await add_rule(stack, test, pin(test.accounts[1], "test pin"))
    r = await stack.client.patch(
        "/v1/routing/settings", headers=test.headers, json={"strategy": "priority"}
    )
    assert r.status_code == 200
    live_rule = await add_rule(stack, live, {**pin(live.accounts[1], "live large"),
                                             "conditions": {"amount_min": 100_000}})  # fmt: skip

    first_live = await pay(stack, live)
    # Before, the test pin matched live payments too and left them no candidate (a 400).
    assert first_live["payment"]["livemode"] is True
    assert first_live["routing"]["rule"] is None
    assert first_live["routing"]["strategy"] == "score"
    assert first_live["payment"]["channel_account"] in live.accounts
    assert {c["account"] for c in first_live["routing"]["candidates"]} == set(live.accounts)

    first_test = await pay(stack, test)
    assert first_test["routing"]["rule"]["id"] == test_rule["id"]
    assert first_test["routing"]["strategy"] == "priority"
    assert first_test["payment"]["channel_account"] == test.accounts[1]
    assert {c["account"] for c in first_test["routing"]["candidates"]} == set(test.accounts)

    # Right after (both modes' rules cached in this process), still apart.
    assert (await pay(stack, live))["routing"]["rule"] is None
    r = await stack.client.put(
        f"/v1/routing/rules/{live_rule['id']}", headers=live.headers,
        json=pin(live.accounts[1], "live pin"),
    )  # fmt: skip
    assert r.status_code == 200, r.text
    again_live, again_test = await pay(stack, live), await pay(stack, test)
    assert again_live["routing"]["rule"]["id"] == live_rule["id"]
    assert again_live["payment"]["channel_account"] == live.accounts[1]
    assert again_test["routing"]["rule"]["id"] == test_rule["id"]


# ------------------------------------------------------------------ CLI (the operator)
@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("PAYMUX_DATABASE_URL", database_url)
    monkeypatch.setenv("PAYMUX_ENV", "test")
    monkeypatch.setenv("PAYMUX_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True) -> Any:
        result = runner.invoke(cli_app, list(args))
        assert (result.exit_code == 0) is ok, result.output
        return json.loads(result.output) if ok else result.output

    yield invoke
    get_settings.cache_clear()


def test_the_cli_acts_in_the_mode_it_is_given(cli: Any, tmp_path: Path) -> None:
    """``--mode`` (default test) scopes every ``paymux routing`` command like a key's mode."""
    application = cli("app", "create", cli("merchant", "create", "CLI modes")["id"])["id"]
    accounts = {}
    for mode, gateway in (
        ("test", "http://routetest.invalid"),
        ("live", "https://routetest.example"),
    ):
        creds = tmp_path / f"{mode}.json"
        creds.write_text(json.dumps({"label": f"cli-{mode}-{uuid.uuid4().hex[:6]}",
                                     "gateway": gateway}))  # fmt: skip
        accounts[mode] = cli("channel", "add", application, "routetest", "--credentials",
                             str(creds), "--mode", mode)["id"]  # fmt: skip
    rule = tmp_path / "rule.json"
    rule.write_text(json.dumps(pin(accounts["live"])))
    opt = ("--app", application)
    # Default test mode: the live account is no target, nor configurable.
    assert "unknown_target" in cli("routing", "add", *opt, "--file", str(rule), ok=False)
    limits = tmp_path / "limits.json"
    limits.write_text(json.dumps({"enabled": False}))
    refused = cli("routing", "account", *opt, accounts["live"], "--file", str(limits), ok=False)
    assert "resource_missing" in refused
    added = cli("routing", "add", *opt, "--mode", "live", "--file", str(rule))
    assert added["livemode"] is True
    assert cli("routing", "rules", *opt) == []
    assert [r["id"] for r in cli("routing", "rules", *opt, "--mode", "live")] == [added["id"]]
    assert "resource_missing" in cli("routing", "delete", *opt, added["id"], ok=False)
    assert cli("routing", "settings", *opt, "--strategy", "priority")["livemode"] is False
    assert cli("routing", "settings", *opt, "--mode", "live")["strategy"] == "score"
    configured = cli("routing", "account", *opt, accounts["live"], "--mode", "live",
                     "--file", str(limits))  # fmt: skip
    assert configured["enabled"] is False
    cli("routing", "delete", *opt, "--mode", "live", added["id"])
    assert cli("routing", "rules", *opt, "--mode", "live") == []

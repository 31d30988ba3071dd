"""``paymux risk``: lists, rule sets and presets through typer's CliRunner, on SQLite and
PostgreSQL — each command's happy path for a merchant (``--merchant``) and the platform, and
one refusal each: an error line with its code, exit code 1, nothing changed.

The commands run as ``paymux`` would, with a runtime of their own on the test database (no
server: they call the services). Platform lists get fresh names, and the platform's presets
are applied in live mode: the test-mode platform lists of tests/risk are theirs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paymux.config import Settings, get_settings
from paymux.merchants import service as merchant_service
from paymux.risk.presets import PRESETS
from paymux.runtime import Runtime
from tests.test_cli_money import cli, refused


@pytest.fixture
def merchant(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh merchant, and the environment a ``paymux`` command reads."""
    monkeypatch.setenv("PAYMUX_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PAYMUX_PUBLIC_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("PAYMUX_ENV", "test")
    monkeypatch.setenv("PAYMUX_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()

    async def make() -> str:
        rt = Runtime.build(settings)
        try:
            async with rt.db.transaction() as session:
                found = await merchant_service.create_merchant(session, name="CLI shop")
                return found.id
        finally:
            await rt.aclose()

    yield asyncio.run(make())
    get_settings.cache_clear()


def _lists(*args: str) -> list[dict[str, Any]]:
    """Every list ``paymux risk lists`` shows, page by page (other tests' platform lists too)."""
    found: list[dict[str, Any]] = []
    after: tuple[str, ...] = ()
    while True:
        page = cli("--json", "risk", "lists", *args, "--limit", "100", *after)
        found += page["data"]
        if not page["has_more"]:
            return found
        after = ("--starting-after", page["data"][-1]["id"])


def _name() -> str:
    return f"l_{uuid.uuid4().hex[:12]}"


def test_lists_from_the_command_line(merchant: str, tmp_path: Path) -> None:
    m = ("--merchant", merchant)
    made = cli("--json", "risk", "list", "create", "blocked_ips", "--type", "ip",
               "--description", "abuse", *m, "--actor", "ann")  # fmt: skip
    assert (made["owner"], made["livemode"], made["created_by"]) == (merchant, False,
                                                                     "operator:ann")  # fmt: skip
    added = cli("--json", "risk", "list", "add", "blocked_ips", "198.51.100.0/24",
                "--reason", "proxy farm", "--expires", "2099-01-01T00:00:00Z", *m)  # fmt: skip
    assert (added["list_id"], added["added"], added["updated"]) == (made["id"], 1, 0)
    csv = tmp_path / "ips.csv"
    csv.write_text("value,reason\n203.0.113.7,chargebacks\n192.0.2.1,stuffing\n")
    imported = cli("--json", "risk", "list", "import", made["id"], str(csv), *m)
    assert (imported["added"], imported["updated"]) == (2, 0)
    check = cli("--json", "risk", "list", "check", "blocked_ips", "198.51.100.23", *m)
    assert check["listed"] and check["item"]["value"] == "198.51.100.0/24"
    items = cli("--json", "risk", "list", "items", "blocked_ips", *m)
    assert sorted(x["value"] for x in items["data"]) == ["192.0.2.1", "198.51.100.0/24",
                                                          "203.0.113.7"]  # fmt: skip
    removed = cli("--json", "risk", "list", "remove", "blocked_ips", "192.0.2.1", *m)
    assert removed == {"object": "risk.list_item", "list_id": made["id"], "value": "192.0.2.1",
                       "deleted": True}  # fmt: skip
    assert not cli("--json", "risk", "list", "check", "blocked_ips", "192.0.2.1", *m)["listed"]
    platform = _name()  # live: the test-mode platform lists are tests/risk's
    cli("--json", "risk", "list", "create", platform, "--type", "region", "--live", "--actor",
        "rita")  # fmt: skip
    cli("--json", "risk", "list", "add", platform, "KP", "--reason", "sanctions", "--livemode")
    assert ("blocked_ips", merchant) in {(x["name"], x["owner"]) for x in _lists(*m)}
    live = {(x["name"], x["owner"]) for x in _lists(*m, "--live")}
    assert (platform, "platform") in live and merchant not in {owner for _, owner in live}
    assert cli("--json", "risk", "list", "check", platform, "kp", *m, "--live")["listed"]
    assert merchant not in {x["owner"] for x in _lists()}
    refused("risk", "list", "check", platform, "KP", *m, code="resource_missing")  # test mode

    # one refusal each: nothing changes
    refused("risk", "list", "create", "blocked_ips", "--type", "ip", *m, code="list_exists")
    refused("risk", "list", "create", _name(), "--type", "colour", code="parameter_invalid")
    refused("risk", "list", "add", "nope", "1.2.3.4", "--reason", "abuse", *m,
            code="resource_missing")  # fmt: skip
    refused("risk", "list", "add", platform, "CN", "--reason", "mine", *m, "--live",
            code="resource_missing")  # a platform list is read-only to a merchant  # fmt: skip
    bad = tmp_path / "bad.csv"
    bad.write_text("value,reason\n203.0.113.8,fine\nnot-an-ip,typo\n")
    refused("risk", "list", "import", "blocked_ips", str(bad), *m, code="list_value_invalid")
    headless = tmp_path / "headless.csv"
    headless.write_text("203.0.113.9,no header\n")
    refused("risk", "list", "import", "blocked_ips", str(headless), *m, code="csv_invalid")
    refused("risk", "list", "remove", "blocked_ips", "192.0.2.99", *m, code="resource_missing")
    refused("risk", "list", "check", "blocked_ips", "not-an-ip", *m, code="list_value_invalid")
    refused("risk", "lists", "--merchant", "mch_nope", code="resource_missing")
    items = cli("--json", "risk", "list", "items", "blocked_ips", *m)["data"]
    assert len(items) == 2


def _rule(name: str, expression: str, action: str = "review") -> dict[str, Any]:
    return {"name": name, "event": "payment.create", "expression": expression, "action": action}


def test_rule_sets_from_the_command_line(merchant: str, tmp_path: Path) -> None:
    m = ("--merchant", merchant)
    body = tmp_path / "rules.json"
    body.write_text(json.dumps({"note": "first", "review_score": 40, "rules": [
        _rule("big_new", "amount > 500000 && customer.is_new"),
        _rule("fast", "count_payments_device_1h > 5", "challenge")]}))  # fmt: skip
    draft = cli("--json", "risk", "ruleset", "create", str(body), *m, "--actor", "ann")
    assert (draft["owner"], draft["state"], draft["note"], draft["review_score"]) == (
        merchant, "draft", "first", 40)  # fmt: skip
    assert draft["rules"][0]["attributes"] == ["amount", "customer.is_new"]
    shown = cli("--json", "risk", "ruleset", "show", draft["id"], *m)
    assert shown["id"] == draft["id"] and len(shown["rules"]) == 2
    published = cli("--json", "risk", "ruleset", "publish", draft["id"], *m, "--actor", "bob")
    assert (published["state"], published["version"], published["published_by"]) == (
        "published", 1, "operator:bob")  # fmt: skip
    listed = cli("--json", "risk", "rulesets", *m)["data"]
    assert [(x["id"], x["state"]) for x in listed] == [(draft["id"], "published")]
    assert cli("--json", "risk", "rulesets", *m, "--live")["data"] == []

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rules": [_rule("ok", "amount > 5"), _rule("typo", "amount >")]}))
    refused("risk", "ruleset", "create", str(bad), *m, code="rule_syntax")
    refused("risk", "ruleset", "create", str(bad), *m, code="rules[1] (typo)")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"rules": [_rule("x", 'ip_region in list("nowhere")')]}))
    refused("risk", "ruleset", "create", str(unknown), *m, code="rule_unknown_list")
    notjson = tmp_path / "rules.txt"
    notjson.write_text("rules: none")
    refused("risk", "ruleset", "create", str(notjson), *m, code="parameter_invalid")
    other = tmp_path / "live.json"
    other.write_text(json.dumps({"livemode": True, "rules": [_rule("ok", "amount > 5")]}))
    refused("risk", "ruleset", "create", str(other), *m, code="parameter_invalid")
    refused("risk", "ruleset", "publish", draft["id"], *m, code="rule_set_not_draft")
    refused("risk", "ruleset", "show", draft["id"], code="resource_missing")  # not the platform's
    assert len(cli("--json", "risk", "rulesets", *m)["data"]) == 1


def test_presets_from_the_command_line(merchant: str) -> None:
    m = ("--merchant", merchant)
    listed = cli("--json", "risk", "presets")
    assert [x["name"] for x in listed["data"]] == list(PRESETS)
    shown = cli("--json", "risk", "preset", "show", "group_buying")
    assert len(shown["rules"]) == len(PRESETS["group_buying"].rules)
    assert all(rule["why"] for rule in shown["rules"])
    draft = cli("--json", "risk", "preset", "apply", "card_shop", *m, "--actor", "ann")
    assert (draft["owner"], draft["state"], draft["note"], draft["created_by"]) == (
        merchant, "draft", "preset card_shop v1", "operator:ann")  # fmt: skip
    own = sorted(x["name"] for x in _lists(*m) if x["owner"] == merchant)
    on_platform = {x["name"] for x in _lists()}  # read as they are: not made again
    assert own == sorted(x.name for x in PRESETS["card_shop"].lists if x.name not in on_platform)
    again = cli("--json", "risk", "preset", "apply", "card_shop", *m)
    assert again["id"] != draft["id"]
    assert sorted(x["name"] for x in _lists(*m) if x["owner"] == merchant) == own
    platform = cli("--json", "risk", "preset", "apply", "group_buying", "--livemode",
                   "--actor", "rita")  # fmt: skip
    assert (platform["owner"], platform["livemode"], platform["state"]) == ("platform", True,
                                                                            "draft")  # fmt: skip
    published = cli("--json", "risk", "ruleset", "publish", draft["id"], *m)
    assert published["state"] == "published"

    refused("risk", "preset", "show", "nope", code="resource_missing")
    refused("risk", "preset", "apply", "nope", *m, code="resource_missing")
    refused("risk", "preset", "apply", "card_shop", *m, "--actor", " ", code="actor_required")
    assert len(cli("--json", "risk", "rulesets", *m)["data"]) == 2

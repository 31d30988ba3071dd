"""The administration CLI against the test database: merchants, apps, keys, channel accounts,
webhook endpoints and resend; bad input is a clear message and a non-zero exit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from paymux.channels.alipay.sandbox import Sandbox as AlipaySandbox
from paymux.cli import app
from paymux.config import get_settings

runner = CliRunner()


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PAYMUX_DATABASE_URL", database_url)
    monkeypatch.setenv("PAYMUX_ENV", "test")
    monkeypatch.setenv("PAYMUX_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_provision_a_merchant_by_cli(cli_env: None, tmp_path: Path) -> None:
    merchant = run("merchant", "create", "CLI shop")
    assert merchant["id"].startswith("mch_")
    assert merchant["id"] in [m["id"] for m in run("merchant", "list")]
    application = run("app", "create", merchant["id"], "--name", "web")
    key = run("app", "key", application["id"])
    assert key["secret"].startswith("sk_test_")

    creds = tmp_path / "alipay.json"
    creds.write_text(json.dumps(AlipaySandbox().provision("http://gateway.test/sandbox/alipay")))
    account = run("channel", "add", application["id"], "alipay", "--credentials", str(creds),
                  "--fee-bps", "38", "--methods", "alipay_qr,alipay_page")  # fmt: skip
    listed = run("channel", "list", application["id"])
    assert [a["id"] for a in listed] == [account["id"]]
    assert run("channel", "enable", account["id"], "--off")["enabled"] is False

    endpoint = run("webhook", "add", application["id"], "https://shop.example/hooks",
                   "--events", "payment.succeeded")  # fmt: skip
    assert endpoint["secret"].startswith("whsec_")


def test_resend_unknown_event_is_a_clear_error(cli_env: None) -> None:
    merchant = run("merchant", "create", "CLI shop")
    application = run("app", "create", merchant["id"])
    result = runner.invoke(app, ["webhook", "resend", application["id"], "evt_missing"])
    assert result.exit_code == 1 and "resource_missing" in result.output


def test_bad_input_is_refused(cli_env: None, tmp_path: Path) -> None:
    merchant = run("merchant", "create", "CLI shop")
    application = run("app", "create", merchant["id"])
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = runner.invoke(app, ["channel", "add", application["id"], "alipay",
                                 "--credentials", str(broken)])  # fmt: skip
    assert result.exit_code == 1 and "cannot read credentials" in result.output
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"app_id": "x"}))
    result = runner.invoke(app, ["channel", "add", application["id"], "alipay",
                                 "--credentials", str(wrong)])  # fmt: skip
    assert result.exit_code == 1 and "error" in result.output
    assert run("channel", "list", application["id"]) == []
    result = runner.invoke(app, ["webhook", "add", application["id"], "ftp://nope"])
    assert result.exit_code == 1 and "url_invalid" in result.output


def test_production_refuses_to_start_without_a_master_key(
    cli_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYMUX_ENV", "prod")
    monkeypatch.delenv("PAYMUX_MASTER_KEY", raising=False)
    get_settings.cache_clear()
    result = runner.invoke(app, ["merchant", "list"])
    assert result.exit_code != 0
    assert "PAYMUX_MASTER_KEY" in result.output


def test_routing_rules_settings_and_accounts_by_cli(cli_env: None, tmp_path: Path) -> None:
    """Rules are edited at run time (each edit bumps the version); bad input changes nothing."""
    merchant = run("merchant", "create", "Routing shop")
    application = run("app", "create", merchant["id"])
    creds = tmp_path / "alipay.json"
    creds.write_text(json.dumps(AlipaySandbox().provision("http://gateway.test/sandbox/alipay")))
    account = run("channel", "add", application["id"], "alipay", "--credentials", str(creds))
    app_opt = ("--app", application["id"])

    rule = tmp_path / "rule.json"
    rule.write_text(json.dumps({
        "name": "large amounts to alipay", "conditions": {"amount_min": 100_000},
        "action": {"type": "priority", "targets": ["alipay"]}}))  # fmt: skip
    added = run("routing", "add", *app_opt, "--file", str(rule))
    assert added["name"] == "large amounts to alipay" and added["position"] == 0
    assert [r["id"] for r in run("routing", "rules", *app_opt)] == [added["id"]]
    rule.write_text(
        json.dumps({"name": "pinned", "action": {"type": "pin", "targets": [account["id"]]}})
    )
    replaced = run("routing", "replace", *app_opt, added["id"], "--file", str(rule))
    assert replaced["action"]["type"] == "pin" and replaced["version"] > added["version"]

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"action": {"type": "teleport"}}))
    refused = runner.invoke(app, ["routing", "add", *app_opt, "--file", str(bad)])
    assert refused.exit_code == 1 and "parameter_invalid" in refused.output
    assert len(run("routing", "rules", *app_opt)) == 1

    assert run("routing", "settings", *app_opt, "--strategy", "priority")["strategy"] == "priority"
    limits = tmp_path / "limits.json"
    limits.write_text(json.dumps({"daily_count_limit": 500, "fee_fixed": 10}))
    configured = run("routing", "account", *app_opt, account["id"], "--file", str(limits))
    assert (configured["daily_count_limit"], configured["fee_fixed"]) == (500, 10)
    run("routing", "delete", *app_opt, added["id"])
    assert run("routing", "rules", *app_opt) == []

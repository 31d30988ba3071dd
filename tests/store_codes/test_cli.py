"""``paymux store-codes create/list`` through typer's CliRunner."""

from __future__ import annotations

from typer.testing import CliRunner

from paymux.cli import app
from tests.test_cli import cli_env, run

assert cli_env  # fixture used by name below


def test_create_and_list_store_codes(cli_env: None) -> None:
    merchant = run("merchant", "create", "CLI shop")
    application = run("app", "create", merchant["id"])
    code = run("store-codes", "create", "--app", application["id"], "Front desk",
               "--store-id", "s-01", "--amount", "500")  # fmt: skip
    assert code["id"].startswith("sc_") and code["amount"] == 500 and "/s/" in code["url"]
    listed = run("store-codes", "list", "--app", application["id"])
    assert [c["id"] for c in listed["data"]] == [code["id"]]
    assert run("store-codes", "list", "--app", application["id"], "--live")["data"] == []


def test_bad_input_and_unknown_app_are_clear_errors(cli_env: None) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["store-codes", "create", "--app", "app_x", "n", "--store-id",
                              "s", "--currency", "XYZ1"])  # fmt: skip
    assert bad.exit_code == 1 and "parameter_invalid" in bad.output
    missing = runner.invoke(app, ["store-codes", "create", "--app", "app_nope", "n",
                                  "--store-id", "s"])  # fmt: skip
    assert missing.exit_code == 1 and "resource_missing" in missing.output

"""``paymux recon``: a bill day run and listed, its report, the queue, settings, the daily job
once — through typer's CliRunner against a served gateway, SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from paymux.channels.wechatpay.bill import CHINA
from paymux.cli import app
from tests.test_cli_money import Shop, cli, gateway, refused, runner, shop

__all__ = ["gateway", "shop"]  # fixtures


@pytest.fixture(autouse=True)
def _archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMUX_RECON_ARCHIVE_DIR", str(tmp_path / "bills"))


def test_a_bill_day_from_the_command_line(shop: Shop, tmp_path: Path) -> None:
    account = shop.setup.channel_accounts["wechatpay"]
    day = (dt.datetime.now(CHINA) - dt.timedelta(days=40)).date().isoformat()
    run = cli("--json", "recon", "run", "--account", account, "--date", day, "--actor", "ann")
    assert (run["status"], run["verdict"], run["created_by"]) == ("done", "reconciled",
                                                                  "operator:ann")  # fmt: skip
    listed = cli("--json", "recon", "runs", "--account", account)
    assert run["id"] in [r["id"] for r in listed["data"]]
    assert cli("--json", "recon", "show", run["id"])["verdict"] == "reconciled"
    out = tmp_path / "report.xlsx"
    result = runner.invoke(app, ["recon", "report", run["id"], "--format", "xlsx",
                                 "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0 and out.stat().st_size > 0, result.output
    assert f"sha256 {run['report_sha256']}" in result.output
    assert cli("--json", "recon", "breaks", "--account", account)["data"] == []
    config = cli("--json", "recon", "config", "--account", account, "--grace-days", "2",
                 "--opening-balance", "CNY=1500")  # fmt: skip
    assert (config["grace_days"], config["opening_balances"]) == (2, {"CNY": 1500})
    funds = cli("--json", "recon", "run", "--account", account, "--date", day, "--bill", "funds",
                "--actor", "ann")  # fmt: skip
    assert (funds["bill"], funds["status"]) == ("funds", "done")
    assert [r["bill"] for r in cli("--json", "recon", "runs", "--account", account,
                                   "--bill", "funds")["data"]] == ["funds"]  # fmt: skip
    assert cli("--json", "recon", "due", "--account", account)["object"] == "recon.due"


def test_bad_input_is_refused_before_anything_runs(shop: Shop) -> None:
    account = shop.setup.channel_accounts["wechatpay"]
    refused("recon", "run", "--account", account, "--date", "yesterday", code="parameter_invalid")
    refused("recon", "run", "--account", "chn_nope", "--date", "2026-11-01",
            code="resource_missing")  # fmt: skip
    refused("recon", "breaks", "--class", "nonsense", code="parameter_invalid")
    refused("recon", "run", "--account", account, "--date", "2026-11-01", "--bill", "ledger",
            code="parameter_invalid")  # fmt: skip
    refused("recon", "config", "--account", account, "--opening-balance", "CNY=lots",
            code="parameter_invalid")  # fmt: skip
    refused("recon", "act", "brk_nope", "ignore", "--reason", "x", "--actor", "a",
            code="parameter_invalid")  # fmt: skip
    refused("recon", "approve", "rap_nope", "--reason", "fine", "--actor", "a",
            code="resource_missing")  # fmt: skip

"""``paymux app brand`` and ``paymux merchant timezone`` through typer's CliRunner."""

from __future__ import annotations

import io
from pathlib import Path

import segno
from typer.testing import CliRunner

from paymux.cli import app
from tests.test_cli import cli_env, run

assert cli_env  # fixture used by name below


def test_brand_and_timezone_by_cli(cli_env: None, tmp_path: Path) -> None:
    merchant = run("merchant", "create", "CLI brand shop")
    application = run("app", "create", merchant["id"])
    png = io.BytesIO()
    segno.make("logo").save(png, kind="png")
    (tmp_path / "logo.png").write_bytes(png.getvalue())
    branded = run("app", "brand", application["id"], "--name", "Lotus Tea",
                  "--logo", str(tmp_path / "logo.png"))  # fmt: skip
    assert branded["display_name"] == "Lotus Tea"
    assert branded["logo"].startswith(f"/brand/{application['id']}/logo/")
    cleared = run("app", "brand", application["id"], "--name", "", "--no-logo")
    assert cleared["display_name"] is None and cleared["logo"] is None
    assert run("merchant", "timezone", merchant["id"], "Europe/Berlin")["timezone"] == (
        "Europe/Berlin"
    )
    assert run("merchant", "timezone", merchant["id"], "default")["timezone"] is None


def test_a_disguised_file_and_a_bad_zone_are_clear_errors(cli_env: None, tmp_path: Path) -> None:
    merchant = run("merchant", "create", "CLI brand shop")
    application = run("app", "create", merchant["id"])
    fake = tmp_path / "logo.png"
    fake.write_text('<svg xmlns="http://www.w3.org/2000/svg"></svg>')
    runner = CliRunner()
    bad = runner.invoke(app, ["app", "brand", application["id"], "--logo", str(fake)])
    assert bad.exit_code == 1 and "logo_unsupported" in bad.output
    zone = runner.invoke(app, ["merchant", "timezone", merchant["id"], "Mars/Olympus"])
    assert zone.exit_code == 1 and "timezone_invalid" in zone.output

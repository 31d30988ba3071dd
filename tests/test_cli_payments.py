"""``paymux payment list/show/close`` and ``paymux app list`` through typer's CliRunner, on SQLite
and PostgreSQL, against a gateway and its sandboxes on loopback; the output helper's two faces
(JSON for scripts, rich tables on a terminal)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from typer.testing import CliRunner

from paymux.cli import app, output
from tests.test_cli_money import Shop, cli, gateway, no, pay, refused, shop

assert gateway and shop  # fixtures used by name below
runner = CliRunner()


def created(shop: Shop, method: str = "alipay_qr") -> dict[str, Any]:
    body = {"amount": 1999, "currency": "CNY", "method": method, "out_trade_no": no(),
            "subject": f"cli {no()}"}  # fmt: skip
    r = shop.http.post("/v1/payments", json=body, headers={"Idempotency-Key": no()})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_payment_list_filters(shop: Shop) -> None:
    first, second = created(shop), created(shop, "wechat_native")
    listed = cli("payment", "list", "--app", shop.app)
    assert listed["object"] == "list" and listed["has_more"] is False
    assert [p["id"] for p in listed["data"]] == [second["id"], first["id"]]  # newest first
    assert listed["data"][0]["object"] == "payment"
    page = cli("payment", "list", "--app", shop.app, "--limit", "1")
    assert [p["id"] for p in page["data"]] == [second["id"]] and page["has_more"] is True
    after = cli("payment", "list", "--app", shop.app, "--starting-after", second["id"])
    assert [p["id"] for p in after["data"]] == [first["id"]]
    assert cli("payment", "list", "--app", shop.app, "--status", "succeeded")["data"] == []
    pending = cli("payment", "list", "--app", shop.app, "--status", "pending")["data"]
    assert {p["id"] for p in pending} == {first["id"], second["id"]}
    assert cli("payment", "list", "--app", shop.app, "--mode", "live")["data"] == []
    by_no = cli("payment", "list", "--app", shop.app, "--out-trade-no", first["out_trade_no"])
    assert [p["id"] for p in by_no["data"]] == [first["id"]]
    result = runner.invoke(app, ["payment", "list", "--app", shop.app, "--status", "lost"])
    assert result.exit_code == 2 and "lost" in result.output


def test_payment_show_and_close_through_the_api_path(shop: Shop) -> None:
    payment = created(shop)
    shown = cli("payment", "show", payment["id"])
    assert shown["id"] == payment["id"] and shown["status"] == "pending"
    assert [a["channel"] for a in shown["attempts"]] == ["alipay"]
    assert shown["attempts"][0]["routing"] is not None and shown["events"] == []

    closed = cli("payment", "close", payment["id"])
    assert closed["status"] == "closed"
    # The channel closed its order too (the customer can no longer pay it there).
    order = next(o for o in shop.gateway.sandboxes["alipay"].core.orders.values()
                 if o.subject == payment["subject"])  # fmt: skip
    assert order.status == "closed"
    shown = cli("payment", "show", payment["id"])
    assert [e["type"] for e in shown["events"]] == ["payment.closed"]
    assert shop.http.get(f"/v1/payments/{payment['id']}").json()["status"] == "closed"
    assert cli("payment", "close", payment["id"])["status"] == "closed"  # a no-op
    assert len(cli("payment", "show", payment["id"])["events"]) == 1

    paid = pay(shop, created(shop))
    refused("payment", "close", paid["id"], code="payment_not_closable")
    assert cli("payment", "show", paid["id"])["status"] == "succeeded"
    assert [e["type"] for e in cli("payment", "show", paid["id"])["events"]] == [
        "payment.succeeded"]  # fmt: skip
    refused("payment", "show", "pay_missing", code="resource_missing")
    refused("payment", "close", "pay_missing", code="resource_missing")


def test_app_list_shows_ids_and_masked_keys(shop: Shop) -> None:
    result = runner.invoke(app, ["app", "list", "--merchant", shop.merchant])
    assert result.exit_code == 0, result.output
    assert shop.setup.api_key not in result.output  # never the key itself
    (listed,) = json.loads(result.output)
    assert (listed["id"], listed["merchant"]) == (shop.app, shop.merchant)
    assert listed["modes"] == ["test"]
    (key,) = listed["keys"]
    assert key["mode"] == "test" and not key["revoked"]
    assert key["key"] == f"sk_test_…{shop.setup.api_key[-4:]}"
    assert shop.app in [a["id"] for a in cli("app", "list")]
    assert cli("app", "list", "--merchant", "mch_nobody") == []


def test_tables_on_a_terminal_json_with_the_flag(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment = created(shop)
    monkeypatch.setattr(output, "stdout_is_tty", lambda: True)
    monkeypatch.setenv("COLUMNS", "200")
    table = runner.invoke(app, ["payment", "list", "--app", shop.app])
    assert table.exit_code == 0, table.output
    plain = re.sub(r"\x1b\[[0-9;]*m", "", table.output)
    assert "\x1b[" in table.output  # colour
    header = next(line for line in plain.splitlines() if "┃" in line)
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == list(
        ("id", "status", "amount", "currency", "method", "channel", "out_trade_no", "created_at")
    )
    assert payment["id"] in plain and "pending" in plain
    with pytest.raises(json.JSONDecodeError):
        json.loads(table.output)
    shown = re.sub(
        r"\x1b\[[0-9;]*m", "", runner.invoke(app, ["payment", "show", payment["id"]]).output
    )
    assert "attempts" in shown and "alipay" in shown and payment["out_trade_no"] in shown

    forced = runner.invoke(app, ["--json", "payment", "list", "--app", shop.app])
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.output)["data"][0]["id"] == payment["id"]

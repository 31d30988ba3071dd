"""The operator's money commands (refund, ledger, wallet, split, escrow, settlement, payout)
through typer's CliRunner, on SQLite and PostgreSQL.

The gateway and the WeChat Pay / Alipay sandboxes run as a real server on loopback (no worker:
the commands under test are the ones that move the money); customers pay on the sandboxes, and
every command runs as ``paymux`` would, with its own runtime reaching the sandboxes over HTTP.
Refused commands exit non-zero with the error code and change nothing.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from paymux.app import create_app
from paymux.channels.sandbox_kit import RefundOutcome, RefundScript
from paymux.cli import app
from paymux.config import Environment, Settings, get_settings
from paymux.demo import DemoSetup, make_sandboxes, provision
from paymux.runtime import Runtime
from tests.fixtures.servers import free_port, serve

runner = CliRunner()


@dataclass
class Gateway:
    base: str
    settings: Settings
    sandboxes: dict[str, Any]


@dataclass
class Shop:
    """A merchant with an app, a test key and sandbox channel accounts of its own."""

    gateway: Gateway
    setup: DemoSetup
    http: httpx.Client

    @property
    def merchant(self) -> str:
        return self.setup.merchant_id

    @property
    def app(self) -> str:
        return self.setup.app_id


@pytest.fixture(scope="module")
def gateway(database_url: str) -> Iterator[Gateway]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(
        env=Environment.test, database_url=database_url, public_url=base,
        channel_timeout_seconds=2.0, log_level="WARNING",
        egress_allow_nets=["127.0.0.0/8", "::1/128"],
    )  # fmt: skip
    sandboxes = make_sandboxes(httpx.AsyncClient(timeout=5.0), time_scale=0.01)
    with serve(create_app(settings, sandboxes=sandboxes), port=port):
        yield Gateway(base, settings, sandboxes)


@pytest.fixture
def shop(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shop]:
    monkeypatch.setenv("PAYMUX_DATABASE_URL", gateway.settings.database_url)
    monkeypatch.setenv("PAYMUX_PUBLIC_URL", gateway.base)
    monkeypatch.setenv("PAYMUX_ENV", "test")
    monkeypatch.setenv("PAYMUX_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()

    async def setup() -> DemoSetup:
        rt = Runtime.build(gateway.settings)
        try:
            return await provision(rt, gateway.sandboxes, public_url=gateway.base, api_key=None,
                                   webhook_url="http://127.0.0.1:9/hooks")  # fmt: skip
        finally:
            await rt.aclose()

    done = asyncio.run(setup())
    headers = {"Authorization": f"Bearer {done.api_key}"}
    with httpx.Client(base_url=gateway.base, headers=headers, timeout=10) as http:
        yield Shop(gateway, done, http)
    get_settings.cache_clear()


def cli(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def refused(*args: str, code: str) -> None:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 1, result.output
    assert code in result.output, result.output


def no() -> str:
    return uuid.uuid4().hex[:20]


def _sandbox_order(shop: Shop, channel: str, subject: str) -> str:
    core = shop.gateway.sandboxes[channel].core
    for _ in range(200):
        for order in list(core.orders.values()):
            if order.subject == subject:
                return str(order.out_trade_no)
        time.sleep(0.01)
    raise AssertionError(f"no sandbox order {subject!r}")


def wait_for(shop: Shop, path: str, status: str) -> dict[str, Any]:
    for _ in range(300):
        body = shop.http.get(path).json()
        if body["status"] == status:
            return dict(body)
        time.sleep(0.02)
    raise AssertionError(f"{path} stayed {body['status']}, wanted {status}")


def pay(shop: Shop, payment: dict[str, Any]) -> dict[str, Any]:
    """The customer pays the payment on the channel's sandbox."""
    channel = "wechatpay" if payment["method"].startswith("wechat") else "alipay"
    out_trade_no = _sandbox_order(shop, channel, payment["subject"])
    r = shop.http.post(f"/sandbox/{channel}/_sandbox/orders/{out_trade_no}/pay",
                       json={"result": "pay"})  # fmt: skip
    assert r.status_code == 200, r.text
    return wait_for(shop, f"/v1/payments/{payment['id']}", "succeeded")


def paid(shop: Shop, amount: int, method: str = "wechat_native", **extra: Any) -> dict[str, Any]:
    body = {"amount": amount, "method": method, "out_trade_no": no(), "subject": f"cli {no()}",
            **extra}  # fmt: skip
    r = shop.http.post("/v1/payments", json=body)
    assert r.status_code == 201, r.text
    return pay(shop, r.json())


def topped_up(shop: Shop, wallet_id: str, amount: int) -> None:
    r = shop.http.post(f"/v1/wallets/{wallet_id}/top_ups",
                       json={"amount": amount, "method": "wechat_native", "out_trade_no": no(),
                             "subject": f"top-up {no()}"})  # fmt: skip
    assert r.status_code == 201, r.text
    pay(shop, r.json())


def wait_refund(refund_id: str) -> None:
    for _ in range(300):
        if cli("refund", "show", refund_id)["status"] == "succeeded":
            return
        time.sleep(0.02)
    raise AssertionError(f"refund {refund_id} did not succeed")


def balances(wallet_id: str) -> dict[str, int]:
    return dict(cli("wallet", "show", wallet_id)["balances"])


def merchant_balance(shop: Shop) -> dict[str, Any]:
    return dict(cli("ledger", "balances", shop.merchant))


# ------------------------------------------------------------------ refunds
def test_refund_a_paid_payment(shop: Shop) -> None:
    payment = paid(shop, 1_000)
    refund = cli("refund", "create", payment["id"], "--amount", "300", "--reason", "尺码不合适",
                 "--out-refund-no", "cli-r-1")  # fmt: skip
    assert (refund["payment"], refund["amount"], refund["out_refund_no"], refund["reason"]) == (
        payment["id"], 300, "cli-r-1", "尺码不合适")  # fmt: skip
    wait_refund(refund["id"])  # WeChat answers "processing" and notifies the result
    # the same request number again is the same refund, not a second one
    again = cli("refund", "create", payment["id"], "--amount", "300", "--out-refund-no", "cli-r-1")
    assert again["id"] == refund["id"]
    assert merchant_balance(shop)["pending"] == 700

    refused("refund", "create", payment["id"], "--amount", "701", code="refund_exceeds_payment")
    refused("refund", "create", payment["id"], "--amount", "-5", code="parameter_invalid")
    refused("refund", "create", "pay_missing", "--amount", "5", code="resource_missing")
    refused("refund", "create", payment["id"], "--amount", "5", "--out-refund-no", "cli-r-1",
            code="duplicate_out_refund_no")  # fmt: skip
    listed = cli("refund", "list", payment["id"])
    assert [r["id"] for r in listed["data"]] == [refund["id"]] and listed["has_more"] is False
    assert merchant_balance(shop)["pending"] == 700 and merchant_balance(shop)["held"] == 0

    rest = cli("refund", "create", payment["id"])  # default: everything still refundable
    assert rest["amount"] == 700
    wait_refund(rest["id"])
    newest = cli("refund", "list", payment["id"], "--status", "succeeded", "--limit", "1")
    assert [r["id"] for r in newest["data"]] == [rest["id"]] and newest["has_more"] is True
    assert merchant_balance(shop)["pending"] == 0


# ------------------------------------------------------------------ wallets and the ledger
def test_wallets_transfers_freezes_points_and_statement(shop: Shop) -> None:
    alice = cli("wallet", "create", shop.app, "--reference", f"alice-{no()}")
    bob = cli("wallet", "create", shop.app, "--reference", f"bob-{no()}", "--level", "1")
    assert alice["balances"] == {"available": 0, "held": 0, "frozen": 0, "pending": 0,
                                 "points": 0}  # fmt: skip
    assert bob["verification_level"] == 1
    refused("wallet", "create", shop.app, "--reference", alice["reference"], code="wallet_exists")
    refused("wallet", "create", "app_missing", "--reference", "x", code="resource_missing")
    refused("wallet", "create", shop.app, "--reference", "bad ref", code="parameter_invalid")
    listed = cli("wallet", "list", shop.app)
    # newest first; the demo customer's wallet (provisioned with the shop) is the oldest
    assert [w["id"] for w in listed["data"]] == [bob["id"], alice["id"], shop.setup.wallet_id]
    assert cli("wallet", "list", shop.app, "--reference", bob["reference"])["data"][0]["id"] == \
        bob["id"]  # fmt: skip

    topped_up(shop, alice["id"], 5_000)
    assert balances(alice["id"])["available"] == 5_000
    transfer = cli("wallet", "transfer", alice["id"], bob["id"], "--amount", "1200",
                   "--out-transfer-no", "t-1", "--description", "午饭")  # fmt: skip
    assert (transfer["amount"], transfer["source"], transfer["destination"]) == (
        1_200, alice["id"], bob["id"])  # fmt: skip
    again = cli("wallet", "transfer", alice["id"], bob["id"], "--amount", "1200",
                "--out-transfer-no", "t-1", "--description", "午饭")  # fmt: skip
    assert again["id"] == transfer["id"]
    assert (balances(alice["id"])["available"], balances(bob["id"])["available"]) == (3_800, 1_200)

    refused("wallet", "transfer", alice["id"], bob["id"], "--amount", "3801",
            code="insufficient_funds")  # fmt: skip
    refused("wallet", "transfer", alice["id"], alice["id"], "--amount", "1", code="same_wallet")
    refused("wallet", "transfer", alice["id"], "wal_missing", "--amount", "1",
            code="resource_missing")  # fmt: skip
    refused("wallet", "transfer", alice["id"], bob["id"], "--amount", "0",
            code="parameter_invalid")  # fmt: skip
    assert (balances(alice["id"])["available"], balances(bob["id"])["available"]) == (3_800, 1_200)

    frozen = cli("wallet", "freeze", alice["id"], "--amount", "800", "--reason", "争议")
    assert (frozen["balances"]["available"], frozen["balances"]["frozen"]) == (3_000, 800)
    refused("wallet", "unfreeze", alice["id"], "--amount", "801", code="insufficient_funds")
    assert cli("wallet", "unfreeze", alice["id"], "--amount", "300")["balances"]["frozen"] == 500
    assert cli("wallet", "points", alice["id"], "grant", "50")["balances"]["points"] == 50
    refused("wallet", "points", alice["id"], "redeem", "51", code="insufficient_funds")
    refused("wallet", "points", alice["id"], "steal", "5", code="parameter_invalid")
    assert cli("wallet", "points", alice["id"], "redeem", "20")["balances"]["points"] == 30
    assert cli("wallet", "level", alice["id"], "2")["verification_level"] == 2
    refused("wallet", "level", alice["id"], "3", code="parameter_invalid")
    refused("wallet", "show", "wal_missing", code="resource_missing")

    # the statement, newest first, page by page with the cursor
    first = cli("wallet", "statement", alice["id"], "--limit", "3")
    assert first["has_more"] is True and len(first["data"]) == 3
    rest = cli("wallet", "statement", alice["id"], "--limit", "100",
               "--starting-after", first["data"][-1]["id"])  # fmt: skip
    lines = first["data"] + rest["data"]
    assert rest["has_more"] is False
    assert [x["id"] for x in lines] == sorted((x["id"] for x in lines), reverse=True)
    by_transaction: list[tuple[str, set[tuple[str, str, int]]]] = []
    for x in lines:  # the legs of one transaction share its moment, in no set order
        if not by_transaction or by_transaction[-1][0] != x["transaction"]:
            by_transaction.append((x["transaction"], set()))
        by_transaction[-1][1].add((x["account"], x["direction"], x["amount"]))
    assert [legs for _, legs in by_transaction] == [
        {("points", "out", 20)}, {("points", "in", 50)},
        {("available", "in", 300), ("frozen", "out", 300)},
        {("frozen", "in", 800), ("available", "out", 800)},
        {("available", "out", 1_200)}, {("available", "in", 5_000)},
    ]  # fmt: skip
    assert by_transaction[4][0] == transfer["id"]


def test_ledger_accounts_past_balance_statement_and_trial_balance(shop: Shop) -> None:
    wallet = cli("wallet", "create", shop.app, "--reference", f"carol-{no()}")
    other = cli("wallet", "create", shop.app, "--reference", f"dave-{no()}")
    topped_up(shop, wallet["id"], 2_000)
    before_transfer = dt.datetime.now(dt.UTC).isoformat()
    cli("wallet", "transfer", wallet["id"], other["id"], "--amount", "700")

    accounts = {a["purpose"]: a for a in cli("ledger", "accounts", wallet["id"])}
    assert set(accounts) == {"available", "frozen", "pending", "points"}
    available = accounts["available"]
    assert (available["balance"], available["currency"]) == (1_300, "CNY")
    now = cli("ledger", "account", available["id"])
    assert (now["balance"], now["normal"], now["balance_as_of"]) == (1_300, "credit", None)
    past = cli("ledger", "account", available["id"], "--as-of", before_transfer)
    assert (past["balance"], past["balance_as_of"]) == (1_300, 2_000)
    naive = before_transfer.removesuffix("+00:00")  # no zone: UTC
    assert cli("ledger", "account", available["id"], "--as-of", naive)["balance_as_of"] == 2_000

    page = cli("ledger", "statement", available["id"], "--limit", "1")
    assert [(e["side"], e["amount"]) for e in page["data"]] == [("debit", 700)]
    assert page["has_more"] is True
    older = cli("ledger", "statement", available["id"], "--starting-after", page["data"][0]["id"])
    assert [(e["side"], e["amount"]) for e in older["data"]] == [("credit", 2_000)]
    assert older["has_more"] is False

    clearing = cli("ledger", "accounts", shop.setup.channel_accounts["wechatpay"])
    assert [(a["purpose"], a["balance"]) for a in clearing] == [("clearing", 2_000 - 12)]
    assert any(a["purpose"] == "channel_cost" for a in cli("ledger", "accounts", "platform"))

    books = cli("ledger", "trial-balance")
    assert books["object"] == "trial_balance" and books["currencies"]["CNY"]["balanced"] is True
    assert set(cli("ledger", "trial-balance", "--currency", "PTS")["currencies"]) <= {"PTS"}

    refused("ledger", "account", "la_missing", code="resource_missing")
    refused("ledger", "account", available["id"], "--as-of", "yesterday",
            code="parameter_invalid")  # fmt: skip
    refused("ledger", "statement", "la_missing", code="resource_missing")
    refused("ledger", "accounts", "usr_1", code="parameter_invalid")
    refused("ledger", "balances", "mch_missing", code="resource_missing")


# ------------------------------------------------------------------ splits and escrow
def test_manual_split_of_an_escrow_payment(shop: Shop) -> None:
    seller = cli("wallet", "create", shop.app, "--reference", f"seller-{no()}")
    payment = paid(shop, 10_000, method="alipay_qr", escrow={"auto_confirm_in": 86_400})
    assert merchant_balance(shop)["escrow"] == 10_000

    refused("split", "create", payment["id"], "--receiver", f"{seller['id']}=abc",
            code="parameter_invalid")  # fmt: skip
    refused("split", "create", payment["id"], "--receiver", f"{seller['id']}=10.001%",
            code="parameter_invalid")  # fmt: skip
    refused("split", "create", payment["id"], "--receiver", f"{seller['id']}=90%",
            "--commission-bps", "2000", code="parameter_invalid")  # fmt: skip
    refused("split", "create", payment["id"], "--receiver", "wal_missing=5%",
            code="resource_missing")  # fmt: skip
    split = cli("split", "create", payment["id"], "--receiver", f"{seller['id']}=12.5%",
                "--receiver", f"{seller['id']}=300", "--commission-bps", "500",
                "--trigger", "manual")  # fmt: skip
    assert (split["status"], split["trigger"], split["via"]) == ("scheduled", "manual", "ledger")
    assert [(r["percent_bps"], r["fixed_amount"]) for r in split["receivers"]] == [
        (1_250, 0), (0, 300)]  # fmt: skip

    refused("split", "execute", split["id"], code="escrow_held")
    assert cli("split", "show", split["id"])["status"] == "scheduled"
    assert balances(seller["id"])["available"] == 0

    funds = cli("escrow", "release", payment["id"])
    assert (funds["escrow"], funds["escrow_released_by"]) == ("released", "platform")
    assert merchant_balance(shop)["pending"] == 10_000
    refused("escrow", "release", payment["id"], code="escrow_not_held")
    refused("escrow", "release", "pay_missing", code="resource_missing")
    refused("escrow", "release", payment["id"], "--by", "auto", code="parameter_invalid")

    done = cli("split", "execute", split["id"])
    # fixed first (300), then 12.5% of the base (1,250) and 5% commission (500)
    assert (done["status"], done["base_amount"], done["commission"], done["total"]) == (
        "succeeded", 10_000, 500, 2_050)  # fmt: skip
    assert balances(seller["id"])["available"] == 1_550
    assert merchant_balance(shop)["pending"] == 10_000 - 2_050
    refused("split", "execute", split["id"], code="split_not_scheduled")
    assert [s["id"] for s in cli("split", "list", payment["id"])["data"]] == [split["id"]]
    refused("split", "show", "spl_missing", code="resource_missing")


def test_split_from_a_spec_file(shop: Shop, tmp_path: Path) -> None:
    member = cli("wallet", "create", shop.app, "--reference", f"member-{no()}")
    payment = paid(shop, 5_000)
    spec = tmp_path / "split.json"
    spec.write_text(json.dumps({"receivers": [{"wallet": member["id"], "amount": 200,
                                               "description": "推荐奖励"}]}))  # fmt: skip
    split = cli("split", "create", payment["id"], "--spec", str(spec))
    assert (split["status"], split["total"]) == ("succeeded", 200)  # realtime: runs at once
    assert balances(member["id"])["available"] == 200
    spec.write_text("[1, 2]")
    refused("split", "create", payment["id"], "--spec", str(spec), code="parameter_invalid")
    spec.write_text("{nope")
    refused("split", "create", payment["id"], "--spec", str(spec), code="cannot read")
    assert len(cli("split", "list", payment["id"])["data"]) == 1


# ------------------------------------------------------------------ settlement
def test_settlement_terms_run_and_report(shop: Shop, tmp_path: Path) -> None:
    terms = cli("settlement", "config", shop.merchant)
    assert (terms["cycle"], terms["fee_bps"], terms["fee_max"]) == ("T1", 0, None)
    terms = cli("settlement", "config", shop.merchant, "--cycle", "T0", "--fee-bps", "60",
                "--fee-min", "10")  # fmt: skip
    assert (terms["cycle"], terms["fee_bps"], terms["fee_min"]) == ("T0", 60, 10)
    refused("settlement", "config", shop.merchant, "--fee-max", "5", code="parameter_invalid")
    refused("settlement", "config", shop.merchant, "--cycle", "T9", code="parameter_invalid")
    refused("settlement", "config", "mch_missing", code="resource_missing")
    assert cli("settlement", "config", shop.merchant) == terms

    big, small = paid(shop, 10_000), paid(shop, 1_000)
    wait_refund(cli("refund", "create", small["id"], "--amount", "400")["id"])
    batches = [b for b in cli("settlement", "run") if b["merchant"] == shop.merchant]
    assert len(batches) == 1
    batch = batches[0]
    # fees: 0.6% of 10,000 = 60; 0.6% of 600 = 4 → the minimum 10
    assert (batch["payment_count"], batch["gross"], batch["refunded"], batch["fees"],
            batch["net"]) == (2, 11_000, 400, 70, 10_530)  # fmt: skip
    assert merchant_balance(shop) | {"object": None} == {
        "object": None, "merchant": shop.merchant, "livemode": False, "currency": "CNY",
        "escrow": 0, "pending": 0, "available": 10_530, "held": 0, "risk_hold": 0}  # fmt: skip
    assert not [b for b in cli("settlement", "run") if b["merchant"] == shop.merchant]
    assert [b["id"] for b in cli("settlement", "list", shop.merchant)["data"]] == [batch["id"]]
    assert cli("settlement", "show", batch["id"]) == batch

    report = tmp_path / "report.csv"
    result = runner.invoke(app, ["settlement", "report", batch["id"], "-o", str(report)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(report.read_text(encoding="utf-8"))))
    by_payment = {r["payment_id"]: r for r in rows}
    assert set(by_payment) == {big["id"], small["id"], "total"}
    assert [by_payment[big["id"]][k] for k in ("gross", "refunded", "fee", "net")] == [
        "10000", "0", "60", "9940"]  # fmt: skip
    assert [by_payment[small["id"]][k] for k in ("gross", "refunded", "fee", "net")] == [
        "1000", "400", "10", "590"]  # fmt: skip
    assert by_payment[big["id"]]["out_trade_no"] == big["out_trade_no"]
    assert [by_payment["total"][k] for k in ("gross", "refunded", "fee", "net")] == [
        "11000", "400", "70", "10530"]  # fmt: skip
    stdout = runner.invoke(app, ["settlement", "report", batch["id"]])
    assert stdout.exit_code == 0 and stdout.output == report.read_text(encoding="utf-8")
    refused("settlement", "report", "stl_missing", code="resource_missing")
    refused("settlement", "report", batch["id"], "-o", str(tmp_path / "no" / "such" / "dir.csv"),
            code="cannot write")  # fmt: skip

    # after settlement a refund comes out of the available balance
    cli("refund", "create", big["id"], "--amount", "1000")
    assert merchant_balance(shop)["available"] == 9_530


# ------------------------------------------------------------------ payouts
def test_payouts_express_standard_and_refusals(shop: Shop, clock: Any, tmp_path: Path) -> None:
    wallet = cli("wallet", "create", shop.app, "--reference", f"rider-{no()}")
    topped_up(shop, wallet["id"], 20_000)
    openid = "o" + uuid.uuid4().hex[:27]
    to = ("--to", openid, "--to-type", "wechat_openid", "--source", wallet["id"])

    # WeChat refuses the transfer (its operating account is short): the hold is released
    shop.gateway.sandboxes["wechatpay"].add_transfer_script(
        RefundScript(outcome=RefundOutcome.refuse))  # fmt: skip
    failed = cli("payout", "create", shop.app, *to, "--amount", "1000", "--speed", "express")
    assert (failed["status"], failed["failure_code"]) == ("failed", "insufficient_balance")
    assert balances(wallet["id"]) | {"points": 0} == {
        "available": 20_000, "held": 0, "frozen": 0, "pending": 0, "points": 0}  # fmt: skip

    express = cli("payout", "create", shop.app, *to, "--amount", "5000", "--speed", "express",
                  "--out-payout-no", "po-1")  # fmt: skip
    assert (express["amount"], express["fee"], express["channel"]) == (5_000, 100, "wechatpay")
    assert express["status"] in ("processing", "succeeded"), express
    again = cli("payout", "create", shop.app, *to, "--amount", "5000", "--speed", "express",
                "--out-payout-no", "po-1")  # fmt: skip
    assert again["id"] == express["id"]
    standard = cli("payout", "create", shop.app, *to, "--amount", "3000")
    assert (standard["status"], standard["fee"]) == ("pending", 0)
    assert standard["scheduled_for"] is not None
    assert balances(wallet["id"])["available"] == 20_000 - 5_100 - 3_000

    before = cli("payout", "list", shop.app)["data"]
    refused("payout", "create", shop.app, *to, "--amount", "11901", code="insufficient_funds")
    refused(
        "payout", "create", shop.app, *to, "--amount", "60000", code="risk_declined"
    )  # over level 1's 500 a payout: the platform's rules
    refused("payout", "create", shop.app, "--to", "6222", "--to-type", "bank_card",
            "--amount", "100", code="unsupported_destination")  # fmt: skip
    refused("payout", "create", shop.app, "--to", openid, "--to-type", "paypal_email",
            "--amount", "100", code="parameter_invalid")  # fmt: skip
    refused("payout", "create", shop.app, *to, "--amount", "50", code="amount_too_small")
    refused("payout", "create", "app_missing", *to, "--amount", "100", code="resource_missing")
    refused(
        "payout",
        "create",
        shop.app,
        "--to",
        openid,
        "--to-type",
        "wechat_openid",
        "--amount",
        "100",
        code="insufficient_funds",
    )  # the merchant has nothing settled
    assert cli("payout", "list", shop.app)["data"] == before
    assert balances(wallet["id"])["available"] == 11_900

    cli("payout", "run")  # the standard batch is tomorrow at 10:00
    assert cli("payout", "show", standard["id"])["status"] == "pending"
    clock.advance(2 * 86_400)
    cli("payout", "run")
    for payout in (express, standard):
        done = cli("payout", "show", payout["id"])
        assert done["status"] == "succeeded", done
        assert done["channel_transfer_no"]
    assert balances(wallet["id"]) | {"points": 0} == {
        "available": 11_900, "held": 0, "frozen": 0, "pending": 0, "points": 0}  # fmt: skip
    refused("payout", "show", "po_missing", code="resource_missing")
    books = cli("ledger", "trial-balance", "--currency", "CNY")
    assert books["currencies"]["CNY"]["balanced"] is True

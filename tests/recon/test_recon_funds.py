"""The settlement leg of reconciliation: a channel account's funds bill (资金账单) of a day
against our payouts and settlements, through the WeChat Pay sandbox, on SQLite and PostgreSQL.

The sandbox's fund flow lists the day's trade money, its transfers (our payouts) and, at
23:59:59, the settlement of the balance to the merchant's bank (docs/reconciliation.md). A
funds run matches every transfer to our payout by its id, books each new settlement once (the
clearing account to the platform's ``settlement_in_transit``) and finds the breaks of both.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from paymux.channels.sandbox_kit import NotifyMode, RefundOutcome, RefundScript
from paymux.channels.wechatpay import protocol as wx
from paymux.ledger.chart import Purpose
from paymux.ledger.models import LedgerTransaction
from tests.conftest import Stack, Tenant
from tests.money.test_money import account_balance, books_balance
from tests.money.test_payouts import eventually, funded_wallet, payout_tenant, request_payout
from tests.payments.test_payments import events_of
from tests.recon.helpers import OPERATOR, operator, paid, today, tweak

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
TO_WECHAT = {"type": "wechat_openid", "account": OPENID}


async def funds_run(stack: Stack, tenant: Tenant, day: dt.date, actor: str = "alice") -> Any:
    body = {"channel_account_id": tenant.accounts["wechatpay"],
            "bill_date": day.isoformat(), "bill": "funds"}  # fmt: skip
    r = await stack.client.post("/v1/operator/recon/runs", headers=operator(actor), json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def funds_breaks(stack: Stack, tenant: Tenant, **query: Any) -> dict[str, dict[str, Any]]:
    params = {"channel_account_id": tenant.accounts["wechatpay"], "limit": 100, **query}
    r = await stack.client.get("/v1/operator/recon/breaks", headers=OPERATOR, params=params)
    assert r.status_code == 200, r.text
    return {b["kind"] + ":" + b["key"]: b for b in r.json()["data"]
            if b["kind"] in ("payout", "settlement", "duplicate_payout",
                             "duplicate_settlement")}  # fmt: skip


async def settlement_postings(stack: Stack, tenant: Tenant) -> list[LedgerTransaction]:
    import sqlalchemy as sa

    key = f"channel_settlement:{tenant.accounts['wechatpay']}:%"
    async with stack.runtime.db.read() as session:
        stmt = sa.select(LedgerTransaction).where(LedgerTransaction.key.like(key))
        return list(await session.scalars(stmt))


async def payout_day(stack: Stack) -> tuple[Tenant, list[dict[str, Any]]]:
    """A tenant whose WeChat account took a payment and paid two payouts today."""
    tenant = await payout_tenant(stack)
    source = await funded_wallet(stack, tenant, 40_000)
    await paid(stack, tenant, amount=30_000)
    sandbox = stack.sandboxes["wechatpay"]
    out = []
    for amount in (5_000, 7_000):
        sandbox.add_transfer_script(RefundScript())
        r = await request_payout(stack, tenant, source, amount, TO_WECHAT)
        assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text
        out.append(r.json())
    return tenant, out


async def test_funds_run_matches_payouts_and_books_the_settlement_once(
    stack: Stack, clock: Any
) -> None:
    day = today()
    tenant, payouts = await payout_day(stack)
    clock.advance(86_400)  # the bills of the day are published the next morning
    account = tenant.accounts["wechatpay"]
    clearing = await account_balance(stack, channel_account_id=account)
    assert clearing == 30_000 - 180 - 12_000  # the payment's net, less what the payouts took
    transit = await account_balance(stack, platform=Purpose.settlement_in_transit)

    first = await funds_run(stack, tenant, day)
    assert (first["bill"], first["verdict"]) == ("funds", "reconciled"), first["reasons"]
    (settled,) = first["totals"]["settlements"]
    assert settled["amount"] == clearing  # the whole balance went to the bank
    cny = first["totals"]["currencies"]["CNY"]
    assert cny["matched"]["count"] == 3  # two transfers and the settlement
    assert cny["residual"] == 0
    counted = {c["kind"]: c for c in first["totals"]["counted"]}
    assert counted["payment"]["net"] == 30_000 - 180  # trade money: the trade bill's business
    assert {c["name"]: c["ok"] for c in first["checks"]}.get("balance_chain") is True
    assert await account_balance(stack, channel_account_id=account) == 0
    assert await account_balance(stack, platform=Purpose.settlement_in_transit) - transit == (
        clearing
    )

    # A re-run (a new run number) finds the settlement booked already: matched, not again.
    again = await funds_run(stack, tenant, day)
    assert (again["run_no"], again["verdict"]) == (2, "reconciled"), again["reasons"]
    assert "settlements" not in again["totals"]
    assert len(await settlement_postings(stack, tenant)) == 1
    assert await account_balance(stack, channel_account_id=account) == 0
    assert not await funds_breaks(stack, tenant)

    # The trade bill of the same day is a run of its own (its own numbers) and stays green.
    body = {"channel_account_id": account, "bill_date": day.isoformat()}
    r = await stack.client.post("/v1/operator/recon/runs", headers=operator(), json=body)
    assert r.status_code == 201 and r.json()["run_no"] == 1, r.text
    assert r.json()["bill"] == "trade" and r.json()["verdict"] == "reconciled", r.json()
    assert payouts[0]["id"] not in str(r.json()["totals"])
    await books_balance(stack)


async def test_funds_breaks_of_every_kind_keep_their_ids(stack: Stack, clock: Any) -> None:
    day = today()
    tenant, payouts = await payout_day(stack)
    await stack.client.put(f"/v1/operator/recon/configs/{tenant.accounts['wechatpay']}",
                           headers=operator(), json={"grace_days": 0})  # fmt: skip
    first, second = payouts
    await tweak(stack, day, "extra_payout", bill="funds", amount=999)
    await tweak(stack, day, "drop", bill="funds", out_trade_no=first["id"])
    await tweak(stack, day, "amount", bill="funds", out_trade_no=second["id"], amount=7_100)
    await tweak(stack, day, "duplicate", bill="funds", out_trade_no=second["id"])
    clock.advance(86_400)
    run = await funds_run(stack, tenant, day)
    assert run["verdict"] == "breaks", run["reasons"]
    found = await funds_breaks(stack, tenant)
    classes = {key.split(":")[0] + ":" + b["class"] for key, b in found.items()}
    assert classes == {"payout:channel_only", "payout:local_only", "payout:amount_over",
                       "duplicate_payout:duplicate"}  # fmt: skip
    local_only = found[f"payout:{first['id']}"]
    assert (local_only["class"], local_only["priority"]) == ("local_only", 1)
    assert local_only["local_amount"] == -5_000 and local_only["channel_amount"] == 0
    over = found[f"payout:{second['id']}"]
    assert (over["channel_amount"], over["local_amount"]) == (-7_100, -7_000)
    portal = next(b for b in found.values() if b["class"] == "channel_only")
    assert portal["priority"] == 1 and portal["channel_amount"] == -999
    # Every difference is explained by a break: the bridge has no residual.
    assert run["totals"]["currencies"]["CNY"]["residual"] == 0

    # A re-run finds the same breaks under the same ids; a fixed bill resolves them.
    again = await funds_run(stack, tenant, day)
    assert set(await funds_breaks(stack, tenant, state="open")) == set(found)
    assert again["verdict"] == "breaks"
    for sandbox in stack.sandboxes.values():
        sandbox.core.bill_tweaks.clear()
    fixed = await funds_run(stack, tenant, day)
    # Every payout matches now. The settlement, booked from the first file, is listed again
    # with the untweaked balance: the channel changed its own statement, a break of its own.
    (left,) = (await funds_breaks(stack, tenant, state="open")).values()
    assert (left["kind"], left["class"]) == ("settlement", "amount_over")
    assert fixed["verdict"] == "breaks" and not fixed["reasons"]
    assert len(await settlement_postings(stack, tenant)) == 1


async def test_a_settlement_booked_once_and_listed_again_with_another_amount(
    stack: Stack, clock: Any
) -> None:
    day = today()
    tenant, _ = await payout_day(stack)
    clock.advance(86_400)
    first = await funds_run(stack, tenant, day)
    (settled,) = first["totals"]["settlements"]
    # The channel's file of the same day now says the settlement paid 1 yuan less.
    await tweak(stack, day, "settlement_amount", bill="funds",
                amount=settled["amount"] - 100)  # fmt: skip
    again = await funds_run(stack, tenant, day)
    assert again["verdict"] == "breaks", again["reasons"]
    (b,) = (await funds_breaks(stack, tenant)).values()
    assert (b["kind"], b["class"], b["key"]) == ("settlement", "amount_under",
                                                  settled["channel_ref"])  # fmt: skip
    assert b["channel_amount"] - b["local_amount"] == 100
    assert len(await settlement_postings(stack, tenant)) == 1  # never booked twice


async def test_a_corrupt_funds_bill_is_incomplete_and_books_nothing(
    stack: Stack, clock: Any
) -> None:
    day = today()
    tenant, _ = await payout_day(stack)
    await tweak(stack, day, "corrupt_summary", bill="funds", amount=1)
    clock.advance(86_400)
    run = await funds_run(stack, tenant, day)
    assert run["verdict"] == "incomplete" and run["reasons"], run
    assert not await settlement_postings(stack, tenant)
    assert await account_balance(stack, channel_account_id=tenant.accounts["wechatpay"]) != 0


async def test_a_transfer_the_channel_paid_without_telling_us_is_repaired_by_a_query(
    stack: Stack, clock: Any
) -> None:
    day = today()
    tenant = await payout_tenant(stack)
    source = await funded_wallet(stack, tenant, 20_000)
    sandbox = stack.sandboxes["wechatpay"]
    # The payee confirms in WeChat, but the notification never comes: processing here.
    sandbox.add_transfer_script(RefundScript(outcome=RefundOutcome.delayed, delay=1e9,
                                             notify=NotifyMode.none))  # fmt: skip
    payout = (await request_payout(stack, tenant, source, 6_000, TO_WECHAT)).json()
    assert payout["status"] == "processing"
    r = await stack.client.post(
        f"/sandbox/wechatpay/_sandbox/transfers/{wx.transfer_bill_no(payout['id'])}/confirm",
        json={"result": "confirm"},
    )
    assert r.json()["state"] == "SUCCESS"
    clock.advance(86_400)
    run = await funds_run(stack, tenant, day)
    assert run["verdict"] == "reconciled", run["reasons"]
    done = await eventually(stack, tenant, payout["id"], "succeeded")
    assert done["succeeded_at"] is not None
    (b,) = (await funds_breaks(stack, tenant, state="resolved")).values()
    assert (b["class"], b["state"], b["resolution"]) == (
        "status_channel_success", "resolved", "auto_repaired")  # fmt: skip
    kinds = [e.type for e in await events_of(stack, tenant) if e.type.startswith("payout.")]
    assert kinds.count("payout.succeeded") == 1
    await books_balance(stack)


async def test_an_unknown_bill_kind_is_refused(stack: Stack) -> None:
    from tests.conftest import make_tenant

    tenant = await make_tenant(stack)
    body = {"channel_account_id": tenant.accounts["wechatpay"],
            "bill_date": today().isoformat(), "bill": "ledger"}  # fmt: skip
    r = await stack.client.post("/v1/operator/recon/runs", headers=operator(), json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == "bill", r.text


async def test_the_balance_check_finds_money_no_record_explains(stack: Stack, clock: Any) -> None:
    """Our clearing account moved without a record either bill names (here: money booked on it
    by hand): the channel's balance disagrees with the books, and nothing explains it."""
    from paymux.ledger import chart
    from paymux.ledger import service as ledger

    day = today()
    tenant, _ = await payout_day(stack)
    account = tenant.accounts["wechatpay"]
    async with stack.runtime.db.transaction() as session:
        clearing = await chart.clearing(session, account, "CNY")
        suspense = await chart.platform(session, False, Purpose.suspense, "CNY")
        legs = [ledger.debit(clearing, 250), ledger.credit(suspense, 250)]
        await ledger.transfer(session, key=f"test-stray:{account}", legs=legs)
    clock.advance(86_400)
    run = await funds_run(stack, tenant, day)
    assert run["verdict"] == "incomplete", run
    balance = run["totals"]["balance"]["CNY"]
    assert (balance["ok"], balance["residual"]) == (False, -250), balance
    assert any("unexplained" in reason for reason in run["reasons"])
    # What the account held before paymux is part of the books' side: said so, it agrees.
    r = await stack.client.put(f"/v1/operator/recon/configs/{account}", headers=operator(),
                               json={"opening_balances": {"CNY": -250}})  # fmt: skip
    assert r.status_code == 200, r.text
    again = await funds_run(stack, tenant, day)
    assert again["verdict"] == "reconciled", again["reasons"]
    r = await stack.client.put(f"/v1/operator/recon/configs/{account}", headers=operator(),
                               json={"opening_balances": {"cny": 1}})  # fmt: skip
    assert r.status_code == 400, r.text

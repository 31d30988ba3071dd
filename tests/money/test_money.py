"""Money end to end, through the API and the sandboxes, on SQLite and PostgreSQL: ledger
postings of payments, refunds (incl. after a split), escrow, splits, settlement, wallets and
the worked examples of docs/money.md."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import uuid
from typing import Any

from paymux.channels.sandbox_kit import RefundOutcome, RefundScript
from paymux.ledger import chart
from paymux.ledger.chart import Purpose
from paymux.ledger.repository import LedgerRepository
from tests.conftest import Stack, Tenant, attempt_ids, make_tenant, run_worker
from tests.payments.test_payments import create, events_of, pay, wait_for
from tests.refunds.test_refunds import refund, settled

OPERATOR = {"Authorization": "Bearer op_test_token_0123456789"}


def no() -> str:
    return "n" + uuid.uuid4().hex[:20]


async def paid(stack: Stack, tenant: Tenant, amount: int, *, method: str = "wechat_native",
               **extra: Any) -> dict[str, Any]:  # fmt: skip
    channel = "wechatpay" if method.startswith("wechat") else "alipay"
    r = await create(stack, tenant, method=method, amount=amount, **extra)
    assert r.status_code == 201, r.text
    (attempt,) = await attempt_ids(stack, r.json()["id"])
    await pay(stack, channel, attempt)
    return await wait_for(stack, tenant, r.json()["id"], "succeeded")


async def merchant_balance(stack: Stack, tenant: Tenant) -> dict[str, Any]:
    r = await stack.client.get("/v1/balance", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def wallet(stack: Stack, tenant: Tenant, **body: Any) -> dict[str, Any]:
    r = await stack.client.post("/v1/wallets", headers=tenant.headers,
                                json={"reference": no(), **body})  # fmt: skip
    assert r.status_code == 201, r.text
    return dict(r.json())


async def balances(stack: Stack, tenant: Tenant, wallet_id: str) -> dict[str, int]:
    r = await stack.client.get(f"/v1/wallets/{wallet_id}", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return dict(r.json()["balances"])


async def books_balance(stack: Stack) -> None:
    """Σ debits = Σ credits per currency over every posted entry of the whole ledger."""
    async with stack.runtime.db.read() as session:
        totals = await LedgerRepository(session).totals_by_currency()
    assert totals and all(d == c for d, c in totals.values()), totals


async def account_balance(stack: Stack, **kw: Any) -> int:
    async with stack.runtime.db.transaction() as session:
        if "channel_account_id" in kw:
            account = await chart.clearing(session, kw["channel_account_id"], "CNY")
        else:
            account = await chart.platform(
                session, False, kw["platform"], kw.get("currency", "CNY")
            )
        return account.balance


async def test_payment_posts_gross_to_pending_and_channel_fee_to_cost(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    before_cost = await account_balance(stack, platform=Purpose.channel_cost)
    payment = await paid(stack, tenant, 1000)
    assert (await merchant_balance(stack, tenant))["pending"] == 1000
    clearing = await account_balance(stack, channel_account_id=tenant.accounts["wechatpay"])
    assert clearing == 1000 - 6  # the channel keeps 0.6%
    assert await account_balance(stack, platform=Purpose.channel_cost) - before_cost == 6
    funds = (await stack.client.get(f"/v1/payments/{payment['id']}",
                                    headers=tenant.headers)).json()["funds"]  # fmt: skip
    assert funds["gross"] == 1000 and funds["remaining"] == 1000 and funds["escrow"] == "none"
    await books_balance(stack)


async def test_refund_holds_then_posts_or_voids(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    payment = await paid(stack, tenant, 1000)
    stack.sandboxes["wechatpay"].core.add_refund_script(RefundScript(outcome=RefundOutcome.fail))
    failing = (await refund(stack, tenant, payment["id"], 400)).json()
    assert (await merchant_balance(stack, tenant))["held"] == 400
    assert (await settled(stack, tenant, failing["id"]))["status"] == "failed"
    assert (await merchant_balance(stack, tenant)) | {"object": None} == {
        "object": None, "livemode": False, "currency": "CNY", "escrow": 0, "pending": 1000,
        "available": 0, "held": 0, "risk_hold": 0,
    }  # fmt: skip
    ok = (await refund(stack, tenant, payment["id"], 300)).json()
    assert (await settled(stack, tenant, ok["id"]))["status"] == "succeeded"
    assert (await merchant_balance(stack, tenant))["pending"] == 700
    # WeChat Pay gives back the refund's share of its fee: 2 of the 6 (300/1000, half up)
    assert await account_balance(stack, channel_account_id=tenant.accounts["wechatpay"]) == 696
    # the rest, and not a cent more
    too_much = await refund(stack, tenant, payment["id"], 701)
    assert too_much.status_code == 409 and too_much.json()["error"]["code"] == \
        "refund_exceeds_payment"  # fmt: skip
    await books_balance(stack)


async def test_consignment_sale_with_escrow_and_commission(stack: Stack) -> None:
    """docs/money.md, example 1: a consigned item sold for ¥1,000.00 in escrow; after the
    buyer confirms, 92% goes to the consignor's wallet and 8% is the platform's commission."""
    tenant = await make_tenant(stack)
    consignor = await wallet(stack, tenant)
    split = {"trigger": "on_release", "commission_bps": 800,
             "receivers": [{"wallet": consignor["id"], "percent_bps": 9200,
                            "description": "寄售货款"}]}  # fmt: skip
    payment = await paid(stack, tenant, 100_000, method="alipay_qr",
                         escrow={"auto_confirm_in": 86400}, split=split)  # fmt: skip
    assert (await merchant_balance(stack, tenant))["escrow"] == 100_000
    assert (await balances(stack, tenant, consignor["id"]))["available"] == 0
    r = await stack.client.post(f"/v1/payments/{payment['id']}/escrow/confirm",
                                headers=tenant.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["escrow"] == "released" and r.json()["escrow_released_by"] == "buyer"
    assert (await balances(stack, tenant, consignor["id"]))["available"] == 92_000
    bal = await merchant_balance(stack, tenant)
    assert (bal["escrow"], bal["pending"]) == (0, 0)
    again = await stack.client.post(f"/v1/payments/{payment['id']}/escrow/release",
                                    headers=tenant.headers)  # fmt: skip
    assert again.status_code == 409 and again.json()["error"]["code"] == "escrow_not_held"
    splits = (await stack.client.get(f"/v1/splits?payment={payment['id']}",
                                     headers=tenant.headers)).json()["data"]  # fmt: skip
    assert [(s["status"], s["commission"], s["total"]) for s in splits] == [
        ("succeeded", 8_000, 100_000)
    ]
    types = [e.type for e in await events_of(stack, tenant)]
    assert "escrow.released" in types and "split.succeeded" in types
    await books_balance(stack)


async def test_escrow_auto_confirms_and_refund_while_held_returns_money(
    stack: Stack, clock: Any
) -> None:
    tenant = await make_tenant(stack)
    held = await paid(stack, tenant, 5_000, escrow={"auto_confirm_in": 3600})
    refunded = await paid(stack, tenant, 3_000, escrow={"auto_confirm_in": 3600})
    r = (await refund(stack, tenant, refunded["id"])).json()
    assert (await settled(stack, tenant, r["id"]))["status"] == "succeeded"
    assert (await merchant_balance(stack, tenant))["escrow"] == 5_000
    clock.advance(3601)
    await run_worker(stack)
    funds = (await stack.client.get(f"/v1/payments/{held['id']}",
                                    headers=tenant.headers)).json()["funds"]  # fmt: skip
    assert funds["escrow"] == "released" and funds["escrow_released_by"] == "auto"
    gone = (await stack.client.get(f"/v1/payments/{refunded['id']}",
                                   headers=tenant.headers)).json()["funds"]  # fmt: skip
    assert gone["escrow"] == "refunded" and gone["remaining"] == 0
    assert (await merchant_balance(stack, tenant))["escrow"] == 0
    await books_balance(stack)


async def test_group_buying_split_is_exact_and_refund_reverses_it_proportionally(
    stack: Stack,
) -> None:
    """docs/money.md, example 2: ¥100.01 split across the platform (5%), the group leader
    (10%) and the member who recruited the buyer (a fixed ¥2.00); a half refund takes half of
    every share back."""
    tenant = await make_tenant(stack)
    leader, member = await wallet(stack, tenant), await wallet(stack, tenant)
    split = {"commission_bps": 500, "receivers": [
        {"wallet": leader["id"], "percent_bps": 1000, "description": "团长佣金"},
        {"wallet": member["id"], "amount": 200, "description": "推荐奖励"}]}  # fmt: skip
    payment = await paid(stack, tenant, 10_001, split=split)
    assert (await balances(stack, tenant, leader["id"]))["available"] == 1_000  # ⌊1000.1⌋
    assert (await balances(stack, tenant, member["id"]))["available"] == 200
    s = (await stack.client.get(f"/v1/splits?payment={payment['id']}",
                                headers=tenant.headers)).json()["data"][0]  # fmt: skip
    assert (s["commission"], s["total"]) == (500, 1_700)
    assert (await merchant_balance(stack, tenant))["pending"] == 10_001 - 1_700
    r = (await refund(stack, tenant, payment["id"], 5_000)).json()
    assert (await settled(stack, tenant, r["id"]))["status"] == "succeeded"
    # ⌊share × 5000 / 10001⌋: leader 499, member 99, commission 249; the merchant the rest
    assert (await balances(stack, tenant, leader["id"]))["available"] == 1_000 - 499
    assert (await balances(stack, tenant, member["id"]))["available"] == 200 - 99
    assert (await merchant_balance(stack, tenant))["pending"] == 8_301 - (5_000 - 499 - 99 - 249)
    rest = (await refund(stack, tenant, payment["id"])).json()
    assert rest["amount"] == 5_001
    assert (await settled(stack, tenant, rest["id"]))["status"] == "succeeded"
    for w in (leader, member):
        assert (await balances(stack, tenant, w["id"]))["available"] == 0
    assert (await merchant_balance(stack, tenant))["pending"] == 0
    await books_balance(stack)


async def test_settlement_batch_fee_report_and_webhook(stack: Stack, clock: Any) -> None:
    tenant = await make_tenant(stack)
    r = await stack.client.put(
        f"/v1/operator/merchants/{tenant.merchant_id}/settlement", headers=OPERATOR,
        json={"cycle": "T1", "fee_bps": 60, "fee_min": 10},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    a = await paid(stack, tenant, 10_000)
    b = await paid(stack, tenant, 1_000, method="alipay_qr")
    part = (await refund(stack, tenant, b["id"], 400)).json()
    assert (await settled(stack, tenant, part["id"]))["status"] == "succeeded"
    await run_worker(stack)
    assert (await stack.client.get("/v1/settlements", headers=tenant.headers)).json()["data"] == []
    clock.advance(86400 + 60)
    await run_worker(stack)
    (batch,) = (await stack.client.get("/v1/settlements", headers=tenant.headers)).json()["data"]
    assert (batch["payment_count"], batch["gross"], batch["refunded"]) == (2, 11_000, 400)
    assert batch["fees"] == 60 + 10  # 0.6% of 10,000; the ¥0.10 minimum on 600
    assert batch["net"] == 10_600 - 70
    bal = await merchant_balance(stack, tenant)
    assert (bal["pending"], bal["available"]) == (0, 10_530)
    report = (await stack.client.get(f"/v1/settlements/{batch['id']}/report.csv",
                                     headers=tenant.headers)).text  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(report)))
    assert {row["payment_id"] for row in rows[:-1]} == {a["id"], b["id"]}
    assert rows[-1]["payment_id"] == "total" and rows[-1]["net"] == "10530"
    assert [e.type for e in await events_of(stack, tenant, "settlement.paid")] == [
        "settlement.paid"
    ]
    # settled money is refunded from the available balance
    late = (await refund(stack, tenant, a["id"], 1_000)).json()
    assert (await settled(stack, tenant, late["id"]))["status"] == "succeeded"
    assert (await merchant_balance(stack, tenant))["available"] == 9_530
    await books_balance(stack)


async def test_settlement_terms_count_at_once_here_and_within_a_second_elsewhere(
    stack: Stack, monkeypatch: Any
) -> None:
    """A payment's settlement date comes from its merchant's terms, cached for a second per
    process: a change through the API counts for the next payment at once; one made by
    another process (here: the database directly) within that second."""
    import sqlalchemy as sa

    from paymux.funds.models import PaymentFunds
    from paymux.kit import cache
    from paymux.kit.clock import aware
    from paymux.settlement.models import SettlementConfig
    from paymux.settlement.policy import TIMEZONE

    now = [1000.0]
    monkeypatch.setattr(cache, "monotonic", lambda: now[0])
    tenant = await make_tenant(stack)

    async def settles_next_day(payment: dict[str, Any]) -> bool:
        """T1: due at a midnight, China time; T0: due the moment the money arrived."""
        async with stack.runtime.db.read() as session:
            funds = await session.get(PaymentFunds, payment["id"])
        assert funds is not None and funds.settle_due_at is not None
        local = aware(funds.settle_due_at).astimezone(TIMEZONE)
        return local.time() == dt.time(0, 0)

    assert await settles_next_day(await paid(stack, tenant, 100))  # the default, T1
    r = await stack.client.put(f"/v1/operator/merchants/{tenant.merchant_id}/settlement",
                               headers=OPERATOR, json={"cycle": "T0"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert not await settles_next_day(await paid(stack, tenant, 100))  # at once: T0
    async with stack.runtime.db.transaction() as session:
        await session.execute(sa.update(SettlementConfig).where(
            SettlementConfig.merchant_id == tenant.merchant_id).values(cycle="T1"))  # fmt: skip
    now[0] += 0.5
    assert not await settles_next_day(await paid(stack, tenant, 100))  # still cached
    now[0] += 0.6
    assert await settles_next_day(await paid(stack, tenant, 100))  # past it: T1


async def test_wallet_top_up_transfer_pay_refund_and_statement(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    a, b = await wallet(stack, tenant), await wallet(stack, tenant)
    r = await stack.client.post(f"/v1/wallets/{a['id']}/top_ups", headers=tenant.headers,
                                json={"amount": 5_000, "method": "alipay_qr",
                                      "out_trade_no": no()})  # fmt: skip
    assert r.status_code == 201, r.text
    (attempt,) = await attempt_ids(stack, r.json()["id"])
    await pay(stack, "alipay", attempt)
    await wait_for(stack, tenant, r.json()["id"], "succeeded")
    assert (await balances(stack, tenant, a["id"]))["available"] == 5_000
    assert (await merchant_balance(stack, tenant))["pending"] == 0  # the wallet's, not ours
    body = {"source": a["id"], "destination": b["id"], "amount": 2_000, "out_transfer_no": no()}
    first = await stack.client.post("/v1/wallet_transfers", headers=tenant.headers, json=body)
    repeat = await stack.client.post("/v1/wallet_transfers", headers=tenant.headers, json=body)
    assert first.status_code == repeat.status_code == 201
    assert first.json()["id"] == repeat.json()["id"]
    assert (await balances(stack, tenant, b["id"]))["available"] == 2_000
    short = await create(stack, tenant, method="wallet", amount=2_001,
                         customer={"wallet": b["id"]})  # fmt: skip
    assert short.status_code == 409 and short.json()["error"]["code"] == "insufficient_funds"
    listed = (await stack.client.get("/v1/payments?limit=100", headers=tenant.headers)).json()
    assert all(p["method"] != "wallet" for p in listed["data"])  # the refusal created nothing
    spent = await create(stack, tenant, method="wallet", amount=1_500,
                         customer={"wallet": b["id"]})  # fmt: skip
    assert spent.status_code == 201 and spent.json()["status"] == "succeeded", spent.text
    assert (await balances(stack, tenant, b["id"]))["available"] == 500
    back = await refund(stack, tenant, spent.json()["id"], 1_500)
    assert back.status_code == 201 and back.json()["status"] == "succeeded", back.text
    assert (await balances(stack, tenant, b["id"]))["available"] == 2_000
    r = await stack.client.post(f"/v1/wallets/{b['id']}/points", headers=tenant.headers,
                                json={"action": "grant", "points": 120,
                                      "out_request_no": no()})  # fmt: skip
    assert r.json()["balances"]["points"] == 120
    r = await stack.client.post(f"/v1/wallets/{b['id']}/freezes", headers=tenant.headers,
                                json={"action": "freeze", "amount": 2_001,
                                      "out_request_no": no()})  # fmt: skip
    assert r.status_code == 409
    page1 = (await stack.client.get(f"/v1/wallets/{b['id']}/transactions?limit=2",
                                    headers=tenant.headers)).json()  # fmt: skip
    assert page1["has_more"] and len(page1["data"]) == 2
    page2 = (await stack.client.get(
        f"/v1/wallets/{b['id']}/transactions?limit=10&starting_after={page1['data'][-1]['id']}",
        headers=tenant.headers)).json()  # fmt: skip
    lines = page1["data"] + page2["data"]
    assert [(x["account"], x["direction"], x["amount"]) for x in lines] == [
        ("points", "in", 120),
        ("available", "in", 1_500),
        ("available", "out", 1_500),
        ("available", "in", 2_000),
    ]
    await books_balance(stack)


async def test_concurrent_transfers_never_overdraw_or_lose_updates(stack: Stack) -> None:
    """200 transfers of ¥1.00 race for a wallet holding ¥100.00: exactly 100 go through."""
    tenant = await make_tenant(stack)
    rich, poor = await wallet(stack, tenant), await wallet(stack, tenant)
    fund = await create(stack, tenant, method="wallet", amount=1, customer={"wallet": rich["id"]})
    assert fund.status_code == 409  # empty wallet
    top = await stack.client.post(f"/v1/wallets/{rich['id']}/top_ups", headers=tenant.headers,
                                  json={"amount": 10_000, "method": "wechat_native",
                                        "out_trade_no": no()})  # fmt: skip
    (attempt,) = await attempt_ids(stack, top.json()["id"])
    await pay(stack, "wechatpay", attempt)
    await wait_for(stack, tenant, top.json()["id"], "succeeded")

    async def one() -> int:
        r = await stack.client.post("/v1/wallet_transfers", headers=tenant.headers, json={
            "source": rich["id"], "destination": poor["id"], "amount": 100,
            "out_transfer_no": no()})  # fmt: skip
        return r.status_code

    codes = await asyncio.gather(*(one() for _ in range(200)))
    assert sorted(set(codes)) == [201, 409] and codes.count(201) == 100
    assert (await balances(stack, tenant, rich["id"]))["available"] == 0
    assert (await balances(stack, tenant, poor["id"]))["available"] == 10_000
    await books_balance(stack)


async def test_concurrent_refunds_never_exceed_the_payment(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    payment = await paid(stack, tenant, 1_000)
    results = await asyncio.gather(*(refund(stack, tenant, payment["id"], 300)
                                     for _ in range(8)))  # fmt: skip
    created = [r.json() for r in results if r.status_code == 201]
    assert len(created) == 3
    assert all(r.json()["error"]["code"] == "refund_exceeds_payment"
               for r in results if r.status_code != 201)  # fmt: skip
    for r in created:
        await settled(stack, tenant, r["id"])
    after = (await stack.client.get(f"/v1/payments/{payment['id']}",
                                    headers=tenant.headers)).json()  # fmt: skip
    assert after["amount_refunded"] == 900 and after["funds"]["remaining"] == 100
    await books_balance(stack)

"""Paying a cashier payment from the customer's wallet balance (余额支付): the ledger legs, a
short or frozen balance that changes nothing, concurrent and repeated pays that debit once, the
switch away from an open channel order, other apps' and modes' wallets, refunds back to the
wallet."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from paymux.cashier import service as cashier
from paymux.funds.models import PaymentFunds
from paymux.kit.errors import Conflict, InvalidRequest
from paymux.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from paymux.ledger.repository import LedgerRepository
from paymux.payments.models import Attempt
from tests.conftest import Stack, Tenant, attempt_ids, make_tenant, run_worker
from tests.payments.test_payments import create, events_of, pay, wait_for

PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36"
)


def no() -> str:
    return "w" + uuid.uuid4().hex[:20]


async def funded_wallet(stack: Stack, tenant: Tenant, amount: int, **body: Any) -> str:
    """A user wallet topped up with ``amount`` through the Alipay sandbox."""
    r = await stack.client.post("/v1/wallets", headers=tenant.headers,
                                json={"reference": no(), **body})  # fmt: skip
    assert r.status_code == 201, r.text
    wallet_id = str(r.json()["id"])
    if amount:
        r = await stack.client.post(f"/v1/wallets/{wallet_id}/top_ups", headers=tenant.headers,
                                    json={"amount": amount, "method": "alipay_qr",
                                          "out_trade_no": no()})  # fmt: skip
        assert r.status_code == 201, r.text
        (attempt,) = await attempt_ids(stack, r.json()["id"])
        await pay(stack, "alipay", attempt)
        await wait_for(stack, tenant, r.json()["id"], "succeeded")
    return wallet_id


async def balances(stack: Stack, tenant: Tenant, wallet_id: str) -> dict[str, int]:
    r = await stack.client.get(f"/v1/wallets/{wallet_id}", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return dict(r.json()["balances"])


async def merchant_pending(stack: Stack, tenant: Tenant) -> int:
    r = await stack.client.get("/v1/balance", headers=tenant.headers)
    return int(r.json()["pending"])


async def cashier_payment(
    stack: Stack, tenant: Tenant, wallet_id: str | None, *, amount: int = 1_000,
    allowed: list[str] | None = None, **extra: Any,
) -> dict[str, Any]:  # fmt: skip
    customer = {"wallet": wallet_id} if wallet_id else {}
    r = await create(stack, tenant, method="cashier", amount=amount, customer=customer,
                     allowed_methods=allowed or ["wallet", "alipay_qr"], **extra)  # fmt: skip
    assert r.status_code == 201, r.text
    return dict(r.json())


async def payment_entries(stack: Stack, payment_id: str) -> list[tuple[str, str, str, int]]:
    """(owner type, purpose, side, amount) of the payment's posting."""
    async with stack.runtime.db.read() as session:
        tx = await LedgerRepository(session).transaction_by_key(f"payment:{payment_id}")
        if tx is None:
            return []
        stmt = (sa.select(LedgerAccount.owner_type, LedgerAccount.purpose, LedgerEntry.side,
                          LedgerEntry.amount)
                .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
                .where(LedgerEntry.transaction_id == tx.id))  # fmt: skip
        return sorted(tuple(row) for row in (await session.execute(stmt)).all())  # type: ignore[misc]


async def test_the_balance_pays_with_balanced_legs_and_one_webhook(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    wallet_id = await funded_wallet(stack, tenant, 5_000)
    p = await cashier_payment(stack, tenant, wallet_id, amount=1_200)
    view = await cashier.view(stack.runtime, p["id"], user_agent=PHONE)
    assert view is not None and view.wallet_balance == 5_000
    assert view.options[0].method == "wallet"
    pending_before = await merchant_pending(stack, tenant)
    paid = await cashier.choose(stack.runtime, p["id"], "wallet", user_agent=PHONE)
    assert paid.status == "succeeded"
    assert (await balances(stack, tenant, wallet_id))["available"] == 3_800
    # the merchant's pending settlement grows by the amount, as for a card payment
    assert await merchant_pending(stack, tenant) == pending_before + 1_200
    assert await payment_entries(stack, p["id"]) == [
        ("merchant", "pending", "credit", 1_200),
        ("wallet", "available", "debit", 1_200),
    ]
    async with stack.runtime.db.read() as session:
        funds = await session.get(PaymentFunds, p["id"])
        assert funds is not None
        assert (funds.gross, funds.channel_fee) == (1_200, 0)
        assert funds.settle_due_at is not None and funds.settlement_id is None
        totals = await LedgerRepository(session).totals_by_currency()
    assert all(debit == credit for debit, credit in totals.values())
    r = await stack.client.get(f"/v1/payments/{p['id']}?expand=attempts", headers=tenant.headers)
    body = r.json()
    assert (body["status"], body["method"], body["channel"]) == ("succeeded", "wallet", "wallet")
    assert body["channel_account"] is None and body["attempts"] == []
    assert body["next_action"] is None and body["paid_at"] is not None
    # a double click, a retry: the same success, no second debit, no second event
    again = await cashier.choose(stack.runtime, p["id"], "wallet", user_agent=PHONE)
    assert again.status == "succeeded"
    assert (await balances(stack, tenant, wallet_id))["available"] == 3_800
    events = await events_of(stack, tenant, "payment.succeeded")
    mine = [e for e in events if e.data["id"] == p["id"]]
    assert len(mine) == 1 and mine[0].data["method"] == "wallet"
    view = await cashier.view(stack.runtime, p["id"], user_agent=PHONE)
    assert view is not None and view.options == ()


async def test_a_short_or_frozen_balance_changes_nothing(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    wallet_id = await funded_wallet(stack, tenant, 1_000)
    r = await stack.client.post(f"/v1/wallets/{wallet_id}/freezes", headers=tenant.headers,
                                json={"action": "freeze", "amount": 400,
                                      "out_request_no": no()})  # fmt: skip
    assert r.status_code == 200, r.text
    p = await cashier_payment(stack, tenant, wallet_id, amount=800)  # 1000 total, 600 spendable
    # an open Alipay order first: the refused switch must leave it payable
    opened = await cashier.choose(stack.runtime, p["id"], "alipay_qr", user_agent=PHONE)
    assert opened.next_action and opened.next_action["type"] == "qr_code"
    with pytest.raises(Conflict) as short:
        await cashier.choose(stack.runtime, p["id"], "wallet", user_agent=PHONE)
    assert short.value.code == "insufficient_funds"
    assert await balances(stack, tenant, wallet_id) == {
        "available": 600,
        "held": 0,
        "frozen": 400,
        "pending": 0,
        "points": 0,
    }
    assert await payment_entries(stack, p["id"]) == []
    r = await stack.client.get(f"/v1/payments/{p['id']}", headers=tenant.headers)
    assert r.json()["status"] == "pending" and r.json()["method"] == "alipay_qr"
    (attempt,) = await attempt_ids(stack, p["id"])
    await pay(stack, "alipay", attempt)  # still the payment's order
    await wait_for(stack, tenant, p["id"], "succeeded")
    # over the HTTP route an API client gets the machine-readable refusal
    q = await cashier_payment(stack, tenant, wallet_id, amount=700)
    r = await stack.client.post(f"/pay/{q['id']}/method", data={"method": "wallet"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "insufficient_funds"


async def test_concurrent_pays_debit_once(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    wallet_id = await funded_wallet(stack, tenant, 3_000)
    p = await cashier_payment(stack, tenant, wallet_id, amount=1_000)
    results = await asyncio.gather(
        *(cashier.choose(stack.runtime, p["id"], "wallet", user_agent=PHONE) for _ in range(6)),
        return_exceptions=True,
    )
    assert all(not isinstance(r, BaseException) and r.status == "succeeded"
               for r in results), results  # fmt: skip
    assert (await balances(stack, tenant, wallet_id))["available"] == 2_000
    async with stack.runtime.db.read() as session:
        keys = (await session.scalars(sa.select(LedgerTransaction.key).where(
            LedgerTransaction.key == f"payment:{p['id']}"))).all()  # fmt: skip
    assert len(keys) == 1
    events = [e for e in await events_of(stack, tenant, "payment.succeeded")
              if e.data["id"] == p["id"]]  # fmt: skip
    assert len(events) == 1
    # two payments racing for one balance that covers one: exactly one is paid
    a = await cashier_payment(stack, tenant, wallet_id, amount=1_500)
    b = await cashier_payment(stack, tenant, wallet_id, amount=1_500)
    c = await cashier_payment(stack, tenant, wallet_id, amount=1_500)
    raced = await asyncio.gather(
        *(cashier.choose(stack.runtime, x["id"], "wallet", user_agent=PHONE) for x in (a, b, c)),
        return_exceptions=True,
    )
    won = [r for r in raced if not isinstance(r, BaseException)]
    lost = [r for r in raced if isinstance(r, BaseException)]
    assert len(won) == 1 and len(lost) == 2, raced
    assert all(isinstance(e, Conflict) and e.code == "insufficient_funds" for e in lost)
    assert (await balances(stack, tenant, wallet_id))["available"] == 500


async def test_switching_from_an_open_order_closes_it_at_its_channel(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    wallet_id = await funded_wallet(stack, tenant, 2_000)
    p = await cashier_payment(stack, tenant, wallet_id, amount=900,
                              allowed=["wallet", "wechat_native"])  # fmt: skip
    await cashier.choose(stack.runtime, p["id"], "wechat_native", user_agent=PHONE)
    paid = await cashier.choose(stack.runtime, p["id"], "wallet", user_agent=PHONE)
    assert paid.status == "succeeded" and paid.method == "wallet"
    async with stack.runtime.db.read() as session:
        (old,) = (await session.scalars(sa.select(Attempt).where(
            Attempt.payment_id == p["id"]))).all()  # fmt: skip
    assert old.status == "closed"
    r = await stack.client.post(
        f"/sandbox/wechatpay/_sandbox/orders/{old.id}/pay", json={"result": "pay"}
    )
    assert r.json()["changed"] is False  # closed at the channel: it can no longer be paid
    assert (await balances(stack, tenant, wallet_id))["available"] == 1_100
    types = [e.type for e in await events_of(stack, tenant) if e.data.get("id") == p["id"]]
    assert types == ["payment.succeeded"]


async def test_only_this_apps_and_modes_user_wallets(stack: Stack) -> None:
    from paymux.merchants import service as merchant_service
    from paymux.merchants.models import Mode

    tenant, other = await make_tenant(stack), await make_tenant(stack)
    foreign = await funded_wallet(stack, other, 0)
    async with stack.runtime.db.transaction() as session:
        live = await merchant_service.issue_key(session, app_id=tenant.app_id, mode=Mode.live)
    r = await stack.client.post("/v1/wallets", json={"reference": no()},
                                headers={"Authorization": f"Bearer {live.secret}"})  # fmt: skip
    assert r.status_code == 201, r.text
    live_wallet = r.json()["id"]
    shop = await funded_wallet(stack, tenant, 0, owner_type="merchant")
    cases = [
        (foreign, 404, "resource_missing"),
        (live_wallet, 404, "resource_missing"),
        ("wal_nope", 404, "resource_missing"),
        (shop, 400, "wallet_not_allowed"),
    ]
    for wallet_id, status, code in cases:
        out_trade_no = no()
        r = await create(stack, tenant, method="cashier", customer={"wallet": wallet_id},
                         allowed_methods=["wallet"], out_trade_no=out_trade_no)  # fmt: skip
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
        assert "Test shop" not in r.text and other.app_id not in r.text
        listed = await stack.client.get(f"/v1/payments?out_trade_no={out_trade_no}",
                                        headers=tenant.headers)  # fmt: skip
        assert listed.json()["data"] == []
    # a wallet of another currency
    usd = await funded_wallet(stack, tenant, 0, currency="USD")
    r = await create(stack, tenant, method="cashier", customer={"wallet": usd},
                     allowed_methods=["wallet"])  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["code"] == "currency_mismatch"
    # not enabled (wallet not listed), or no wallet named: no Balance option, and choosing it
    # is refused, changing nothing
    mine = await funded_wallet(stack, tenant, 1_000)
    for p in (await cashier_payment(stack, tenant, mine, allowed=["alipay_qr"]),
              await cashier_payment(stack, tenant, None)):  # fmt: skip
        view = await cashier.view(stack.runtime, p["id"], user_agent=PHONE)
        assert view is not None and view.wallet_balance is None
        assert "wallet" not in [o.method for o in view.options]
        with pytest.raises(InvalidRequest) as refused:
            await cashier.choose(stack.runtime, p["id"], "wallet", user_agent=PHONE)
        assert refused.value.code == "wallet_not_allowed"
    assert (await balances(stack, tenant, mine))["available"] == 1_000


async def test_refunds_go_back_to_the_wallet(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    wallet_id = await funded_wallet(stack, tenant, 2_000)
    p = await cashier_payment(stack, tenant, wallet_id, amount=1_500)
    await cashier.choose(stack.runtime, p["id"], "wallet", user_agent=PHONE)
    pending = await merchant_pending(stack, tenant)
    body = {"payment": p["id"], "amount": 500, "out_refund_no": no()}
    first = await stack.client.post("/v1/refunds", headers=tenant.headers, json=body)
    repeat = await stack.client.post("/v1/refunds", headers=tenant.headers, json=body)
    assert first.status_code == 201 and first.json()["status"] == "succeeded", first.text
    assert repeat.json()["id"] == first.json()["id"]
    assert first.json()["channel"] == "wallet"
    assert (await balances(stack, tenant, wallet_id))["available"] == 1_000
    assert await merchant_pending(stack, tenant) == pending - 500
    rest = await stack.client.post("/v1/refunds", headers=tenant.headers,
                                   json={"payment": p["id"], "out_refund_no": no()})  # fmt: skip
    assert rest.status_code == 201 and rest.json()["amount"] == 1_000, rest.text
    assert (await balances(stack, tenant, wallet_id))["available"] == 2_000
    over = await stack.client.post("/v1/refunds", headers=tenant.headers,
                                   json={"payment": p["id"], "amount": 1,
                                         "out_refund_no": no()})  # fmt: skip
    assert over.status_code == 409 and over.json()["error"]["code"] == "refund_exceeds_payment"
    r = await stack.client.get(f"/v1/payments/{p['id']}", headers=tenant.headers)
    assert r.json()["amount_refunded"] == 1_500
    async with stack.runtime.db.read() as session:
        totals = await LedgerRepository(session).totals_by_currency()
    assert all(debit == credit for debit, credit in totals.values())


async def test_settlement_reports_a_balance_payment_like_a_channel_one(
    stack: Stack, clock: Any
) -> None:
    import csv
    import io

    from tests.money.test_money import paid

    tenant = await make_tenant(stack)
    wallet_id = await funded_wallet(stack, tenant, 5_000)
    card_like = await paid(stack, tenant, 3_000)  # through the WeChat sandbox
    p = await cashier_payment(stack, tenant, wallet_id, amount=3_000)
    await cashier.choose(stack.runtime, p["id"], "wallet", user_agent=PHONE)
    r = await stack.client.post("/v1/refunds", headers=tenant.headers,
                                json={"payment": p["id"], "amount": 1_000,
                                      "out_refund_no": no()})  # fmt: skip
    assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text
    clock.advance(86400 + 60)
    await run_worker(stack)
    (batch,) = (await stack.client.get("/v1/settlements", headers=tenant.headers)).json()["data"]
    r = await stack.client.get(f"/v1/settlements/{batch['id']}/report.csv", headers=tenant.headers)
    rows = {row["payment_id"]: row for row in csv.DictReader(io.StringIO(r.text))}
    wallet_row, channel_row = rows[p["id"]], rows[card_like["id"]]
    assert (wallet_row["channel"], wallet_row["gross"], wallet_row["refunded"]) == (
        "wallet", "3000", "1000")  # fmt: skip
    assert channel_row["gross"] == "3000" and channel_row["refunded"] == "0"
    assert batch["payment_count"] == 2 and batch["gross"] == 6_000 and batch["refunded"] == 1_000
    balance = (await stack.client.get("/v1/balance", headers=tenant.headers)).json()
    assert balance["pending"] == 0 and balance["available"] == batch["net"]
    async with stack.runtime.db.read() as session:
        totals = await LedgerRepository(session).totals_by_currency()
    assert all(debit == credit for debit, credit in totals.values())


async def test_an_order_paid_before_the_switch_wins_and_the_balance_is_untouched(
    stack: Stack,
) -> None:
    tenant = await make_tenant(stack)
    wallet_id = await funded_wallet(stack, tenant, 2_000)
    p = await cashier_payment(stack, tenant, wallet_id, amount=900,
                              allowed=["wallet", "wechat_native"])  # fmt: skip
    await cashier.choose(stack.runtime, p["id"], "wechat_native", user_agent=PHONE)
    (attempt,) = await attempt_ids(stack, p["id"])
    await pay(stack, "wechatpay", attempt)  # paid at WeChat; the notification may be on its way
    with pytest.raises(Conflict) as lost:
        await cashier.choose(stack.runtime, p["id"], "wallet", user_agent=PHONE)
    assert lost.value.code in ("payment_final", "payment_succeeded")
    done = await wait_for(stack, tenant, p["id"], "succeeded")
    assert done["method"] == "wechat_native"
    assert (await balances(stack, tenant, wallet_id))["available"] == 2_000
    assert await payment_entries(stack, p["id"]) != [] and all(
        owner != "wallet" for owner, *_ in await payment_entries(stack, p["id"]))  # fmt: skip
    types = [e.type for e in await events_of(stack, tenant) if e.data.get("id") == p["id"]]
    assert types == ["payment.succeeded"]


async def test_a_switched_away_order_paid_after_the_balance_is_refunded(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paymux.channels.wechatpay.adapter import WechatPayAdapter
    from paymux.refunds.models import Refund

    tenant = await make_tenant(stack)
    wallet_id = await funded_wallet(stack, tenant, 2_000)
    p = await cashier_payment(stack, tenant, wallet_id, amount=900,
                              allowed=["wallet", "wechat_native"])  # fmt: skip
    await cashier.choose(stack.runtime, p["id"], "wechat_native", user_agent=PHONE)

    async def lost_close(self: Any, out_trade_no: str, **kwargs: Any) -> None:
        return None  # the channel acknowledged a close that never took effect

    monkeypatch.setattr(WechatPayAdapter, "close_payment", lost_close)
    paid = await cashier.choose(stack.runtime, p["id"], "wallet", user_agent=PHONE)
    assert paid.status == "succeeded" and paid.method == "wallet"
    (old,) = await attempt_ids(stack, p["id"])
    await pay(stack, "wechatpay", old)  # the switched-away order, paid anyway
    for _ in range(200):
        async with stack.runtime.db.read() as session:
            refunds = (await session.scalars(sa.select(Refund).where(
                Refund.payment_id == p["id"]))).all()  # fmt: skip
        if refunds:
            break
        await asyncio.sleep(0.01)
    await run_worker(stack)
    async with stack.runtime.db.read() as session:
        refunds = (await session.scalars(sa.select(Refund).where(
            Refund.payment_id == p["id"]))).all()  # fmt: skip
    assert [(x.attempt_id, x.status, x.amount) for x in refunds] == [(old, "succeeded", 900)]
    r = await stack.client.get(f"/v1/payments/{p['id']}", headers=tenant.headers)
    assert (r.json()["status"], r.json()["method"], r.json()["amount_refunded"]) == (
        "succeeded", "wallet", 0)  # fmt: skip
    assert (await balances(stack, tenant, wallet_id))["available"] == 1_100
    types = [e.type for e in await events_of(stack, tenant) if e.data.get("id") == p["id"]]
    assert types.count("payment.succeeded") == 1 and types.count("payment.late_success") == 1

"""Payouts end to end: API → hold → the channel's transfer API (WeChat transfer bills, Alipay
uni.transfer, through their sandboxes) → notification or query → post or void, on SQLite and
PostgreSQL. Covers an instant success, the payee confirming later (a notification, delivered
twice), the payee declining, a create whose answer is lost (resolved by the worker's query,
paid once), the standard next-day batch and a channel refusal."""

from __future__ import annotations

from typing import Any

from paymux.channels.alipay.sandbox import TransferScript
from paymux.channels.sandbox_kit import NotifyMode, RefundOutcome, RefundScript
from paymux.channels.wechatpay import protocol as wx
from paymux.ledger.chart import Purpose
from paymux.payouts import service as payouts
from tests.conftest import GATEWAY, Stack, Tenant, attempt_ids, make_tenant, run_worker
from tests.money.test_money import account_balance, balances, books_balance, no, wallet
from tests.payments.test_payments import events_of, pay, wait_for

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


async def payout_tenant(stack: Stack) -> Tenant:
    """WeChat with a transfer scene, Alipay in certificate mode: what payouts need."""
    return await make_tenant(stack, credentials={
        name: stack.sandboxes[name].provision_demo(f"{GATEWAY}/sandbox/{name}")
        for name in ("wechatpay", "alipay")})  # fmt: skip


async def funded_wallet(stack: Stack, tenant: Tenant, amount: int) -> str:
    """A verified wallet topped up through a paid Alipay payment."""
    w = await wallet(stack, tenant, verification_level=1)
    r = await stack.client.post(f"/v1/wallets/{w['id']}/top_ups", headers=tenant.headers,
                                json={"amount": amount, "method": "alipay_qr",
                                      "out_trade_no": no()})  # fmt: skip
    assert r.status_code == 201, r.text
    (attempt,) = await attempt_ids(stack, r.json()["id"])
    await pay(stack, "alipay", attempt)
    await wait_for(stack, tenant, r.json()["id"], "succeeded")
    return str(w["id"])


async def request_payout(stack: Stack, tenant: Tenant, source: str, amount: int,
                         destination: dict[str, Any], speed: str = "express") -> Any:  # fmt: skip
    body = {"source": source, "amount": amount, "speed": speed, "destination": destination,
            "out_payout_no": no()}  # fmt: skip
    return await stack.client.post("/v1/payouts", headers=tenant.headers, json=body)


async def payout_of(stack: Stack, tenant: Tenant, payout_id: str) -> dict[str, Any]:
    r = await stack.client.get(f"/v1/payouts/{payout_id}", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def eventually(stack: Stack, tenant: Tenant, payout_id: str, status: str) -> dict[str, Any]:
    """The payout once it reaches ``status`` (notifications arrive asynchronously)."""
    import asyncio

    for _ in range(300):
        found = await payout_of(stack, tenant, payout_id)
        if found["status"] == status:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"payout stayed {found['status']}, wanted {status}")


async def in_flight(stack: Stack) -> int:
    return await account_balance(stack, platform=Purpose.payouts_in_transit)


async def test_wechat_payouts_instant_confirmed_later_and_declined(stack: Stack) -> None:
    tenant = await payout_tenant(stack)
    source = await funded_wallet(stack, tenant, 30_000)
    sandbox = stack.sandboxes["wechatpay"]
    clearing_before = await account_balance(stack, channel_account_id=tenant.accounts["wechatpay"])
    to_wechat = {"type": "wechat_openid", "account": OPENID}

    # 1. Accepted at once: paid inside the request.
    sandbox.add_transfer_script(RefundScript())
    r = await request_payout(stack, tenant, source, 5_000, to_wechat)
    assert r.status_code == 201, r.text
    instant = r.json()
    assert (instant["status"], instant["fee"]) == ("succeeded", 100)  # express: ¥1 minimum
    assert instant["channel_transfer_no"]

    # 2. The payee confirms later in WeChat: pending until MCHTRANSFER.BILL.FINISHED, which
    #    the sandbox delivers twice; the inbox applies it once.
    sandbox.add_transfer_script(RefundScript(outcome=RefundOutcome.delayed, delay=1e9,
                                             notify=NotifyMode.duplicate))  # fmt: skip
    later = (await request_payout(stack, tenant, source, 7_000, to_wechat)).json()
    assert later["status"] == "processing"
    assert (await balances(stack, tenant, source))["held"] == 7_000 + 100
    bill_no = wx.transfer_bill_no(later["id"])
    r = await stack.client.post(f"/sandbox/wechatpay/_sandbox/transfers/{bill_no}/confirm",
                                json={"result": "confirm"})  # fmt: skip
    assert r.json()["state"] == "SUCCESS"
    done = await eventually(stack, tenant, later["id"], "succeeded")
    assert done["succeeded_at"] is not None

    # 3. The payee declines: the hold is voided, amount and fee are back.
    sandbox.add_transfer_script(RefundScript(outcome=RefundOutcome.delayed, delay=1e9))
    declined = (await request_payout(stack, tenant, source, 3_000, to_wechat)).json()
    r = await stack.client.post(
        f"/sandbox/wechatpay/_sandbox/transfers/{wx.transfer_bill_no(declined['id'])}/confirm",
        json={"result": "decline"})  # fmt: skip
    failed = await eventually(stack, tenant, declined["id"], "failed")
    assert failed["failure_code"]

    spent = 5_000 + 100 + 7_000 + 100
    assert await balances(stack, tenant, source) == {
        **await balances(stack, tenant, source),
        "available": 30_000 - spent,
        "held": 0,
    }
    clearing = await account_balance(stack, channel_account_id=tenant.accounts["wechatpay"])
    assert clearing_before - clearing == 12_000  # what left the WeChat account, not the fees
    assert await in_flight(stack) == 0
    kinds = [e.type for e in await events_of(stack, tenant) if e.type.startswith("payout.")]
    assert kinds.count("payout.succeeded") == 2 and kinds.count("payout.failed") == 1
    # Both copies of the notification reached the inbox; only one changed anything.
    assert len([d for d in sandbox.core.deliveries if d.get("out_bill_no") == bill_no]) == 2
    await books_balance(stack)


async def test_wechat_payout_whose_answer_was_lost_is_paid_once(stack: Stack, clock: Any) -> None:
    tenant = await payout_tenant(stack)
    source = await funded_wallet(stack, tenant, 10_000)
    sandbox = stack.sandboxes["wechatpay"]
    # The bill is made and paid, but the answer never comes back and nobody notifies.
    sandbox.add_transfer_script(RefundScript(outcome=RefundOutcome.create_timeout,
                                             notify=NotifyMode.none))  # fmt: skip
    r = await request_payout(stack, tenant, source, 4_000,
                             {"type": "wechat_openid", "account": OPENID})  # fmt: skip
    lost = r.json()
    assert r.status_code == 201 and lost["status"] == "processing", r.text
    clock.advance(payouts.QUERY_BACKOFF[0] + 1)
    await run_worker(stack)  # queries the bill the channel did make, and finds it paid
    done = await eventually(stack, tenant, lost["id"], "succeeded")
    bills = [t for (_, number), t in sandbox.transfers.items()
             if number == wx.transfer_bill_no(lost["id"])]  # fmt: skip
    assert len(bills) == 1 and done["channel_transfer_no"] == bills[0].transfer_bill_no
    assert (await balances(stack, tenant, source))["available"] == 10_000 - 4_000 - 100
    await books_balance(stack)


async def test_alipay_standard_batch_refusal_and_failure(stack: Stack, clock: Any) -> None:
    tenant = await payout_tenant(stack)
    source = await funded_wallet(stack, tenant, 20_000)
    sandbox = stack.sandboxes["alipay"]
    payee = sandbox.add_payee("张三", login_id=f"{no()}@example.com")
    by_login = {"type": "alipay_login_id", "account": payee.login_id, "name": "张三"}

    standard = (await request_payout(stack, tenant, source, 6_000, by_login, "standard")).json()
    assert (standard["status"], standard["fee"]) == ("pending", 0)
    assert standard["scheduled_for"] is not None
    await run_worker(stack)
    assert (await payout_of(stack, tenant, standard["id"]))["status"] == "pending"  # not yet
    assert not [t for t in sandbox.transfers.values() if t.out_biz_no == standard["id"]]

    sandbox.transfer_scripts.append(TransferScript(outcome=RefundOutcome.refuse))
    refused = (await request_payout(stack, tenant, source, 2_000, by_login)).json()
    assert refused["status"] == "failed" and refused["failure_code"]
    sandbox.transfer_scripts.append(TransferScript(outcome=RefundOutcome.fail, delay=0.0))
    failing = (await request_payout(stack, tenant, source, 3_000, by_login)).json()
    assert failing["status"] == "processing"

    clock.advance(2 * 86400)  # past the next 10:00 batch and every query backoff
    await run_worker(stack)
    paid = await payout_of(stack, tenant, standard["id"])
    assert paid["status"] == "succeeded" and paid["channel_transfer_no"]
    (sent,) = [t for t in sandbox.transfers.values() if t.out_biz_no == standard["id"]]
    assert sent.payee is payee and sent.amount == 6_000
    assert (await payout_of(stack, tenant, failing["id"]))["status"] == "failed"
    assert await balances(stack, tenant, source) == {
        **await balances(stack, tenant, source),
        "available": 20_000 - 6_000,
        "held": 0,
    }
    assert await in_flight(stack) == 0
    await books_balance(stack)


async def test_refused_payout_requests_change_nothing(stack: Stack) -> None:
    tenant = await payout_tenant(stack)
    source = await funded_wallet(stack, tenant, 1_000)
    before = await balances(stack, tenant, source)
    to_wechat = {"type": "wechat_openid", "account": OPENID}
    short = await request_payout(stack, tenant, source, 950, to_wechat)  # + ¥1 express fee
    assert short.status_code == 409 and short.json()["error"]["code"] == "insufficient_funds"
    bank = await request_payout(
        stack, tenant, source, 500, {"type": "bank_card", "account": "6222020200000000000"}
    )
    assert bank.status_code == 400
    assert bank.json()["error"]["code"] == "unsupported_destination"
    assert await balances(stack, tenant, source) == before
    listed = (await stack.client.get("/v1/payouts", headers=tenant.headers)).json()["data"]
    assert listed == []

"""Channel splits (WeChat profit sharing) through the gateway, the worker and the sandbox, on
SQLite and PostgreSQL: all receivers paid, and a partial split where the channel closes one
receiver — its money comes back to the merchant in the books, the split says who was paid."""

from __future__ import annotations

from typing import Any

from paymux.channels.sandbox_kit import RefundOutcome, RefundScript
from paymux.splits import service as splits
from tests.conftest import Stack, Tenant, make_tenant, run_worker
from tests.money.test_money import OPERATOR, books_balance, merchant_balance, paid
from tests.payments.test_payments import events_of

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
PARTNER_MCHID = "1900000109"
SPEC = {
    "trigger": "realtime",
    "commission_bps": 500,
    "receivers": [
        {"channel_type": "person", "channel_account": OPENID, "name": "张三", "amount": 1_000,
         "description": "团长佣金"},
        {"channel_type": "merchant", "channel_account": PARTNER_MCHID, "name": "示例商户全称",
         "amount": 2_000, "description": "供货商货款"},
    ],
}  # fmt: skip


async def unsettled_tenant(stack: Stack) -> Tenant:
    """A merchant settled a week after payment: the tests move the clock by an hour or more,
    and a T+1 settlement at China midnight must not move ``pending`` to ``available`` under
    them (whatever time of day the suite runs)."""
    tenant = await make_tenant(stack)
    r = await stack.client.put(f"/v1/operator/merchants/{tenant.merchant_id}/settlement",
                               headers=OPERATOR, json={"cycle": "TN", "days": 7})  # fmt: skip
    assert r.status_code == 200, r.text
    return tenant


async def split_of(stack: Stack, tenant: Tenant, payment_id: str) -> dict[str, Any]:
    r = await stack.client.get(f"/v1/splits?payment={payment_id}", headers=tenant.headers)
    (split,) = r.json()["data"]
    return dict(split)


async def test_channel_split_pays_every_receiver(stack: Stack) -> None:
    tenant = await unsettled_tenant(stack)
    payment = await paid(stack, tenant, 10_000, split=SPEC)
    assert (await split_of(stack, tenant, payment["id"]))["status"] == "processing"
    await run_worker(stack)
    split = await split_of(stack, tenant, payment["id"])
    assert split["status"] == "succeeded"
    assert [(r["amount"], r["result"]) for r in split["receivers"]] == [
        (1_000, "succeeded"),
        (2_000, "succeeded"),
    ]
    assert (split["commission"], split["total"]) == (500, 3_500)
    assert (await merchant_balance(stack, tenant))["pending"] == 10_000 - 3_500
    await books_balance(stack)


async def test_partial_channel_split_returns_the_unpaid_share(stack: Stack, clock: Any) -> None:
    tenant = await unsettled_tenant(stack)
    sandbox = stack.sandboxes["wechatpay"]
    sandbox.add_split_script(RefundScript(outcome=RefundOutcome.delayed, delay=1e9))
    payment = await paid(stack, tenant, 10_000, split=SPEC)
    await run_worker(stack)  # sent: WeChat answers PROCESSING
    split = await split_of(stack, tenant, payment["id"])
    assert split["status"] == "processing"
    (at_wechat,) = [s for (_, no), s in sandbox.splits.items() if no == split["id"]]
    # WeChat closes the person's share (the relation was removed) and pays the merchant's.
    at_wechat.receivers[0].update(result="CLOSED", fail_reason="NO_RELATION")
    sandbox.finish_split(at_wechat, succeeded=True)
    clock.advance(splits.QUERY_BACKOFF[-1] + 1)
    await run_worker(stack)

    split = await split_of(stack, tenant, payment["id"])
    assert split["status"] == "partial" and split["failure_code"] == "PARTIALLY_CLOSED"
    assert [(r["channel_account"], r["result"]) for r in split["receivers"]] == [
        (OPENID, "failed"),
        (PARTNER_MCHID, "succeeded"),
    ]
    assert split["total"] == 2_000 + 500  # what actually left the merchant
    assert (await merchant_balance(stack, tenant))["pending"] == 10_000 - 2_500
    got = (await stack.client.get(f"/v1/payments/{payment['id']}", headers=tenant.headers)).json()
    assert got["funds"]["split_out"] == 2_500
    assert [e.type for e in await events_of(stack, tenant, "split.partial")] == ["split.partial"]
    await run_worker(stack)  # final: nothing more is asked or moved
    assert (await merchant_balance(stack, tenant))["pending"] == 10_000 - 2_500
    await books_balance(stack)

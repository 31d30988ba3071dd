"""Every registered channel reconciles through its own sandbox's bill (so a new channel is
covered without editing this file): a day with a paid payment, a partial refund and a payment
the channel took while its notification never came. The run matches the paid payment and the
refund, repairs the missed one through a channel query, and its books bridge leaves nothing
unexplained. SQLite and PostgreSQL.

The sandboxes' fees differ from the 0.6 % the test accounts are configured with on some
channels (Stripe's 2.9 % + 30): a fee mismatch is the one break class allowed here."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from paymux.channel_accounts import service as channel_service
from paymux.channel_accounts.repository import ChannelAccountRepository
from paymux.channels import registry
from paymux.channels.bills import BillKind, bill_capable_of, bills_of
from tests.channels.test_statement_gateway import CURRENCY, plain_method
from tests.conftest import Stack, attempt_ids, make_tenant
from tests.payments.test_payments import order_no, wait_for
from tests.recon.helpers import OPERATOR, operator
from tests.refunds.test_refunds import refund, settled


@pytest.mark.parametrize("name", sorted(registry.all_channels()))
async def test_every_channel_reconciles_its_day(stack: Stack, clock: Any, name: str) -> None:
    tenant = await make_tenant(stack, channels=(name,))
    account_id = tenant.accounts[name]
    currency = CURRENCY.get(name, "CNY")

    async def pay(subject: str, notify: str = "normal") -> tuple[dict[str, Any], str]:
        if notify == "none":
            script = {"outcome": "manual", "notify": "none", "subject": subject}
            r = await stack.client.post(f"/sandbox/{name}/_sandbox/scripts", json=script)
            assert r.status_code == 200, r.text
        body = {"amount": 2_500, "currency": currency, "method": plain_method(name),
                "out_trade_no": order_no(), "subject": subject,
                "return_url": "https://shop.example/back"}  # fmt: skip
        r = await stack.client.post("/v1/payments", json=body, headers=tenant.headers)
        assert r.status_code == 201, r.text
        (attempt,) = await attempt_ids(stack, r.json()["id"])
        paid = await stack.client.post(f"/sandbox/{name}/_sandbox/orders/{attempt}/pay",
                                       json={"result": "pay"})  # fmt: skip
        assert paid.status_code == 200, paid.text
        if notify == "none":
            return r.json(), attempt
        return await wait_for(stack, tenant, r.json()["id"], "succeeded"), attempt

    payment, _ = await pay("Recon")
    back = (await refund(stack, tenant, payment["id"], amount=1_000)).json()
    assert (await settled(stack, tenant, back["id"]))["status"] == "succeeded"
    missed, _ = await pay("Recon missed", notify="none")
    assert missed["status"] == "pending"

    async with stack.runtime.db.read() as session:
        account = await ChannelAccountRepository(session).get(account_id)
    assert account is not None
    adapter = bill_capable_of(
        channel_service.adapter_for(stack.runtime.vault, account, stack.runtime.channel_http)
    )
    assert adapter is not None, f"{name} reads no bill"
    day = dt.datetime.fromisoformat(payment["paid_at"]).astimezone(
        adapter.statement_timezone).date()  # fmt: skip
    clock.advance(86_400 * 2)
    r = await stack.client.post("/v1/operator/recon/runs", headers=operator(), json={
        "channel_account_id": account_id, "bill_date": day.isoformat()})  # fmt: skip
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["status"] == "done", run
    totals = run["totals"]["currencies"][currency]
    assert totals["residual"] == 0, (totals, run["reasons"])
    r = await stack.client.get(f"/v1/payments/{missed['id']}", headers=tenant.headers)
    if totals["channel"]["count"] == 3:  # the channel took the missed payment's money
        assert r.json()["status"] == "succeeded", r.json()
    else:  # PayPal: an approved order nobody captured took no money, and is not in the bill
        assert (totals["channel"]["count"], r.json()["status"]) == (2, "pending"), totals
    r = await stack.client.get("/v1/operator/recon/breaks", headers=OPERATOR,
                               params={"channel_account_id": account_id})  # fmt: skip
    open_classes = {b["class"] for b in r.json()["data"]}
    assert open_classes <= {"fee_mismatch"}, r.json()["data"]  # a refund's returned fee at most

    # The funds bill (资金账单) of the same day, where the channel has one: the day's settlement
    # is booked once and the channel's balance agrees with our clearing account, every
    # difference (a fee the sandbox charges otherwise) explained by the trade run's breaks.
    if BillKind.funds not in bills_of(adapter):
        return
    funds_body = {"channel_account_id": account_id, "bill_date": day.isoformat(), "bill": "funds"}
    r = await stack.client.post("/v1/operator/recon/runs", headers=operator(), json=funds_body)
    assert r.status_code == 201, r.text
    funds = r.json()
    assert (funds["status"], funds["reasons"]) == ("done", []), funds
    balance = funds["totals"]["balance"][currency]
    assert balance["ok"] and balance["residual"] == 0, balance
    (settled_out,) = funds["totals"]["settlements"]
    assert settled_out["currency"] == currency and settled_out["amount"] != 0
    assert funds["totals"]["currencies"][currency]["residual"] == 0
    r = await stack.client.post("/v1/operator/recon/runs", headers=operator(), json=funds_body)
    again = r.json()
    assert again["reasons"] == [] and "settlements" not in again["totals"], again

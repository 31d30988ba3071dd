"""Settlements are merchant-level objects: every app of the merchant (in the key's mode) sees
the batch and its totals, its report lists only the calling app's payments (with a total of
those lines), and another merchant never sees any of it. SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from typing import Any

from paymux.channel_accounts import service as channel_service
from paymux.merchants import service as merchant_service
from paymux.merchants.models import Mode
from tests.conftest import GATEWAY, Stack, Tenant, make_tenant, run_worker
from tests.money.test_money import paid


async def second_app(stack: Stack, tenant: Tenant) -> Tenant:
    """Another app of the same merchant, with its own test key and sandbox account."""
    async with stack.runtime.db.transaction() as session:
        app = await merchant_service.create_app(session, merchant_id=tenant.merchant_id,
                                                name="mobile")  # fmt: skip
        key = await merchant_service.issue_key(session, app_id=app.id, mode=Mode.test)
        account = await channel_service.add_account(
            session, stack.runtime.vault, app_id=app.id, channel="wechatpay", mode=Mode.test,
            credentials=stack.sandboxes["wechatpay"].provision(f"{GATEWAY}/sandbox/wechatpay"),
            fee_rate_bps=60,
        )  # fmt: skip
    return Tenant(tenant.merchant_id, app.id, key.secret, {"wechatpay": account.id})


async def report(stack: Stack, tenant: Tenant, settlement_id: str) -> list[dict[str, str]]:
    r = await stack.client.get(f"/v1/settlements/{settlement_id}/report.csv",
                               headers=tenant.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    return list(csv.DictReader(io.StringIO(r.text)))


async def test_apps_share_the_batch_but_list_only_their_own_payments(
    stack: Stack, clock: Any
) -> None:
    web = await make_tenant(stack)
    mobile = await second_app(stack, web)
    a = await paid(stack, web, 10_000)
    b = await paid(stack, mobile, 2_000)
    clock.advance(86400 + 60)
    await run_worker(stack)

    batches = {}
    for app in (web, mobile):
        listed = (await stack.client.get("/v1/settlements", headers=app.headers)).json()["data"]
        (batches[app.app_id],) = listed
    assert batches[web.app_id] == batches[mobile.app_id]  # one merchant-level batch
    batch = batches[web.app_id]
    assert (batch["merchant"], batch["payment_count"], batch["gross"]) == (
        web.merchant_id, 2, 12_000)  # fmt: skip

    for app, mine in ((web, a), (mobile, b)):
        rows = await report(stack, app, batch["id"])
        assert [row["payment_id"] for row in rows[:-1]] == [mine["id"]]
        assert rows[-1]["payment_id"] == "total"
        assert rows[-1]["gross"] == str(mine["amount"]) == rows[0]["gross"]
        assert rows[-1]["net"] == rows[0]["net"]
    web_net = int((await report(stack, web, batch["id"]))[-1]["net"])
    mobile_net = int((await report(stack, mobile, batch["id"]))[-1]["net"])
    assert web_net + mobile_net == batch["net"]  # the apps' shares add up to the batch

    stranger = await make_tenant(stack)
    assert (await stack.client.get("/v1/settlements", headers=stranger.headers)).json()[
        "data"] == []  # fmt: skip
    for path in (f"/v1/settlements/{batch['id']}", f"/v1/settlements/{batch['id']}/report.csv"):
        r = await stack.client.get(path, headers=stranger.headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "resource_missing"

"""The payment loop through the in-process gateway and the real-protocol sandboxes."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import sqlalchemy as sa
from standardwebhooks import Webhook

from paymux.channels.sandbox_kit import NotifyMode, Outcome, Script
from paymux.inbox.models import ChannelEvent
from paymux.webhooks.models import Event
from tests.conftest import Stack, Tenant, attempt_ids, make_tenant, run_worker


def order_no() -> str:
    return "o" + uuid.uuid4().hex[:20]


async def create(
    stack: Stack, tenant: Tenant, *, method: str = "wechat_native", amount: int = 1999,
    headers: dict[str, str] | None = None, **extra: Any,
) -> Any:  # fmt: skip
    body = {
        "amount": amount, "currency": "CNY", "method": method, "out_trade_no": order_no(),
        "subject": "T-shirt", **extra,
    }  # fmt: skip
    return await stack.client.post(
        "/v1/payments", json=body, headers={**tenant.headers, **(headers or {})}
    )


async def pay(stack: Stack, channel: str, out_trade_no: str, result: str = "pay") -> None:
    r = await stack.client.post(
        f"/sandbox/{channel}/_sandbox/orders/{out_trade_no}/pay", json={"result": result}
    )
    assert r.status_code == 200, r.text


async def wait_for(stack: Stack, tenant: Tenant, payment_id: str, status: str) -> dict[str, Any]:
    """Notifications arrive asynchronously (the sandbox's notifier task)."""
    for _ in range(200):
        r = await stack.client.get(f"/v1/payments/{payment_id}", headers=tenant.headers)
        if r.json()["status"] == status:
            return dict(r.json())
        await asyncio.sleep(0.01)
    raise AssertionError(f"payment stayed {r.json()['status']}, wanted {status}")


async def events_of(stack: Stack, tenant: Tenant, type_: str | None = None) -> list[Event]:
    async with stack.runtime.db.read() as session:
        stmt = sa.select(Event).where(Event.app_id == tenant.app_id).order_by(Event.id)
        if type_:
            stmt = stmt.where(Event.type == type_)
        return list((await session.scalars(stmt)).all())


async def inbox_of(stack: Stack, out_trade_no: str) -> list[ChannelEvent]:
    async with stack.runtime.db.read() as session:
        stmt = sa.select(ChannelEvent).where(ChannelEvent.out_trade_no == out_trade_no)
        return list((await session.scalars(stmt)).all())


# ------------------------------------------------------------------ create / read
async def test_create_returns_next_action_for_every_method(stack: Stack, tenant: Tenant) -> None:
    kinds = {
        "wechat_native": "qr_code", "wechat_h5": "redirect", "wechat_app": "sdk_params",
        "alipay_qr": "qr_code", "alipay_page": "redirect", "alipay_wap": "redirect",
        "alipay_app": "sdk_params",
    }  # fmt: skip
    for method, kind in kinds.items():
        r = await create(stack, tenant, method=method, client_ip="203.0.113.9")
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["status"] == "pending"
        assert body["method"] == method
        assert body["channel"] == method.split("_")[0].replace("wechat", "wechatpay")
        assert body["next_action"]["type"] == kind, body
        assert body["cashier_url"].endswith(f"/pay/{body['id']}")
    r = await create(stack, tenant, method="wechat_jsapi", customer={"openid": "o-test-openid"})
    assert r.status_code == 201, r.text
    assert r.json()["next_action"]["type"] == "sdk_params"
    assert "paySign" in r.json()["next_action"]["params"]


async def test_retrieve_and_list_with_filters_and_cursor(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    ids = [(await create(stack, tenant)).json()["id"] for _ in range(5)]
    page1 = (await stack.client.get("/v1/payments?limit=2", headers=tenant.headers)).json()
    assert [p["id"] for p in page1["data"]] == ids[::-1][:2] and page1["has_more"]
    page2 = (
        await stack.client.get(
            f"/v1/payments?limit=10&starting_after={page1['data'][-1]['id']}",
            headers=tenant.headers,
        )
    ).json()
    assert [p["id"] for p in page2["data"]] == ids[::-1][2:] and not page2["has_more"]
    one = (await stack.client.get(f"/v1/payments/{ids[0]}", headers=tenant.headers)).json()
    found = await stack.client.get(
        f"/v1/payments?out_trade_no={one['out_trade_no']}", headers=tenant.headers
    )
    assert [p["id"] for p in found.json()["data"]] == [ids[0]]
    succeeded = await stack.client.get("/v1/payments?status=succeeded", headers=tenant.headers)
    assert succeeded.json()["data"] == []
    bad = await stack.client.get("/v1/payments?status=bogus", headers=tenant.headers)
    assert bad.status_code == 400


async def test_tenants_are_isolated(stack: Stack, tenant: Tenant) -> None:
    other = await make_tenant(stack)
    payment = (await create(stack, tenant)).json()
    r = await stack.client.get(f"/v1/payments/{payment['id']}", headers=other.headers)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "resource_missing"


async def test_bad_requests_are_rejected_and_change_nothing(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    cases = [
        ({"amount": 0}, "parameter_invalid"),
        ({"amount": "12.5"}, "parameter_invalid"),
        ({"currency": "XXX"}, "unsupported_currency"),
        ({"method": "bitcoin"}, "unsupported_method"),
        ({"method": "wechat_native", "currency": "USD"}, "unsupported_currency"),
        ({"out_trade_no": "has space"}, "parameter_invalid"),
        ({"unknown_field": 1}, "parameter_invalid"),
        ({"return_url": "javascript:alert(1)"}, "parameter_invalid"),
        ({"channel": "alipay"}, "method_unavailable"),
    ]
    for change, code in cases:
        body = {
            "amount": 100, "currency": "CNY", "method": "wechat_native",
            "out_trade_no": order_no(), "subject": "x", **change,
        }  # fmt: skip
        r = await stack.client.post("/v1/payments", json=body, headers=tenant.headers)
        assert r.status_code == 400, (change, r.text)
        assert r.json()["error"]["code"] == code, (change, r.json())
    jsapi = await create(stack, tenant, method="wechat_jsapi")
    assert jsapi.status_code == 400 and jsapi.json()["error"]["code"] == "customer_required"
    r = await stack.client.post("/v1/payments", content=b"{not json", headers=tenant.headers)
    assert r.status_code == 400
    r = await stack.client.get("/v1/payments", headers={"Authorization": "Bearer sk_test_nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = await stack.client.get("/v1/payments")
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    listed = await stack.client.get("/v1/payments?status=pending", headers=tenant.headers)
    assert listed.json()["data"] == []


async def test_duplicate_out_trade_no_is_a_conflict(stack: Stack, tenant: Tenant) -> None:
    first = await create(stack, tenant)
    body = {
        "amount": 5, "currency": "CNY", "method": "alipay_qr",
        "out_trade_no": first.json()["out_trade_no"], "subject": "again",
    }  # fmt: skip
    r = await stack.client.post("/v1/payments", json=body, headers=tenant.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "duplicate_out_trade_no"


# ------------------------------------------------------------------ idempotency
async def test_concurrent_creates_with_one_key_make_one_payment(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    body = {
        "amount": 4200, "currency": "CNY", "method": "alipay_qr", "out_trade_no": order_no(),
        "subject": "once",
    }  # fmt: skip
    headers = {**tenant.headers, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    responses = await asyncio.gather(
        *[stack.client.post("/v1/payments", json=body, headers=headers) for _ in range(20)]
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    listed = await stack.client.get("/v1/payments", headers=tenant.headers)
    assert len(listed.json()["data"]) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 19
    changed = await stack.client.post(
        "/v1/payments", json={**body, "amount": 4300}, headers=headers
    )
    assert changed.status_code == 409
    assert changed.json()["error"]["type"] == "idempotency_error"


# ------------------------------------------------------------------ the loop
async def test_pay_notify_succeed_and_webhook(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    endpoint = await stack.client.post(
        "/v1/webhook_endpoints",
        json={"url": f"http://merchant.test/{tenant.app_id}", "events": ["*"]},
        headers=tenant.headers,
    )
    assert endpoint.status_code == 201, endpoint.text
    secret = endpoint.json()["secret"]
    for method, channel in (("wechat_native", "wechatpay"), ("alipay_qr", "alipay")):
        payment = (await create(stack, tenant, method=method)).json()
        (attempt,) = await attempt_ids(stack, payment["id"])
        await pay(stack, channel, attempt)
        done = await wait_for(stack, tenant, payment["id"], "succeeded")
        assert done["paid_at"] and done["channel_trade_no"]
        assert len(await inbox_of(stack, attempt)) == 1
    await run_worker(stack)
    received = stack.receiver.for_path(f"/{tenant.app_id}")
    assert [json.loads(r.body)["type"] for r in received] == ["payment.succeeded"] * 2
    for r in received:
        verified = Webhook(secret).verify(r.body, r.headers)
        assert verified["data"]["object"]["status"] == "succeeded"


async def test_decline_is_learnt_and_failed(stack: Stack, tenant: Tenant) -> None:
    for method, channel in (("wechat_native", "wechatpay"), ("alipay_qr", "alipay")):
        payment = (await create(stack, tenant, method=method)).json()
        (attempt,) = await attempt_ids(stack, payment["id"])
        await pay(stack, channel, attempt, result="decline")
        await asyncio.sleep(0.05)
        # WeChat does not notify failures: the janitor's query learns it.
        await _advance_until(stack, tenant, payment["id"], {"failed", "closed"})


async def _advance_until(
    stack: Stack, tenant: Tenant, payment_id: str, statuses: set[str]
) -> dict[str, Any]:
    from paymux.kit import clock as kit_clock

    shifted = kit_clock.OffsetClock()
    previous = kit_clock.set_clock(shifted)
    try:
        for _ in range(8):
            r = await stack.client.get(f"/v1/payments/{payment_id}", headers=tenant.headers)
            if r.json()["status"] in statuses:
                return dict(r.json())
            shifted.advance(60)
            await run_worker(stack)
        raise AssertionError(f"payment stayed {r.json()['status']}")
    finally:
        kit_clock.set_clock(previous)


async def test_missing_notification_resolved_by_janitor(stack: Stack, tenant: Tenant) -> None:
    for method, channel in (("wechat_native", "wechatpay"), ("alipay_qr", "alipay")):
        subject = f"silent-{uuid.uuid4().hex[:8]}"
        stack.sandboxes[channel].core.add_script(
            Script(outcome=Outcome.succeed, notify=NotifyMode.none, subject=subject)
        )
        payment = (await create(stack, tenant, method=method, subject=subject)).json()
        done = await _advance_until(stack, tenant, payment["id"], {"succeeded"})
        assert done["channel_trade_no"]


async def test_create_error_leaves_unknown_then_failed(stack: Stack, tenant: Tenant) -> None:
    for method, channel in (("wechat_native", "wechatpay"), ("alipay_qr", "alipay")):
        subject = f"err-{uuid.uuid4().hex[:8]}"
        stack.sandboxes[channel].core.add_script(
            Script(outcome=Outcome.create_error, subject=subject)
        )
        r = await create(stack, tenant, method=method, subject=subject)
        assert r.status_code == 201, r.text
        assert r.json()["status"] in ("pending", "failed")
        done = await _advance_until(stack, tenant, r.json()["id"], {"failed"})
        assert done["failure"]["code"] in ("channel_error", "channel_unavailable")


async def test_duplicate_notifications_apply_once(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    for method, channel in (("wechat_native", "wechatpay"), ("alipay_qr", "alipay")):
        subject = f"dup-{uuid.uuid4().hex[:8]}"
        stack.sandboxes[channel].core.add_script(
            Script(outcome=Outcome.manual, notify=NotifyMode.none, subject=subject)
        )
        payment = (await create(stack, tenant, method=method, subject=subject)).json()
        (attempt,) = await attempt_ids(stack, payment["id"])
        core = stack.sandboxes[channel].core
        order = core.find(attempt)
        assert core.settle(order, paid=True)
        headers, body = await core.notification_for(order)
        url = f"/notify/{channel}/{tenant.accounts[channel]}"
        answers = await asyncio.gather(
            *[stack.client.post(url, content=body, headers=headers) for _ in range(10)]
        )
        assert all(200 <= a.status_code < 300 for a in answers), [a.text for a in answers]
        assert len(await inbox_of(stack, attempt)) == 1
        done = await wait_for(stack, tenant, payment["id"], "succeeded")
        assert done["status"] == "succeeded"
    assert len(await events_of(stack, tenant, "payment.succeeded")) == 2


async def test_a_notification_racing_the_customers_return_applies_once(stack: Stack) -> None:
    """A notification and the customer's returns (each asks the channel and applies the same
    success under the payment's lock) racing: one success, one posting, one event."""
    tenant = await make_tenant(stack)
    subject = f"race-{uuid.uuid4().hex[:8]}"
    core = stack.sandboxes["wechatpay"].core
    core.add_script(Script(outcome=Outcome.manual, notify=NotifyMode.none, subject=subject))
    payment = (await create(stack, tenant, method="wechat_native", subject=subject)).json()
    (attempt,) = await attempt_ids(stack, payment["id"])
    order = core.find(attempt)
    assert core.settle(order, paid=True)
    headers, body = await core.notification_for(order)
    url = f"/notify/wechatpay/{tenant.accounts['wechatpay']}"
    answers = await asyncio.gather(
        stack.client.post(url, content=body, headers=headers),
        *[stack.client.get(f"/pay/{payment['id']}/return") for _ in range(4)],
    )
    assert all(a.status_code < 400 for a in answers), [a.text for a in answers]
    done = await wait_for(stack, tenant, payment["id"], "succeeded")
    assert done["amount"] == payment["amount"]
    assert len(await events_of(stack, tenant, "payment.succeeded")) == 1
    async with stack.runtime.db.read() as session:
        postings = (
            await session.execute(
                sa.text("SELECT count(*) FROM ledger_transactions WHERE key = :k"),
                {"k": f"payment:{payment['id']}"},
            )
        ).scalar_one()
    assert postings == 1


async def test_forged_and_mismatched_notifications_change_nothing(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    for method, channel in (("wechat_native", "wechatpay"), ("alipay_qr", "alipay")):
        subject = f"forge-{uuid.uuid4().hex[:8]}"
        stack.sandboxes[channel].core.add_script(
            Script(outcome=Outcome.manual, notify=NotifyMode.none, subject=subject)
        )
        payment = (await create(stack, tenant, method=method, subject=subject)).json()
        (attempt,) = await attempt_ids(stack, payment["id"])
        core = stack.sandboxes[channel].core
        order = core.find(attempt)
        url = f"/notify/{channel}/{tenant.accounts[channel]}"
        order.status = order.status.__class__.succeeded
        # 1. a genuine notification with one byte changed
        headers, body = await core.notification_for(order)
        tampered = body.replace(b"1999", b"1") if b"1999" in body else body[:-2] + b"x}"
        r = await stack.client.post(url, content=tampered, headers=headers)
        assert 400 <= r.status_code < 500, r.text
        # 2. correctly signed by the channel, but about a different amount than ours
        order.amount = 1
        headers, body = await core.notification_for(order)
        r = await stack.client.post(url, content=body, headers=headers)
        assert 400 <= r.status_code < 500, r.text
        order.amount = 1999
        # 3. a genuine notification sent to another merchant's notify URL
        other = await make_tenant(stack)
        headers, body = await core.notification_for(order)
        r = await stack.client.post(
            f"/notify/{channel}/{other.accounts[channel]}", content=body, headers=headers
        )
        assert 400 <= r.status_code < 500, r.text
        # 4. an unknown account
        r = await stack.client.post(f"/notify/{channel}/chn_nope", content=body, headers=headers)
        assert r.status_code == 404
        # the mismatches are kept as rejected and applied nothing
        assert {e.result for e in await inbox_of(stack, attempt)} == {"rejected"}
        current = await stack.client.get(f"/v1/payments/{payment['id']}", headers=tenant.headers)
        assert current.json()["status"] == "pending"
    assert await events_of(stack, tenant) == []


async def test_notification_before_create_response(stack: Stack, tenant: Tenant) -> None:
    for method in ("wechat_native", "alipay_qr"):
        subject = f"early-{uuid.uuid4().hex[:8]}"
        channel = "wechatpay" if method.startswith("wechat") else "alipay"
        stack.sandboxes[channel].core.add_script(
            Script(outcome=Outcome.succeed, notify=NotifyMode.before_response, subject=subject)
        )
        r = await create(stack, tenant, method=method, subject=subject)
        assert r.status_code == 201
        done = await wait_for(stack, tenant, r.json()["id"], "succeeded")
        assert done["status"] == "succeeded"


# ------------------------------------------------------------------ close and expiry
async def test_close_closes_at_the_channel(stack: Stack, tenant: Tenant) -> None:
    for method, channel in (("wechat_native", "wechatpay"), ("alipay_qr", "alipay")):
        payment = (await create(stack, tenant, method=method)).json()
        (attempt,) = await attempt_ids(stack, payment["id"])
        r = await stack.client.post(f"/v1/payments/{payment['id']}/close", headers=tenant.headers)
        assert r.status_code == 200 and r.json()["status"] == "closed", r.text
        again = await stack.client.post(
            f"/v1/payments/{payment['id']}/close", headers=tenant.headers
        )
        assert again.json()["status"] == "closed"
        paid = await stack.client.post(
            f"/sandbox/{channel}/_sandbox/orders/{attempt}/pay", json={"result": "pay"}
        )
        assert paid.json()["changed"] is False
    closed = await events_of(stack, tenant, "payment.closed")
    assert len(closed) == 2


async def test_close_a_paid_payment_is_a_conflict(stack: Stack, tenant: Tenant) -> None:
    subject = f"paid-{uuid.uuid4().hex[:8]}"
    stack.sandboxes["alipay"].core.add_script(
        Script(outcome=Outcome.succeed, notify=NotifyMode.none, subject=subject)
    )
    payment = (await create(stack, tenant, method="alipay_qr", subject=subject)).json()
    r = await stack.client.post(f"/v1/payments/{payment['id']}/close", headers=tenant.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "payment_succeeded"
    now = await stack.client.get(f"/v1/payments/{payment['id']}", headers=tenant.headers)
    assert now.json()["status"] == "succeeded"
    r = await stack.client.post(f"/v1/payments/{payment['id']}/close", headers=tenant.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "payment_not_closable"


async def test_expiry_closes_at_the_channel(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    payment = (await create(stack, tenant, method="wechat_native", expires_in=60)).json()
    (attempt,) = await attempt_ids(stack, payment["id"])
    done = await _advance_until(stack, tenant, payment["id"], {"expired"})
    assert done["closed_at"]
    paid = await stack.client.post(
        f"/sandbox/wechatpay/_sandbox/orders/{attempt}/pay", json={"result": "pay"}
    )
    assert paid.json()["changed"] is False
    assert [e.type for e in await events_of(stack, tenant)] == ["payment.expired"]


async def test_hosted_page_shows_qr_and_status(stack: Stack, tenant: Tenant) -> None:
    payment = (await create(stack, tenant, method="alipay_qr")).json()
    page = await stack.client.get(f"/pay/{payment['id']}")
    assert page.status_code == 200 and "<svg" in page.text and "19.99" in page.text
    status = await stack.client.get(f"/pay/{payment['id']}/status")
    assert status.json()["status"] == "pending"
    assert (await stack.client.get("/pay/pay_unknown")).status_code == 404


async def test_a_paid_notification_reads_its_channel_account_once(stack: Stack) -> None:
    """The inbox reads the channel account to verify the notification; the success posting
    (which needs the account's fee rate) uses that copy instead of reading it again."""
    tenant = await make_tenant(stack)
    payment = (await create(stack, tenant, method="wechat_native")).json()
    (attempt,) = await attempt_ids(stack, payment["id"])
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    db = stack.runtime.db
    # PostgreSQL's read engine is the write engine with options: listening on the write engine
    # (last per pool) hears both.
    engines = {e.pool: e for e in (db.read_engine.sync_engine, db.engine.sync_engine)}.values()
    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", record)
    try:
        await pay(stack, "wechatpay", attempt)
        await wait_for(stack, tenant, payment["id"], "succeeded")
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", record)
    reads = [s for s in sent if s.lstrip().upper().startswith("SELECT") and
             "FROM channel_accounts" in s]  # fmt: skip
    assert len(reads) == 1, reads

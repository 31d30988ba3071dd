"""UnionPay end to end through the gateway, on SQLite and PostgreSQL: POST /v1/payments →
next_action (form / QR) → the sandbox's customer pays → signed back notification → payment
succeeded → refund → refund succeeded (by UnionPay's refund notification)."""

from __future__ import annotations

import html
import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from paymux.channels.unionpay import protocol as p
from tests.conftest import Stack, attempt_ids, make_tenant, run_worker
from tests.payments.test_payments import create, inbox_of, wait_for
from tests.refunds.test_refunds import refund, settled


def form_of(page: str) -> tuple[str, dict[str, str]]:
    action = re.search(r'action="([^"]+)"', page)
    assert action is not None
    fields = re.findall(r'name="([^"]+)" value="([^"]*)"', page)
    return html.unescape(action.group(1)), {k: html.unescape(v) for k, v in fields}


async def customer_pays(stack: Stack, attempt: str, result: str = "pay") -> None:
    r = await stack.client.post(
        f"/sandbox/unionpay/_sandbox/orders/{p.order_id(attempt)}/pay", json={"result": result}
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("method", ["unionpay_gateway", "unionpay_wap", "unionpay_qr"])
async def test_pay_and_refund_through_the_gateway(stack: Stack, method: str) -> None:
    tenant = await make_tenant(stack, channels=("unionpay",))
    endpoint = await stack.client.post(
        "/v1/webhook_endpoints", headers=tenant.headers,
        json={"url": f"http://merchant.test/{tenant.app_id}",
              "events": ["payment.succeeded", "refund.succeeded"]},
    )  # fmt: skip
    assert endpoint.status_code == 201
    r = await create(stack, tenant, method=method, amount=2500)
    assert r.status_code == 201, r.text
    payment = r.json()
    assert payment["channel"] == "unionpay" and payment["status"] == "pending"
    (attempt,) = await attempt_ids(stack, payment["id"])
    action = payment["next_action"]
    if method == "unionpay_qr":
        assert action["type"] == "qr_code"
        assert action["code_url"].endswith(f"/_sandbox/pay/{p.order_id(attempt)}")
    else:
        assert action["type"] == "form"
        url, fields = form_of(action["html"])
        assert url.endswith(p.FRONT_PATH) and fields["orderId"] == p.order_id(attempt)
        # The customer's browser submits the form; UnionPay shows its page.
        posted = await stack.client.post(urlsplit(url).path, data=fields)
        assert posted.status_code == 303, posted.text
    await customer_pays(stack, attempt)
    done = await wait_for(stack, tenant, payment["id"], "succeeded")
    assert done["amount"] == 2500
    events = await inbox_of(stack, attempt)
    assert [e.result for e in events] == ["applied"]

    r = await refund(stack, tenant, payment["id"], amount=1000)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["channel"] == "unionpay"
    final = await settled(stack, tenant, created["id"])
    assert final["status"] == "succeeded"
    after = (await stack.client.get(f"/v1/payments/{payment['id']}", headers=tenant.headers)).json()
    assert after["amount_refunded"] == 1000
    await run_worker(stack)
    bodies = [json.loads(x.body) for x in stack.receiver.for_path(f"/{tenant.app_id}")]
    assert [b["type"] for b in bodies] == ["payment.succeeded", "refund.succeeded"]


async def test_forged_and_replayed_notifications_change_nothing(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("unionpay",))
    first = (await create(stack, tenant, method="unionpay_qr", amount=100)).json()
    second = (await create(stack, tenant, method="unionpay_qr", amount=100)).json()
    (paid_attempt,) = await attempt_ids(stack, first["id"])
    (other_attempt,) = await attempt_ids(stack, second["id"])
    await customer_pays(stack, paid_attempt)
    await wait_for(stack, tenant, first["id"], "succeeded")
    sandbox: Any = stack.sandboxes["unionpay"]
    order = sandbox.core.find(p.order_id(paid_attempt))
    headers, body = await sandbox.core.notification_for(order)
    url = f"/notify/unionpay/{tenant.accounts['unionpay']}"
    replay = await stack.client.post(url, content=body, headers=headers)
    assert replay.status_code == 200  # a duplicate is acknowledged, applied once
    assert [e.result for e in await inbox_of(stack, paid_attempt)] == ["applied"]
    forged = body.replace(b"txnAmt=100", b"txnAmt=1")
    assert forged != body
    r = await stack.client.post(url, content=forged, headers=headers)
    assert r.status_code == 400
    # A genuine notification of another merchant's order, aimed at this account.
    other = await make_tenant(stack, channels=("unionpay",))
    r = await stack.client.post(
        f"/notify/unionpay/{other.accounts['unionpay']}", content=body, headers=headers
    )
    assert r.status_code == 400
    still = (await stack.client.get(f"/v1/payments/{second['id']}", headers=tenant.headers)).json()
    assert still["status"] == "pending" and other_attempt != paid_attempt

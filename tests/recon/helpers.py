"""Shared steps of the reconciliation tests: payments through the WeChat Pay sandbox, bill
tweaks, runs through the operator API."""

from __future__ import annotations

import datetime as dt
from typing import Any

from paymux.channels.wechatpay.bill import CHINA
from tests.conftest import Stack, Tenant, attempt_ids
from tests.payments.test_payments import create, wait_for

SANDBOX = "/sandbox/wechatpay/_sandbox"
OPERATOR = {"Authorization": "Bearer op_test_token_0123456789"}


def operator(actor: str = "alice") -> dict[str, str]:
    return {**OPERATOR, "Paymux-Actor": actor}


async def paid(
    stack: Stack, tenant: Tenant, *, amount: int = 2_000, notify: str = "normal",
    subject: str = "T-shirt",
) -> tuple[dict[str, Any], str]:  # fmt: skip
    """A payment paid at the channel; with ``notify="none"`` the channel never tells us (掉单):
    it stays pending here."""
    if notify == "none":
        r = await stack.client.post(f"{SANDBOX}/scripts", json={
            "outcome": "succeed", "notify": "none", "subject": subject})  # fmt: skip
        assert r.status_code == 200, r.text
    r = await create(stack, tenant, amount=amount, subject=subject)
    assert r.status_code == 201, r.text
    payment = r.json()
    (attempt,) = await attempt_ids(stack, payment["id"])
    if notify == "none":
        return payment, attempt
    r = await stack.client.post(f"{SANDBOX}/orders/{attempt}/pay", json={"result": "pay"})
    assert r.status_code == 200, r.text
    return await wait_for(stack, tenant, payment["id"], "succeeded"), attempt


def today() -> dt.date:
    from paymux.kit import clock

    return clock.now().astimezone(CHINA).date()


async def tweak(stack: Stack, day: dt.date, kind: str, **fields: Any) -> None:
    r = await stack.client.post(f"{SANDBOX}/bill_tweaks",
                                json={"day": day.isoformat(), "kind": kind, **fields})  # fmt: skip
    assert r.status_code == 200, r.text


async def reconcile(stack: Stack, tenant: Tenant, day: dt.date, actor: str = "alice") -> Any:
    body = {"channel_account_id": tenant.accounts["wechatpay"], "bill_date": day.isoformat()}
    r = await stack.client.post("/v1/operator/recon/runs", headers=operator(actor), json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def breaks(stack: Stack, tenant: Tenant, **query: Any) -> list[dict[str, Any]]:
    params = {"channel_account_id": tenant.accounts["wechatpay"], "limit": 100, **query}
    r = await stack.client.get("/v1/operator/recon/breaks", headers=OPERATOR, params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])

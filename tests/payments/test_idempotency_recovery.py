"""A retry after a crash gets its payment back (issue 10, item 4).

The crash is real as far as one process can make it: the create runs in a task, reaches the
channel (a sandbox scripted to hold its answer), and is cancelled there with the idempotency
kit's clean-up switched off — what a killed process leaves behind: the key reserved, the
payment and its attempt in the database, the answer never recorded. The clock then moves past
the lease and the client retries."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from paymux.channels.sandbox_kit import Outcome, SandboxCore, SandboxOrder, Script
from paymux.kit import idempotency
from paymux.kit.idempotency import IdempotencyRecord
from paymux.payments.models import Attempt, Payment
from tests.conftest import Stack, Tenant, make_tenant
from tests.payments.test_payments import order_no


async def _payment_rows(stack: Stack, tenant: Tenant, out_trade_no: str) -> list[Payment]:
    async with stack.runtime.db.read() as session:
        stmt = sa.select(Payment).where(
            Payment.app_id == tenant.app_id, Payment.out_trade_no == out_trade_no
        )
        return list((await session.scalars(stmt)).all())


async def _attempts(stack: Stack, payment_id: str) -> list[Attempt]:
    async with stack.runtime.db.read() as session:
        stmt = sa.select(Attempt).where(Attempt.payment_id == payment_id)
        return list((await session.scalars(stmt)).all())


def _orders(core: SandboxCore, subject: str) -> list[SandboxOrder]:
    return [o for o in core.orders.values() if o.subject == subject]


async def _crash_at_the_channel(
    stack: Stack, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, body: dict[str, Any],
    headers: dict[str, str], path: str = "/v1/payments",
) -> tuple[Payment, Attempt]:  # fmt: skip
    """Send the create (to ``path``: a payment or a wallet top-up), wait until the channel
    holds it, then kill it (no clean-up)."""
    core = stack.sandboxes["wechatpay"].core
    core.add_script(Script(outcome=Outcome.create_timeout, subject=body["subject"]))

    async def dead_process_cleans_nothing(db: Any, record_id: str) -> None:
        return None

    monkeypatch.setattr(idempotency, "_release", dead_process_cleans_nothing)
    request = asyncio.create_task(stack.client.post(path, json=body, headers=headers))
    for _ in range(500):
        if _orders(core, body["subject"]):
            break
        await asyncio.sleep(0.002)
    assert _orders(core, body["subject"]), "the create never reached the channel"
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    monkeypatch.undo()
    (payment,) = await _payment_rows(stack, tenant, body["out_trade_no"])
    (attempt,) = await _attempts(stack, payment.id)
    assert attempt.status == "created"  # the channel's answer was never recorded
    async with stack.runtime.db.read() as session:
        record = (
            await session.scalars(
                sa.select(IdempotencyRecord).where(
                    IdempotencyRecord.key == headers["Idempotency-Key"]
                )
            )
        ).one()
    assert record.status_code is None  # still reserved by the dead request
    return payment, attempt


def _request(tenant: Tenant) -> tuple[dict[str, Any], dict[str, str]]:
    body = {"amount": 2599, "currency": "CNY", "method": "wechat_native",
            "out_trade_no": order_no(), "subject": f"crash-{uuid.uuid4().hex[:10]}"}  # fmt: skip
    return body, {**tenant.headers, "Idempotency-Key": f"k-{uuid.uuid4()}"}


async def test_retry_after_a_crash_at_the_channel_gets_the_payment(
    stack: Stack, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await make_tenant(stack, channels=("wechatpay",))
    body, headers = _request(tenant)
    payment, attempt = await _crash_at_the_channel(stack, tenant, monkeypatch, body, headers)

    clock.advance(idempotency.LEASE_SECONDS + 1)
    retry = await stack.client.post("/v1/payments", json=body, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json()["id"] == payment.id
    # The channel has the order (pending): the answer the dead request got is lost, so the
    # payment is what the channel says, without a second order.
    assert retry.json()["status"] == "pending"
    assert [a.status for a in await _attempts(stack, payment.id)] == ["pending"]
    assert len(await _payment_rows(stack, tenant, body["out_trade_no"])) == 1
    assert len(_orders(stack.sandboxes["wechatpay"].core, body["subject"])) == 1

    again = await stack.client.post("/v1/payments", json=body, headers=headers)
    assert again.status_code == 201 and again.json()["id"] == payment.id
    assert again.headers.get("Idempotent-Replayed") == "true"

    changed = await stack.client.post(
        "/v1/payments", json={**body, "amount": 2600}, headers=headers
    )
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "idempotency_key_reused"
    other_key = {**tenant.headers, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    duplicate = await stack.client.post("/v1/payments", json=body, headers=other_key)
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "duplicate_out_trade_no"
    assert len(await _payment_rows(stack, tenant, body["out_trade_no"])) == 1
    assert len(_orders(stack.sandboxes["wechatpay"].core, body["subject"])) == 1


async def test_retry_after_a_crash_before_the_channel_sends_the_order_once(
    stack: Stack, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await make_tenant(stack, channels=("wechatpay",))
    body, headers = _request(tenant)
    payment, attempt = await _crash_at_the_channel(stack, tenant, monkeypatch, body, headers)
    core = stack.sandboxes["wechatpay"].core
    # The request was lost on the way: the channel never made the order.
    (lost,) = _orders(core, body["subject"])
    del core.orders[(lost.merchant_id, lost.out_trade_no)]
    for name in [n for n, o in core.by_trade_no.items() if o is lost]:
        del core.by_trade_no[name]

    clock.advance(idempotency.LEASE_SECONDS + 1)
    retry = await stack.client.post("/v1/payments", json=body, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json()["id"] == payment.id
    assert retry.json()["status"] == "pending"
    assert retry.json()["next_action"]["type"] == "qr_code"
    (sent,) = _orders(core, body["subject"])
    assert sent.out_trade_no == attempt.id  # the same attempt: the same order number
    assert [a.id for a in await _attempts(stack, payment.id)] == [attempt.id]
    assert len(await _payment_rows(stack, tenant, body["out_trade_no"])) == 1


async def test_a_retry_with_another_body_is_not_given_the_payment(
    stack: Stack, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reservation was released (or purged) after the crash: the key alone does not make
    the payment this request's, the body must match too."""
    tenant = await make_tenant(stack, channels=("wechatpay",))
    body, headers = _request(tenant)
    payment, _ = await _crash_at_the_channel(stack, tenant, monkeypatch, body, headers)
    async with stack.runtime.db.transaction() as session:
        await session.execute(
            sa.delete(IdempotencyRecord).where(IdempotencyRecord.key == headers["Idempotency-Key"])
        )
    changed = await stack.client.post(
        "/v1/payments", json={**body, "amount": 2600}, headers=headers
    )
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "duplicate_out_trade_no"
    (row,) = await _payment_rows(stack, tenant, body["out_trade_no"])
    assert (row.id, row.amount) == (payment.id, 2599)

"""A create's answer recorded after the channel's notification about the same order.

The create path records the common answer (the order is open, waiting for the customer) in
guarded UPDATEs without loading or locking rows first; when the customer paid so fast that the
notification was applied before the answer, those guards must fail and the answer be applied
under the payment's lock like any other — never undoing the success, never posting it twice."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from paymux.payments import service
from paymux.payments.models import Attempt
from paymux.routing.models import RoutingStat
from tests.conftest import Stack, make_tenant
from tests.payments.test_payments import create, events_of, pay


async def _attempt_status(stack: Stack, attempt_id: str) -> str:
    async with stack.runtime.db.read() as session:
        attempt = await session.get(Attempt, attempt_id)
        assert attempt is not None
        return attempt.status


@pytest.mark.parametrize(("method", "channel"), [("wechat_native", "wechatpay"),
                                                 ("alipay_qr", "alipay")])  # fmt: skip
async def test_a_notification_applied_before_the_create_answer_keeps_the_success(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, method: str, channel: str
) -> None:
    tenant = await make_tenant(stack)
    real_call = service._call_create

    async def paid_before_the_answer_is_recorded(rt: Any, payment: Any, attempt: Any,
                                                 *args: Any, **kwargs: Any) -> Any:  # fmt: skip
        outcome = await real_call(rt, payment, attempt, *args, **kwargs)
        assert outcome.kind == "created" and outcome.created.status.value == "pending"
        await pay(stack, channel, attempt.id)
        for _ in range(500):  # the sandbox notifies from a task of its own
            if await _attempt_status(stack, attempt.id) == "succeeded":
                break
            await asyncio.sleep(0.005)
        assert await _attempt_status(stack, attempt.id) == "succeeded"
        return outcome

    monkeypatch.setattr(service, "_call_create", paid_before_the_answer_is_recorded)
    answer = await create(stack, tenant, method=method)
    assert answer.status_code == 201, answer.text
    payment = answer.json()
    assert payment["status"] == "succeeded"
    async with stack.runtime.db.read() as session:
        attempts = (
            await session.scalars(sa.select(Attempt).where(Attempt.payment_id == payment["id"]))
        ).all()
        stats = (
            await session.scalars(
                sa.select(RoutingStat).where(
                    RoutingStat.account_id == tenant.accounts[channel], RoutingStat.method == method
                )
            )
        ).all()
    assert [a.status for a in attempts] == ["succeeded"]
    assert [e.type for e in await events_of(stack, tenant)] == ["payment.succeeded"]
    assert sum(s.accepted for s in stats) == 1 and sum(s.succeeded for s in stats) == 1
    funds = await stack.client.get(f"/v1/payments/{payment['id']}", headers=tenant.headers)
    assert funds.json()["funds"]["gross"] == payment["amount"]  # posted once, not twice


async def test_the_common_answer_opens_the_attempt_and_counts_the_call(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    payment = (await create(stack, tenant, method="wechat_native")).json()
    assert payment["status"] == "pending" and payment["next_action"]["type"] == "qr_code"
    async with stack.runtime.db.read() as session:
        (attempt,) = (
            await session.scalars(sa.select(Attempt).where(Attempt.payment_id == payment["id"]))
        ).all()
        stats = (
            await session.scalars(
                sa.select(RoutingStat).where(RoutingStat.account_id == attempt.channel_account_id)
            )
        ).all()
    assert attempt.status == "pending" and attempt.next_action == payment["next_action"]
    assert attempt.query_due_at is not None and attempt.channel_latency_ms is not None
    assert sum(s.accepted for s in stats) == 1 and sum(s.errors for s in stats) == 0


async def test_the_common_answer_writes_nothing_when_either_row_has_moved(stack: Stack) -> None:
    """``open_pending`` (one statement on PostgreSQL, two in SQLite's transaction) writes the
    payment and the attempt together or neither: an attempt no longer ``created``, or a
    payment no longer pending on it, leaves both as they were."""
    import datetime as dt

    from paymux.payments.models import Payment
    from paymux.payments.repository import PaymentRepository

    tenant = await make_tenant(stack)
    payment = (await create(stack, tenant, method="wechat_native")).json()
    async with stack.runtime.db.read() as session:
        (attempt,) = (
            await session.scalars(sa.select(Attempt).where(Attempt.payment_id == payment["id"]))
        ).all()
    due = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    changed = {"type": "redirect", "url": "https://example.invalid/changed"}

    async def try_open() -> bool:
        async with stack.runtime.db.statement() as session:
            return await PaymentRepository(session).open_pending(
                payment["id"], attempt.id, next_action=changed, channel_trade_no="other",
                latency_ms=1, query_due_at=due,
            )  # fmt: skip

    async def state() -> tuple[Any, ...]:
        async with stack.runtime.db.read() as session:
            p = await session.get(Payment, payment["id"], populate_existing=True)
            a = await session.get(Attempt, attempt.id, populate_existing=True)
            assert p is not None and a is not None
            return p.next_action, a.status, a.next_action, a.channel_trade_no

    before = await state()
    assert before[1] == "pending"  # the create's own answer opened it already
    assert await try_open() is False and await state() == before
    async with stack.runtime.db.transaction() as session:  # back to created, but the
        await session.execute(sa.update(Attempt).where(Attempt.id == attempt.id)  # payment
                              .values(status="created"))  # fmt: skip
        await session.execute(sa.update(Payment).where(Payment.id == payment["id"])  # moved on
                              .values(current_attempt_id=None))  # fmt: skip
    before = await state()
    assert await try_open() is False and await state() == before

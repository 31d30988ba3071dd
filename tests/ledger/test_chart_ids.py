"""The hot path names its ledger accounts by id without reading them: a paid notification posts
its money in one statement (no account read, no account lock) once the accounts are known, and
an account id is remembered only after the transaction that saw it committed."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from paymux.ledger import chart
from paymux.ledger.chart import Purpose
from paymux.ledger.models import LedgerAccount
from tests.conftest import Stack, attempt_ids, make_tenant
from tests.payments.test_payments import create, pay, wait_for


class Boom(Exception):
    pass


async def test_an_account_opened_by_a_rolled_back_transaction_is_not_remembered(
    stack: Stack,
) -> None:
    db = stack.runtime.db
    with pytest.raises(Boom):
        async with db.transaction() as session:
            gone = await chart.platform_account_id(session, False, Purpose.fee_revenue, "JPY")
            raise Boom
    async with db.transaction() as session:
        again = await chart.platform_account_id(session, False, Purpose.fee_revenue, "JPY")
    assert again != gone
    async with db.read() as session:
        assert await session.get(LedgerAccount, again) is not None
        assert await session.get(LedgerAccount, gone) is None
    async with db.transaction() as session:  # remembered now, and the same account
        assert await chart.platform_account_id(session, False, Purpose.fee_revenue, "JPY") == again
        account = await chart.platform(session, False, Purpose.fee_revenue, "JPY")
        assert (account.id, account.owner_id, account.purpose) == (again, "test", "fee_revenue")


async def test_a_paid_notification_posts_without_reading_ledger_accounts(stack: Stack) -> None:
    if stack.runtime.db.is_sqlite:
        pytest.skip("the one-statement posting is PostgreSQL's")
    tenant = await make_tenant(stack)

    async def paid() -> None:
        payment = (await create(stack, tenant, method="wechat_native")).json()
        (attempt,) = await attempt_ids(stack, payment["id"])
        await pay(stack, "wechatpay", attempt)
        await wait_for(stack, tenant, payment["id"], "succeeded")

    await paid()  # the first payment opens (and so reads) the merchant's accounts
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(" ".join(statement.split()))

    engine = stack.runtime.db.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        await paid()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    ledger = [s for s in sent if "ledger_accounts" in s or "INTO ledger_" in s]
    assert len(ledger) == 1 and ledger[0].startswith("WITH"), ledger

"""The daily job fetches each account's bill once the channel publishes it, and asks again
while the channel says it is not ready; the CLI drives the same code. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

from paymux.channels.wechatpay.bill import CHINA
from paymux.recon import service, tasks
from tests.conftest import Stack, make_tenant
from tests.recon.helpers import paid, today


def test_due_days_wait_for_the_publication_time() -> None:
    after = dt.timedelta(hours=10)
    before = dt.datetime(2026, 12, 2, 9, 59, tzinfo=CHINA)
    assert tasks.due_days(before, CHINA, after) == [dt.date(2026, 11, 29), dt.date(2026, 11, 30)]
    at = dt.datetime(2026, 12, 2, 10, 0, tzinfo=CHINA)
    assert tasks.due_days(at, CHINA, after)[-1] == dt.date(2026, 12, 1)
    utc = dt.datetime(2026, 12, 2, 2, 59, tzinfo=dt.UTC)
    assert tasks.due_days(utc, dt.UTC, dt.timedelta(hours=3))[-1] == dt.date(2026, 11, 30)


async def test_the_job_runs_each_published_day_once(stack: Stack, clock: Any) -> None:
    tenant = await make_tenant(stack, channels=("wechatpay",))
    account = tenant.accounts["wechatpay"]
    await paid(stack, tenant)
    day = today()
    early = await service.run(stack.runtime, account, day, actor="test")  # not published yet
    assert (early.status, early.verdict) == ("waiting", None)
    assert await tasks.reconcile_due(stack.runtime, only={account}) == 0  # the schedule is off
    now = dt.datetime.now(CHINA)
    publication = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(10, 5), tzinfo=CHINA)
    clock.advance((publication - now).total_seconds())
    ran = await tasks.reconcile_due(stack.runtime, only={account}, force=True)
    assert ran == 6  # the lookback's three days, each bill, the payment's among them
    assert await tasks.reconcile_due(stack.runtime, only={account}, force=True) == 0
    r = await stack.client.get("/v1/recon/runs", headers=tenant.headers,
                               params={"bill_date": day.isoformat(), "bill": "trade"})  # fmt: skip
    runs = r.json()["data"]
    assert [(x["run_no"], x["status"], x["verdict"]) for x in runs] == [
        (2, "done", "reconciled"), (1, "waiting", None)]  # fmt: skip
    # Its funds bill (资金账单) too, after the trade bill: the day's settlement is booked.
    r = await stack.client.get("/v1/recon/runs", headers=tenant.headers,
                               params={"bill_date": day.isoformat(), "bill": "funds"})  # fmt: skip
    (funds,) = r.json()["data"]
    assert (funds["run_no"], funds["verdict"]) == (1, "reconciled"), funds["reasons"]
    assert funds["totals"]["settlements"][0]["amount"] == 2_000 - 12


async def test_a_run_that_died_running_is_run_again(stack: Stack, clock: Any) -> None:
    from paymux.kit import clock as kit_clock
    from paymux.kit.ids import new_id
    from paymux.recon.models import ReconRun, RunStatus

    tenant = await make_tenant(stack, channels=("wechatpay",))
    account = tenant.accounts["wechatpay"]
    now = kit_clock.now()
    days = tasks.due_days(now, CHINA, dt.timedelta(hours=10))
    async with stack.runtime.db.transaction() as session:
        for n, day in enumerate(days):  # one died long ago, the others are running now
            started = now - (tasks.STALE_RUNNING * 2 if n == 0 else dt.timedelta(minutes=1))
            session.add(ReconRun(
                id=new_id("rcr"), channel_account_id=account,
                app_id=tenant.app_id, livemode=False, channel="wechatpay", bill_date=day,
                run_no=1, source="scheduled", status=RunStatus.running, reasons=[], problems=[],
                checks=[], totals={}, started_at=started, created_by="test",
            ))  # fmt: skip
    # The dead trade run's day again, and each day's funds bill (no run of it was started).
    assert await tasks.reconcile_due(stack.runtime, only={account}, force=True) == 1 + len(days)
    query = {"bill_date": days[0].isoformat(), "bill": "trade"}
    r = await stack.client.get("/v1/recon/runs", headers=tenant.headers, params=query)
    assert [(x["run_no"], x["status"]) for x in r.json()["data"]] == [(2, "done"), (1, "running")]

"""A reconciliation run end to end through the WeChat Pay sandbox: every break class the
sandbox can script, the 掉单 repair through a channel query (once: ledger and webhook), the
books bridge, verdicts, re-runs with the same break ids. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from paymux.funds.models import PaymentFunds
from paymux.ledger.models import LedgerTransaction
from paymux.refunds.models import Refund
from tests.conftest import Stack, make_tenant
from tests.payments.test_payments import events_of
from tests.recon.helpers import breaks, paid, reconcile, today, tweak
from tests.refunds.test_refunds import refund, settled


async def _ledger_keys(stack: Stack, prefix: str) -> list[str]:
    async with stack.runtime.db.read() as session:
        stmt = sa.select(LedgerTransaction.key).where(LedgerTransaction.key.like(f"{prefix}%"))
        return list(await session.scalars(stmt))


async def test_a_clean_day_is_reconciled(stack: Stack, clock: Any) -> None:
    tenant = await make_tenant(stack, channels=("wechatpay",))
    await paid(stack, tenant, amount=2_000)
    await paid(stack, tenant, amount=3_500)
    day = today()
    clock.advance(86_400)
    run = await reconcile(stack, tenant, day)
    assert run["verdict"] == "reconciled", run
    assert run["line_count"] == 2 and run["break_count"] == 0
    cny = run["totals"]["currencies"]["CNY"]
    assert cny["channel"]["amount"] == 5_500 and cny["matched"]["count"] == 2
    assert cny["books"] == cny["channel"]["net"] and cny["residual"] == 0
    assert {c["name"] for c in run["checks"]} >= {"sha1"} and all(c["ok"] for c in run["checks"])
    async with stack.runtime.db.read() as session:  # the books are read by the posting's id
        kept = (await session.execute(
            sa.select(PaymentFunds.posting_id, LedgerTransaction.id).join(
                LedgerTransaction, LedgerTransaction.key == "payment:" + PaymentFunds.payment_id)
            .where(PaymentFunds.app_id == tenant.app_id))).all()  # fmt: skip
    assert len(kept) == 2 and all(posting == tx for posting, tx in kept), kept
    metrics = (await stack.client.get("/metrics")).text
    assert 'paymux_recon_runs_total{channel="wechatpay",verdict="reconciled"}' in metrics
    assert f'paymux_recon_last_run_ok{{channel_account="{tenant.accounts["wechatpay"]}"}} 1.0' in (
        metrics
    )


async def test_an_empty_day_is_green_only_when_our_side_is_empty(stack: Stack, clock: Any) -> None:
    tenant = await make_tenant(stack, channels=("wechatpay",))
    day = today()
    clock.advance(86_400)
    assert (await reconcile(stack, tenant, day))["verdict"] == "reconciled"
    # Our payment of the next day that the channel's bill lacks (dropped from the file).
    _, attempt = await paid(stack, tenant)
    await tweak(stack, today(), "drop", out_trade_no=attempt)
    day = today()
    clock.advance(86_400)
    run = await reconcile(stack, tenant, day)
    assert run["verdict"] == "reconciled_with_pending", run  # within the 1-day grace period
    clock.advance(86_400)
    later = await reconcile(stack, tenant, day + dt.timedelta(days=1))
    assert later["verdict"] == "breaks", later
    (found,) = await breaks(stack, tenant)
    assert (found["class"], found["key"], found["priority"]) == ("local_only", attempt, 1)


async def test_missed_notification_is_repaired_once_through_a_channel_query(
    stack: Stack, clock: Any
) -> None:
    tenant = await make_tenant(stack, channels=("wechatpay",))
    payment, attempt = await paid(stack, tenant, notify="none", subject="dropped")
    assert payment["status"] == "pending"
    day = today()
    clock.advance(86_400)
    run = await reconcile(stack, tenant, day)
    assert run["verdict"] == "reconciled", run
    r = await stack.client.get(f"/v1/payments/{payment['id']}", headers=tenant.headers)
    assert r.json()["status"] == "succeeded"
    assert await _ledger_keys(stack, f"payment:{payment['id']}") == [f"payment:{payment['id']}"]
    assert len(await events_of(stack, tenant, "payment.succeeded")) == 1
    (found,) = await breaks(stack, tenant, state="resolved")
    assert (found["class"], found["resolution"]) == ("status_channel_success", "auto_repaired")
    again = await reconcile(stack, tenant, day)  # a re-run: nothing applied twice
    assert again["run_no"] == 2 and again["verdict"] == "reconciled"
    assert len(await events_of(stack, tenant, "payment.succeeded")) == 1
    assert await _ledger_keys(stack, f"payment:{payment['id']}") == [f"payment:{payment['id']}"]


async def test_every_scripted_discrepancy_is_its_break(stack: Stack, clock: Any) -> None:
    tenant = await make_tenant(stack, channels=("wechatpay",))
    day = today()
    _, over = await paid(stack, tenant, amount=1_000)
    _, dup = await paid(stack, tenant, amount=1_100)
    _, portal = await paid(stack, tenant, amount=1_200)
    _, fee = await paid(stack, tenant, amount=1_300)
    await tweak(stack, day, "amount", out_trade_no=over, amount=1_001)
    await tweak(stack, day, "duplicate", out_trade_no=dup)
    await tweak(stack, day, "extra_payment", amount=777)
    await tweak(stack, day, "extra_refund", out_trade_no=portal, amount=200)
    await tweak(stack, day, "fee", out_trade_no=fee, amount=99)
    clock.advance(86_400)
    run = await reconcile(stack, tenant, day)
    assert run["verdict"] == "breaks", run
    found = {(b["class"], b["key"] if b["class"] != "channel_only" else "-") for b in
             await breaks(stack, tenant)}  # fmt: skip
    assert {("amount_over", over), ("duplicate", dup), ("channel_only", "-"),
            ("fee_mismatch", fee)} <= found, found  # fmt: skip
    assert "refund_channel_only" in {c for c, _ in found}
    assert run["totals"]["currencies"]["CNY"]["residual"] == 0
    ids = {b["id"] for b in await breaks(stack, tenant)}
    again = await reconcile(stack, tenant, day)
    assert again["run_no"] == 2 and {b["id"] for b in await breaks(stack, tenant)} == ids


async def test_a_corrupt_summary_or_a_bad_row_is_never_green(stack: Stack, clock: Any) -> None:
    tenant = await make_tenant(stack, channels=("wechatpay",))
    day = today()
    await paid(stack, tenant)
    await tweak(stack, day, "corrupt_summary", amount=5)
    clock.advance(86_400)
    run = await reconcile(stack, tenant, day)
    assert run["verdict"] == "incomplete", run
    assert any(not c["ok"] for c in run["checks"])
    await stack.client.delete("/sandbox/wechatpay/_sandbox/bill_tweaks")
    await tweak(stack, day, "bad_row")
    run = await reconcile(stack, tenant, day)
    assert run["verdict"] == "incomplete" and len(run["problems"]) == 1, run


async def test_a_row_in_the_next_days_bill_is_carried_then_matched(
    stack: Stack, clock: Any
) -> None:
    tenant = await make_tenant(stack, channels=("wechatpay",))
    day = today()
    _, late = await paid(stack, tenant)
    await tweak(stack, day, "next_day", out_trade_no=late)
    clock.advance(2 * 86_400)
    first = await reconcile(stack, tenant, day)
    assert first["verdict"] == "reconciled_with_pending", (first["reasons"], first["checks"])
    second = await reconcile(stack, tenant, day + dt.timedelta(days=1))
    assert second["verdict"] == "reconciled", second
    assert second["totals"]["currencies"]["CNY"]["matched"]["count"] == 1


async def test_the_fee_a_refund_gets_back_is_booked_and_matches(stack: Stack, clock: Any) -> None:
    """WeChat Pay gives back a refund's share of the fee (a negative 手续费 on its bill row):
    the ledger books it with the refund, so a partial and a final refund both match."""
    tenant = await make_tenant(stack, channels=("wechatpay",))
    payment, _ = await paid(stack, tenant, amount=10_001)  # fee 60 (0.6 %, half up)
    for amount in (4_000, 6_001):
        back = (await refund(stack, tenant, payment["id"], amount=amount)).json()
        assert (await settled(stack, tenant, back["id"]))["status"] == "succeeded"
    async with stack.runtime.db.read() as session:
        rows = (await session.execute(sa.select(Refund.amount, Refund.fee_returned).where(
            Refund.payment_id == payment["id"]).order_by(Refund.amount))).all()  # fmt: skip
    assert [tuple(r) for r in rows] == [(4_000, 24), (6_001, 36)]  # all of the fee, no more
    day = today()
    clock.advance(86_400)
    run = await reconcile(stack, tenant, day)
    cny = run["totals"]["currencies"]["CNY"]
    assert run["verdict"] == "reconciled", (run["reasons"], cny)
    assert cny["channel"]["amount"] == 0 and cny["channel"]["fee"] == 0 and cny["books"] == 0

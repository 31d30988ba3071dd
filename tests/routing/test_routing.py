"""Routing through the real create loop and database (SQLite and PostgreSQL): failover
safety, explanations in the API, daily limits, breakers, rules edited at run time."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from paymux.channel_accounts import service as channel_service
from paymux.channels import base
from paymux.kit import clock as kit_clock
from paymux.merchants.models import Mode
from paymux.payments import transitions
from paymux.payments.repository import PaymentRepository
from paymux.routing import service as routing
from paymux.routing.models import RoutingBreaker
from paymux.routing.repository import RoutingRepository
from tests.conftest import GATEWAY, Stack, Tenant, make_tenant
from tests.routing import scripted
from tests.routing.scripted import METHOD, SCRIPT


@pytest.fixture(autouse=True)
def _scripted_channel() -> Iterator[None]:
    yield from scripted.registered()
    routing.clear_caches()


async def tenant_with(
    stack: Stack, *labels: str, strategy: str = "priority"
) -> tuple[Tenant, list[str]]:
    """A tenant with one scripted account per label (priority in the given order)."""
    tenant = await make_tenant(stack, channels=())
    ids = []
    async with stack.runtime.db.transaction() as session:
        for number, label in enumerate(labels):
            account = await channel_service.add_account(
                session,
                stack.runtime.vault,
                app_id=tenant.app_id,
                channel="routetest",
                mode=Mode.test,
                credentials={"label": label},
                priority=number + 1,
                fee_rate_bps=60 - 10 * number,
            )
            ids.append(account.id)
    r = await stack.client.patch(
        "/v1/routing/settings", headers=tenant.headers, json={"strategy": strategy}
    )
    assert r.status_code == 200, r.text
    return tenant, ids


def labels(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"{tag}-{i}" for i in range(n)]


async def pay(stack: Stack, tenant: Tenant, **extra: Any) -> Any:
    body = {
        "amount": 1000,
        "method": METHOD,
        "subject": "routing test",
        "out_trade_no": uuid.uuid4().hex[:20],
        **extra,
    }
    return await stack.client.post("/v1/payments", headers=tenant.headers, json=body)


async def attempts(stack: Stack, tenant: Tenant, payment_id: str) -> list[dict[str, Any]]:
    r = await stack.client.get(
        f"/v1/payments/{payment_id}", headers=tenant.headers, params={"expand": "attempts"}
    )
    assert r.status_code == 200, r.text
    return list(r.json()["attempts"])


# ------------------------------------------------------------------ failover safety
async def test_retryable_error_fails_over_and_the_api_explains(stack: Stack) -> None:
    a, b = labels(2)
    tenant, (ida, idb) = await tenant_with(stack, a, b)
    SCRIPT[a] = ["retryable"]
    r = await pay(stack, tenant)
    assert r.status_code == 201, r.text
    payment = r.json()
    assert payment["status"] == "pending" and payment["channel_account"] == idb
    first, second = await attempts(stack, tenant, payment["id"])
    assert (first["channel_account"], first["status"], first["error_code"]) == (
        ida,
        "failed",
        "connect_error",
    )
    assert first["routing"]["chosen"] == ida and first["routing"]["attempt"] == 1
    assert {c["account"] for c in first["routing"]["candidates"]} == {ida, idb}
    assert second["routing"]["chosen"] == idb
    assert second["routing"]["failover_from"] == [
        {"account": ida, "kind": "retryable", "code": "connect_error"}
    ]
    assert "priority" in second["routing"]["why"]
    # Without expand, no attempts are listed.
    plain = await stack.client.get(f"/v1/payments/{payment['id']}", headers=tenant.headers)
    assert plain.json()["attempts"] is None


async def test_limit_or_risk_decline_fails_over_but_a_plain_decline_is_final(
    stack: Stack,
) -> None:
    a, b = labels(2)
    tenant, (_ida, idb) = await tenant_with(stack, a, b)
    SCRIPT[a] = ["routable", "decline"]
    moved = (await pay(stack, tenant)).json()
    assert moved["status"] == "pending" and moved["channel_account"] == idb
    final = (await pay(stack, tenant)).json()
    assert final["status"] == "failed" and final["failure"]["code"] == "invalid_request"
    assert len(await attempts(stack, tenant, final["id"])) == 1


async def test_unknown_outcome_is_never_retried_elsewhere(stack: Stack) -> None:
    a, b = labels(2)
    tenant, _ = await tenant_with(stack, a, b)
    SCRIPT[a] = ["unknown"]
    payment = (await pay(stack, tenant)).json()
    assert payment["status"] == "pending"
    (only,) = await attempts(stack, tenant, payment["id"])
    assert only["status"] == "unknown"
    assert b not in scripted.CALLS


async def test_time_budget_stops_failover(stack: Stack) -> None:
    a, b = labels(2)
    tenant, _ = await tenant_with(stack, a, b)
    SCRIPT[a] = ["slow"]
    settings = stack.runtime.settings
    previous = settings.routing_failover_budget_seconds
    settings.routing_failover_budget_seconds = 0.0
    try:
        payment = (await pay(stack, tenant)).json()
    finally:
        settings.routing_failover_budget_seconds = previous
    assert payment["status"] == "failed"
    assert payment["failure"]["code"] == "channel_unavailable"
    assert b not in scripted.CALLS


async def test_every_candidate_failing_fails_the_one_payment(stack: Stack) -> None:
    a, b = labels(2)
    tenant, _ = await tenant_with(stack, a, b)
    SCRIPT[a], SCRIPT[b] = ["retryable"], ["routable"]
    payment = (await pay(stack, tenant)).json()
    # The customer sees one payment, failed with the last channel's reason.
    assert payment["status"] == "failed" and payment["failure"]["code"] == "channel_limit"
    assert [x["status"] for x in await attempts(stack, tenant, payment["id"])] == [
        "failed",
        "failed",
    ]


async def test_real_adapter_refused_connection_fails_over(stack: Stack) -> None:
    """The WeChat Pay adapter classifies a refused connection as retryable: the next WeChat
    account takes the payment."""
    tenant = await make_tenant(stack, channels=())
    sandbox = stack.sandboxes["wechatpay"]
    async with stack.runtime.db.transaction() as session:
        ids = []
        for number, gateway in enumerate(
            ("http://127.0.0.1:9/sandbox/wechatpay", f"{GATEWAY}/sandbox/wechatpay")
        ):
            creds = sandbox.provision(f"{GATEWAY}/sandbox/wechatpay")
            creds["gateway"] = gateway
            account = await channel_service.add_account(
                session,
                stack.runtime.vault,
                app_id=tenant.app_id,
                channel="wechatpay",
                mode=Mode.test,
                credentials=creds,
                priority=number,
            )
            ids.append(account.id)
    r = await pay(stack, tenant, method="wechat_native")
    assert r.status_code == 201, r.text
    assert r.json()["channel_account"] == ids[1]
    first, _ = await attempts(stack, tenant, r.json()["id"])
    assert first["status"] == "failed" and first["error_code"] == "connect_error"


# ------------------------------------------------------------------ daily limits
async def test_daily_limits_counted_and_released(stack: Stack) -> None:
    a, b = labels(2)
    tenant, (ida, idb) = await tenant_with(stack, a, b)
    r = await stack.client.patch(
        f"/v1/routing/accounts/{ida}",
        headers=tenant.headers,
        json={"daily_count_limit": 2, "daily_amount_limit": 5000},
    )
    assert r.status_code == 200, r.text
    SCRIPT[a] = ["routable", "ok"]
    first = (await pay(stack, tenant)).json()  # a refuses: its reservation is given back
    assert first["channel_account"] == idb
    used = [(await pay(stack, tenant)).json()["channel_account"] for _ in range(3)]
    assert used == [ida, ida, idb]
    day = routing.china_day(kit_clock.now())
    async with stack.runtime.db.read() as session:
        usage = await RoutingRepository(session).usage(ida, day)
    assert usage is not None and (usage.count, usage.amount) == (2, 2000)
    # Amount limit: 4000 > what is left (3000) goes elsewhere.
    big = (await pay(stack, tenant, amount=4000)).json()
    assert big["channel_account"] == idb
    bad = await stack.client.patch(
        f"/v1/routing/accounts/{ida}",
        headers=tenant.headers,
        json={"min_amount": 10, "max_amount": 5},
    )
    assert bad.status_code == 400


async def test_concurrent_reservations_never_exceed_the_limit(stack: Stack) -> None:
    account = f"chn_{uuid.uuid4().hex[:12]}"
    day = dt.date(2026, 11, 25)

    async def reserve() -> bool:
        async with stack.runtime.db.transaction() as session:
            return await RoutingRepository(session).reserve(
                account, day, 300, max_count=5, max_amount=1200
            )

    results = await asyncio.gather(*(reserve() for _ in range(12)))
    assert results.count(True) == 4  # the amount limit (4 × 300 = 1200) binds first
    async with stack.runtime.db.read() as session:
        usage = await RoutingRepository(session).usage(account, day)
    assert usage is not None and (usage.count, usage.amount) == (4, 1200)


async def test_maintenance_window_keeps_an_account_out(stack: Stack) -> None:
    a, b = labels(2)
    tenant, (ida, idb) = await tenant_with(stack, a, b)
    now = kit_clock.now().astimezone(dt.timezone(dt.timedelta(hours=8))).replace(tzinfo=None)
    window = {
        "start": (now - dt.timedelta(hours=1)).isoformat(),
        "end": (now + dt.timedelta(hours=1)).isoformat(),
    }
    r = await stack.client.patch(
        f"/v1/routing/accounts/{ida}", headers=tenant.headers, json={"maintenance": [window]}
    )
    assert r.status_code == 200, r.text
    payment = (await pay(stack, tenant)).json()
    assert payment["channel_account"] == idb
    (attempt,) = await attempts(stack, tenant, payment["id"])
    out = {c["account"]: c.get("excluded") for c in attempt["routing"]["candidates"]}
    assert out[ida] == "in_maintenance"
    bad = await stack.client.patch(
        f"/v1/routing/accounts/{ida}",
        headers=tenant.headers,
        json={"maintenance": [{"start": "25:00", "end": "x"}]},
    )
    assert bad.status_code == 400


# ------------------------------------------------------------------ breakers
async def _breaker(stack: Stack, account_id: str) -> RoutingBreaker | None:
    async with stack.runtime.db.read() as session:
        found = await RoutingRepository(session).breakers([account_id])
    return found[0] if found else None


async def test_breaker_opens_half_opens_and_closes_or_reopens(stack: Stack, clock: Any) -> None:
    a, b = labels(2)
    tenant, (ida, idb) = await tenant_with(stack, a, b)
    SCRIPT[a] = ["retryable"] * 5 + ["retryable", "ok"]
    for _ in range(routing.BREAKER_CONSECUTIVE):
        assert (await pay(stack, tenant)).json()["channel_account"] == idb
    breaker = await _breaker(stack, ida)
    assert breaker is not None and breaker.state == "open"
    calls = len(scripted.CALLS)
    skipped = (await pay(stack, tenant)).json()
    assert skipped["channel_account"] == idb and len(scripted.CALLS) == calls + 1
    (attempt,) = await attempts(stack, tenant, skipped["id"])
    assert {c["account"]: c.get("excluded") for c in attempt["routing"]["candidates"]}[
        ida
    ] == "breaker_open"
    # Cooldown over: one probe goes through; it fails, so the breaker opens again.
    clock.advance(31)
    probed = (await pay(stack, tenant)).json()
    first = (await attempts(stack, tenant, probed["id"]))[0]
    assert first["channel_account"] == ida and "breaker probe" in first["routing"]["why"]
    assert (await _breaker(stack, ida)).state == "open"  # type: ignore[union-attr]
    # Next probe succeeds: closed, and the account takes traffic again.
    clock.advance(31)
    assert (await pay(stack, tenant)).json()["channel_account"] == ida
    assert (await _breaker(stack, ida)).state == "closed"  # type: ignore[union-attr]
    assert (await pay(stack, tenant)).json()["channel_account"] == ida


async def test_exactly_one_probe_under_concurrency(stack: Stack) -> None:
    account = f"chn_{uuid.uuid4().hex[:12]}"
    now = kit_clock.now()
    async with stack.runtime.db.transaction() as session:
        row = await RoutingRepository(session).breaker_for_update(account)
        row.state, row.opened_at = "open", now - dt.timedelta(minutes=5)

    async def claim() -> bool:
        async with stack.runtime.db.transaction() as session:
            return await RoutingRepository(session).claim_probe(
                account, kit_clock.now(), kit_clock.now() - dt.timedelta(seconds=30)
            )

    results = await asyncio.gather(*(claim() for _ in range(10)))
    assert results.count(True) == 1
    assert (await _breaker(stack, account)).state == "half_open"  # type: ignore[union-attr]


# ------------------------------------------------------------------ rules at run time
async def test_rules_api_validates_and_edits_apply_without_restart(stack: Stack) -> None:
    a, b, c = labels(3)
    tenant, (ida, idb, idc) = await tenant_with(stack, a, b, c)
    h = tenant.headers
    for bad, code in (
        ({"action": {"type": "pin", "targets": ["chn_nope"]}}, "unknown_target"),
        ({"action": {"type": "pin", "targets": [ida, idb]}}, "parameter_invalid"),
        ({"action": {"type": "weighted", "targets": [ida], "weights": [0]}}, "parameter_invalid"),
        (
            {"conditions": {"amount_min": 5, "amount_max": 1}, "action": {"type": "score"}},
            "parameter_invalid",
        ),
        (
            {"conditions": {"methods": ["no_such"]}, "action": {"type": "score"}},
            "unsupported_method",
        ),
    ):
        r = await stack.client.post("/v1/routing/rules", headers=h, json=bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == code, r.text
    assert (await stack.client.get("/v1/routing/rules", headers=h)).json()["data"] == []
    r = await stack.client.post(
        "/v1/routing/rules",
        headers=h,
        json={
            "name": "big to c",
            "conditions": {"amount_min": 5000},
            "action": {"type": "pin", "targets": [idc]},
        },
    )
    assert r.status_code == 201, r.text
    big_rule = r.json()
    r = await stack.client.post(
        "/v1/routing/rules",
        headers=h,
        json={
            "name": "rest to b",
            "position": 0,
            "conditions": {"amount_max": 4999},
            "action": {"type": "priority", "targets": [idb]},
        },
    )
    small_rule = r.json()
    listed = (await stack.client.get("/v1/routing/rules", headers=h)).json()["data"]
    assert [x["name"] for x in listed] == ["rest to b", "big to c"]
    assert listed[0]["version"] > big_rule["version"] - 1
    assert (await pay(stack, tenant, amount=9000)).json()["channel_account"] == idc
    assert (await pay(stack, tenant)).json()["channel_account"] == idb
    r = await stack.client.put(
        f"/v1/routing/rules/{small_rule['id']}",
        headers=h,
        json={
            "name": "rest to a",
            "conditions": {"amount_max": 4999},
            "action": {"type": "pin", "targets": [ida]},
        },
    )
    assert r.status_code == 200 and r.json()["version"] > small_rule["version"]
    payment = (await pay(stack, tenant)).json()
    assert payment["channel_account"] == ida
    (attempt,) = await attempts(stack, tenant, payment["id"])
    assert attempt["routing"]["rule"]["name"] == "rest to a"
    r = await stack.client.delete(f"/v1/routing/rules/{small_rule['id']}", headers=h)
    assert r.status_code == 200
    assert (
        await stack.client.delete(f"/v1/routing/rules/{small_rule['id']}", headers=h)
    ).status_code == 404
    # Default order again (static priority in this tenant): a first.
    assert (await pay(stack, tenant)).json()["channel_account"] == ida
    other, _ = await tenant_with(stack, *labels(1))
    assert (await stack.client.get("/v1/routing/rules", headers=other.headers)).json()["data"] == []


async def test_request_channel_override_beats_rules(stack: Stack) -> None:
    a, b = labels(2)
    tenant, (ida, idb) = await tenant_with(stack, a, b)
    await stack.client.post(
        "/v1/routing/rules",
        headers=tenant.headers,
        json={"action": {"type": "pin", "targets": [idb]}},
    )
    assert (await pay(stack, tenant, channel=ida)).json()["channel_account"] == ida
    assert (await pay(stack, tenant)).json()["channel_account"] == idb


async def test_returning_customer_goes_to_last_successful_account(stack: Stack) -> None:
    a, b = labels(2)
    tenant, (ida, idb) = await tenant_with(stack, a, b)
    await stack.client.post(
        "/v1/routing/rules",
        headers=tenant.headers,
        json={
            "conditions": {"customer_type": "returning"},
            "action": {"type": "priority", "targets": ["$last"]},
        },
    )
    customer = {"id": f"cus_{uuid.uuid4().hex[:8]}"}
    first = (await pay(stack, tenant, customer=customer, channel=idb)).json()
    assert (await pay(stack, tenant, customer=customer)).json()["channel_account"] == ida
    async with stack.runtime.db.transaction() as session:
        repo = PaymentRepository(session)
        payment = await repo.lock(first["id"])
        attempt = await repo.get_attempt(payment.current_attempt_id or "")
        assert attempt is not None
        state = base.PaymentState(
            out_trade_no=attempt.id, status=base.ChannelPaymentStatus.succeeded,
            amount=attempt.amount, currency=attempt.currency,
        )  # fmt: skip
        await transitions.apply_state(session, payment, attempt, state, GATEWAY)
    again = (await pay(stack, tenant, customer=customer)).json()
    assert again["channel_account"] == idb
    # The success was counted for scoring.
    async with stack.runtime.db.read() as session:
        rows = await session.execute(
            sa.text("SELECT sum(succeeded) FROM routing_stats WHERE account_id = :a"),
            {"a": idb},
        )
        assert rows.scalar() == 1


async def test_the_breaker_counts_good_calls_in_its_rate_window(stack: Stack, clock: Any) -> None:
    """Good calls on a closed breaker are counted (one UPDATE each) in the error rate's
    denominator, in a window that starts again after a minute; errors never five in a row
    then trip it by rate only once they are half of the window's calls."""
    tenant = await make_tenant(stack, channels=("wechatpay",))
    account = tenant.accounts["wechatpay"]

    async def calls(ok: bool, n: int) -> RoutingBreaker:
        for _ in range(n):
            async with stack.runtime.db.transaction() as session:
                await routing.record_call(session, app_id=tenant.app_id, account_id=account,
                                          method=METHOD, ok=ok, accepted=ok,
                                          latency_ms=5)  # fmt: skip
        async with stack.runtime.db.read() as session:
            breaker = await session.get(RoutingBreaker, account)
            assert breaker is not None
            return breaker

    breaker = await calls(True, 19)
    assert (breaker.window_total, breaker.window_errors, breaker.state) == (19, 0, "closed")
    clock.advance(61)  # the window has run out: the next good call starts a new one
    breaker = await calls(True, 1)
    assert (breaker.window_total, breaker.window_errors) == (1, 0)
    goods, errors = 1 + 9, 0
    breaker = await calls(True, 9)
    while breaker.state == "closed" and errors < 100:
        breaker = await calls(False, 1)
        errors += 1
        if breaker.state == "closed" and errors % 4 == 0:
            breaker = await calls(True, 1)
            goods += 1
    assert breaker.state == "open"
    assert (breaker.window_total, breaker.window_errors) == (goods + errors, errors)
    assert errors / (goods + errors) >= routing.BREAKER_RATE
    assert (errors - 1) / (goods + errors - 1) < routing.BREAKER_RATE  # not one error sooner


async def test_success_counts_land_after_the_commit_and_never_after_a_rollback(
    stack: Stack,
) -> None:
    """Counters every request bumps are written after the caller's commit, in a transaction of
    their own (their rows would otherwise queue every concurrent payment); a rolled-back
    transaction counts nothing."""
    from paymux.routing.models import RoutingStat

    tenant = await make_tenant(stack, channels=("wechatpay",))
    account = tenant.accounts["wechatpay"]

    async def succeeded() -> int:
        async with stack.runtime.db.read() as session:
            rows = (await session.scalars(
                sa.select(RoutingStat).where(RoutingStat.account_id == account))).all()  # fmt: skip
            return sum(r.succeeded for r in rows)

    with pytest.raises(RuntimeError):
        async with stack.runtime.db.transaction() as session:
            await routing.record_success(session, account_id=account, method=METHOD)
            raise RuntimeError("the payment's transaction fails")
    assert await succeeded() == 0
    async with stack.runtime.db.transaction() as session:
        await routing.record_success(session, account_id=account, method=METHOD)
        assert await succeeded() == 0  # not before the commit
    assert await succeeded() == 1


async def test_another_processes_edits_apply_rules_by_version_accounts_at_once(
    stack: Stack, clock: Any
) -> None:
    """Edits written by another process (straight to the database: this process's caches are
    not told): a rule within RULES_TTL through the version bump, an account row's routing
    fields on the next payment."""
    from paymux.channel_accounts.models import ChannelAccount
    from paymux.routing.models import RoutingRule, RoutingSettings

    a, b = labels(2)
    tenant, (ida, idb) = await tenant_with(stack, a, b)
    assert (await pay(stack, tenant)).json()["channel_account"] == ida  # caches are warm
    async with stack.runtime.db.transaction() as session:
        session.add(
            RoutingRule(
                id=f"rr_{uuid.uuid4().hex[:20]}", app_id=tenant.app_id, livemode=False,
                position=0, name="to b", enabled=True, conditions={},
                action={"type": "pin", "targets": [idb]},
            )
        )  # fmt: skip
        await session.execute(
            sa.update(RoutingSettings)
            .where(RoutingSettings.app_id == tenant.app_id, RoutingSettings.livemode.is_(False))
            .values(version=RoutingSettings.version + 1)
        )
    clock.advance(routing.RULES_TTL.total_seconds() + 0.5)
    payment = (await pay(stack, tenant)).json()
    assert payment["channel_account"] == idb
    (attempt,) = await attempts(stack, tenant, payment["id"])
    assert attempt["routing"]["rule"]["name"] == "to b"
    # An account row edited elsewhere bumps no rules version: it counts at once all the same.
    local = kit_clock.now().astimezone(dt.timezone(dt.timedelta(hours=8)))
    window = {"start": f"{local.hour:02d}:00", "end": f"{(local.hour + 1) % 24:02d}:00"}
    async with stack.runtime.db.transaction() as session:
        await session.execute(
            sa.update(ChannelAccount).where(ChannelAccount.id == idb).values(maintenance=[window])
        )
    r = await pay(stack, tenant)
    assert r.status_code == 400 and "in_maintenance" in r.json()["error"]["message"], r.text

"""Every rule family of the product brief decided on real payments, on SQLite and PostgreSQL:
the IP's region from the offline database against a list, unusual hours, a new customer with a
large amount, one device with many customers (links), and velocity counters exact under 50
concurrent payments (the counters are written in each payment's own transaction)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from paymux.kit import clock
from tests.conftest import Stack, make_tenant
from tests.payments.test_payments import create
from tests.risk.test_decisions import decision, publish, rule
from tests.risk.test_lists import new_list


async def test_ip_region_against_a_list(stack: Stack) -> None:
    shop = await make_tenant(stack)
    regions = await new_list(stack, shop.headers, "blocked_regions", "region")
    r = await stack.client.post(
        f"/v1/risk/lists/{regions['id']}/items",
        headers=shop.headers,
        json={"items": [{"value": "HK", "reason": "not served"}]},
    )
    assert r.status_code == 200, r.text
    await publish(stack, shop.headers, [rule("region", 'ip.region in list("blocked_regions")',
                                             "block")])  # fmt: skip
    assert (await create(stack, shop, client_ip="198.51.100.200")).status_code == 402  # HK
    ok = await create(stack, shop, client_ip="198.51.100.7")  # CN-31
    assert ok.status_code == 201, ok.text
    seen = await decision(stack, shop, ok.json()["risk"]["decision"])
    assert seen["features"]["ip_region"] == "CN-31"


async def test_unusual_hours_and_a_new_customer_with_a_large_amount(stack: Stack) -> None:
    shop = await make_tenant(stack)
    await publish(stack, shop.headers, [
        rule("night", "local_hour >= 1 && local_hour < 6", "score", score=30),
        rule("new_and_big", "customer.is_new && amount >= 100000", "score", score=30),
        rule("known_customer", "customer.has_paid", "allow"),
    ])  # fmt: skip
    night = dt.datetime(2026, 12, 7, 19, 30, tzinfo=dt.UTC)  # 03:30 in China
    previous = clock.set_clock(clock.FrozenClock(night))
    try:
        r = await create(stack, shop, amount=100000, customer={"id": "new-1"})
        assert r.json()["risk"]["outcome"] == "review", r.text  # 30 + 30 ≥ 50
        seen = await decision(stack, shop, r.json()["risk"]["decision"])
        assert (seen["features"]["local_hour"], seen["features"]["customer.is_new"]) == (3, True)
        old = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).isoformat()  # the merchant knows better
        r = await create(stack, shop, amount=100000, customer={"id": "old-1"},
                         risk={"account_created_at": old})  # fmt: skip
        assert r.json()["risk"]["outcome"] == "allow", r.text  # the hour alone: 30 < 50
        clock.set_clock(clock.FrozenClock(night + dt.timedelta(days=2)))  # new-1 seen before
        r = await create(stack, shop, amount=100000, customer={"id": "new-1"})
        seen = await decision(stack, shop, r.json()["risk"]["decision"])
        assert (seen["features"]["customer.is_new"], seen["features"]["customer.age_days"],
                seen["features"]["customer.has_paid"]) == (False, 2, False)  # fmt: skip
        assert r.json()["risk"]["outcome"] == "allow", r.text
    finally:
        clock.set_clock(previous)


async def test_one_device_with_many_customers(stack: Stack) -> None:
    shop = await make_tenant(stack)
    await publish(stack, shop.headers, [
        rule("farm", "distinct_customers_per_device_24h >= 3", "block"),
    ])  # fmt: skip
    device = "dev-" + uuid.uuid4().hex[:8]
    for n in range(3):
        r = await create(stack, shop, customer={"id": f"acct-{n}"}, risk={"device_id": device})
        assert r.status_code == 201, r.text
    r = await create(stack, shop, customer={"id": "acct-0"}, risk={"device_id": device})
    assert r.status_code == 402, r.text  # a fourth payment: three accounts seen on it
    r = await create(stack, shop, customer={"id": "acct-9"}, risk={"device_id": "other"})
    assert r.status_code == 201, r.text


async def test_velocity_is_exact_under_50_concurrent_payments(stack: Stack) -> None:
    shop = await make_tenant(stack)
    await publish(stack, shop.headers, [
        rule("watch", "count_payments_merchant_1h >= 0 && sum_payments_device_1h >= 0",
             "score", score=1),
    ])  # fmt: skip
    device = "dev-" + uuid.uuid4().hex[:8]
    made = await asyncio.gather(*(create(stack, shop, amount=100 + n, risk={"device_id": device})
                                  for n in range(50)))  # fmt: skip
    assert [r.status_code for r in made] == [201] * 50
    last = await create(stack, shop, amount=1, risk={"device_id": device})
    seen = await decision(stack, shop, last.json()["risk"]["decision"])
    assert seen["features"]["count_payments_merchant_1h"] == 50
    assert seen["features"]["sum_payments_device_1h"] == sum(100 + n for n in range(50))

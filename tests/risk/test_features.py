"""Velocity counters and links on SQLite and PostgreSQL: every window counts what is inside it
and not what is older, sums, every subject, scopes (merchant-owned ids, platform-wide devices,
modes apart), distinct counts and their windows, no raw value stored, and concurrent writers
losing no event. Time comes from a frozen clock the tests advance."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import random
import uuid
from collections.abc import Collection, Iterator

import pytest
import sqlalchemy as sa

from paymux.kit import clock as kit_clock
from paymux.kit.clock import FrozenClock
from paymux.risk.attributes import (
    ATTRIBUTES,
    LINK_WINDOWS,
    LINKS,
    MEASURES,
    SUBJECTS,
    VELOCITY_WINDOWS,
    Family,
)
from paymux.risk.features import velocity
from paymux.risk.features.models import RiskCounter, RiskLink
from paymux.risk.features.velocity import Subjects
from tests.conftest import Stack

BASE = dt.datetime(2026, 11, 2, 0, 0, tzinfo=dt.UTC)
"""A UTC midnight: the start of a minute, an hour and a day bucket at once."""


@pytest.fixture
def frozen() -> Iterator[FrozenClock]:
    clock = FrozenClock(BASE)
    previous = kit_clock.set_clock(clock)
    yield clock
    kit_clock.set_clock(previous)


def fresh(prefix: str) -> str:
    """A value no other test uses (devices and IPs are platform-wide)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def everyone(merchant_id: str | None = None, *, livemode: bool = False, **given: str) -> Subjects:
    """Subjects with every value known and unique to the test (``given`` replaces some)."""
    ip = str(ipaddress.IPv6Address(0x20010DB8 << 96 | uuid.uuid4().int >> 32))  # 2001:db8::/32
    values = {"customer": fresh("cus"), "device": fresh("dev"), "ip": ip,
              "payer_account": fresh("o"), "sku": fresh("sku")} | given  # fmt: skip
    return Subjects(merchant_id or fresh("mer"), livemode, **values)


async def record(stack: Stack, subjects: Subjects, measure: str = "payments",
                 amount: int = 100, at: dt.datetime | None = None) -> None:  # fmt: skip
    async with stack.runtime.db.transaction() as session:
        await velocity.record(session, subjects, measure, amount, at or kit_clock.now())


async def read(stack: Stack, subjects: Subjects, names: Collection[str]) -> dict[str, int]:
    async with stack.runtime.db.read() as session:
        return await velocity.read(session, subjects, names, kit_clock.now())


def lengths() -> dict[str, dt.timedelta]:
    return {w: velocity.WINDOWS[w][0] for w in VELOCITY_WINDOWS}


async def test_every_window_counts_what_is_inside_it_and_not_what_is_older(
    stack: Stack, frozen: FrozenClock
) -> None:
    """One payment 30 s into a bucket: each window counts it while its bucket's start is
    within the window (the edge is up to one bucket wide: a 10 m window still counts it 10 m
    after its bucket began, 9 m 30 s after it happened) and not one second later."""
    who = everyone()
    frozen.set(BASE + dt.timedelta(seconds=30))
    await record(stack, who, amount=1999)
    names = [f"{agg}_payments_device_{w}" for w in VELOCITY_WINDOWS for agg in ("count", "sum")]
    moments = {dt.timedelta(seconds=30)} | {
        length + d
        for length in lengths().values()
        for d in (dt.timedelta(), dt.timedelta(seconds=1))
    }
    for since_base in sorted(moments):
        frozen.set(BASE + since_base)
        seen = await read(stack, who, names)
        expected = {}
        for w, length in lengths().items():
            inside = since_base <= length
            expected |= {f"count_payments_device_{w}": int(inside),
                         f"sum_payments_device_{w}": 1999 if inside else 0}  # fmt: skip
        assert seen == expected, since_base


async def test_counts_and_sums_per_measure(stack: Stack, frozen: FrozenClock) -> None:
    who = everyone()
    for amount in (100, 250, 5000):
        await record(stack, who, "payments", amount)
        frozen.advance(20 * 60)  # 20 minutes apart
    await record(stack, who, "declined", 0)
    await record(stack, who, "refunds", 250)
    seen = await read(stack, who, ["count_payments_customer_1h", "sum_payments_customer_1h",
                                   "count_payments_customer_10m", "sum_payments_customer_24h",
                                   "count_declined_customer_10m", "sum_refunds_customer_7d",
                                   "count_blocked_customer_30d",
                                   "count_payouts_customer_1h"])  # fmt: skip
    # Read one hour after the first: 00:00 is a bucket start exactly 1 h before, so still in.
    assert seen == {"count_payments_customer_1h": 3, "sum_payments_customer_1h": 5350,
                    "count_payments_customer_10m": 0, "sum_payments_customer_24h": 5350,
                    "count_declined_customer_10m": 1, "sum_refunds_customer_7d": 250,
                    "count_blocked_customer_30d": 0, "count_payouts_customer_1h": 0}  # fmt: skip
    frozen.advance(60)
    assert (await read(stack, who, ["count_payments_customer_1h"])) == {
        "count_payments_customer_1h": 2}  # fmt: skip


async def test_every_subject_and_every_measure_is_counted(
    stack: Stack, frozen: FrozenClock
) -> None:
    who = everyone()
    for measure in MEASURES:
        await record(stack, who, measure.noun, 7)
    names = [f"{agg}_{m.noun}_{s.name}_{w}" for m in MEASURES for s in SUBJECTS
             for w in VELOCITY_WINDOWS
             for agg in (("count", "sum") if m.sum else ("count",))]  # fmt: skip
    seen = await read(stack, who, names)
    assert seen == {n: 1 if n.startswith("count_") else 7 for n in names}
    # A subject the event does not know is 0 (and was not counted as an empty value).
    partial = Subjects(who.merchant_id, False, customer=who.customer, device="  ")
    seen = await read(stack, partial, ["count_payments_device_1h", "count_payments_ip_1h",
                                       "count_payments_customer_1h"])  # fmt: skip
    assert seen == {"count_payments_device_1h": 0, "count_payments_ip_1h": 0,
                    "count_payments_customer_1h": 1}  # fmt: skip
    blank = Subjects(fresh("mer"), False, device="")
    await record(stack, blank)
    unknown = Subjects(blank.merchant_id, False, device="")
    assert await read(stack, unknown, ["count_payments_device_1h"]) == {
        "count_payments_device_1h": 0}  # fmt: skip


async def test_scopes_merchant_ids_platform_subjects_and_modes(
    stack: Stack, frozen: FrozenClock
) -> None:
    """A customer id and a SKU are the merchant's own: another merchant's customer of the
    same id is another customer. A device, an IP and a payer account are the platform's: the
    same device at two merchants is one device. Test traffic never counts toward live."""
    shop = everyone()
    other = Subjects(fresh("mer"), False, customer=shop.customer, device=shop.device,
                     ip=shop.ip, payer_account=shop.payer_account, sku=shop.sku)  # fmt: skip
    await record(stack, shop)
    await record(stack, other)
    await record(stack, shop)
    names = [f"count_payments_{s.name}_1h" for s in SUBJECTS]
    assert await read(stack, shop, names) == {
        "count_payments_customer_1h": 2, "count_payments_sku_1h": 2,
        "count_payments_merchant_1h": 2, "count_payments_device_1h": 3,
        "count_payments_ip_1h": 3, "count_payments_payer_account_1h": 3}  # fmt: skip
    assert await read(stack, other, names) == {
        "count_payments_customer_1h": 1, "count_payments_sku_1h": 1,
        "count_payments_merchant_1h": 1, "count_payments_device_1h": 3,
        "count_payments_ip_1h": 3, "count_payments_payer_account_1h": 3}  # fmt: skip
    live = Subjects(shop.merchant_id, True, customer=shop.customer, device=shop.device,
                    ip=shop.ip, payer_account=shop.payer_account, sku=shop.sku)  # fmt: skip
    assert set((await read(stack, live, names)).values()) == {0}
    await record(stack, live)
    assert set((await read(stack, live, names)).values()) == {1}
    assert (await read(stack, shop, names))["count_payments_device_1h"] == 3
    # The IP is one subject in any spelling of it.
    spelled = Subjects(fresh("mer"), False, ip="2001:DB8:0::7")
    await record(stack, spelled)
    again = Subjects(fresh("mer"), False, ip="2001:db8::7")
    assert (await read(stack, again, ["count_payments_ip_1h"])) == {"count_payments_ip_1h": 1}
    await record(stack, Subjects(fresh("mer"), False, ip="::ffff:192.0.2.77"))  # IPv4-mapped
    v4 = Subjects(fresh("mer"), False, ip="192.0.2.77")
    assert (await read(stack, v4, ["count_payments_ip_1h"])) == {"count_payments_ip_1h": 1}


async def test_no_raw_value_is_stored(stack: Stack, frozen: FrozenClock) -> None:
    who = everyone()
    await record(stack, who)
    keys = velocity.subject_keys(who)
    async with stack.runtime.db.read() as session:
        counters = (
            await session.execute(
                sa.select(RiskCounter).where(RiskCounter.key.in_(list(keys.values())))
            )
        ).scalars()
        links = (
            await session.execute(
                sa.select(RiskLink).where(RiskLink.per_key.in_(list(keys.values())))
            )
        ).scalars()
        stored = [repr([getattr(r, c.key) for c in r.__table__.columns]) for r in counters] + [
            repr([getattr(r, c.key) for c in r.__table__.columns]) for r in links]  # fmt: skip
    assert len(stored) == 6 * 3 + 5  # six subjects × three resolutions, five links
    raw = [who.merchant_id, who.customer, who.device, who.ip, who.payer_account, who.sku]
    assert not [v for v in raw if any(str(v) in row for row in stored)]


async def test_links_count_distinct_pairs_within_their_windows(
    stack: Stack, frozen: FrozenClock
) -> None:
    """A device seen with customers of two merchants counts them all (a customer is the
    merchant's), once each however often; a pair counts in a window while it was last seen
    within it."""
    shop, other = fresh("mer"), fresh("mer")
    device, ip, account = fresh("dev"), "198.51.100.23", fresh("o")
    first = Subjects(shop, False, customer="cus_1", device=device, ip=ip, payer_account=account)
    await record(stack, first)
    await record(stack, first, "declined")  # the same pairs again: still one each
    frozen.advance(2 * 3600)
    await record(stack, Subjects(shop, False, customer="cus_2", device=device))
    await record(stack, Subjects(other, False, customer="cus_1", device=device))  # not shop's
    names = [f"distinct_customers_per_device_{w}" for w in LINK_WINDOWS]
    probe = Subjects(fresh("mer"), False, device=device)  # any merchant: devices are platform's
    assert await read(stack, probe, names) == {
        "distinct_customers_per_device_1h": 2, "distinct_customers_per_device_24h": 3,
        "distinct_customers_per_device_7d": 3, "distinct_customers_per_device_30d": 3}  # fmt: skip
    # Seen again, the first customer counts in the short window too.
    await record(stack, first)
    assert (await read(stack, probe, names))["distinct_customers_per_device_1h"] == 3
    customer = Subjects(shop, False, customer="cus_1")
    frozen.advance(25 * 3600)
    assert await read(stack, customer, [
        "distinct_devices_per_customer_1h", "distinct_devices_per_customer_24h",
        "distinct_devices_per_customer_7d", "distinct_payer_accounts_per_customer_30d"]) == {
        "distinct_devices_per_customer_1h": 0, "distinct_devices_per_customer_24h": 0,
        "distinct_devices_per_customer_7d": 1, "distinct_payer_accounts_per_customer_30d": 1,
    }  # fmt: skip
    seen = await read(
        stack,
        Subjects(other, False, ip=ip, payer_account=account),
        ["distinct_customers_per_ip_7d", "distinct_customers_per_payer_account_7d"],
    )
    assert seen == {"distinct_customers_per_ip_7d": 1,
                    "distinct_customers_per_payer_account_7d": 1}  # fmt: skip
    frozen.advance(30 * 86400)
    assert set((await read(stack, probe, names)).values()) == {0}
    # Test mode and live mode are apart for links too.
    live = Subjects(shop, True, device=device)
    assert (await read(stack, live, ["distinct_customers_per_device_30d"])) == {
        "distinct_customers_per_device_30d": 0}  # fmt: skip


async def test_names_that_are_not_velocity_or_links_are_ignored(
    stack: Stack, frozen: FrozenClock
) -> None:
    who = everyone()
    await record(stack, who)
    names = {"amount", "ip_region", "customer.is_new", "count_payments_device_1h",
             "sum_declined_device_1h", "count_payments_device_2h", "distinct_skus_per_ip_1h",
             "distinct_customers_per_device_1h"}  # fmt: skip
    assert await read(stack, who, names) == {"count_payments_device_1h": 1,
                                             "distinct_customers_per_device_1h": 1}  # fmt: skip
    assert await read(stack, who, ["amount"]) == {}


def test_every_velocity_and_link_attribute_is_a_name_it_reads() -> None:
    """The names are parsed from attributes.py's tables: every velocity and link attribute of
    every event is one :func:`velocity.read` answers."""
    declared = {name for attrs in ATTRIBUTES.values() for name, a in attrs.items()
                if a.family in (Family.velocity, Family.link)}  # fmt: skip
    parsed = {n.name for n in velocity.velocity_names(declared)} | {
        n.name for n in velocity.link_names(declared)}  # fmt: skip
    assert parsed == declared
    assert {(n.counted, n.per) for n in velocity.link_names(declared)} == {
        (link.counted.removesuffix("s"), link.per) for link in LINKS}  # fmt: skip


async def test_record_refuses_what_is_not_a_measure_or_an_amount(stack: Stack) -> None:
    async with stack.runtime.db.read() as session:
        for measure, amount in (("payment", 1), ("payments", -1), ("payments", 1.5),
                                ("payments", True)):  # fmt: skip
            with pytest.raises(ValueError):
                await velocity.record(session, everyone(), measure, amount, BASE)  # type: ignore[arg-type]


async def test_recorded_after_commit_only_when_it_commits(
    stack: Stack, frozen: FrozenClock
) -> None:
    who = everyone()
    async with stack.runtime.db.transaction() as session:
        velocity.record_after_commit(session, who, "payments", 300, kit_clock.now())
        assert (await read(stack, who, ["count_payments_device_1h"]))[
            "count_payments_device_1h"] == 0  # fmt: skip
    assert (await read(stack, who, ["sum_payments_device_1h", "distinct_devices_per_customer_1h"])
            ) == {"sum_payments_device_1h": 300, "distinct_devices_per_customer_1h": 1}  # fmt: skip
    with pytest.raises(RuntimeError):
        async with stack.runtime.db.transaction() as session:
            velocity.record_after_commit(session, who, "payments", 300, kit_clock.now())
            raise RuntimeError("rolled back")
    assert (await read(stack, who, ["count_payments_device_1h"])) == {
        "count_payments_device_1h": 1}  # fmt: skip
    async with stack.runtime.db.read() as session:
        with pytest.raises(ValueError):
            velocity.record_after_commit(session, who, "payment", 1, kit_clock.now())
        with pytest.raises(ValueError):
            velocity.record_after_commit(session, who, "payments", -1, kit_clock.now())


async def test_concurrent_writers_lose_no_event(stack: Stack, frozen: FrozenClock) -> None:
    """50 creates at once, each in its own transaction, on the same device, IP and merchant
    (so the same counter rows) with 50 different customers: exactly 50 counted, no deadlock."""
    device, ip, merchant = fresh("dev"), "203.0.113.200", fresh("mer")
    customers = [f"cus_{n}" for n in range(50)]

    async def one(customer: str) -> None:
        async with stack.runtime.db.transaction() as session:
            subjects = Subjects(merchant, False, customer=customer, device=device, ip=ip)
            await velocity.record(session, subjects, "payments", 11, kit_clock.now())

    await asyncio.gather(*(one(c) for c in customers))
    who = Subjects(merchant, False, device=device, ip=ip)
    assert await read(stack, who, ["count_payments_device_10m", "sum_payments_merchant_30d",
                                   "count_payments_ip_24h", "distinct_customers_per_device_1h",
                                   "distinct_customers_per_ip_30d"]) == {
        "count_payments_device_10m": 50, "sum_payments_merchant_30d": 550,
        "count_payments_ip_24h": 50, "distinct_customers_per_device_1h": 50,
        "distinct_customers_per_ip_30d": 50}  # fmt: skip


async def _rows_of(stack: Stack, who: Subjects) -> dict[str, int]:
    keys = list(velocity.subject_keys(who).values())
    async with stack.runtime.db.read() as session:
        counted = await session.execute(
            sa.select(RiskCounter.resolution, sa.func.count())
            .where(RiskCounter.key.in_(keys))
            .group_by(RiskCounter.resolution)
        )
        out = {str(resolution): int(n) for resolution, n in counted}
        links = await session.scalar(
            sa.select(sa.func.count()).select_from(RiskLink).where(RiskLink.per_key.in_(keys))
        )
    return out | {"links": int(links or 0)}


async def test_purge_deletes_only_what_no_window_reads(stack: Stack, frozen: FrozenClock) -> None:
    """Each resolution's buckets go once its widest window no longer reads them, links once
    the widest link window is past; a read gives the same before and after a purge."""
    who = everyone()
    await record(stack, who)
    await record(stack, who, "declined")
    names = [f"count_{m}_{s.name}_{w}" for m in ("payments", "declined") for s in SUBJECTS
             for w in VELOCITY_WINDOWS] + list(velocity._LINKS)  # fmt: skip
    per_resolution = 6 * 2  # six subjects × two measures
    full = {"minute": per_resolution, "hour": per_resolution, "day": per_resolution, "links": 5}
    hours_and_days = {"hour": per_resolution, "day": per_resolution, "links": 5}
    steps = [
        (dt.timedelta(hours=1), full),
        (dt.timedelta(hours=1, seconds=1), hours_and_days),
        (dt.timedelta(days=7), hours_and_days),
        (dt.timedelta(days=7, seconds=1), {"day": per_resolution, "links": 5}),
        (dt.timedelta(days=30), {"day": per_resolution, "links": 5}),
        (dt.timedelta(days=30, minutes=1), {"links": 0}),
    ]
    for since, rows in steps:
        frozen.set(BASE + since)
        before = await read(stack, who, names)
        async with stack.runtime.db.transaction() as session:
            while await velocity.purge(session, kit_clock.now(), limit=5):
                pass
        assert await _rows_of(stack, who) == rows, since
        assert await read(stack, who, names) == before, since


def _floor(at: dt.datetime, seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(at.timestamp()) // seconds * seconds, dt.UTC)


async def test_reads_agree_with_an_oracle_over_random_histories(stack: Stack) -> None:
    """Random events over 40 days, read at a random later moment, against the rule the docs
    state, computed here from the events themselves: a window counts the events whose bucket
    (minute for ≤ 1 h, hour for ≤ 7 d, else day) starts at or after ``at`` − window; a link
    counts the customers whose last event's minute is at or after ``at`` − window."""
    rng = random.Random(14)
    bucket = {"minute": 60, "hour": 3600, "day": 86400}
    for _case in range(12):
        merchant, device = fresh("mer"), fresh("dev")
        events = []
        for _ in range(rng.randint(1, 30)):
            at = BASE + dt.timedelta(seconds=rng.randint(0, 40 * 86400))
            events.append((at, rng.choice(["payments", "refunds"]), rng.randint(0, 10_000),
                           f"cus_{rng.randint(0, 4)}"))  # fmt: skip
        for at, measure, amount, customer in events:
            await record(stack, Subjects(merchant, False, customer=customer, device=device),
                         measure, amount, at)  # fmt: skip
        now = max(e[0] for e in events) + dt.timedelta(seconds=rng.randint(0, 3 * 86400))
        names = [f"{agg}_{m}_device_{w}" for m in ("payments", "refunds")
                 for w in VELOCITY_WINDOWS for agg in ("count", "sum")] + [
            f"distinct_customers_per_device_{w}" for w in LINK_WINDOWS]  # fmt: skip
        expected: dict[str, int] = {}
        for w, (length, resolution) in velocity.WINDOWS.items():
            for m in ("payments", "refunds"):
                inside = [e for e in events if e[1] == m
                          and _floor(e[0], bucket[resolution.value]) >= now - length]  # fmt: skip
                expected[f"count_{m}_device_{w}"] = len(inside)
                expected[f"sum_{m}_device_{w}"] = sum(e[2] for e in inside)
        last_seen: dict[str, dt.datetime] = {}
        for at, _, _, customer in events:
            last_seen[customer] = max(last_seen.get(customer, BASE), _floor(at, 60))
        for w, length in velocity.LINK_LENGTHS.items():
            expected[f"distinct_customers_per_device_{w}"] = sum(
                1 for seen in last_seen.values() if seen >= now - length)  # fmt: skip
        async with stack.runtime.db.read() as session:
            got = await velocity.read(session, Subjects(merchant, False, device=device), names,
                                      now)  # fmt: skip
        assert got == expected, (events, now)

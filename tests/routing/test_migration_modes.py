"""Migration d01c88f49ac1 on rows that were shared by both modes (SQLite and PostgreSQL): the
settings are copied to both modes, each rule lands in the mode of the accounts it references
(test if none), a rule referencing both is split without the other mode's accounts, positions
are renumbered per mode; downgrade keeps every rule."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channel_accounts.models import ChannelAccount
from paymux.kit import migrate
from paymux.kit.db import JSONType, create_engine
from paymux.merchants.models import App, Merchant
from tests.conftest import BACKENDS

BEFORE = "3d9b6f0e2a41"
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)

old_settings = sa.table(
    "routing_settings",
    *map(sa.column, ("app_id", "version", "strategy", "weight_success", "weight_cost",
                     "weight_latency", "exploration", "updated_at")),
)  # fmt: skip
old_rules = sa.table(
    "routing_rules",
    sa.column("conditions", JSONType),
    sa.column("action", JSONType),
    *map(sa.column, ("id", "app_id", "position", "name", "enabled", "created_at", "updated_at")),
)


@pytest.fixture(params=BACKENDS)
async def empty_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """A database of its own (the shared test database is migrated to head already)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/routing-migration.db"
        return
    base = make_url(os.environ["PAYMUX_TEST_DATABASE_URL"])
    name = f"{base.database}_routing_mig"
    admin = create_engine(base.render_as_string(hide_password=False))
    async with admin.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def account(app_id: str, mode: str) -> ChannelAccount:
    return ChannelAccount(
        id=f"chn_{mode}_{uuid.uuid4().hex[:8]}", app_id=app_id, channel="wechatpay", mode=mode,
        methods=["wechat_native"], currencies=["CNY"], credentials_enc="-",
    )  # fmt: skip


def rule(app_id: str, rid: str, position: int, action: dict[str, Any],
         conditions: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    return {"id": rid, "app_id": app_id, "position": position, "name": rid, "enabled": True,
            "conditions": conditions or {}, "action": action, "created_at": NOW,
            "updated_at": NOW}  # fmt: skip


async def test_shared_rows_are_given_a_mode(empty_url: str) -> None:
    await migrate.upgrade(empty_url, BEFORE)
    engine = create_engine(empty_url)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
            # Core inserts of the columns that schema had (the models have grown since).
            await session.execute(
                sa.insert(Merchant.__table__).values(id="mch_m", name="m", created_at=NOW)
            )
            await session.execute(
                sa.insert(App.__table__).values(
                    id="app_a", merchant_id="mch_m", name="a", created_at=NOW
                )
            )
            test, live = account("app_a", "test"), account("app_a", "live")
            session.add_all([test, live])
            await session.flush()
            await session.execute(old_settings.insert().values(
                app_id="app_a", version=7, strategy="priority", weight_success=1.0,
                weight_cost=0.5, weight_latency=0.01, exploration=0.05, updated_at=NOW,
            ))  # fmt: skip
            await session.execute(old_rules.insert(), [
                rule("app_a", "rr_channel", 0, {"type": "priority", "targets": ["wechatpay"]}),
                rule("app_a", "rr_live", 1, {"type": "pin", "targets": [live.id]}),
                rule("app_a", "rr_mixed", 2, {"type": "weighted", "weights": [1, 2, 3],
                                              "targets": [test.id, live.id, "wechatpay"]}),
                rule("app_a", "rr_test", 3, {"type": "priority", "targets": [test.id]}),
                rule("app_a", "rr_live_pin", 4, {"type": "pin", "targets": [live.id]},
                     {"last_channels": [test.id, "alipay"]}),
            ])  # fmt: skip

        await migrate.upgrade(empty_url)

        async with engine.connect() as conn:
            settings = (await conn.execute(sa.text(
                "SELECT livemode, version, strategy, weight_cost FROM routing_settings"
            ))).all()  # fmt: skip
            rows = (await conn.execute(
                sa.select(sa.table("routing_rules", sa.column("id"), sa.column("livemode"),
                                   sa.column("position"), sa.column("action", JSONType),
                                   sa.column("conditions", JSONType)))
            )).all()  # fmt: skip
        assert sorted((bool(s[0]), *s[1:]) for s in settings) == [
            (False, 7, "priority", 0.5),
            (True, 7, "priority", 0.5),
        ]
        by_mode: dict[bool, list[Any]] = {False: [], True: []}
        for row in sorted(rows, key=lambda r: r.position):
            by_mode[bool(row.livemode)].append(row)
        test_rules, live_rules = by_mode[False], by_mode[True]
        assert [r.id for r in test_rules] == ["rr_channel", "rr_mixed", "rr_test"]
        assert [r.position for r in test_rules] == [0, 1, 2]
        assert test_rules[1].action["targets"] == [test.id, "wechatpay"]
        assert test_rules[1].action["weights"] == [1, 3]
        assert [r.id for r in live_rules][0] == "rr_live"
        assert [r.position for r in live_rules] == [0, 1, 2]
        copy, moved = live_rules[1], live_rules[2]
        assert copy.id.startswith("rr_") and copy.id != "rr_mixed"
        assert (copy.action["targets"], copy.action["weights"]) == ([live.id, "wechatpay"], [2, 3])
        assert moved.id == "rr_live_pin" and moved.action["targets"] == [live.id]
        assert moved.conditions["last_channels"] == ["alipay"]

        await asyncio.to_thread(command.downgrade, migrate.alembic_config(empty_url), BEFORE)
        async with engine.connect() as conn:
            kept = (await conn.execute(sa.text("SELECT id FROM routing_rules"))).scalars().all()
            shared = (await conn.execute(sa.text("SELECT * FROM routing_settings"))).all()
        assert len(kept) == 6 and {"rr_channel", "rr_mixed", "rr_live_pin"} <= set(kept)
        assert len(shared) == 1 and "livemode" not in shared[0]._fields
    finally:
        await engine.dispose()

"""Test fixtures: every database test runs on SQLite and, when PAYMUX_TEST_DATABASE_URL is set,
again on PostgreSQL. Schemas come from the real Alembic migrations.

Isolation is by tenant: each test makes its own merchant/app (every query is app-scoped), so
tests share one migrated database per backend and per session.

In-process wiring: the gateway app (with the channel sandboxes mounted at /sandbox/<name>) is
reached through ``httpx.ASGITransport`` at http://gateway.test — by the test client, by the
adapters' channel client and by the sandboxes' notifiers — so requests are real HTTP exchanges
within one event loop. Merchant webhooks go to http://merchant.test, a recording receiver.
Loopback end-to-end tests (tests/e2e) run real servers instead.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from paymux.app import create_app
from paymux.config import Environment, Settings
from paymux.kit import migrate
from paymux.kit.db import create_engine
from paymux.kit.egress import EgressGuard, EgressTransport
from paymux.runtime import Runtime
from tests.fixtures import keys
from tests.fixtures.egress import CheckedTransport, StaticResolver
from tests.fixtures.receiver import WebhookReceiver

keys.install()  # before any sandbox exists: they generate their keys when built
os.environ.setdefault("PAYMUX_RISK_BUDGET_MS", "10000")
"""Every runtime the tests build (in-process servers, CLI commands) gives a risk evaluation ten
seconds: a loaded test machine is not an engine failure (tests/risk/test_replay.py tests the
budget itself). The setting is process-wide: the last runtime built sets it."""

GATEWAY = "http://gateway.test"
MERCHANT_SITE = "http://merchant.test"
LOOPBACK_NETS = ["127.0.0.0/8", "::1/128"]
"""What the tests (like the demo) allow the egress guard beyond public addresses."""

BACKENDS = ["sqlite"]
if os.environ.get("PAYMUX_TEST_DATABASE_URL"):
    BACKENDS.append("postgresql")

_ADMIN_URL = os.environ.get("PAYMUX_TEST_DATABASE_URL", "")
"""The PostgreSQL database the suite was given; with pytest-xdist each worker tests in a
database of its own next to it (``test_gw0``, ``test_gw1``, …), made on first use, and every
test that reads PAYMUX_TEST_DATABASE_URL sees its worker's."""
if _ADMIN_URL and os.environ.get("PYTEST_XDIST_WORKER"):
    _base = make_url(_ADMIN_URL)
    os.environ["PAYMUX_TEST_DATABASE_URL"] = _base.set(
        database=f"{_base.database}_{os.environ['PYTEST_XDIST_WORKER']}"
    ).render_as_string(hide_password=False)


async def _reset_postgres(url: str) -> None:
    if url != _ADMIN_URL:  # a worker's own database: made once, from the given one
        name = make_url(url).database
        admin = create_engine(_ADMIN_URL)
        async with admin.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            exists = await conn.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            )
            if not exists:
                await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        await admin.dispose()
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        await conn.execute(sa.text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path_factory: Any) -> str:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db')}/paymux-test.db"
    else:
        url = os.environ["PAYMUX_TEST_DATABASE_URL"]
        await _reset_postgres(url)
    await migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: Any) -> Settings:
    return Settings(
        env=Environment.test,
        database_url=database_url,
        public_url=GATEWAY,
        operator_token="op_test_token_0123456789",
        channel_timeout_seconds=2.0,
        log_level="WARNING",
        egress_allow_nets=LOOPBACK_NETS,
        recon_archive_dir=str(tmp_path_factory.mktemp("bills")),
        recon_schedule=False,  # tests run reconciliation explicitly (tests/recon)
    )


@dataclass
class Stack:
    """The in-process gateway with its sandboxes and a merchant-side webhook receiver."""

    app: FastAPI
    runtime: Runtime
    client: httpx.AsyncClient
    sandboxes: dict[str, Any]
    receiver: WebhookReceiver
    resolver: StaticResolver
    """The egress guard's DNS: merchant.test is 127.0.0.1; tests add names."""
    extra: dict[str, Any] = field(default_factory=dict)


def _sandboxes(time_scale: float) -> dict[str, Any]:
    from paymux.demo import make_sandboxes

    return make_sandboxes(time_scale=time_scale, hold_timeout_seconds=5.0)


@pytest.fixture(scope="session")
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    sandboxes = _sandboxes(time_scale=0.001)
    receiver = WebhookReceiver()
    gateway_transport: dict[str, httpx.AsyncBaseTransport] = {}
    channel_http = httpx.AsyncClient(
        mounts={"http://gateway.test": _Lazy(gateway_transport)}, timeout=2.0
    )
    # Webhooks go through the egress guard as in production: merchant.test resolves (by the
    # static resolver) to 127.0.0.1, allowed like the demo allows it, and is served in-process;
    # every other URL is a real, guarded connection.
    resolver = StaticResolver()
    resolver.set("merchant.test", "127.0.0.1")
    egress = EgressGuard(settings.egress_allow_nets, resolver=resolver)
    in_process = CheckedTransport(egress, httpx.ASGITransport(app=receiver.app))
    webhook_http = httpx.AsyncClient(
        mounts={"http://merchant.test": in_process},
        transport=EgressTransport(egress), timeout=2.0, follow_redirects=False, trust_env=False,
    )  # fmt: skip
    runtime = Runtime.build(
        settings, channel_http=channel_http, webhook_http=webhook_http, egress=egress
    )
    app = create_app(settings, runtime=runtime, sandboxes=sandboxes)
    gateway_transport["t"] = httpx.ASGITransport(app=app)
    notifier_http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), timeout=2.0)
    for sandbox in sandboxes.values():
        sandbox.core.http = notifier_http
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=GATEWAY)
    yield Stack(app=app, runtime=runtime, client=client, sandboxes=sandboxes, receiver=receiver,
                resolver=resolver)  # fmt: skip
    for sandbox in sandboxes.values():
        await sandbox.core.aclose()
    for c in (client, notifier_http, channel_http, webhook_http):
        await c.aclose()
    await runtime.db.dispose()


class _Lazy(httpx.AsyncBaseTransport):
    """Resolves the gateway transport after the app exists (the app needs the client first)."""

    def __init__(self, holder: dict[str, httpx.AsyncBaseTransport]) -> None:
        self.holder = holder

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # ASGITransport ignores timeouts; a real channel call would time out, so this one does.
        read = (request.extensions.get("timeout") or {}).get("read")
        try:
            return await asyncio.wait_for(self.holder["t"].handle_async_request(request), read)
        except TimeoutError:
            raise httpx.ReadTimeout("the channel did not answer in time", request=request) from None


@dataclass
class Tenant:
    merchant_id: str
    app_id: str
    api_key: str
    accounts: dict[str, str]
    """channel name → channel account id."""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


async def make_tenant(
    stack: Stack,
    *,
    channels: tuple[str, ...] = ("wechatpay", "alipay"),
    credentials: dict[str, dict[str, Any]] | None = None,
) -> Tenant:
    """A merchant with an app, a test key and one sandbox account per channel; ``credentials``
    replaces a channel's freshly provisioned ones (e.g. Alipay certificate mode)."""
    from paymux.channel_accounts import service as channel_service
    from paymux.merchants import service as merchant_service
    from paymux.merchants.models import Mode

    async with stack.runtime.db.transaction() as session:
        merchant = await merchant_service.create_merchant(session, name="Test shop")
        app = await merchant_service.create_app(session, merchant_id=merchant.id, name="web")
        key = await merchant_service.issue_key(session, app_id=app.id, mode=Mode.test)
        accounts = {}
        for name in channels:
            creds = (credentials or {}).get(name) or stack.sandboxes[name].provision(
                f"{GATEWAY}/sandbox/{name}"
            )
            account = await channel_service.add_account(
                session,
                stack.runtime.vault,
                app_id=app.id,
                channel=name,
                mode=Mode.test,
                credentials=creds,
                fee_rate_bps=60,
            )
            accounts[name] = account.id
    return Tenant(merchant.id, app.id, key.secret, accounts)


@pytest.fixture
async def tenant(stack: Stack) -> Tenant:
    return await make_tenant(stack)


@pytest.fixture
def clock() -> Any:
    """Real time with an offset the test can advance (expiry, backoff schedules)."""
    from paymux.kit import clock as kit_clock

    shifted = kit_clock.OffsetClock()
    previous = kit_clock.set_clock(shifted)
    yield shifted
    kit_clock.set_clock(previous)


async def run_worker(stack: Stack) -> int:
    """Run the background jobs until nothing is due."""
    from paymux.jobs.worker import Worker

    return await Worker(stack.runtime).run_until_idle()


async def attempt_ids(stack: Stack, payment_id: str) -> list[str]:
    """The channel order numbers (attempt ids) of a payment, oldest first."""
    from paymux.payments.repository import PaymentRepository

    async with stack.runtime.db.read() as session:
        return [a.id for a in await PaymentRepository(session).attempts_of(payment_id)]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Close the browser tests' shared chromium, if any test launched it."""
    import sys

    browser = sys.modules.get("tests.cashier.test_pages_browser")
    if browser is not None:
        browser.close_browser()

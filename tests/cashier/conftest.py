"""The browser tests' gateway: API + worker + the demo's sandboxes on a loopback port, as
``paymux demo`` runs it, one per test module."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from paymux.app import create_app
from paymux.config import Environment, Settings
from paymux.demo import make_sandboxes, provision
from paymux.runtime import Runtime
from tests.fixtures.servers import free_port, serve


@dataclass(frozen=True)
class DemoGateway:
    base: str
    key: str
    database_url: str
    sandboxes: Any
    demo: Any
    """What the demo provisioned (its ids: app, accounts, the demo wallet)."""


@pytest.fixture(scope="module")
def demo_gateway(database_url: str) -> Iterator[DemoGateway]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(
        env=Environment.test, database_url=database_url, public_url=base,
        channel_timeout_seconds=2.0, worker_poll_seconds=0.05, log_level="WARNING",
        egress_allow_nets=["127.0.0.0/8", "::1/128"],
    )  # fmt: skip
    sandboxes = make_sandboxes(httpx.AsyncClient(timeout=5.0))

    async def setup() -> Any:
        rt = Runtime.build(settings)
        try:
            return await provision(rt, sandboxes, public_url=base, api_key=None,
                                   webhook_url=f"{base}/healthz")  # fmt: skip
        finally:
            await rt.aclose()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        done = pool.submit(asyncio.run, setup()).result()
    with serve(create_app(settings, sandboxes=sandboxes, run_worker=True), port=port):
        yield DemoGateway(base, done.api_key, database_url, sandboxes, done)


@pytest.fixture(scope="module")
def gateway(demo_gateway: DemoGateway) -> tuple[str, str]:
    return demo_gateway.base, demo_gateway.key

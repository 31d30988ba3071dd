"""A scripted channel for routing tests: each account (by ``label``) answers creates from a
queue of outcomes, so failover can be driven through every error kind the adapters raise. It
goes through the real registry, accounts, create loop and database; only the wire is absent
(the real adapters' classification of wire errors is tested under tests/channels)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel

from paymux.channels import base, registry

METHOD = "routetest_qr"
SCRIPT: dict[str, list[str]] = {}
CALLS: list[str] = []


class Credentials(BaseModel):
    label: str
    gateway: str = "http://routetest.invalid"


class ScriptedAdapter:
    name: ClassVar[str] = "routetest"
    methods: ClassVar[frozenset[str]] = frozenset({METHOD})
    currencies: ClassVar[frozenset[str]] = frozenset({"CNY"})
    credentials_model: ClassVar[type[BaseModel]] = Credentials
    production_hosts: ClassVar[frozenset[str]] = frozenset({"routetest.example"})
    required_customer: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def __init__(self, credentials: Mapping[str, Any], http: httpx.AsyncClient) -> None:
        self.label = str(credentials["label"])

    async def create_payment(self, request: base.CreatePayment) -> base.CreatedPayment:
        CALLS.append(self.label)
        queue = SCRIPT.get(self.label) or ["ok"]
        outcome = queue.pop(0) if len(queue) > 1 else queue[0]
        if outcome == "slow":
            await asyncio.sleep(0.05)
            outcome = "retryable"
        if outcome == "retryable":
            raise base.RetryableError("connect_error", "connection refused")
        if outcome == "routable":
            raise base.RoutableDecline("channel_limit", "merchant quota reached")
        if outcome == "decline":
            raise base.BusinessError("invalid_request", "bad subject")
        if outcome == "unknown":
            raise base.UnknownOutcome("read_timeout", "no answer")
        return base.CreatedPayment(
            channel_trade_no=f"rt{uuid.uuid4().hex[:12]}",
            next_action=base.NextAction(base.NextActionType.qr_code, code_url="rt://pay"),
        )

    async def query_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> base.PaymentState:
        return base.PaymentState(
            out_trade_no=out_trade_no, status=base.ChannelPaymentStatus.pending
        )

    async def close_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> None:
        return None


def registered() -> Iterator[None]:
    registry.load_builtin_channels()
    registry._REGISTRY[ScriptedAdapter.name] = ScriptedAdapter  # type: ignore[assignment]
    try:
        yield
    finally:
        registry._REGISTRY.pop(ScriptedAdapter.name, None)
        SCRIPT.clear()
        CALLS.clear()

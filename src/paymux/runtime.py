"""Everything a process holds for its lifetime: settings, database, vault, HTTP clients.

Built once by the API's lifespan, the worker and the CLI; tests build their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from paymux.config import Settings
from paymux.kit.crypto import Vault
from paymux.kit.db import Database
from paymux.kit.egress import EgressGuard, egress_client
from paymux.kit.logging import observe_channel_calls


@dataclass
class Runtime:
    settings: Settings
    db: Database
    vault: Vault
    channel_http: httpx.AsyncClient
    """Client for calls to channels (adapters get it injected); each request it sends is one
    ``channel_call`` log line."""
    webhook_http: httpx.AsyncClient
    """Client for merchant webhook deliveries: connects only where ``egress`` allows."""
    egress: EgressGuard
    """The check of every merchant-given URL (webhooks at registration and per connection)."""
    owned: list[httpx.AsyncClient] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        channel_http: httpx.AsyncClient | None = None,
        webhook_http: httpx.AsyncClient | None = None,
        egress: EgressGuard | None = None,
    ) -> Runtime:
        """``egress`` defaults to the settings' allowed ranges and the system resolver; an
        injected ``webhook_http`` must connect through the same guard (tests do)."""
        from paymux.risk import decisions, signals

        signals.configure(settings.risk_ip_db)  # a broken IP database fails the boot, not a payment
        decisions.BUDGET_SECONDS = settings.risk_budget_ms / 1000
        owned: list[httpx.AsyncClient] = []
        if egress is None:
            egress = EgressGuard(settings.egress_allow_nets)
        if channel_http is None:
            channel_http = httpx.AsyncClient(
                timeout=httpx.Timeout(settings.channel_timeout_seconds, connect=3.0),
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            )
            owned.append(channel_http)
        observe_channel_calls(channel_http)
        if webhook_http is None:
            webhook_http = egress_client(
                egress,
                timeout=httpx.Timeout(settings.webhook_timeout_seconds, connect=3.0),
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            )
            owned.append(webhook_http)
        return cls(
            settings=settings,
            db=Database(settings.database_url, pool_size=settings.db_pool_size),
            vault=Vault(settings.master_key_bytes),
            channel_http=channel_http,
            webhook_http=webhook_http,
            egress=egress,
            owned=owned,
        )

    async def aclose(self) -> None:
        for client in self.owned:
            await client.aclose()
        await self.db.dispose()

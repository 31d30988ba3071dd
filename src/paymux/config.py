"""One Settings object (environment prefix ``PAYMUX_``)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any

from pydantic import Field, IPvAnyNetwork, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from paymux.kit.logging import redact

# Published in the docs so the demo runs with no setup; refused anywhere money is real.
DEV_MASTER_KEY = "ZGV2LW9ubHktbWFzdGVyLWtleS1ub3QtZm9yLXByb2Q="


class Environment(StrEnum):
    dev = "dev"
    """A developer's machine: insecure defaults allowed."""
    demo = "demo"
    """``paymux demo``: sandbox channels, insecure defaults allowed."""
    test = "test"
    """The test suite."""
    prod = "prod"
    """Anything that may touch real money: a real master key is mandatory."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMUX_", env_file=".env", extra="ignore")

    env: Environment = Environment.prod
    database_url: str = "sqlite+aiosqlite:///./paymux.db"
    master_key: str | None = Field(default=None, repr=False)
    """Base64 of 32 random bytes; encrypts channel credentials and webhook secrets at rest."""
    public_url: str = "http://127.0.0.1:8000"
    """Where channels and customers reach this gateway (notify URLs, hosted pages)."""
    operator_token: str | None = Field(default=None, repr=False)
    """Bearer token of the operator API (``/v1/operator``); unset disables it."""
    log_level: str = "INFO"
    log_json: bool = False
    channel_timeout_seconds: float = 10.0
    payment_expiry_seconds: int = 7200
    refund_attention_seconds: int = 3 * 86400
    """A refund still pending this long after it was asked for is flagged for an operator
    (``refund.requires_attention``); the janitor keeps asking the channel."""
    routing_failover_budget_seconds: float = 15.0
    """How long one create may keep failing over to further channel accounts: no new attempt
    starts once this much time has passed since the request began."""
    barcode_wait_seconds: float = 30.0
    """How long POST /v1/payments waits for a payment-code (付款码) charge to reach a final
    state before answering ``pending`` (the janitor then carries on, and reverses the order at
    the channel's own limit)."""
    barcode_poll_seconds: float | None = None
    """Query interval while waiting for the customer; default: each channel's advice."""
    webhook_timeout_seconds: float = 10.0
    egress_allow_nets: Annotated[list[IPvAnyNetwork], NoDecode] = []
    """Extra ranges outbound requests to merchant-given URLs (webhooks) may reach, e.g.
    ``10.20.0.0/16,fd00:1::/64``; by default only public addresses (docs/deploy.md)."""
    recon_archive_dir: str = "./paymux-bills"
    """Where reconciliation archives every bill file, named by its SHA-256."""
    recon_max_upload_bytes: int = 512 * 1024 * 1024
    """The largest bill file the upload API accepts."""
    recon_schedule: bool = True
    """Run the daily reconciliation job in the worker (off: runs only on request)."""
    risk_budget_ms: float = Field(default=50.0, gt=0)
    """A risk evaluation (features and rules, once the rule sets are loaded) slower than this
    is an engine failure: money in proceeds unevaluated, money out waits for review."""
    risk_ip_db: str | None = None
    """A CSV file of ``network,region`` lines for the rules' ``ip_region`` (docs/risk.md, "IP
    regions"); unset: the bundled database of documentation ranges, for tests and the demo."""
    worker_batch_size: int = 50
    worker_poll_seconds: float = 0.5
    db_pool_size: int = 10

    @field_validator("egress_allow_nets", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        if self.env in (Environment.dev, Environment.demo, Environment.test):
            if self.master_key is None:
                self.master_key = DEV_MASTER_KEY
        elif self.master_key in (None, "", DEV_MASTER_KEY):
            raise ValueError(
                "PAYMUX_MASTER_KEY must be set to base64 of 32 random bytes outside dev/demo "
                "(generate one with: paymux keygen)"
            )
        try:
            if len(base64.b64decode(self.master_key or "", validate=True)) != 32:
                raise ValueError
        except (binascii.Error, ValueError):
            raise ValueError("PAYMUX_MASTER_KEY must be base64 of exactly 32 bytes") from None
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # A traceback or a log line may show the settings: never the database password.
        for name, value in super().__repr_args__():
            yield name, redact(value) if name == "database_url" else value

    @property
    def master_key_bytes(self) -> bytes:
        assert self.master_key is not None
        return base64.b64decode(self.master_key)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()

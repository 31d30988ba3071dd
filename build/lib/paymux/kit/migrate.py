"""Run Alembic migrations programmatically (CLI ``paymux db upgrade``, demo, tests).

The migrations ship inside the package (``paymux/migrations``), so an installed paymux can
migrate its database without a source checkout; ``alembic.ini`` at the repository root points
at the same directory for developers who run ``alembic`` itself.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade_sync(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


async def upgrade(database_url: str, revision: str = "head") -> None:
    """Alembic's env runs its own event loop, so it runs in a worker thread."""
    await asyncio.to_thread(upgrade_sync, database_url, revision)

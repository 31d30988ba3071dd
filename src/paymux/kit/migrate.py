"""Run Alembic migrations programmatically (CLI ``paymux db upgrade``, demo, tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config


def _find_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "alembic.ini").exists() and (parent / "migrations").is_dir():
            return parent
    raise RuntimeError("alembic.ini not found; run from a paymux checkout")


def alembic_config(database_url: str) -> Config:
    root = _find_root()
    cfg = Config(str(root / "alembic.ini"))
    cfg.set_main_option("script_location", str(root / "migrations"))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade_sync(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


async def upgrade(database_url: str, revision: str = "head") -> None:
    """Alembic's env runs its own event loop, so it runs in a worker thread."""
    await asyncio.to_thread(upgrade_sync, database_url, revision)

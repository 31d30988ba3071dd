"""An API process holds only what serving needs: what it does not import it does not carry
(idle RSS per API process, docs/deploy.md Capacity)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

HEAVY = ("typer", "rich", "jinja2", "babel", "segno", "paymux.cli")

PROBE = """
import json, sys
import paymux.server
from paymux.app import create_app
create_app()
print(json.dumps(sorted(m for m in sys.modules if sys.modules[m] is not None)))
"""


def _modules_after(code: str) -> set[str]:
    env = {**os.environ, "PAYMUX_ENV": "dev"}
    out = subprocess.run([sys.executable, "-P", "-c", code], env=env, capture_output=True,
                         text=True, check=True, timeout=120)  # fmt: skip
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_serving_process_imports_no_cli_template_or_qr_library() -> None:
    loaded = _modules_after(PROBE)
    assert "paymux.app" in loaded and "structlog" in loaded
    assert {m for m in loaded if m.split(".")[0] in HEAVY or m.startswith("paymux.cli")} == set()


def test_a_page_imports_what_it_renders_with_on_first_use() -> None:
    code = PROBE.replace("print(", "from paymux import web\nweb.qr_code('x')\nprint(")
    assert "segno" in _modules_after(code)


def test_serve_checks_the_configuration_then_execs_the_serving_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from paymux.cli import app
    from paymux.config import get_settings

    calls: list[Any] = []
    monkeypatch.setattr(os, "execv", lambda path, args: calls.append((path, args)))
    monkeypatch.setenv("PAYMUX_ENV", "dev")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["serve", "--port", "8123", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert calls == [
        (sys.executable, [sys.executable, "-P", "-m", "paymux.server", "127.0.0.1", "8123", "2"])
    ]
    monkeypatch.setenv("PAYMUX_ENV", "prod")  # no master key: refused before any exec
    monkeypatch.delenv("PAYMUX_MASTER_KEY", raising=False)
    calls.clear()
    get_settings.cache_clear()
    try:
        refused = CliRunner().invoke(app, ["serve"])
    finally:
        get_settings.cache_clear()
    assert refused.exit_code == 2 and calls == []


async def test_httpcore_finds_sniffio_without_searching_the_path() -> None:
    """httpcore imports sniffio on every pooled request; missing, that is a path search (stat
    calls) each time — the dependency keeps it a dictionary lookup."""
    from httpcore._synchronization import current_async_library

    searched: list[str] = []

    class Spy:
        @staticmethod
        def find_spec(name: str, *_: object) -> None:
            searched.append(name)

    sys.meta_path.insert(0, Spy)  # type: ignore[arg-type]
    try:
        assert current_async_library() == "asyncio"
        assert current_async_library() == "asyncio"
    finally:
        sys.meta_path.remove(Spy)  # type: ignore[arg-type]
    assert searched == []

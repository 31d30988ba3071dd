"""Every command's help: a description, no typer type noise (``<bool>`` on flags, ``{name}`` in
usage); ``--version``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import typer
from typer.testing import CliRunner

from paymux import __version__
from paymux.cli import app

runner = CliRunner()


def commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and group under ``group`` (typer's click types, by their shape)."""
    for name, command in group.commands.items():
        yield (*path, name), command
        if hasattr(command, "commands"):
            yield from commands(command, (*path, name))


def test_every_command_has_clean_help() -> None:
    root = typer.main.get_command(app)
    found = list(commands(root))
    names = {" ".join(path) for path, _ in found}
    assert {"demo", "app list", "payment list", "payment show", "payment close"} <= names
    missing = [" ".join(path) for path, command in found
               if not (command.help or command.short_help)]  # fmt: skip
    assert missing == []
    for path, _ in [((), root), *found]:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, path
        usage = next(line for line in result.output.splitlines() if "Usage:" in line)
        assert not re.search(r"[{}]", usage), (path, usage)


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"paymux {__version__}"

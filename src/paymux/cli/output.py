"""How every ``paymux`` command prints its result: one rule for the whole CLI.

- On a terminal: rich tables with colour — a list (the API's ``{"object": "list", "data": …}``
  page or a plain list of objects) is one table with a row per object; a single object is a
  field/value table, and its lists of objects (a payment's attempts and events) follow as
  tables of their own.
- With ``paymux --json …``, or whenever standard output is not a terminal (a pipe, a file, a
  script): exactly one JSON document on stdout, shaped as the API answers, so scripts read CLI
  and API output alike.
- Messages, errors and progress go to stderr, never mixed into the JSON on stdout; progress is
  shown only on a terminal.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

err = Console(stderr=True, highlight=False)
"""Messages and errors (stderr, so stdout stays one JSON document for scripts)."""

_forced_json = False
STATUS_STYLES = {
    "succeeded": "green", "delivered": "green", "posted": "green", "paid": "green",
    "completed": "green", "settled": "green", "pending": "yellow", "processing": "yellow",
    "unknown": "yellow", "created": "yellow", "failed": "bold red", "canceled": "red",
    "closed": "dim", "expired": "dim", "refunded": "cyan", "partially_refunded": "cyan",
}  # fmt: skip
_CELL_WIDTH = 60
_MAX_COLUMNS = 9


def force_json(enabled: bool) -> None:
    """``paymux --json``: JSON even on a terminal."""
    global _forced_json
    _forced_json = enabled


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def wants_json() -> bool:
    return _forced_json or not stdout_is_tty()


def emit(data: Any, *, columns: Sequence[str] = (), title: str | None = None) -> None:
    """Print a command's result: JSON for scripts (everything), a table on a terminal.

    ``columns``: what a list's table shows (default: its first scalar fields); ``"keys[].key"``
    shows the ``key`` of each item of the ``keys`` list. The JSON always carries every field."""
    if wants_json():
        typer.echo(json.dumps(data, indent=2, default=_jsonable, ensure_ascii=False))
        return
    console = Console(force_terminal=True, highlight=False)
    for renderable in _tables(data, title, list(columns)):
        console.print(renderable)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date | dt.datetime) else str(value)


def error(code: str, message: str) -> None:
    """An error line on stderr (the caller exits non-zero)."""
    err.print(f"[red]error[/red] {code}: {message}", soft_wrap=True)


def note(message: str) -> None:
    """A human message on stderr (e.g. ``wrote report.csv``)."""
    err.print(message, soft_wrap=True)


@contextmanager
def progress(description: str) -> Iterator[None]:
    """A spinner with elapsed time on stderr for long work (migrations, settlement runs,
    exports), shown only on a terminal and never in JSON mode."""
    if wants_json() or not sys.stderr.isatty():
        yield
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err, transient=True) as bar:  # fmt: skip
        bar.add_task(description, total=None)
        yield


# ------------------------------------------------------------------ rendering
def _is_rows(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _tables(data: Any, title: str | None, columns: list[str]) -> list[Any]:
    if isinstance(data, dict) and data.get("object") == "list" and "data" in data:
        rows = data["data"]
        caption = "more: page on with --starting-after <last id>" if data.get("has_more") else None
        return [_rows_table(rows, title, caption, columns)]
    if isinstance(data, list):
        return [_rows_table(data, title, None, columns)]
    if isinstance(data, dict):
        nested = {k: v for k, v in data.items() if _is_rows(v)}
        head = _object_table({k: v for k, v in data.items() if k not in nested}, title)
        return [head, *(_rows_table(rows, key, None, []) for key, rows in nested.items())]
    return [str(data)]


def _default_columns(rows: list[Any]) -> list[str]:
    """The first scalar fields of the rows (nested objects only fit the JSON)."""
    found: list[str] = []
    for row in rows:
        for key, value in (row if isinstance(row, dict) else {"value": row}).items():
            if key not in found and key != "object" and not isinstance(value, dict | list):
                found.append(key)
    return found[:_MAX_COLUMNS]


def _rows_table(
    rows: list[Any], title: str | None, caption: str | None, columns: list[str]
) -> Table:
    columns = columns or _default_columns(rows)
    table = Table(title=title, caption=caption or f"{len(rows)} row(s)", header_style="bold")
    for column in columns:
        table.add_column(column.partition("[]")[0], overflow="fold")
    for row in rows:
        values = row if isinstance(row, dict) else {"value": row}
        table.add_row(*(_cell(column, _pick(values, column)) for column in columns))
    return table


def _pick(row: dict[str, Any], column: str) -> Any:
    name, each, field = column.partition("[].")
    value = row.get(name)
    if each and isinstance(value, list):
        return [item.get(field) for item in value if isinstance(item, dict)]
    return value


def _object_table(data: dict[str, Any], title: str | None) -> Table:
    name = title or (f"{data['object']} {data.get('id', '')}".strip() if "object" in data else None)
    table = Table(title=name, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in data.items():
        if key != "object":
            table.add_row(key, _cell(key, value))
    return table


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "[dim]—[/dim]"
    if isinstance(value, bool):
        return "[green]yes[/green]" if value else "[red]no[/red]"
    if isinstance(value, dt.date | dt.datetime):
        value = value.isoformat()
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        text = ", ".join(str(v) for v in value)
    elif isinstance(value, dict | list):
        text = json.dumps(value, default=str, ensure_ascii=False)
        text = text if len(text) <= _CELL_WIDTH else text[: _CELL_WIDTH - 1] + "…"
    else:
        text = str(value)
    escaped = escape(text)
    style = STATUS_STYLES.get(text) if column in ("status", "state") else None
    return f"[{style}]{escaped}[/{style}]" if style else escaped


def fail(code: str, message: str, exit_code: int = 1) -> NoReturn:
    """Refuse with a clear error line and a non-zero exit, having changed nothing."""
    error(code, message)
    raise typer.Exit(exit_code)

"""What every ``paymux`` command shares: the Typer app, the console, running work with a
runtime (domain errors become a message and exit code 1) and printing API-shaped JSON."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.config import Settings, get_settings
from paymux.kit.errors import NotFound, PaymuxError
from paymux.kit.logging import configure_logging
from paymux.runtime import Runtime

app = typer.Typer(
    help="paymux — self-hosted aggregated payment gateway", no_args_is_help=True,
    pretty_exceptions_enable=False, pretty_exceptions_show_locals=False,
)  # fmt: skip


@app.callback()
def _setup() -> None:
    """Configure logging before any command runs (an invalid configuration is reported by the
    command that needs it; its logs use the defaults meanwhile)."""
    try:
        settings = get_settings()
    except ValidationError:
        configure_logging()
    else:
        configure_logging(settings.log_level, json=settings.log_json)


console = Console()
T = TypeVar("T")


def load_settings() -> Settings:
    """The configuration, or a clear message and exit code 2 when it is invalid."""
    try:
        return get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            console.print(
                f"[red]configuration error[/red] {error['msg'].removeprefix('Value error, ')}"
            )
        raise typer.Exit(2) from None


def run(work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run ``work`` with a runtime; domain errors become a clear message and exit code 1."""

    async def go() -> T:
        rt = Runtime.build(load_settings())
        try:
            return await work(rt)
        finally:
            await rt.aclose()

    try:
        return asyncio.run(go())
    except PaymuxError as exc:
        console.print(f"[red]error[/red] {exc.code}: {exc.message}")
        raise typer.Exit(1) from None


def show_json(data: Any) -> None:
    """Print an object as the API would answer it."""
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


M = TypeVar("M", bound=BaseModel)
Live = Annotated[bool, typer.Option("--live", help="Live-mode objects (default: test mode).")]
Limit = Annotated[int, typer.Option(min=1, max=100, help="At most this many, newest first.")]
After = Annotated[str | None, typer.Option(help="Cursor: the last id of the previous page.")]
OutNo = Annotated[
    str | None, typer.Option(help="Your request number; repeating it is the same request "
                             "(default: a new one).")]  # fmt: skip


def parse_body(model: type[M], **fields: Any) -> M:
    """A request model from the command's options; invalid input is a clear message and exit
    code 1, before anything is touched."""
    try:
        return model(**fields)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "input"
            message = error["msg"].removeprefix("Value error, ")
            console.print(f"[red]error[/red] parameter_invalid: {where}: {message}")
        raise typer.Exit(1) from None


def new_request_no(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def page_of(rows: list[Any], has_more: bool) -> dict[str, Any]:
    """The API's list shape, so scripts read CLI and API output alike."""
    return {"object": "list", "data": rows, "has_more": has_more}


async def find_object(session: AsyncSession, model: type[T], what: str, ident: str) -> T:
    """An object by id across tenants (the operator's view), or ``resource_missing``."""
    found = await session.get(model, ident)
    if found is None:
        raise NotFound(what, ident)
    return found

"""What every ``paymux`` command shares: the Typer app and its global options, running work
with a runtime (domain errors become a message and exit code 1) and parsing options into the
API's request models. Printing is :mod:`paymux.cli.output`'s."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from paymux import __version__
from paymux.cli.output import error, fail, force_json
from paymux.config import Settings, get_settings
from paymux.kit.errors import NotFound, PaymuxError
from paymux.kit.logging import configure_logging
from paymux.runtime import Runtime

app = typer.Typer(
    help="paymux — self-hosted aggregated payment gateway", no_args_is_help=True,
    pretty_exceptions_enable=False, pretty_exceptions_show_locals=False,
)  # fmt: skip
T = TypeVar("T")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"paymux {__version__}")
        raise typer.Exit()


@app.callback(epilog="Commands read PAYMUX_DATABASE_URL, PAYMUX_ENV, PAYMUX_MASTER_KEY and "
              "PAYMUX_PUBLIC_URL from the environment; `paymux demo` prints the export lines "
              "for the running demo. Results are tables on a terminal, JSON with --json or "
              "in a pipe.")  # fmt: skip
def main_options(
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON document (the default when stdout is not a terminal).")]
        = False,
    version: Annotated[bool | None, typer.Option(
        "--version", callback=_show_version, is_eager=True,
        help="Print the version and exit.")] = None,
) -> None:  # fmt: skip
    """Options of every command: output format (see :mod:`paymux.cli.output`), version; and
    logging, configured before any command runs (an invalid configuration is reported by the
    command that needs it; its logs use the defaults meanwhile)."""
    force_json(json_output)
    try:
        settings = get_settings()
    except ValidationError:
        configure_logging()
    else:
        configure_logging(settings.log_level, json=settings.log_json)


def load_settings() -> Settings:
    """The configuration, or a clear message and exit code 2 when it is invalid."""
    try:
        return get_settings()
    except ValidationError as exc:
        for problem in exc.errors():
            error("configuration_error", problem["msg"].removeprefix("Value error, "))
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
        fail(exc.code, exc.message)


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
        for problem in exc.errors():
            where = ".".join(str(part) for part in problem["loc"]) or "input"
            error("parameter_invalid", f"{where}: {problem['msg'].removeprefix('Value error, ')}")
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

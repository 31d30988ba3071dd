"""Structured logs (structlog): key=value for humans, JSON lines for machines.

Every line of the process — structlog's and the standard library's (uvicorn, SQLAlchemy,
asyncpg, httpx) and uncaught exceptions — goes through one handler whose formatter scrubs
secrets from the event, every string value and the rendered traceback, so a password in a
database URL or a key in an exception message never reaches the log. Tracebacks are plain
(never rich with local variables).

Channel calls: :func:`observe_channel_calls` hooks the channels' HTTP client so that every
request to a channel is one ``channel_call`` line (channel, operation, our reference, HTTP
method, host, path without its query, status, latency) — never a body or a query string;
:func:`channel_operation` names the operation around an adapter call.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx
import structlog

log = structlog.get_logger(__name__)
channel_log = structlog.get_logger("paymux.channels")

_SECRET_FIELDS = (
    "password", "passwd", "pwd", "secret", "client_secret", "api_key", "apiv3_key", "master_key",
    "operator_token", "access_token", "token", "sign", "signature",
)  # fmt: skip
"""Names whose value is a secret: as a log field, and as ``name=value`` / ``'name': 'value'``
inside any text (libpq DSNs, query strings, reprs, JSON, signed headers)."""
_SECRET_KEYS = {*_SECRET_FIELDS, "authorization", "credentials", "private_key"}
REDACTED = "[redacted]"

_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # PEM private keys (also inside reprs, where the newlines are ``\n``).
    (
        re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.S),
        "-----BEGIN \\1PRIVATE KEY-----[redacted]-----END \\1PRIVATE KEY-----",
    ),
    # scheme://user:password@host — database URLs, proxies, basic-auth URLs.
    (re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*:)[^\s@/'\"]+@"), r"\1[redacted]@"),
    # Secret fields in libpq DSNs, query strings, reprs and JSON (``password='…'``).
    (
        re.compile(
            rf"\b({'|'.join(_SECRET_FIELDS)})(\s*=\s*|['\"]\s*:\s*)"
            r"(?:(['\"])(?!\[redacted\]['\"]).*?\3|(?!\[redacted\])[^\s&;,'\")}\]]+)",
            re.I,
        ),
        lambda m: f"{m[1]}{m[2]}{m[3] or ''}[redacted]{m[3] or ''}",
    ),
    # Our API keys and Stripe secret / restricted keys.
    (re.compile(r"\b((?:sk|rk)_(?:live|test)_)[A-Za-z0-9_]+"), r"\1[redacted]"),
    # Standard Webhooks secrets.
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+"), "whsec_[redacted]"),
    # Authorization header values.
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9\-._~+/]+=*", re.I), r"\1 [redacted]"),
)


def redact(text: str) -> str:
    """``text`` with every secret shape it contains replaced by ``[redacted]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: REDACTED if _secret_key(k) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


def _secret_key(key: Any) -> bool:
    return isinstance(key, str) and key.lower() in _SECRET_KEYS


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.startswith("_"):
            continue
        event[key] = REDACTED if _secret_key(key) else _scrub(event[key])
    return event


class _StripQuery(logging.Filter):
    """Uvicorn's access lines without query strings (signed notify and sandbox URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


_QUIET = ("httpx", "httpcore", "hpack", "multipart", "alembic")
"""Libraries whose INFO lines repeat URLs, headers or bodies of channel calls (the HTTP
clients), or say nothing an operator needs (alembic's per-migration chatter)."""


class _StreamHandler(logging.StreamHandler[TextIO]):
    """Writes to ``sys.stderr`` as it is when a line is logged (not when logging was set up),
    so a replaced stderr (test runners, CLI runners) never leaves a closed stream behind."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream or sys.stderr)
        self._follow = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow:
            self.stream = sys.stderr
        super().emit(record)


def configure_logging(
    level: str = "INFO", *, json: bool = False, stream: TextIO | None = None
) -> None:
    """Send every log line of the process (structlog and stdlib) to ``stream`` (stderr), as
    key=value text or JSON lines, with secrets redacted. Safe to call again (reconfigures)."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(default=str)
        if json
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    handler = _StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _redact,
                renderer,
            ],
        )
    )
    logging.basicConfig(handlers=[handler], level=level.upper(), force=True)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # Undo uvicorn's own logging config (its handlers would bypass the redaction, and a
        # level an earlier server set would outlive this configuration); a server started
        # after this sets its own level again.
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(logging.NOTSET)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _StripQuery) for f in access.filters):
        access.addFilter(_StripQuery())
    # The chain is the same whatever the level and format (those live in the handler), so
    # loggers cached before a reconfiguration stay right.
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(
    kind: type[BaseException], exc: BaseException, tb: types.TracebackType | None
) -> None:
    """Uncaught exceptions are logged (redacted, no locals) instead of printed raw."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    log.error("uncaught_exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    thread = args.thread.name if args.thread else None
    log.error(
        "uncaught_exception", thread=thread,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )  # fmt: skip


# ---------------------------------------------------------------- channel calls
@dataclass
class _Operation:
    channel: str | None
    operation: str
    ref: str | None
    open: dict[int, tuple[httpx.Request, float]] = field(default_factory=dict)
    """Requests sent and not answered yet (by ``id``)."""

    def fields(self) -> dict[str, Any]:
        return {"channel": self.channel, "operation": self.operation, "ref": self.ref}


_current: contextvars.ContextVar[_Operation | None] = contextvars.ContextVar(
    "paymux_channel_operation", default=None
)
_STARTED = "paymux.started"


@contextlib.contextmanager
def channel_operation(channel: str | None, operation: str, ref: str | None) -> Iterator[None]:
    """Name the channel operation the HTTP requests inside belong to. A request that got no
    answer (timeout, connection refused) is logged when the operation ends."""
    op = _Operation(channel, operation, ref)
    token = _current.set(op)
    try:
        yield
    except BaseException as exc:
        _log_unanswered(op, exc)
        raise
    else:
        _log_unanswered(op, None)
    finally:
        _current.reset(token)


def _log_unanswered(op: _Operation, exc: BaseException | None) -> None:
    # The adapter turns the transport's exception into a channel error: name the original.
    cause = None if exc is None else (exc.__cause__ or exc.__context__ or exc)
    for request, started in op.open.values():
        channel_log.warning(
            "channel_call", **op.fields(), **_where(request), status=None,
            ms=_ms_since(started), error=type(cause).__name__ if cause else "no_response",
        )  # fmt: skip
    op.open.clear()


def _where(request: httpx.Request) -> dict[str, str]:
    return {"method": request.method, "host": request.url.host, "path": request.url.path}


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


async def _on_request(request: httpx.Request) -> None:
    started = time.perf_counter()
    request.extensions[_STARTED] = started
    op = _current.get()
    if op is not None:
        op.open[id(request)] = (request, started)


async def _on_response(response: httpx.Response) -> None:
    request = response.request
    op = _current.get()
    started = request.extensions.get(_STARTED, time.perf_counter())
    if op is not None:
        op.open.pop(id(request), None)
    fields = op.fields() if op else {"channel": None, "operation": None, "ref": None}
    channel_log.info(
        "channel_call", **fields, **_where(request), status=response.status_code,
        ms=_ms_since(started),
    )  # fmt: skip


def observe_channel_calls(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Log one ``channel_call`` line per request ``client`` sends (idempotent)."""
    hooks = client.event_hooks
    if _on_request not in hooks["request"]:
        hooks["request"].append(_on_request)
    if _on_response not in hooks["response"]:
        hooks["response"].append(_on_response)
    client.event_hooks = hooks
    return client

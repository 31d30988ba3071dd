"""FastAPI plumbing shared by every router: runtime access, per-request transactions,
error rendering, pagination."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any, Generic, TypeVar

import structlog
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paymux.kit.errors import PaymuxError
from paymux.runtime import Runtime

log = structlog.get_logger(__name__)


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _runtime(request: Request) -> Runtime:
    # async: FastAPI runs a plain ``def`` dependency in a worker thread, a hop per request
    return get_runtime(request)


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed if the endpoint returns, rolled back if it raises.

    Endpoints that call a channel must not hold this across the call (DESIGN §3.6); they use
    ``runtime.db.transaction()`` for each short step instead.
    """
    runtime = get_runtime(request)
    async with runtime.db.transaction() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """For endpoints that only read: never waits for writers (DESIGN §3.6)."""
    async with get_runtime(request).db.read() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session)]

T = TypeVar("T")


class ListResponse(BaseModel, Generic[T]):
    object: str = "list"
    data: list[T]
    has_more: bool


class PageParams(BaseModel):
    limit: int
    starting_after: str | None


async def page_params(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    starting_after: Annotated[str | None, Query(max_length=64)] = None,
) -> PageParams:
    return PageParams(limit=limit, starting_after=starting_after)


PageDep = Annotated[PageParams, Depends(page_params)]


def _error_response(
    status: int,
    type_: str,
    code: str,
    message: str,
    param: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"error": {"type": type_, "code": code, "message": message, "param": param}},
        headers=headers,
    )


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class RejectNulMiddleware:
    """Refuse API requests carrying NUL characters (in the path, query or a JSON body) with a
    400 before any handler runs: no field of ours can hold one, and PostgreSQL cannot store one.
    """

    def __init__(self, app: ASGIApp, prefix: str = "/v1") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        raw = scope.get("raw_path") or b""
        query = scope.get("query_string") or b""
        if "\x00" in scope["path"] or b"%00" in raw or b"%00" in query or b"\x00" in query:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)  # client went away; let the app see it
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if b"\x00" in body or (b"\\u0000" in body and _json_has_nul(body)):
            await self._refuse(send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Send) -> None:
        response = _error_response(
            400, "invalid_request_error", "parameter_invalid",
            "Text may not contain NUL (\\u0000) characters.",
        )  # fmt: skip
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def _json_has_nul(body: bytes) -> bool:
    try:
        return _has_nul(json.loads(body))
    except ValueError:
        return False  # not JSON: the endpoint will say so


def _param(loc: Any) -> str | None:
    parts = [str(p) for p in loc or () if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def _invalid(errors: list[Any]) -> JSONResponse:
    """The first of pydantic's errors as our error object."""
    first = errors[0] if errors else {}
    message = str(first.get("msg", "Invalid request."))
    return _error_response(
        400, "invalid_request_error", "parameter_invalid", message, _param(first.get("loc"))
    )


class CatchAllMiddleware:
    """An exception no handler knows is a bug: log it and answer a 500 error object.

    Starlette's own last-resort handler re-raises after answering, which makes the server drop
    the keep-alive connection (the client's next request then fails); this one does not. Only
    if the response had already started is the exception re-raised, so that the server aborts a
    response it cannot finish rather than let it look complete.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled_error", method=scope.get("method"), path=scope.get("path"))
            if started:
                raise
            response = _error_response(
                500, "api_error", "internal_error",
                "Something went wrong on our side; the error has been logged.",
            )  # fmt: skip
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Every failure becomes ``{"error": {...}}``: bad input of any kind a 400, never a 500."""
    app.add_middleware(CatchAllMiddleware)

    @app.exception_handler(PaymuxError)
    async def _paymux(_request: Request, exc: PaymuxError) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content=exc.to_dict())

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        first = errors[0] if errors else {}
        json_sent = "json" in request.headers.get("content-type", "")
        if first.get("type") == "json_invalid" or (
            tuple(first.get("loc", ())) == ("body",) and not json_sent
        ):
            return _error_response(
                400, "invalid_request_error", "parameter_invalid",
                "The body must be a JSON object, sent with Content-Type: application/json.",
            )  # fmt: skip
        return _invalid(errors)

    @app.exception_handler(ValidationError)
    async def _model(_request: Request, exc: ValidationError) -> JSONResponse:
        """A model built from request data inside an endpoint or service."""
        return _invalid(exc.errors(include_url=False))

    @app.exception_handler(ValueError)
    async def _value(request: Request, exc: ValueError) -> JSONResponse:
        """Parsing request data further down (URLs, encodings, numbers) failed."""
        log.warning("value_error", path=request.url.path, error=type(exc).__name__, exc_info=exc)
        return _error_response(
            400, "invalid_request_error", "parameter_invalid",
            "A value in the request could not be processed.",
        )  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
        return _error_response(
            exc.status_code,
            "invalid_request_error",
            codes.get(exc.status_code, "http_error"),
            str(exc.detail),
            headers=exc.headers,
        )

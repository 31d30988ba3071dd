"""``Idempotency-Key`` for every mutating API call.

Same key + same request → the stored response, replayed. Same key + a different request → 409
``idempotency_error``. Concurrent duplicates: the first caller reserves the key (a committed
row); the others wait for its response and replay it, so twenty racing requests make one payment.
A reservation whose holder died is taken over after its lease.

Crash recovery: when the holder died mid-request (killed while a payment create waited on the
channel), the handler runs again for the caller that takes the reservation over. A handler that
creates something keyed by the merchant's own number stores :func:`request_key` with it, so
the rerun finds what the dead holder made and answers with it instead of creating it twice
(see ``payments.intake.create``): :data:`RequestKeyDep` hands it to the endpoint.

One mechanism for every router: :class:`IdempotentRoute` (each router's ``route_class``) runs
every mutating, authenticated operation through :func:`run`, scoped to the caller (an app and
its mode, or the operator) and fingerprinted by method, path and body. The OpenAPI document
declares the header on exactly the operations :func:`honours` says take it.

Stored answers are sealed with the vault: some hold a secret shown once (a webhook endpoint's
``whsec_``, an API key), which must not sit in the database in clear text.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, MutableMapping
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit import clock
from paymux.kit.crypto import Vault
from paymux.kit.db import Base, Database, JSONType, UTCDateTime, insert_of
from paymux.kit.errors import IdempotencyError, InvalidRequest, PaymuxError
from paymux.kit.ids import new_id
from paymux.kit.models import created_at_column

LEASE_SECONDS = 60.0
WAIT_SECONDS = 15.0


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (sa.UniqueConstraint("app_id", "key"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.String(40))
    key: Mapped[str] = mapped_column(sa.String(255))
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    status_code: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    response: Mapped[Any] = mapped_column(JSONType, nullable=True)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = created_at_column()


def request_fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def request_key(key: str | None, fingerprint: str) -> str | None:
    """The ``Idempotency-Key`` and the request it was sent with, hashed together: what a
    created object keeps so that a retry of *this* request (not a different body under the
    same key, not the same body under another key) recognises it. None without a key."""
    if key is None:
        return None
    return hashlib.sha256(f"{key}\n{fingerprint}".encode()).hexdigest()


Handler = Callable[[], Awaitable[tuple[int, Any]]]


async def _reserve(
    db: Database, app_id: str, key: str, fingerprint: str
) -> IdempotencyRecord | None:
    """Insert the reservation (one statement); None if the key exists already."""
    record = IdempotencyRecord(
        id=new_id("idk"), app_id=app_id, key=key, request_hash=fingerprint,
        locked_until=clock.now() + dt.timedelta(seconds=LEASE_SECONDS),
    )  # fmt: skip
    async with db.statement() as session:
        inserted = await session.execute(
            _reservation(session.get_bind().dialect.name),
            {"id": record.id, "app_id": app_id, "key": key, "request_hash": fingerprint,
             "locked_until": record.locked_until, "created_at": clock.now()},
        )  # fmt: skip
        return record if inserted.first() is not None else None


@functools.cache
def _reservation(dialect: str) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING, built once per dialect (every call runs it)."""
    table = IdempotencyRecord.__table__
    columns = ("id", "app_id", "key", "request_hash", "locked_until", "created_at")
    return (
        insert_of(dialect)(IdempotencyRecord)
        .values({name: sa.bindparam(name, type_=table.c[name].type) for name in columns})
        .on_conflict_do_nothing(index_elements=["app_id", "key"])
        .returning(IdempotencyRecord.id)
    )


async def _load(db: Database, app_id: str, key: str) -> IdempotencyRecord | None:
    async with db.read() as session:
        stmt = sa.select(IdempotencyRecord).where(
            IdempotencyRecord.app_id == app_id, IdempotencyRecord.key == key
        )
        return (await session.scalars(stmt)).first()


async def _take_over(db: Database, record: IdempotencyRecord) -> bool:
    """Claim an abandoned reservation (its holder died); guarded so only one caller wins."""
    now = clock.now()
    async with db.transaction() as session:
        result = await session.execute(
            sa.update(IdempotencyRecord)
            .where(
                IdempotencyRecord.id == record.id,
                IdempotencyRecord.status_code.is_(None),
                IdempotencyRecord.locked_until < now,
            )
            .values(locked_until=now + dt.timedelta(seconds=LEASE_SECONDS))
        )
        return bool(getattr(result, "rowcount", 0) == 1)


_FINISH = (
    sa.update(IdempotencyRecord)
    .where(IdempotencyRecord.id == sa.bindparam("r_id"))
    .values(
        status_code=sa.bindparam("r_status"),
        response=sa.bindparam("r_body", type_=IdempotencyRecord.__table__.c.response.type),
        locked_until=None,
    )
)


async def _finish(db: Database, record_id: str, status_code: int, body: Any) -> None:
    async with db.statement() as session:
        await session.execute(_FINISH, {"r_id": record_id, "r_status": status_code, "r_body": body})


async def _release(db: Database, record_id: str) -> None:
    async with db.statement() as session:
        await session.execute(sa.delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))


def _context(record: IdempotencyRecord) -> str:
    return f"idempotency:{record.app_id}:{record.key}"


def _replay(vault: Vault, record: IdempotencyRecord) -> JSONResponse:
    assert record.status_code is not None
    body = record.response
    if isinstance(body, str):  # sealed (every answer stored since sealing began)
        body = vault.decrypt_json(body, context=_context(record))
    return JSONResponse(
        status_code=record.status_code, content=body, headers={"Idempotent-Replayed": "true"}
    )


async def run(
    db: Database,
    vault: Vault,
    *,
    app_id: str,
    key: str | None,
    fingerprint: str,
    handler: Handler,
) -> JSONResponse:
    """Run ``handler`` at most once per (app, key); replay its stored response otherwise."""
    if key is None:
        status, body = await _call(handler)
        return JSONResponse(status_code=status, content=body)
    if not 1 <= len(key) <= 255:
        raise InvalidRequest(
            "parameter_invalid",
            "Idempotency-Key must be 1–255 characters.",
            param="Idempotency-Key",
        )
    record = await _reserve(db, app_id, key, fingerprint)
    waited = 0.0
    while record is None:
        existing = await _load(db, app_id, key)
        if existing is None:  # released by a failed holder: try again
            record = await _reserve(db, app_id, key, fingerprint)
            continue
        if existing.request_hash != fingerprint:
            raise IdempotencyError(
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different request.",
                param="Idempotency-Key",
            )
        if existing.status_code is not None:
            return _replay(vault, existing)
        locked = existing.locked_until
        if locked is not None and locked < clock.now() and await _take_over(db, existing):
            record = existing
            break
        if waited >= WAIT_SECONDS:
            raise IdempotencyError(
                "idempotency_request_in_progress",
                "A request with this Idempotency-Key is still in progress; retry later.",
                param="Idempotency-Key",
            )
        await asyncio.sleep(0.05)
        waited += 0.05
    try:
        status, body = await _call(handler)
    except BaseException:
        await _release(db, record.id)
        raise
    if status >= 500:
        await _release(db, record.id)
    else:
        await _finish(db, record.id, status, vault.encrypt_json(body, context=_context(record)))
    return JSONResponse(status_code=status, content=body)


async def _call(handler: Handler) -> tuple[int, Any]:
    """Client errors are part of the idempotent answer (replayed like a success)."""
    try:
        return await handler()
    except PaymuxError as exc:
        if exc.status_code >= 500:
            raise
        return exc.status_code, exc.to_dict()


HEADER = "Idempotency-Key"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_REQUEST_KEY = "paymux.idempotency.request_key"
# FastAPI's exit stacks for an endpoint's dependencies (the request session among them).
_EXIT_STACKS = ("fastapi_inner_astack", "fastapi_function_astack")

Caller = Callable[[Request], Awaitable[str]]


def dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    """Every dependency an operation calls, transitively."""
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from dependency_calls(sub)


def _caller_of(route: APIRoute) -> Caller | None:
    """Whose keys a mutating, authenticated operation uses: an app in one mode (as a payment's
    ``out_trade_no`` is), or the operator. None for what takes no key (reads, channels'
    notifications, customers' pages)."""
    from paymux.merchants.auth import authenticate, authenticate_operator

    if not isinstance(route, IdempotentRoute) or not (route.methods or set()) & MUTATING:
        return None
    calls = set(dependency_calls(route.dependant))
    if authenticate in calls:

        async def app_and_mode(request: Request) -> str:
            auth = await authenticate(request)
            return f"{auth.app_id}:{auth.livemode}"

        return app_and_mode
    if authenticate_operator in calls:

        async def operator(request: Request) -> str:
            await authenticate_operator(request)
            return "operator"

        return operator
    return None


def honours(route: Any) -> bool:
    """Whether an operation (a route, or FastAPI's context of an included one) takes
    ``Idempotency-Key``: what the OpenAPI document declares and the tests check."""
    original = getattr(route, "original_route", route)
    return isinstance(original, APIRoute) and _caller_of(original) is not None


async def current_request_key(request: Request) -> str | None:
    """This request's :func:`request_key` (None without an ``Idempotency-Key``)."""
    found: str | None = request.scope.get(_REQUEST_KEY)
    return found


RequestKeyDep = Annotated[str | None, Depends(current_request_key)]


def _body_of(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")  # not JSON: the endpoint will refuse it


def _json_of(response: Response) -> Any:
    if response.media_type != "application/json":
        raise TypeError(f"an idempotent operation answered {response.media_type}, not JSON")
    return json.loads(bytes(response.body)) if response.body else None


@contextlib.asynccontextmanager
async def _dependencies_exit_here(scope: MutableMapping[str, Any]) -> AsyncIterator[None]:
    """FastAPI exits an endpoint's dependencies after it has sent the response, so the request
    session would commit after the answer is stored: a failed commit would be replayed as a
    success, and on SQLite the two writers would wait on each other. The endpoint gets exit
    stacks of its own here, closed (committed or rolled back) before its answer is stored."""
    if not all(name in scope for name in _EXIT_STACKS):  # tests/test_idempotency.py sees it
        raise RuntimeError("FastAPI no longer keeps its dependency exit stacks in the scope")
    saved = {name: scope[name] for name in _EXIT_STACKS}
    try:
        async with contextlib.AsyncExitStack() as request_stack:
            scope["fastapi_inner_astack"] = request_stack
            async with contextlib.AsyncExitStack() as function_stack:
                scope["fastapi_function_astack"] = function_stack
                yield
    finally:
        scope.update(saved)


class IdempotentRoute(APIRoute):
    """The ``route_class`` of every API router: a mutating operation of an authenticated
    caller runs through :func:`run` when the request carries ``Idempotency-Key``.

    The fingerprint is the method, the path (with its query) and the JSON body as sent; the
    endpoint reads :func:`request_key` through :data:`RequestKeyDep` when it creates
    something keyed by the merchant's own number. Headers the endpoint set travel with its
    first answer; a replay is the stored status and body plus ``Idempotent-Replayed: true``.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = super().get_route_handler()
        caller = _caller_of(self)
        if caller is None:
            return endpoint

        async def handler(request: Request) -> Response:
            key = request.headers.get(HEADER)
            if key is None:
                return await endpoint(request)
            scope = await caller(request)
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            fingerprint = request_fingerprint(
                request.method, target, _body_of(await request.body())
            )
            request.scope[_REQUEST_KEY] = request_key(key, fingerprint)
            answered: list[Response] = []

            async def run_endpoint() -> tuple[int, Any]:
                async with _dependencies_exit_here(request.scope):
                    response = await endpoint(request)
                answered.append(response)
                return response.status_code, _json_of(response)

            runtime = request.app.state.runtime
            response = await run(
                runtime.db, runtime.vault, app_id=scope, key=key, fingerprint=fingerprint,
                handler=run_endpoint,
            )  # fmt: skip
            # The endpoint's own answer (its headers too) when it ran; else the stored one.
            return answered[0] if answered else response

        return handler


async def purge_older_than(db: Database, *, hours: float) -> int:
    """Forget finished keys older than ``hours`` (a replay window, not an archive)."""
    cutoff = clock.now() - dt.timedelta(hours=hours)
    async with db.transaction() as session:
        result = await session.execute(
            sa.delete(IdempotencyRecord).where(
                IdempotencyRecord.created_at < cutoff, IdempotencyRecord.status_code.is_not(None)
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)

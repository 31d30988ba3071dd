"""``Idempotency-Key`` for every mutating API call.

Same key + same request → the stored response, replayed. Same key + a different request → 409
``idempotency_error``. Concurrent duplicates: the first caller reserves the key (a committed
row); the others wait for its response and replay it, so twenty racing requests make one payment.
A reservation whose holder died is taken over after its lease.

Crash recovery: when the holder died mid-request (killed while a payment create waited on the
channel), the handler runs again for the caller that takes the reservation over. A handler that
creates something keyed by the merchant's own number stores :func:`request_key` with it, so
the rerun finds what the dead holder made and answers with it instead of creating it twice
(see ``payments.service.create``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Mapped, mapped_column

from paymux.kit import clock
from paymux.kit.db import Base, Database, JSONType, UTCDateTime
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
    """Insert the reservation; None if the key exists already."""
    now = clock.now()
    record = IdempotencyRecord(
        id=new_id("idk"),
        app_id=app_id,
        key=key,
        request_hash=fingerprint,
        locked_until=now + dt.timedelta(seconds=LEASE_SECONDS),
    )
    try:
        async with db.transaction() as session:
            session.add(record)
    except sa.exc.IntegrityError:
        return None
    return record


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


async def _finish(db: Database, record_id: str, status_code: int, body: Any) -> None:
    async with db.transaction() as session:
        await session.execute(
            sa.update(IdempotencyRecord)
            .where(IdempotencyRecord.id == record_id)
            .values(status_code=status_code, response=body, locked_until=None)
        )


async def _release(db: Database, record_id: str) -> None:
    async with db.transaction() as session:
        await session.execute(sa.delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))


def _replay(record: IdempotencyRecord) -> JSONResponse:
    assert record.status_code is not None
    return JSONResponse(
        status_code=record.status_code,
        content=record.response,
        headers={"Idempotent-Replayed": "true"},
    )


async def run(
    db: Database,
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
            return _replay(existing)
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
        await _finish(db, record.id, status, body)
    return JSONResponse(status_code=status, content=body)


async def _call(handler: Handler) -> tuple[int, Any]:
    """Client errors are part of the idempotent answer (replayed like a success)."""
    try:
        return await handler()
    except PaymuxError as exc:
        if exc.status_code >= 500:
            raise
        return exc.status_code, exc.to_dict()


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

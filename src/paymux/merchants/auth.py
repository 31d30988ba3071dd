"""Bearer API-key authentication of merchant requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from paymux.kit.cache import TtlCache
from paymux.kit.crypto import constant_time_equal, hash_api_key
from paymux.kit.errors import AuthenticationError
from paymux.kit.web import get_runtime
from paymux.merchants.models import Mode
from paymux.merchants.repository import MerchantRepository
from paymux.merchants.service import key_mode


@dataclass(frozen=True)
class AuthContext:
    """Who is calling: every merchant-data query is scoped by ``app_id`` (and ``livemode``)."""

    app_id: str
    merchant_id: str
    livemode: bool
    key_id: str


_keys: TtlCache[str, AuthContext] = TtlCache("api_keys")
"""Keys are looked up on every request; the cache keeps that off the database on the hot path
(one lookup per key per second and process). A revocation therefore takes effect within a
second in every process, and at once in the process that revoked it."""


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationError(
            "missing_api_key", "Send your API key as 'Authorization: Bearer sk_…'."
        )
    return value.strip()


async def authenticate(request: Request) -> AuthContext:
    secret = _bearer(request)
    mode = key_mode(secret)
    if mode is None:
        raise AuthenticationError("invalid_api_key", "The API key is malformed.")
    digest = hash_api_key(secret)
    _, cached = _keys.get(digest)
    if cached is not None:
        return cached
    runtime = get_runtime(request)
    async with runtime.db.read() as session:
        found = await MerchantRepository(session).find_key(digest)
    if found is None or not constant_time_equal(found[0].key_hash, digest):
        raise AuthenticationError("invalid_api_key", "The API key is not valid.")
    key, app = found
    ctx = AuthContext(
        app_id=app.id, merchant_id=app.merchant_id, livemode=mode is Mode.live, key_id=key.id
    )
    return _keys.put(digest, ctx)


def forget_cached_keys() -> None:
    _keys.forget()


AuthDep = Annotated[AuthContext, Depends(authenticate)]


async def authenticate_operator(request: Request) -> None:
    """The operator API is enabled by setting ``PAYMUX_OPERATOR_TOKEN``."""
    expected = get_runtime(request).settings.operator_token
    if not expected:
        raise AuthenticationError("operator_api_disabled", "Set PAYMUX_OPERATOR_TOKEN to use it.")
    if not constant_time_equal(_bearer(request), expected):
        raise AuthenticationError("invalid_operator_token", "The operator token is not valid.")


OperatorDep = Annotated[None, Depends(authenticate_operator)]

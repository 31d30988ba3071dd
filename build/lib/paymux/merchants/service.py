"""Merchants, apps and API keys. Keys are shown once and stored hashed."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.kit import clock
from paymux.kit.crypto import hash_api_key
from paymux.kit.errors import InvalidRequest, NotFound
from paymux.kit.ids import new_id, token
from paymux.merchants.models import ApiKey, App, Merchant, Mode
from paymux.merchants.repository import MerchantRepository


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    secret: str
    """The plaintext key; exists only in this return value."""


async def create_merchant(session: AsyncSession, *, name: str) -> Merchant:
    if not name.strip():
        raise InvalidRequest("parameter_invalid", "Merchant name is required.", param="name")
    merchant = Merchant(id=new_id("mch"), name=name.strip())
    MerchantRepository(session).add(merchant)
    await session.flush()
    return merchant


async def create_app(session: AsyncSession, *, merchant_id: str, name: str) -> App:
    repo = MerchantRepository(session)
    if await repo.get_merchant(merchant_id) is None:
        raise NotFound("merchant", merchant_id)
    app = App(id=new_id("app"), merchant_id=merchant_id, name=name.strip() or "default")
    repo.add(app)
    await session.flush()
    return app


async def issue_key(
    session: AsyncSession, *, app_id: str, mode: Mode, secret: str | None = None
) -> IssuedKey:
    """Create an API key. ``secret`` lets scripted setups (``paymux demo --api-key``) choose it."""
    repo = MerchantRepository(session)
    if await repo.get_app(app_id) is None:
        raise NotFound("app", app_id)
    prefix = f"sk_{mode.value}_"
    if secret is None:
        secret = token(prefix, 24)
    elif not secret.startswith(prefix) or len(secret) < len(prefix) + 16:
        raise InvalidRequest(
            "parameter_invalid",
            f"A {mode.value} key must start with {prefix!r} and carry at least 16 more characters.",
            param="api_key",
        )
    key = ApiKey(
        id=new_id("key"), app_id=app_id, mode=mode, key_hash=hash_api_key(secret), hint=secret[-4:]
    )
    repo.add(key)
    await session.flush()
    return IssuedKey(key=key, secret=secret)


async def revoke_key(session: AsyncSession, *, app_id: str, key_id: str) -> ApiKey:
    for key in await MerchantRepository(session).list_keys(app_id):
        if key.id == key_id:
            key.revoked_at = key.revoked_at or clock.now()
            return key
    raise NotFound("api key", key_id)


def key_mode(secret: str) -> Mode | None:
    for mode in Mode:
        if secret.startswith(f"sk_{mode.value}_"):
            return mode
    return None

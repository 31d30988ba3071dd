"""Merchants, apps and API keys. Keys are shown once and stored hashed."""

from __future__ import annotations

import functools
import hashlib
import zoneinfo
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


# ------------------------------------------------------------------ brand and time zone
LOGO_MAX_BYTES = 100 * 1024
"""An uploaded logo's size cap: a header image, not a photo."""
LOGO_TYPES = ("image/png", "image/jpeg", "image/webp")


def sniff_logo(content: bytes) -> str | None:
    """The image type of ``content`` by its signature — PNG, JPEG or WebP — or None. The name
    or declared type of an upload is never trusted; SVG (script-capable) is never accepted."""
    if content.startswith(b"\x89PNG\r\n\x1a\n") and content[12:16] == b"IHDR":
        return "image/png"
    if content.startswith(b"\xff\xd8\xff") and content.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return "image/jpeg"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP" and content[12:15] == b"VP8":
        return "image/webp"
    return None


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_timezone(name: str) -> str:
    """An IANA zone name known to this system's tz database (``Europe/Berlin``)."""
    if name not in _zones():
        raise InvalidRequest(
            "timezone_invalid",
            f"{name!r} is not an IANA time zone name (such as 'Asia/Shanghai').",
            param="timezone",
        )
    return name


async def update_merchant(
    session: AsyncSession, *, merchant_id: str, name: str | None = None,
    timezone: str | None = None, clear_timezone: bool = False,
) -> Merchant:  # fmt: skip
    """Rename a merchant or set its pages' time zone (``clear_timezone``: back to the
    platform's default)."""
    merchant = await MerchantRepository(session).get_merchant(merchant_id)
    if merchant is None:
        raise NotFound("merchant", merchant_id)
    if timezone is not None:
        check_timezone(timezone)
    if name is not None:
        if not name.strip():
            raise InvalidRequest("parameter_invalid", "Merchant name is required.", param="name")
        merchant.name = name.strip()
    if timezone is not None:
        merchant.timezone = timezone
    elif clear_timezone:
        merchant.timezone = None
    await session.flush()
    return merchant


async def update_app(
    session: AsyncSession, *, app_id: str, name: str | None = None,
    display_name: str | None = None, clear_display_name: bool = False,
    logo: bytes | None = None, clear_logo: bool = False,
) -> App:  # fmt: skip
    """Rename an app or change its brand: the display name and the logo customers see. Every
    check runs before anything changes."""
    repo = MerchantRepository(session)
    app = await repo.get_app(app_id)
    if app is None:
        raise NotFound("app", app_id)
    logo_type = None
    if logo is not None:
        if len(logo) > LOGO_MAX_BYTES:
            raise InvalidRequest(
                "logo_too_large", f"The logo may have at most {LOGO_MAX_BYTES} bytes.",
                param="logo",
            )  # fmt: skip
        logo_type = sniff_logo(logo)
        if logo_type is None:
            raise InvalidRequest(
                "logo_unsupported", "The logo must be a PNG, JPEG or WebP image.", param="logo"
            )
    if name is not None:
        app.name = name.strip() or app.name
    if display_name is not None:
        app.display_name = display_name.strip() or None
    elif clear_display_name:
        app.display_name = None
    if logo is not None:
        await repo.set_logo(app, logo, logo_type, hashlib.sha256(logo).hexdigest())
    elif clear_logo:
        await repo.set_logo(app, None, None, None)
    await session.flush()
    return app


def logo_path(app: App) -> str | None:
    """Where the gateway serves the app's logo: content-addressed, so cacheable for a year."""
    if app.logo_digest is None:
        return None
    return f"/brand/{app.id}/logo/{app.logo_digest}"


@dataclass(frozen=True)
class Brand:
    """What a customer page shows of the merchant: its name, logo and time zone."""

    name: str
    logo_url: str | None
    timezone: str | None
    """None: the platform's default."""


def brand_of(merchant: Merchant | None, app: App | None) -> Brand:
    """The app's display name, else "merchant · app" (each once), else ``paymux``."""
    if app is not None and app.display_name:
        name = app.display_name
    else:
        names = [n for n in ((merchant.name if merchant else None), (app.name if app else None))]
        name = " · ".join(dict.fromkeys(n for n in names if n)) or "paymux"
    return Brand(
        name=name,
        logo_url=logo_path(app) if app is not None else None,
        # A zone the tz database no longer knows (after an upgrade) falls back to the platform's.
        timezone=merchant.timezone
        if merchant is not None and merchant.timezone in _zones()
        else None,
    )


async def brand(session: AsyncSession, app_id: str) -> Brand:
    repo = MerchantRepository(session)
    app = await repo.get_app(app_id)
    merchant = await repo.get_merchant(app.merchant_id) if app is not None else None
    return brand_of(merchant, app)

"""Every query of merchants, apps and API keys."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.merchants.models import ApiKey, App, Merchant


class MerchantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_merchant(self, merchant_id: str) -> Merchant | None:
        return await self.session.get(Merchant, merchant_id)

    async def get_app(self, app_id: str) -> App | None:
        return await self.session.get(App, app_id)

    async def list_merchants(self) -> list[Merchant]:
        return list((await self.session.scalars(sa.select(Merchant).order_by(Merchant.id))).all())

    async def list_apps(self, merchant_id: str | None = None) -> list[App]:
        stmt = sa.select(App).order_by(App.id)
        if merchant_id:
            stmt = stmt.where(App.merchant_id == merchant_id)
        return list((await self.session.scalars(stmt)).all())

    async def find_key(self, key_hash: str) -> tuple[ApiKey, App] | None:
        stmt = (
            sa.select(ApiKey, App)
            .join(App, App.id == ApiKey.app_id)
            .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
        )
        row = (await self.session.execute(stmt)).first()
        return (row[0], row[1]) if row else None

    async def list_keys(self, app_id: str) -> list[ApiKey]:
        stmt = sa.select(ApiKey).where(ApiKey.app_id == app_id).order_by(ApiKey.id)
        return list((await self.session.scalars(stmt)).all())

    async def set_logo(
        self, app: App, content: bytes | None, content_type: str | None, digest: str | None
    ) -> None:
        app.logo, app.logo_type, app.logo_digest = content, content_type, digest

    async def logo(self, app_id: str, digest: str) -> tuple[bytes, str] | None:
        """The app's logo if ``digest`` is its current one (an old URL finds nothing)."""
        stmt = sa.select(App.logo, App.logo_type).where(
            App.id == app_id, App.logo_digest == digest, App.logo.is_not(None)
        )
        row = (await self.session.execute(stmt)).first()
        if row is None or row[0] is None or row[1] is None:
            return None
        return row[0], row[1]

    def add(self, obj: Merchant | App | ApiKey) -> None:
        self.session.add(obj)

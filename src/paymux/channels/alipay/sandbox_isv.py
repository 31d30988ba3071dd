"""The Alipay sandbox's ISV mode (第三方应用授权: a sub-merchant authorises an ISV's app, which
then acts for it with ``app_auth_token``; control API ``POST /_sandbox/app_auths``) and
JSAPI / mini-program trades (``alipay.trade.create``).
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from paymux.channels import sandbox_kit
from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.sandbox_apps import _OK, SandboxApp, _business, _digits, _Fail
from paymux.channels.alipay.sandbox_trades import TradesBase
from paymux.kit import clock


@dataclass
class AppAuth:
    """One sub-merchant's authorisation of an ISV's app (第三方应用授权)."""

    token: str
    isv_app_id: str
    merchant: SandboxApp
    """The sub-merchant's own app (``auth_app_id``) and PID (``user_id`` = seller)."""
    expires_at: dt.datetime | None = None


class AppAuthIn(BaseModel):
    isv_app_id: str
    expires_in: float | None = None


class IsvMethods(TradesBase):
    app_auths: dict[str, AppAuth]

    # ------------------------------------------------------------ ISV mode, JSAPI
    def authorize(self, isv_app_id: str, *, expires_in: float | None = None) -> dict[str, Any]:
        """A new sub-merchant authorises the ISV's app: what ``alipay.open.auth.token.app``
        answers the ISV (``app_auth_token``, ``auth_app_id``, ``user_id``)."""
        if isv_app_id not in self.apps:
            raise KeyError(isv_app_id)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        app_id = "2021" + _digits(12)
        merchant = self.register_app(app_id, sandbox_kit.public_key_pem(key.public_key()))
        token = clock.now().strftime("%Y%m") + "BB" + secrets.token_hex(16) + "X07"
        expires_at = clock.now() + dt.timedelta(seconds=expires_in) if expires_in else None
        self.app_auths[token] = AppAuth(token, isv_app_id, merchant, expires_at)
        return {"app_auth_token": token, "auth_app_id": app_id, "user_id": merchant.seller_id}

    def provision_sub_merchant(self, base_url: str) -> dict[str, Any]:
        """Complete ISV-mode credentials: a new ISV app's and a new sub-merchant's
        authorisation of it (the sub-merchant's PID as ``seller_id``)."""
        creds = self.provision(base_url)
        grant = self.authorize(creds["app_id"])
        return {
            **creds,
            "app_auth_token": grant["app_auth_token"],
            "auth_app_id": grant["auth_app_id"],
            "seller_id": grant["user_id"],
        }

    def _acting_app(self, app: SandboxApp, params: dict[str, str]) -> SandboxApp:
        """The app a request acts for: the signer, or with ``app_auth_token`` the sub-merchant
        that authorised the signer (20001 for a token that is unknown, another ISV's or
        expired)."""
        token = params.get("app_auth_token")
        if not token:
            return app
        grant = self.app_auths.get(token)
        if grant is None or grant.isv_app_id != app.app_id:
            sub_code = "aop.invalid-app-auth-token"
            raise _Fail("20001", sub_code, p.ISV_AUTH_ERRORS[sub_code])
        if grant.expires_at is not None and clock.now() >= grant.expires_at:
            sub_code = "aop.app-auth-token-time-out"
            raise _Fail("20001", sub_code, p.ISV_AUTH_ERRORS[sub_code])
        merchant = grant.merchant
        return SandboxApp(
            app_id=merchant.app_id,
            public_key=merchant.public_key,
            seller_id=merchant.seller_id,
            cert_sn=app.cert_sn,
            isv_app_id=app.app_id,
        )

    async def _trade_create(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        """``alipay.trade.create`` (JSAPI / mini-program): the trade exists at once, for the
        named buyer (``buyer_id`` 2088… or ``buyer_open_id``). [The sub_code for a missing
        buyer is the sandbox's own.]"""
        product = biz.get("product_code") or p.PRODUCT_QR
        if product not in (p.PRODUCT_JSAPI, p.PRODUCT_QR):
            raise _business("ACQ.PRODUCT_CODE_ERROR", f"不支持的产品码 {product}")
        buyer_id, open_id = biz.get("buyer_id"), biz.get("buyer_open_id")
        if not buyer_id and not open_id:
            raise _business("ACQ.INVALID_PARAMETER", "buyer_id和buyer_open_id不能同时为空")
        if buyer_id and not p.USER_ID.fullmatch(str(buyer_id)):
            raise _business("ACQ.INVALID_PARAMETER", "buyer_id格式错误")
        order = await self._create(app, params, biz, "alipay_jsapi")
        return {**_OK, "out_trade_no": order.out_trade_no, "trade_no": order.channel_trade_no}

    def _isv_router(self) -> APIRouter:
        router = APIRouter(prefix="/_sandbox")

        @router.post("/app_auths")
        async def authorize(body: AppAuthIn) -> dict[str, Any]:
            """Control API: a new sub-merchant authorises the ISV app ``isv_app_id``
            (``expires_in`` seconds, or for good): its ``app_auth_token``."""
            if body.isv_app_id not in self.apps:
                raise HTTPException(404, "no such app")
            return self.authorize(body.isv_app_id, expires_in=body.expires_in)

        return router

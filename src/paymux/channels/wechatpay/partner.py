"""WeChat Pay 服务商 (partner / ISV) mode: credentials and the facts of the partner wire format.

A platform that is a WeChat Pay *service provider* (服务商) takes payments for its sub-merchants
(特约商户): it signs every request with its own merchant key (``Authorization: mchid=<sp_mchid>``)
and names the sub-merchant in the body. paymux keeps one channel account per sub-merchant, each
carrying the service provider's credentials plus that sub-merchant's ids, so routing, fees and
reconciliation stay per sub-merchant.

What changes against direct mode (WeChat's partner API docs; wechatpayv3 ``partner_mode``):

- orders: ``POST /v3/pay/partner/transactions/{native|jsapi|h5|app}`` with ``sp_appid,
  sp_mchid, sub_mchid`` and optional ``sub_appid``; the payer is ``sp_openid`` (an openid under
  ``sp_appid``) or ``sub_openid`` (under ``sub_appid``, which must then be sent);
- query: ``GET …/out-trade-no/{no}?sp_mchid=…&sub_mchid=…``; close: ``POST …/close`` with
  ``{sp_mchid, sub_mchid}``;
- transactions (answers and notifications) carry ``sp_appid, sp_mchid, sub_appid, sub_mchid``
  and ``payer.{sp_openid, sub_openid}`` instead of ``appid, mchid, payer.openid``;
- refunds: the same ``/v3/refund/domestic/refunds`` with ``sub_mchid`` in the body, and
  ``?sub_mchid=`` on the refund query; refund notifications carry ``sp_mchid, sub_mchid``;
- JSAPI / mini-program pay parameters are signed by the service provider's key with the appid
  the openid belongs to; the APP SDK's ``partnerid`` is the sub-merchant.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from paymux.channels.wechatpay import protocol

DEFAULT_GATEWAY = "https://api.mch.weixin.qq.com"


class WechatPayPartnerCredentials(BaseModel):
    """One sub-merchant (特约商户) served by a WeChat Pay service provider (服务商), in platform
    public-key mode. The key material is the service provider's."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    sp_mchid: str = Field(min_length=1, max_length=32)
    """The service provider's merchant id: signs every request."""
    sp_appid: str = Field(min_length=1, max_length=32)
    """An appid bound to the service provider (official account, app or mini-program)."""
    sub_mchid: str = Field(min_length=1, max_length=32)
    """The sub-merchant the money is for."""
    sub_appid: str | None = Field(default=None, min_length=1, max_length=32)
    """The sub-merchant's own appid (official account / app), when it pays under its own app:
    then JSAPI payers are ``sub_openid`` under it."""
    sp_mini_appid: str | None = Field(default=None, min_length=1, max_length=32)
    """A mini-program of the service provider that takes ``wechat_mini`` payments."""
    sub_mini_appid: str | None = Field(default=None, min_length=1, max_length=32)
    """The sub-merchant's own mini-program (wins over ``sp_mini_appid``)."""
    merchant_serial_no: str = Field(min_length=1, max_length=64)
    """The service provider's API certificate serial."""
    merchant_private_key: str = Field(min_length=1)
    """The service provider's PEM private key (``apiclient_key.pem``)."""
    apiv3_key: str = Field(min_length=32, max_length=32)
    """The service provider's APIv3 key: decrypts every notification of its sub-merchants."""
    platform_public_key_id: str = Field(min_length=len(protocol.PUBLIC_KEY_ID_PREFIX) + 1)
    platform_public_key: str = Field(min_length=1)
    gateway: str = DEFAULT_GATEWAY

    @property
    def mchid(self) -> str:
        """Who signs (the ``Authorization`` header's ``mchid``): the service provider."""
        return self.sp_mchid

    @property
    def appid(self) -> str:
        return self.sp_appid

    def payer_app(self, method: str) -> tuple[str, str]:
        """For a JSAPI-kind ``method``: (``sp`` or ``sub``, the appid the payer's openid
        belongs to). The sub-merchant's own app wins; otherwise the service provider's."""
        if method == "wechat_mini":
            if self.sub_mini_appid:
                return "sub", self.sub_mini_appid
            if self.sp_mini_appid:
                return "sp", self.sp_mini_appid
        if self.sub_appid:
            return "sub", self.sub_appid
        return "sp", self.sp_appid

    def order_apps(self, method: str) -> tuple[str, str | None]:
        """(``sp_appid``, ``sub_appid`` or None) to send in an order for ``method``."""
        side, appid = self.payer_app(method)
        return (self.sp_appid, appid) if side == "sub" else (appid, None)

    @field_validator("merchant_private_key")
    @classmethod
    def _private_key(cls, value: str) -> str:
        try:
            protocol.load_private_key(value)
        except (ValueError, TypeError) as exc:
            raise ValueError("merchant_private_key is not an RSA private key PEM") from exc
        return value

    @field_validator("platform_public_key")
    @classmethod
    def _public_key(cls, value: str) -> str:
        try:
            protocol.load_public_key(value)
        except (ValueError, TypeError) as exc:
            raise ValueError("platform_public_key is not an RSA public key PEM") from exc
        return value

    @field_validator("platform_public_key_id")
    @classmethod
    def _public_key_id(cls, value: str) -> str:
        if not value.startswith(protocol.PUBLIC_KEY_ID_PREFIX):
            raise ValueError(
                f"platform_public_key_id must start with {protocol.PUBLIC_KEY_ID_PREFIX}"
            )
        return value

    @field_validator("apiv3_key")
    @classmethod
    def _apiv3_key(cls, value: str) -> str:
        if len(value.encode()) != 32:
            raise ValueError("apiv3_key must be 32 ASCII characters")
        return value

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("gateway must be an http(s) base URL")
        return value.rstrip("/")

"""The key material every WeChat Pay API v3 account has — a direct merchant's, or in partner
mode the service provider's (platform public-key mode) — and its checks."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from paymux.channels.wechatpay import protocol

DEFAULT_GATEWAY = "https://api.mch.weixin.qq.com"


class MerchantKeys(BaseModel):
    """API certificate serial and private key, APIv3 key, WeChat Pay public key, gateway."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    merchant_serial_no: str = Field(min_length=1, max_length=64)
    """The API certificate serial of whoever signs the requests."""
    merchant_private_key: str = Field(min_length=1)
    """PEM (PKCS#8 ``BEGIN PRIVATE KEY``, as in ``apiclient_key.pem``)."""
    apiv3_key: str = Field(min_length=32, max_length=32)
    """Decrypts notifications (and, in partner mode, those of every sub-merchant)."""
    platform_public_key_id: str = Field(min_length=len(protocol.PUBLIC_KEY_ID_PREFIX) + 1)
    platform_public_key: str = Field(min_length=1)
    """PEM (``BEGIN PUBLIC KEY``), downloaded from the merchant platform."""
    gateway: str = DEFAULT_GATEWAY

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

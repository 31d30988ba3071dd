"""The credentials of one Alipay app: public-key mode, public-key *certificate* mode (公钥证书)
and ISV mode (第三方应用授权, ``app_auth_token``), each checked when the adapter is made.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from paymux.channels.alipay import protocol as p

PRODUCTION_GATEWAY = "https://openapi.alipay.com/gateway.do"


class AlipayCredentials(BaseModel):
    """One Alipay app, in public-key mode or in public-key *certificate* mode (公钥证书: the
    three certificate fields instead of ``alipay_public_key``). Alipay requires certificate
    mode for payouts (``alipay.fund.trans.uni.transfer``)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    app_id: str = Field(min_length=1, max_length=32)
    app_private_key: str = Field(min_length=1)
    """The app's RSA private key (PEM, or Alipay's bare base64 PKCS#8)."""
    alipay_public_key: str | None = None
    """Alipay's public key for this app (PEM, or bare base64), verifies responses/notifies.
    Public-key mode only."""
    app_cert: str | None = None
    """Certificate mode: the app's public-key certificate (``appCertPublicKey_<app_id>.crt``)."""
    alipay_cert: str | None = None
    """Certificate mode: Alipay's public-key certificate (``alipayCertPublicKey_RSA2.crt``)."""
    alipay_root_cert: str | None = None
    """Certificate mode: Alipay's root certificate bundle (``alipayRootCert.crt``)."""
    gateway: str = PRODUCTION_GATEWAY
    seller_id: str | None = None
    """The merchant's PID (2088…); when set, notifications must carry it."""
    app_auth_token: str | None = Field(default=None, min_length=1, max_length=128)
    """ISV mode (第三方应用授权): the sub-merchant's authorisation of this (the ISV's) app, sent
    as the common parameter ``app_auth_token`` on every call."""
    auth_app_id: str | None = Field(default=None, min_length=1, max_length=32)
    """ISV mode: the sub-merchant's own app (``auth_app_id`` of the token); its notifications
    must name it."""
    mini_app_id: str | None = Field(default=None, min_length=1, max_length=32)
    """The mini-program where ``alipay_jsapi`` payments are made (``op_app_id``); the
    sub-merchant's app in ISV mode, else ``app_id``, when not set."""

    @model_validator(mode="after")
    def _isv(self) -> AlipayCredentials:
        if self.app_auth_token and not self.auth_app_id:
            raise ValueError("ISV mode (app_auth_token) needs the sub-merchant's auth_app_id")
        if self.auth_app_id and not self.app_auth_token:
            raise ValueError("auth_app_id is only for ISV mode (with app_auth_token)")
        return self

    @field_validator("app_private_key")
    @classmethod
    def _private_key(cls, value: str) -> str:
        p.load_private_key(value)  # ProtocolError is a ValueError → ValidationError
        return value

    @field_validator("alipay_public_key")
    @classmethod
    def _public_key(cls, value: str | None) -> str | None:
        if value:
            p.load_public_key(value)
        return value or None

    @field_validator("app_cert", "alipay_cert")
    @classmethod
    def _certificate(cls, value: str | None) -> str | None:
        if value:
            p.certificate_key(value, "certificate")
        return value or None

    @field_validator("alipay_root_cert")
    @classmethod
    def _root(cls, value: str | None) -> str | None:
        if value:
            p.root_cert_sn(value)
        return value or None

    @model_validator(mode="after")
    def _mode(self) -> AlipayCredentials:
        certs = (self.app_cert, self.alipay_cert, self.alipay_root_cert)
        if any(certs) and not all(certs):
            raise ValueError("certificate mode needs app_cert, alipay_cert and alipay_root_cert")
        if not any(certs) and not self.alipay_public_key:
            raise ValueError("alipay_public_key (or the three certificates) is required")
        if self.app_cert:
            app_key, _ = p.certificate_key(self.app_cert, "app_cert")
            own = p.load_private_key(self.app_private_key).public_key()
            if app_key.public_numbers() != own.public_numbers():
                raise ValueError("app_cert does not certify the key of app_private_key")
        return self

    @property
    def cert_mode(self) -> bool:
        return self.app_cert is not None

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("gateway must be an http(s) URL")
        if parts.query or parts.fragment:
            raise ValueError("gateway must not carry a query or fragment")
        return value

    @field_validator("seller_id")
    @classmethod
    def _seller(cls, value: str | None) -> str | None:
        return value or None

"""The Alipay sandbox's ground floor: the pieces of every answer (``_OK``, :class:`_Fail` and
its helpers), the apps it serves — in public-key mode or certificate mode, for which it
plays Alipay's certificate authority (:class:`_Authority`) — and the directory of Alipay
accounts (:class:`Payee`) that payouts and splits reach.

Every part of the sandbox builds on :class:`SandboxBase`; its state is made by
:class:`~paymux.channels.alipay.sandbox.Sandbox`.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from paymux.channels import sandbox_kit
from paymux.channels.alipay import protocol as p
from paymux.channels.sandbox_kit import SandboxCore
from paymux.kit import clock

_MESSAGES = {
    "10000": "Success",
    "20000": "Service Currently Unavailable",
    "40001": "Missing Required Arguments",
    "40002": "Invalid Arguments",
    "40004": "Business Failed",
}
_OK = {"code": "10000", "msg": "Success"}
_IDENTITY_ATTRIBUTES = {
    "ALIPAY_USER_ID": "user_id",
    "ALIPAY_LOGON_ID": "login_id",
    "ALIPAY_OPEN_ID": "open_id",
}


@dataclass
class SandboxApp:
    app_id: str
    public_key: rsa.RSAPublicKey
    seller_id: str
    cert_sn: str | None = None
    """Certificate mode: the SN of the app's public-key certificate."""
    isv_app_id: str | None = None
    """Set on the view of a sub-merchant's app that an ISV's app is acting for
    (``app_auth_token``): the ISV's app, which signed the request."""


ServerMethod = Callable[
    [SandboxApp, dict[str, str], dict[str, Any], str], Awaitable[dict[str, Any]]
]
"""A gateway method: (app, request parameters, ``biz_content``, base URL) → its answer."""


@dataclass(frozen=True)
class Payee:
    """An Alipay account that can be paid: one person, three ways to name them."""

    user_id: str
    open_id: str
    name: str
    login_id: str | None = None


class _Authority:
    """The sandbox's stand-in for Alipay's certificate authority (certificate mode)."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.name = _cert_name("paymux sandbox Root CA")
        self.root = self._build(self.name, self.key.public_key(), ca=True)
        self.root_pem = _pem(self.root)
        self.root_sn = p.root_cert_sn(self.root_pem)

    def issue(self, public_key: rsa.RSAPublicKey, common_name: str) -> str:
        return _pem(self._build(_cert_name(common_name), public_key, ca=False))

    def _build(self, subject: x509.Name, key: rsa.RSAPublicKey, *, ca: bool) -> x509.Certificate:
        now = clock.now()
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )


def _cert_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "paymux sandbox"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Certification Authority"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(Encoding.PEM).decode()


class _Fail(Exception):
    def __init__(self, code: str, sub_code: str, sub_msg: str) -> None:
        super().__init__(f"{code} {sub_code}: {sub_msg}")
        self.code = code
        self.sub_code = sub_code
        self.sub_msg = sub_msg

    def payload(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "msg": _MESSAGES.get(self.code, "Business Failed"),
            "sub_code": self.sub_code,
            "sub_msg": self.sub_msg,
        }


class _CreateError(Exception):
    """Scripted ``create_error``: HTTP 500, nothing created."""


def _missing(name: str) -> _Fail:
    return _Fail("40001", f"isv.missing-{name}", f"缺少{name}参数")


def _invalid(name: str, message: str = "") -> _Fail:
    return _Fail("40002", f"isv.invalid-{name}", message or f"无效的{name}参数")


def _business(sub_code: str, message: str) -> _Fail:
    return _Fail("40004", sub_code, message)


def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


class SandboxBase:
    """The state every part of the sandbox shares, and the apps and payees it knows."""

    _alipay_key: rsa.RSAPrivateKey
    alipay_public_key: str
    apps: dict[str, SandboxApp]
    _authority: _Authority | None
    alipay_cert: str | None
    alipay_cert_sn: str | None
    payees: list[Payee]
    core: SandboxCore
    _server_methods: dict[str, ServerMethod]

    # ------------------------------------------------------------ apps
    @property
    def authority(self) -> _Authority:
        """Made on first use: most sandboxes never see certificate mode."""
        if self._authority is None:
            self._authority = _Authority()
            self.alipay_cert = self._authority.issue(
                self._alipay_key.public_key(), "paymux sandbox Alipay public key"
            )
            self.alipay_cert_sn = p.certificate_key(self.alipay_cert, "alipay_cert")[1]
        return self._authority

    def register_app(
        self,
        app_id: str,
        app_public_key: str,
        *,
        seller_id: str | None = None,
        cert_sn: str | None = None,
    ) -> SandboxApp:
        """Register an app whose key pair was made elsewhere (e.g. for an SDK client)."""
        app = SandboxApp(
            app_id=app_id,
            public_key=p.load_public_key(app_public_key),
            seller_id=seller_id or "2088" + _digits(12),
            cert_sn=cert_sn,
        )
        self.apps[app_id] = app
        return app

    def provision_demo(self, base_url: str) -> dict[str, Any]:
        """An app with everything enabled, for the demo: payouts need certificate mode."""
        return self.provision(base_url, cert_mode=True)

    def provision(self, base_url: str, *, cert_mode: bool = False) -> dict[str, Any]:
        """Create an app with a fresh RSA 2048 key pair; return complete adapter credentials.
        ``cert_mode``: the app uses public-key certificates (what payouts need) and gets its
        certificate, the "Alipay" certificate and the root bundle instead of a bare key."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        app_id = "9021" + _digits(12)
        while app_id in self.apps:
            app_id = "9021" + _digits(12)
        creds: dict[str, Any] = {
            "app_id": app_id,
            "app_private_key": sandbox_kit.private_key_pem(key),
            "gateway": f"{base_url.rstrip('/')}/gateway.do",
        }
        cert_sn: str | None = None
        if cert_mode:
            app_cert = self.authority.issue(key.public_key(), f"paymux sandbox app {app_id}")
            cert_sn = p.certificate_key(app_cert, "app_cert")[1]
            creds |= {
                "app_cert": app_cert,
                "alipay_cert": self.alipay_cert,
                "alipay_root_cert": self.authority.root_pem,
            }
        else:
            creds["alipay_public_key"] = self.alipay_public_key
        app = self.register_app(
            app_id, sandbox_kit.public_key_pem(key.public_key()), cert_sn=cert_sn
        )
        creds["seller_id"] = app.seller_id
        return creds

    # ------------------------------------------------------------ payees
    def add_payee(self, name: str, login_id: str | None = None) -> Payee:
        """An Alipay account payouts can reach by user id, open id or (if given) login id."""
        payee = Payee(
            user_id="2088" + _digits(12),
            open_id="074" + secrets.token_hex(14),
            name=name,
            login_id=login_id,
        )
        self.payees.append(payee)
        return payee

    def find_payee(self, identity_type: str, identity: str) -> Payee | None:
        attribute = _IDENTITY_ATTRIBUTES[identity_type]
        return next((x for x in self.payees if getattr(x, attribute) == identity), None)

"""An Alipay OpenAPI sandbox that speaks the real wire protocol (RSA2; public-key mode and
public-key certificate mode).

``POST``/``GET /gateway.do`` dispatches on ``method`` as Alipay does; parameters come from the
query string and/or an ``application/x-www-form-urlencoded`` body. Every request's signature is
checked against the registered app's public key (failures answer ``40002
isv.invalid-signature``), and every JSON answer ``{"<method>_response": {...}, "sign": "..."}``
is signed, with the sandbox's own "Alipay" key, over the exact text of the response object.

Certificate mode (``provision(..., cert_mode=True)``): the sandbox plays Alipay's certificate
authority; the app gets its public-key certificate, the "Alipay" certificate and the root
bundle. Its requests must carry ``app_cert_sn`` and ``alipay_root_cert_sn`` (the sub_codes for
a wrong or missing one are the sandbox's own), its answers carry ``alipay_cert_sn``. The
payout methods answer only certificate-mode apps (``40006 isv.insufficient-isv-permissions``
otherwise), as Alipay requires.

Methods:

- ``alipay.trade.precreate``: creates the order (``WAIT_BUYER_PAY``), answers ``qr_code`` =
  ``{base_url}/_sandbox/pay/{out_trade_no}``. Repeating it for a pending order with the same
  amount and subject returns the same code (Alipay's idempotency); otherwise
  ``ACQ.CONTEXT_INCONSISTENT`` / ``ACQ.TRADE_HAS_SUCCESS`` / ``ACQ.TRADE_HAS_CLOSE``.
- ``alipay.trade.page.pay`` / ``alipay.trade.wap.pay`` / ``alipay.trade.app.pay``: browser
  entries. Opening the signed gateway URL (or, standing in for the Alipay app SDK, the app
  order string as a query) creates the order and redirects (302) to the customer page. As at
  Alipay, these orders do not exist before that (a query answers ``ACQ.TRADE_NOT_EXIST``).
  Errors are shown as an HTML error page (HTTP 400). ``QUICK_WAP_WAY`` and the legacy
  ``QUICK_WAP_PAY`` are both accepted for wap.
- ``alipay.trade.query``: by ``out_trade_no`` or ``trade_no``; ``ACQ.TRADE_NOT_EXIST`` if unknown.
- ``alipay.trade.close``: closes a ``WAIT_BUYER_PAY`` order; ``ACQ.TRADE_STATUS_ERROR`` for a
  paid or already closed one; ``ACQ.TRADE_NOT_EXIST`` if unknown.
- ``alipay.trade.refund``: refunds a ``TRADE_SUCCESS`` trade, following the kit's refund
  scripts: ``succeed`` → ``fund_change=Y``; ``delayed`` / ``fail`` → ``fund_change=N``, then
  succeeds after the delay or never; ``refuse`` → ``ACQ.SELLER_BALANCE_NOT_ENOUGH``;
  ``create_error`` → ``ACQ.SYSTEM_ERROR`` (nothing made); ``create_timeout`` → made, answer
  held. A repeated ``out_request_no`` with the same amount answers ``fund_change=N`` and moves
  nothing; with another amount ``ACQ.DISCORDANT_REPEAT_REQUEST``. More than is left →
  ``ACQ.REASON_TRADE_REFUND_FEE_ERR``; no ``out_request_no`` means one full refund numbered by
  the ``out_trade_no`` (else ``ACQ.REFUND_AMT_NOT_EQUAL_TOTAL``); an unpaid or fully refunded
  (``TRADE_CLOSED``) trade → ``ACQ.TRADE_STATUS_ERROR``. ``refund_fee`` is the trade's total
  refunded.
- ``alipay.trade.fastpay.refund.query``: ``refund_status=REFUND_SUCCESS`` with
  ``refund_amount`` (and ``gmt_refund_pay`` when ``query_options`` asks) once the refund
  succeeded; before that, or for a refund that failed or never came, only ``code``/``msg``
  [the exact shape of Alipay's empty answer is unverified; the adapter needs only the absent
  ``refund_status``].
- ``alipay.fund.trans.uni.transfer`` (``TRANS_ACCOUNT_NO_PWD`` / ``DIRECT_TRANSFER``): pays a
  payee of the sandbox's directory (``POST /_sandbox/payees``) named by ``ALIPAY_USER_ID``,
  ``ALIPAY_LOGON_ID`` (``name`` required) or ``ALIPAY_OPEN_ID``: unknown → ``PAYEE_NOT_EXIST``,
  wrong name → ``PAYEE_USER_INFO_ERROR``, under 0.10 → ``EXCEED_LIMIT_SM_MIN_AMOUNT``, over
  50 000 → ``EXCEED_LIMIT_PERSONAL_SM_AMOUNT``. Outcomes follow ``POST
  /_sandbox/transfer_scripts`` (:class:`TransferScript`). The same ``out_biz_no`` with the same
  request answers the existing transfer; with another → ``PAYMENT_INFO_INCONSISTENCY``.
- ``alipay.fund.trans.common.query``: by ``out_biz_no`` (+ product code and scene) or
  ``order_id``; ``status`` SUCCESS (with ``pay_date``, ``trans_amount``) / DEALING / FAIL
  (``error_code``, ``fail_reason``); unknown → ``ORDER_NOT_EXIST`` [sub_code unverified].
- ``alipay.trade.royalty.relation.bind``: binds ``userId`` / ``loginName`` receivers of the
  payee directory (``result_code=SUCCESS``; binding again is no error); unknown →
  ``ACQ.USER_NOT_EXIST``, bad type → ``ACQ.INVALID_RECEIVER_TYPE``, empty →
  ``ACQ.RECEIVER_LIST_EMPTY``, a name that does not match → ``ACQ.INVALID_PARAMETER``.
- ``alipay.trade.order.settle``: splits a paid trade to bound receivers (else
  ``ACQ.ROYALTY_RECEIVER_INVALID``) up to what is neither refunded, split nor released by an
  earlier ``royalty_finish`` (else ``ACQ.ALLOC_AMOUNT_VALIDATE_ERROR``); answers
  ``settle_no``. Outcomes follow ``POST /_sandbox/settle_scripts``: ``refuse`` = every
  receiver FAIL at once (``TXN_RESULT_ACCOUNT_BALANCE_NOT_ENOUGH``). The same
  ``out_request_no`` answers the same ``settle_no``. No per-trade split ratio is enforced.
- ``alipay.trade.order.settle.query``: by ``settle_no`` or ``out_request_no`` + ``trade_no``;
  ``royalty_detail_list`` lines with ``state`` SUCCESS / FAIL / PROCESSING.

Notifications (form POST, ``notify_type=trade_status_sync``, signed over the sorted fields
minus ``sign``/``sign_type``; acknowledged only by a 200 whose body is exactly ``success``;
retried 4m 10m 10m 1h 2h 6h 15h like Alipay):

- ``TRADE_SUCCESS`` when the order is paid.
- ``TRADE_CLOSED`` when an unpaid order is closed by Alipay: the sandbox's "decline" stands
  for a customer who gives up until the trade times out (Alipay has no failed trade state; its
  docs list "unpaid trade closed on timeout" as a TRADE_CLOSED trigger that notifies by
  default), and a pending order found past its ``time_expire`` is closed and notified too
  (lazily, when the order is next touched through the API).
- No notification for a close the merchant asked for via ``alipay.trade.close`` (its answer
  is authoritative) and none for ``WAIT_BUYER_PAY`` (Alipay does not notify it by default).
- After each refund that succeeds, to the trade's notify_url: ``TRADE_SUCCESS`` (partial) or
  ``TRADE_CLOSED`` (now fully refunded) with ``out_biz_no`` = the refund request number,
  ``refund_fee`` = total refunded, ``gmt_refund`` (``yyyy-MM-dd HH:mm:ss.S``). None for a
  refund that fails (it changes no trade).

Divergences from Alipay, on purpose: one sandbox "Alipay" key pair signs for every app (Alipay
issues one per app); refund request numbers are unique per app, not per trade; the
``timestamp`` is checked for format, not freshness; the customer page (from the shared kit) can
still pay an order past ``time_expire`` and redirects to ``return_url`` without Alipay's signed
return parameters.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import escape
from pydantic import BaseModel

from paymux.channels import sandbox_kit
from paymux.channels.alipay import bill
from paymux.channels.alipay import protocol as p
from paymux.channels.sandbox_kit import (
    BarcodeOutcome,
    BarcodeScript,
    NotifyMode,
    OrderStatus,
    Outcome,
    RefundOutcome,
    RefundStatus,
    SandboxCore,
    SandboxOrder,
    SandboxRefund,
    customer_router,
)
from paymux.kit import clock

RETRY_SCHEDULE: tuple[float, ...] = (240, 600, 600, 3600, 7200, 21600, 54000)

_MESSAGES = {
    "10000": "Success",
    "20000": "Service Currently Unavailable",
    "40001": "Missing Required Arguments",
    "40002": "Invalid Arguments",
    "40004": "Business Failed",
}
_OK = {"code": "10000", "msg": "Success"}
_CERT_ONLY = frozenset({p.METHOD_TRANSFER, p.METHOD_TRANSFER_QUERY})
"""Methods that move money out: Alipay takes them in certificate mode only."""
_IDENTITY_ATTRIBUTES = {
    "ALIPAY_USER_ID": "user_id",
    "ALIPAY_LOGON_ID": "login_id",
    "ALIPAY_OPEN_ID": "open_id",
}
_PERSONAL_TRANSFER_MAX = 50_000_00
"""转账给个人支付宝账户单笔最多5万元 (EXCEED_LIMIT_PERSONAL_SM_AMOUNT), in fen."""
_BUYER_LOGON_ID = "sbx***@sandbox.example"
_BROWSER_METHODS = {
    p.METHOD_PAGE_PAY: ("alipay_page", (p.PRODUCT_PAGE,)),
    p.METHOD_WAP_PAY: ("alipay_wap", (p.PRODUCT_WAP, "QUICK_WAP_PAY")),
    p.METHOD_APP_PAY: ("alipay_app", (p.PRODUCT_APP,)),
}
_MAX_AMOUNT = 100_000_000_00  # 100 million yuan, Alipay's per-trade ceiling, in fen


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


@dataclass(frozen=True)
class Payee:
    """An Alipay account that can be paid: one person, three ways to name them."""

    user_id: str
    open_id: str
    name: str
    login_id: str | None = None


class TransferScript(BaseModel):
    """The next transfer's outcome, with the kit's refund semantics: ``succeed`` (SUCCESS at
    once), ``delayed`` (DEALING, SUCCESS after ``delay``), ``fail`` (DEALING, FAIL after
    ``delay`` with ``error_code``/``fail_reason``), ``refuse`` (PAYER_BALANCE_NOT_ENOUGH),
    ``create_error`` (SYSTEM_ERROR, nothing made), ``create_timeout`` (made, answer held)."""

    outcome: RefundOutcome = RefundOutcome.succeed
    delay: float = 2.0
    sticky: bool = False
    error_code: str = "PAYEE_ACCOUNT_STATUS_ERROR"
    fail_reason: str = "收款方账户状态异常"


@dataclass
class SandboxTransfer:
    app_id: str
    out_biz_no: str
    order_id: str
    pay_fund_order_id: str
    amount: int
    identity_type: str
    identity: str
    name: str | None
    payee: Payee
    order_title: str | None
    remark: str | None
    script: TransferScript
    created_at: dt.datetime
    status: str = "DEALING"
    finished_at: dt.datetime | None = None
    error_code: str | None = None
    fail_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RoyaltyLine:
    """One receiver of a settle (a ``royalty_detail_list`` entry)."""

    trans_in_type: str
    trans_in: str
    amount: int
    desc: str | None
    detail_id: str
    state: str = "PROCESSING"
    execute_dt: dt.datetime | None = None
    error_code: str | None = None
    error_desc: str | None = None


@dataclass
class SandboxSettle:
    app_id: str
    out_request_no: str
    settle_no: str
    order: SandboxOrder
    lines: list[RoyaltyLine]
    finish: bool
    script: TransferScript
    created_at: dt.datetime
    fingerprint: tuple[Any, ...] = ()


class PayeeIn(BaseModel):
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


def _base_url(request: Request) -> str:
    root = str(request.scope.get("root_path", ""))
    return f"{request.url.scheme}://{request.url.netloc}{root}".rstrip("/")


def is_ack(response: httpx.Response) -> bool:
    """Alipay stops retrying only when the merchant prints exactly ``success``."""
    return response.status_code == 200 and response.content == b"success"


class Sandbox:
    """The Alipay sandbox: ``.core`` (orders, scripts, notifier) and ``.app`` (ASGI)."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient | None = None,
        time_scale: float = 1.0,
        hold_timeout_seconds: float = 30.0,
    ) -> None:
        self._alipay_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.alipay_public_key = sandbox_kit.public_key_pem(self._alipay_key.public_key())
        """The sandbox's "Alipay public key" (PEM), as given to every app."""
        self.apps: dict[str, SandboxApp] = {}
        self._authority: _Authority | None = None
        self.alipay_cert: str | None = None
        """Certificate mode: the sandbox's "Alipay public-key certificate" (PEM)."""
        self.alipay_cert_sn: str | None = None
        self.payees: list[Payee] = []
        self.transfers: dict[tuple[str, str], SandboxTransfer] = {}
        self.transfer_scripts: list[TransferScript] = []
        self.relations: dict[str, dict[tuple[str, str], Payee]] = {}
        """Per app: the bound split receivers, by (type, account)."""
        self.settles: dict[tuple[str, str, str], SandboxSettle] = {}
        """By (app_id, trade_no, out_request_no)."""
        self.settle_scripts: list[TransferScript] = []
        self.core = SandboxCore(
            channel="alipay",
            retry_schedule=RETRY_SCHEDULE,
            build_notification=self.build_notification,
            build_refund_notification=self.build_refund_notification,
            is_ack=is_ack,
            http=http,
            time_scale=time_scale,
            hold_timeout_seconds=hold_timeout_seconds,
        )
        ServerMethod = Callable[
            [SandboxApp, dict[str, str], dict[str, Any], str], Awaitable[dict[str, Any]]
        ]
        self._server_methods: dict[str, ServerMethod] = {
            p.METHOD_PRECREATE: self._precreate,
            p.METHOD_QUERY: self._query,
            p.METHOD_CLOSE: self._close,
            p.METHOD_REFUND: self._refund,
            p.METHOD_REFUND_QUERY: self._refund_query,
            p.METHOD_TRANSFER: self._transfer,
            p.METHOD_TRANSFER_QUERY: self._transfer_query,
            p.METHOD_ROYALTY_BIND: self._bind,
            p.METHOD_SETTLE: self._settle,
            p.METHOD_SETTLE_QUERY: self._settle_query,
        }
        self._server_methods[p.METHOD_PAY] = self._pay_code
        self._server_methods[p.METHOD_CANCEL] = self._cancel
        self.barcode_scripts: list[BarcodeScript] = []
        self._server_methods[p.METHOD_CREATE] = self._trade_create
        self.app_auths: dict[str, AppAuth] = {}
        """ISV authorisations (第三方应用授权) by ``app_auth_token``."""
        self.app = self._build_app()
        self.app.include_router(self._isv_router())

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

    # ------------------------------------------------------------ trade state
    def refunded(self, order: SandboxOrder) -> int:
        """What of the order has gone back to the buyer (succeeded refunds), in fen."""
        return sum(
            r.amount for r in self.core.refunds_of(order) if r.status is RefundStatus.succeeded
        )

    def wire_status(self, order: SandboxOrder) -> str:
        """The order's ``trade_status``: a paid trade refunded in full is ``TRADE_CLOSED``
        ("支付完成后全额退款")."""
        if order.extra.get("reversed"):
            return "TRADE_CLOSED"
        if order.status is OrderStatus.succeeded:
            return "TRADE_CLOSED" if self.refunded(order) >= order.amount else "TRADE_SUCCESS"
        return "WAIT_BUYER_PAY" if order.status is OrderStatus.pending else "TRADE_CLOSED"

    # ------------------------------------------------------------ notifications
    def _trade_notification(self, order: SandboxOrder) -> dict[str, str]:
        now = clock.now()
        paid = order.status is OrderStatus.succeeded
        amount = p.to_yuan(order.amount)
        fields = {
            "notify_id": p.format_time(now).replace("-", "").replace(" ", "").replace(":", "")
            + secrets.token_hex(12),
            "notify_time": p.format_time(now),
            "notify_type": "trade_status_sync",
            "charset": p.CHARSET,
            "version": p.VERSION,
            "app_id": order.extra.get("isv_app_id") or order.merchant_id,
            "auth_app_id": order.merchant_id,
            "trade_no": order.channel_trade_no,
            "out_trade_no": order.out_trade_no,
            "trade_status": self.wire_status(order),
            "total_amount": amount,
            "receipt_amount": amount if paid else "0.00",
            "invoice_amount": amount if paid else "0.00",
            "buyer_pay_amount": amount if paid else "0.00",
            "point_amount": "0.00",
            "buyer_id": str(order.extra["buyer_id"]),
            "seller_id": str(order.extra["seller_id"]),
            "subject": order.subject,
            "gmt_create": p.format_time(order.created_at),
        }
        if paid and order.paid_at is not None:
            fields["gmt_payment"] = p.format_time(order.paid_at)
            fields["fund_bill_list"] = json.dumps(
                [{"amount": amount, "fundChannel": "ALIPAYACCOUNT"}], separators=(",", ":")
            )
        else:
            fields["gmt_close"] = p.format_time(order.closed_at or now)
        if order.extra.get("buyer_open_id"):  # the payer was named by open id
            fields["buyer_open_id"] = str(order.extra["buyer_open_id"])
        return fields

    def _signed_form(self, fields: dict[str, str]) -> tuple[dict[str, str], bytes]:
        fields["sign"] = p.sign(p.notify_sign_content(fields), self._alipay_key)
        fields["sign_type"] = p.SIGN_TYPE
        body = p.query_string(fields).encode("ascii")
        return {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, body

    def build_notification(self, order: SandboxOrder) -> tuple[dict[str, str], bytes]:
        return self._signed_form(self._trade_notification(order))

    def build_refund_notification(self, refund: SandboxRefund) -> tuple[dict[str, str], bytes]:
        """A succeeded refund changes the trade, which Alipay notifies to the *trade's*
        notify_url: ``trade_status_sync`` with ``out_biz_no`` (the refund request number),
        ``refund_fee`` (the trade's total refunded) and ``gmt_refund`` (``…HH:mm:ss.S``)."""
        order = refund.order
        fields = self._trade_notification(order)
        finished = refund.finished_at or clock.now()
        fields["out_biz_no"] = refund.out_refund_no
        fields["refund_fee"] = p.to_yuan(self.refunded(order))
        fields["gmt_refund"] = p.format_time(finished) + f".{finished.microsecond // 1000:03d}"
        if fields["trade_status"] == "TRADE_CLOSED":
            fields["gmt_close"] = p.format_time(finished)
        return self._signed_form(fields)

    # ------------------------------------------------------------ request handling
    @staticmethod
    async def _read_params(request: Request) -> dict[str, str]:
        pairs = list(request.query_params.multi_items())
        if request.method == "POST":
            body = await request.body()
            ctype = request.headers.get("content-type", "")
            if body and (not ctype or "application/x-www-form-urlencoded" in ctype):
                try:
                    pairs += parse_qsl(
                        body.decode("utf-8"), keep_blank_values=True, errors="strict"
                    )
                except (UnicodeDecodeError, ValueError):
                    raise _invalid("parameter", "请求体不是 UTF-8 表单") from None
        params: dict[str, str] = {}
        for key, value in pairs:
            if key in params and params[key] != value:
                raise _invalid("parameter", f"参数 {key} 重复")
            params[key] = value
        return params

    def _authenticate(
        self, params: dict[str, str], method: str
    ) -> tuple[SandboxApp, dict[str, Any]]:
        """Common parameters and the request signature; returns the app and biz_content."""
        for name, wire in (("app-id", "app_id"), ("signature", "sign")):
            if not params.get(wire):
                raise _missing(name)
        app = self.apps.get(params["app_id"])
        if app is None:
            raise _invalid("app-id", "无效的AppID参数")
        sign_type = params.get("sign_type")
        if not sign_type:
            raise _missing("signature-type")
        if sign_type != p.SIGN_TYPE:
            raise _invalid("signature-type", "无效的签名类型")
        if params.get("charset", p.CHARSET).lower() != p.CHARSET:
            raise _invalid("charset", "字符集错误")
        if not p.verify_request(params, app.public_key):
            raise _invalid("signature", "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配")
        self._check_certificates(app, params, method)
        if not params.get("timestamp"):
            raise _missing("timestamp")
        try:
            p.parse_time(params["timestamp"])
        except ValueError:
            raise _invalid("timestamp", "非法的时间戳参数") from None
        if params.get("version", "") != p.VERSION:
            raise (
                _invalid("version", "无效的版本号")
                if params.get("version")
                else _missing("version")
            )
        if params.get("format", p.FORMAT).upper() != p.FORMAT:
            raise _invalid("format", "无效的数据格式")
        try:
            biz = json.loads(params.get("biz_content") or "{}")
        except json.JSONDecodeError:
            raise _invalid("parameter", "biz_content 不是合法的 JSON") from None
        if not isinstance(biz, dict):
            raise _invalid("parameter", "biz_content 不是 JSON 对象")
        return self._acting_app(app, params), biz

    def _check_certificates(self, app: SandboxApp, params: dict[str, str], method: str) -> None:
        """Certificate mode: the request names the app's and the root certificates by SN.
        [The sub_codes for a wrong or missing SN are the sandbox's own; unverified.]"""
        if app.cert_sn is None:
            if method in _CERT_ONLY:
                raise _Fail(
                    "40006", "isv.insufficient-isv-permissions", "资金支出类接口须使用公钥证书模式"
                )
            return
        if not params.get("app_cert_sn"):
            raise _missing("app-cert-sn")
        if params["app_cert_sn"] != app.cert_sn:
            raise _invalid("app-cert-sn", "应用公钥证书序列号不匹配")
        if params.get("alipay_root_cert_sn") != self.authority.root_sn:
            raise _invalid("alipay-root-cert-sn", "支付宝根证书序列号不匹配")

    def _respond(
        self, key: str, payload: dict[str, Any], app: SandboxApp | None = None
    ) -> Response:
        cert_sn = self.alipay_cert_sn if app is not None and app.cert_sn else None
        text = p.build_response(key, payload, self._alipay_key, alipay_cert_sn=cert_sn)
        return Response(text.encode("utf-8"), media_type="application/json;charset=utf-8")

    @staticmethod
    def _trade_fields(biz: dict[str, Any]) -> tuple[str, int, str]:
        out_trade_no = str(biz.get("out_trade_no") or "")
        if not out_trade_no:
            raise _Fail("40002", "isv.missing-parameter", "缺少 out_trade_no")
        if len(out_trade_no) > 64:
            raise _business("ACQ.INVALID_PARAMETER", "out_trade_no 过长")
        text = str(biz.get("total_amount") or "")
        try:
            amount = p.to_fen(text)
        except ValueError:
            raise _business("ACQ.INVALID_PARAMETER", "total_amount 格式错误") from None
        if not 1 <= amount <= _MAX_AMOUNT:
            raise _business("ACQ.TOTAL_FEE_EXCEED", "订单金额超过限额")
        subject = str(biz.get("subject") or "")
        if not subject:
            raise _Fail("40002", "isv.missing-parameter", "缺少 subject")
        return out_trade_no, amount, subject

    def _expire_if_due(self, order: SandboxOrder) -> None:
        expires = order.extra.get("expires_at")
        if (
            order.status is OrderStatus.pending
            and isinstance(expires, dt.datetime)
            and clock.now() >= expires
        ):
            self.core.close(order)
            self.core.spawn(self.core.notify(order))

    def _existing(self, order: SandboxOrder, amount: int, subject: str) -> None:
        """A repeated create for ``order``: fine only if pending and consistent."""
        self._expire_if_due(order)
        if order.status is OrderStatus.succeeded:
            raise _business("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
        if order.status is not OrderStatus.pending:
            raise _business("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
        if order.amount != amount or order.subject != subject:
            raise _business("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")

    async def _create(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], method: str
    ) -> SandboxOrder:
        out_trade_no, amount, subject = self._trade_fields(biz)
        existing = self.core.get_order(app.app_id, out_trade_no)
        if existing is not None:
            self._existing(existing, amount, subject)
            return existing
        expires_at: dt.datetime | None = None
        if biz.get("time_expire"):
            try:
                expires_at = p.parse_time(str(biz["time_expire"]))
            except ValueError:
                raise _business("ACQ.INVALID_PARAMETER", "time_expire 格式错误") from None
            if expires_at <= clock.now():
                raise _business("ACQ.INVALID_PARAMETER", "time_expire 已过期")
        seller = biz.get("seller_id")
        if seller and seller != app.seller_id:
            raise _business("ACQ.SELLER_NOT_EXIST", "卖家不存在")
        script = self.core.take_script(subject)
        if script.outcome is Outcome.create_error:
            raise _CreateError
        now = clock.now()
        trade_no = p.format_time(now)[:10].replace("-", "") + "22001" + _digits(15)
        order = self.core.add_order(
            SandboxOrder(
                out_trade_no=out_trade_no,
                channel_trade_no=trade_no,
                merchant_id=app.app_id,
                amount=amount,
                currency=p.CURRENCY,
                subject=subject,
                notify_url=params.get("notify_url") or None,
                method=method,
                script=script,
                created_at=now,
                return_url=params.get("return_url") or None,
                extra={
                    "buyer_id": str(biz.get("buyer_id") or "2088" + _digits(12)),
                    "buyer_open_id": biz.get("buyer_open_id"),
                    "isv_app_id": app.isv_app_id,
                    "seller_id": app.seller_id,
                    "expires_at": expires_at,
                },
            )
        )
        await self.core.after_create(order)
        return order

    def _lookup(self, app: SandboxApp, biz: dict[str, Any]) -> SandboxOrder:
        out_trade_no = biz.get("out_trade_no")
        trade_no = biz.get("trade_no")
        if not out_trade_no and not trade_no:
            raise _Fail("40002", "isv.missing-parameter", "out_trade_no 与 trade_no 不能同时为空")
        order = self.core.get_order(app.app_id, str(out_trade_no)) if out_trade_no else None
        if order is None and trade_no:
            order = next(
                (
                    o
                    for o in self.core.orders.values()
                    if o.merchant_id == app.app_id and o.channel_trade_no == trade_no
                ),
                None,
            )
        if order is None:
            raise _business("ACQ.TRADE_NOT_EXIST", "交易不存在")
        self._expire_if_due(order)
        return order

    # ------------------------------------------------------------ server methods
    async def _precreate(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        order = await self._create(app, params, biz, "alipay_qr")
        qr = f"{base}/_sandbox/pay/{order.out_trade_no}"
        return {**_OK, "out_trade_no": order.out_trade_no, "qr_code": qr}

    async def _close(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        order = self._lookup(app, biz)
        if order.status is not OrderStatus.pending:
            raise _business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        self.core.close(order)
        return {**_OK, "trade_no": order.channel_trade_no, "out_trade_no": order.out_trade_no}

    async def _query(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        order = self._lookup(app, biz)
        paid = order.status is OrderStatus.succeeded
        amount = p.to_yuan(order.amount)
        answer: dict[str, Any] = {
            **_OK,
            "trade_no": order.channel_trade_no,
            "out_trade_no": order.out_trade_no,
            "buyer_logon_id": _BUYER_LOGON_ID,
            "trade_status": self.wire_status(order),
            "total_amount": amount,
            "buyer_pay_amount": amount if paid else "0.00",
            "point_amount": "0.00",
            "invoice_amount": amount if paid else "0.00",
            "receipt_amount": amount if paid else "0.00",
            "buyer_user_id": order.extra["buyer_id"],
        }
        if paid and order.paid_at is not None:
            answer["send_pay_date"] = p.format_time(order.paid_at)
            answer["fund_bill_list"] = [{"amount": amount, "fund_channel": "ALIPAYACCOUNT"}]
        return answer

    # ------------------------------------------------------------ refunds
    def _refund_answer(self, refund: SandboxRefund, *, changed: bool) -> dict[str, Any]:
        order = refund.order
        answer: dict[str, Any] = {
            **_OK,
            "trade_no": order.channel_trade_no,
            "out_trade_no": order.out_trade_no,
            "buyer_logon_id": _BUYER_LOGON_ID,
            "buyer_user_id": order.extra["buyer_id"],
            "fund_change": "Y" if changed else "N",
            "refund_fee": p.to_yuan(self.refunded(order)),
        }
        if refund.status is RefundStatus.succeeded and refund.finished_at is not None:
            answer["gmt_refund_pay"] = p.format_time(refund.finished_at)
        return answer

    async def _refund(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        order = self._lookup(app, biz)
        text = str(biz.get("refund_amount") or "")
        if not text:
            raise _Fail("40002", "isv.missing-parameter", "缺少 refund_amount")
        try:
            amount = p.to_fen(text)
        except ValueError:
            raise _business("ACQ.INVALID_PARAMETER", "refund_amount 格式错误") from None
        if amount <= 0:
            raise _business("ACQ.REFUND_FEE_ERROR", "交易退款金额有误")
        given = str(biz.get("out_request_no") or "")
        if len(given) > 64:
            raise _business("ACQ.INVALID_PARAMETER", "out_request_no 过长")
        # Without out_request_no the request number is the out_trade_no: one full refund.
        out_request_no = given or order.out_trade_no
        existing = self.core.get_refund(app.app_id, out_request_no)
        if existing is not None:
            if existing.order is not order or existing.amount != amount:
                raise _business("ACQ.DISCORDANT_REPEAT_REQUEST", "不一致的请求")
            return self._refund_answer(existing, changed=False)
        if self.wire_status(order) != "TRADE_SUCCESS":
            raise _business("ACQ.TRADE_STATUS_ERROR", "交易状态非法")
        if not given and amount != order.amount:
            raise _business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "撤销或退款金额与订单金额不一致")
        if amount > self.core.refundable(order):
            raise _business("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额无效")
        script = self.core.take_refund_script(order.subject)
        if script.outcome is RefundOutcome.refuse:
            raise _business("ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足")
        if script.outcome is RefundOutcome.create_error:
            raise _business("ACQ.SYSTEM_ERROR", "系统错误")
        if script.outcome is RefundOutcome.fail:
            # A refund that never happens changes no trade, so Alipay has nothing to notify.
            script = script.model_copy(update={"notify": NotifyMode.none})
        reason = biz.get("refund_reason")
        refund = self.core.add_refund(
            SandboxRefund(
                out_refund_no=out_request_no,
                refund_no=order.channel_trade_no + "-" + _digits(6),
                order=order,
                amount=amount,
                reason=str(reason) if reason else None,
                notify_url=order.notify_url,
                script=script,
                created_at=clock.now(),
            )
        )
        await self.core.after_refund(refund)
        return self._refund_answer(refund, changed=refund.status is RefundStatus.succeeded)

    async def _refund_query(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        order = self._lookup(app, biz)
        out_request_no = str(biz.get("out_request_no") or "")
        if not out_request_no:
            raise _Fail("40002", "isv.missing-parameter", "缺少 out_request_no")
        refund = self.core.get_refund(app.app_id, out_request_no)
        if (
            refund is None
            or refund.order is not order
            or refund.status is not (RefundStatus.succeeded)
        ):
            # "未返回该字段表示退款请求未收到或者退款失败": nothing but the result code.
            return dict(_OK)
        answer: dict[str, Any] = {
            **_OK,
            "trade_no": order.channel_trade_no,
            "out_trade_no": order.out_trade_no,
            "out_request_no": refund.out_refund_no,
            "total_amount": p.to_yuan(order.amount),
            "refund_amount": p.to_yuan(refund.amount),
            "refund_status": p.REFUND_SUCCESS,
        }
        if refund.reason:
            answer["refund_reason"] = refund.reason
        options = biz.get("query_options")
        if isinstance(options, list) and "gmt_refund_pay" in options and refund.finished_at:
            answer["gmt_refund_pay"] = p.format_time(refund.finished_at)
        return answer

    # ------------------------------------------------------------ transfers
    def take_transfer_script(self) -> TransferScript:
        if not self.transfer_scripts:
            return TransferScript()
        script = self.transfer_scripts[0]
        if not script.sticky:
            del self.transfer_scripts[0]
        return script

    @staticmethod
    def _transfer_answer(transfer: SandboxTransfer) -> dict[str, Any]:
        answer: dict[str, Any] = {
            **_OK,
            "out_biz_no": transfer.out_biz_no,
            "order_id": transfer.order_id,
            "status": transfer.status,
        }
        if transfer.status == "SUCCESS" and transfer.finished_at is not None:
            answer["pay_fund_order_id"] = transfer.pay_fund_order_id
            answer["trans_date"] = p.format_time(transfer.finished_at)
        return answer

    def _finish_transfer(self, transfer: SandboxTransfer, *, succeeded: bool) -> None:
        if transfer.status != "DEALING":
            return
        transfer.finished_at = clock.now()
        if succeeded:
            transfer.status = "SUCCESS"
        else:
            transfer.status = "FAIL"
            transfer.error_code = transfer.script.error_code
            transfer.fail_reason = transfer.script.fail_reason

    @staticmethod
    def _check_product(biz: dict[str, Any]) -> None:
        if biz.get("product_code") != p.PRODUCT_TRANSFER:
            raise _business("INVALID_PARAMETER", "product_code 须为 TRANS_ACCOUNT_NO_PWD")
        if biz.get("biz_scene") != p.SCENE_TRANSFER:
            raise _business("INVALID_PARAMETER", "biz_scene 须为 DIRECT_TRANSFER")

    async def _transfer(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        out_biz_no = str(biz.get("out_biz_no") or "")
        if not out_biz_no or len(out_biz_no) > 64:
            raise _business("INVALID_PARAMETER", "out_biz_no 为空或过长")
        self._check_product(biz)
        try:
            amount = p.to_fen(str(biz.get("trans_amount") or ""))
        except ValueError:
            raise _business("INVALID_PARAMETER", "trans_amount 格式错误") from None
        payee_info = biz.get("payee_info")
        if not isinstance(payee_info, dict):
            raise _business("INVALID_PARAMETER", "payee_info 不能为空")
        identity_type = str(payee_info.get("identity_type") or "")
        identity = str(payee_info.get("identity") or "")
        name = str(payee_info.get("name") or "") or None
        if identity_type not in _IDENTITY_ATTRIBUTES or not identity:
            raise _business("INVALID_PARAMETER", "payee_info 参数有误")
        if identity_type == "ALIPAY_LOGON_ID" and not name:
            raise _business("INVALID_PARAMETER", "identity_type 为 ALIPAY_LOGON_ID 时 name 必填")
        existing = self.transfers.get((app.app_id, out_biz_no))
        if existing is not None:
            same = (existing.amount, existing.identity_type, existing.identity, existing.name)
            if same != (amount, identity_type, identity, name):
                raise _business(
                    "PAYMENT_INFO_INCONSISTENCY", "两次请求商户单号一样，但是参数不一致"
                )
            return self._transfer_answer(existing)
        if amount < p.TRANSFER_MIN:
            raise _business("EXCEED_LIMIT_SM_MIN_AMOUNT", "单笔最低转账金额0.1元")
        if amount > _PERSONAL_TRANSFER_MAX:
            raise _business("EXCEED_LIMIT_PERSONAL_SM_AMOUNT", "转账给个人支付宝账户单笔最多5万元")
        payee = self.find_payee(identity_type, identity)
        if payee is None:
            raise _business("PAYEE_NOT_EXIST", "收款账号不存在")
        if name is not None and name != payee.name:
            raise _business("PAYEE_USER_INFO_ERROR", "支付宝账号和姓名不匹配，请确认姓名是否正确")
        script = self.take_transfer_script()
        if script.outcome is RefundOutcome.refuse:
            raise _business("PAYER_BALANCE_NOT_ENOUGH", "付款方余额不足")
        if script.outcome is RefundOutcome.create_error:
            raise _business("SYSTEM_ERROR", "系统繁忙")
        now = clock.now()
        day = p.format_time(now)[:10].replace("-", "")
        transfer = SandboxTransfer(
            app_id=app.app_id,
            out_biz_no=out_biz_no,
            order_id=day + "110070000" + _digits(15),
            pay_fund_order_id=day + "110070001" + _digits(15),
            amount=amount,
            identity_type=identity_type,
            identity=identity,
            name=name,
            payee=payee,
            order_title=str(biz.get("order_title") or "") or None,
            remark=str(biz.get("remark") or "") or None,
            script=script,
            created_at=now,
        )
        self.transfers[(app.app_id, out_biz_no)] = transfer
        await self.core.play(script, lambda ok: self._finish_transfer(transfer, succeeded=ok))
        return self._transfer_answer(transfer)

    async def _transfer_query(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        out_biz_no = str(biz.get("out_biz_no") or "")
        order_id = str(biz.get("order_id") or "")
        if not out_biz_no and not order_id:
            raise _Fail("40002", "isv.missing-parameter", "out_biz_no 与 order_id 不能同时为空")
        if out_biz_no and not order_id:
            self._check_product(biz)
        transfer = next(
            (
                t
                for t in self.transfers.values()
                if t.app_id == app.app_id
                and (t.order_id == order_id if order_id else t.out_biz_no == out_biz_no)
            ),
            None,
        )
        if transfer is None:
            raise _business("ORDER_NOT_EXIST", "转账订单不存在")
        answer: dict[str, Any] = {
            **_OK,
            "order_id": transfer.order_id,
            "out_biz_no": transfer.out_biz_no,
            "status": transfer.status,
        }
        if transfer.status == "SUCCESS" and transfer.finished_at is not None:
            answer["pay_fund_order_id"] = transfer.pay_fund_order_id
            answer["pay_date"] = p.format_time(transfer.finished_at)
            answer["trans_amount"] = p.to_yuan(transfer.amount)
        if transfer.status == "FAIL":
            answer["error_code"] = transfer.error_code
            answer["fail_reason"] = transfer.fail_reason
        return answer

    # ------------------------------------------------------------ profit sharing
    def _receiver(self, kind: str, account: str) -> Payee | None:
        if kind == p.SPLIT_USER_ID:
            return self.find_payee("ALIPAY_USER_ID", account)
        if kind == p.SPLIT_LOGIN_NAME:
            return self.find_payee("ALIPAY_LOGON_ID", account)
        return None

    async def _bind(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        if not str(biz.get("out_request_no") or ""):
            raise _Fail("40002", "isv.missing-parameter", "缺少 out_request_no")
        receivers = biz.get("receiver_list")
        if not isinstance(receivers, list) or not receivers:
            raise _business("ACQ.RECEIVER_LIST_EMPTY", "分账收款方列表为空")
        if len(receivers) > 20:
            raise _business("ACQ.INVALID_PARAMETER", "单次最多绑定20个分账接收方")
        found: list[tuple[tuple[str, str], Payee]] = []
        for entry in receivers:
            entry = entry if isinstance(entry, dict) else {}
            kind, account = str(entry.get("type") or ""), str(entry.get("account") or "")
            name = str(entry.get("name") or "") or None
            if kind not in (p.SPLIT_USER_ID, p.SPLIT_LOGIN_NAME):
                raise _business("ACQ.INVALID_RECEIVER_TYPE", "分账收款方类型参数非法")
            payee = self._receiver(kind, account)
            if payee is None:
                raise _business("ACQ.USER_NOT_EXIST", "分账接收方不存在")
            if kind == p.SPLIT_LOGIN_NAME and not name:
                raise _business("ACQ.INVALID_PARAMETER", "loginName 类型的分账接收方须传 name")
            if name is not None and name != payee.name:
                raise _business("ACQ.INVALID_PARAMETER", "分账接收方姓名与账号不一致")
            found.append(((kind, account), payee))
        # Binding a bound receiver again is no error: the relation simply exists.
        self.relations.setdefault(app.app_id, {}).update(found)
        return {**_OK, "result_code": "SUCCESS"}

    def _settleable(self, order: SandboxOrder) -> int:
        """What of a paid trade can still be split: not refunded, not split, not finished."""
        if order.extra.get("royalty_finished"):
            return 0
        split = sum(
            line.amount
            for s in self.settles.values()
            if s.order is order
            for line in s.lines
            if line.state != "FAIL"
        )
        return order.amount - self.refunded(order) - split

    def take_settle_script(self) -> TransferScript:
        if not self.settle_scripts:
            return TransferScript()
        script = self.settle_scripts[0]
        if not script.sticky:
            del self.settle_scripts[0]
        return script

    def _finish_settle(self, settle: SandboxSettle, *, succeeded: bool) -> None:
        now = clock.now()
        for line in settle.lines:
            if line.state != "PROCESSING":
                continue
            line.execute_dt = now
            if succeeded:
                line.state = "SUCCESS"
            else:
                line.state = "FAIL"
                line.error_code = "TXN_RESULT_ACCOUNT_BALANCE_NOT_ENOUGH"
                line.error_desc = "分账余额不足"

    async def _settle(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        out_request_no = str(biz.get("out_request_no") or "")
        trade_no = str(biz.get("trade_no") or "")
        if not out_request_no or not trade_no:
            raise _Fail("40002", "isv.missing-parameter", "缺少 out_request_no 或 trade_no")
        if len(out_request_no) > 64:
            raise _business("ACQ.INVALID_PARAMETER", "out_request_no 过长")
        order = self._lookup(app, {"trade_no": trade_no})
        parameters = biz.get("royalty_parameters")
        if not isinstance(parameters, list) or not parameters:
            raise _business("ACQ.INVALID_PARAMETER", "royalty_parameters 不能为空")
        relations = self.relations.get(app.app_id, {})
        lines: list[RoyaltyLine] = []
        for entry in parameters:
            entry = entry if isinstance(entry, dict) else {}
            if entry.get("royalty_type", p.ROYALTY_TRANSFER) != p.ROYALTY_TRANSFER:
                raise _business("ACQ.INVALID_PARAMETER", "沙箱只支持 transfer 分账")
            kind = str(entry.get("trans_in_type") or p.SPLIT_USER_ID)
            account = str(entry.get("trans_in") or "")
            if (kind, account) not in relations:
                raise _business("ACQ.ROYALTY_RECEIVER_INVALID", "收入方不在分账关系内")
            try:
                amount = p.to_fen(str(entry.get("amount") or ""))
            except ValueError:
                raise _business("ACQ.INVALID_PARAMETER", "分账金额格式错误") from None
            if amount <= 0:
                raise _business("ACQ.INVALID_PARAMETER", "分账金额须大于0")
            desc = str(entry.get("desc") or "") or None
            lines.append(RoyaltyLine(kind, account, amount, desc, detail_id=_digits(28)))
        extend = biz.get("extend_params")
        finish = isinstance(extend, dict) and str(extend.get("royalty_finish")) == "true"
        fingerprint = tuple((x.trans_in_type, x.trans_in, x.amount) for x in lines)
        existing = self.settles.get((app.app_id, trade_no, out_request_no))
        if existing is not None:
            # "如果前一次分账已经成功，接口会幂等返回成功" [the refusal of a *different*
            # request under the same number is the sandbox's own sub_code]
            if existing.fingerprint != fingerprint:
                raise _business("ACQ.DISCORDANT_REPEAT_REQUEST", "不一致的请求")
            return {**_OK, "trade_no": trade_no, "settle_no": existing.settle_no}
        if order.status is not OrderStatus.succeeded:
            raise _business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if sum(x.amount for x in lines) > self._settleable(order):
            raise _business("ACQ.ALLOC_AMOUNT_VALIDATE_ERROR", "分账金额超过最大可分账金额")
        script = self.take_settle_script()
        if script.outcome is RefundOutcome.create_error:
            raise _business("ACQ.SYSTEM_ERROR", "系统错误")
        now = clock.now()
        settle = SandboxSettle(
            app_id=app.app_id,
            out_request_no=out_request_no,
            settle_no=p.format_time(now)[:10].replace("-", "") + "0025300" + _digits(17),
            order=order,
            lines=lines,
            finish=finish,
            script=script,
            created_at=now,
            fingerprint=fingerprint,
        )
        self.settles[(app.app_id, trade_no, out_request_no)] = settle
        if finish:
            order.extra["royalty_finished"] = True
        if script.outcome is RefundOutcome.refuse:  # processed at once, refused per receiver
            self._finish_settle(settle, succeeded=False)
        else:
            await self.core.play(script, lambda ok: self._finish_settle(settle, succeeded=ok))
        return {**_OK, "trade_no": trade_no, "settle_no": settle.settle_no}

    async def _settle_query(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        settle_no = str(biz.get("settle_no") or "")
        out_request_no = str(biz.get("out_request_no") or "")
        trade_no = str(biz.get("trade_no") or "")
        if settle_no:
            found = [s for s in self.settles.values() if s.settle_no == settle_no]
            settle = found[0] if found and found[0].app_id == app.app_id else None
        elif out_request_no and trade_no:
            self._lookup(app, {"trade_no": trade_no})  # ACQ.TRADE_NOT_EXIST
            settle = self.settles.get((app.app_id, trade_no, out_request_no))
        else:
            raise _Fail(
                "40002", "isv.missing-parameter", "settle_no 或 out_request_no+trade_no 必填"
            )
        if settle is None:
            # [unverified: the sandbox answers an unknown request with no detail lines]
            return {**_OK, "out_request_no": out_request_no}
        seller = str(settle.order.extra["seller_id"])
        details = []
        for line in settle.lines:
            detail: dict[str, Any] = {
                "operation_type": p.ROYALTY_TRANSFER,
                "trans_out": seller,
                "trans_out_type": p.SPLIT_USER_ID,
                "trans_in": line.trans_in,
                "trans_in_type": line.trans_in_type,
                "amount": p.to_yuan(line.amount),
                "state": line.state,
                "detail_id": line.detail_id,
            }
            if line.execute_dt is not None:
                detail["execute_dt"] = p.format_time(line.execute_dt)
            if line.error_code:
                detail["error_code"] = line.error_code
                detail["error_desc"] = line.error_desc
            details.append(detail)
        return {
            **_OK,
            "out_request_no": settle.out_request_no,
            "operation_dt": p.format_time(settle.created_at),
            "royalty_detail_list": details,
        }

    async def _server_call(
        self, app: SandboxApp, method: str, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        return await self._server_methods[method](app, params, biz, base)

    async def _browser_call(
        self, app: SandboxApp, method: str, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> Response:
        kind, products = _BROWSER_METHODS[method]
        product = biz.get("product_code")
        if product and product not in products:
            raise _business("ACQ.PRODUCT_CODE_ERROR", f"不支持的产品码 {product}")
        order = await self._create(app, params, biz, kind)
        return RedirectResponse(f"{base}/_sandbox/pay/{order.out_trade_no}", status_code=302)

    async def handle(self, request: Request) -> Response:
        base = _base_url(request)
        try:
            params = await self._read_params(request)
        except _Fail as fail:
            return self._respond("error_response", fail.payload())
        method = params.get("method", "")
        browser = method in _BROWSER_METHODS
        known = browser or method in self._server_methods
        key = p.response_key(method) if known else "error_response"
        app: SandboxApp | None = None
        try:
            if not method:
                raise _missing("method")
            if not known:
                raise _invalid("method", "不存在的方法名")
            app, biz = self._authenticate(params, method)
            if browser:
                return await self._browser_call(app, method, params, biz, base)
            answer = await self._server_call(app, method, params, biz, base)
            return self._respond(key, answer, app)
        except _CreateError:
            return Response(b"Internal Server Error", status_code=500, media_type="text/plain")
        except _Fail as fail:
            if browser:
                return HTMLResponse(
                    f"<!doctype html><title>支付宝 - 错误</title><h1>{escape(fail.code)}</h1>"
                    f"<p>{escape(fail.sub_code)}: {escape(fail.sub_msg)}</p>",
                    status_code=400,
                )
            return self._respond(key, fail.payload(), app)

    # ------------------------------------------------------------ payment codes (条码支付)
    def add_barcode_script(self, script: BarcodeScript) -> None:
        """Queue the outcome of the next code charge whose subject matches."""
        self.barcode_scripts.append(script)

    def _take_barcode_script(self, subject: str) -> BarcodeScript:
        return sandbox_kit.take_matching(self.barcode_scripts, subject, BarcodeScript)

    def _pay_answer(self, order: SandboxOrder) -> dict[str, Any]:
        paid = order.status is OrderStatus.succeeded
        amount = p.to_yuan(order.amount)
        answer: dict[str, Any] = {
            **_OK,
            "trade_no": order.channel_trade_no,
            "out_trade_no": order.out_trade_no,
            "buyer_logon_id": _BUYER_LOGON_ID,
            "total_amount": amount,
            "receipt_amount": amount if paid else "0.00",
            "buyer_pay_amount": amount if paid else "0.00",
            "point_amount": "0.00",
            "invoice_amount": amount if paid else "0.00",
            "buyer_user_id": order.extra["buyer_id"],
        }
        if paid and order.paid_at is not None:
            answer["gmt_payment"] = p.format_time(order.paid_at)
            answer["fund_bill_list"] = [{"amount": amount, "fund_channel": "ALIPAYACCOUNT"}]
        else:
            answer |= {"code": p.WAIT_BUYER_PAY_CODE, "msg": "order success pay inprocess"}
        return answer

    async def _pay_code(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        """``alipay.trade.pay``: charge a payment code per the barcode script."""
        if biz.get("scene") != p.SCENE_BAR_CODE:
            raise _business("ACQ.INVALID_PARAMETER", "scene 仅支持 bar_code")
        product = biz.get("product_code")
        if product and product != p.PRODUCT_QR:
            raise _business("ACQ.PRODUCT_CODE_ERROR", f"不支持的产品码 {product}")
        auth_code = str(biz.get("auth_code") or "")
        if not auth_code:
            raise _Fail("40002", "isv.missing-parameter", "缺少 auth_code")
        out_trade_no, amount, subject = self._trade_fields(biz)
        existing = self.core.get_order(app.app_id, out_trade_no)
        if existing is not None:
            self._existing(existing, amount, subject)
            return self._pay_answer(existing)
        script = self._take_barcode_script(subject)
        outcome = script.outcome
        if not p.is_payment_code(auth_code) or outcome is BarcodeOutcome.invalid_code:
            message = "支付失败，获取顾客账户信息失败，请顾客刷新付款码后重新收款"
            raise _business("ACQ.PAYMENT_AUTH_CODE_INVALID", message)
        if outcome is BarcodeOutcome.insufficient_balance:
            raise _business("ACQ.BUYER_BALANCE_NOT_ENOUGH", "买家余额不足")
        if outcome is BarcodeOutcome.create_error:
            raise _CreateError
        now = clock.now()
        order = self.core.add_order(
            SandboxOrder(
                out_trade_no=out_trade_no,
                channel_trade_no=p.format_time(now)[:10].replace("-", "") + "22001" + _digits(15),
                merchant_id=app.app_id, amount=amount, currency=p.CURRENCY, subject=subject,
                notify_url=params.get("notify_url") or None, method=p.BARCODE_METHOD,
                script=sandbox_kit.Script(), created_at=now,
                extra={"buyer_id": "2088" + _digits(12), "seller_id": app.seller_id,
                       "expires_at": None, "auth_code_tail": auth_code[-4:]},
            )
        )  # fmt: skip
        if outcome in (BarcodeOutcome.paid, BarcodeOutcome.create_timeout):
            self.core.settle(order, paid=True)
            self.core.spawn(self.core.notify(order))
        elif outcome in (BarcodeOutcome.password_paid, BarcodeOutcome.password_declined):
            paid = outcome is BarcodeOutcome.password_paid
            self.core.spawn(self._confirm_later(order, script.delay, paid=paid))
        if outcome is BarcodeOutcome.create_timeout:
            await asyncio.sleep(self.core.hold_timeout_seconds)
        return self._pay_answer(order)

    async def _confirm_later(self, order: SandboxOrder, delay: float, *, paid: bool) -> None:
        await asyncio.sleep(delay * self.core.time_scale)
        if order.extra.get("reversed") or order.status is not OrderStatus.pending:
            return
        if paid:
            self.core.settle(order, paid=True)
        else:  # Alipay has no failed trade: one the customer gives up on closes
            self.core.close(order)
        await self.core.notify(order)

    async def _cancel(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        """``alipay.trade.cancel``: an unpaid trade closes (``action=close``), a paid one is
        refunded in full (``action=refund``); cancelling again answers the same."""
        order = self._lookup(app, biz)
        if not order.extra.get("reversed"):
            order.extra["reversed"] = True
            order.extra["refunded"] = order.status is OrderStatus.succeeded
            if order.status is OrderStatus.pending:
                self.core.close(order)
            order.closed_at = clock.now()
        action = "refund" if order.extra.get("refunded") else "close"
        return {**_OK, "trade_no": order.channel_trade_no, "out_trade_no": order.out_trade_no,
                "retry_flag": "N", "action": action}  # fmt: skip

    def _barcode_router(self) -> APIRouter:
        router = APIRouter(prefix="/_sandbox")

        @router.post("/barcode_scripts")
        async def add_barcode_script(script: BarcodeScript) -> dict[str, Any]:
            """Control API: queue the outcome of the next payment-code charge."""
            self.add_barcode_script(script)
            return {"queued": len(self.barcode_scripts)}

        @router.get("/barcode/{out_trade_no}")
        async def show_code_order(out_trade_no: str) -> dict[str, Any]:
            order = self.core.find(out_trade_no)
            if order is None or order.method != p.BARCODE_METHOD:
                raise HTTPException(404, "no such code order")
            return {"out_trade_no": order.out_trade_no, "trade_status": self.wire_status(order),
                    "reversed": bool(order.extra.get("reversed")),
                    "refunded": bool(order.extra.get("refunded"))}  # fmt: skip

        return router

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="Alipay sandbox", docs_url=None, redoc_url=None, openapi_url=None)
        app.add_api_route("/gateway.do", self.handle, methods=["GET", "POST"])
        app.include_router(
            customer_router(self.core, title="Alipay sandbox", brand_color="#1677ff")
        )
        app.include_router(self._control_router())
        app.include_router(self._barcode_router())
        self._install_bills(app)
        return app

    def _control_router(self) -> APIRouter:
        router = APIRouter(prefix="/_sandbox")

        @router.post("/transfer_scripts")
        async def add_transfer_script(script: TransferScript) -> dict[str, Any]:
            """Control API: queue the outcome of the next transfer (uni.transfer)."""
            self.transfer_scripts.append(script)
            return {"queued": len(self.transfer_scripts)}

        @router.post("/settle_scripts")
        async def add_settle_script(script: TransferScript) -> dict[str, Any]:
            """Control API: queue the outcome of the next split (order.settle); ``refuse`` =
            every receiver FAIL at once (the seller's balance)."""
            self.settle_scripts.append(script)
            return {"queued": len(self.settle_scripts)}

        @router.post("/payees")
        async def add_payee(body: PayeeIn) -> dict[str, Any]:
            """Control API: an Alipay account payouts can reach (returns its identities)."""
            payee = self.add_payee(body.name, body.login_id)
            return {"user_id": payee.user_id, "open_id": payee.open_id,
                    "login_id": payee.login_id, "name": payee.name}  # fmt: skip

        @router.get("/transfers/{out_biz_no}")
        async def show_transfer(out_biz_no: str) -> dict[str, Any]:
            found = [t for t in self.transfers.values() if t.out_biz_no == out_biz_no]
            if not found:
                raise HTTPException(404, "no such transfer")
            t = found[0]
            return {"out_biz_no": t.out_biz_no, "order_id": t.order_id, "status": t.status,
                    "amount": t.amount, "payee_user_id": t.payee.user_id}  # fmt: skip

        return router

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

    # ------------------------------------------------------------ trade bills (业务账单)
    # alipay.data.dataservice.bill.downloadurl.query (bill_type=trade) → bill_download_url,
    # valid :attr:`bill_url_seconds`, serving the day's zip (GBK CSVs) of the trades paid and
    # refunds completed that day (China time) with the service fee at :attr:`bill_fee_bps`.
    # No bill for today or later (isv.invalid_arguments), none for a day without business
    # (isp.bill_not_exist).
    bill_fee_bps: int = 60
    """The apps' service-fee rate in basis points (0.6 %, Alipay's common rate)."""
    bill_url_seconds: float = 30.0
    _bill_files: dict[str, tuple[bytes, dt.datetime]] | None = None

    def bill_rows(self, app: SandboxApp, day: dt.date) -> list[dict[str, str]]:
        """The detail rows of one app's trade bill for ``day`` (China time), in time order."""

        def on_day(moment: dt.datetime | None) -> bool:
            return moment is not None and moment.astimezone(bill.CHINA).date() == day

        rows: list[tuple[dt.datetime, dict[str, str]]] = []
        for order in self.core.orders.values():
            if order.merchant_id != app.app_id or order.status is not OrderStatus.succeeded \
                    or order.paid_at is None or not on_day(order.paid_at):  # fmt: skip
                continue
            fee = bill.fee_of(order.amount, self.bill_fee_bps)
            rows.append((order.paid_at, self._bill_row(
                order, bill.TRADE, order.paid_at, order.amount, -fee, "",
            )))  # fmt: skip
        for refund in self.core.refunds.values():
            done = refund.finished_at
            if refund.order.merchant_id != app.app_id or done is None or not on_day(done) \
                    or refund.status is not RefundStatus.succeeded:  # fmt: skip
                continue
            fee = bill.fee_of(refund.amount, self.bill_fee_bps)
            rows.append((done, self._bill_row(
                refund.order, bill.REFUND, done, -refund.amount, fee, refund.out_refund_no,
            )))  # fmt: skip
        rows.sort(key=lambda row: row[0])
        return [row for _, row in rows]

    @staticmethod
    def _bill_row(order: SandboxOrder, kind: str, when: dt.datetime, amount: int,
                  service_fee: int, request_no: str) -> dict[str, str]:  # fmt: skip
        def stamp(moment: dt.datetime) -> str:
            return moment.astimezone(bill.CHINA).strftime(bill.TIME_FORMAT)

        money = bill.yuan(amount)
        zero = "0.00"
        return {
            "支付宝交易号": order.channel_trade_no, "商户订单号": order.out_trade_no,
            "业务类型": kind, "商品名称": order.subject, "创建时间": stamp(order.created_at),
            "完成时间": stamp(when), "对方账户": _BUYER_LOGON_ID, "订单金额（元）": money,
            "商家实收（元）": money, "支付宝红包（元）": zero, "集分宝（元）": zero,
            "支付宝优惠（元）": zero, "商家优惠（元）": zero, "券核销金额（元）": zero,
            "商家红包消费金额（元）": zero, "卡消费金额（元）": zero,
            "退款批次号/请求号": request_no, "服务费（元）": bill.yuan(service_fee),
            "分润（元）": zero,
        }  # fmt: skip

    def trade_bill(self, app: SandboxApp, day: dt.date) -> bytes:
        """The zip Alipay would serve for the app's ``day``."""
        return bill.render_zip(app.seller_id, day, self.bill_rows(app, day), clock.now())

    async def _bill_url(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        if biz.get("bill_type") != bill.BILL_TYPE:
            raise _invalid("bill_type", "账单类型不支持")
        try:
            day = dt.date.fromisoformat(str(biz.get("bill_date") or ""))
        except ValueError:
            raise _business("isv.invalid_arguments", "bill_date 格式错误") from None
        if day >= clock.now().astimezone(bill.CHINA).date():
            raise _business("isv.invalid_arguments", "不支持下载当日及以后的账单")
        rows = self.bill_rows(app, day)
        if not rows:
            raise _business(bill.NOT_EXIST, "账单不存在")
        if self._bill_files is None:
            self._bill_files = {}
        token = secrets.token_urlsafe(24)
        expires = clock.now() + dt.timedelta(seconds=self.bill_url_seconds)
        self._bill_files[token] = (self.trade_bill(app, day), expires)
        name = bill.file_stem(app.seller_id, day) + ".csv.zip"
        url = (
            f"{base}/downloadBillFile.resource?bizType=trade&userId={app.seller_id}"
            f"&fileType=csv.zip&bizDates={day:%Y%m%d}&downloadFileName={quote(name)}"
            f"&token={token}"
        )
        return {**_OK, "bill_download_url": url}

    async def _bill_download(self, request: Request) -> Response:
        found = (self._bill_files or {}).get(request.query_params.get("token", ""))
        if found is None or clock.now() >= found[1]:
            return Response("链接已失效".encode(), status_code=404, media_type="text/plain")
        name = request.query_params.get("downloadFileName", "bill.csv.zip")
        return Response(found[0], media_type="application/zip", headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        })  # fmt: skip

    def _install_bills(self, app: FastAPI) -> None:
        self._server_methods[bill.METHOD_BILL] = self._bill_url
        app.add_api_route("/downloadBillFile.resource", self._bill_download, methods=["GET"])


__all__ = [
    "RETRY_SCHEDULE",
    "BarcodeOutcome",
    "BarcodeScript",
    "Payee",
    "Sandbox",
    "SandboxApp",
    "SandboxTransfer",
    "TransferScript",
    "is_ack",
]

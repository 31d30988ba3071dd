"""A UnionPay 全渠道 (ACP 5.1.0) sandbox that speaks the real wire protocol.

The sandbox is its own certificate authority (made with ``cryptography``): a root, a middle
certificate the root issued, UnionPay's signing certificate (CN ``041@Z12@中国银联股份有限公司@…``)
and one signing certificate per merchant, handed out as the ``.pfx`` UnionPay issues
(:meth:`Sandbox.provision`). Every request's ``certId`` must name the merchant's certificate and
its ``signature`` must verify; every answer and notification is signed with the sandbox's
UnionPay key and carries ``signPubKeyCert``.

Paths (under the mount point, ``/sandbox/unionpay``):

- ``POST /gateway/api/frontTransReq.do``: the browser's form (网关 07 / WAP 08). Creates the order
  and redirects (303) to the customer page ``/_sandbox/pay/{orderId}``; errors are an HTML page
  (HTTP 400). Paying after ``payTimeout`` fails the order.
- ``POST /gateway/api/backTransReq.do``: 申码 (``01/07/000000``) → ``qrCode`` =
  ``{base}/_sandbox/pay/{orderId}``; 退货 (``04``) of a paid order by ``origQryId``, following
  the kit's refund scripts (``succeed``, ``delayed``, ``fail``; ``refuse`` → respCode ``61``;
  ``create_error`` → HTTP 500; ``create_timeout`` → made, answer held). The answer to an
  accepted refund is ``respCode 00`` (accepted) — the result comes by notification or query.
- ``POST /gateway/api/backTransReq.do`` also takes 二维码消费 被扫 (``01/06/000000``, ``qrNo``):
  answered ``00`` (accepted) at once; what the customer's 云闪付 then does follows the barcode
  scripts (:class:`BarcodeScript`, ``POST /_sandbox/barcode_scripts``): ``paid`` at once,
  ``password_paid`` / ``password_declined`` after ``delay`` (open, ``origRespCode 05``,
  meanwhile), ``password_forever`` (open until reversed, or paid on the customer page),
  ``insufficient_balance`` (accepted, then failed: ``origRespCode 01``, no notification),
  ``invalid_code`` (``respCode 30``, nothing made; so is any ``qrNo`` not 19 digits from 62),
  ``create_timeout`` (paid, answer held), ``create_error`` (HTTP 500, nothing made). And 冲正
  (``99/01/000000``, the original's ``orderId`` + ``txnTime``): an open order can no longer be
  paid, a paid one is refunded in full (its money leaves the bill); a repeat answers ``00``
  again; no such order → ``35``. ``GET /_sandbox/barcode/{orderId}`` shows an order's
  ``reversed``/``refunded``.
- ``POST /gateway/api/queryTrans.do``: by ``orderId`` + ``txnTime``: unknown → ``34``; paid →
  ``00``/``origRespCode 00`` with ``queryId``; waiting for the customer (or a refund in
  progress) → ``origRespCode 05``; failed → ``origRespCode 01`` (refund failed: ``01`` too).
- ``POST /filedownload/``: ``txnType 76``: the day's bill (``settleDate`` MMdd) as
  ``fileContent`` = base64(zlib(zip with ``INN<yyMMdd>88ZM_<merId>``)), ZM records of every paid
  order (``S22``) and succeeded refund (``S30``) of that China-time day
  (:func:`paymux.channels.sandbox_bills.day_bill`; no ZME file: the sandbox makes no errors).
  Bill tweaks (``POST /_sandbox/bill_tweaks``, the shared control API) render as:
  ``amount`` → the S22 record's ``txnAmt``; ``fee`` → its ``merFee`` (``D`` + the amount);
  ``duplicate`` → the record written twice; ``next_day`` → the record in the next settlement
  day's file (its ``txnTime`` still the day it was paid); ``drop`` → no record;
  ``extra_payment`` → an S22 record whose ``orderId`` the gateway never made (``portal…``,
  ``txnTime`` noon UTC of the day); ``extra_refund`` → an S30 record on the order with an
  ``orderId`` the gateway never issued; ``bad_row`` → a short record (``S22 账单记录无法读取``),
  one problem; ``corrupt_summary`` → **nothing**: the ZM file has no summary or total record
  and the answer no count or hash (:mod:`paymux.channels.unionpay.bill`), so there is no total
  to be off — the file is the same as without the tweak.
  The same zip is the funds bill: its records are what UnionPay clears on the settlement date
  (the funds reading derives the settlement from them, which is what
  :func:`paymux.channels.sandbox_bills.day_funds` says for this bill's fee rule). Funds tweaks
  (``"bill": "funds"``) have **no effect**: ``settlement_amount`` cannot show, as a settlement
  that differs from the day's records cannot be written in this format (and UnionPay makes no
  transfers for us here, so ``extra_payout`` and the payout tweaks have nothing to change).

Back notifications (URL-encoded form POST to ``backUrl``) are sent for successful payments and
refunds only ("失败的交易银联不会发送后台通知"), acknowledged by HTTP 200 (or 302), retried at
0, 1, 2 and 4 minutes (5 sends), as the SDK demo describes. Scripts come from the shared kit.

Sandbox-own choices [unverified against UnionPay]: the answer to a repeated 冲正 (``00``), the
query of a reversed order (``origRespCode 01``), ``respCode 30`` for an invalid payment code,
``origRespCode 01`` for a declined one; the respCodes ``11`` (bad signature),
``30`` (bad message), ``12`` (repeated orderId), ``35`` (original transaction not refundable),
``61`` (refund refused) and ``origRespCode 05`` for an order still waiting for the customer;
the zip's ``fileName``; ``txnTime`` is checked for format, not freshness.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import io
import secrets
import zipfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import escape

from paymux.channels import sandbox_kit
from paymux.channels.sandbox_bills import BillEntry, DayBill, bill_router, day_bill
from paymux.channels.sandbox_kit import (
    BarcodeOutcome,
    BarcodeScript,
    OrderStatus,
    RefundOutcome,
    RefundStatus,
    SandboxCore,
    SandboxOrder,
    SandboxRefund,
    customer_router,
)
from paymux.channels.unionpay import protocol as p
from paymux.kit import clock

RETRY_SCHEDULE: tuple[float, ...] = (0, 60, 120, 240)
BAD_ZM_RECORD = "S22 账单记录无法读取".encode("gbk")
"""What a ``bad_row`` tweak writes: a record far shorter than a ZM record's fixed width."""
_KINDS = {
    (k.txn_type, k.txn_sub_type, k.biz_type, k.channel_type): method
    for k, method in (
        (p.CONSUME_GATEWAY, "unionpay_gateway"),
        (p.CONSUME_WAP, "unionpay_wap"),
        (p.APPLY_QR, "unionpay_qr"),
    )
}


_ECHOED = (
    "txnType", "txnSubType", "bizType", "accessType", "merId", "orderId", "txnTime", "txnAmt",
    "currencyCode", "reqReserved",
)  # fmt: skip
_ORIG_MESSAGES = {"00": "成功[0000000]", "05": "交易已受理，请稍后查询交易结果", "01": "交易失败"}
_CODE_KIND = (p.CONSUME_CODE.txn_type, p.CONSUME_CODE.txn_sub_type, p.CONSUME_CODE.biz_type,
              p.CONSUME_CODE.channel_type)  # fmt: skip
_REVERSE_KIND = (p.REVERSE.txn_type, p.REVERSE.txn_sub_type, p.REVERSE.biz_type)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "paymux sandbox UnionPay"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def issue(
    key: rsa.RSAPublicKey, subject: x509.Name, issuer: x509.Name, signer: rsa.RSAPrivateKey,
    *, ca: bool, not_before: dt.datetime | None = None, days: int = 3650,
) -> x509.Certificate:  # fmt: skip
    """One certificate (tests use it for forged, expired and foreign certificates)."""
    start = not_before or clock.now() - dt.timedelta(days=1)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Authority:
    """Root → middle → signing certificates, as UnionPay's CA chain."""

    root_key: rsa.RSAPrivateKey
    root: x509.Certificate
    middle_key: rsa.RSAPrivateKey
    middle: x509.Certificate

    @classmethod
    def create(cls) -> Authority:
        root_key, middle_key = new_key(), new_key()
        root_name = _name("paymux sandbox UnionPay Root")
        root = issue(root_key.public_key(), root_name, root_name, root_key, ca=True)
        middle = issue(
            middle_key.public_key(), _name("paymux sandbox UnionPay Middle"), root_name,
            root_key, ca=True,
        )  # fmt: skip
        return cls(root_key, root, middle_key, middle)

    def sign_cert(self, key: rsa.RSAPublicKey, common_name: str) -> x509.Certificate:
        return issue(key, _name(common_name), self.middle.subject, self.middle_key, ca=False)


@dataclass
class Merchant:
    mer_id: str
    certificate: x509.Certificate

    @property
    def cert_id(self) -> str:
        return str(self.certificate.serial_number)


class _Fail(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class _Core(SandboxCore):
    """The kit's core with UnionPay's rules: no notification of a failed transaction; paying
    after ``payTimeout`` fails the order."""

    async def notify(self, order: SandboxOrder) -> None:
        if order.status is OrderStatus.succeeded:
            await super().notify(order)

    async def notify_refund(self, refund: SandboxRefund) -> None:
        if refund.status is RefundStatus.succeeded:
            await super().notify_refund(refund)

    def settle(self, order: SandboxOrder, *, paid: bool) -> bool:
        deadline = order.extra.get("pay_timeout")
        if paid and isinstance(deadline, dt.datetime) and clock.now() > deadline:
            paid = False
        return super().settle(order, paid=paid)


def is_ack(response: httpx.Response) -> bool:
    return response.status_code in (200, 302)


def _base_url(request: Request) -> str:
    root = str(request.scope.get("root_path", ""))
    return f"{request.url.scheme}://{request.url.netloc}{root}".rstrip("/")


class Sandbox:
    """The UnionPay sandbox: ``.core`` (orders, scripts, notifier) and ``.app`` (ASGI)."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient | None = None,
        time_scale: float = 1.0,
        hold_timeout_seconds: float = 30.0,
    ) -> None:
        self.authority = Authority.create()
        self._key = new_key()
        self.signer = self.authority.sign_cert(
            self._key.public_key(), f"041@Z12@{p.UNIONPAY_NAME}@00000001"
        )
        self.signer_pem = pem(self.signer)
        self.merchants: dict[str, Merchant] = {}
        self.barcode_scripts: list[BarcodeScript] = []
        self.core = _Core(
            channel="unionpay",
            retry_schedule=RETRY_SCHEDULE,
            build_notification=self.build_notification,
            build_refund_notification=self.build_refund_notification,
            is_ack=is_ack,
            http=http,
            time_scale=time_scale,
            hold_timeout_seconds=hold_timeout_seconds,
        )
        self.app = self._build_app()

    # ------------------------------------------------------------ merchants
    def provision(self, base_url: str, *, password: str = "000000") -> dict[str, Any]:  # noqa: S107
        """A merchant with a fresh signing certificate; complete adapter credentials."""
        mer_id = "777" + "".join(secrets.choice("0123456789") for _ in range(12))
        key = new_key()
        certificate = self.authority.sign_cert(key.public_key(), f"041@Z12@{mer_id}@00000001")
        self.merchants[mer_id] = Merchant(mer_id, certificate)
        pfx = pkcs12.serialize_key_and_certificates(
            b"acp_sign", key, certificate, None,
            serialization.BestAvailableEncryption(password.encode("utf-8")),
        )  # fmt: skip
        base = base_url.rstrip("/")
        return {
            "mer_id": mer_id,
            "sign_cert_pfx": base64.b64encode(pfx).decode("ascii"),
            "sign_cert_password": password,
            "middle_cert": pem(self.authority.middle),
            "root_cert": pem(self.authority.root),
            "gateway": base,
            "file_gateway": f"{base}/filedownload/",
        }

    # ------------------------------------------------------------ messages
    def signed(self, fields: dict[str, str]) -> dict[str, str]:
        """A message as UnionPay signs it: ``signPubKeyCert`` included in what is signed."""
        body = {"version": p.VERSION, "encoding": p.ENCODING, "signMethod": p.SIGN_METHOD,
                **fields, "signPubKeyCert": self.signer_pem}  # fmt: skip
        return p.sign(body, self._key, str(self.signer.serial_number))

    def _answer(self, request: dict[str, str], code: str, message: str, **extra: str) -> Response:
        echo = {k: request[k] for k in _ECHOED if request.get(k)}
        fields = self.signed({**echo, "respCode": code, "respMsg": message, **extra})
        return Response(p.encode_response(fields), media_type="text/plain;charset=UTF-8")

    def _authenticate(self, form: dict[str, str], *, order: bool = True) -> Merchant:
        merchant = self.merchants.get(form.get("merId", ""))
        if merchant is None:
            raise _Fail("30", "商户不存在")
        if form.get("version") != p.VERSION or form.get("signMethod") != p.SIGN_METHOD:
            raise _Fail("30", "version/signMethod 无效")
        key = merchant.certificate.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        if form.get("certId") != merchant.cert_id or not p.verify_signature(form, key):
            raise _Fail("11", "验证签名失败")
        try:
            p.parse_time(form.get("txnTime", ""))
            if order and not p.ORDER_ID.match(form.get("orderId", "")):
                raise _Fail("30", "orderId 无效")
        except p.ProtocolError:
            raise _Fail("30", "txnTime 无效") from None
        return merchant

    @staticmethod
    async def _form(request: Request) -> dict[str, str]:
        return dict((await request.form()).items())  # type: ignore[arg-type]

    # ------------------------------------------------------------ notifications
    def _notification(self, fields: dict[str, str]) -> tuple[dict[str, str], bytes]:
        headers = {"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"}
        return headers, urlencode(self.signed(fields)).encode("utf-8")

    def build_notification(self, order: SandboxOrder) -> tuple[dict[str, str], bytes]:
        kind = order.extra["kind"]
        return self._notification({
            "txnType": kind[0], "txnSubType": kind[1], "bizType": kind[2], "accessType": "0",
            "merId": order.merchant_id, "orderId": order.out_trade_no,
            "txnTime": order.extra["txnTime"], "txnAmt": str(order.amount),
            "currencyCode": p.CURRENCY_CODE, "queryId": order.channel_trade_no,
            "traceNo": order.channel_trade_no[-6:], "traceTime": order.extra["txnTime"][4:],
            "settleAmt": str(order.amount), "settleCurrencyCode": p.CURRENCY_CODE,
            "settleDate": order.extra["txnTime"][4:8], "respCode": "00", "respMsg": "成功[0000000]",
        })  # fmt: skip

    def build_refund_notification(self, refund: SandboxRefund) -> tuple[dict[str, str], bytes]:
        return self._notification({
            "txnType": p.REFUND.txn_type, "txnSubType": p.REFUND.txn_sub_type,
            "bizType": p.REFUND.biz_type, "accessType": "0", "merId": refund.order.merchant_id,
            "orderId": refund.out_refund_no, "txnTime": refund.extra["txnTime"],
            "txnAmt": str(refund.amount), "currencyCode": p.CURRENCY_CODE,
            "queryId": refund.refund_no, "origQryId": refund.order.channel_trade_no,
            "reqReserved": refund.extra.get("reqReserved", ""), "settleAmt": str(refund.amount),
            "settleCurrencyCode": p.CURRENCY_CODE, "respCode": "00", "respMsg": "成功[0000000]",
        })  # fmt: skip

    # ------------------------------------------------------------ consume
    async def _create(self, merchant: Merchant, form: dict[str, str], method: str) -> SandboxOrder:
        order_id = form["orderId"]
        if self.core.get_order(merchant.mer_id, order_id) or self._refund_by_id(order_id):
            raise _Fail("12", "重复交易")
        if form.get("currencyCode") != p.CURRENCY_CODE:
            raise _Fail("30", "currencyCode 无效")
        try:
            amount = p.parse_amount(form.get("txnAmt", ""))
            timeout = p.parse_time(form["payTimeout"]) if form.get("payTimeout") else None
        except p.ProtocolError as exc:
            raise _Fail("30", str(exc)) from None
        order = SandboxOrder(
            out_trade_no=order_id, channel_trade_no=self.core.new_trade_no()[:21].ljust(21, "0"),
            merchant_id=merchant.mer_id, amount=amount, currency=p.CURRENCY, subject=order_id,
            notify_url=form.get("backUrl"), method=method,
            script=self.core.take_script(order_id), created_at=clock.now(),
            return_url=form.get("frontUrl"),
            extra={"txnTime": form["txnTime"], "pay_timeout": timeout,
                   "kind": (form["txnType"], form["txnSubType"], form["bizType"])},
        )  # fmt: skip
        if order.script.outcome is sandbox_kit.Outcome.create_error:
            raise _CreateError
        self.core.add_order(order)
        self._alias(order)
        await self.core.after_create(order)
        return order

    def _alias(self, order: SandboxOrder) -> None:
        """The control API also finds an order by the merchant's own number (paymux's
        attempt id, of which the orderId is a mapping)."""
        with contextlib.suppress(p.ProtocolError):
            self.core.alias(p.our_id(order.out_trade_no), order)

    def _kind(self, form: dict[str, str]) -> str | None:
        key = (form.get("txnType"), form.get("txnSubType"), form.get("bizType"),
               form.get("channelType"))  # fmt: skip
        return _KINDS.get(key)  # type: ignore[arg-type]

    async def front(self, request: Request) -> Response:
        form = await self._form(request)
        try:
            merchant = self._authenticate(form)
            method = self._kind(form)
            if method not in ("unionpay_gateway", "unionpay_wap"):
                raise _Fail("30", "交易类型无效")
            order = await self._create(merchant, form, method)
        except _CreateError:
            return Response(b"Internal Server Error", status_code=500)
        except _Fail as fail:
            return HTMLResponse(
                f"<!doctype html><title>银联 - 错误</title><h1>{escape(fail.code)}</h1>"
                f"<p>{escape(fail.message)}</p>",
                status_code=400,
            )
        url = f"{_base_url(request)}/_sandbox/pay/{order.out_trade_no}"
        return RedirectResponse(url, status_code=303)

    async def back(self, request: Request) -> Response:
        form = await self._form(request)
        try:
            merchant = self._authenticate(form)
            if form.get("txnType") == p.REFUND.txn_type:
                return await self._refund(merchant, form)
            kind = (form.get("txnType"), form.get("txnSubType"), form.get("bizType"))
            if kind == _REVERSE_KIND:
                return self._reverse(merchant, form)
            if (*kind, form.get("channelType")) == _CODE_KIND:
                return await self._consume_code(merchant, form)
            if self._kind(form) != "unionpay_qr":
                raise _Fail("30", "交易类型无效")
            order = await self._create(merchant, form, "unionpay_qr")
        except _CreateError:
            return Response(b"Internal Server Error", status_code=500)
        except _Fail as fail:
            return self._answer(form, fail.code, fail.message)
        qr = f"{_base_url(request)}/_sandbox/pay/{order.out_trade_no}"
        return self._answer(form, "00", "成功[0000000]", qrCode=qr)

    # ------------------------------------------------------------ payment codes (被扫)
    def add_barcode_script(self, script: BarcodeScript) -> None:
        """Queue the outcome of the next payment-code consume whose orderId matches."""
        self.barcode_scripts.append(script)

    def _take_barcode_script(self, order_id: str) -> BarcodeScript:
        """Scripts match the order's ``orderId`` (their ``subject``); None matches any."""
        return sandbox_kit.take_matching(self.barcode_scripts, order_id, BarcodeScript)

    async def _consume_code(self, merchant: Merchant, form: dict[str, str]) -> Response:
        """二维码消费: ``00`` (accepted) at once; the customer's answer follows the script."""
        order_id = form["orderId"]
        if self.core.get_order(merchant.mer_id, order_id) or self._refund_by_id(order_id):
            raise _Fail("12", "重复交易")
        if form.get("currencyCode") != p.CURRENCY_CODE:
            raise _Fail("30", "currencyCode 无效")
        if form.get("termId") and not p.TERM_ID.match(form["termId"]):
            raise _Fail("30", "termId 无效")
        try:
            amount = p.parse_amount(form.get("txnAmt", ""))
        except p.ProtocolError as exc:
            raise _Fail("30", str(exc)) from None
        script = self._take_barcode_script(order_id)
        outcome = script.outcome
        if not p.is_payment_code(form.get("qrNo", "")) or outcome is BarcodeOutcome.invalid_code:
            raise _Fail("30", "C2B码无效")
        if outcome is BarcodeOutcome.create_error:
            raise _CreateError
        order = self.core.add_order(SandboxOrder(
            out_trade_no=order_id, channel_trade_no=self.core.new_trade_no()[:21].ljust(21, "0"),
            merchant_id=merchant.mer_id, amount=amount, currency=p.CURRENCY, subject=order_id,
            notify_url=form.get("backUrl"), method=p.BARCODE_METHOD,
            script=sandbox_kit.Script(), created_at=clock.now(),
            extra={"txnTime": form["txnTime"], "kind": _CODE_KIND[:3],
                   "qr_tail": form["qrNo"][-4:]},
        ))  # fmt: skip
        self._alias(order)
        if outcome in (BarcodeOutcome.paid, BarcodeOutcome.create_timeout):
            await self.core.customer_action(order, paid=True)
        elif outcome is BarcodeOutcome.insufficient_balance:
            self.core.settle(order, paid=False)
            order.extra["orig_msg"] = "交易失败[余额不足]"
        elif outcome in (BarcodeOutcome.password_paid, BarcodeOutcome.password_declined):
            paid = outcome is BarcodeOutcome.password_paid
            self.core.spawn(self._confirm_later(order, script.delay, paid=paid))
        if outcome is BarcodeOutcome.create_timeout:
            await asyncio.sleep(self.core.hold_timeout_seconds)
        return self._answer(form, "00", "成功[0000000]", queryId=order.channel_trade_no)

    async def _confirm_later(self, order: SandboxOrder, delay: float, *, paid: bool) -> None:
        await asyncio.sleep(delay * self.core.time_scale)
        if not order.extra.get("reversed"):
            await self.core.customer_action(order, paid=paid)

    def _reverse(self, merchant: Merchant, form: dict[str, str]) -> Response:
        """冲正 by the original's orderId + txnTime: an open order closes, a paid one is
        refunded in full; a repeat answers the same."""
        order = self.core.get_order(merchant.mer_id, form["orderId"])
        if order is None or order.extra.get("txnTime") != form["txnTime"]:
            raise _Fail("35", "原交易不存在或状态不正确")
        if not order.extra.get("reversed"):
            order.extra["reversed"] = True
            order.extra["refunded"] = order.status is OrderStatus.succeeded
            if order.status in (OrderStatus.pending, OrderStatus.succeeded):
                order.status, order.closed_at = OrderStatus.closed, clock.now()
        return self._answer(form, "00", "成功[0000000]")

    def _barcode_router(self) -> APIRouter:
        router = APIRouter(prefix="/_sandbox")

        @router.post("/barcode_scripts")
        async def add_barcode_script(script: BarcodeScript) -> dict[str, Any]:
            """Control API: queue the outcome of the next payment-code consume."""
            self.add_barcode_script(script)
            return {"queued": len(self.barcode_scripts)}

        @router.get("/barcode/{order_id}")
        async def show_code_order(order_id: str) -> dict[str, Any]:
            """A payment-code order by ``orderId`` (or the paymux id it was made from)."""
            try:
                number = p.order_id(order_id) if "_" in order_id else order_id
            except p.ProtocolError:
                raise HTTPException(404, "no such code order") from None
            order = self.core.find(number)
            if order is None or order.method != p.BARCODE_METHOD:
                raise HTTPException(404, "no such code order")
            return {"orderId": order.out_trade_no, "status": order.status.value,
                    "reversed": bool(order.extra.get("reversed")),
                    "refunded": bool(order.extra.get("refunded"))}  # fmt: skip

        return router

    # ------------------------------------------------------------ refunds
    def _refund_by_id(self, order_id: str) -> SandboxRefund | None:
        return next((r for r in self.core.refunds.values() if r.out_refund_no == order_id), None)

    async def _refund(self, merchant: Merchant, form: dict[str, str]) -> Response:
        if self._refund_by_id(form["orderId"]) or self.core.find(form["orderId"]):
            raise _Fail("12", "重复交易")
        paid = next(
            (o for o in self.core.orders.values()
             if o.merchant_id == merchant.mer_id and o.channel_trade_no == form.get("origQryId")),
            None,
        )  # fmt: skip
        if paid is None or paid.status is not OrderStatus.succeeded:
            raise _Fail("35", "原交易状态不正确")
        try:
            amount = p.parse_amount(form.get("txnAmt", ""))
        except p.ProtocolError as exc:
            raise _Fail("30", str(exc)) from None
        if amount <= 0 or amount > self.core.refundable(paid):
            raise _Fail("35", "退货金额超限")
        script = self.core.take_refund_script(paid.subject)
        if script.outcome is RefundOutcome.refuse:
            raise _Fail("61", "退货失败")
        if script.outcome is RefundOutcome.create_error:
            raise _CreateError
        refund = SandboxRefund(
            out_refund_no=form["orderId"], refund_no=self.core.new_trade_no()[:21].ljust(21, "1"),
            order=paid, amount=amount, reason=None, notify_url=form.get("backUrl"),
            script=script, created_at=clock.now(),
            extra={"txnTime": form["txnTime"], "reqReserved": form.get("reqReserved", "")},
        )  # fmt: skip
        self.core.add_refund(refund)
        await self.core.after_refund(refund)
        return self._answer(form, "00", "成功[0000000]", queryId=refund.refund_no,
                            origQryId=paid.channel_trade_no)  # fmt: skip

    # ------------------------------------------------------------ query
    async def query(self, request: Request) -> Response:
        form = await self._form(request)
        try:
            merchant = self._authenticate(form)
        except _Fail as fail:
            return self._answer(form, fail.code, fail.message)
        order = self.core.get_order(merchant.mer_id, form["orderId"])
        if order is not None and order.extra["txnTime"] == form["txnTime"]:
            orig = {OrderStatus.succeeded: "00", OrderStatus.pending: "05"}.get(order.status, "01")
            message = order.extra.get("orig_msg") or _ORIG_MESSAGES[orig]
            return self._answer(
                form, "00", "成功[0000000]", origRespCode=orig, origRespMsg=message,
                queryId=order.channel_trade_no, txnAmt=str(order.amount),
                currencyCode=p.CURRENCY_CODE,
            )  # fmt: skip
        refund = self._refund_by_id(form["orderId"])
        if refund is not None and refund.order.merchant_id == merchant.mer_id:
            orig = {RefundStatus.succeeded: "00", RefundStatus.pending: "05"}[refund.status] \
                if refund.status is not RefundStatus.failed else "01"  # fmt: skip
            return self._answer(
                form, "00", "成功[0000000]", origRespCode=orig, origRespMsg=_ORIG_MESSAGES[orig],
                queryId=refund.refund_no, txnAmt=str(refund.amount), currencyCode=p.CURRENCY_CODE,
            )  # fmt: skip
        return self._answer(form, p.RESP_NOT_FOUND, "查无此交易")

    # ------------------------------------------------------------ bills
    bill_fee_bps: int = 60
    """The merchants' fee rate in basis points on the bill (``merFee``)."""

    def fee_of(self, amount: int) -> int:
        """The fee on ``amount`` fen at :attr:`bill_fee_bps`, rounded half up to the fen."""
        return (amount * self.bill_fee_bps + 5_000) // 10_000

    def day_bill(self, mer_id: str, settle_date: dt.date) -> DayBill:
        """One merchant's bill of a settlement day (China calendar day), tweaks applied."""
        return day_bill(self.core, settle_date, p.CHINA, self.fee_of,
                        listed=lambda order: order.merchant_id == mer_id)  # fmt: skip

    def bill(self, mer_id: str, settle_date: dt.date) -> bytes:
        """The zip of one merchant's settlement day: its ZM file (an empty one for a day
        without business) and, stamped with the settlement date, nothing random, so the
        same day's bill is the same bytes."""
        found = self.day_bill(mer_id, settle_date)
        lines = [self._entry_record(entry, mer_id) for entry in found.entries]
        lines += [BAD_ZM_RECORD] * found.bad_rows
        buffer = io.BytesIO()
        stamp = (settle_date + dt.timedelta(days=1)).timetuple()[:6]
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            member = zipfile.ZipInfo(p.zm_file_name(settle_date, mer_id), date_time=stamp)
            member.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(member, b"".join(line + b"\r\n" for line in lines))
        return buffer.getvalue()

    def _entry_record(self, entry: BillEntry, mer_id: str) -> bytes:
        order = entry.order
        if entry.kind == "payment":
            extra = {"kind": p.CONSUME_GATEWAY, **order.extra}
            return self._zm(p.TRADE_CODE_CONSUME, order.out_trade_no, entry.amount,
                            order.channel_trade_no, "", extra, mer_id,
                            fee=p.fee_field(entry.fee), at=entry.at)  # fmt: skip
        refund = entry.refund
        assert refund is not None
        return self._zm(p.TRADE_CODE_REFUND, refund.out_refund_no, entry.amount,
                        refund.refund_no, order.channel_trade_no,
                        {**refund.extra, "kind": p.REFUND}, mer_id,
                        fee=p.fee_field(-entry.fee), at=entry.at)  # fmt: skip

    @staticmethod
    def _zm(code: str, order_id: str, amount: int, query_id: str, orig: str,
            extra: dict[str, Any], mer_id: str, *, fee: str, at: dt.datetime) -> bytes:  # fmt: skip
        kind = extra["kind"]
        txn_type, sub, biz = (
            (kind.txn_type, kind.txn_sub_type, kind.biz_type) if isinstance(kind, p.TxnKind)
            else kind
        )  # fmt: skip
        # txnTime is the request's (an order made at UnionPay alone has none: its time). The
        # kit's ids of such an order are longer than queryId's 21 characters: their tail.
        txn_time = extra.get("txnTime") or p.format_time(at)
        query_id, orig = query_id[-21:], orig[-21:]
        return p.zm_line({
            "tradeCode": code, "acqInsCode": "00000049998", "sendInsCode": "00000049998",
            "traceNo": query_id[-6:], "txnTime": txn_time[4:], "txnAmt": f"{amount:012d}",
            "queryId": query_id, "orderId": order_id, "txnType": txn_type, "txnSubType": sub,
            "bizType": biz, "origQryId": orig, "merId": mer_id, "merFee": fee,
        })  # fmt: skip

    async def file_transfer(self, request: Request) -> Response:
        form = await self._form(request)
        try:
            if form.get("txnType") != p.FILE_TRANSFER.txn_type:
                raise _Fail("30", "交易类型无效")
            merchant = self._authenticate(form, order=False)
            settle = form.get("settleDate", "")
            today = clock.now().astimezone(p.CHINA).date()
            try:
                date = dt.date(today.year, int(settle[:2]), int(settle[2:]))
            except ValueError:
                raise _Fail("30", "settleDate 无效") from None
            if date > today:
                date = date.replace(year=today.year - 1)
        except _Fail as fail:
            return self._answer(form, fail.code, fail.message)
        content = p.encode_file_content(self.bill(merchant.mer_id, date))
        return self._answer(
            form, "00", "成功[0000000]", settleDate=settle, fileType=p.BILL_FILE_TYPE,
            fileName=f"{date:%Y%m%d}_{merchant.mer_id}.zip", fileContent=content,
        )  # fmt: skip

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="UnionPay sandbox", docs_url=None, redoc_url=None, openapi_url=None)
        app.add_api_route(p.FRONT_PATH, self.front, methods=["POST"])
        app.add_api_route(p.BACK_PATH, self.back, methods=["POST"])
        app.add_api_route(p.QUERY_PATH, self.query, methods=["POST"])
        app.add_api_route("/filedownload/", self.file_transfer, methods=["POST"])
        app.include_router(
            customer_router(self.core, title="UnionPay sandbox 银联", brand_color="#d7000f")
        )
        app.include_router(bill_router(self.core))
        app.include_router(self._barcode_router())
        return app


class _CreateError(Exception):
    """Scripted ``create_error``: HTTP 500, nothing created."""


__all__ = [
    "RETRY_SCHEDULE",
    "Authority",
    "Sandbox",
    "is_ack",
    "issue",
    "new_key",
    "pem",
]

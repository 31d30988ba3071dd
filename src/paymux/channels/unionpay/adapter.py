"""UnionPay 全渠道 (ACP 5.1.0, ``signMethod=01``) adapter.

- ``unionpay_gateway`` / ``unionpay_wap``: 网关支付 (``channelType`` 07) / 手机网页支付 (08). No
  server call: the signed consume request is an auto-submitting HTML form to
  ``frontTransReq.do`` (``next_action`` ``form``); UnionPay opens the order when the browser
  posts it. ``payTimeout`` = the payment's expiry.
- ``unionpay_qr``: 二维码主扫 申码 (``txnType 01 / txnSubType 07 / bizType 000000``) on
  ``backTransReq.do``; the answer's ``qrCode`` is shown for a UnionPay app to scan.
- ``unionpay_barcode``: 二维码消费 被扫 (``01 / 06 / 000000``, ``qrNo`` = the customer's 云闪付
  payment code, 19 digits starting 62) on ``backTransReq.do``. ``respCode 00`` only means
  accepted ("立刻返回同步应答，然后继续处理"): one query right after tells paid / failed / still
  open (the customer may have to confirm in the app); the gateway polls on
  (:data:`protocol.BARCODE_POLL_SECONDS`) and, still open after the SDK's query schedule
  (:data:`protocol.BARCODE_REVERSE_AFTER_SECONDS`), calls :meth:`reverse_payment`: 冲正
  (``99 / 01``, the original's ``orderId`` + ``txnTime``), which UnionPay documents for exactly
  this case — an outcome unknown after a timeout — and which must fall in the original's day
  (before 23:00 China time). A paid order reversed by 冲正 is refunded.

Order numbers: ``orderId`` must be 8–40 letters and digits, so our attempt id ``att_<26>`` is
sent without its underscore (:func:`protocol.order_id`, reversible). UnionPay names a transaction
by ``orderId`` + ``txnTime``, and every query must repeat both: ``txnTime`` is the creation time
embedded in our id (:func:`protocol.txn_time_of`), so neither needs storing and a repeat is the
same request.

Refunds: 退货 (``txnType 04``) on ``backTransReq.do`` with ``origQryId`` = the payment's
``queryId``; its own ``orderId``/``txnTime`` come from our refund id, and ``reqReserved`` (echoed
in the refund's notification) carries the attempt id. ``respCode 00`` only means accepted: the
result comes by back notification or ``queryTrans.do`` on the refund's own order number.

Close: UnionPay has no close for these products. An unpaid order stops being payable at its
``payTimeout`` (sent at creation = the payment's expiry); :meth:`close_payment` therefore only
makes sure the order is not paid. A merchant who closes *before* the expiry leaves the order
payable at UnionPay until then (a late payment is applied like any late notification).

Bills (:class:`~paymux.channels.bills.BillCapable`): ``fileTransfer`` (``txnType 76``) for a
settlement date; :meth:`UnionPayAdapter.fetch_bill` writes the zip from ``fileContent`` and
:class:`~paymux.channels.unionpay.bill.UnionPayBillReader` streams its ZM records. The format
has no summary and the answer no hash: the reader records no integrity check (see
:mod:`paymux.channels.unionpay.bill`).

Every answer and notification is verified against the ``signPubKeyCert`` it carries, which must
chain to the configured middle and root certificates and be UnionPay's
(:func:`protocol.check_signer`). An answer that does not verify is an UnknownOutcome.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, ClassVar
from urllib.parse import urlsplit

import httpx
from markupsafe import escape
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from paymux.channels import base, registry
from paymux.channels.base import (
    Ack,
    BusinessError,
    ChannelError,
    ChannelPaymentStatus,
    ChannelRefundStatus,
    CreatedPayment,
    CreatePayment,
    CreateRefund,
    InvalidNotification,
    NextAction,
    NextActionType,
    Notification,
    PaymentState,
    RefundState,
    RetryableError,
    UnknownOutcome,
)
from paymux.channels.bills import BillKind, BillReader, FetchedBill, statement_of
from paymux.channels.unionpay import protocol as p
from paymux.channels.unionpay.bill import UnionPayBillReader
from paymux.kit import clock

PRODUCTION_GATEWAY = "https://gateway.95516.com"
PRODUCTION_FILE_GATEWAY = "https://filedownload.95516.com/"
_PRODUCTION_HOSTS = frozenset({"gateway.95516.com", "filedownload.95516.com"})
_FRONT_KINDS = {"unionpay_gateway": p.CONSUME_GATEWAY, "unionpay_wap": p.CONSUME_WAP}


class UnionPayCredentials(BaseModel):
    """One UnionPay 全渠道 merchant, as UnionPay issues it: the merchant id, the signing
    certificate (``.pfx`` + password) and UnionPay's middle and root certificates."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    mer_id: str = Field(min_length=15, max_length=15, pattern=r"^[0-9A-Za-z]{15}$")
    sign_cert_pfx: str = Field(min_length=1)
    """The signing certificate file (PKCS#12 ``.pfx``), base64."""
    sign_cert_password: str = Field(min_length=1)
    middle_cert: str = Field(min_length=1)
    """``acp_prod_middle.cer`` (PEM): issues UnionPay's signing certificates."""
    root_cert: str = Field(min_length=1)
    """``acp_prod_root.cer`` (PEM)."""
    gateway: str = PRODUCTION_GATEWAY
    """Base URL of ``/gateway/api/*.do``."""
    file_gateway: str = PRODUCTION_FILE_GATEWAY
    """The bill download URL (``fileTransfer``)."""
    validate_cn_name: bool = True
    """Require ``中国银联股份有限公司`` in the signer's CN; UnionPay's own test environment needs
    this off (its signer is ``00040000:SIGN``), like the SDK's ``ifValidateCNName``."""

    @field_validator("middle_cert", "root_cert")
    @classmethod
    def _cert(cls, value: str) -> str:
        p.load_cert(value, "certificate")
        return value

    @field_validator("gateway", "file_gateway")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("gateway URLs must be http(s) URLs")
        if parts.query or parts.fragment:
            raise ValueError("gateway URLs must not carry a query or fragment")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> UnionPayCredentials:
        p.load_pfx(self.sign_cert_pfx, self.sign_cert_password)
        live = {
            urlsplit(u).hostname in _PRODUCTION_HOSTS for u in (self.gateway, self.file_gateway)
        }
        if len(live) != 1:
            raise ValueError("gateway and file_gateway must both be UnionPay's or both not")
        return self


def _backstop(timeout: httpx.Timeout) -> float | None:
    if timeout.read is None:
        return None
    return timeout.read + (timeout.connect or 0.0)


def _answer_error(fields: Mapping[str, str], what: str) -> ChannelError:
    """A non-00 ``respCode``: 03/04/05 (outcome unknown, query) or a refusal."""
    code = fields.get("respCode", "")
    message = fields.get("respMsg", "")
    if code in p.RESP_PENDING:
        return UnknownOutcome(f"resp_{code}", f"{what}: {message}", raw=dict(fields))
    return BusinessError(f"unionpay_{code or 'none'}", f"{what}: {message}", raw=dict(fields))


MAX_TXN_AMOUNT = 10**12 - 1
"""``txnAmt`` is at most 12 digits of fen."""


@registry.register
class UnionPayAdapter:
    name: ClassVar[str] = "unionpay"
    refund_returns_fee: ClassVar[bool] = True
    """A refund (S30) record's ``merFee`` gives back its share of the fee."""
    methods: ClassVar[frozenset[str]] = frozenset(
        {"unionpay_gateway", "unionpay_wap", "unionpay_qr", p.BARCODE_METHOD}
    )
    currencies: ClassVar[frozenset[str]] = frozenset({p.CURRENCY})
    credentials_model: ClassVar[type[BaseModel]] = UnionPayCredentials
    production_hosts: ClassVar[frozenset[str]] = _PRODUCTION_HOSTS
    """``gateway.test.95516.com`` is UnionPay's own test environment: fine for test mode."""
    required_customer: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    @staticmethod
    def check_request(request: base.PaymentRequest) -> list[base.RequestProblem]:
        """What UnionPay refuses before acting (besides CNY only): a ``txnAmt`` beyond its 12
        digits of fen. ``orderId``/``txnTime`` come from our attempt id, never the request;
        the 云闪付 payment code's shape is checked with the other payment codes."""
        return base.amount_limits(request, maximum=MAX_TXN_AMOUNT)

    payment_codes: ClassVar[tuple[base.PaymentCodeRule, ...]] = (
        base.PaymentCodeRule(p.BARCODE_METHOD, p.PAYMENT_CODE_LENGTHS, p.PAYMENT_CODE_PREFIXES),
    )
    barcode_terms: ClassVar[base.BarcodeTerms] = base.BarcodeTerms(
        p.BARCODE_POLL_SECONDS, p.BARCODE_REVERSE_AFTER_SECONDS
    )

    def __init__(self, credentials: Mapping[str, Any], http: httpx.AsyncClient) -> None:
        try:
            self.credentials = UnionPayCredentials.model_validate(dict(credentials))
        except ValidationError as exc:
            raise base.InvalidCredentials(
                f"unionpay credentials: {exc.errors()[0]['msg']}"
            ) from None
        creds = self.credentials
        self.http = http
        self._signing = p.load_pfx(creds.sign_cert_pfx, creds.sign_cert_password)
        self._middle = p.load_cert(creds.middle_cert, "middle_cert")
        self._root = p.load_cert(creds.root_cert, "root_cert")

    # ------------------------------------------------------------ messages
    def _fields(self, kind: p.TxnKind, **extra: str | None) -> dict[str, str | None]:
        return {
            "version": p.VERSION, "encoding": p.ENCODING, "signMethod": p.SIGN_METHOD,
            "txnType": kind.txn_type, "txnSubType": kind.txn_sub_type, "bizType": kind.biz_type,
            "channelType": kind.channel_type, "accessType": p.ACCESS_TYPE,
            "merId": self.credentials.mer_id, **extra,
        }  # fmt: skip

    def _signed(self, kind: p.TxnKind, **extra: str | None) -> dict[str, str]:
        return p.sign(self._fields(kind, **extra), self._signing.key, self._signing.cert_id)

    def verify(self, fields: Mapping[str, str]) -> None:
        """Raise ProtocolError unless ``fields`` are signed by a trusted UnionPay certificate."""
        if fields.get("signMethod") != p.SIGN_METHOD or fields.get("version") != p.VERSION:
            raise p.ProtocolError("not a version 5.1.0 / signMethod 01 message")
        key = p.check_signer(
            fields.get("signPubKeyCert", ""), middle=self._middle, root=self._root,
            now=clock.now(), validate_cn=self.credentials.validate_cn_name,
        )  # fmt: skip
        if not p.verify_signature(fields, key):
            raise p.ProtocolError("signature does not verify")
        if fields.get("merId", self.credentials.mer_id) != self.credentials.mer_id:
            raise p.ProtocolError("message is for another merId")

    async def _post(self, url: str, form: Mapping[str, str]) -> dict[str, str]:
        """POST one signed request; the verified answer (any respCode)."""
        request = self.http.post(url, data=dict(form))
        deadline = _backstop(self.http.timeout)
        try:
            response = await (request if deadline is None else asyncio.wait_for(request, deadline))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryableError("connect_failed", repr(exc)) from exc
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise UnknownOutcome("timeout", repr(exc)) from exc
        except httpx.HTTPError as exc:
            raise UnknownOutcome("transport_error", repr(exc)) from exc
        if response.status_code != 200:
            raise UnknownOutcome("http_status", f"HTTP {response.status_code}")
        try:
            fields = p.parse_response(response.content.decode("utf-8"))
        except (UnicodeDecodeError, p.ProtocolError) as exc:
            raise UnknownOutcome("unparseable_response", str(exc)) from exc
        try:
            self.verify(fields)
        except p.ProtocolError as exc:
            raise UnknownOutcome("unverifiable_response", str(exc), raw=fields) from exc
        return fields

    def _url(self, path: str) -> str:
        return self.credentials.gateway.rstrip("/") + path

    # ------------------------------------------------------------ payments
    async def create_payment(self, request: CreatePayment) -> CreatedPayment:
        if request.method not in self.methods:
            raise BusinessError("unsupported_method", f"unionpay does not offer {request.method}")
        if request.currency != p.CURRENCY:
            raise BusinessError(
                "unsupported_currency", f"unionpay does not take {request.currency}"
            )
        try:
            number = p.order_id(request.out_trade_no)
            common = {
                "orderId": number, "txnTime": p.txn_time_of(request.out_trade_no),
                "txnAmt": p.to_amount(request.amount), "currencyCode": p.CURRENCY_CODE,
                "backUrl": request.notify_url,
            }  # fmt: skip
        except p.ProtocolError as exc:
            raise BusinessError("invalid_request", str(exc)) from None
        if request.method == "unionpay_qr":
            return await self._apply_qr(common)
        if request.method == p.BARCODE_METHOD:
            return await self._consume_code(request, common)
        form = self._signed(
            _FRONT_KINDS[request.method], **common, frontUrl=request.return_url,
            payTimeout=p.format_time(request.expires_at),
        )  # fmt: skip
        html = auto_submit_form(self._url(p.FRONT_PATH), form)
        return CreatedPayment(None, NextAction(NextActionType.form, html=html), raw=form)

    async def _apply_qr(self, common: Mapping[str, str]) -> CreatedPayment:
        answer = await self._post(self._url(p.BACK_PATH), self._signed(p.APPLY_QR, **common))
        if answer.get("respCode") != p.RESP_OK:
            raise _answer_error(answer, "apply QR code")
        qr = answer.get("qrCode")
        if answer.get("orderId") != common["orderId"] or not qr:
            raise UnknownOutcome("inconsistent_response", "QR answer does not match", raw=answer)
        return CreatedPayment(None, NextAction(NextActionType.qr_code, code_url=qr), raw=answer)

    async def _consume_code(
        self, request: CreatePayment, common: Mapping[str, str]
    ) -> CreatedPayment:
        """二维码消费 (被扫): ``00`` = accepted, then one query for the state so far; a refusal is
        a BusinessError (nothing charged), 03/04/05 or no answer an UnknownOutcome."""
        code = str(request.customer.get("auth_code") or "")
        if not p.is_payment_code(code):
            raise BusinessError("invalid_auth_code", "not a 云闪付 payment code")
        till = str(request.customer.get("device_id") or "")
        form = self._signed(
            p.CONSUME_CODE, **common, qrNo=code,
            termId=till if p.TERM_ID.match(till) else None,
        )  # fmt: skip
        answer = await self._post(self._url(p.BACK_PATH), form)
        if answer.get("respCode") != p.RESP_OK:
            raise _answer_error(answer, "payment-code consume")
        if answer.get("orderId") not in (None, common["orderId"]):
            raise UnknownOutcome("inconsistent_response", "consume answered for another order")
        try:
            state = await self.query_payment(request.out_trade_no)
        except ChannelError:
            state = None  # accepted; the gateway's polling finds the outcome
        if state is not None and state.status is ChannelPaymentStatus.failed:
            raise BusinessError(
                f"unionpay_{state.channel_code or 'failed'}",
                f"payment-code consume: {state.failure_message or 'declined'}", raw=state.raw,
                category=state.failure_code,
            )  # fmt: skip
        if state is not None and state.status is ChannelPaymentStatus.succeeded:
            if state.amount not in (None, request.amount):
                raise UnknownOutcome("inconsistent_response", "paid another amount", raw=state.raw)
            return CreatedPayment(state.channel_trade_no, None, status=state.status, raw=state.raw)
        return CreatedPayment(answer.get("queryId") or None, None, raw=answer)

    async def reverse_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> base.ReversedPayment:
        """冲正 the payment-code consume ``out_trade_no``: it can no longer be paid, and a paid
        one is refunded. ``00`` confirms; 03/04/05 or no answer raise UnknownOutcome (call
        again). On a refusal the original is queried: an order UnionPay never took, or one that
        failed, needs no reverse; one it holds (paid or open) raises BusinessError, for a
        person to settle (e.g. a 退货 once paid)."""
        try:
            number, when = p.order_id(out_trade_no), p.txn_time_of(out_trade_no)
        except p.ProtocolError as exc:
            raise BusinessError("invalid_request", str(exc)) from None
        if clock.now() >= p.reverse_deadline(when):
            raise BusinessError(
                "reverse_window_closed",
                "冲正 is taken only until 23:00 (China time) of the order's day",
            )
        answer = await self._post(
            self._url(p.BACK_PATH), self._signed(p.REVERSE, orderId=number, txnTime=when)
        )
        code = answer.get("respCode", "")
        if code == p.RESP_OK:
            if answer.get("orderId") not in (None, number):
                raise UnknownOutcome("inconsistent_response", "冲正 answered for another order")
            return base.ReversedPayment(out_trade_no, refunded=None, raw=answer)
        refusal = _answer_error(answer, "冲正")
        if isinstance(refusal, UnknownOutcome):
            raise refusal
        state = await self.query_payment(out_trade_no)
        if state.status in (ChannelPaymentStatus.not_found, ChannelPaymentStatus.failed):
            return base.ReversedPayment(out_trade_no, refunded=False, raw=answer)
        raise refusal

    async def _query(self, our: str) -> dict[str, str]:
        """``queryTrans.do`` for one of our transactions (a payment or a refund)."""
        try:
            number, when = p.order_id(our), p.txn_time_of(our)
        except p.ProtocolError as exc:
            raise BusinessError("invalid_request", str(exc)) from None
        form = self._signed(p.QUERY, orderId=number, txnTime=when)
        answer = await self._post(self._url(p.QUERY_PATH), form)
        if answer.get("orderId") not in (None, number):
            raise UnknownOutcome("inconsistent_response", "query answered for another order")
        return answer

    async def query_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> PaymentState:
        answer = await self._query(out_trade_no)
        code = answer.get("respCode", "")
        if code == p.RESP_NOT_FOUND:
            return PaymentState(out_trade_no, ChannelPaymentStatus.not_found, raw=answer)
        if code != p.RESP_OK:
            raise UnknownOutcome(f"query_{code or 'none'}", answer.get("respMsg", ""), raw=answer)
        try:
            status = p.map_orig_resp_code(answer.get("origRespCode", ""))
            amount = p.parse_amount(answer["txnAmt"]) if answer.get("txnAmt") else None
        except p.ProtocolError as exc:
            raise UnknownOutcome("unparseable_response", str(exc), raw=answer) from exc
        failed = status is ChannelPaymentStatus.failed
        return PaymentState(
            out_trade_no=out_trade_no,
            status=status,
            channel_trade_no=answer.get("queryId") or None,
            amount=amount,
            currency=p.CURRENCY if amount is not None else None,
            failure_code=p.failure_category(answer.get("origRespCode", "")) if failed else None,
            failure_message=answer.get("origRespMsg") if failed else None,
            channel_code=answer.get("origRespCode") if failed else None,
            raw=answer,
        )

    async def close_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> None:
        """UnionPay cannot close an order; its ``payTimeout`` does (see the module doc). Only a
        paid order is refused (``already_paid``)."""
        state = await self.query_payment(out_trade_no)
        if state.status is ChannelPaymentStatus.succeeded:
            raise BusinessError("already_paid", "the order was paid", raw=state.raw)

    # ------------------------------------------------------------ refunds
    async def create_refund(self, request: CreateRefund) -> RefundState:
        if request.currency != p.CURRENCY:
            raise BusinessError("unsupported_currency", "unionpay only refunds CNY")
        if request.amount <= 0 or request.amount > request.total_amount:
            raise BusinessError("refund_exceeds_payment", "refund must be 1..the paid amount")
        orig = request.channel_trade_no
        if not orig:
            paid = await self.query_payment(request.out_trade_no)
            if paid.status is not ChannelPaymentStatus.succeeded or not paid.channel_trade_no:
                raise BusinessError("order_not_paid", f"the order is {paid.status}")
            orig = paid.channel_trade_no
        try:
            form = self._signed(
                p.REFUND, orderId=p.order_id(request.out_refund_no),
                txnTime=p.txn_time_of(request.out_refund_no), txnAmt=p.to_amount(request.amount),
                currencyCode=p.CURRENCY_CODE, backUrl=request.notify_url, origQryId=orig,
                reqReserved=request.out_trade_no,
            )  # fmt: skip
        except p.ProtocolError as exc:
            raise BusinessError("invalid_request", str(exc)) from None
        answer = await self._post(self._url(p.BACK_PATH), form)
        if answer.get("respCode") != p.RESP_OK:
            raise _answer_error(answer, "refund")
        try:
            state = await self.query_refund(request.out_refund_no, request.out_trade_no)
        except ChannelError:
            state = None
        if state is not None and state.status is ChannelRefundStatus.succeeded:
            return state
        # Accepted (受理成功): the notification or a later query tells the result.
        return RefundState(
            request.out_refund_no, ChannelRefundStatus.pending,
            out_trade_no=request.out_trade_no, channel_refund_no=answer.get("queryId") or None,
            raw=answer,
        )  # fmt: skip

    async def query_refund(
        self, out_refund_no: str, out_trade_no: str, *, channel_refund_no: str | None = None
    ) -> RefundState:
        answer = await self._query(out_refund_no)
        code = answer.get("respCode", "")
        if code == p.RESP_NOT_FOUND:
            return RefundState(
                out_refund_no, ChannelRefundStatus.not_found, out_trade_no=out_trade_no,
                raw=answer,
            )  # fmt: skip
        if code != p.RESP_OK:
            raise UnknownOutcome(f"query_{code or 'none'}", answer.get("respMsg", ""), raw=answer)
        orig = answer.get("origRespCode", "")
        try:
            amount = p.parse_amount(answer["txnAmt"]) if answer.get("txnAmt") else None
            paid = p.map_orig_resp_code(orig)
        except p.ProtocolError as exc:
            raise UnknownOutcome("unparseable_response", str(exc), raw=answer) from exc
        status = {
            ChannelPaymentStatus.succeeded: ChannelRefundStatus.succeeded,
            ChannelPaymentStatus.pending: ChannelRefundStatus.pending,
        }.get(paid, ChannelRefundStatus.failed)
        failed = status is ChannelRefundStatus.failed
        return RefundState(
            out_refund_no=out_refund_no, status=status, out_trade_no=out_trade_no,
            channel_refund_no=answer.get("queryId") or None, amount=amount,
            currency=p.CURRENCY if amount is not None else None,
            failure_code=orig if failed else None,
            failure_message=answer.get("origRespMsg") if failed else None, raw=answer,
        )  # fmt: skip

    # ------------------------------------------------------------ notifications
    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        try:
            fields = p.parse_notification(body)
        except p.ProtocolError as exc:
            raise InvalidNotification("malformed", str(exc)) from None
        if not fields.get("signature"):
            raise InvalidNotification("unsigned", "no signature")
        try:
            self.verify(fields)
        except p.ProtocolError as exc:
            raise InvalidNotification("bad_signature", str(exc)) from None
        if fields.get("merId") != self.credentials.mer_id:
            raise InvalidNotification("wrong_merchant", "notification is for another merId")
        try:
            ours = p.our_id(fields.get("orderId", ""))
            # No txnAmt is no amount: the gateway refuses a success that does not say it.
            amount = p.parse_amount(fields["txnAmt"]) if fields.get("txnAmt") else None
            when = p.parse_time(fields.get("txnTime", ""))
        except p.ProtocolError as exc:
            raise InvalidNotification("malformed", str(exc)) from None
        if p.format_time(p.id_time(ours)) != p.format_time(when):
            raise InvalidNotification("malformed", "txnTime is not the order's")
        if fields.get("currencyCode", p.CURRENCY_CODE) != p.CURRENCY_CODE:
            raise InvalidNotification("malformed", "currencyCode is not 156")
        code = fields.get("respCode", "")
        ok = code in p.ORIG_PAID
        key = ":".join((fields.get("txnType", ""), fields["orderId"],
                        fields.get("queryId", ""), code))  # fmt: skip
        query_id = fields.get("queryId") or None
        if fields.get("txnType") == p.REFUND.txn_type:
            paid_order = fields.get("reqReserved", "")
            if not paid_order:
                raise InvalidNotification("malformed", "refund notification without reqReserved")
            refund = RefundState(
                out_refund_no=ours,
                status=ChannelRefundStatus.succeeded if ok else ChannelRefundStatus.failed,
                out_trade_no=paid_order, channel_refund_no=query_id, amount=amount,
                currency=p.CURRENCY, refunded_at=clock.now() if ok else None,
                failure_code=None if ok else code, raw=fields,
            )  # fmt: skip
            return Notification(event_key=key, refund=refund, raw=fields)
        if fields.get("txnType") != p.CONSUME_GATEWAY.txn_type:
            raise InvalidNotification("unsupported", f"txnType {fields.get('txnType')!r}")
        payment = PaymentState(
            out_trade_no=ours,
            status=ChannelPaymentStatus.succeeded if ok else ChannelPaymentStatus.failed,
            channel_trade_no=query_id, amount=amount,
            currency=p.CURRENCY if amount is not None else None,
            paid_at=clock.now() if ok else None,
            failure_code=None if ok else p.failure_category(code),
            failure_message=None if ok else fields.get("respMsg"),
            channel_code=None if ok else code, raw=fields,
        )  # fmt: skip
        return Notification(event_key=key, payment=payment, raw=fields)

    def ack(self, ok: bool) -> Ack:
        """UnionPay stops retrying on HTTP 200 (or 302); the body is not read."""
        return Ack(200 if ok else 400, b"ok" if ok else b"fail", "text/plain")

    # ------------------------------------------------------------ bills
    statement_timezone: ClassVar[dt.tzinfo] = p.CHINA
    bill_ready_after: ClassVar[dt.timedelta] = dt.timedelta(hours=10)

    bills: ClassVar[frozenset[BillKind]] = frozenset({BillKind.trade, BillKind.funds})
    """One file holds both: the ZM file of a settlement date is what UnionPay clears that
    date (:mod:`paymux.channels.unionpay.bill`)."""

    async def fetch_bill(
        self, day: dt.date, into: IO[bytes], bill: BillKind = BillKind.trade
    ) -> FetchedBill:
        """The zip of one settlement day (``txnType 76``, ``fileType 00``, ``settleDate``
        MMdd), written into ``into`` as ``fileContent`` holds it (decoded from base64/zlib);
        the trade and the funds bill are the same file.
        The answer is one signed message, verified whole before the file is trusted, so it is
        read into memory, not streamed. UnionPay makes a day's file the next day: today or
        later raises RetryableError ``statement_not_ready``."""
        _bill_kind(bill)
        if day >= clock.now().astimezone(p.CHINA).date():
            raise RetryableError("statement_not_ready", f"UnionPay has no bill for {day} yet")
        form = self._signed(
            p.FILE_TRANSFER, settleDate=f"{day:%m%d}", txnTime=p.format_time(clock.now()),
            fileType=p.BILL_FILE_TYPE,
        )  # fmt: skip
        answer = await self._post(self.credentials.file_gateway, form)
        if answer.get("respCode") != p.RESP_OK:
            raise _answer_error(answer, "bill download")
        try:
            data = p.decode_file_content(answer.get("fileContent", ""))
        except p.ProtocolError as exc:
            raise UnknownOutcome("unparseable_bill", str(exc), raw=answer) from exc
        into.write(data)
        name = answer.get("fileName") or ""
        if not name or "/" in name or "\\" in name:
            name = f"unionpay_{day:%Y%m%d}_{self.credentials.mer_id}.zip"
        return FetchedBill(name)

    def bill_reader(
        self, path: Path, expected: Mapping[str, str],
        bill: BillKind = BillKind.trade,
    ) -> BillReader:  # fmt: skip
        """A reader of a ``fileTransfer`` zip (fetched, or uploaded by a person), for the
        ``bill`` kind's lines (funds: the records and the day's settlement)."""
        funds = _bill_kind(bill) is BillKind.funds
        return UnionPayBillReader(path, expected, funds=funds)

    async def statement(self, day: dt.date) -> list[base.StatementLine]:
        """The settlement day's (China time) ZM records as statement lines (see
        :class:`~paymux.channels.unionpay.bill.UnionPayBillReader`)."""
        return await statement_of(self, day)


def _bill_kind(bill: BillKind | str) -> BillKind:
    """``bill`` as a kind this channel publishes (both are the one zip); ValueError else."""
    if bill not in UnionPayAdapter.bills:
        raise ValueError(f"unionpay has no {bill} bill")
    return BillKind(bill)


def auto_submit_form(action: str, fields: Mapping[str, str]) -> str:
    """An HTML page that posts ``fields`` to ``action`` at once (what the SDK's
    ``createAutoFormHtml`` produces), every value escaped."""
    inputs = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}"/>' for k, v in fields.items()
    )
    return (
        '<!doctype html><html><head><meta charset="UTF-8"/></head><body>'
        f'<form id="pay_form" action="{escape(action)}" method="post">{inputs}</form>'
        '<script>document.getElementById("pay_form").submit();</script></body></html>'
    )


__all__ = ["UnionPayAdapter", "UnionPayCredentials", "auto_submit_form"]

"""Alipay OpenAPI (RSA2; public-key or public-key certificate mode) adapter.

- ``alipay_qr``: ``alipay.trade.precreate`` over HTTP → a QR code for the Alipay app to scan.
- ``alipay_page`` / ``alipay_wap``: no server call; a signed GET URL of the gateway
  (``alipay.trade.page.pay`` / ``alipay.trade.wap.pay``) the customer's browser is sent to.
- ``alipay_app``: the signed ``alipay.trade.app.pay`` order string for the Alipay app SDK.

Alipay only creates the trade when the customer scans the QR code or opens the cashier, so a
query before that answers ``ACQ.TRADE_NOT_EXIST`` (→ ``not_found``) even though the create
"succeeded"; the order stays payable until ``time_expire``, which is therefore always sent.

Refunds: ``alipay.trade.refund`` (``out_request_no`` = our refund id, so a repeat can never
refund twice) and ``alipay.trade.fastpay.refund.query``. Alipay sends no refund notification of
its own: a refund changes the *trade*, which it notifies as ``trade_status_sync`` (partial →
``TRADE_SUCCESS``, full → ``TRADE_CLOSED``) carrying ``out_biz_no`` / ``refund_fee`` /
``gmt_refund``. :meth:`AlipayAdapter.parse_notification` keeps such a trade a *paid* payment
and adds the refund as ``Notification.refund``.

Payouts (:class:`~paymux.channels.base.TransferCapable`): ``alipay.fund.trans.uni.transfer`` /
``alipay.fund.trans.common.query``, which Alipay serves only to apps in public-key
*certificate* mode (credentials ``app_cert``, ``alipay_cert``, ``alipay_root_cert``).
Profit sharing (:class:`~paymux.channels.base.SplitCapable`):
``alipay.trade.royalty.relation.bind`` then ``alipay.trade.order.settle`` (sync), read back
with ``alipay.trade.order.settle.query``.

Every sync response's signature is verified; a response we cannot verify is an
:class:`~paymux.channels.base.UnknownOutcome`. Errors are classified by :func:`classify`, with
per-API tables (:data:`REFUND_ERRORS`, …) for the sub_codes an API documents.

The adapter is composed of one mixin per feature, each in its own module of this package:

- :mod:`.credentials`: :class:`AlipayCredentials` (public-key, certificate and ISV mode);
- :mod:`.client`: signing, transport, verification and error classification;
- :mod:`.payments`: the trade ``biz_content``, precreate, query and close;
- :mod:`.jsapi`: ``alipay_jsapi`` (``alipay.trade.create``);
- :mod:`.oauth`: the payer's id by web OAuth ``auth_base`` (``alipay.system.oauth.token``);
- :mod:`.wallet`: the sandbox's stand-ins of the Alipay app (JS bridge, app SDK sheet);
- :mod:`.codes`: payment codes (``alipay.trade.pay`` / ``alipay.trade.cancel``);
- :mod:`.refunds`, :mod:`.transfers`, :mod:`.splits`: refunds, payouts, profit sharing;
- :mod:`.statement`: the day's trade bill and fund-flow bill (账务明细, :mod:`.funds`).

This module registers the one ``alipay`` adapter: what it offers, payment creation per method
and notifications.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import parse_qsl

from pydantic import BaseModel

from paymux.channels import base, registry
from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.client import ErrorTable as ErrorTable
from paymux.channels.alipay.client import classify
from paymux.channels.alipay.codes import CANCEL_ERRORS as CANCEL_ERRORS
from paymux.channels.alipay.codes import PAY_CODE_ERRORS as PAY_CODE_ERRORS
from paymux.channels.alipay.codes import PaymentCodesMixin
from paymux.channels.alipay.credentials import PRODUCTION_GATEWAY as PRODUCTION_GATEWAY
from paymux.channels.alipay.credentials import AlipayCredentials
from paymux.channels.alipay.jsapi import JsapiMixin
from paymux.channels.alipay.oauth import OAuthMixin
from paymux.channels.alipay.payments import SUBJECT_MAX as SUBJECT_MAX
from paymux.channels.alipay.refunds import REFUND_ERRORS as REFUND_ERRORS
from paymux.channels.alipay.refunds import REFUND_REASON_MAX as REFUND_REASON_MAX
from paymux.channels.alipay.refunds import RefundsMixin
from paymux.channels.alipay.splits import ROYALTY_DESC_MAX as ROYALTY_DESC_MAX
from paymux.channels.alipay.splits import ROYALTY_LINE_STATUS as ROYALTY_LINE_STATUS
from paymux.channels.alipay.splits import SPLIT_ERRORS as SPLIT_ERRORS
from paymux.channels.alipay.splits import SPLIT_RECEIVERS_MAX as SPLIT_RECEIVERS_MAX
from paymux.channels.alipay.splits import SplitsMixin
from paymux.channels.alipay.statement import StatementMixin
from paymux.channels.alipay.transfers import IDENTITY_TYPES, TransfersMixin
from paymux.channels.alipay.transfers import ORDER_TITLE_MAX as ORDER_TITLE_MAX
from paymux.channels.alipay.transfers import REMARK_MAX as REMARK_MAX
from paymux.channels.alipay.transfers import TRANSFER_ERRORS as TRANSFER_ERRORS
from paymux.channels.alipay.wallet import WalletStandIn
from paymux.channels.base import (
    Ack,
    BusinessError,
    ChannelPaymentStatus,
    ChannelRefundStatus,
    CreatedPayment,
    CreatePayment,
    InvalidNotification,
    NextAction,
    NextActionType,
    Notification,
    PayeeType,
    PaymentState,
    RefundState,
)

MAX_TOTAL_AMOUNT = 100_000_000_00
"""Alipay's largest ``total_amount`` (100,000,000.00 yuan), in fen."""


@registry.register
class AlipayAdapter(
    PaymentCodesMixin,
    JsapiMixin,
    RefundsMixin,
    TransfersMixin,
    SplitsMixin,
    StatementMixin,
    OAuthMixin,
    WalletStandIn,
):
    refund_returns_fee: ClassVar[bool] = True
    """A refund row's 服务费 gives back its share of the service fee."""
    name: ClassVar[str] = "alipay"
    methods: ClassVar[frozenset[str]] = frozenset(
        {"alipay_qr", "alipay_page", "alipay_wap", "alipay_app", p.BARCODE_METHOD}
    )
    currencies: ClassVar[frozenset[str]] = frozenset({"CNY"})
    credentials_model: ClassVar[type[BaseModel]] = AlipayCredentials
    production_hosts: ClassVar[frozenset[str]] = frozenset({"openapi.alipay.com"})
    """``openapi-sandbox.dl.alipaydev.com`` is Alipay's own sandbox: fine for test mode."""
    required_customer: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """No Alipay method here needs a customer identifier (``buyer_id`` is optional)."""
    payee_types: ClassVar[frozenset[PayeeType]] = frozenset(IDENTITY_TYPES)
    """Payouts reach an Alipay account by login id, user id (2088…) or open id."""
    payment_codes: ClassVar[tuple[base.PaymentCodeRule, ...]] = (
        base.PaymentCodeRule(p.BARCODE_METHOD, p.PAYMENT_CODE_LENGTHS, p.PAYMENT_CODE_PREFIXES),
    )
    barcode_terms: ClassVar[base.BarcodeTerms] = base.BarcodeTerms(
        p.BARCODE_POLL_SECONDS, p.BARCODE_REVERSE_AFTER_SECONDS
    )
    # JSAPI / mini-program payments (see ``_create_jsapi``): the payer must be named.
    methods = methods | {"alipay_jsapi"}

    @staticmethod
    def check_request(request: base.PaymentRequest) -> list[base.RequestProblem]:
        """What Alipay refuses before acting (besides CNY only): ``total_amount`` outside
        0.01–100,000,000.00 yuan, and a JSAPI trade that names no payer (``customer.buyer_id``,
        a 2088… user id, or ``customer.buyer_open_id``). Subject and body are cut to Alipay's
        limits, never refused."""
        problems = base.amount_limits(request, maximum=MAX_TOTAL_AMOUNT)
        if request.method == "alipay_jsapi" and not (
            request.customer.get("buyer_id") or request.customer.get("buyer_open_id")
        ):
            problems.append(base.RequestProblem(
                "customer_required", "alipay_jsapi needs customer.buyer_id (or buyer_open_id).",
                "customer.buyer_id",
            ))  # fmt: skip
        return problems

    async def create_payment(self, request: CreatePayment) -> CreatedPayment:
        if request.method not in self.methods:
            raise BusinessError("unsupported_method", f"alipay does not offer {request.method}")
        if request.currency not in self.currencies:
            raise BusinessError("unsupported_currency", f"alipay does not take {request.currency}")
        if request.method == p.BARCODE_METHOD:
            return await self._pay_code(request)
        if request.method == "alipay_jsapi":
            return await self._create_jsapi(request)
        if request.method == "alipay_qr":
            return await self._precreate(request)
        if request.method == "alipay_app":
            params = self._signed(
                p.METHOD_APP_PAY,
                self._biz(request, p.PRODUCT_APP),
                notify_url=request.notify_url,
            )
            return CreatedPayment(
                channel_trade_no=None,
                next_action=NextAction(
                    NextActionType.sdk_params, params={"order_string": p.query_string(params)}
                ),
            )
        if request.method == "alipay_page":
            method, biz = p.METHOD_PAGE_PAY, self._biz(request, p.PRODUCT_PAGE)
        else:
            method, biz = p.METHOD_WAP_PAY, self._biz(request, p.PRODUCT_WAP)
            if request.return_url:
                biz["quit_url"] = request.return_url
        params = self._signed(
            method, biz, notify_url=request.notify_url, return_url=request.return_url
        )
        url = f"{self.credentials.gateway}?{p.query_string(params)}"
        return CreatedPayment(
            channel_trade_no=None, next_action=NextAction(NextActionType.redirect, url=url)
        )

    # ------------------------------------------------------------ notifications
    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        try:
            text = body.decode("utf-8")
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise InvalidNotification("malformed", "not a UTF-8 form body") from None
        fields: dict[str, str] = {}
        for key, value in pairs:
            if key in fields:
                raise InvalidNotification("malformed", f"duplicate field {key!r}")
            fields[key] = value
        signature = fields.get("sign")
        if not signature:
            raise InvalidNotification("unsigned", "no sign field")
        if fields.get("sign_type", p.SIGN_TYPE) != p.SIGN_TYPE:
            raise InvalidNotification("bad_sign_type", f"sign_type {fields.get('sign_type')!r}")
        if not p.verify(p.notify_sign_content(fields), signature, self._alipay_key):
            raise InvalidNotification("bad_signature", "notification signature does not verify")
        if fields.get("app_id") != self.credentials.app_id:
            raise InvalidNotification("wrong_app", "notification is for another app_id")
        # ISV mode: app_id is ours (the ISV's app), auth_app_id the sub-merchant it acted for.
        isv_for = self.credentials.auth_app_id
        if isv_for and fields.get("auth_app_id") != isv_for:
            raise InvalidNotification("wrong_app", "notification is for another sub-merchant")
        seller = self.credentials.seller_id
        if seller and fields.get("seller_id") != seller:
            raise InvalidNotification("wrong_seller", "notification is for another seller_id")
        notify_id = fields.get("notify_id")
        out_trade_no = fields.get("out_trade_no")
        if not notify_id or not out_trade_no:
            raise InvalidNotification("malformed", "notify_id or out_trade_no missing")
        try:
            status = p.map_trade_status(fields.get("trade_status", ""))
            # A refund changes the trade and notifies like a payment: partial → TRADE_SUCCESS,
            # full → TRADE_CLOSED ("支付完成后全额退款"), with out_biz_no / refund_fee /
            # gmt_refund. A trade that was paid stays a paid *payment*; its refunds are
            # refunds' business, never a reason to close the payment.
            refund_no = fields.get("out_biz_no") or ""
            refunded = bool(refund_no and fields.get("gmt_refund"))
            if status is ChannelPaymentStatus.closed and (refunded or fields.get("gmt_payment")):
                status = ChannelPaymentStatus.succeeded
            amount = p.to_fen(fields["total_amount"]) if fields.get("total_amount") else None
            paid_at = (
                p.parse_time(fields["gmt_payment"])
                if status is ChannelPaymentStatus.succeeded and fields.get("gmt_payment")
                else None
            )
            refunded_at = p.parse_time(fields["gmt_refund"]) if refunded else None
        except ValueError as exc:
            raise InvalidNotification("malformed", str(exc)) from None
        trade_no = fields.get("trade_no") or None
        payment = PaymentState(
            out_trade_no=out_trade_no,
            status=status,
            channel_trade_no=trade_no,
            amount=amount,
            currency=p.currency_of(fields, amount),
            paid_at=paid_at,
            channel_code=fields.get("trade_status") if status is ChannelPaymentStatus.closed
            else None,
            raw=fields,
        )  # fmt: skip
        # The refund part rides along for whoever wants it: ``refund_fee`` is the trade's total
        # refunded, not this refund's amount, so the amount stays unknown.
        refund = (
            RefundState(
                out_refund_no=refund_no,
                status=ChannelRefundStatus.succeeded,
                out_trade_no=out_trade_no,
                refunded_at=refunded_at,
                raw=fields,
            )
            if refunded
            else None
        )
        return Notification(event_key=notify_id, payment=payment, refund=refund, raw=fields)

    def ack(self, ok: bool) -> Ack:
        return Ack(200, b"success" if ok else b"fail", "text/plain")


if TYPE_CHECKING:  # the adapter honours the optional capabilities' contracts

    def _capabilities(adapter: AlipayAdapter) -> tuple[base.TransferCapable, base.SplitCapable]:
        return adapter, adapter


__all__ = ["AlipayAdapter", "AlipayCredentials", "classify"]

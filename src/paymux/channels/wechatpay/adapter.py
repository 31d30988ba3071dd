"""WeChat Pay API v3 adapter (direct merchant, platform public-key mode).

Payments (``/v3/pay/transactions/{native,jsapi,h5,app}``, query, close) and the dispatch of
notifications live here; the registered :class:`WechatPayAdapter` composes the rest, one module
per feature, each a mixin over :class:`~paymux.channels.wechatpay.client.WechatPayClient`:

- :mod:`.credentials` — the channel account's credentials (direct or partner mode);
- :mod:`.client` — transport, signing, verification, error classification, decoding;
- :mod:`.refunds` — refunds; :mod:`.transfers` — payouts (商家转账);
- :mod:`.profitsharing` — profit sharing (分账); :mod:`.codepay` — payment codes (付款码支付);
- :mod:`.statement` — the daily trade bill (交易账单) and fund-flow bill (资金账单,
  :mod:`.fundflow`);
- :mod:`.oauth` — the payer's openid by web OAuth (``snsapi_base``);
- :mod:`.wallet` — the sandbox's stand-ins of the WeChat app (JS bridge, payment sheets);
- :mod:`.partner_adapter` — what a service provider's sub-merchant (partner mode) does
  differently: :class:`WechatPayPartnerAdapter` is it over :class:`WechatPayAdapter`.

Every public name of those modules that callers imported from here is re-exported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

import httpx
from pydantic import BaseModel

from paymux.channels import base, registry
from paymux.channels.base import (
    Ack,
    BusinessError,
    ChannelPaymentStatus,
    CreatedPayment,
    CreatePayment,
    InvalidNotification,
    NextAction,
    NextActionType,
    Notification,
    PayeeType,
    PaymentState,
    UnknownOutcome,
)
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.client import (
    _DESCRIPTION_MAX,
    WechatPayClient,
    classify_answer,
    classify_transport_error,
)
from paymux.channels.wechatpay.codepay import CodePayCalls, classify_codepay_answer
from paymux.channels.wechatpay.credentials import (
    SplitRelation,
    TransferReportInfo,
    WechatPayAccountCredentials,
    WechatPayCredentials,
)
from paymux.channels.wechatpay.keys import DEFAULT_GATEWAY
from paymux.channels.wechatpay.oauth import OAuthCalls
from paymux.channels.wechatpay.partner_adapter import PartnerCalls
from paymux.channels.wechatpay.profitsharing import ProfitSharingCalls, classify_split_answer
from paymux.channels.wechatpay.refunds import RefundCalls, classify_refund_answer
from paymux.channels.wechatpay.statement import StatementCalls
from paymux.channels.wechatpay.transfers import TransferCalls, classify_transfer_answer
from paymux.channels.wechatpay.wallet import WalletStandIn

__all__ = [
    "DEFAULT_GATEWAY",
    "SplitRelation",
    "TransferReportInfo",
    "WechatPayAccountCredentials",
    "WechatPayAdapter",
    "WechatPayClient",
    "WechatPayCredentials",
    "WechatPayPartnerAdapter",
    "classify_answer",
    "classify_codepay_answer",
    "classify_refund_answer",
    "classify_split_answer",
    "classify_transfer_answer",
    "classify_transport_error",
]


# ---------------------------------------------------------------- the adapter
@registry.register
class WechatPayAdapter(
    RefundCalls,
    TransferCalls,
    ProfitSharingCalls,
    CodePayCalls,
    StatementCalls,
    OAuthCalls,
    WalletStandIn,
):
    """The WeChat Pay channel: payments and notifications here, every other feature from its
    mixin (see the module docstring)."""

    refund_returns_fee: ClassVar[bool] = True
    """A refund's row in the bill gives back its share of the fee (a negative 手续费)."""

    name: ClassVar[str] = "wechatpay"
    methods: ClassVar[frozenset[str]] = frozenset(protocol.METHOD_ENDPOINTS) | {
        protocol.BARCODE_METHOD
    }
    currencies: ClassVar[frozenset[str]] = frozenset({"CNY"})
    credentials_model: ClassVar[type[BaseModel]] = WechatPayAccountCredentials
    production_hosts: ClassVar[frozenset[str]] = frozenset(
        {"api.mch.weixin.qq.com", "api2.mch.weixin.qq.com"}
    )
    required_customer: ClassVar[Mapping[str, tuple[str, ...]]] = {"wechat_jsapi": ("openid",)}
    payee_types: ClassVar[frozenset[PayeeType]] = frozenset({PayeeType.wechat_openid})
    payment_codes: ClassVar[tuple[base.PaymentCodeRule, ...]] = (
        base.PaymentCodeRule(
            protocol.BARCODE_METHOD, protocol.PAYMENT_CODE_LENGTHS, protocol.PAYMENT_CODE_PREFIXES
        ),
    )
    barcode_terms: ClassVar[base.BarcodeTerms] = base.BarcodeTerms(
        protocol.BARCODE_POLL_SECONDS, protocol.BARCODE_REVERSE_AFTER_SECONDS
    )
    # Mini-programs pay JSAPI orders: the payer's openid under the mini-program's appid.
    required_customer = {**required_customer, "wechat_mini": ("openid",)}

    @staticmethod
    def check_request(request: base.PaymentRequest) -> list[base.RequestProblem]:
        """What WeChat Pay refuses before acting (besides CNY only and ``required_customer``):
        an H5 order without the payer's IP (``scene_info.payer_client_ip``) or with one that is
        not an address. The description is cut to WeChat's limit, never refused."""
        return base.ip_problem(request.client_ip, required=request.method == "wechat_h5")

    def __new__(cls, credentials: Mapping[str, Any], http: httpx.AsyncClient) -> WechatPayAdapter:
        """A sub-merchant's account (credentials with ``sp_mchid``) gets the partner-mode
        adapter (:class:`WechatPayPartnerAdapter`)."""
        if cls is WechatPayAdapter and "sp_mchid" in credentials:
            return super().__new__(WechatPayPartnerAdapter)
        return super().__new__(cls)

    # ------------------------------------------------------------ payments
    async def create_payment(self, request: CreatePayment) -> CreatedPayment:
        if request.method == protocol.BARCODE_METHOD:
            return await self._codepay(request)
        creds = self.credentials
        endpoint = protocol.METHOD_ENDPOINTS.get(request.method)
        if endpoint is None:
            raise BusinessError("unsupported_method", f"wechatpay does not do {request.method}")
        if request.currency != "CNY":
            raise BusinessError("unsupported_currency", "wechatpay only takes CNY")
        if request.amount <= 0:
            raise BusinessError("invalid_amount", "amount must be a positive number of fen")
        kind = endpoint[0]
        body: dict[str, Any] = {
            "appid": creds.appid,
            "mchid": creds.mchid,
            "description": request.subject[:_DESCRIPTION_MAX],
            "out_trade_no": request.out_trade_no,
            "time_expire": protocol.rfc3339(request.expires_at),
            "notify_url": request.notify_url,
            "amount": {"total": request.amount, "currency": request.currency},
        }
        if request.method == "wechat_mini":
            body["appid"] = creds.mini_appid or creds.appid
        if request.profit_sharing:
            # Keeps the money frozen and splittable (the default is to settle it all to us).
            body["settle_info"] = {"profit_sharing": True}
        if kind == "jsapi":
            openid = request.customer.get("openid")
            if not openid:
                raise BusinessError("customer_required", "JSAPI payments need customer.openid")
            body["payer"] = {"openid": str(openid)}
        if kind == "h5":
            if not request.client_ip:
                raise BusinessError("client_ip_required", "H5 payments need the payer's IP")
            body["scene_info"] = {
                "payer_client_ip": request.client_ip,
                "h5_info": {"type": "Wap"},
            }
        _, payload = await self._call("POST", f"/v3/pay/transactions/{kind}", body)
        if not isinstance(payload, dict):
            raise UnknownOutcome("malformed_response", "create answer has no body", raw=payload)
        if request.method == "wechat_mini":
            return CreatedPayment(None, self._mini_action(body["appid"], payload), raw=payload)
        return CreatedPayment(
            channel_trade_no=None,
            next_action=self._next_action(kind, payload, request.return_url),
            raw=payload,
        )

    def _mini_action(self, appid: str, payload: Mapping[str, Any]) -> NextAction:
        """``wx.requestPayment``'s parameters, signed with the mini-program's ``appid``."""
        prepay_id = payload.get("prepay_id")
        if not isinstance(prepay_id, str) or not prepay_id:
            raise UnknownOutcome("malformed_response", "create answer lacks prepay_id")
        params = protocol.mini_pay_params(self._private_key, appid=appid, prepay_id=prepay_id)
        return NextAction(NextActionType.sdk_params, params=dict(params))

    def _next_action(
        self, kind: str, payload: Mapping[str, Any], return_url: str | None = None
    ) -> NextAction:
        creds = self.credentials

        def field(name: str) -> str:
            value = payload.get(name)
            if not isinstance(value, str) or not value:
                raise UnknownOutcome("malformed_response", f"create answer lacks {name}")
            return value

        if kind == "native":
            return NextAction(NextActionType.qr_code, code_url=field("code_url"))
        if kind == "h5":
            # WeChat sends the customer back to ``redirect_url`` (appended, urlencoded, to
            # h5_url) once they paid or gave up; without it they stay in WeChat's page.
            url = field("h5_url")
            if return_url:
                url += ("&" if "?" in url else "?") + urlencode({"redirect_url": return_url})
            return NextAction(NextActionType.redirect, url=url)
        prepay_id = field("prepay_id")
        timestamp = str(protocol.unix_now())
        nonce = protocol.make_nonce()
        if kind == "jsapi":
            package = f"prepay_id={prepay_id}"
            pay_sign = protocol.jsapi_pay_sign(
                self._private_key,
                appid=creds.appid,
                timestamp=timestamp,
                nonce=nonce,
                package=package,
            )
            params = {
                "appId": creds.appid,
                "timeStamp": timestamp,
                "nonceStr": nonce,
                "package": package,
                "signType": "RSA",
                "paySign": pay_sign,
            }
        else:
            sign = protocol.app_pay_sign(
                self._private_key,
                appid=creds.appid,
                timestamp=timestamp,
                nonce=nonce,
                prepay_id=prepay_id,
            )
            params = {
                "appid": creds.appid,
                "partnerid": creds.mchid,
                "prepayid": prepay_id,
                "package": "Sign=WXPay",
                "noncestr": nonce,
                "timestamp": timestamp,
                "sign": sign,
            }
        return NextAction(NextActionType.sdk_params, params=params)

    async def query_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> PaymentState:
        path = f"{self._order_path(out_trade_no)}?{self._ids_query()}"
        try:
            _, payload = await self._call("GET", path)
        except BusinessError as exc:
            if exc.code == "order_not_exist":
                return PaymentState(out_trade_no, ChannelPaymentStatus.not_found, raw=exc.raw)
            raise
        if not isinstance(payload, dict):
            raise UnknownOutcome("malformed_response", "query answer has no body", raw=payload)
        if not self._ours(payload):
            raise UnknownOutcome("malformed_response", "answer is about another sub-merchant")
        try:
            state = self._state(payload)
        except ValueError as exc:
            raise UnknownOutcome("malformed_response", str(exc), raw=payload) from exc
        if state.out_trade_no != out_trade_no:
            raise UnknownOutcome("malformed_response", "answer is about another order")
        return state

    async def close_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> None:
        try:
            await self._call("POST", f"{self._order_path(out_trade_no)}/close", self._ids_body())
        except BusinessError as exc:
            if exc.code in ("order_closed", "order_not_exist"):
                return
            raise

    # Who the order belongs to, as the query string, the close body and a check of an answer:
    # the merchant here; the service provider and its sub-merchant in partner mode.
    def _ids_query(self) -> str:
        return f"mchid={quote(self.credentials.mchid, safe='')}"

    def _ids_body(self) -> dict[str, str]:
        return {"mchid": self.credentials.mchid}

    def _ours(self, data: Mapping[str, Any]) -> bool:
        return True

    # ------------------------------------------------------------ notifications
    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Payment (``TRANSACTION.SUCCESS``), refund (``REFUND.*``) and payout
        (``MCHTRANSFER.BILL.FINISHED``) notifications."""
        creds = self.credentials
        envelope, event_key, transaction = self._open(headers, body)
        event_type = envelope.get("event_type")
        if isinstance(event_type, str) and event_type.startswith("REFUND."):
            return self._refund_notification(event_key, event_type, envelope, transaction)
        if event_type == protocol.TRANSFER_EVENT:
            return self._transfer_notification(event_key, envelope, transaction)
        if not isinstance(transaction, dict) or "trade_state" not in transaction:
            raise InvalidNotification("unsupported_event", "resource is not a transaction")
        if transaction.get("mchid") != creds.mchid or transaction.get("appid") != creds.appid:
            raise InvalidNotification("wrong_merchant", "notification is for another merchant")
        try:
            state = self._state(transaction)
        except ValueError as exc:
            raise InvalidNotification("malformed", str(exc)) from exc
        return Notification(
            event_key=event_key, payment=state, raw={**envelope, "resource": transaction}
        )

    def ack(self, ok: bool) -> Ack:
        if ok:
            return Ack(204, b"", "application/json")
        body = protocol.encode_json({"code": "FAIL", "message": "notification not processed"})
        return Ack(500, body, "application/json")


class WechatPayPartnerAdapter(PartnerCalls, WechatPayAdapter):
    """One sub-merchant's client, signing as its service provider: partner mode's
    :class:`~paymux.channels.wechatpay.partner_adapter.PartnerCalls` over the direct adapter."""

"""WeChat Pay adapter for one sub-merchant of a service provider (服务商 / partner mode).

:class:`~paymux.channels.wechatpay.adapter.WechatPayAdapter` hands a channel account whose
credentials carry ``sp_mchid`` to :class:`~paymux.channels.wechatpay.adapter.
WechatPayPartnerAdapter`: :class:`PartnerCalls` over the direct adapter (see
:mod:`paymux.channels.wechatpay.partner` for the wire differences). Transport, signing, answer
verification, refund decoding and the notification envelope are the direct adapter's; orders,
queries, closes, refund bodies and the identity checks of notifications are partner-mode's own.
Payouts and profit sharing are not offered in partner mode (WeChat serves them to partners
through other APIs). This module does not import the adapter it changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from paymux.channels.base import (
    BusinessError,
    ChannelError,
    CreatedPayment,
    CreatePayment,
    CreateSplit,
    CreateTransfer,
    InvalidNotification,
    NextAction,
    NextActionType,
    Notification,
    SplitState,
    TransferState,
    UnknownOutcome,
)
from paymux.channels.bills import BillKind, BillReader
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.bill import TradeBillReader
from paymux.channels.wechatpay.client import _DESCRIPTION_MAX, _Classifier, classify_answer
from paymux.channels.wechatpay.codepay import CodePayCalls
from paymux.channels.wechatpay.partner import WechatPayPartnerCredentials
from paymux.channels.wechatpay.profitsharing import ProfitSharingCalls
from paymux.channels.wechatpay.refunds import _REFUNDS_PATH, RefundCalls
from paymux.channels.wechatpay.statement import StatementCalls
from paymux.channels.wechatpay.transfers import TransferCalls

#: What WeChat answers when ``sub_mchid`` is not a sub-merchant of ``sp_mchid`` (no 受理关系)
#: [message wording unverified].
_NOT_BOUND = ("受理关系",)


def classify_partner_answer(status: int, payload: Any) -> ChannelError:
    """:func:`~paymux.channels.wechatpay.adapter.classify_answer`, plus the partner refusal:
    a sub-merchant the service provider does not serve."""
    message = str(payload.get("message", "")) if isinstance(payload, dict) else ""
    if status < 500 and any(fragment in message for fragment in _NOT_BOUND):
        return BusinessError("sub_merchant_not_bound", message, raw=payload)
    return classify_answer(status, payload)


class PartnerCalls(RefundCalls, TransferCalls, ProfitSharingCalls, CodePayCalls, StatementCalls):
    """What partner mode changes of the direct adapter, placed before it in
    :class:`~paymux.channels.wechatpay.adapter.WechatPayPartnerAdapter`: one sub-merchant's
    client, signing as its service provider."""

    credentials: WechatPayPartnerCredentials  # type: ignore[assignment]
    credentials_class = WechatPayPartnerCredentials

    if TYPE_CHECKING:
        # The direct adapter's (a QR code or redirect is the same in both modes).
        def _next_action(
            self, kind: str, payload: Mapping[str, Any], return_url: str | None = None
        ) -> NextAction: ...

    # ------------------------------------------------------------ transport
    async def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        classify: _Classifier = classify_partner_answer,
    ) -> tuple[int, Any]:
        """The direct transport, with the sub-merchant named on refund calls: ``sub_mchid`` in
        a refund's body and in a refund query's query string."""
        sub = self.credentials.sub_mchid
        if path.startswith(_REFUNDS_PATH):
            if body is not None:
                body = {"sub_mchid": sub, **body}
            else:
                path = f"{path}?sub_mchid={quote(sub, safe='')}"
        return await super()._call(method, path, body, classify=classify)

    @staticmethod
    def _order_path(out_trade_no: str) -> str:
        return f"{protocol.PARTNER_PAY_PATH}/out-trade-no/{quote(out_trade_no, safe='')}"

    def _ids_query(self) -> str:
        """``GET …/out-trade-no/{no}?sp_mchid=…&sub_mchid=…``."""
        sp, sub = self.credentials.sp_mchid, self.credentials.sub_mchid
        return f"sp_mchid={quote(sp, safe='')}&sub_mchid={quote(sub, safe='')}"

    def _ids_body(self) -> dict[str, str]:
        """``POST …/out-trade-no/{no}/close`` with ``{sp_mchid, sub_mchid}``."""
        return {"sp_mchid": self.credentials.sp_mchid, "sub_mchid": self.credentials.sub_mchid}

    def _bill_query(self, day: dt.date) -> str:
        """A service provider's trade bill covers all its sub-merchants unless it names one:
        ``sub_mchid`` keeps this account's statement to its own sub-merchant."""
        sub = quote(self.credentials.sub_mchid, safe="")
        return f"{super()._bill_query(day)}&sub_mchid={sub}"

    @staticmethod
    def _classify_bill_answer(status: int, payload: Any) -> ChannelError:
        """The bill's own answers, else the partner refusals (a sub-merchant not ours)."""
        error = StatementCalls._classify_bill_answer(status, payload)
        if error.code in ("no_statement", "statement_not_ready"):
            return error
        return classify_partner_answer(status, payload)

    def _bill_owner(self) -> str:
        """A sub-merchant's bill file is named by its service provider and itself."""
        return f"{self.credentials.sp_mchid}_{self.credentials.sub_mchid}"

    bills: ClassVar[frozenset[BillKind]] = frozenset({BillKind.trade})
    """Trade bills only. A sub-merchant's money is in its own account: the provider reads its
    fund flow through ``GET /v3/bill/sub-merchant-fundflowbill`` (``sub_mchid``), which answers
    a list of encrypted files (AEAD_AES_256_GCM keys per file) rather than one download — not
    built; the sub-merchant's own direct account reads it as a direct merchant."""

    def bill_reader(
        self, path: Path, expected: Mapping[str, str], bill: BillKind = BillKind.trade
    ) -> BillReader:
        """A reader of this sub-merchant's bill: 商户号 is the service provider, 特约商户号
        the sub-merchant; a row of another (a sibling's, in a provider-wide bill) is a
        problem."""
        if bill not in self.bills:
            raise ValueError(f"WeChat Pay has no {bill} bill for a partner account")
        creds = self.credentials
        return TradeBillReader(path, expected, mchid=creds.sp_mchid, sub_mchid=creds.sub_mchid)

    # ------------------------------------------------------------ payments
    async def create_payment(self, request: CreatePayment) -> CreatedPayment:
        """``POST /v3/pay/partner/transactions/{kind}`` for the sub-merchant."""
        creds = self.credentials
        endpoint = protocol.METHOD_ENDPOINTS.get(request.method)
        if endpoint is None:
            raise BusinessError("unsupported_method", f"wechatpay does not do {request.method}")
        if request.currency != "CNY":
            raise BusinessError("unsupported_currency", "wechatpay only takes CNY")
        if request.amount <= 0:
            raise BusinessError("invalid_amount", "amount must be a positive number of fen")
        kind = endpoint[0]
        sp_appid, sub_appid = creds.order_apps(request.method)
        body: dict[str, Any] = {"sp_appid": sp_appid, "sp_mchid": creds.sp_mchid}
        if sub_appid:
            body["sub_appid"] = sub_appid
        body |= {
            "sub_mchid": creds.sub_mchid,
            "description": request.subject[:_DESCRIPTION_MAX],
            "out_trade_no": request.out_trade_no,
            "time_expire": protocol.rfc3339(request.expires_at),
            "notify_url": request.notify_url,
            "amount": {"total": request.amount, "currency": request.currency},
        }
        if request.profit_sharing:
            body["settle_info"] = {"profit_sharing": True}
        if kind == "jsapi":
            openid = request.customer.get("openid")
            if not openid:
                raise BusinessError("customer_required", "JSAPI payments need customer.openid")
            side, _ = creds.payer_app(request.method)
            body["payer"] = {f"{side}_openid": str(openid)}
        if kind == "h5":
            if not request.client_ip:
                raise BusinessError("client_ip_required", "H5 payments need the payer's IP")
            body["scene_info"] = {
                "payer_client_ip": request.client_ip,
                "h5_info": {"type": "Wap"},
            }
        _, payload = await self._call("POST", f"{protocol.PARTNER_PAY_PATH}/{kind}", body)
        if not isinstance(payload, dict):
            raise UnknownOutcome("malformed_response", "create answer has no body", raw=payload)
        return CreatedPayment(
            channel_trade_no=None,
            next_action=self._partner_action(kind, request.method, payload, request.return_url),
            raw=payload,
        )

    def _partner_action(
        self, kind: str, method: str, payload: Mapping[str, Any], return_url: str | None = None
    ) -> NextAction:
        if kind in ("native", "h5"):
            return self._next_action(kind, payload, return_url)
        prepay_id = payload.get("prepay_id")
        if not isinstance(prepay_id, str) or not prepay_id:
            raise UnknownOutcome("malformed_response", "create answer lacks prepay_id")
        creds = self.credentials
        _, appid = creds.payer_app(method)
        if method == "wechat_mini":
            params = protocol.mini_pay_params(self._private_key, appid=appid, prepay_id=prepay_id)
        elif kind == "jsapi":
            params = protocol.jsapi_pay_params(self._private_key, appid=appid, prepay_id=prepay_id)
        else:  # app: the sub-merchant is the SDK's partnerid
            timestamp, nonce = str(protocol.unix_now()), protocol.make_nonce()
            sign = protocol.app_pay_sign(
                self._private_key, appid=appid, timestamp=timestamp, nonce=nonce,
                prepay_id=prepay_id,
            )  # fmt: skip
            params = {
                "appid": appid,
                "partnerid": creds.sub_mchid,
                "prepayid": prepay_id,
                "package": "Sign=WXPay",
                "noncestr": nonce,
                "timestamp": timestamp,
                "sign": sign,
            }
        return NextAction(NextActionType.sdk_params, params=dict(params))

    def _ours(self, data: Mapping[str, Any]) -> bool:
        """A partner transaction or refund resource names our service provider and
        sub-merchant."""
        creds = self.credentials
        return data.get("sp_mchid") == creds.sp_mchid and data.get("sub_mchid") == creds.sub_mchid

    # ------------------------------------------------------------ notifications
    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """``TRANSACTION.SUCCESS`` and ``REFUND.*`` for this sub-merchant: signed by the
        platform, encrypted with the service provider's APIv3 key, and naming our
        ``sp_mchid`` and ``sub_mchid`` (a service provider's notify URL may be shared by all its
        sub-merchants; another one's notification is refused)."""
        envelope, event_key, resource = self._open(headers, body)
        event_type = envelope.get("event_type")
        if not isinstance(resource, dict):
            raise InvalidNotification("malformed", "resource is not a JSON object")
        if not self._ours(resource):
            raise InvalidNotification("wrong_merchant", "notification is for another sub-merchant")
        if isinstance(event_type, str) and event_type.startswith("REFUND."):
            # The direct decoder checks ``mchid``: ours is the service provider's.
            refund = {**resource, "mchid": self.credentials.sp_mchid}
            note = self._refund_notification(event_key, event_type, envelope, refund)
            return Notification(
                event_key=note.event_key, refund=note.refund, raw={**envelope, "resource": resource}
            )
        if "trade_state" not in resource:
            raise InvalidNotification("unsupported_event", "resource is not a transaction")
        try:
            state = self._state(resource)
        except ValueError as exc:
            raise InvalidNotification("malformed", str(exc)) from exc
        return Notification(
            event_key=event_key, payment=state, raw={**envelope, "resource": resource}
        )

    # ------------------------------------------------------------ not in partner mode
    async def create_transfer(self, request: CreateTransfer) -> TransferState:
        raise BusinessError(
            "unsupported_in_partner_mode", "payouts are not offered to a sub-merchant account"
        )

    async def query_transfer(self, out_biz_no: str) -> TransferState:
        raise BusinessError(
            "unsupported_in_partner_mode", "payouts are not offered to a sub-merchant account"
        )

    async def create_split(self, request: CreateSplit) -> SplitState:
        raise BusinessError(
            "unsupported_in_partner_mode",
            "profit sharing of a sub-merchant uses WeChat's partner profitsharing API",
        )

    async def query_split(
        self, out_order_no: str, out_trade_no: str, channel_trade_no: str
    ) -> SplitState:
        raise BusinessError(
            "unsupported_in_partner_mode",
            "profit sharing of a sub-merchant uses WeChat's partner profitsharing API",
        )

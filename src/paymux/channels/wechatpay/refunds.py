"""WeChat Pay refunds (``/v3/refund/domestic/refunds``): create, query, the ``REFUND.*``
notifications, and what a refund call's error answers mean."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from paymux.channels.base import (
    BusinessError,
    ChannelError,
    ChannelRefundStatus,
    CreateRefund,
    InvalidNotification,
    Notification,
    RefundState,
    UnknownOutcome,
)
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.client import WechatPayClient

_REFUND_REASON_MAX = 80
_REFUNDS_PATH = "/v3/refund/domestic/refunds"


# Refunds (``/v3/refund/domestic/refunds``) answer with their own codes. A refund is idempotent
# per ``out_refund_no``, so every answer that may hide an accepted refund is UnknownOutcome: the
# janitor queries, and a retry with the same number can never refund twice. That includes
# FREQUENCY_LIMITED, which WeChat also uses for "orders older than a month: retry with the same
# parameters later".
_REFUND_ERROR_CODES: dict[str, tuple[type[ChannelError], str]] = {
    "SYSTEM_ERROR": (UnknownOutcome, "system_error"),  # 500: retry with the same out_refund_no
    "BANK_ERROR": (UnknownOutcome, "bank_error"),
    "FREQUENCY_LIMITED": (UnknownOutcome, "frequency_limited"),  # 429
    "NOT_ENOUGH": (BusinessError, "insufficient_balance"),  # 403: the merchant account is short
    "NOTENOUGH": (BusinessError, "insufficient_balance"),
    "RESOURCE_NOT_EXISTS": (BusinessError, "order_not_found"),  # 404: no such (paid) order
    "ORDER_NOT_EXIST": (BusinessError, "order_not_found"),
    "USER_ACCOUNT_ABNORMAL": (BusinessError, "user_account_abnormal"),  # 403
    "NO_AUTH": (BusinessError, "not_authorized"),  # 403: no refund permission
    "MCH_NOT_EXISTS": (BusinessError, "invalid_credentials"),
    "APPID_MCHID_NOT_MATCH": (BusinessError, "invalid_credentials"),
    "SIGN_ERROR": (BusinessError, "sign_error"),
    "PARAM_ERROR": (BusinessError, "invalid_request"),
    "INVALID_REQUEST": (BusinessError, "invalid_request"),
}

# INVALID_REQUEST ("valid format, breaks a business rule") is refined by its message.
_REFUND_REFUSALS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("超过", "全额退款", "可退金额"), "refund_exceeds_payment"),
    (("未支付", "已关闭", "订单状态"), "order_not_paid"),
    (("不一致",), "duplicate_out_refund_no"),
)


def classify_refund_answer(status: int, payload: Any) -> ChannelError:
    """A verified non-2xx answer to a refund call → error."""
    wx_code = str(payload.get("code", "")) if isinstance(payload, dict) else ""
    message = str(payload.get("message", "")) if isinstance(payload, dict) else ""
    if wx_code in ("INVALID_REQUEST", "PARAM_ERROR"):
        for fragments, code in _REFUND_REFUSALS:
            if any(fragment in message for fragment in fragments):
                return BusinessError(code, message, raw=payload)
    if wx_code in _REFUND_ERROR_CODES:
        error, code = _REFUND_ERROR_CODES[wx_code]
        return error(code, message or wx_code, raw=payload)
    if status >= 500 or status == 429:
        return UnknownOutcome(wx_code.lower() or "channel_error", message, raw=payload)
    return BusinessError(wx_code.lower() or f"http_{status}", message, raw=payload)


class RefundCalls(WechatPayClient):
    """The refund side of :class:`~paymux.channels.wechatpay.adapter.WechatPayAdapter`."""

    async def create_refund(self, request: CreateRefund) -> RefundState:
        """``POST /v3/refund/domestic/refunds``. The answer is the refund object: usually
        PROCESSING (pending), SUCCESS for instant refunds to the payer's balance."""
        if request.currency != "CNY":
            raise BusinessError("unsupported_currency", "wechatpay only refunds CNY")
        if request.amount <= 0:
            raise BusinessError("invalid_amount", "refund amount must be a positive number of fen")
        if request.amount > request.total_amount:
            raise BusinessError("refund_exceeds_payment", "refund exceeds the order's amount")
        body: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "out_refund_no": request.out_refund_no,
        }
        if request.reason:
            body["reason"] = request.reason[:_REFUND_REASON_MAX]
        body["notify_url"] = request.notify_url
        body["amount"] = {
            "refund": request.amount,
            "total": request.total_amount,
            "currency": request.currency,
        }
        _, payload = await self._call("POST", _REFUNDS_PATH, body, classify=classify_refund_answer)
        return self._checked_refund(payload, request.out_refund_no, request.out_trade_no)

    async def query_refund(
        self, out_refund_no: str, out_trade_no: str, *, channel_refund_no: str | None = None
    ) -> RefundState:
        """``GET /v3/refund/domestic/refunds/{out_refund_no}``; 404 RESOURCE_NOT_EXISTS →
        ``not_found``."""
        path = f"{_REFUNDS_PATH}/{quote(out_refund_no, safe='')}"
        try:
            _, payload = await self._call("GET", path, classify=classify_refund_answer)
        except BusinessError as exc:
            wx_code = exc.raw.get("code") if isinstance(exc.raw, dict) else None
            if wx_code == "RESOURCE_NOT_EXISTS":
                return RefundState(
                    out_refund_no,
                    ChannelRefundStatus.not_found,
                    out_trade_no=out_trade_no,
                    raw=exc.raw,
                )
            raise
        return self._checked_refund(payload, out_refund_no, out_trade_no)

    def _checked_refund(self, payload: Any, out_refund_no: str, out_trade_no: str) -> RefundState:
        if not isinstance(payload, dict):
            raise UnknownOutcome("malformed_response", "refund answer has no body", raw=payload)
        try:
            state = self._refund_state(payload, status_field="status")
        except ValueError as exc:
            raise UnknownOutcome("malformed_response", str(exc), raw=payload) from exc
        if state.out_refund_no != out_refund_no or state.out_trade_no not in (None, out_trade_no):
            raise UnknownOutcome("malformed_response", "answer is about another refund")
        return state

    @staticmethod
    def _refund_state(refund: Mapping[str, Any], *, status_field: str) -> RefundState:
        """A refund object (answer: ``status``) or refund resource (notification:
        ``refund_status``) → RefundState."""
        out_refund_no = refund.get("out_refund_no")
        if not isinstance(out_refund_no, str) or not out_refund_no:
            raise ValueError("refund lacks out_refund_no")
        wire_status = str(refund.get(status_field, ""))
        status = protocol.map_refund_state(wire_status)
        amount = refund.get("amount")
        amount = amount if isinstance(amount, dict) else {}
        refunded = amount.get("refund")
        currency = amount.get("currency")
        success_time = refund.get("success_time")
        refunded_at = (
            protocol.parse_rfc3339(success_time)
            if status is ChannelRefundStatus.succeeded
            and isinstance(success_time, str)
            and success_time
            else None
        )
        out_trade_no = refund.get("out_trade_no")
        refund_id = refund.get("refund_id")
        failed = status is ChannelRefundStatus.failed
        return RefundState(
            out_refund_no=out_refund_no,
            status=status,
            out_trade_no=str(out_trade_no) if out_trade_no else None,
            channel_refund_no=str(refund_id) if refund_id else None,
            amount=refunded if isinstance(refunded, int) else None,
            currency=str(currency) if currency else ("CNY" if refunded is not None else None),
            refunded_at=refunded_at,
            failure_code=wire_status if failed else None,
            failure_message=protocol.REFUND_STATE_DESC[wire_status] if failed else None,
            raw=dict(refund),
        )

    def _refund_notification(
        self, event_key: str, event_type: str, envelope: Mapping[str, Any], refund: Any
    ) -> Notification:
        """A decrypted ``REFUND.*`` resource → Notification(refund=…)."""
        announced = protocol.REFUND_EVENTS.get(event_type)
        if announced is None:
            raise InvalidNotification("unsupported_event", f"unknown event {event_type!r}")
        if not isinstance(refund, dict) or "refund_status" not in refund:
            raise InvalidNotification("unsupported_event", "resource is not a refund")
        if refund.get("mchid") != self.credentials.mchid:
            raise InvalidNotification("wrong_merchant", "notification is for another merchant")
        if refund.get("refund_status") != announced:
            raise InvalidNotification("malformed", "refund_status contradicts event_type")
        try:
            state = self._refund_state(refund, status_field="refund_status")
        except ValueError as exc:
            raise InvalidNotification("malformed", str(exc)) from exc
        if state.out_trade_no is None:
            raise InvalidNotification("malformed", "refund lacks out_trade_no")
        return Notification(event_key=event_key, refund=state, raw={**envelope, "resource": refund})

"""WeChat Pay profit sharing (分账).

Profit sharing registers each receiver (``POST /v3/profitsharing/receivers/add``, idempotent),
then ``POST /v3/profitsharing/orders`` splits a paid order created with
``settle_info.profit_sharing``; ``GET /v3/profitsharing/orders/{out_order_no}?transaction_id=``
reads the result. Receiver names travel encrypted (RSAES-OAEP) under ``Wechatpay-Serial``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from paymux.channels.base import (
    BusinessError,
    ChannelError,
    ChannelSplitStatus,
    CreateSplit,
    RetryableError,
    SplitReceiver,
    SplitReceiverResult,
    SplitReceiverType,
    SplitState,
    UnknownOutcome,
)
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.client import WechatPayClient

_SPLIT_ORDERS_PATH = "/v3/profitsharing/orders"
_SPLIT_RECEIVERS_PATH = "/v3/profitsharing/receivers/add"
_SPLIT_DESCRIPTION_MAX = 80


# Profit sharing. ``out_order_no`` is idempotent at WeChat ("同一分账单号多次请求等同一次"), so a
# 5xx or 429 is UnknownOutcome (query, or retry with the same number). INVALID_REQUEST and
# PARAM_ERROR are refined by message (WeChat's own FAQ wording).
_SPLIT_ERROR_CODES: dict[str, tuple[type[ChannelError], str]] = {
    "SYSTEM_ERROR": (UnknownOutcome, "system_error"),  # 500
    "FREQUENCY_LIMITED": (UnknownOutcome, "frequency_limited"),  # 429
    "RULE_LIMIT": (BusinessError, "split_ratio_exceeded"),  # 403 分账金额超出最大分账比例
    "NOT_ENOUGH": (BusinessError, "insufficient_splittable"),  # 403 分账金额不足
    "NO_AUTH": (BusinessError, "not_authorized"),  # 403 no profit-sharing permission
    "PARAM_ERROR": (BusinessError, "invalid_request"),
    "INVALID_REQUEST": (BusinessError, "invalid_request"),
    "RESOURCE_NOT_EXISTS": (BusinessError, "not_found"),
    "NOT_FOUND": (BusinessError, "not_found"),
    "SIGN_ERROR": (BusinessError, "sign_error"),
    "APPID_MCHID_NOT_MATCH": (BusinessError, "invalid_credentials"),
    "MCH_NOT_EXISTS": (BusinessError, "invalid_credentials"),
}

_SPLIT_REFUSALS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("最大分账比例",), "split_ratio_exceeded"),
    (("非分账订单",), "order_not_splittable"),
    (("关系不存在",), "receiver_not_added"),
    (("金额不足",), "insufficient_splittable"),
    (("分账单号重复",), "duplicate_out_order_no"),
)


def classify_split_answer(status: int, payload: Any) -> ChannelError:
    """A verified non-2xx answer to a profit-sharing call → error."""
    wx_code = str(payload.get("code", "")) if isinstance(payload, dict) else ""
    message = str(payload.get("message", "")) if isinstance(payload, dict) else ""
    if wx_code in ("INVALID_REQUEST", "PARAM_ERROR"):
        if "处理中" in message:  # "订单处理中，请稍后重试": just paid, nothing was done
            return RetryableError("order_processing", message, raw=payload)
        for fragments, code in _SPLIT_REFUSALS:
            if any(fragment in message for fragment in fragments):
                return BusinessError(code, message, raw=payload)
    if wx_code in _SPLIT_ERROR_CODES:
        error, code = _SPLIT_ERROR_CODES[wx_code]
        return error(code, message or wx_code, raw=payload)
    if status >= 500 or status == 429:
        return UnknownOutcome(wx_code.lower() or "channel_error", message, raw=payload)
    return BusinessError(wx_code.lower() or f"http_{status}", message, raw=payload)


class ProfitSharingCalls(WechatPayClient):
    """The profit-sharing side of :class:`~paymux.channels.wechatpay.adapter.WechatPayAdapter`."""

    async def create_split(self, request: CreateSplit) -> SplitState:
        """Register every receiver (``receivers/add``, idempotent), then
        ``POST /v3/profitsharing/orders``. The order must have been created with
        ``profit_sharing``; WeChat answers PROCESSING (pending) or FINISHED."""
        receivers = request.receivers
        if not 1 <= len(receivers) <= protocol.MAX_SPLIT_RECEIVERS:
            raise BusinessError("invalid_request", "a split names 1 to 50 receivers")
        if not protocol.SPLIT_ORDER_NO.fullmatch(request.out_order_no):
            raise BusinessError("invalid_request", "out_order_no must be 1-64 of [0-9A-Za-z_-|*@]")
        if not request.channel_trade_no:
            raise BusinessError("invalid_request", "a split needs the order's transaction_id")
        for receiver in receivers:
            if receiver.amount <= 0:
                raise BusinessError("invalid_amount", "every receiver's amount must be positive")
            if not receiver.account:
                raise BusinessError("invalid_request", "every receiver needs an account")
            if receiver.type is SplitReceiverType.merchant and not receiver.name:
                raise BusinessError(
                    "receiver_name_required", "WeChat requires a merchant receiver's full name"
                )
        registered: set[tuple[str, str]] = set()
        for receiver in receivers:
            key = (receiver.type.value, receiver.account)
            if key not in registered:
                await self._add_receiver(receiver)
                registered.add(key)
        body: dict[str, Any] = {
            "appid": self.credentials.appid,
            "transaction_id": request.channel_trade_no,
            "out_order_no": request.out_order_no,
            "receivers": [self._split_receiver(r) for r in receivers],
            "unfreeze_unsplit": request.finish,
        }
        _, payload = await self._call(
            "POST", _SPLIT_ORDERS_PATH, body, classify=classify_split_answer
        )
        return self._checked_split(payload, request.out_order_no)

    async def query_split(
        self, out_order_no: str, out_trade_no: str, channel_trade_no: str
    ) -> SplitState:
        """``GET /v3/profitsharing/orders/{out_order_no}?transaction_id=…``; 404 →
        ``not_found``."""
        if not channel_trade_no:
            raise BusinessError("invalid_request", "a split query needs the transaction_id")
        path = (
            f"{_SPLIT_ORDERS_PATH}/{quote(out_order_no, safe='')}"
            f"?transaction_id={quote(channel_trade_no, safe='')}"
        )
        try:
            _, payload = await self._call("GET", path, classify=classify_split_answer)
        except BusinessError as exc:
            if exc.code == "not_found":
                return SplitState(out_order_no, ChannelSplitStatus.not_found, raw=exc.raw)
            raise
        return self._checked_split(payload, out_order_no)

    async def _add_receiver(self, receiver: SplitReceiver) -> None:
        creds = self.credentials
        merchant = receiver.type is SplitReceiverType.merchant
        body: dict[str, Any] = {
            "appid": creds.appid,
            "type": protocol.SPLIT_RECEIVER_TYPES[receiver.type.value],
            "account": receiver.account,
            "relation_type": (
                creds.split_relation_merchant if merchant else creds.split_relation_person
            ),
        }
        if receiver.name:
            body["name"] = protocol.encrypt_sensitive(self._platform_key, receiver.name)
        try:
            await self._call("POST", _SPLIT_RECEIVERS_PATH, body, classify=classify_split_answer)
        except BusinessError as exc:
            if "已存在" not in exc.message:  # an existing relation is what we wanted
                raise

    def _split_receiver(self, receiver: SplitReceiver) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "type": protocol.SPLIT_RECEIVER_TYPES[receiver.type.value],
            "account": receiver.account,
            "amount": receiver.amount,
            "description": receiver.description[:_SPLIT_DESCRIPTION_MAX] or "分账",
        }
        if receiver.name and receiver.type is SplitReceiverType.person:
            # Optional for a person; when sent WeChat checks it against their real name.
            wire["name"] = protocol.encrypt_sensitive(self._platform_key, receiver.name)
        return wire

    def _checked_split(self, payload: Any, out_order_no: str) -> SplitState:
        if not isinstance(payload, dict):
            raise UnknownOutcome("malformed_response", "split answer has no body", raw=payload)
        if payload.get("out_order_no") != out_order_no:
            raise UnknownOutcome("malformed_response", "answer is about another split")
        try:
            return self._split_state(payload)
        except ValueError as exc:
            raise UnknownOutcome("malformed_response", str(exc), raw=payload) from exc

    def _split_state(self, split: Mapping[str, Any]) -> SplitState:
        """A split order (create or query answer) → SplitState. Details paid to this merchant
        itself (what ``unfreeze_unsplit`` released) are not receivers of the split."""
        receivers = split.get("receivers") or []
        if not isinstance(receivers, list) or not all(isinstance(r, dict) for r in receivers):
            raise ValueError("split receivers are malformed")
        own = self.credentials.mchid
        details = [
            r for r in receivers if not (r.get("type") == "MERCHANT_ID" and r.get("account") == own)
        ]
        status = protocol.split_status(
            str(split.get("state", "")), [str(r.get("result", "")) for r in details]
        )
        closed = [r for r in details if r.get("result") == "CLOSED"]
        failure_code = failure_message = None
        if closed:
            reasons = [str(r.get("fail_reason") or "CLOSED") for r in closed]
            failure_code = reasons[0] if status is ChannelSplitStatus.failed else "PARTIALLY_CLOSED"
            failure_message = "; ".join(
                f"{r.get('account')}: {protocol.SPLIT_FAIL_REASONS.get(reason, reason)}"
                for r, reason in zip(closed, reasons, strict=True)
            )
        order_id = split.get("order_id")
        results = tuple(
            SplitReceiverResult(
                account=str(r.get("account", "")),
                status=protocol.SPLIT_RESULT_STATUS[str(r.get("result"))],
                amount=r["amount"] if isinstance(r.get("amount"), int) else None,
                failure_code=str(r["fail_reason"]) if r.get("fail_reason") else None,
            )
            for r in details
        )
        return SplitState(
            out_order_no=str(split["out_order_no"]),
            status=status,
            channel_split_no=str(order_id) if order_id else None,
            failure_code=failure_code,
            failure_message=failure_message,
            receivers=results,
            raw=dict(split),
        )

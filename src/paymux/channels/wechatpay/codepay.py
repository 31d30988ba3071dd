"""WeChat Pay payment codes (付款码支付): charging the code a customer shows
(``/v3/pay/transactions/codepay``), reversing an order (``…/reverse``), and what their error
answers mean."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from paymux.channels import base
from paymux.channels.base import (
    BusinessError,
    ChannelError,
    ChannelPaymentStatus,
    CreatedPayment,
    CreatePayment,
    PaymentState,
    UnknownOutcome,
)
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.client import (
    _DESCRIPTION_MAX,
    WechatPayClient,
)

# Payment codes (``/v3/pay/transactions/codepay`` and ``…/reverse``). A code charge is idempotent
# per out_trade_no, so anything that may hide a charge is UnknownOutcome: the gateway queries and,
# if the outcome stays unknown, reverses. USERPAYING ("the customer must confirm") is not an
# error at all: :meth:`WechatPayAdapter._codepay` answers it as a pending order. The business
# codes below follow WeChat's v2 micropay vocabulary in v3 spelling; WeChat's v3 page lists them
# only in part, so both spellings are recognised [partly unverified].
_CODEPAY_ERROR_CODES: dict[str, tuple[type[ChannelError], str]] = {
    "SYSTEM_ERROR": (UnknownOutcome, "system_error"),
    "SYSTEMERROR": (UnknownOutcome, "system_error"),
    "BANK_ERROR": (UnknownOutcome, "bank_error"),
    "BANKERROR": (UnknownOutcome, "bank_error"),
    "FREQUENCY_LIMITED": (UnknownOutcome, "frequency_limited"),
    "NOT_ENOUGH": (BusinessError, "insufficient_funds"),  # the customer's balance is short
    "NOTENOUGH": (BusinessError, "insufficient_funds"),
    "AUTH_CODE_EXPIRE": (BusinessError, "invalid_auth_code"),
    "AUTHCODEEXPIRE": (BusinessError, "invalid_auth_code"),
    "AUTH_CODE_ERROR": (BusinessError, "invalid_auth_code"),
    "AUTH_CODE_INVALID": (BusinessError, "invalid_auth_code"),
    "TRADE_ERROR": (BusinessError, "payment_declined"),
    "ORDER_PAID": (BusinessError, "already_paid"),
    "ORDERPAID": (BusinessError, "already_paid"),
    "ORDER_CLOSED": (BusinessError, "order_closed"),
    "ORDERCLOSED": (BusinessError, "order_closed"),
    "ORDER_REVERSED": (BusinessError, "order_closed"),
    "ORDERREVERSED": (BusinessError, "order_closed"),
    "ORDER_NOT_EXIST": (BusinessError, "order_not_exist"),
    "RESOURCE_NOT_EXISTS": (BusinessError, "order_not_exist"),
    "OUT_TRADE_NO_USED": (BusinessError, "duplicate_out_trade_no"),
    "APPID_MCHID_NOT_MATCH": (BusinessError, "invalid_credentials"),
    "MCH_NOT_EXISTS": (BusinessError, "invalid_credentials"),
    "SIGN_ERROR": (BusinessError, "sign_error"),
    "NO_AUTH": (BusinessError, "not_authorized"),
    "PARAM_ERROR": (BusinessError, "invalid_request"),
    "INVALID_REQUEST": (BusinessError, "invalid_request"),
}


def classify_codepay_answer(status: int, payload: Any) -> ChannelError:
    """A verified non-2xx answer to a code charge or reverse → error. A parameter error about
    the payment code itself is ``invalid_auth_code`` (the customer must show a fresh code)."""
    wx_code = str(payload.get("code", "")) if isinstance(payload, dict) else ""
    message = str(payload.get("message", "")) if isinstance(payload, dict) else ""
    if wx_code in ("PARAM_ERROR", "INVALID_REQUEST") and (
        "auth_code" in message or "付款码" in message
    ):
        return BusinessError("invalid_auth_code", message, raw=payload)
    if wx_code in _CODEPAY_ERROR_CODES:
        error, code = _CODEPAY_ERROR_CODES[wx_code]
        return error(code, message or wx_code, raw=payload)
    if status >= 500 or status == 429:
        return UnknownOutcome(wx_code.lower() or "channel_error", message, raw=payload)
    return BusinessError(wx_code.lower() or f"http_{status}", message, raw=payload)


class CodePayCalls(WechatPayClient):
    """The payment-code side of :class:`~paymux.channels.wechatpay.adapter.WechatPayAdapter`."""

    if TYPE_CHECKING:
        # Payments (the adapter itself): a charge WeChat already took is read back.
        async def query_payment(
            self, out_trade_no: str, *, channel_trade_no: str | None = None
        ) -> PaymentState: ...

    async def _codepay(self, request: CreatePayment) -> CreatedPayment:
        """``POST /v3/pay/transactions/codepay``: charge the customer's payment code. SUCCESS →
        ``succeeded``; USERPAYING → ``pending`` (the customer confirms; query, then reverse if
        it stays unknown); PAYERROR and refusals → BusinessError. A repeat of a charge WeChat
        already took (ORDER_PAID) answers the order's current state."""
        creds = self.credentials
        if request.currency != "CNY":
            raise BusinessError("unsupported_currency", "wechatpay only takes CNY")
        if request.amount <= 0:
            raise BusinessError("invalid_amount", "amount must be a positive number of fen")
        auth_code = str(request.customer.get("auth_code") or "")
        if not protocol.is_payment_code(auth_code):
            raise BusinessError("invalid_auth_code", "not a WeChat payment code")
        scene: dict[str, Any] = {
            "store_info": {
                "out_id": str(request.customer.get("store_id") or protocol.DEFAULT_STORE_OUT_ID)
            }
        }
        if request.customer.get("device_id"):
            scene["device_id"] = str(request.customer["device_id"])
        if request.client_ip:
            scene["device_ip"] = request.client_ip
        body: dict[str, Any] = {
            "appid": creds.appid,
            "mchid": creds.mchid,
            "description": request.subject[:_DESCRIPTION_MAX],
            "out_trade_no": request.out_trade_no,
            "payer": {"auth_code": auth_code},
            "amount": {"total": request.amount, "currency": request.currency},
            "scene_info": scene,
        }
        if request.profit_sharing:
            body["settle_info"] = {"profit_sharing": True}
        try:
            status, payload = await self._call(
                "POST", protocol.CODEPAY_PATH, body, classify=classify_codepay_answer
            )
        except BusinessError as exc:
            if exc.code != "already_paid":
                raise
            state = await self.query_payment(request.out_trade_no)
            return CreatedPayment(state.channel_trade_no, None, status=state.status, raw=state.raw)
        return self._codepay_answer(status, payload, request)

    def _codepay_answer(self, status: int, payload: Any, request: CreatePayment) -> CreatedPayment:
        trade_state = str(payload.get("trade_state", "")) if isinstance(payload, dict) else ""
        if trade_state == "USERPAYING" or (status == 202 and not trade_state):
            # Only trade_state comes back while the customer has not confirmed.
            return CreatedPayment(None, None, status=ChannelPaymentStatus.pending, raw=payload)
        if not isinstance(payload, dict) or payload.get("out_trade_no") != request.out_trade_no:
            raise UnknownOutcome("malformed_response", "codepay answer is about another order")
        try:
            state = self._state(payload)
        except ValueError as exc:
            raise UnknownOutcome("malformed_response", str(exc), raw=payload) from exc
        if state.amount is not None and state.amount != request.amount:
            raise UnknownOutcome("malformed_response", "codepay answer has another amount")
        if state.status is ChannelPaymentStatus.failed:
            raise BusinessError(state.failure_code or "payment_declined",
                                state.failure_message or trade_state, raw=payload)  # fmt: skip
        return CreatedPayment(state.channel_trade_no, None, status=state.status, raw=payload)

    async def reverse_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> base.ReversedPayment:
        """``POST /v3/pay/transactions/out-trade-no/{no}/reverse`` (``appid``, ``mchid``): an
        unpaid order is closed, a paid one refunded to the customer. An order WeChat never got
        has nothing to reverse. Raises UnknownOutcome/RetryableError until WeChat confirms."""
        creds = self.credentials
        body = {"appid": creds.appid, "mchid": creds.mchid}
        try:
            _, payload = await self._call(
                "POST", protocol.reverse_path(out_trade_no), body, classify=classify_codepay_answer
            )
        except BusinessError as exc:
            if exc.code == "order_not_exist":
                return base.ReversedPayment(out_trade_no, refunded=False, raw=exc.raw)
            raise
        if isinstance(payload, dict) and payload.get("out_trade_no") not in (None, out_trade_no):
            raise UnknownOutcome("malformed_response", "reverse answer is about another order")
        return base.ReversedPayment(out_trade_no, refunded=None, raw=payload)

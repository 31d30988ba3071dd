"""Alipay payment codes (条码支付): ``alipay.trade.pay`` (``scene=bar_code``) charges the code
the customer shows; ``alipay.trade.cancel`` reverses a charge whose outcome is unknown.
"""

from __future__ import annotations

from paymux.channels import base
from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.client import ErrorTable
from paymux.channels.alipay.payments import PaymentsMixin
from paymux.channels.base import (
    BusinessError,
    ChannelPaymentStatus,
    CreatedPayment,
    CreatePayment,
    UnknownOutcome,
)

# alipay.trade.pay (条码支付) sub_codes. Every refusal below charged nothing: the customer may show
# another code (a new attempt). ACQ.SYSTEM_ERROR stays UnknownOutcome (classify's table).
PAY_CODE_ERRORS: ErrorTable = {
    "ACQ.PAYMENT_AUTH_CODE_INVALID": (BusinessError, "invalid_auth_code"),
    "ACQ.AUTH_CODE_INVALID": (BusinessError, "invalid_auth_code"),
    "ACQ.BUYER_BALANCE_NOT_ENOUGH": (BusinessError, "insufficient_funds"),
    "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH": (BusinessError, "insufficient_funds"),
    "ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR": (BusinessError, "limit_exceeded"),
    "ACQ.BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR": (BusinessError, "limit_exceeded"),
    "ACQ.PAYMENT_FAIL": (BusinessError, "payment_declined"),
    "ACQ.PAYMENT_REQUEST_HAS_RISK": (BusinessError, "risk_declined"),
    "ACQ.ERROR_BUYER_CERTIFY_LEVEL_LIMIT": (BusinessError, "payment_declined"),
    "ACQ.BUYER_ENABLE_STATUS_FORBID": (BusinessError, "payment_declined"),
    "ACQ.TRADE_HAS_SUCCESS": (BusinessError, "already_paid"),
    "ACQ.TRADE_HAS_CLOSE": (BusinessError, "order_closed"),
    "ACQ.TRADE_BUYER_NOT_MATCH": (BusinessError, "invalid_auth_code"),
    "ACQ.CONTEXT_INCONSISTENT": (BusinessError, "duplicate_out_trade_no"),
    "ACQ.TOTAL_FEE_EXCEED": (BusinessError, "invalid_amount"),
    "ACQ.INVALID_PARAMETER": (BusinessError, "invalid_request"),
}

# alipay.trade.cancel sub_codes. A cancel that may or may not have happened is UnknownOutcome:
# the gateway calls it again (cancelling twice is harmless).
CANCEL_ERRORS: ErrorTable = {
    "ACQ.TRADE_NOT_EXIST": (BusinessError, "order_not_exist"),
    "ACQ.REASON_TRADE_STATUS_INVALID": (UnknownOutcome, "cancel_refused"),
    "ACQ.TRADE_CANCEL_TIME_OUT": (BusinessError, "cancel_window_closed"),
    "ACQ.SELLER_BALANCE_NOT_ENOUGH": (UnknownOutcome, "insufficient_balance"),
    "ACQ.INVALID_PARAMETER": (BusinessError, "invalid_request"),
}


class PaymentCodesMixin(PaymentsMixin):
    # ------------------------------------------------------------ payment codes (条码支付)
    async def _pay_code(self, request: CreatePayment) -> CreatedPayment:
        """``alipay.trade.pay`` (``scene=bar_code``): 10000 → ``succeeded``; 10003 →
        ``pending`` (the customer confirms in the app); refusals → BusinessError
        (:data:`PAY_CODE_ERRORS`); 20000 / ACQ.SYSTEM_ERROR → UnknownOutcome. A repeat of a
        charge already taken (ACQ.TRADE_HAS_SUCCESS) answers the trade's current state."""
        auth_code = str(request.customer.get("auth_code") or "")
        if not p.is_payment_code(auth_code):
            raise BusinessError("invalid_auth_code", "not an Alipay payment code")
        biz = self._biz(request, p.PRODUCT_QR)
        del biz["time_expire"]  # a code charge is settled or cancelled within a minute
        biz["scene"] = p.SCENE_BAR_CODE
        biz["auth_code"] = auth_code
        if request.customer.get("store_id"):
            biz["store_id"] = str(request.customer["store_id"])[:32]
        if request.customer.get("device_id"):
            biz["terminal_id"] = str(request.customer["device_id"])[:32]
        raw = await self._call(p.METHOD_PAY, biz, notify_url=request.notify_url)
        data = raw.data
        if str(data.get("code")) == p.WAIT_BUYER_PAY_CODE and raw.key != "error_response":
            if data.get("out_trade_no") not in (None, request.out_trade_no):
                raise UnknownOutcome("inconsistent_response", "pay answered for another order")
            trade_no = str(data["trade_no"]) if data.get("trade_no") else None
            return CreatedPayment(trade_no, None, status=ChannelPaymentStatus.pending, raw=data)
        try:
            data = self._check(raw, PAY_CODE_ERRORS)
        except BusinessError as exc:
            if exc.code != "already_paid":
                raise
            state = await self.query_payment(request.out_trade_no)
            return CreatedPayment(state.channel_trade_no, None, status=state.status, raw=state.raw)
        if data.get("out_trade_no") != request.out_trade_no:
            raise UnknownOutcome("inconsistent_response", "pay answered for another order")
        try:
            if data.get("total_amount") and p.to_fen(str(data["total_amount"])) != request.amount:
                raise UnknownOutcome("inconsistent_response", "pay answered another amount")
        except ValueError as exc:
            raise UnknownOutcome("unparseable_response", str(exc), raw=data) from exc
        trade_no = str(data["trade_no"]) if data.get("trade_no") else None
        return CreatedPayment(trade_no, None, status=ChannelPaymentStatus.succeeded, raw=data)

    async def reverse_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> base.ReversedPayment:
        """``alipay.trade.cancel``: closes an unpaid trade, refunds a paid one. ``retry_flag=Y``
        (or any unknown answer) raises UnknownOutcome: call again. A trade Alipay never got has
        nothing to cancel."""
        raw = await self._call(p.METHOD_CANCEL, {"out_trade_no": out_trade_no})
        try:
            data = self._check(raw, CANCEL_ERRORS)
        except BusinessError as exc:
            if exc.code == "order_not_exist":
                return base.ReversedPayment(out_trade_no, refunded=False, raw=exc.raw)
            raise
        if data.get("retry_flag") == "Y":
            raise UnknownOutcome("cancel_retry", "Alipay asks to cancel again", raw=data)
        if data.get("out_trade_no") not in (None, out_trade_no):
            raise UnknownOutcome("inconsistent_response", "cancel answered for another order")
        action = str(data.get("action") or "")
        refunded = action == "refund" if action in p.CANCEL_ACTIONS else None
        return base.ReversedPayment(out_trade_no, refunded=refunded, raw=data)

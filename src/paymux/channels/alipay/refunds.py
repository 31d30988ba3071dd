"""Alipay refunds: ``alipay.trade.refund`` (``out_request_no`` = our refund id, so a repeat can
never refund twice) and ``alipay.trade.fastpay.refund.query``.

Alipay sends no refund notification of its own: a refund changes the *trade*, which it
notifies as ``trade_status_sync`` (see
:meth:`~paymux.channels.alipay.adapter.AlipayAdapter.parse_notification`).
"""

from __future__ import annotations

from typing import Any

from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.client import AlipayClient, ErrorTable
from paymux.channels.base import (
    BusinessError,
    ChannelError,
    ChannelRefundStatus,
    CreateRefund,
    RefundState,
    UnknownOutcome,
)

REFUND_REASON_MAX = 256

# alipay.trade.refund's documented sub_codes ("业务错误码" of the API page). A refund is idempotent
# per ``out_request_no`` (our out_refund_no), so every answer that may hide an accepted refund is
# UnknownOutcome (ACQ.SYSTEM_ERROR: "请使用相同的参数再次调用"): the janitor queries and may send
# the same number again, which can never refund twice. The rest are final for this request.
REFUND_ERRORS: ErrorTable = {
    "ACQ.SELLER_BALANCE_NOT_ENOUGH": (BusinessError, "insufficient_balance"),
    # Exceeds what is left: REFUND_AMT_NOT_EQUAL_TOTAL ("退款金额超限"), and what Alipay answers
    # when out_request_no is set and the amount is too high (REASON_TRADE_REFUND_FEE_ERR).
    "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL": (BusinessError, "refund_exceeds_payment"),
    "ACQ.REASON_TRADE_REFUND_FEE_ERR": (BusinessError, "refund_exceeds_payment"),
    "ACQ.REFUND_FEE_ERROR": (BusinessError, "refund_exceeds_payment"),
    "ACQ.TRADE_NOT_EXIST": (BusinessError, "order_not_found"),
    "ACQ.TRADE_STATUS_ERROR": (BusinessError, "order_not_paid"),
    "ACQ.TRADE_HAS_FINISHED": (BusinessError, "refund_window_closed"),  # TRADE_FINISHED
    "ACQ.TRADE_NOT_ALLOW_REFUND": (BusinessError, "refund_not_allowed"),
    "ACQ.REASON_TRADE_BEEN_FREEZEN": (BusinessError, "order_frozen"),
    "ACQ.DISCORDANT_REPEAT_REQUEST": (BusinessError, "duplicate_out_refund_no"),
    "ACQ.INVALID_PARAMETER": (BusinessError, "invalid_request"),
}


class RefundsMixin(AlipayClient):
    # ------------------------------------------------------------ refunds
    async def create_refund(self, request: CreateRefund) -> RefundState:
        """``alipay.trade.refund`` with ``out_request_no`` = our refund id (required by Alipay
        for partial refunds; we always send it, so every refund is idempotent per number).

        ``fund_change=Y`` means the money went back in this call → ``succeeded``. ``N`` is what
        Alipay answers to a repeated number (or a refund it has accepted but not executed):
        the refund query decides, once, at once → ``succeeded`` if it already shows
        ``REFUND_SUCCESS``, otherwise ``pending`` (the janitor asks again later)."""
        if request.currency != p.CURRENCY:
            raise BusinessError("unsupported_currency", "alipay only refunds CNY")
        if request.amount <= 0:
            raise BusinessError("invalid_amount", "refund amount must be a positive number of fen")
        if request.amount > request.total_amount:
            raise BusinessError("refund_exceeds_payment", "refund exceeds the order's amount")
        biz: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "refund_amount": p.to_yuan(request.amount),
            "out_request_no": request.out_refund_no,
        }
        if request.reason:
            biz["refund_reason"] = request.reason[:REFUND_REASON_MAX]
        raw = await self._call(p.METHOD_REFUND, biz)
        data = self._check(raw, REFUND_ERRORS)
        if data.get("out_trade_no") not in (None, request.out_trade_no):
            raise UnknownOutcome("inconsistent_response", "refund answered for another order")
        if data.get("fund_change") != p.FUND_CHANGED:
            try:
                state = await self.query_refund(request.out_refund_no, request.out_trade_no)
            except ChannelError:
                state = None
            if state is not None and state.status is ChannelRefundStatus.succeeded:
                return state
            # Accepted (code 10000): whatever the query said, the refund is not "not found".
            return RefundState(
                request.out_refund_no,
                ChannelRefundStatus.pending,
                out_trade_no=request.out_trade_no,
                raw=data,
            )
        try:
            refunded_at = (
                p.parse_time(str(data["gmt_refund_pay"])) if data.get("gmt_refund_pay") else None
            )
        except ValueError as exc:
            raise UnknownOutcome("unparseable_response", str(exc), raw=data) from exc
        # ``refund_fee`` is the trade's *total* refunded so far, not this refund's amount.
        return RefundState(
            out_refund_no=request.out_refund_no,
            status=ChannelRefundStatus.succeeded,
            out_trade_no=request.out_trade_no,
            refunded_at=refunded_at,
            raw=data,
        )

    async def query_refund(
        self, out_refund_no: str, out_trade_no: str, *, channel_refund_no: str | None = None
    ) -> RefundState:
        """``alipay.trade.fastpay.refund.query`` (``out_trade_no`` + ``out_request_no``).

        ``refund_status=REFUND_SUCCESS`` → ``succeeded``. An answer without ``refund_status``
        means, in Alipay's words, "the refund request was not received, or the refund did not
        succeed", and its remedy for both is the same: send the refund again with the same
        ``out_request_no`` and amount, which can never refund twice. The query cannot tell the
        two apart, so we answer ``not_found`` and the janitor does exactly that; a refund that
        is merely slow answers the repeat with ``fund_change=N`` and stays ``pending``.
        ``ACQ.TRADE_NOT_EXIST`` (no such trade, so no such refund) is ``not_found`` too."""
        biz = {
            "out_trade_no": out_trade_no,
            "out_request_no": out_refund_no,
            "query_options": ["gmt_refund_pay"],
        }
        raw = await self._call(p.METHOD_REFUND_QUERY, biz)
        try:
            data = self._check(raw)
        except BusinessError as exc:
            if exc.code == "ACQ.TRADE_NOT_EXIST":
                return RefundState(
                    out_refund_no,
                    ChannelRefundStatus.not_found,
                    out_trade_no=out_trade_no,
                    raw=raw.data,
                )
            raise
        if data.get("out_request_no") not in (None, "", out_refund_no) or data.get(
            "out_trade_no"
        ) not in (None, "", out_trade_no):
            raise UnknownOutcome("inconsistent_response", "answer is about another refund")
        try:
            status = p.map_refund_status(str(data.get("refund_status") or ""))
            succeeded = status is ChannelRefundStatus.succeeded
            amount = (
                p.to_fen(str(data["refund_amount"]))
                if succeeded and data.get("refund_amount")
                else None
            )
            refunded_at = (
                p.parse_time(str(data["gmt_refund_pay"]))
                if succeeded and data.get("gmt_refund_pay")
                else None
            )
        except ValueError as exc:
            raise UnknownOutcome("unparseable_response", str(exc), raw=data) from exc
        failed = status is ChannelRefundStatus.failed
        return RefundState(
            out_refund_no=out_refund_no,
            status=status,
            out_trade_no=out_trade_no,
            amount=amount,
            currency=p.CURRENCY if amount is not None else None,
            refunded_at=refunded_at,
            failure_code=str(data.get("error_code") or "REFUND_FAIL") if failed else None,
            failure_message="refund failed at alipay" if failed else None,
            raw=data,
        )

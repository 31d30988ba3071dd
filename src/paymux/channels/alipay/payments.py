"""Alipay payments the adapter creates and follows: the common ``biz_content`` of a trade,
``alipay.trade.precreate`` (``alipay_qr``), ``alipay.trade.query`` and ``alipay.trade.close``.

Alipay only creates the trade when the customer scans the QR code or opens the cashier, so a
query before that answers ``ACQ.TRADE_NOT_EXIST`` (→ ``not_found``) even though the create
"succeeded"; the order stays payable until ``time_expire``, which is therefore always sent.
"""

from __future__ import annotations

from typing import Any

from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.client import AlipayClient
from paymux.channels.base import (
    BusinessError,
    ChannelPaymentStatus,
    CreatedPayment,
    CreatePayment,
    NextAction,
    NextActionType,
    PaymentState,
    UnknownOutcome,
)

SUBJECT_MAX = 256


class PaymentsMixin(AlipayClient):
    # ------------------------------------------------------------ payments
    def _biz(self, request: CreatePayment, product_code: str) -> dict[str, Any]:
        biz: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "total_amount": p.to_yuan(request.amount),
            "subject": request.subject[:SUBJECT_MAX],
            "product_code": product_code,
            "time_expire": p.format_time(request.expires_at),
        }
        if request.description:
            biz["body"] = request.description[:128]
        if self.credentials.seller_id:
            biz["seller_id"] = self.credentials.seller_id
        buyer_id = request.customer.get("buyer_id")
        if buyer_id:
            biz["buyer_id"] = str(buyer_id)
        return biz

    async def _precreate(self, request: CreatePayment) -> CreatedPayment:
        biz = self._biz(request, p.PRODUCT_QR)
        raw = await self._call(p.METHOD_PRECREATE, biz, notify_url=request.notify_url)
        data = self._check(raw)
        qr_code = data.get("qr_code")
        if data.get("out_trade_no") != request.out_trade_no or not isinstance(qr_code, str):
            raise UnknownOutcome("inconsistent_response", "precreate answer does not match")
        return CreatedPayment(
            channel_trade_no=None,
            next_action=NextAction(NextActionType.qr_code, code_url=qr_code),
            raw=data,
        )

    async def query_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> PaymentState:
        raw = await self._call(p.METHOD_QUERY, {"out_trade_no": out_trade_no})
        try:
            data = self._check(raw)
        except BusinessError as exc:
            if exc.code == "ACQ.TRADE_NOT_EXIST":
                return PaymentState(out_trade_no, ChannelPaymentStatus.not_found, raw=raw.data)
            raise
        if data.get("out_trade_no") != out_trade_no:
            raise UnknownOutcome("inconsistent_response", "query answered for another order")
        try:
            status = p.map_trade_status(str(data.get("trade_status", "")))
            amount = p.to_fen(str(data["total_amount"])) if data.get("total_amount") else None
            paid_at = (
                p.parse_time(str(data["send_pay_date"]))
                if status is ChannelPaymentStatus.succeeded and data.get("send_pay_date")
                else None
            )
        except ValueError as exc:
            raise UnknownOutcome("unparseable_response", str(exc), raw=data) from exc
        return PaymentState(
            out_trade_no=out_trade_no,
            status=status,
            channel_trade_no=str(data["trade_no"]) if data.get("trade_no") else None,
            amount=amount,
            currency=p.currency_of(data, amount),
            paid_at=paid_at,
            channel_code=str(data.get("trade_status")) if status is ChannelPaymentStatus.closed
            else None,
            raw=data,
        )  # fmt: skip

    async def close_payment(
        self, out_trade_no: str, *, channel_trade_no: str | None = None
    ) -> None:
        raw = await self._call(p.METHOD_CLOSE, {"out_trade_no": out_trade_no})
        try:
            self._check(raw)
            return
        except BusinessError as exc:
            if exc.code == "ACQ.TRADE_NOT_EXIST":
                return
            if exc.code != "ACQ.TRADE_STATUS_ERROR":
                raise
        # TRADE_STATUS_ERROR: the trade is paid, finished or already closed; ask which.
        state = await self.query_payment(out_trade_no)
        if state.status is ChannelPaymentStatus.succeeded:
            raise BusinessError("already_paid", "the order was paid", raw=state.raw)
        if state.status in (ChannelPaymentStatus.closed, ChannelPaymentStatus.not_found):
            return
        raise UnknownOutcome("close_refused", f"close refused while {state.status}")

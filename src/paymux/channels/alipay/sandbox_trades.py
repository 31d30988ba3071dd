"""The Alipay sandbox's trades: creating one (server methods and browser entries), finding it,
its ``trade_status``, its expiry, and its ``trade_status_sync`` notifications.

Methods:

- ``alipay.trade.precreate``: creates the order (``WAIT_BUYER_PAY``), answers ``qr_code`` =
  ``{base_url}/_sandbox/pay/{out_trade_no}``. Repeating it for a pending order with the same
  amount and subject returns the same code (Alipay's idempotency); otherwise
  ``ACQ.CONTEXT_INCONSISTENT`` / ``ACQ.TRADE_HAS_SUCCESS`` / ``ACQ.TRADE_HAS_CLOSE``.
- ``alipay.trade.page.pay`` / ``alipay.trade.wap.pay`` / ``alipay.trade.app.pay``: browser
  entries. Opening the signed gateway URL (or, standing in for the Alipay app SDK, the app
  order string as a query) creates the order and redirects (302) to the customer page. As at
  Alipay, these orders do not exist before that (a query answers ``ACQ.TRADE_NOT_EXIST``).
  Errors are shown as an HTML error page (HTTP 400). ``QUICK_WAP_WAY`` and the legacy
  ``QUICK_WAP_PAY`` are both accepted for wap.
- ``alipay.trade.query``: by ``out_trade_no`` or ``trade_no``; ``ACQ.TRADE_NOT_EXIST`` if unknown.
- ``alipay.trade.close``: closes a ``WAIT_BUYER_PAY`` order; ``ACQ.TRADE_STATUS_ERROR`` for a
  paid or already closed one; ``ACQ.TRADE_NOT_EXIST`` if unknown.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import Any

from fastapi import Response
from fastapi.responses import RedirectResponse

from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.sandbox_apps import (
    _OK,
    SandboxApp,
    SandboxBase,
    _business,
    _CreateError,
    _digits,
    _Fail,
)
from paymux.channels.sandbox_kit import (
    OrderStatus,
    Outcome,
    RefundStatus,
    SandboxOrder,
    SandboxRefund,
)
from paymux.kit import clock

_BUYER_LOGON_ID = "sbx***@sandbox.example"
_BROWSER_METHODS = {
    p.METHOD_PAGE_PAY: ("alipay_page", (p.PRODUCT_PAGE,)),
    p.METHOD_WAP_PAY: ("alipay_wap", (p.PRODUCT_WAP, "QUICK_WAP_PAY")),
    p.METHOD_APP_PAY: ("alipay_app", (p.PRODUCT_APP,)),
}
_MAX_AMOUNT = 100_000_000_00  # 100 million yuan, Alipay's per-trade ceiling, in fen


class TradesBase(SandboxBase):
    """Trades, on which refunds, splits, payment codes and bills build."""

    # ------------------------------------------------------------ trade state
    def refunded(self, order: SandboxOrder) -> int:
        """What of the order has gone back to the buyer (succeeded refunds), in fen."""
        return sum(
            r.amount for r in self.core.refunds_of(order) if r.status is RefundStatus.succeeded
        )

    def wire_status(self, order: SandboxOrder) -> str:
        """The order's ``trade_status``: a paid trade refunded in full is ``TRADE_CLOSED``
        ("支付完成后全额退款")."""
        if order.extra.get("reversed"):
            return "TRADE_CLOSED"
        if order.status is OrderStatus.succeeded:
            return "TRADE_CLOSED" if self.refunded(order) >= order.amount else "TRADE_SUCCESS"
        return "WAIT_BUYER_PAY" if order.status is OrderStatus.pending else "TRADE_CLOSED"

    # ------------------------------------------------------------ notifications
    def _trade_notification(self, order: SandboxOrder) -> dict[str, str]:
        now = clock.now()
        paid = order.status is OrderStatus.succeeded
        amount = p.to_yuan(order.amount)
        fields = {
            "notify_id": p.format_time(now).replace("-", "").replace(" ", "").replace(":", "")
            + secrets.token_hex(12),
            "notify_time": p.format_time(now),
            "notify_type": "trade_status_sync",
            "charset": p.CHARSET,
            "version": p.VERSION,
            "app_id": order.extra.get("isv_app_id") or order.merchant_id,
            "auth_app_id": order.merchant_id,
            "trade_no": order.channel_trade_no,
            "out_trade_no": order.out_trade_no,
            "trade_status": self.wire_status(order),
            "total_amount": amount,
            "receipt_amount": amount if paid else "0.00",
            "invoice_amount": amount if paid else "0.00",
            "buyer_pay_amount": amount if paid else "0.00",
            "point_amount": "0.00",
            "buyer_id": str(order.extra["buyer_id"]),
            "seller_id": str(order.extra["seller_id"]),
            "subject": order.subject,
            "gmt_create": p.format_time(order.created_at),
        }
        if paid and order.paid_at is not None:
            fields["gmt_payment"] = p.format_time(order.paid_at)
            fields["fund_bill_list"] = json.dumps(
                [{"amount": amount, "fundChannel": "ALIPAYACCOUNT"}], separators=(",", ":")
            )
        else:
            fields["gmt_close"] = p.format_time(order.closed_at or now)
        if order.extra.get("buyer_open_id"):  # the payer was named by open id
            fields["buyer_open_id"] = str(order.extra["buyer_open_id"])
        return fields

    def _signed_form(self, fields: dict[str, str]) -> tuple[dict[str, str], bytes]:
        fields["sign"] = p.sign(p.notify_sign_content(fields), self._alipay_key)
        fields["sign_type"] = p.SIGN_TYPE
        body = p.query_string(fields).encode("ascii")
        return {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, body

    def build_notification(self, order: SandboxOrder) -> tuple[dict[str, str], bytes]:
        return self._signed_form(self._trade_notification(order))

    def build_refund_notification(self, refund: SandboxRefund) -> tuple[dict[str, str], bytes]:
        """A succeeded refund changes the trade, which Alipay notifies to the *trade's*
        notify_url: ``trade_status_sync`` with ``out_biz_no`` (the refund request number),
        ``refund_fee`` (the trade's total refunded) and ``gmt_refund`` (``…HH:mm:ss.S``)."""
        order = refund.order
        fields = self._trade_notification(order)
        finished = refund.finished_at or clock.now()
        fields["out_biz_no"] = refund.out_refund_no
        fields["refund_fee"] = p.to_yuan(self.refunded(order))
        fields["gmt_refund"] = p.format_time(finished) + f".{finished.microsecond // 1000:03d}"
        if fields["trade_status"] == "TRADE_CLOSED":
            fields["gmt_close"] = p.format_time(finished)
        return self._signed_form(fields)

    @staticmethod
    def _trade_fields(biz: dict[str, Any]) -> tuple[str, int, str]:
        out_trade_no = str(biz.get("out_trade_no") or "")
        if not out_trade_no:
            raise _Fail("40002", "isv.missing-parameter", "缺少 out_trade_no")
        if len(out_trade_no) > 64:
            raise _business("ACQ.INVALID_PARAMETER", "out_trade_no 过长")
        text = str(biz.get("total_amount") or "")
        try:
            amount = p.to_fen(text)
        except ValueError:
            raise _business("ACQ.INVALID_PARAMETER", "total_amount 格式错误") from None
        if not 1 <= amount <= _MAX_AMOUNT:
            raise _business("ACQ.TOTAL_FEE_EXCEED", "订单金额超过限额")
        subject = str(biz.get("subject") or "")
        if not subject:
            raise _Fail("40002", "isv.missing-parameter", "缺少 subject")
        return out_trade_no, amount, subject

    def _expire_if_due(self, order: SandboxOrder) -> None:
        expires = order.extra.get("expires_at")
        if (
            order.status is OrderStatus.pending
            and isinstance(expires, dt.datetime)
            and clock.now() >= expires
        ):
            self.core.close(order)
            self.core.spawn(self.core.notify(order))

    def _existing(self, order: SandboxOrder, amount: int, subject: str) -> None:
        """A repeated create for ``order``: fine only if pending and consistent."""
        self._expire_if_due(order)
        if order.status is OrderStatus.succeeded:
            raise _business("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
        if order.status is not OrderStatus.pending:
            raise _business("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
        if order.amount != amount or order.subject != subject:
            raise _business("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")

    async def _create(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], method: str
    ) -> SandboxOrder:
        out_trade_no, amount, subject = self._trade_fields(biz)
        existing = self.core.get_order(app.app_id, out_trade_no)
        if existing is not None:
            self._existing(existing, amount, subject)
            return existing
        expires_at: dt.datetime | None = None
        if biz.get("time_expire"):
            try:
                expires_at = p.parse_time(str(biz["time_expire"]))
            except ValueError:
                raise _business("ACQ.INVALID_PARAMETER", "time_expire 格式错误") from None
            if expires_at <= clock.now():
                raise _business("ACQ.INVALID_PARAMETER", "time_expire 已过期")
        seller = biz.get("seller_id")
        if seller and seller != app.seller_id:
            raise _business("ACQ.SELLER_NOT_EXIST", "卖家不存在")
        script = self.core.take_script(subject)
        if script.outcome is Outcome.create_error:
            raise _CreateError
        now = clock.now()
        trade_no = p.format_time(now)[:10].replace("-", "") + "22001" + _digits(15)
        order = self.core.add_order(
            SandboxOrder(
                out_trade_no=out_trade_no,
                channel_trade_no=trade_no,
                merchant_id=app.app_id,
                amount=amount,
                currency=p.CURRENCY,
                subject=subject,
                notify_url=params.get("notify_url") or None,
                method=method,
                script=script,
                created_at=now,
                return_url=params.get("return_url") or None,
                extra={
                    "buyer_id": str(biz.get("buyer_id") or "2088" + _digits(12)),
                    "buyer_open_id": biz.get("buyer_open_id"),
                    "isv_app_id": app.isv_app_id,
                    "seller_id": app.seller_id,
                    "expires_at": expires_at,
                },
            )
        )
        await self.core.after_create(order)
        return order

    def _lookup(self, app: SandboxApp, biz: dict[str, Any]) -> SandboxOrder:
        out_trade_no = biz.get("out_trade_no")
        trade_no = biz.get("trade_no")
        if not out_trade_no and not trade_no:
            raise _Fail("40002", "isv.missing-parameter", "out_trade_no 与 trade_no 不能同时为空")
        order = self.core.get_order(app.app_id, str(out_trade_no)) if out_trade_no else None
        if order is None and trade_no:
            order = next(
                (
                    o
                    for o in self.core.orders.values()
                    if o.merchant_id == app.app_id and o.channel_trade_no == trade_no
                ),
                None,
            )
        if order is None:
            raise _business("ACQ.TRADE_NOT_EXIST", "交易不存在")
        self._expire_if_due(order)
        return order

    # ------------------------------------------------------------ server methods
    async def _precreate(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        order = await self._create(app, params, biz, "alipay_qr")
        qr = f"{base}/_sandbox/pay/{order.out_trade_no}"
        return {**_OK, "out_trade_no": order.out_trade_no, "qr_code": qr}

    async def _close(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        order = self._lookup(app, biz)
        if order.status is not OrderStatus.pending:
            raise _business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        self.core.close(order)
        return {**_OK, "trade_no": order.channel_trade_no, "out_trade_no": order.out_trade_no}

    async def _query(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        order = self._lookup(app, biz)
        paid = order.status is OrderStatus.succeeded
        amount = p.to_yuan(order.amount)
        answer: dict[str, Any] = {
            **_OK,
            "trade_no": order.channel_trade_no,
            "out_trade_no": order.out_trade_no,
            "buyer_logon_id": _BUYER_LOGON_ID,
            "trade_status": self.wire_status(order),
            "total_amount": amount,
            "buyer_pay_amount": amount if paid else "0.00",
            "point_amount": "0.00",
            "invoice_amount": amount if paid else "0.00",
            "receipt_amount": amount if paid else "0.00",
            "buyer_user_id": order.extra["buyer_id"],
        }
        if paid and order.paid_at is not None:
            answer["send_pay_date"] = p.format_time(order.paid_at)
            answer["fund_bill_list"] = [{"amount": amount, "fund_channel": "ALIPAYACCOUNT"}]
        return answer

    async def _browser_call(
        self, app: SandboxApp, method: str, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> Response:
        kind, products = _BROWSER_METHODS[method]
        product = biz.get("product_code")
        if product and product not in products:
            raise _business("ACQ.PRODUCT_CODE_ERROR", f"不支持的产品码 {product}")
        order = await self._create(app, params, biz, kind)
        return RedirectResponse(f"{base}/_sandbox/pay/{order.out_trade_no}", status_code=302)

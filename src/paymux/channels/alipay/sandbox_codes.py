"""The Alipay sandbox's payment codes (条码支付): ``alipay.trade.pay`` charges a code per the
barcode scripts (``POST /_sandbox/barcode_scripts``), ``alipay.trade.cancel`` reverses a
trade, and ``GET /_sandbox/barcode/{out_trade_no}`` shows a code order.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException

from paymux.channels import sandbox_kit
from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.sandbox_apps import (
    _OK,
    SandboxApp,
    _business,
    _CreateError,
    _digits,
    _Fail,
)
from paymux.channels.alipay.sandbox_trades import _BUYER_LOGON_ID, TradesBase
from paymux.channels.sandbox_kit import BarcodeOutcome, BarcodeScript, OrderStatus, SandboxOrder
from paymux.kit import clock


class PaymentCodeMethods(TradesBase):
    barcode_scripts: list[BarcodeScript]

    # ------------------------------------------------------------ payment codes (条码支付)
    def add_barcode_script(self, script: BarcodeScript) -> None:
        """Queue the outcome of the next code charge whose subject matches."""
        self.barcode_scripts.append(script)

    def _take_barcode_script(self, subject: str) -> BarcodeScript:
        return sandbox_kit.take_matching(self.barcode_scripts, subject, BarcodeScript)

    def _pay_answer(self, order: SandboxOrder) -> dict[str, Any]:
        paid = order.status is OrderStatus.succeeded
        amount = p.to_yuan(order.amount)
        answer: dict[str, Any] = {
            **_OK,
            "trade_no": order.channel_trade_no,
            "out_trade_no": order.out_trade_no,
            "buyer_logon_id": _BUYER_LOGON_ID,
            "total_amount": amount,
            "receipt_amount": amount if paid else "0.00",
            "buyer_pay_amount": amount if paid else "0.00",
            "point_amount": "0.00",
            "invoice_amount": amount if paid else "0.00",
            "buyer_user_id": order.extra["buyer_id"],
        }
        if paid and order.paid_at is not None:
            answer["gmt_payment"] = p.format_time(order.paid_at)
            answer["fund_bill_list"] = [{"amount": amount, "fund_channel": "ALIPAYACCOUNT"}]
        else:
            answer |= {"code": p.WAIT_BUYER_PAY_CODE, "msg": "order success pay inprocess"}
        return answer

    async def _pay_code(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        """``alipay.trade.pay``: charge a payment code per the barcode script."""
        if biz.get("scene") != p.SCENE_BAR_CODE:
            raise _business("ACQ.INVALID_PARAMETER", "scene 仅支持 bar_code")
        product = biz.get("product_code")
        if product and product != p.PRODUCT_QR:
            raise _business("ACQ.PRODUCT_CODE_ERROR", f"不支持的产品码 {product}")
        auth_code = str(biz.get("auth_code") or "")
        if not auth_code:
            raise _Fail("40002", "isv.missing-parameter", "缺少 auth_code")
        out_trade_no, amount, subject = self._trade_fields(biz)
        existing = self.core.get_order(app.app_id, out_trade_no)
        if existing is not None:
            self._existing(existing, amount, subject)
            return self._pay_answer(existing)
        script = self._take_barcode_script(subject)
        outcome = script.outcome
        if not p.is_payment_code(auth_code) or outcome is BarcodeOutcome.invalid_code:
            message = "支付失败，获取顾客账户信息失败，请顾客刷新付款码后重新收款"
            raise _business("ACQ.PAYMENT_AUTH_CODE_INVALID", message)
        if outcome is BarcodeOutcome.insufficient_balance:
            raise _business("ACQ.BUYER_BALANCE_NOT_ENOUGH", "买家余额不足")
        if outcome is BarcodeOutcome.create_error:
            raise _CreateError
        now = clock.now()
        order = self.core.add_order(
            SandboxOrder(
                out_trade_no=out_trade_no,
                channel_trade_no=p.format_time(now)[:10].replace("-", "") + "22001" + _digits(15),
                merchant_id=app.app_id, amount=amount, currency=p.CURRENCY, subject=subject,
                notify_url=params.get("notify_url") or None, method=p.BARCODE_METHOD,
                script=sandbox_kit.Script(), created_at=now,
                extra={"buyer_id": "2088" + _digits(12), "seller_id": app.seller_id,
                       "expires_at": None, "auth_code_tail": auth_code[-4:]},
            )
        )  # fmt: skip
        if outcome in (BarcodeOutcome.paid, BarcodeOutcome.create_timeout):
            self.core.settle(order, paid=True)
            self.core.spawn(self.core.notify(order))
        elif outcome in (BarcodeOutcome.password_paid, BarcodeOutcome.password_declined):
            paid = outcome is BarcodeOutcome.password_paid
            self.core.spawn(self._confirm_later(order, script.delay, paid=paid))
        if outcome is BarcodeOutcome.create_timeout:
            await asyncio.sleep(self.core.hold_timeout_seconds)
        return self._pay_answer(order)

    async def _confirm_later(self, order: SandboxOrder, delay: float, *, paid: bool) -> None:
        await asyncio.sleep(delay * self.core.time_scale)
        if order.extra.get("reversed") or order.status is not OrderStatus.pending:
            return
        if paid:
            self.core.settle(order, paid=True)
        else:  # Alipay has no failed trade: one the customer gives up on closes
            self.core.close(order)
        await self.core.notify(order)

    async def _cancel(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        """``alipay.trade.cancel``: an unpaid trade closes (``action=close``), a paid one is
        refunded in full (``action=refund``); cancelling again answers the same."""
        order = self._lookup(app, biz)
        if not order.extra.get("reversed"):
            order.extra["reversed"] = True
            order.extra["refunded"] = order.status is OrderStatus.succeeded
            if order.status is OrderStatus.pending:
                self.core.close(order)
            order.closed_at = clock.now()
        action = "refund" if order.extra.get("refunded") else "close"
        return {**_OK, "trade_no": order.channel_trade_no, "out_trade_no": order.out_trade_no,
                "retry_flag": "N", "action": action}  # fmt: skip

    def _barcode_router(self) -> APIRouter:
        router = APIRouter(prefix="/_sandbox")

        @router.post("/barcode_scripts")
        async def add_barcode_script(script: BarcodeScript) -> dict[str, Any]:
            """Control API: queue the outcome of the next payment-code charge."""
            self.add_barcode_script(script)
            return {"queued": len(self.barcode_scripts)}

        @router.get("/barcode/{out_trade_no}")
        async def show_code_order(out_trade_no: str) -> dict[str, Any]:
            order = self.core.find(out_trade_no)
            if order is None or order.method != p.BARCODE_METHOD:
                raise HTTPException(404, "no such code order")
            return {"out_trade_no": order.out_trade_no, "trade_status": self.wire_status(order),
                    "reversed": bool(order.extra.get("reversed")),
                    "refunded": bool(order.extra.get("refunded"))}  # fmt: skip

        return router

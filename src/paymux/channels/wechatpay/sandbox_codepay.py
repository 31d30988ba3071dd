"""The WeChat Pay sandbox's payment codes (付款码支付): ``/v3/pay/transactions/codepay``
(USERPAYING while the customer confirms), ``…/out-trade-no/{no}/reverse`` (撤销) and their
scripts (``/_sandbox/barcode_scripts``).
"""

from __future__ import annotations

import asyncio
import string
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from paymux.channels import sandbox_kit
from paymux.channels.sandbox_kit import (
    BarcodeOutcome,
    BarcodeScript,
    OrderStatus,
    SandboxOrder,
)
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.sandbox_base import (
    _ALNUM,
    _WIRE_STATE,
    SandboxBase,
    SandboxMerchant,
    WxError,
    _Amount,
    _random,
    _SettleInfo,
)
from paymux.kit import clock


class _CodepayPayer(BaseModel):
    auth_code: str = Field(min_length=1, max_length=128)


class _StoreInfo(BaseModel):
    id: str | None = Field(default=None, max_length=32)
    out_id: str | None = Field(default=None, max_length=32)


class _CodepayScene(BaseModel):
    device_id: str | None = Field(default=None, max_length=32)
    device_ip: str | None = Field(default=None, max_length=45)
    store_info: _StoreInfo


class _CodepayBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    appid: str = Field(min_length=1, max_length=32)
    mchid: str = Field(min_length=1, max_length=32)
    description: str = Field(min_length=1, max_length=127)
    out_trade_no: str = Field(pattern=r"^[A-Za-z0-9_\-|*]{6,32}$")
    attach: str | None = Field(default=None, max_length=128)
    payer: _CodepayPayer
    amount: _Amount
    scene_info: _CodepayScene
    settle_info: _SettleInfo | None = None


class _ReverseBody(BaseModel):
    appid: str = Field(min_length=1, max_length=32)
    mchid: str = Field(min_length=1, max_length=32)


class CodePayEndpoints(SandboxBase):
    """The payment-code side of :class:`~paymux.channels.wechatpay.sandbox.Sandbox`."""

    barcode_scripts: list[BarcodeScript]

    def add_barcode_script(self, script: BarcodeScript) -> None:
        """Queue the outcome of the next code charge whose description matches."""
        self.barcode_scripts.append(script)

    def _take_barcode_script(self, subject: str) -> BarcodeScript:
        return sandbox_kit.take_matching(self.barcode_scripts, subject, BarcodeScript)

    def codepay_transaction(self, order: SandboxOrder) -> dict[str, Any]:
        """A code order as the codepay answer and queries show it: USERPAYING while the
        customer has not confirmed, REVOKED once reversed (whether or not it had been paid)."""
        if order.extra.get("reversed"):
            trade_state = "REVOKED"
        elif order.status is OrderStatus.pending:
            trade_state = "USERPAYING"
        else:
            trade_state = _WIRE_STATE[order.status]
        data: dict[str, Any] = {
            "appid": order.extra["appid"],
            "mchid": order.merchant_id,
            "out_trade_no": order.out_trade_no,
            "trade_state": trade_state,
            "trade_state_desc": protocol.TRADE_STATE_DESC[trade_state],
            "amount": {"total": order.amount, "currency": order.currency,
                       "payer_currency": order.currency},
        }  # fmt: skip
        if trade_state != "USERPAYING":
            data["transaction_id"] = order.channel_trade_no
            data["trade_type"] = protocol.CODEPAY_TRADE_TYPE
            data["bank_type"] = "OTHERS"
            data["payer"] = {"openid": order.extra["openid"]}
        if order.paid_at is not None and order.status is OrderStatus.succeeded:
            data["success_time"] = protocol.rfc3339(order.paid_at)
            data["amount"]["payer_total"] = order.amount
        return data

    async def _codepay(self, request: Request) -> Response:
        raw = await request.body()
        merchant = self._authenticate(request, raw)
        body = self._parse(_CodepayBody, raw)
        if body.mchid != merchant.mchid:
            raise WxError(400, "PARAM_ERROR", "mchid与请求的商户号不一致")
        if body.appid != merchant.appid:
            raise WxError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        if body.amount.currency != "CNY":
            raise WxError(400, "PARAM_ERROR", "不支持的货币类型")
        existing = self.core.get_order(merchant.mchid, body.out_trade_no)
        if existing is not None:
            return self._codepay_replay(existing, body)
        script = self._take_barcode_script(body.description)
        if not protocol.is_payment_code(body.payer.auth_code) or (
            script.outcome is BarcodeOutcome.invalid_code
        ):
            raise WxError(400, "PARAM_ERROR", "付款码无效或已过期，请刷新付款码后重新扫码")
        if script.outcome is BarcodeOutcome.insufficient_balance:
            raise WxError(403, "NOT_ENOUGH", "用户账户余额不足")
        if script.outcome is BarcodeOutcome.create_error:
            raise WxError(500, "SYSTEM_ERROR", "系统错误")
        order = self._code_order(merchant, body)
        outcome = script.outcome
        if outcome in (BarcodeOutcome.paid, BarcodeOutcome.create_timeout):
            self.core.settle(order, paid=True)
        elif outcome in (BarcodeOutcome.password_paid, BarcodeOutcome.password_declined):
            paid = outcome is BarcodeOutcome.password_paid
            self.core.spawn(self._confirm_later(order, script.delay, paid=paid))
        if outcome is BarcodeOutcome.create_timeout:
            await asyncio.sleep(self.core.hold_timeout_seconds)
        return self._codepay_respond(order)

    def _code_order(self, merchant: SandboxMerchant, body: _CodepayBody) -> SandboxOrder:
        now = clock.now()
        order = SandboxOrder(
            out_trade_no=body.out_trade_no,
            channel_trade_no="4200" + _random(string.digits, 24),
            merchant_id=merchant.mchid, amount=body.amount.total, currency=body.amount.currency,
            subject=body.description, notify_url=None, method=protocol.CODEPAY_KIND,
            script=sandbox_kit.Script(), created_at=now,
            extra={"appid": body.appid, "attach": body.attach,
                   "openid": "o" + _random(_ALNUM, 27),
                   "auth_code_tail": body.payer.auth_code[-4:],
                   "profit_sharing": bool(body.settle_info and body.settle_info.profit_sharing)},
        )  # fmt: skip
        return self.core.add_order(order)

    def _codepay_respond(self, order: SandboxOrder) -> Response:
        """SUCCESS → 200 with the transaction; still waiting for the customer → 202 with only
        ``trade_state`` (what WeChat answers while the password prompt is open)."""
        if order.status is OrderStatus.pending and not order.extra.get("reversed"):
            return self._respond(202, {"trade_state": "USERPAYING"})
        if order.status is OrderStatus.failed:
            raise WxError(403, "TRADE_ERROR", "支付失败，请撤销订单")
        return self._respond(200, self.codepay_transaction(order))

    def _codepay_replay(self, order: SandboxOrder, body: _CodepayBody) -> Response:
        """The same out_trade_no again: the same charge, never a second one."""
        if order.amount != body.amount.total:
            raise WxError(400, "INVALID_REQUEST", "商户订单号重复，与原订单参数不一致")
        if order.extra.get("reversed") or order.status is OrderStatus.closed:
            raise WxError(400, "ORDER_CLOSED", "订单已撤销")
        if order.status is OrderStatus.succeeded:
            raise WxError(400, "ORDER_PAID", "订单已支付")
        return self._codepay_respond(order)

    async def _confirm_later(self, order: SandboxOrder, delay: float, *, paid: bool) -> None:
        await asyncio.sleep(delay * self.core.time_scale)
        if not order.extra.get("reversed"):
            self.core.settle(order, paid=paid)

    async def _reverse(self, request: Request, out_trade_no: str) -> Response:
        """撤销: close an unpaid code order, refund a paid one; the order ends REVOKED."""
        raw = await request.body()
        merchant = self._authenticate(request, raw)
        body = self._parse(_ReverseBody, raw)
        if body.mchid != merchant.mchid or body.appid != merchant.appid:
            raise WxError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        order = self.core.get_order(merchant.mchid, out_trade_no)
        if order is None:
            raise WxError(404, "ORDER_NOT_EXIST", "订单不存在")
        if order.method != protocol.CODEPAY_KIND:
            raise WxError(400, "INVALID_REQUEST", "该订单不是付款码支付订单，不支持撤销")
        if not order.extra.get("reversed"):
            order.extra["reversed"] = True
            order.extra["refunded"] = order.status is OrderStatus.succeeded
            if order.status is OrderStatus.pending:
                self.core.close(order)
            order.closed_at = clock.now()
        answer = {"appid": merchant.appid, "mchid": merchant.mchid, "out_trade_no": out_trade_no}
        return self._respond(200, answer)

    def _barcode_router(self) -> APIRouter:
        router = APIRouter()

        @router.post(protocol.CODEPAY_PATH)
        async def codepay(request: Request) -> Response:
            return await self._codepay(request)

        @router.post("/v3/pay/transactions/out-trade-no/{out_trade_no}/reverse")
        async def reverse(request: Request, out_trade_no: str) -> Response:
            return await self._reverse(request, out_trade_no)

        @router.post("/_sandbox/barcode_scripts")
        async def add_barcode_script(script: BarcodeScript) -> dict[str, Any]:
            """Control API: queue the outcome of the next payment-code charge."""
            self.add_barcode_script(script)
            return {"queued": len(self.barcode_scripts)}

        @router.get("/_sandbox/barcode/{out_trade_no}")
        async def show_code_order(out_trade_no: str) -> dict[str, Any]:
            order = self.core.find(out_trade_no)
            if order is None or order.method != protocol.CODEPAY_KIND:
                raise HTTPException(404, "no such code order")
            return {**self.codepay_transaction(order),
                    "reversed": bool(order.extra.get("reversed")),
                    "refunded": bool(order.extra.get("refunded"))}  # fmt: skip

        return router

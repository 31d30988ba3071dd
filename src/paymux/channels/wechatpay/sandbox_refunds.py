"""The WeChat Pay sandbox's refunds: ``/v3/refund/domestic/refunds`` (create, query by
``out_refund_no``), the refund object and the signed, encrypted ``REFUND.*`` notifications.
"""

from __future__ import annotations

import string
import uuid
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from paymux.channels.sandbox_kit import (
    OrderStatus,
    RefundOutcome,
    RefundStatus,
    SandboxOrder,
    SandboxRefund,
)
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.sandbox_base import (
    SandboxBase,
    SandboxMerchant,
    WxError,
    _random,
)
from paymux.kit import clock


class _RefundAmount(BaseModel):
    refund: StrictInt = Field(ge=1)
    total: StrictInt = Field(ge=1)
    currency: str = Field(min_length=1, max_length=16)


class _RefundBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    transaction_id: str | None = Field(default=None, min_length=1, max_length=32)
    out_trade_no: str | None = Field(default=None, min_length=1, max_length=32)
    out_refund_no: str = Field(pattern=r"^[0-9A-Za-z_\-|*@]{1,64}$")
    reason: str | None = Field(default=None, max_length=80)
    notify_url: str | None = Field(default=None, min_length=1, max_length=256)
    funds_account: str | None = None
    amount: _RefundAmount


class RefundEndpoints(SandboxBase):
    """The refund side of :class:`~paymux.channels.wechatpay.sandbox.Sandbox`."""

    @staticmethod
    def _refund_status(refund: SandboxRefund) -> str:
        if refund.status is RefundStatus.pending:
            return "PROCESSING"
        if refund.status is RefundStatus.succeeded:
            return "SUCCESS"
        return str(refund.extra.get("wire_status", "ABNORMAL"))

    def refund_object(self, refund: SandboxRefund) -> dict[str, Any]:
        """The refund as WeChat's refund object (create and query answers)."""
        order, status = refund.order, self._refund_status(refund)
        data: dict[str, Any] = {
            "refund_id": refund.refund_no,
            "out_refund_no": refund.out_refund_no,
            "transaction_id": order.channel_trade_no,
            "out_trade_no": order.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": protocol.rfc3339(refund.created_at),
            "status": status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": order.amount,
                "refund": refund.amount,
                "from": [],
                "payer_total": order.amount,
                "payer_refund": refund.amount,
                "settlement_refund": refund.amount,
                "settlement_total": order.amount,
                "discount_refund": 0,
                "currency": order.currency,
            },
            "promotion_detail": [],
        }
        if status == "SUCCESS" and refund.finished_at is not None:
            data["success_time"] = protocol.rfc3339(refund.finished_at)
        return data

    def refund_resource(self, refund: SandboxRefund) -> dict[str, Any]:
        """The decrypted resource of a ``REFUND.*`` notification."""
        order, status = refund.order, self._refund_status(refund)
        data: dict[str, Any] = {
            "mchid": order.merchant_id,
            "out_trade_no": order.out_trade_no,
            "transaction_id": order.channel_trade_no,
            "out_refund_no": refund.out_refund_no,
            "refund_id": refund.refund_no,
            "refund_status": status,
            "user_received_account": "支付用户零钱",
            "amount": {
                "total": order.amount,
                "refund": refund.amount,
                "payer_total": order.amount,
                "payer_refund": refund.amount,
            },
        }
        if status == "SUCCESS" and refund.finished_at is not None:
            data["success_time"] = protocol.rfc3339(refund.finished_at)
        return data

    def build_refund_notification(self, refund: SandboxRefund) -> tuple[dict[str, str], bytes]:
        """The signed, encrypted ``REFUND.{SUCCESS,CLOSED,ABNORMAL}`` notification."""
        status = self._refund_status(refund)
        event_type = f"REFUND.{status}"
        assert event_type in protocol.REFUND_EVENTS, "only final refunds are notified"
        if refund.order.extra.get("sp_mchid"):  # a sub-merchant's order: partner mode
            return self.partners.build_refund_notification(refund)
        merchant = self.merchants[refund.order.merchant_id]
        resource = protocol.encrypt_resource(
            merchant.apiv3_key,
            protocol.encode_json(self.refund_resource(refund)),
            original_type=protocol.REFUND_RESOURCE_TYPE,
            associated_data=protocol.REFUND_RESOURCE_TYPE,
        )
        event_id = uuid.uuid5(
            uuid.NAMESPACE_URL, f"wechatpay:{merchant.mchid}:{refund.refund_no}:{event_type}"
        )
        return self._signed_event(str(event_id), event_type, protocol.REFUND_STATE_DESC[status],
                                  resource)  # fmt: skip

    # ------------------------------------------------------------ refund endpoints
    def _paid_order(self, merchant: SandboxMerchant, body: _RefundBody) -> SandboxOrder:
        """The order a refund names by ``out_trade_no`` or ``transaction_id``."""
        order: SandboxOrder | None = None
        if body.transaction_id is not None:
            order = next(
                (o for o in self.core.orders.values()
                 if o.merchant_id == merchant.mchid and o.channel_trade_no == body.transaction_id
                 and o.status in (OrderStatus.succeeded, OrderStatus.failed)),
                None,
            )  # fmt: skip
        elif body.out_trade_no is not None:
            order = self.core.get_order(merchant.mchid, body.out_trade_no)
        else:
            raise WxError(400, "PARAM_ERROR", "transaction_id和out_trade_no必须填写一个")
        if order is None:
            raise WxError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        return order

    async def _refund(self, request: Request) -> Response:
        raw = await request.body()
        merchant = self._authenticate(request, raw)
        body = self._parse(_RefundBody, raw)
        sub_mchid = (body.model_extra or {}).get("sub_mchid")  # partner mode: a sub-merchant's
        merchant = self.partners.refund_merchant(merchant, sub_mchid)
        if body.amount.currency != "CNY":
            raise WxError(400, "PARAM_ERROR", "不支持的货币类型")
        if body.notify_url is not None:
            notify = urlsplit(body.notify_url)
            if notify.scheme not in ("http", "https") or not notify.netloc or notify.query:
                raise WxError(400, "PARAM_ERROR", "notify_url格式错误")
        order = self._paid_order(merchant, body)
        existing = self.core.get_refund(merchant.mchid, body.out_refund_no)
        if existing is not None:
            # Same number, same request: the same refund; WeChat refunds once per number.
            if existing.order is not order or (existing.amount, order.amount) != (
                body.amount.refund, body.amount.total,
            ):  # fmt: skip
                raise WxError(400, "INVALID_REQUEST", "商户退款单号对应的退款参数与原请求不一致")
            return self._respond(200, self.refund_object(existing))
        if order.status is not OrderStatus.succeeded:
            raise WxError(400, "INVALID_REQUEST", "订单未支付，不能发起退款")
        if body.amount.total != order.amount:
            raise WxError(400, "PARAM_ERROR", "订单金额total与原订单实际支付金额不符")
        if body.amount.refund > self.refundable(order):
            raise WxError(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        script = self.core.take_refund_script(order.subject)
        if script.outcome is RefundOutcome.refuse:
            raise WxError(403, "NOT_ENOUGH", "基本账户余额不足，请充值后重新发起")
        if script.outcome is RefundOutcome.create_error:
            raise WxError(500, "SYSTEM_ERROR", "系统超时，请使用相同参数稍后重新调用")
        refund = SandboxRefund(
            out_refund_no=body.out_refund_no,
            refund_no="50" + _random(string.digits, 27),
            order=order,
            amount=body.amount.refund,
            reason=body.reason,
            notify_url=body.notify_url,
            script=script,
            created_at=clock.now(),
        )
        self.core.add_refund(refund)
        await self.core.after_refund(refund)
        return self._respond(200, self.refund_object(refund))

    async def _query_refund(self, request: Request, out_refund_no: str) -> Response:
        merchant = self._authenticate(request, await request.body())
        merchant = self.partners.refund_merchant(merchant, request.query_params.get("sub_mchid"))
        refund = self.core.get_refund(merchant.mchid, out_refund_no)
        if refund is None:
            raise WxError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return self._respond(200, self.refund_object(refund))

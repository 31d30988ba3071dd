"""The WeChat Pay sandbox's profit sharing (分账): ``/v3/profitsharing/receivers/add`` and
``/v3/profitsharing/orders`` (create, query), enforcing what WeChat does (only orders created
with ``settle_info.profit_sharing``, receivers added first, at most
:attr:`~paymux.channels.wechatpay.sandbox.Sandbox.max_split_ratio` split away, nothing once
``unfreeze_unsplit`` released the rest), and its scripts (``/_sandbox/split_scripts``).
"""

from __future__ import annotations

import datetime as dt
import string
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from paymux.channels import sandbox_kit
from paymux.channels.sandbox_kit import (
    OrderStatus,
    RefundOutcome,
    RefundScript,
    SandboxOrder,
)
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.sandbox_base import (
    SandboxBase,
    SandboxMerchant,
    WxError,
    _random,
    script_routes,
)
from paymux.kit import clock

_RelationType = Literal[
    "SERVICE_PROVIDER", "STORE", "STAFF", "STORE_OWNER", "PARTNER", "HEADQUARTER", "BRAND",
    "DISTRIBUTOR", "USER", "SUPPLIER", "CUSTOM",
]  # fmt: skip
_ReceiverType = Literal["MERCHANT_ID", "PERSONAL_OPENID"]


class _AddReceiverBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    appid: str = Field(min_length=1, max_length=32)
    type: _ReceiverType
    account: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, min_length=1, max_length=1024)
    relation_type: _RelationType
    custom_relation: str | None = Field(default=None, min_length=1, max_length=10)


class _SplitReceiverBody(BaseModel):
    type: _ReceiverType
    account: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, min_length=1, max_length=1024)
    amount: StrictInt = Field(ge=1)
    description: str = Field(min_length=1, max_length=80)


class _SplitBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    appid: str | None = Field(default=None, min_length=1, max_length=32)
    transaction_id: str = Field(min_length=1, max_length=32)
    out_order_no: str = Field(pattern=r"^[0-9A-Za-z_\-|*@]{1,64}$")
    receivers: list[_SplitReceiverBody] = Field(min_length=1, max_length=50)
    unfreeze_unsplit: StrictBool


@dataclass
class SandboxSplit:
    """One 分账 order: a split of a paid order to registered receivers."""

    out_order_no: str
    order_id: str
    order: SandboxOrder
    receivers: list[dict[str, Any]]
    """Wire receiver details (``type account amount description result detail_id …``)."""
    unfreeze_unsplit: bool
    unfrozen_amount: int
    """What ``unfreeze_unsplit`` releases to the merchant itself."""
    script: RefundScript
    created_at: dt.datetime
    state: str = "PROCESSING"
    request: tuple[Any, ...] = ()


class ProfitSharingEndpoints(SandboxBase):
    """The profit-sharing side of :class:`~paymux.channels.wechatpay.sandbox.Sandbox`."""

    split_receivers: dict[tuple[str, str, str], dict[str, Any]]
    splits: dict[tuple[str, str], SandboxSplit]
    split_scripts: list[RefundScript]
    max_split_ratio: float

    def add_split_script(self, script: RefundScript) -> None:
        """Queue an outcome for the next split of an order whose subject matches:
        ``succeed`` (FINISHED, every receiver SUCCESS), ``delayed`` (PROCESSING, then SUCCESS
        after ``delay``), ``fail`` (PROCESSING, then every receiver CLOSED), ``refuse`` (403
        NOT_ENOUGH), ``create_timeout`` (made, answer held), ``create_error`` (500)."""
        self.split_scripts.append(script)

    def _take_split_script(self, subject: str) -> RefundScript:
        return sandbox_kit.take_matching(self.split_scripts, subject, RefundScript)

    def _split_away(self, order: SandboxOrder) -> int:
        """What splits of an order took or will take (every receiver not CLOSED)."""
        return sum(
            r["amount"] for split in self.splits.values() if split.order is order
            for r in split.receivers if r["result"] != "CLOSED"
        )  # fmt: skip

    def split_answer(self, split: SandboxSplit) -> dict[str, Any]:
        """The split order as the create and query answers show it."""
        receivers = list(split.receivers)
        if split.state == "FINISHED" and split.unfreeze_unsplit and split.unfrozen_amount > 0:
            # What unfreeze_unsplit released shows as a detail paid to the merchant itself.
            receivers.append({
                "amount": split.unfrozen_amount, "description": "解冻给分账方",
                "type": "MERCHANT_ID", "account": split.order.merchant_id, "result": "SUCCESS",
                "detail_id": split.order_id + "U",
                "create_time": protocol.rfc3339(split.created_at),
                "finish_time": protocol.rfc3339(split.created_at),
            })  # fmt: skip
        return {
            "transaction_id": split.order.channel_trade_no,
            "out_order_no": split.out_order_no,
            "order_id": split.order_id,
            "state": split.state,
            "receivers": receivers,
        }

    def finish_split(self, split: SandboxSplit, *, succeeded: bool) -> bool:
        """Settle every PENDING receiver (SUCCESS, or CLOSED with ACCOUNT_ABNORMAL)."""
        if split.state == "FINISHED":
            return False
        finished = protocol.rfc3339(clock.now())
        for receiver in split.receivers:
            if receiver["result"] == "PENDING":
                receiver["result"] = "SUCCESS" if succeeded else "CLOSED"
                receiver["finish_time"] = finished
                if not succeeded:
                    receiver["fail_reason"] = "ACCOUNT_ABNORMAL"
        split.state = "FINISHED"
        return True

    async def _add_receiver(self, request: Request) -> Response:
        raw = await request.body()
        merchant = self._authenticate(request, raw)
        body = self._parse(_AddReceiverBody, raw)
        if body.appid != merchant.appid:
            raise WxError(400, "INVALID_REQUEST", "appid与商户号不匹配")
        if body.type == "MERCHANT_ID" and body.name is None:
            raise WxError(400, "PARAM_ERROR", "分账接收方类型为MERCHANT_ID时，name必填")
        if body.relation_type == "CUSTOM" and body.custom_relation is None:
            raise WxError(400, "PARAM_ERROR", "relation_type为CUSTOM时，custom_relation必填")
        name = self._sensitive(request, body.name)
        # Adding a receiver again updates it: the call is idempotent.
        self.split_receivers[(merchant.mchid, body.type, body.account)] = {
            "name": name, "relation_type": body.relation_type,
            "custom_relation": body.custom_relation,
        }  # fmt: skip
        answer: dict[str, Any] = {
            "type": body.type,
            "account": body.account,
            "relation_type": body.relation_type,
        }
        if name is not None:
            # Sensitive answer fields come back encrypted for the merchant's own key.
            answer["name"] = protocol.encrypt_sensitive(merchant.public_key, name)
        if body.custom_relation is not None:
            answer["custom_relation"] = body.custom_relation
        return self._respond(200, answer)

    def _split_order(self, merchant: SandboxMerchant, transaction_id: str) -> SandboxOrder:
        order = next(
            (o for o in self.core.orders.values()
             if o.merchant_id == merchant.mchid and o.channel_trade_no == transaction_id
             and o.status in (OrderStatus.succeeded, OrderStatus.failed)),
            None,
        )  # fmt: skip
        if order is None:
            raise WxError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        return order

    async def _split(self, request: Request) -> Response:
        raw = await request.body()
        merchant = self._authenticate(request, raw)
        body = self._parse(_SplitBody, raw)
        personal = any(r.type == "PERSONAL_OPENID" for r in body.receivers)
        if (personal and body.appid is None) or body.appid not in (None, merchant.appid):
            raise WxError(400, "PARAM_ERROR", "appid有误：含个人接收方时须传入与商户号绑定的appid")
        order = self._split_order(merchant, body.transaction_id)
        wanted = (
            body.transaction_id,
            tuple((r.type, r.account, r.amount) for r in body.receivers),
            body.unfreeze_unsplit,
        )
        existing = self.splits.get((merchant.mchid, body.out_order_no))
        if existing is not None:
            # The same out_order_no is the same split.
            if existing.request != wanted:
                raise WxError(400, "INVALID_REQUEST", "商户分账单号重复，与原分账请求参数不一致")
            return self._respond(200, self.split_answer(existing))
        if not order.extra.get("profit_sharing"):
            raise WxError(400, "INVALID_REQUEST", "非分账订单不支持分账")
        if order.status is not OrderStatus.succeeded:
            raise WxError(400, "INVALID_REQUEST", "订单未支付成功，不能分账")
        for receiver in body.receivers:
            known = self.split_receivers.get((merchant.mchid, receiver.type, receiver.account))
            if known is None:
                raise WxError(400, "PARAM_ERROR",
                              "分账接收方关系不存在，请检查参数中每个接收方的关系")  # fmt: skip
            if receiver.name is not None:
                if receiver.type != "PERSONAL_OPENID":
                    raise WxError(400, "PARAM_ERROR", "仅个人接收方可传入name")
                name = self._sensitive(request, receiver.name)
                if known["name"] is not None and name != known["name"]:
                    raise WxError(400, "PARAM_ERROR", "分账接收方姓名校验失败")
        total = sum(r.amount for r in body.receivers)
        taken = self._split_away(order)
        if order.extra.get("unfrozen") or total > self.refundable(order):
            raise WxError(403, "NOT_ENOUGH", "分账金额不足")
        if taken + total > int(order.amount * self.max_split_ratio):
            raise WxError(403, "RULE_LIMIT", "分账金额超出最大分账比例")
        script = self._take_split_script(order.subject)
        if script.outcome is RefundOutcome.refuse:
            raise WxError(403, "NOT_ENOUGH", "分账金额不足")
        if script.outcome is RefundOutcome.create_error:
            raise WxError(500, "SYSTEM_ERROR", "系统错误，请使用相同参数稍后重新调用")
        now = clock.now()
        order_id = "3008" + _random(string.digits, 24)
        split = SandboxSplit(
            out_order_no=body.out_order_no,
            order_id=order_id,
            order=order,
            receivers=[
                {"amount": r.amount, "description": r.description, "type": r.type,
                 "account": r.account, "result": "PENDING",
                 "detail_id": f"{order_id}{i:02d}", "create_time": protocol.rfc3339(now)}
                for i, r in enumerate(body.receivers)
            ],
            unfreeze_unsplit=body.unfreeze_unsplit,
            unfrozen_amount=self.refundable(order) - total if body.unfreeze_unsplit else 0,
            script=script,
            created_at=now,
            request=wanted,
        )  # fmt: skip
        self.splits[(merchant.mchid, body.out_order_no)] = split
        if body.unfreeze_unsplit:
            order.extra["unfrozen"] = True
        await self.core.play(script, lambda ok: self.finish_split(split, succeeded=ok))
        return self._respond(200, self.split_answer(split))

    async def _query_split(self, request: Request, out_order_no: str) -> Response:
        merchant = self._authenticate(request, await request.body())
        transaction_id = request.query_params.get("transaction_id")
        if not transaction_id:
            raise WxError(400, "PARAM_ERROR", "缺少参数transaction_id")
        split = self.splits.get((merchant.mchid, out_order_no))
        if split is None or split.order.channel_trade_no != transaction_id:
            raise WxError(404, "RESOURCE_NOT_EXISTS", "记录不存在")
        return self._respond(200, self.split_answer(split))

    def _split_control_router(self) -> APIRouter:
        """Control API for splits (next to sandbox_kit's ``/_sandbox`` routes)."""
        router = APIRouter(prefix="/_sandbox")
        script_routes(router, "/split_scripts", self.split_scripts, self.add_split_script, "split")
        return router

"""The Alipay sandbox's refunds.

Methods:

- ``alipay.trade.refund``: refunds a ``TRADE_SUCCESS`` trade, following the kit's refund
  scripts: ``succeed`` → ``fund_change=Y``; ``delayed`` / ``fail`` → ``fund_change=N``, then
  succeeds after the delay or never; ``refuse`` → ``ACQ.SELLER_BALANCE_NOT_ENOUGH``;
  ``create_error`` → ``ACQ.SYSTEM_ERROR`` (nothing made); ``create_timeout`` → made, answer
  held. A repeated ``out_request_no`` with the same amount answers ``fund_change=N`` and moves
  nothing; with another amount ``ACQ.DISCORDANT_REPEAT_REQUEST``. More than is left →
  ``ACQ.REASON_TRADE_REFUND_FEE_ERR``; no ``out_request_no`` means one full refund numbered by
  the ``out_trade_no`` (else ``ACQ.REFUND_AMT_NOT_EQUAL_TOTAL``); an unpaid or fully refunded
  (``TRADE_CLOSED``) trade → ``ACQ.TRADE_STATUS_ERROR``. ``refund_fee`` is the trade's total
  refunded.
- ``alipay.trade.fastpay.refund.query``: ``refund_status=REFUND_SUCCESS`` with
  ``refund_amount`` (and ``gmt_refund_pay`` when ``query_options`` asks) once the refund
  succeeded; before that, or for a refund that failed or never came, only ``code``/``msg``
  [the exact shape of Alipay's empty answer is unverified; the adapter needs only the absent
  ``refund_status``].
"""

from __future__ import annotations

from typing import Any

from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.sandbox_apps import _OK, SandboxApp, _business, _digits, _Fail
from paymux.channels.alipay.sandbox_trades import _BUYER_LOGON_ID, TradesBase
from paymux.channels.sandbox_kit import NotifyMode, RefundOutcome, RefundStatus, SandboxRefund
from paymux.kit import clock


class RefundMethods(TradesBase):
    # ------------------------------------------------------------ refunds
    def _refund_answer(self, refund: SandboxRefund, *, changed: bool) -> dict[str, Any]:
        order = refund.order
        answer: dict[str, Any] = {
            **_OK,
            "trade_no": order.channel_trade_no,
            "out_trade_no": order.out_trade_no,
            "buyer_logon_id": _BUYER_LOGON_ID,
            "buyer_user_id": order.extra["buyer_id"],
            "fund_change": "Y" if changed else "N",
            "refund_fee": p.to_yuan(self.refunded(order)),
        }
        if refund.status is RefundStatus.succeeded and refund.finished_at is not None:
            answer["gmt_refund_pay"] = p.format_time(refund.finished_at)
        return answer

    async def _refund(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        order = self._lookup(app, biz)
        text = str(biz.get("refund_amount") or "")
        if not text:
            raise _Fail("40002", "isv.missing-parameter", "缺少 refund_amount")
        try:
            amount = p.to_fen(text)
        except ValueError:
            raise _business("ACQ.INVALID_PARAMETER", "refund_amount 格式错误") from None
        if amount <= 0:
            raise _business("ACQ.REFUND_FEE_ERROR", "交易退款金额有误")
        given = str(biz.get("out_request_no") or "")
        if len(given) > 64:
            raise _business("ACQ.INVALID_PARAMETER", "out_request_no 过长")
        # Without out_request_no the request number is the out_trade_no: one full refund.
        out_request_no = given or order.out_trade_no
        existing = self.core.get_refund(app.app_id, out_request_no)
        if existing is not None:
            if existing.order is not order or existing.amount != amount:
                raise _business("ACQ.DISCORDANT_REPEAT_REQUEST", "不一致的请求")
            return self._refund_answer(existing, changed=False)
        if self.wire_status(order) != "TRADE_SUCCESS":
            raise _business("ACQ.TRADE_STATUS_ERROR", "交易状态非法")
        if not given and amount != order.amount:
            raise _business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "撤销或退款金额与订单金额不一致")
        if amount > self.core.refundable(order):
            raise _business("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额无效")
        script = self.core.take_refund_script(order.subject)
        if script.outcome is RefundOutcome.refuse:
            raise _business("ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足")
        if script.outcome is RefundOutcome.create_error:
            raise _business("ACQ.SYSTEM_ERROR", "系统错误")
        if script.outcome is RefundOutcome.fail:
            # A refund that never happens changes no trade, so Alipay has nothing to notify.
            script = script.model_copy(update={"notify": NotifyMode.none})
        reason = biz.get("refund_reason")
        refund = self.core.add_refund(
            SandboxRefund(
                out_refund_no=out_request_no,
                refund_no=order.channel_trade_no + "-" + _digits(6),
                order=order,
                amount=amount,
                reason=str(reason) if reason else None,
                notify_url=order.notify_url,
                script=script,
                created_at=clock.now(),
            )
        )
        await self.core.after_refund(refund)
        return self._refund_answer(refund, changed=refund.status is RefundStatus.succeeded)

    async def _refund_query(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        order = self._lookup(app, biz)
        out_request_no = str(biz.get("out_request_no") or "")
        if not out_request_no:
            raise _Fail("40002", "isv.missing-parameter", "缺少 out_request_no")
        refund = self.core.get_refund(app.app_id, out_request_no)
        if (
            refund is None
            or refund.order is not order
            or refund.status is not (RefundStatus.succeeded)
        ):
            # "未返回该字段表示退款请求未收到或者退款失败": nothing but the result code.
            return dict(_OK)
        answer: dict[str, Any] = {
            **_OK,
            "trade_no": order.channel_trade_no,
            "out_trade_no": order.out_trade_no,
            "out_request_no": refund.out_refund_no,
            "total_amount": p.to_yuan(order.amount),
            "refund_amount": p.to_yuan(refund.amount),
            "refund_status": p.REFUND_SUCCESS,
        }
        if refund.reason:
            answer["refund_reason"] = refund.reason
        options = biz.get("query_options")
        if isinstance(options, list) and "gmt_refund_pay" in options and refund.finished_at:
            answer["gmt_refund_pay"] = p.format_time(refund.finished_at)
        return answer

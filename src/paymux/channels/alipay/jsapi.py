"""Alipay JSAPI / mini-program payments (``alipay_jsapi``): ``alipay.trade.create`` for a named
payer, whose ``trade_no`` the mini-program hands to ``my.tradePay``.
"""

from __future__ import annotations

from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.payments import PaymentsMixin
from paymux.channels.base import (
    BusinessError,
    CreatedPayment,
    CreatePayment,
    NextAction,
    NextActionType,
    UnknownOutcome,
)


class JsapiMixin(PaymentsMixin):
    async def _create_jsapi(self, request: CreatePayment) -> CreatedPayment:
        """``alipay.trade.create`` (``product_code=JSAPI_PAY``) for the payer: ``buyer_id``
        (a 2088… user id; any other value is taken as the newer ``buyer_open_id``, which may
        also be given as ``customer.buyer_open_id``). Alipay makes the trade at once and
        answers its ``trade_no``, which the mini-program hands to ``my.tradePay``."""
        creds = self.credentials
        buyer = str(request.customer.get("buyer_id") or "")
        open_id = str(request.customer.get("buyer_open_id") or "")
        if not buyer and not open_id:
            raise BusinessError("customer_required", "alipay_jsapi needs customer.buyer_id")
        biz = self._biz(request, p.PRODUCT_JSAPI)
        biz.pop("buyer_id", None)
        if buyer and p.USER_ID.fullmatch(buyer):
            biz["buyer_id"] = buyer
        else:
            biz["buyer_open_id"] = open_id or buyer
        biz["op_app_id"] = creds.mini_app_id or creds.auth_app_id or creds.app_id
        raw = await self._call(p.METHOD_CREATE, biz, notify_url=request.notify_url)
        data = self._check(raw)
        trade_no = data.get("trade_no")
        if data.get("out_trade_no") != request.out_trade_no or not isinstance(trade_no, str):
            raise UnknownOutcome("inconsistent_response", "create answer does not match")
        return CreatedPayment(
            channel_trade_no=trade_no,
            next_action=NextAction(NextActionType.sdk_params, params={"tradeNO": trade_no}),
            raw=data,
        )

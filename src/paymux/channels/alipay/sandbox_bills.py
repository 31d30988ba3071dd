"""The Alipay sandbox's trade bills (业务账单): ``alipay.data.dataservice.bill.downloadurl.query``
and the download URL it answers, serving the zip :mod:`paymux.channels.alipay.bill` reads.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request, Response

from paymux.channels.alipay import bill
from paymux.channels.alipay.sandbox_apps import _OK, SandboxApp, _business, _invalid
from paymux.channels.alipay.sandbox_trades import _BUYER_LOGON_ID, TradesBase
from paymux.channels.sandbox_kit import OrderStatus, RefundStatus, SandboxOrder
from paymux.kit import clock


class BillMethods(TradesBase):
    # ------------------------------------------------------------ trade bills (业务账单)
    # alipay.data.dataservice.bill.downloadurl.query (bill_type=trade) → bill_download_url,
    # valid :attr:`bill_url_seconds`, serving the day's zip (GBK CSVs) of the trades paid and
    # refunds completed that day (China time) with the service fee at :attr:`bill_fee_bps`.
    # No bill for today or later (isv.invalid_arguments), none for a day without business
    # (isp.bill_not_exist).
    bill_fee_bps: int = 60
    """The apps' service-fee rate in basis points (0.6 %, Alipay's common rate)."""
    bill_url_seconds: float = 30.0
    _bill_files: dict[str, tuple[bytes, dt.datetime]] | None = None

    def bill_rows(self, app: SandboxApp, day: dt.date) -> list[dict[str, str]]:
        """The detail rows of one app's trade bill for ``day`` (China time), in time order."""

        def on_day(moment: dt.datetime | None) -> bool:
            return moment is not None and moment.astimezone(bill.CHINA).date() == day

        rows: list[tuple[dt.datetime, dict[str, str]]] = []
        for order in self.core.orders.values():
            if order.merchant_id != app.app_id or order.status is not OrderStatus.succeeded \
                    or order.paid_at is None or not on_day(order.paid_at):  # fmt: skip
                continue
            fee = bill.fee_of(order.amount, self.bill_fee_bps)
            rows.append((order.paid_at, self._bill_row(
                order, bill.TRADE, order.paid_at, order.amount, -fee, "",
            )))  # fmt: skip
        for refund in self.core.refunds.values():
            done = refund.finished_at
            if refund.order.merchant_id != app.app_id or done is None or not on_day(done) \
                    or refund.status is not RefundStatus.succeeded:  # fmt: skip
                continue
            fee = bill.fee_of(refund.amount, self.bill_fee_bps)
            rows.append((done, self._bill_row(
                refund.order, bill.REFUND, done, -refund.amount, fee, refund.out_refund_no,
            )))  # fmt: skip
        rows.sort(key=lambda row: row[0])
        return [row for _, row in rows]

    @staticmethod
    def _bill_row(order: SandboxOrder, kind: str, when: dt.datetime, amount: int,
                  service_fee: int, request_no: str) -> dict[str, str]:  # fmt: skip
        def stamp(moment: dt.datetime) -> str:
            return moment.astimezone(bill.CHINA).strftime(bill.TIME_FORMAT)

        money = bill.yuan(amount)
        zero = "0.00"
        return {
            "支付宝交易号": order.channel_trade_no, "商户订单号": order.out_trade_no,
            "业务类型": kind, "商品名称": order.subject, "创建时间": stamp(order.created_at),
            "完成时间": stamp(when), "对方账户": _BUYER_LOGON_ID, "订单金额（元）": money,
            "商家实收（元）": money, "支付宝红包（元）": zero, "集分宝（元）": zero,
            "支付宝优惠（元）": zero, "商家优惠（元）": zero, "券核销金额（元）": zero,
            "商家红包消费金额（元）": zero, "卡消费金额（元）": zero,
            "退款批次号/请求号": request_no, "服务费（元）": bill.yuan(service_fee),
            "分润（元）": zero,
        }  # fmt: skip

    def trade_bill(self, app: SandboxApp, day: dt.date) -> bytes:
        """The zip Alipay would serve for the app's ``day``."""
        return bill.render_zip(app.seller_id, day, self.bill_rows(app, day), clock.now())

    async def _bill_url(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        if biz.get("bill_type") != bill.BILL_TYPE:
            raise _invalid("bill_type", "账单类型不支持")
        try:
            day = dt.date.fromisoformat(str(biz.get("bill_date") or ""))
        except ValueError:
            raise _business("isv.invalid_arguments", "bill_date 格式错误") from None
        if day >= clock.now().astimezone(bill.CHINA).date():
            raise _business("isv.invalid_arguments", "不支持下载当日及以后的账单")
        rows = self.bill_rows(app, day)
        if not rows:
            raise _business(bill.NOT_EXIST, "账单不存在")
        if self._bill_files is None:
            self._bill_files = {}
        token = secrets.token_urlsafe(24)
        expires = clock.now() + dt.timedelta(seconds=self.bill_url_seconds)
        self._bill_files[token] = (self.trade_bill(app, day), expires)
        name = bill.file_stem(app.seller_id, day) + ".csv.zip"
        url = (
            f"{base}/downloadBillFile.resource?bizType=trade&userId={app.seller_id}"
            f"&fileType=csv.zip&bizDates={day:%Y%m%d}&downloadFileName={quote(name)}"
            f"&token={token}"
        )
        return {**_OK, "bill_download_url": url}

    async def _bill_download(self, request: Request) -> Response:
        found = (self._bill_files or {}).get(request.query_params.get("token", ""))
        if found is None or clock.now() >= found[1]:
            return Response("链接已失效".encode(), status_code=404, media_type="text/plain")
        name = request.query_params.get("downloadFileName", "bill.csv.zip")
        return Response(found[0], media_type="application/zip", headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        })  # fmt: skip

    def _install_bills(self, app: FastAPI) -> None:
        self._server_methods[bill.METHOD_BILL] = self._bill_url
        app.add_api_route("/downloadBillFile.resource", self._bill_download, methods=["GET"])

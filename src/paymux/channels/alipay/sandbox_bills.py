"""The Alipay sandbox's trade bills (业务账单): ``alipay.data.dataservice.bill.downloadurl.query``
and the download URL it answers, serving the zip :mod:`paymux.channels.alipay.bill` reads.

A day's bill is :func:`paymux.channels.sandbox_bills.day_bill` of the app's orders (China
time), with the bill tweaks of ``POST /_sandbox/bill_tweaks`` rendered in Alipay's format:

- ``amount``: the trade row's 订单金额 and 商家实收 show the tweak's amount;
- ``fee``: the trade row's 服务费 is minus the tweak's amount (a fee charged);
- ``duplicate``: the trade row is written twice (the footer and 汇总 count both);
- ``next_day``: the trade row is in the next day's zip, with its real 完成时间;
- ``drop``: the trade row is not written;
- ``extra_payment``: a 交易 row of the amount (完成时间 noon UTC of the day) with a 商户订单号
  the gateway never made (``portal…``, unless ``out_trade_no`` is given);
- ``extra_refund``: a 退款 row on the order with a 退款批次号/请求号 the gateway never issued;
- ``corrupt_summary``: ``#交易合计`` 商家实收 and the 汇总 合计 row's 订单金额, 商家实收 and
  实收净额 are off by the amount (the counts and 服务费 are right): the reader's
  ``summary_amount`` and ``summary_order_amount`` checks fail;
- ``bad_row``: a one-field line (``账单行无法读取``) after the detail rows: one problem.

A day whose bill would list nothing (no rows, no tweak that writes anything) has no bill
(``isp.bill_not_exist``), as Alipay answers for a day without business.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request, Response

from paymux.channels import sandbox_bills
from paymux.channels.alipay import bill
from paymux.channels.alipay.sandbox_apps import _OK, SandboxApp, _business, _invalid
from paymux.channels.alipay.sandbox_trades import _BUYER_LOGON_ID, TradesBase
from paymux.channels.sandbox_kit import SandboxOrder
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

    def day_bill(self, app: SandboxApp, day: dt.date) -> sandbox_bills.DayBill:
        """One app's bill of ``day`` (China time), tweaks applied."""
        return sandbox_bills.day_bill(
            self.core, day, bill.CHINA, lambda amount: bill.fee_of(amount, self.bill_fee_bps),
            listed=lambda order: order.merchant_id == app.app_id,
        )  # fmt: skip

    def bill_rows(self, day_bill: sandbox_bills.DayBill) -> list[dict[str, str]]:
        """The detail rows of a day's bill, in time order."""
        rows = []
        for entry in day_bill.entries:
            if entry.kind == "payment":
                rows.append(self._bill_row(entry.order, bill.TRADE, entry.at, entry.amount,
                                           -entry.fee, ""))  # fmt: skip
            else:
                assert entry.refund is not None
                rows.append(self._bill_row(entry.order, bill.REFUND, entry.at, -entry.amount,
                                           entry.fee, entry.refund.out_refund_no))  # fmt: skip
        return rows

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

    def trade_bill(self, app: SandboxApp, day: dt.date) -> bytes | None:
        """The zip Alipay would serve for the app's ``day``; None when it has no bill."""
        found = self.day_bill(app, day)
        if not found.entries and not found.bad_rows and not found.summary_offset:
            return None
        # Exported when the day ended, not at each download: a bill fetched twice is the same
        # file (Alipay's 导出时间 is when it made the file).
        made = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=bill.CHINA)
        return bill.render_zip(app.seller_id, day, self.bill_rows(found), made,
                               summary_offset=found.summary_offset,
                               bad_rows=found.bad_rows)  # fmt: skip

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
        data = self.trade_bill(app, day)
        if data is None:
            raise _business(bill.NOT_EXIST, "账单不存在")
        if self._bill_files is None:
            self._bill_files = {}
        token = secrets.token_urlsafe(24)
        expires = clock.now() + dt.timedelta(seconds=self.bill_url_seconds)
        self._bill_files[token] = (data, expires)
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

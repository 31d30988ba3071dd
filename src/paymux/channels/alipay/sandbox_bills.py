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

**Fund-flow bills** (``bill_type=signcustomer``, 账务明细) render
:func:`paymux.channels.sandbox_bills.day_funds` of the app's orders and its transfers that ended
``SUCCESS`` that day (China time) with :mod:`paymux.channels.alipay.funds`: a payment is
an 在线支付 收入 row of what was paid and a 收费 支出 row of its fee, a refund a 交易退款 支出
row and a 收费 收入 row of the fee it returns (both with the order's 商户订单号 and 支付宝交易号),
a payout a 转账 支出 row (商户订单号 the ``out_biz_no``, 业务流水号 the ``order_id``), the
day's settlement a 提现 支出 row at 23:59:59; 账户余额 after each row. Funds tweaks
(``"bill": "funds"``):

- ``drop`` / ``amount`` / ``duplicate``: the payout's 转账 row is missing / shows the amount
  (账户余额 follows it) / is written twice (its own 账务流水号);
- ``extra_payout``: a 转账 row at 15:00 of a transfer the gateway never made;
- ``settlement_amount``: the 提现 row pays the amount; what is left opens the next day;
- ``corrupt_summary``: ``#收入合计``'s amount is off by the amount (``summary_income`` fails);
- ``bad_row``: a one-field line (``账务明细行无法读取``) after the detail rows.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request, Response

from paymux.channels import sandbox_bills
from paymux.channels.alipay import bill, funds
from paymux.channels.alipay.sandbox_apps import _OK, SandboxApp, _business, _invalid
from paymux.channels.alipay.sandbox_trades import _BUYER_LOGON_ID, TradesBase
from paymux.channels.sandbox_bills import FundsEntry
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

    # ------------------------------------------------------------ fund-flow bills (账务明细)
    def day_funds(self, app: SandboxApp, day: dt.date) -> sandbox_bills.DayFunds:
        """One app's fund-flow day (China time), tweaks applied."""

        def payouts(on: dt.date) -> list[FundsEntry]:
            return [
                FundsEntry("payout", -t.amount, 0, t.finished_at, t.out_biz_no, t.order_id)
                for t in getattr(self, "transfers", {}).values()
                if t.app_id == app.app_id and t.status == "SUCCESS" and t.finished_at
                and t.finished_at.astimezone(bill.CHINA).date() == on
            ]  # fmt: skip

        return sandbox_bills.day_funds(
            self.core, day, bill.CHINA, lambda amount: bill.fee_of(amount, self.bill_fee_bps),
            payouts, listed=lambda order: order.merchant_id == app.app_id,
        )  # fmt: skip

    def funds_rows(self, app: SandboxApp, day: dt.date,
                   found: sandbox_bills.DayFunds) -> list[dict[str, str]]:  # fmt: skip
        """The 账务明细 rows of a day's fund-flow entries: a payment's or refund's fee a row of
        its own after it."""
        trades = {}  # refund number → its order (the day's refunds, portal ones too)
        for entry in self.day_bill(app, day).entries:
            if entry.refund is not None:
                trades[entry.refund.refund_no] = entry.order
        payees = {t.out_biz_no: t.identity for t in getattr(self, "transfers", {}).values()
                  if t.app_id == app.app_id}  # fmt: skip
        rows = []
        for e in found.entries:
            order_no = trade_no = subject = ""
            if e.kind == "payment":
                order = self.core.find(e.reference or "")
                order_no, trade_no = e.reference or "", e.channel_ref
                subject = order.subject if order is not None else ""
            elif e.kind == "refund":
                paid = trades.get(e.channel_ref)
                if paid is not None:
                    order_no, trade_no, subject = paid.out_trade_no, paid.channel_trade_no, \
                        paid.subject  # fmt: skip
            elif e.kind == "payout":
                order_no, trade_no = e.reference or "", e.channel_ref
            else:
                trade_no = e.channel_ref
            kind = {"payment": funds.PAYMENT, "refund": funds.REFUND, "payout": funds.PAYOUT,
                    "settlement": funds.SETTLEMENT}[e.kind]  # fmt: skip
            other = {
                "payment": _BUYER_LOGON_ID,
                "refund": _BUYER_LOGON_ID,
                "payout": payees.get(e.reference or "", ""),
                "settlement": "",
            }[e.kind]
            remark = {"payout": "转账", "settlement": "自动提现"}.get(e.kind, "")
            rows.append(self._funds_row(e.flow_no, trade_no, order_no, subject, e.at, other,
                                        e.amount, e.balance + e.fee, kind, remark))  # fmt: skip
            if e.fee:
                rows.append(self._funds_row(e.flow_no + "1", trade_no, order_no, subject, e.at,
                                            "", -e.fee, e.balance, funds.FEE,
                                            f"交易服务费[{trade_no}]"))  # fmt: skip
        return rows

    @staticmethod
    def _funds_row(flow_no: str, trade_no: str, order_no: str, subject: str, when: dt.datetime,
                   other: str, amount: int, balance: int, kind: str,
                   remark: str) -> dict[str, str]:  # fmt: skip
        return {
            "账务流水号": flow_no, "业务流水号": trade_no, "商户订单号": order_no,
            "商品名称": subject, "发生时间": when.astimezone(bill.CHINA).strftime(bill.TIME_FORMAT),
            "对方账号": other, "收入金额（+元）": bill.yuan(max(amount, 0)),
            "支出金额（-元）": bill.yuan(min(amount, 0)), "账户余额（元）": bill.yuan(balance),
            "交易渠道": "支付宝", "业务类型": kind, "备注": remark,
        }  # fmt: skip

    def funds_bill(self, app: SandboxApp, day: dt.date) -> bytes | None:
        """The 账务明细 zip Alipay would serve for the app's ``day``; None when it has none."""
        found = self.day_funds(app, day)
        if not found.entries and not found.bad_rows and not found.summary_offset:
            return None
        made = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=bill.CHINA)
        return funds.render_zip(app.seller_id, day, self.funds_rows(app, day, found), made,
                                summary_offset=found.summary_offset,
                                bad_rows=found.bad_rows)  # fmt: skip

    async def _bill_url(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        kind = biz.get("bill_type")
        if kind not in (bill.BILL_TYPE, funds.BILL_TYPE):
            raise _invalid("bill_type", "账单类型不支持")
        try:
            day = dt.date.fromisoformat(str(biz.get("bill_date") or ""))
        except ValueError:
            raise _business("isv.invalid_arguments", "bill_date 格式错误") from None
        if day >= clock.now().astimezone(bill.CHINA).date():
            raise _business("isv.invalid_arguments", "不支持下载当日及以后的账单")
        data = self.trade_bill(app, day) if kind == bill.BILL_TYPE else self.funds_bill(app, day)
        if data is None:
            raise _business(bill.NOT_EXIST, "账单不存在")
        if self._bill_files is None:
            self._bill_files = {}
        token = secrets.token_urlsafe(24)
        expires = clock.now() + dt.timedelta(seconds=self.bill_url_seconds)
        self._bill_files[token] = (data, expires)
        name = bill.file_stem(app.seller_id, day) + ".csv.zip"
        url = (
            f"{base}/downloadBillFile.resource?bizType={kind}&userId={app.seller_id}"
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

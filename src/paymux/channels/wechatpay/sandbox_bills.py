"""The WeChat Pay sandbox's trade bills (交易账单): ``/v3/bill/tradebill`` and the signed
download of the bill file it points to.

A merchant's bill of a day is :func:`paymux.channels.sandbox_bills.day_bill` (the payments paid
and refunds finished that day, China time, of the orders whose bill it is: the merchant's own,
or for a service provider its sub-merchants', all of them or the one ``sub_mchid`` names) with
the fee at :attr:`BillEndpoints.bill_fee_bps`, written by :func:`paymux.channels.wechatpay.bill.
write_bill`. The scripted discrepancies (``POST /_sandbox/bill_tweaks``; tweaks are for a bill
day, and apply to every merchant's bill of that day) render as:

- ``amount``: the order's SUCCESS row shows the amount in 应结订单金额 and 订单金额 (its fee is
  still that of what was paid); the summary sums what the rows show;
- ``fee``: the order's SUCCESS row shows the fee in 手续费;
- ``duplicate``: the order's SUCCESS row is written twice (总交易单数 counts both);
- ``next_day``: the order's SUCCESS row (交易时间 still the payment's) is in the next day's bill;
- ``drop``: the order has no row;
- ``extra_payment``: a SUCCESS row of an order the gateway never made (交易时间 12:00 UTC of the
  day, the requesting merchant's 商户号 / 特约商户号);
- ``extra_refund``: a REFUND row on the order with a 商户退款单号 (``portal…``) and 微信退款单号 the
  gateway never issued, 交易时间 a minute after the payment;
- ``corrupt_summary``: 应结订单总金额 is off by the amount (the rows are right); the
  ``hash_value`` is of that file, as WeChat's would be;
- ``bad_row``: one unreadable row after the detail (a SUCCESS row cut short after 交易状态, 10
  fields), not counted in the summary.

A day without any row (and no ``bad_row``) has no bill: 400 ``NO_STATEMENT_EXIST``.

**Fund-flow bills** (``GET /v3/bill/fundflowbill?bill_date=…&account_type=BASIC``, the same
download and SHA1) render :func:`paymux.channels.sandbox_bills.day_funds` of a direct merchant's
own orders and its 商家转账 bills that ended ``SUCCESS`` that day (China time, by their
``update_time``), with :mod:`paymux.channels.wechatpay.fundflow`: a payment is a 交易 收入 line of
what the balance got (its fee in 备注), a refund a 退款 支出 line (the fee it gives back in 备注),
a payout a 商家转账 支出 line (业务凭证号 the ``out_bill_no``, 微信支付业务单号 the
``transfer_bill_no``; a tweak names the payout by our payout id, ``po_…``), and the day's
settlement a 提现 支出 line at 23:59:59. Funds tweaks (``"bill": "funds"``):

- ``drop`` / ``amount`` / ``duplicate``: the payout's 商家转账 line is missing / shows the amount
  (账户结余 follows it) / is written twice (its own 资金流水单号);
- ``extra_payout``: a 商家转账 line at 15:00 of a transfer the gateway never made;
- ``settlement_amount``: the 提现 line pays the amount; what is left opens the next day;
- ``corrupt_summary``: 收入金额 is off by the amount (``summary_income`` fails);
- ``bad_row``: a 交易 line cut short (5 fields) after the detail, outside the summary.

``OPERATION`` and ``FEES`` accounts hold nothing in the sandbox (NO_STATEMENT_EXIST); a service
provider's sub-merchants are not in its BASIC bill (their money is theirs).
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import secrets
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response

from paymux.channels import sandbox_bills
from paymux.channels.sandbox_bills import BillEntry, FundsEntry
from paymux.channels.sandbox_kit import SandboxOrder
from paymux.channels.wechatpay import bill, fundflow, protocol
from paymux.channels.wechatpay.sandbox_base import (
    _TRADE_TYPES,
    SandboxBase,
    WxError,
)
from paymux.kit import clock


def _bill_owner(order: SandboxOrder) -> str:
    """Whose bill lists the order: its merchant's, or for a sub-merchant's order (partner
    mode) its service provider's, with the sub-merchant as 特约商户号."""
    return str(order.extra.get("sp_mchid") or order.merchant_id)


def _sub_merchant(order: SandboxOrder) -> str | None:
    return order.merchant_id if order.extra.get("sp_mchid") else None


def _voucher(entry: FundsEntry) -> str:
    """业务凭证号 of a fund-flow line: our number, a payout's as the ``out_bill_no`` we sent."""
    if entry.kind == "payout" and entry.reference:
        try:
            return protocol.transfer_bill_no(entry.reference)
        except ValueError:
            return entry.reference
    return entry.reference or ""


class BillEndpoints(SandboxBase):
    """The trade-bill side of :class:`~paymux.channels.wechatpay.sandbox.Sandbox`."""

    # ``GET /v3/bill/tradebill`` → a download URL valid 30 s and the SHA1 of the uncompressed
    # file; ``GET /v3/billdownload/file?token=…`` (signed by the same merchant) → the file,
    # unsigned, gzipped when ``tar_type=GZIP``. Today's bill is STATEMENT_CREATING, a day
    # without any row NO_STATEMENT_EXIST (both 400).
    bill_fee_bps: int = 60
    """The merchants' fee rate in basis points (0.60 %, WeChat's common rate)."""
    bill_url_seconds: float = 30.0
    _bill_downloads: dict[str, tuple[str, bytes, dt.datetime]] | None = None

    def day_bill(
        self, mchid: str, day: dt.date, sub_mchid: str | None = None
    ) -> sandbox_bills.DayBill:
        """The shared day bill of ``mchid`` (a service provider's: of ``sub_mchid`` alone when
        given), tweaks applied."""

        def listed(order: SandboxOrder) -> bool:
            return _bill_owner(order) == mchid and (
                sub_mchid is None or _sub_merchant(order) == sub_mchid
            )

        return sandbox_bills.day_bill(
            self.core, day, bill.CHINA, lambda amount: bill.fee_of(amount, self.bill_fee_bps),
            listed=listed,
        )  # fmt: skip

    def bill_rows(
        self, mchid: str, entries: list[BillEntry], sub_mchid: str | None = None,
        bill_type: str = "ALL",
    ) -> Iterator[dict[str, str]]:  # fmt: skip
        """The rows of a bill's entries, in order (``bill_type`` SUCCESS / REFUND: of that
        state only)."""
        rate = bill.rate_text(self.bill_fee_bps)
        for entry in entries:
            if entry.kind == "payment" and bill_type != "REFUND":
                amount = bill.yuan(entry.amount)
                yield {
                    **self._bill_order_fields(entry.order, entry.at, mchid, sub_mchid),
                    "交易状态": bill.STATE_PAID, "应结订单金额": amount, "微信退款单号": "0",
                    "商户退款单号": "0", "退款金额": "0.00", "手续费": bill.fee_text(entry.fee),
                    "费率": rate, "订单金额": amount, "申请退款金额": "0.00",
                }  # fmt: skip
            elif entry.kind == "refund" and entry.refund is not None and bill_type != "SUCCESS":
                refund = entry.refund
                yield {
                    **self._bill_order_fields(entry.order, entry.at, mchid, sub_mchid),
                    "交易状态": bill.STATE_REFUND, "应结订单金额": "0.00",
                    "微信退款单号": refund.refund_no, "商户退款单号": refund.out_refund_no,
                    "退款金额": bill.yuan(entry.amount), "退款类型": "ORIGINAL",
                    "退款状态": "SUCCESS", "手续费": bill.fee_text(-entry.fee), "费率": rate,
                    "订单金额": "0.00", "申请退款金额": bill.yuan(entry.amount),
                }  # fmt: skip

    @staticmethod
    def _bill_order_fields(
        order: SandboxOrder, when: dt.datetime, mchid: str, sub_mchid: str | None
    ) -> dict[str, str]:
        trade_type = (
            protocol.CODEPAY_TRADE_TYPE if order.method == protocol.CODEPAY_KIND
            else _TRADE_TYPES.get(order.method, "NATIVE")
        )  # fmt: skip
        return {
            "交易时间": when.astimezone(bill.CHINA).strftime(bill.TIME_FORMAT),
            "公众账号ID": str(order.extra.get("appid", "")), "商户号": mchid,
            "特约商户号": _sub_merchant(order) or sub_mchid or "0", "设备号": "",
            "微信订单号": order.channel_trade_no, "商户订单号": order.out_trade_no,
            "用户标识": str(order.extra.get("openid", "")), "交易类型": trade_type,
            "付款银行": "OTHERS", "货币种类": order.currency, "代金券金额": "0.00",
            "充值券退款金额": "0.00", "商品名称": order.subject.replace(",", " "),
            "商户数据包": str(order.extra.get("attach") or "").replace(",", " "),
        }  # fmt: skip

    def trade_bill(
        self, mchid: str, day: dt.date, bill_type: str = "ALL", sub_mchid: str | None = None
    ) -> bytes | None:
        """The bill file (uncompressed) as WeChat would serve it; None when there is none."""
        day_bill = self.day_bill(mchid, day, sub_mchid)
        rows = list(self.bill_rows(mchid, day_bill.entries, sub_mchid, bill_type))
        if not rows and not day_bill.bad_rows:
            return None
        bad = [self._bad_row(mchid, day) for _ in range(day_bill.bad_rows)]
        out = io.BytesIO()
        bill.write_bill(rows, out, summary_offset=day_bill.summary_offset, unreadable=bad)
        return out.getvalue()

    @staticmethod
    def _bad_row(mchid: str, day: dt.date) -> str:
        """A SUCCESS row cut short after 交易状态 (10 of the 27 fields)."""
        when = dt.datetime.combine(day, dt.time(12), tzinfo=bill.CHINA)
        fields = [when.strftime(bill.TIME_FORMAT), "", mchid, "0", "", f"4200{day:%Y%m%d}000000",
                  f"unreadable{day:%Y%m%d}", "", "NATIVE", bill.STATE_PAID]  # fmt: skip
        return "`" + ",`".join(fields)

    # ------------------------------------------------------------ fund-flow bills (资金账单)
    def day_funds(self, mchid: str, day: dt.date) -> sandbox_bills.DayFunds:
        """The shared fund-flow day of a direct merchant's BASIC account, tweaks applied."""

        def listed(order: SandboxOrder) -> bool:
            return _bill_owner(order) == mchid and _sub_merchant(order) is None

        def payouts(on: dt.date) -> list[FundsEntry]:
            transfers = getattr(self, "transfers", {})
            return [
                FundsEntry("payout", -t.amount, 0, t.updated_at,
                           protocol.payout_id_of(t.out_bill_no), t.transfer_bill_no)
                for t in transfers.values()
                if t.merchant_id == mchid and t.state == "SUCCESS"
                and t.updated_at.astimezone(bill.CHINA).date() == on
            ]  # fmt: skip

        return sandbox_bills.day_funds(
            self.core, day, bill.CHINA, lambda amount: bill.fee_of(amount, self.bill_fee_bps),
            payouts, listed,
        )  # fmt: skip

    @staticmethod
    def funds_rows(mchid: str, funds: sandbox_bills.DayFunds) -> Iterator[dict[str, str]]:
        """The fund-flow lines of a day's entries, in order."""
        names = {"payment": fundflow.TRADE, "refund": fundflow.REFUND,
                 "payout": fundflow.PAYOUT, "settlement": fundflow.SETTLEMENT}  # fmt: skip
        for e in funds.entries:
            moved = e.net
            name = names[e.kind]
            if e.kind == "payment":
                note = fundflow.note_of(fundflow.TRADE, abs(moved), e.fee)
            elif e.kind == "refund":
                note = fundflow.note_of(fundflow.REFUND, abs(moved), -e.fee)
            else:
                note = "自动提现" if e.kind == "settlement" else name
            yield {
                "记账时间": e.at.astimezone(bill.CHINA).strftime(bill.TIME_FORMAT),
                "微信支付业务单号": e.channel_ref, "资金流水单号": e.flow_no, "业务名称": name,
                "业务类型": name, "收支类型": fundflow.INCOME if moved >= 0 else fundflow.EXPENSE,
                "收支金额（元）": bill.yuan(abs(moved)), "账户结余（元）": bill.yuan(e.balance),
                "资金变更提交申请人": "system" if e.kind in ("payment", "settlement")
                else f"{mchid}API",
                "备注": note, "业务凭证号": _voucher(e),
            }  # fmt: skip

    def fundflow_bill(self, mchid: str, day: dt.date) -> bytes | None:
        """The BASIC fund-flow bill file (uncompressed); None when there is none."""
        funds = self.day_funds(mchid, day)
        if not funds.entries and not funds.bad_rows and not funds.summary_offset:
            return None
        when = dt.datetime.combine(day, dt.time(12), tzinfo=bill.CHINA)
        bad = ["`" + ",`".join([when.strftime(bill.TIME_FORMAT), f"4200{day:%Y%m%d}000000",
                                f"{day:%Y%m%d}unreadable", fundflow.TRADE, fundflow.TRADE])
               for _ in range(funds.bad_rows)]  # fmt: skip
        out = io.BytesIO()
        fundflow.write_fundflow(self.funds_rows(mchid, funds), out,
                                summary_offset=funds.summary_offset, unreadable=bad)  # fmt: skip
        return out.getvalue()

    async def _fundflowbill(self, request: Request) -> Response:
        merchant = self._authenticate(request, b"")
        params = request.query_params
        try:
            day = dt.date.fromisoformat(params.get("bill_date", ""))
        except ValueError:
            raise WxError(400, "PARAM_ERROR", "bill_date 格式应为 yyyy-MM-DD") from None
        account = params.get("account_type", fundflow.ACCOUNT_TYPE)
        if account not in (fundflow.ACCOUNT_TYPE, "OPERATION", "FEES"):
            raise WxError(400, "PARAM_ERROR", "account_type 无效")
        data = None
        self._check_bill_day(day)
        if account == fundflow.ACCOUNT_TYPE:
            data = self.fundflow_bill(merchant.mchid, day)
        if data is None:
            raise WxError(400, "NO_STATEMENT_EXIST", "账单文件不存在")
        return self._offer_download(request, merchant.mchid, data)

    def _check_bill_day(self, day: dt.date) -> None:
        today = clock.now().astimezone(bill.CHINA).date()
        if day >= today:
            raise WxError(400, "STATEMENT_CREATING", "账单生成中")
        if day < today - dt.timedelta(days=90):
            raise WxError(400, "INVALID_REQUEST", "仅支持三个月内的账单下载申请")

    def _offer_download(self, request: Request, mchid: str, data: bytes) -> Response:
        """A download token for ``data`` (gzipped when ``tar_type=GZIP``) and its SHA1."""
        tar_type = request.query_params.get("tar_type")
        if tar_type not in (None, bill.TAR_GZIP):
            raise WxError(400, "PARAM_ERROR", "tar_type 无效")
        payload = gzip.compress(data, mtime=0) if tar_type == bill.TAR_GZIP else data
        token = secrets.token_urlsafe(32)
        if self._bill_downloads is None:
            self._bill_downloads = {}
        expires = clock.now() + dt.timedelta(seconds=self.bill_url_seconds)
        self._bill_downloads[token] = (mchid, payload, expires)
        return self._respond(200, {
            "hash_type": bill.HASH_TYPE, "hash_value": bill.sha1_hex(data),
            "download_url": f"{self._base_url(request)}{bill.DOWNLOAD_PATH}?token={token}",
        })  # fmt: skip

    def _check_sub_merchant(self, sp_mchid: str, sub_mchid: str) -> None:
        """Only a service provider names a sub-merchant, and only one of its own (wording
        of the refusal unverified)."""
        partners = getattr(self, "partners", None)
        provider = partners.providers.get(sp_mchid) if partners is not None else None
        if provider is None:
            raise WxError(403, "NO_AUTH", "商户号不是服务商，无权调用服务商接口")
        if sub_mchid not in provider.sub_merchants:
            raise WxError(400, "INVALID_REQUEST", "受理关系不存在")

    async def _tradebill(self, request: Request) -> Response:
        merchant = self._authenticate(request, b"")
        params = request.query_params
        try:
            day = dt.date.fromisoformat(params.get("bill_date", ""))
        except ValueError:
            raise WxError(400, "PARAM_ERROR", "bill_date 格式应为 yyyy-MM-DD") from None
        bill_type = params.get("bill_type", "ALL")
        if bill_type not in ("ALL", "SUCCESS", "REFUND"):
            raise WxError(400, "PARAM_ERROR", "bill_type 无效")
        if params.get("tar_type") not in (None, bill.TAR_GZIP):
            raise WxError(400, "PARAM_ERROR", "tar_type 无效")
        self._check_bill_day(day)
        # A service provider's bill of one of its sub-merchants names it.
        sub_mchid = params.get("sub_mchid") or None
        if sub_mchid is not None:
            self._check_sub_merchant(merchant.mchid, sub_mchid)
        data = self.trade_bill(merchant.mchid, day, bill_type, sub_mchid)
        if data is None:
            raise WxError(400, "NO_STATEMENT_EXIST", "账单文件不存在")
        return self._offer_download(request, merchant.mchid, data)

    async def _bill_download(self, request: Request) -> Response:
        merchant = self._authenticate(request, b"")
        found = (self._bill_downloads or {}).get(request.query_params.get("token", ""))
        if found is None or clock.now() >= found[2]:
            raise WxError(400, "INVALID_REQUEST", "请重新申请账单获取下载地址")
        if found[0] != merchant.mchid:
            raise WxError(403, "NO_AUTH", "请求商户与申请账单的商户不一致")
        return Response(content=found[1], media_type="application/octet-stream")

    def _bill_router(self) -> APIRouter:
        router = APIRouter()

        @router.get(bill.BILL_PATH)
        async def tradebill(request: Request) -> Response:
            return await self._tradebill(request)

        @router.get(fundflow.BILL_PATH)
        async def fundflowbill(request: Request) -> Response:
            return await self._fundflowbill(request)

        @router.get(bill.DOWNLOAD_PATH)
        async def download(request: Request) -> Response:
            return await self._bill_download(request)

        return router

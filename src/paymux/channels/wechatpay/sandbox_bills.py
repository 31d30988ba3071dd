"""The WeChat Pay sandbox's trade bills (交易账单): ``/v3/bill/tradebill`` and the signed
download of the bill file it points to.
"""

from __future__ import annotations

import datetime as dt
import gzip
import secrets

from fastapi import APIRouter, Request, Response

from paymux.channels.sandbox_kit import (
    OrderStatus,
    RefundStatus,
    SandboxOrder,
)
from paymux.channels.wechatpay import bill, protocol
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


class BillEndpoints(SandboxBase):
    """The trade-bill side of :class:`~paymux.channels.wechatpay.sandbox.Sandbox`."""

    # ``GET /v3/bill/tradebill`` → a download URL valid 30 s and the SHA1 of the uncompressed
    # file; ``GET /v3/billdownload/file?token=…`` (signed by the same merchant) → the file,
    # unsigned, gzipped when ``tar_type=GZIP``. A day's bill holds the payments paid and the
    # refunds completed that day (China time) with the fee at :attr:`bill_fee_bps`; today's
    # is STATEMENT_CREATING, a day without any is NO_STATEMENT_EXIST (both 400).
    bill_fee_bps: int = 60
    """The merchants' fee rate in basis points (0.60 %, WeChat's common rate)."""
    bill_url_seconds: float = 30.0
    _bill_downloads: dict[str, tuple[str, bytes, dt.datetime]] | None = None

    def bill_rows(self, mchid: str, day: dt.date, bill_type: str = "ALL") -> list[dict[str, str]]:
        """The rows of one merchant's trade bill for ``day`` (China time), in time order."""

        def on_day(moment: dt.datetime | None) -> bool:
            return moment is not None and moment.astimezone(bill.CHINA).date() == day

        rate = bill.rate_text(self.bill_fee_bps)
        rows: list[tuple[dt.datetime, dict[str, str]]] = []
        for order in self.core.orders.values():
            if _bill_owner(order) != mchid or order.status is not OrderStatus.succeeded \
                    or order.paid_at is None or not on_day(order.paid_at):  # fmt: skip
                continue
            amount = bill.yuan(order.amount)
            rows.append((order.paid_at, {
                **self._bill_order_fields(order, order.paid_at), "交易状态": bill.STATE_PAID,
                "应结订单金额": amount, "微信退款单号": "0", "商户退款单号": "0",
                "退款金额": "0.00",
                "手续费": bill.fee_text(bill.fee_of(order.amount, self.bill_fee_bps)),
                "费率": rate, "订单金额": amount, "申请退款金额": "0.00",
            }))  # fmt: skip
        for refund in self.core.refunds.values():
            done = refund.finished_at
            if _bill_owner(refund.order) != mchid or refund.status is not RefundStatus.succeeded \
                    or done is None or not on_day(done):  # fmt: skip
                continue
            rows.append((done, {
                **self._bill_order_fields(refund.order, done), "交易状态": bill.STATE_REFUND,
                "应结订单金额": "0.00", "微信退款单号": refund.refund_no,
                "商户退款单号": refund.out_refund_no, "退款金额": bill.yuan(refund.amount),
                "退款类型": "ORIGINAL", "退款状态": "SUCCESS",
                "手续费": bill.fee_text(-bill.fee_of(refund.amount, self.bill_fee_bps)),
                "费率": rate, "订单金额": "0.00", "申请退款金额": bill.yuan(refund.amount),
            }))  # fmt: skip
        rows.sort(key=lambda row: row[0])
        wanted = {"ALL": None, "SUCCESS": bill.STATE_PAID, "REFUND": bill.STATE_REFUND}[bill_type]
        return [row for _, row in rows if wanted is None or row["交易状态"] == wanted]

    @staticmethod
    def _bill_order_fields(order: SandboxOrder, when: dt.datetime) -> dict[str, str]:
        trade_type = (
            protocol.CODEPAY_TRADE_TYPE if order.method == protocol.CODEPAY_KIND
            else _TRADE_TYPES.get(order.method, "")
        )  # fmt: skip
        return {
            "交易时间": when.astimezone(bill.CHINA).strftime(bill.TIME_FORMAT),
            "公众账号ID": str(order.extra.get("appid", "")), "商户号": _bill_owner(order),
            "特约商户号": order.merchant_id if order.extra.get("sp_mchid") else "0",
            "设备号": "",
            "微信订单号": order.channel_trade_no, "商户订单号": order.out_trade_no,
            "用户标识": str(order.extra.get("openid", "")), "交易类型": trade_type,
            "付款银行": "OTHERS", "货币种类": order.currency, "代金券金额": "0.00",
            "充值券退款金额": "0.00", "商品名称": order.subject.replace(",", " "),
            "商户数据包": str(order.extra.get("attach") or "").replace(",", " "),
        }  # fmt: skip

    def trade_bill(self, mchid: str, day: dt.date, bill_type: str = "ALL") -> bytes:
        """The bill file (uncompressed) as WeChat would serve it."""
        return bill.render(self.bill_rows(mchid, day, bill_type))

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
        tar_type = params.get("tar_type")
        if tar_type not in (None, bill.TAR_GZIP):
            raise WxError(400, "PARAM_ERROR", "tar_type 无效")
        today = clock.now().astimezone(bill.CHINA).date()
        if day >= today:
            raise WxError(400, "STATEMENT_CREATING", "账单生成中")
        if day < today - dt.timedelta(days=90):
            raise WxError(400, "INVALID_REQUEST", "仅支持三个月内的账单下载申请")
        rows = self.bill_rows(merchant.mchid, day, bill_type)
        sub_mchid = params.get("sub_mchid")
        if sub_mchid:  # a service provider's bill of one of its sub-merchants
            rows = [row for row in rows if row["特约商户号"] == sub_mchid]
        if not rows:
            raise WxError(400, "NO_STATEMENT_EXIST", "账单文件不存在")
        data = bill.render(rows)
        payload = gzip.compress(data, mtime=0) if tar_type == bill.TAR_GZIP else data
        token = secrets.token_urlsafe(32)
        if self._bill_downloads is None:
            self._bill_downloads = {}
        expires = clock.now() + dt.timedelta(seconds=self.bill_url_seconds)
        self._bill_downloads[token] = (merchant.mchid, payload, expires)
        return self._respond(200, {
            "hash_type": bill.HASH_TYPE, "hash_value": bill.sha1_hex(data),
            "download_url": f"{self._base_url(request)}{bill.DOWNLOAD_PATH}?token={token}",
        })  # fmt: skip

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

        @router.get(bill.DOWNLOAD_PATH)
        async def download(request: Request) -> Response:
            return await self._bill_download(request)

        return router

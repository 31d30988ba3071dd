"""The Alipay statement (业务账单) for reconciliation:
``alipay.data.dataservice.bill.downloadurl.query`` (``bill_type=trade``), then the zip behind
the URL it answers, parsed by :mod:`paymux.channels.alipay.bill`.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar
from urllib.parse import urlsplit

import httpx

from paymux.channels import base
from paymux.channels.alipay import bill
from paymux.channels.alipay.client import AlipayClient
from paymux.channels.base import RetryableError, UnknownOutcome
from paymux.kit import clock


class StatementMixin(AlipayClient):
    # ------------------------------------------------------------ statement (业务账单)
    # alipay.data.dataservice.bill.downloadurl.query (bill_type=trade) answers a URL valid for
    # 30 s; the zip behind it is fetched without credentials (the URL carries its own token)
    # and is trusted because the URL came in a verified answer. Alipay makes a day's bill
    # the next morning (T+1, usually before 09:00 China time) and never today's.
    statement_timezone: ClassVar[dt.tzinfo] = bill.CHINA

    async def statement(self, day: dt.date) -> list[base.StatementLine]:
        """The day's (China time) trade bill: every trade and refund with its service fee. A
        day without a bill (``isp.bill_not_exist``: nothing happened, or fetched before Alipay
        made it) is ``[]``; today or later raises RetryableError ``statement_not_ready``."""
        if day >= clock.now().astimezone(bill.CHINA).date():
            raise RetryableError("statement_not_ready", f"Alipay has no bill for {day} yet")
        biz = {"bill_type": bill.BILL_TYPE, "bill_date": f"{day:%Y-%m-%d}"}
        raw = await self._call(bill.METHOD_BILL, biz)
        if raw.data.get("sub_code") == bill.NOT_EXIST:
            return []
        url = self._check(raw).get("bill_download_url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise UnknownOutcome("unparseable_response", "no bill_download_url")
        try:
            response = await self.http.get(url)
        except httpx.HTTPError as exc:
            raise UnknownOutcome("transport_error", repr(exc)) from exc
        if response.status_code != 200:
            raise UnknownOutcome("http_status", f"bill download: HTTP {response.status_code}")
        try:
            return bill.statement_lines(bill.parse_zip(response.content).rows)
        except bill.BillError as exc:
            raise UnknownOutcome("unparseable_bill", str(exc)) from exc

"""The Alipay statements for reconciliation: the trade bill (业务账单) and the fund-flow bill
(账务明细), both ``alipay.data.dataservice.bill.downloadurl.query`` (``bill_type=trade`` /
``signcustomer``), then the zip behind the URL it answers, written to a file as downloaded and
read by :class:`paymux.channels.alipay.bill.AlipayBillReader` /
:class:`paymux.channels.alipay.funds.AccountBillReader`. Both bills of a day are made at the
same time and answer the same errors [unverified for signcustomer: the SDK models share them].
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import IO, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx

from paymux.channels import base, bills
from paymux.channels.alipay import funds
from paymux.channels.alipay.bill import BILL_TYPE, CHINA, METHOD_BILL, NOT_EXIST, AlipayBillReader
from paymux.channels.alipay.client import AlipayClient
from paymux.channels.base import RetryableError, UnknownOutcome
from paymux.channels.bills import BillKind, BillReader, FetchedBill
from paymux.kit import clock


class StatementMixin(AlipayClient):
    # ------------------------------------------------------------ statement (业务账单)
    # alipay.data.dataservice.bill.downloadurl.query (bill_type=trade) answers a URL valid for
    # 30 s; the zip behind it is fetched without credentials (the URL carries its own token)
    # and is trusted because the URL came in a verified answer. Alipay makes a day's bill
    # the next morning (T+1, usually before 09:00-10:00 China time) and never today's.
    statement_timezone: ClassVar[dt.tzinfo] = CHINA
    bill_ready_after: ClassVar[dt.timedelta] = dt.timedelta(hours=10)
    bills: ClassVar[frozenset[BillKind]] = frozenset({BillKind.trade, BillKind.funds})

    async def statement(self, day: dt.date) -> list[base.StatementLine]:
        """The day's (China time) trade bill: every trade and refund with its service fee. A
        day without a bill (``isp.bill_not_exist`` once the bill is due: nothing happened) is
        ``[]``; today or later, or no bill before it is due, raises RetryableError
        ``statement_not_ready``."""
        return await bills.statement_of(self, day)

    async def fetch_bill(
        self, day: dt.date, into: IO[bytes], bill: BillKind = BillKind.trade
    ) -> FetchedBill:
        """The day's trade-bill zip (``bill=funds``: its 账务明细 zip), streamed into ``into``
        as Alipay serves it. ``isp.bill_not_exist`` is no bill (``exists=False``) once the
        bill is due (:attr:`bill_ready_after`), not ready before; today or later raises
        RetryableError ``statement_not_ready``."""
        if bill not in self.bills:
            raise ValueError(f"Alipay has no {bill} bill")
        if day >= clock.now().astimezone(CHINA).date():
            raise RetryableError("statement_not_ready", f"Alipay has no bill for {day} yet")
        kind = funds.BILL_TYPE if bill is BillKind.funds else BILL_TYPE
        biz = {"bill_type": kind, "bill_date": f"{day:%Y-%m-%d}"}
        raw = await self._call(METHOD_BILL, biz)
        name = f"alipay_{day:%Y%m%d}_{kind}.csv.zip"
        if raw.data.get("sub_code") == NOT_EXIST:
            # Alipay answers the same before it made the bill as for a day without business:
            # until the bill is due it means "not yet".
            due = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=CHINA)
            if clock.now() < due + self.bill_ready_after:
                raise RetryableError("statement_not_ready", f"Alipay's bill for {day} is due later")
            return FetchedBill(name, exists=False)
        url = self._check(raw).get("bill_download_url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise UnknownOutcome("unparseable_response", "no bill_download_url")
        given = parse_qs(urlsplit(url).query).get("downloadFileName", [""])[0]
        if given and "/" not in given and "\\" not in given:
            name = given
        try:
            async with self.http.stream("GET", url) as response:
                if response.status_code != 200:
                    raise UnknownOutcome(
                        "http_status", f"bill download: HTTP {response.status_code}"
                    )
                async for chunk in response.aiter_bytes():
                    into.write(chunk)
        except httpx.HTTPError as exc:
            raise UnknownOutcome("transport_error", repr(exc)) from exc
        return FetchedBill(name)

    def bill_reader(
        self, path: Path, expected: Mapping[str, str], bill: BillKind = BillKind.trade
    ) -> BillReader:
        """A reader of a trade-bill zip (``bill=funds``: a 账务明细 zip), fetched or uploaded
        by a person."""
        if bill not in self.bills:
            raise ValueError(f"Alipay has no {bill} bill")
        if bill is BillKind.funds:
            return funds.AccountBillReader(path, expected)
        return AlipayBillReader(path, expected)

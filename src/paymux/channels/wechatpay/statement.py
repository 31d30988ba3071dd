"""WeChat Pay statement: the day's trade bill (交易账单, ``/v3/bill/tradebill``) and fund-flow
bill (资金账单, ``/v3/bill/fundflowbill``, the BASIC account), each fetched into a file as WeChat
gave it (uncompressed) and read by :class:`~paymux.channels.wechatpay.bill.TradeBillReader` /
:class:`~paymux.channels.wechatpay.fundflow.FundFlowBillReader` against its SHA1 and its summary.

Facts (the v3 API page "申请交易账单" / "下载账单" as quoted in the SDK models of wechatpay-java,
WxJava and minibear2021 ``wechatpayv3``): ``GET /v3/bill/tradebill?bill_date=YYYY-MM-DD&
bill_type=ALL&tar_type=GZIP`` answers ``{hash_type: SHA1, hash_value, download_url}`` (the URL
is valid 30 s); the download is a signed GET whose answer is the file itself, NOT signed (the
official SDK skips verification for it), so the hash is what proves the transport: it is taken
over the *uncompressed* bill. 400 ``NO_STATEMENT_EXIST``: no bill (nothing happened that day);
400 ``STATEMENT_CREATING``: not made yet (the bill of a day is made the next day, normally by
10:00 China time). Bills are kept three months.

The fund-flow bill is asked the same way (``GET /v3/bill/fundflowbill?bill_date=YYYY-MM-DD&
account_type=BASIC&tar_type=GZIP``) and answers the same three fields, with the same download,
hash and errors [unverified: that its NO_STATEMENT_EXIST / STATEMENT_CREATING are the
tradebill's; the SDK models share one answer type].
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import IO, Any, ClassVar

import httpx

from paymux.channels import base, bills
from paymux.channels.base import (
    BusinessError,
    ChannelError,
    RetryableError,
    UnknownOutcome,
)
from paymux.channels.bills import BillKind, BillReader, FetchedBill
from paymux.channels.wechatpay import fundflow, protocol
from paymux.channels.wechatpay.bill import BILL_PATH, CHINA, HASH_TYPE, TAR_GZIP, TradeBillReader
from paymux.channels.wechatpay.client import (
    WechatPayClient,
    classify_answer,
    classify_transport_error,
)

_INFLATE_STEP = 1 << 20
"""Most bytes one gunzip step may produce (a small download cannot balloon in memory)."""


class StatementCalls(WechatPayClient):
    """The statement side of :class:`~paymux.channels.wechatpay.adapter.WechatPayAdapter`."""

    statement_timezone: ClassVar[dt.tzinfo] = CHINA
    bill_ready_after: ClassVar[dt.timedelta] = dt.timedelta(hours=10)
    """A day's bill is made the next day, normally by 10:00 China time."""
    bills: ClassVar[frozenset[BillKind]] = frozenset({BillKind.trade, BillKind.funds})

    async def statement(self, day: dt.date) -> list[base.StatementLine]:
        """The day's (China time) ALL trade bill as a list (see :func:`bills.statement_of`):
        ``[]`` when WeChat has no bill (nothing happened); RetryableError
        ``statement_not_ready`` while it is being made; UnknownOutcome ``bill_not_intact`` when
        its SHA1 or summary does not hold."""
        return await bills.statement_of(self, day)

    async def fetch_bill(
        self, day: dt.date, into: IO[bytes], bill: BillKind = BillKind.trade
    ) -> FetchedBill:
        """Write the day's ALL trade bill (``bill=funds``: its BASIC fund-flow bill), gunzipped
        as it streams, into ``into``; the SHA1 WeChat gave with it is ``expected["sha1"]``."""
        if bill not in self.bills:
            raise ValueError(f"WeChat Pay has no {bill} bill for this account")
        if bill is BillKind.funds:
            filename = f"wechatpay_{self._bill_owner()}_{day:%Y-%m-%d}_FUNDFLOW_BASIC.csv"
            path = f"{fundflow.BILL_PATH}?{self._funds_query(day)}"
        else:
            filename = f"wechatpay_{self._bill_owner()}_{day:%Y-%m-%d}_ALL.csv"
            path = f"{BILL_PATH}?{self._bill_query(day)}"
        try:
            _, answer = await self._call("GET", path, classify=self._classify_bill_answer)
        except BusinessError as exc:
            if exc.code == "no_statement":
                return bills.FetchedBill(filename, exists=False)
            raise
        if not isinstance(answer, dict) or not isinstance(answer.get("download_url"), str):
            raise UnknownOutcome("malformed_response", "tradebill answer without download_url")
        if answer.get("hash_type") != HASH_TYPE or not answer.get("hash_value"):
            raise UnknownOutcome("malformed_response", "tradebill answer without a SHA1 hash")
        inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip
        try:
            async for chunk in self._download(answer["download_url"]):
                data = inflate.decompress(chunk, _INFLATE_STEP)
                while data:
                    into.write(data)
                    data = inflate.decompress(inflate.unconsumed_tail, _INFLATE_STEP)
            into.write(inflate.flush())
        except zlib.error as exc:
            raise UnknownOutcome("malformed_response", f"bill download is not gzip: {exc}") from exc
        if not inflate.eof:
            raise UnknownOutcome("malformed_response", "bill download ended before its gzip end")
        return bills.FetchedBill(filename, {"sha1": str(answer["hash_value"]).lower()})

    def bill_reader(
        self, path: Path, expected: Mapping[str, str], bill: BillKind = BillKind.trade
    ) -> BillReader:
        """A reader of this merchant's ALL bill (rows of another merchant are problems), or of
        its fund-flow bill (``bill=funds``: the file names no merchant)."""
        if bill not in self.bills:
            raise ValueError(f"WeChat Pay has no {bill} bill for this account")
        if bill is BillKind.funds:
            return fundflow.FundFlowBillReader(path, expected)
        return TradeBillReader(path, expected, mchid=self.credentials.mchid)

    def _bill_owner(self) -> str:
        """Whose bill it is, for its file name."""
        return self.credentials.mchid

    def _bill_query(self, day: dt.date) -> str:
        """The tradebill query string; a service provider names its sub-merchant."""
        return f"bill_date={day:%Y-%m-%d}&bill_type=ALL&tar_type={TAR_GZIP}"

    def _funds_query(self, day: dt.date) -> str:
        """The fundflowbill query string: the BASIC account (where trade money lands)."""
        return f"bill_date={day:%Y-%m-%d}&account_type={fundflow.ACCOUNT_TYPE}&tar_type={TAR_GZIP}"

    @staticmethod
    def _classify_bill_answer(status: int, payload: Any) -> ChannelError:
        code = str(payload.get("code", "")) if isinstance(payload, dict) else ""
        message = str(payload.get("message", "")) if isinstance(payload, dict) else ""
        if code == "NO_STATEMENT_EXIST":
            return BusinessError("no_statement", message, raw=payload)
        if code == "STATEMENT_CREATING":
            return RetryableError("statement_not_ready", message, raw=payload)
        return classify_answer(status, payload)

    async def _download(self, url: str) -> AsyncIterator[bytes]:
        """The signed GET of a bill download URL, streamed. Our signature only ever goes to our
        own gateway: a URL elsewhere is refused."""
        creds = self.credentials
        if not url.startswith(creds.gateway + "/"):
            raise UnknownOutcome("malformed_response", f"download_url {url!r} is off the gateway")
        path = url[len(creds.gateway) :]
        headers = {
            "Accept": "application/json",
            "User-Agent": "paymux-wechatpay/1",
            "Authorization": protocol.build_authorization(
                mchid=creds.mchid, serial_no=creds.merchant_serial_no,
                private_key=self._private_key, method="GET", path_with_query=path, body=b"",
            ),
        }  # fmt: skip
        try:
            async with self._http.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    await response.aread()
                    try:
                        payload: Any = response.json()
                    except ValueError:
                        payload = None
                    raise classify_answer(response.status_code, payload)
                async for chunk in response.aiter_bytes():
                    yield chunk
        except httpx.HTTPError as exc:
            raise classify_transport_error(exc) from exc

"""WeChat Pay statement: the day's trade bill (交易账单, ``/v3/bill/tradebill``), downloaded
and checked against its SHA1, as the channel-neutral statement lines of reconciliation."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import httpx

from paymux.channels import base
from paymux.channels.base import (
    BusinessError,
    ChannelError,
    RetryableError,
    UnknownOutcome,
)
from paymux.channels.wechatpay import bill, protocol
from paymux.channels.wechatpay.client import (
    WechatPayClient,
    classify_answer,
    classify_transport_error,
)


class StatementCalls(WechatPayClient):
    """The statement side of :class:`~paymux.channels.wechatpay.adapter.WechatPayAdapter`."""

    # ``GET /v3/bill/tradebill`` answers a download URL (valid 30 s) and the SHA1 of the bill;
    # the download is a signed GET whose answer is the file itself, NOT signed (the official
    # SDK skips verification for it), so the hash is what proves the file: it is taken over
    # the uncompressed bill.
    statement_timezone: ClassVar[dt.tzinfo] = bill.CHINA

    async def statement(self, day: dt.date) -> list[base.StatementLine]:
        """The day's (China time) ALL trade bill: every payment and refund with its fee. A day
        WeChat has no bill for (NO_STATEMENT_EXIST: nothing happened) is ``[]``; today's or a
        bill still being made (STATEMENT_CREATING, until ~10:00 the next day) raises
        RetryableError ``statement_not_ready``."""
        query = self._bill_query(day)
        try:
            _, answer = await self._call(
                "GET", f"{bill.BILL_PATH}?{query}", classify=self._classify_bill_answer
            )
        except BusinessError as exc:
            if exc.code == "no_statement":
                return []
            raise
        if not isinstance(answer, dict) or not isinstance(answer.get("download_url"), str):
            raise UnknownOutcome("malformed_response", "tradebill answer without download_url")
        if answer.get("hash_type") != bill.HASH_TYPE or not answer.get("hash_value"):
            raise UnknownOutcome("malformed_response", "tradebill answer without a SHA1 hash")
        data = bill.unpack(await self._download(answer["download_url"]), bill.TAR_GZIP)
        if bill.sha1_hex(data) != str(answer["hash_value"]).lower():
            raise UnknownOutcome("bill_hash_mismatch", "downloaded bill does not match its SHA1")
        try:
            return bill.statement_lines(bill.parse(data).rows)
        except bill.BillError as exc:
            raise UnknownOutcome("unparseable_bill", str(exc)) from exc

    def _bill_query(self, day: dt.date) -> str:
        """The tradebill query string; a service provider names its sub-merchant."""
        return f"bill_date={day:%Y-%m-%d}&bill_type=ALL&tar_type={bill.TAR_GZIP}"

    @staticmethod
    def _classify_bill_answer(status: int, payload: Any) -> ChannelError:
        code = str(payload.get("code", "")) if isinstance(payload, dict) else ""
        message = str(payload.get("message", "")) if isinstance(payload, dict) else ""
        if code == "NO_STATEMENT_EXIST":
            return BusinessError("no_statement", message, raw=payload)
        if code == "STATEMENT_CREATING":
            return RetryableError("statement_not_ready", message, raw=payload)
        return classify_answer(status, payload)

    async def _download(self, url: str) -> bytes:
        """The signed GET of a bill download URL. Our signature only ever goes to our own
        gateway: a URL elsewhere is refused."""
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
            response = await self._http.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise classify_transport_error(exc) from exc
        if response.status_code != 200:
            try:
                payload: Any = response.json()
            except ValueError:
                payload = None
            raise classify_answer(response.status_code, payload)
        return response.content

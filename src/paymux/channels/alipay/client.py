"""The Alipay OpenAPI transport every adapter feature shares: the app's keys (public-key or
certificate mode, and the ISV ``app_auth_token``), signing a request, sending it, verifying
the answer's signature, and turning an error answer into our error kinds (:func:`classify`,
plus each API's own :data:`ErrorTable`).

Every sync response's signature is verified; a response we cannot verify is an
:class:`~paymux.channels.base.UnknownOutcome`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import ValidationError

from paymux.channels import base
from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.credentials import AlipayCredentials
from paymux.channels.base import (
    BusinessError,
    ChannelError,
    RetryableError,
    RoutableDecline,
    UnknownOutcome,
)

# ---------------------------------------------------------------- error classification
_UNKNOWN_SUB_CODES = frozenset(
    {
        "ACQ.SYSTEM_ERROR",
        "aop.ACQ.SYSTEM_ERROR",
        "AQC.SYSTEM_ERROR",  # sic: listed so in Alipay's refund/cancel error tables
        "isp.unknow-error",
        "isp.unknown-error",
    }
)
# Refusals by the merchant account's own quota or risk status (alipay.trade.precreate/create/
# pay/page/wap error tables): another channel account may take the payment.
_ROUTABLE_SUB_CODES = {
    "ACQ.BEYOND_PAY_RESTRICTION": "channel_limit",  # 商户收款额度超限
    "ACQ.BEYOND_PER_RECEIPT_RESTRICTION": "channel_limit",  # 商户收款金额超过月限额
    "ACQ.MERCHANT_PERM_RECEIPT_DAY_LIMIT": "channel_limit",
    "ACQ.MERCHANT_PERM_RECEIPT_SINGLE_LIMIT": "channel_limit",
    "ACQ.MERCHANT_PERM_RECEIPT_SUSPEND_LIMIT": "channel_risk_declined",
    "ACQ.SELLER_BEEN_BLOCKED": "channel_risk_declined",  # 商家账号被冻结
    "ACQ.PAYMENT_REQUEST_HAS_RISK": "channel_risk_declined",
}
_DEFAULT_BUSINESS_CODES = {
    "20001": "insufficient_authorization",
    "40001": "missing_parameter",
    "40002": "invalid_parameter",
    "40004": "business_failed",
    "40006": "insufficient_permissions",
}


def classify(code: str, sub_code: str, message: str, *, raw: Any = None) -> ChannelError:
    """The one table mapping an Alipay error answer to our error kinds.

    ======================================  =================================
    code / sub_code                          error
    ======================================  =================================
    20000 (ISP unknown), ACQ.SYSTEM_ERROR    UnknownOutcome (retry via query)
    40004 + quota/risk sub_code              RoutableDecline (another account may take it)
    40004 + sub_code                         BusinessError(sub_code)
    40001 / 40002 / 40006 / 20001            BusinessError(sub_code or kind)
    anything else                            UnknownOutcome
    ======================================  =================================

    Transport failures are classified in :meth:`AlipayAdapter._send`: connect refused or
    timed out → RetryableError; read timeout, 5xx, unparseable or unverifiable → UnknownOutcome.
    """
    if code == "20000" or sub_code in _UNKNOWN_SUB_CODES:
        return UnknownOutcome(sub_code or "isp_unknown_error", message, raw=raw)
    if code == "40004" and sub_code in _ROUTABLE_SUB_CODES:
        return RoutableDecline(_ROUTABLE_SUB_CODES[sub_code], f"{sub_code}: {message}", raw=raw)
    if code in _DEFAULT_BUSINESS_CODES:
        return BusinessError(sub_code or _DEFAULT_BUSINESS_CODES[code], message, raw=raw)
    return UnknownOutcome("unexpected_response", f"code {code!r}: {message}", raw=raw)


ErrorTable = Mapping[str, tuple[type[ChannelError], str]]


def _backstop(timeout: httpx.Timeout) -> float | None:
    """A deadline over the whole exchange, for transports that do not enforce timeouts
    themselves (in-process ASGI transports)."""
    if timeout.read is None:
        return None
    return timeout.read + (timeout.connect or 0.0)


class AlipayClient:
    """One app's signed, verified calls to the Alipay gateway; the adapter's features build
    on it (see :class:`~paymux.channels.alipay.adapter.AlipayAdapter`)."""

    def __init__(self, credentials: Mapping[str, Any], http: httpx.AsyncClient) -> None:
        try:
            self.credentials = AlipayCredentials.model_validate(dict(credentials))
        except ValidationError as exc:
            raise base.InvalidCredentials(f"alipay credentials: {exc.errors()[0]['msg']}") from None
        self.http = http
        creds = self.credentials
        self._private_key = p.load_private_key(creds.app_private_key)
        self._cert_params: dict[str, str] = {}
        self._alipay_cert_sn: str | None = None
        if creds.app_cert and creds.alipay_cert and creds.alipay_root_cert:
            _, app_cert_sn = p.certificate_key(creds.app_cert, "app_cert")
            self._alipay_key, self._alipay_cert_sn = p.certificate_key(
                creds.alipay_cert, "alipay_cert"
            )
            self._cert_params = {
                "app_cert_sn": app_cert_sn,
                "alipay_root_cert_sn": p.root_cert_sn(creds.alipay_root_cert),
            }
        else:
            assert creds.alipay_public_key is not None  # the model guarantees one or the other
            self._alipay_key = p.load_public_key(creds.alipay_public_key)
        if creds.app_auth_token:  # ISV mode: a common parameter of every request, like the SNs
            self._cert_params["app_auth_token"] = creds.app_auth_token

    # ------------------------------------------------------------ requests
    def _signed(
        self,
        method: str,
        biz: Mapping[str, Any],
        *,
        notify_url: str | None = None,
        return_url: str | None = None,
    ) -> dict[str, str]:
        params = p.request_params(
            app_id=self.credentials.app_id,
            method=method,
            biz_content=biz,
            notify_url=notify_url,
            return_url=return_url,
            extra=self._cert_params,
        )
        return p.sign_params(params, self._private_key)

    async def _send(self, params: Mapping[str, str]) -> httpx.Response:
        # Common parameters in the query string, biz_content in the form body (as the
        # official SDKs do).
        query = {k: v for k, v in params.items() if k != "biz_content"}
        form = {"biz_content": params["biz_content"]} if "biz_content" in params else None
        request = self.http.post(
            self.credentials.gateway,
            params=query,
            data=form,
            headers={"Accept": "application/json"},
        )
        deadline = _backstop(self.http.timeout)
        try:
            if deadline is None:
                return await request
            return await asyncio.wait_for(request, timeout=deadline)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryableError("connect_failed", repr(exc)) from exc
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise UnknownOutcome("timeout", repr(exc)) from exc
        except httpx.HTTPError as exc:
            raise UnknownOutcome("transport_error", repr(exc)) from exc

    async def _call(
        self, method: str, biz: Mapping[str, Any], **extra: str | None
    ) -> p.RawResponse:
        """POST one request; return the verified response (any code)."""
        response = await self._send(self._signed(method, biz, **extra))
        if response.status_code >= 500:
            raise UnknownOutcome("http_5xx", f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise UnknownOutcome("http_status", f"HTTP {response.status_code}")
        try:
            text = response.content.decode("utf-8")
            raw = p.extract_response(text, method)
        except (UnicodeDecodeError, ValueError) as exc:
            raise UnknownOutcome("unparseable_response", str(exc)) from exc
        if not raw.sign or not p.verify(raw.text, raw.sign, self._alipay_key):
            why = "response signature invalid or missing"
            if raw.alipay_cert_sn and raw.alipay_cert_sn != self._alipay_cert_sn:
                why = f"signed with Alipay certificate {raw.alipay_cert_sn}: update alipay_cert"
            raise UnknownOutcome("unverifiable_response", why)
        return raw

    @staticmethod
    def _check(raw: p.RawResponse, errors: ErrorTable | None = None) -> dict[str, Any]:
        """The answer's data when it succeeded; otherwise the error it stands for (an API's own
        ``errors`` table first, then :func:`classify`)."""
        data = raw.data
        code = str(data.get("code", ""))
        if code == p.SUCCESS_CODE and raw.key != "error_response":
            return data
        sub_code = str(data.get("sub_code") or "")
        message = str(data.get("sub_msg") or data.get("msg") or "")
        if errors is not None and sub_code in errors and sub_code not in _UNKNOWN_SUB_CODES:
            kind, normalised = errors[sub_code]
            raise kind(normalised, f"{sub_code}: {message}", raw=data)
        raise classify(code, sub_code, message, raw=data)

"""WeChat Pay payouts: 商家转账 in its 2025 form, "user-confirmation mode".

``POST /v3/fund-app/mch-transfer/transfer-bills`` creates one bill per payout (``out_bill_no``,
``transfer_scene_id``, ``openid``, ``transfer_amount``, ``transfer_remark``, ``user_name``
encrypted with the platform public key, ``transfer_scene_report_infos``, ``notify_url``) and
``GET …/transfer-bills/out-bill-no/{out_bill_no}`` reads it back. The older batch API
(``/v3/transfer/batches``, 商家转账到零钱) is closed to merchants who did not use it before the
2025 switch and pays many people per batch with batch-level states; the bill API pays one person,
is idempotent per ``out_bill_no`` and is what WeChat documents and the official SDKs
(``wechatpayv3.mch_transfer_bills``) call today. A bill usually answers ``WAIT_USER_CONFIRM``:
the payee must accept it in WeChat; its ``package_info`` (kept in ``TransferState.raw``) is what
the platform's app hands to ``wx.requestMerchantTransfer``. Until then the payout is pending.
The final state arrives as ``MCHTRANSFER.BILL.FINISHED`` (a transfer :class:`Notification`
about our payout id) or by querying.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from paymux.channels.base import (
    BusinessError,
    ChannelError,
    ChannelTransferStatus,
    CreateTransfer,
    InvalidNotification,
    Notification,
    PayeeType,
    TransferState,
    UnknownOutcome,
)
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.client import WechatPayClient

_TRANSFER_BILLS_PATH = "/v3/fund-app/mch-transfer/transfer-bills"
_TRANSFER_REMARK_MAX = 32
#: Fen. From 2,000 yuan WeChat requires the payee's real name; below 0.30 yuan the official SDK
#: (like the older batch API, which refused it) never sends one.
_USER_NAME_REQUIRED_FROM = 200_000
_USER_NAME_ALLOWED_FROM = 30


# Transfer bills (``/v3/fund-app/mch-transfer/transfer-bills``). WeChat: after any non-200 answer
# never switch to a new out_bill_no until a query shows the bill failed, and treat an unknown
# error code the same way. So only the codes known to mean "nothing was created" are final;
# everything else is UnknownOutcome and the janitor queries.
_TRANSFER_ERROR_CODES: dict[str, tuple[type[ChannelError], str]] = {
    "SYSTEM_ERROR": (UnknownOutcome, "system_error"),  # 500
    "FREQUENCY_LIMITED": (UnknownOutcome, "frequency_limited"),  # 429
    "NOT_ENOUGH": (BusinessError, "insufficient_balance"),  # 403: operating account short
    "PARAM_ERROR": (BusinessError, "invalid_request"),  # 400
    "INVALID_REQUEST": (BusinessError, "invalid_request"),  # 400: scene, appid, IP whitelist…
    "NO_AUTH": (BusinessError, "not_authorized"),  # 403: product not enabled
    "SIGN_ERROR": (BusinessError, "sign_error"),  # 401
    "APPID_MCHID_NOT_MATCH": (BusinessError, "invalid_credentials"),
    "MCH_NOT_EXISTS": (BusinessError, "invalid_credentials"),
    "NOT_FOUND": (BusinessError, "not_found"),  # 404 on query
    "RESOURCE_NOT_EXISTS": (BusinessError, "not_found"),
}


def classify_transfer_answer(status: int, payload: Any) -> ChannelError:
    """A verified non-2xx answer to a transfer call → error."""
    wx_code = str(payload.get("code", "")) if isinstance(payload, dict) else ""
    message = str(payload.get("message", "")) if isinstance(payload, dict) else ""
    if wx_code == "INVALID_REQUEST" and any(f in message for f in ("重复", "不一致")):
        return BusinessError("duplicate_out_biz_no", message, raw=payload)
    if wx_code in _TRANSFER_ERROR_CODES:
        error, code = _TRANSFER_ERROR_CODES[wx_code]
        return error(code, message or wx_code, raw=payload)
    return UnknownOutcome(wx_code.lower() or f"http_{status}", message, raw=payload)


class TransferCalls(WechatPayClient):
    """The payout side of :class:`~paymux.channels.wechatpay.adapter.WechatPayAdapter`."""

    payee_types: ClassVar[frozenset[PayeeType]]

    async def create_transfer(self, request: CreateTransfer) -> TransferState:
        """``POST /v3/fund-app/mch-transfer/transfer-bills``: one bill per payout, idempotent
        per ``out_bill_no`` (derived from ``out_biz_no``: :func:`protocol.transfer_bill_no`).
        Usually answers ``WAIT_USER_CONFIRM`` (pending; ``raw["package_info"]`` lets the payee
        confirm in WeChat)."""
        creds = self.credentials
        if request.payee_type not in self.payee_types:
            raise BusinessError(
                "unsupported_payee_type", f"wechatpay cannot pay a {request.payee_type}"
            )
        if request.currency != "CNY":
            raise BusinessError("unsupported_currency", "wechatpay only pays out CNY")
        if request.amount <= 0:
            raise BusinessError("invalid_amount", "amount must be a positive number of fen")
        if not request.payee_account:
            raise BusinessError("invalid_payee", "the payee's openid is required")
        if creds.transfer_scene_id is None:
            raise BusinessError("transfer_not_configured", "no transfer_scene_id is configured")
        if request.amount >= _USER_NAME_REQUIRED_FROM and not request.payee_name:
            raise BusinessError(
                "payee_name_required", "from 2,000 yuan WeChat requires the payee's real name"
            )
        bill_no = self._bill_no(request.out_biz_no)
        remark = request.remark[:_TRANSFER_REMARK_MAX]
        body: dict[str, Any] = {
            "appid": creds.appid,
            "out_bill_no": bill_no,
            "transfer_scene_id": creds.transfer_scene_id,
            "openid": request.payee_account,
            "transfer_amount": request.amount,
            "transfer_remark": remark,
            "notify_url": request.notify_url,
            "transfer_scene_report_infos": [
                {"info_type": info.info_type, "info_content": info.info_content or remark}
                for info in creds.transfer_scene_report_infos
            ],
        }
        if request.payee_name and request.amount >= _USER_NAME_ALLOWED_FROM:
            body["user_name"] = protocol.encrypt_sensitive(self._platform_key, request.payee_name)
        if creds.transfer_user_recv_perception:
            body["user_recv_perception"] = creds.transfer_user_recv_perception
        _, payload = await self._call(
            "POST", _TRANSFER_BILLS_PATH, body, classify=classify_transfer_answer
        )
        return self._checked_transfer(payload, request.out_biz_no, bill_no, request.amount)

    async def query_transfer(self, out_biz_no: str) -> TransferState:
        """``GET /v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}``; 404 →
        ``not_found``."""
        bill_no = self._bill_no(out_biz_no)
        path = f"{_TRANSFER_BILLS_PATH}/out-bill-no/{quote(bill_no, safe='')}"
        try:
            _, payload = await self._call("GET", path, classify=classify_transfer_answer)
        except BusinessError as exc:
            if exc.code == "not_found":
                return TransferState(out_biz_no, ChannelTransferStatus.not_found, raw=exc.raw)
            raise
        return self._checked_transfer(payload, out_biz_no, bill_no, None)

    def _transfer_notification(
        self, event_key: str, envelope: Mapping[str, Any], bill: Any
    ) -> Notification:
        """A decrypted ``MCHTRANSFER.BILL.FINISHED`` resource (a bill reached SUCCESS, FAIL or
        CANCELLED) → Notification(transfer=…) about our payout id."""
        if not isinstance(bill, dict) or "state" not in bill:
            raise InvalidNotification("malformed", "resource is not a transfer bill")
        if bill.get("mchid") != self.credentials.mchid:
            raise InvalidNotification("wrong_merchant", "notification is for another merchant")
        out_bill_no = bill.get("out_bill_no")
        if not isinstance(out_bill_no, str) or not out_bill_no:
            raise InvalidNotification("malformed", "transfer lacks out_bill_no")
        if bill["state"] not in protocol.TRANSFER_FINAL_STATES:
            raise InvalidNotification("malformed", "a transfer notification must be final")
        try:
            state = self._transfer_state(bill, protocol.payout_id_of(out_bill_no), None)
        except ValueError as exc:
            raise InvalidNotification("malformed", str(exc)) from exc
        return Notification(event_key=event_key, transfer=state, raw={**envelope, "resource": bill})

    @staticmethod
    def _bill_no(out_biz_no: str) -> str:
        try:
            return protocol.transfer_bill_no(out_biz_no)
        except ValueError as exc:
            raise BusinessError("invalid_request", str(exc)) from None

    def _checked_transfer(
        self, payload: Any, out_biz_no: str, bill_no: str, amount: int | None
    ) -> TransferState:
        if not isinstance(payload, dict):
            raise UnknownOutcome("malformed_response", "transfer answer has no body", raw=payload)
        mchid = payload.get("mch_id", payload.get("mchid"))
        if payload.get("out_bill_no") != bill_no or mchid not in (None, self.credentials.mchid):
            raise UnknownOutcome(
                "malformed_response", "answer is about another transfer", raw=payload
            )
        try:
            return self._transfer_state(payload, out_biz_no, amount)
        except ValueError as exc:
            raise UnknownOutcome("malformed_response", str(exc), raw=payload) from exc

    @staticmethod
    def _transfer_state(
        bill: Mapping[str, Any], out_biz_no: str, amount: int | None
    ) -> TransferState:
        """A transfer bill (create or query answer, notification resource) → TransferState."""
        wire_state = str(bill.get("state", ""))
        status = protocol.map_transfer_state(wire_state)
        transferred = bill.get("transfer_amount")
        update_time = bill.get("update_time")
        finished_at = (
            protocol.parse_rfc3339(update_time)
            if wire_state in protocol.TRANSFER_FINAL_STATES
            and isinstance(update_time, str)
            and update_time
            else None
        )
        bill_id = bill.get("transfer_bill_no")
        failed = status is ChannelTransferStatus.failed
        fail_reason = bill.get("fail_reason")
        return TransferState(
            out_biz_no=out_biz_no,
            status=status,
            channel_transfer_no=str(bill_id) if bill_id else None,
            amount=transferred if isinstance(transferred, int) else amount,
            finished_at=finished_at,
            failure_code=(str(fail_reason) if fail_reason else wire_state) if failed else None,
            failure_message=protocol.TRANSFER_STATE_DESC[wire_state] if failed else None,
            raw=dict(bill),
        )

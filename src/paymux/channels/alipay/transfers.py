"""Alipay payouts (:class:`~paymux.channels.base.TransferCapable`):
``alipay.fund.trans.uni.transfer`` / ``alipay.fund.trans.common.query``, which Alipay serves
only to apps in public-key *certificate* mode (credentials ``app_cert``, ``alipay_cert``,
``alipay_root_cert``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.client import AlipayClient, ErrorTable
from paymux.channels.base import (
    BusinessError,
    ChannelTransferStatus,
    CreateTransfer,
    PayeeType,
    TransferState,
    UnknownOutcome,
)

ORDER_TITLE_MAX = 128
REMARK_MAX = 200
IDENTITY_TYPES: Mapping[PayeeType, str] = {
    PayeeType.alipay_login_id: "ALIPAY_LOGON_ID",
    PayeeType.alipay_user_id: "ALIPAY_USER_ID",
    PayeeType.alipay_open_id: "ALIPAY_OPEN_ID",
}
"""``payee_info.identity_type`` per payee type."""


# alipay.fund.trans.uni.transfer sub_codes (its "业务错误码", shared with the older
# toaccount.transfer). SYSTEM_ERROR: "无法判定准确的转账结果 … 采用相同的out_biz_no重发请求，或者
# … 查询" → UnknownOutcome; the same out_biz_no never pays twice.
TRANSFER_ERRORS: ErrorTable = {
    "SYSTEM_ERROR": (UnknownOutcome, "system_error"),
    "PAYER_BALANCE_NOT_ENOUGH": (BusinessError, "insufficient_balance"),
    "PAYEE_NOT_EXIST": (BusinessError, "payee_not_found"),
    "PAYEE_USER_INFO_ERROR": (BusinessError, "payee_name_mismatch"),
    "PAYEE_ACC_OCUPIED": (BusinessError, "payee_ambiguous"),  # login id of several accounts
    "PAYMENT_INFO_INCONSISTENCY": (BusinessError, "duplicate_out_biz_no"),
    "EXCEED_LIMIT_SM_MIN_AMOUNT": (BusinessError, "amount_below_minimum"),
    "EXCEED_LIMIT_SM_AMOUNT": (BusinessError, "limit_exceeded"),
    "EXCEED_LIMIT_PERSONAL_SM_AMOUNT": (BusinessError, "limit_exceeded"),
    "EXCEED_LIMIT_ENT_SM_AMOUNT": (BusinessError, "limit_exceeded"),
    "EXCEED_LIMIT_DM_MAX_AMOUNT": (BusinessError, "limit_exceeded"),
    "EXCEED_LIMIT_UNRN_DM_AMOUNT": (BusinessError, "limit_exceeded"),
    "PERM_AML_NOT_REALNAME_REV": (BusinessError, "payee_restricted"),
    "PERMIT_NON_BANK_LIMIT_PAYEE": (BusinessError, "payee_restricted"),
    "PAYER_STATUS_ERROR": (BusinessError, "payer_restricted"),
    "PAYCARD_UNABLE_PAYMENT": (BusinessError, "payer_restricted"),
    "PAYER_DATA_INCOMPLETE": (BusinessError, "payer_restricted"),
    "PERMIT_CHECK_PERM_LIMITED": (BusinessError, "payer_restricted"),
    "PERMIT_PAYER_LOWEST_FORBIDDEN": (BusinessError, "payer_restricted"),
    "PERMIT_PAYER_FORBIDDEN": (BusinessError, "payer_restricted"),
    "CERT_MISS_TRANS_LIMIT": (BusinessError, "payer_restricted"),
    "CERT_MISS_ACC_LIMIT": (BusinessError, "payer_restricted"),
    "PAYER_CERT_EXPIRED": (BusinessError, "payer_restricted"),
    "ACCOUNT_NOT_EXIST": (BusinessError, "payer_restricted"),
    "MEMO_REQUIRED_IN_TRANSFER_ERROR": (BusinessError, "remark_required"),
    "REMARK_HAS_SENSITIVE_WORD": (BusinessError, "remark_rejected"),
    "INVALID_PARAMETER": (BusinessError, "invalid_request"),
}


class TransfersMixin(AlipayClient):
    # ------------------------------------------------------------ payouts
    async def create_transfer(self, request: CreateTransfer) -> TransferState:
        """``alipay.fund.trans.uni.transfer`` (TRANS_ACCOUNT_NO_PWD / DIRECT_TRANSFER) with
        ``out_biz_no`` = our payout id: repeating it pays at most once. Needs certificate-mode
        credentials, as Alipay does. No ``notify_url`` is sent: Alipay reports transfers
        through its own subscribed messages (alipay.fund.trans.order.changed), which this
        adapter does not parse; the query settles every ``pending``/unknown one."""
        if request.currency != p.CURRENCY:
            raise BusinessError("unsupported_currency", "alipay only pays out CNY")
        identity_type = IDENTITY_TYPES.get(request.payee_type)
        if identity_type is None:
            raise BusinessError(
                "unsupported_payee_type", f"alipay cannot pay a {request.payee_type}"
            )
        if request.amount < p.TRANSFER_MIN:
            raise BusinessError("amount_below_minimum", "alipay transfers start at 0.10 CNY")
        if request.payee_type is PayeeType.alipay_login_id and not request.payee_name:
            raise BusinessError("payee_name_required", "a login id payee needs the real name")
        self._require_cert_mode()
        payee: dict[str, str] = {"identity": request.payee_account, "identity_type": identity_type}
        if request.payee_name:
            payee["name"] = request.payee_name
        biz: dict[str, Any] = {
            "out_biz_no": request.out_biz_no,
            "trans_amount": p.to_yuan(request.amount),
            "product_code": p.PRODUCT_TRANSFER,
            "biz_scene": p.SCENE_TRANSFER,
            "payee_info": payee,
        }
        if request.remark:
            biz["order_title"] = request.remark[:ORDER_TITLE_MAX]
            biz["remark"] = request.remark[:REMARK_MAX]
        raw = await self._call(p.METHOD_TRANSFER, biz)
        data = self._check(raw, TRANSFER_ERRORS)
        return self._transfer_state(data, request.out_biz_no, amount=None)

    async def query_transfer(self, out_biz_no: str) -> TransferState:
        """``alipay.fund.trans.common.query`` by ``out_biz_no`` (+ product code and scene);
        ``ORDER_NOT_EXIST`` → ``not_found`` (then sending the same out_biz_no is safe)."""
        self._require_cert_mode()
        biz = {
            "out_biz_no": out_biz_no,
            "product_code": p.PRODUCT_TRANSFER,
            "biz_scene": p.SCENE_TRANSFER,
        }
        raw = await self._call(p.METHOD_TRANSFER_QUERY, biz)
        try:
            data = self._check(raw)
        except BusinessError as exc:
            if exc.code == "ORDER_NOT_EXIST":
                return TransferState(out_biz_no, ChannelTransferStatus.not_found, raw=raw.data)
            raise
        amount_text = data.get("trans_amount")
        try:
            amount = p.to_fen(str(amount_text)) if amount_text else None
        except ValueError as exc:
            raise UnknownOutcome("unparseable_response", str(exc), raw=data) from exc
        return self._transfer_state(data, out_biz_no, amount=amount)

    def _require_cert_mode(self) -> None:
        if not self.credentials.cert_mode:
            raise BusinessError(
                "cert_mode_required",
                "alipay pays out only to apps in public-key certificate mode "
                "(app_cert, alipay_cert, alipay_root_cert)",
            )

    @staticmethod
    def _transfer_state(
        data: Mapping[str, Any], out_biz_no: str, *, amount: int | None
    ) -> TransferState:
        if data.get("out_biz_no") not in (None, out_biz_no):
            raise UnknownOutcome("inconsistent_response", "answer is about another transfer")
        wire = str(data.get("status") or "")
        try:
            status = p.map_transfer_status(wire)
            when = data.get("trans_date") or data.get("pay_date")
            finished_at = (
                p.parse_time(str(when))
                if status is ChannelTransferStatus.succeeded and when
                else None
            )
        except ValueError as exc:
            raise UnknownOutcome("unparseable_response", str(exc), raw=dict(data)) from exc
        failed = status is ChannelTransferStatus.failed
        order_id = data.get("order_id")
        return TransferState(
            out_biz_no=out_biz_no,
            status=status,
            channel_transfer_no=str(order_id) if order_id else None,
            amount=amount,
            finished_at=finished_at,
            failure_code=str(data.get("error_code") or wire) if failed else None,
            failure_message=(str(data.get("fail_reason") or "") or None) if failed else None,
            raw=dict(data),
        )

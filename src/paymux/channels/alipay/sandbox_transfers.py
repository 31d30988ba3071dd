"""The Alipay sandbox's payouts (certificate-mode apps only) to the payees of its directory,
and the control API for both (``POST /_sandbox/payees``, ``/_sandbox/transfer_scripts``,
``GET /_sandbox/transfers/{out_biz_no}``).

Methods:

- ``alipay.fund.trans.uni.transfer`` (``TRANS_ACCOUNT_NO_PWD`` / ``DIRECT_TRANSFER``): pays a
  payee of the sandbox's directory (``POST /_sandbox/payees``) named by ``ALIPAY_USER_ID``,
  ``ALIPAY_LOGON_ID`` (``name`` required) or ``ALIPAY_OPEN_ID``: unknown → ``PAYEE_NOT_EXIST``,
  wrong name → ``PAYEE_USER_INFO_ERROR``, under 0.10 → ``EXCEED_LIMIT_SM_MIN_AMOUNT``, over
  50 000 → ``EXCEED_LIMIT_PERSONAL_SM_AMOUNT``. Outcomes follow ``POST
  /_sandbox/transfer_scripts`` (:class:`TransferScript`). The same ``out_biz_no`` with the same
  request answers the existing transfer; with another → ``PAYMENT_INFO_INCONSISTENCY``.
- ``alipay.fund.trans.common.query``: by ``out_biz_no`` (+ product code and scene) or
  ``order_id``; ``status`` SUCCESS (with ``pay_date``, ``trans_amount``) / DEALING / FAIL
  (``error_code``, ``fail_reason``); unknown → ``ORDER_NOT_EXIST`` [sub_code unverified].
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.sandbox_apps import (
    _IDENTITY_ATTRIBUTES,
    _OK,
    Payee,
    SandboxApp,
    _business,
    _digits,
    _Fail,
)
from paymux.channels.alipay.sandbox_trades import TradesBase
from paymux.channels.sandbox_kit import RefundOutcome
from paymux.kit import clock

_PERSONAL_TRANSFER_MAX = 50_000_00
"""转账给个人支付宝账户单笔最多5万元 (EXCEED_LIMIT_PERSONAL_SM_AMOUNT), in fen."""


class TransferScript(BaseModel):
    """The next transfer's outcome, with the kit's refund semantics: ``succeed`` (SUCCESS at
    once), ``delayed`` (DEALING, SUCCESS after ``delay``), ``fail`` (DEALING, FAIL after
    ``delay`` with ``error_code``/``fail_reason``), ``refuse`` (PAYER_BALANCE_NOT_ENOUGH),
    ``create_error`` (SYSTEM_ERROR, nothing made), ``create_timeout`` (made, answer held)."""

    outcome: RefundOutcome = RefundOutcome.succeed
    delay: float = 2.0
    sticky: bool = False
    error_code: str = "PAYEE_ACCOUNT_STATUS_ERROR"
    fail_reason: str = "收款方账户状态异常"


@dataclass
class SandboxTransfer:
    app_id: str
    out_biz_no: str
    order_id: str
    pay_fund_order_id: str
    amount: int
    identity_type: str
    identity: str
    name: str | None
    payee: Payee
    order_title: str | None
    remark: str | None
    script: TransferScript
    created_at: dt.datetime
    status: str = "DEALING"
    finished_at: dt.datetime | None = None
    error_code: str | None = None
    fail_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class PayeeIn(BaseModel):
    name: str
    login_id: str | None = None


class TransferMethods(TradesBase):
    transfers: dict[tuple[str, str], SandboxTransfer]
    transfer_scripts: list[TransferScript]

    # ------------------------------------------------------------ transfers
    def take_transfer_script(self) -> TransferScript:
        if not self.transfer_scripts:
            return TransferScript()
        script = self.transfer_scripts[0]
        if not script.sticky:
            del self.transfer_scripts[0]
        return script

    @staticmethod
    def _transfer_answer(transfer: SandboxTransfer) -> dict[str, Any]:
        answer: dict[str, Any] = {
            **_OK,
            "out_biz_no": transfer.out_biz_no,
            "order_id": transfer.order_id,
            "status": transfer.status,
        }
        if transfer.status == "SUCCESS" and transfer.finished_at is not None:
            answer["pay_fund_order_id"] = transfer.pay_fund_order_id
            answer["trans_date"] = p.format_time(transfer.finished_at)
        return answer

    def _finish_transfer(self, transfer: SandboxTransfer, *, succeeded: bool) -> None:
        if transfer.status != "DEALING":
            return
        transfer.finished_at = clock.now()
        if succeeded:
            transfer.status = "SUCCESS"
        else:
            transfer.status = "FAIL"
            transfer.error_code = transfer.script.error_code
            transfer.fail_reason = transfer.script.fail_reason

    @staticmethod
    def _check_product(biz: dict[str, Any]) -> None:
        if biz.get("product_code") != p.PRODUCT_TRANSFER:
            raise _business("INVALID_PARAMETER", "product_code 须为 TRANS_ACCOUNT_NO_PWD")
        if biz.get("biz_scene") != p.SCENE_TRANSFER:
            raise _business("INVALID_PARAMETER", "biz_scene 须为 DIRECT_TRANSFER")

    async def _transfer(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        out_biz_no = str(biz.get("out_biz_no") or "")
        if not out_biz_no or len(out_biz_no) > 64:
            raise _business("INVALID_PARAMETER", "out_biz_no 为空或过长")
        self._check_product(biz)
        try:
            amount = p.to_fen(str(biz.get("trans_amount") or ""))
        except ValueError:
            raise _business("INVALID_PARAMETER", "trans_amount 格式错误") from None
        payee_info = biz.get("payee_info")
        if not isinstance(payee_info, dict):
            raise _business("INVALID_PARAMETER", "payee_info 不能为空")
        identity_type = str(payee_info.get("identity_type") or "")
        identity = str(payee_info.get("identity") or "")
        name = str(payee_info.get("name") or "") or None
        if identity_type not in _IDENTITY_ATTRIBUTES or not identity:
            raise _business("INVALID_PARAMETER", "payee_info 参数有误")
        if identity_type == "ALIPAY_LOGON_ID" and not name:
            raise _business("INVALID_PARAMETER", "identity_type 为 ALIPAY_LOGON_ID 时 name 必填")
        existing = self.transfers.get((app.app_id, out_biz_no))
        if existing is not None:
            same = (existing.amount, existing.identity_type, existing.identity, existing.name)
            if same != (amount, identity_type, identity, name):
                raise _business(
                    "PAYMENT_INFO_INCONSISTENCY", "两次请求商户单号一样，但是参数不一致"
                )
            return self._transfer_answer(existing)
        if amount < p.TRANSFER_MIN:
            raise _business("EXCEED_LIMIT_SM_MIN_AMOUNT", "单笔最低转账金额0.1元")
        if amount > _PERSONAL_TRANSFER_MAX:
            raise _business("EXCEED_LIMIT_PERSONAL_SM_AMOUNT", "转账给个人支付宝账户单笔最多5万元")
        payee = self.find_payee(identity_type, identity)
        if payee is None:
            raise _business("PAYEE_NOT_EXIST", "收款账号不存在")
        if name is not None and name != payee.name:
            raise _business("PAYEE_USER_INFO_ERROR", "支付宝账号和姓名不匹配，请确认姓名是否正确")
        script = self.take_transfer_script()
        if script.outcome is RefundOutcome.refuse:
            raise _business("PAYER_BALANCE_NOT_ENOUGH", "付款方余额不足")
        if script.outcome is RefundOutcome.create_error:
            raise _business("SYSTEM_ERROR", "系统繁忙")
        now = clock.now()
        day = p.format_time(now)[:10].replace("-", "")
        transfer = SandboxTransfer(
            app_id=app.app_id,
            out_biz_no=out_biz_no,
            order_id=day + "110070000" + _digits(15),
            pay_fund_order_id=day + "110070001" + _digits(15),
            amount=amount,
            identity_type=identity_type,
            identity=identity,
            name=name,
            payee=payee,
            order_title=str(biz.get("order_title") or "") or None,
            remark=str(biz.get("remark") or "") or None,
            script=script,
            created_at=now,
        )
        self.transfers[(app.app_id, out_biz_no)] = transfer
        await self.core.play(script, lambda ok: self._finish_transfer(transfer, succeeded=ok))
        return self._transfer_answer(transfer)

    async def _transfer_query(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        out_biz_no = str(biz.get("out_biz_no") or "")
        order_id = str(biz.get("order_id") or "")
        if not out_biz_no and not order_id:
            raise _Fail("40002", "isv.missing-parameter", "out_biz_no 与 order_id 不能同时为空")
        if out_biz_no and not order_id:
            self._check_product(biz)
        transfer = next(
            (
                t
                for t in self.transfers.values()
                if t.app_id == app.app_id
                and (t.order_id == order_id if order_id else t.out_biz_no == out_biz_no)
            ),
            None,
        )
        if transfer is None:
            raise _business("ORDER_NOT_EXIST", "转账订单不存在")
        answer: dict[str, Any] = {
            **_OK,
            "order_id": transfer.order_id,
            "out_biz_no": transfer.out_biz_no,
            "status": transfer.status,
        }
        if transfer.status == "SUCCESS" and transfer.finished_at is not None:
            answer["pay_fund_order_id"] = transfer.pay_fund_order_id
            answer["pay_date"] = p.format_time(transfer.finished_at)
            answer["trans_amount"] = p.to_yuan(transfer.amount)
        if transfer.status == "FAIL":
            answer["error_code"] = transfer.error_code
            answer["fail_reason"] = transfer.fail_reason
        return answer

    def _control_router(self) -> APIRouter:
        router = APIRouter(prefix="/_sandbox")

        @router.post("/transfer_scripts")
        async def add_transfer_script(script: TransferScript) -> dict[str, Any]:
            """Control API: queue the outcome of the next transfer (uni.transfer)."""
            self.transfer_scripts.append(script)
            return {"queued": len(self.transfer_scripts)}

        @router.post("/payees")
        async def add_payee(body: PayeeIn) -> dict[str, Any]:
            """Control API: an Alipay account payouts can reach (returns its identities)."""
            payee = self.add_payee(body.name, body.login_id)
            return {"user_id": payee.user_id, "open_id": payee.open_id,
                    "login_id": payee.login_id, "name": payee.name}  # fmt: skip

        @router.get("/transfers/{out_biz_no}")
        async def show_transfer(out_biz_no: str) -> dict[str, Any]:
            found = [t for t in self.transfers.values() if t.out_biz_no == out_biz_no]
            if not found:
                raise HTTPException(404, "no such transfer")
            t = found[0]
            return {"out_biz_no": t.out_biz_no, "order_id": t.order_id, "status": t.status,
                    "amount": t.amount, "payee_user_id": t.payee.user_id}  # fmt: skip

        return router

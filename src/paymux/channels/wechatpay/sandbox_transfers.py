"""The WeChat Pay sandbox's payouts: 商家转账 bills (``/v3/fund-app/mch-transfer/
transfer-bills``, query by ``out_bill_no``) awaiting the payee's confirmation, their
``MCHTRANSFER.BILL.FINISHED`` notifications with WeChat's retry schedule, and the control API
(``/_sandbox/transfer_scripts``, ``/_sandbox/transfers/…``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import secrets
import string
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from paymux.channels import sandbox_kit
from paymux.channels.sandbox_kit import (
    NotifyMode,
    RefundOutcome,
    RefundScript,
)
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.sandbox_base import (
    SandboxBase,
    WxError,
    _random,
    script_routes,
)
from paymux.kit import clock


class _ReportInfo(BaseModel):
    info_type: str = Field(min_length=1)
    info_content: str = Field(min_length=1)


class _TransferBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    appid: str = Field(min_length=1, max_length=32)
    out_bill_no: str = Field(pattern=r"^[0-9A-Za-z]{1,32}$")
    transfer_scene_id: str = Field(min_length=1, max_length=36)
    openid: str = Field(min_length=1, max_length=64)
    user_name: str | None = Field(default=None, min_length=1)
    transfer_amount: StrictInt = Field(ge=1)
    transfer_remark: str = Field(min_length=1, max_length=32)
    notify_url: str | None = Field(default=None, min_length=1, max_length=256)
    user_recv_perception: str | None = None
    transfer_scene_report_infos: list[_ReportInfo] = Field(min_length=1)


class _Confirm(BaseModel):
    result: str = "confirm"
    """``confirm`` (the payee accepts: SUCCESS) or ``decline`` (FAIL)."""


@dataclass
class SandboxTransfer:
    """One 商家转账 bill."""

    out_bill_no: str
    transfer_bill_no: str
    merchant_id: str
    appid: str
    openid: str
    amount: int
    remark: str
    scene_id: str
    user_name: str | None
    """Decrypted, as the sandbox checked it."""
    notify_url: str | None
    script: RefundScript
    created_at: dt.datetime
    updated_at: dt.datetime
    state: str = "ACCEPTED"
    fail_reason: str | None = None
    package_info: str = ""
    notifications_sent: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class TransferEndpoints(SandboxBase):
    """The payout side of :class:`~paymux.channels.wechatpay.sandbox.Sandbox`."""

    transfers: dict[tuple[str, str], SandboxTransfer]
    transfer_scripts: list[RefundScript]
    transfer_fail_reason: str

    def add_transfer_script(self, script: RefundScript) -> None:
        """Queue an outcome for the next transfer whose remark matches ``script.subject``:
        ``succeed`` (the payee accepts at once), ``delayed`` (WAIT_USER_CONFIRM, accepted after
        ``delay``), ``fail`` (WAIT_USER_CONFIRM, FAIL after ``delay``), ``refuse`` (403
        NOT_ENOUGH), ``create_timeout`` (made and accepted, answer held), ``create_error``
        (500, nothing made)."""
        self.transfer_scripts.append(script)

    def _take_transfer_script(self, remark: str) -> RefundScript:
        return sandbox_kit.take_matching(self.transfer_scripts, remark, RefundScript)

    def transfer_bill(self, transfer: SandboxTransfer) -> dict[str, Any]:
        """The bill as the query answer shows it (``mch_id``, as WeChat's document spells it)."""
        data: dict[str, Any] = {
            "mch_id": transfer.merchant_id,
            "out_bill_no": transfer.out_bill_no,
            "transfer_bill_no": transfer.transfer_bill_no,
            "appid": transfer.appid,
            "state": transfer.state,
            "transfer_amount": transfer.amount,
            "transfer_remark": transfer.remark,
            "openid": transfer.openid,
            "create_time": protocol.rfc3339(transfer.created_at),
            "update_time": protocol.rfc3339(transfer.updated_at),
        }
        if transfer.fail_reason:
            data["fail_reason"] = transfer.fail_reason
        return data

    @staticmethod
    def _transfer_answer(transfer: SandboxTransfer) -> dict[str, Any]:
        data: dict[str, Any] = {
            "out_bill_no": transfer.out_bill_no,
            "transfer_bill_no": transfer.transfer_bill_no,
            "create_time": protocol.rfc3339(transfer.created_at),
            "state": transfer.state,
        }
        if transfer.state == "WAIT_USER_CONFIRM":
            data["package_info"] = transfer.package_info
        if transfer.fail_reason:
            data["fail_reason"] = transfer.fail_reason
        return data

    def transfer_resource(self, transfer: SandboxTransfer) -> dict[str, Any]:
        """The decrypted resource of ``MCHTRANSFER.BILL.FINISHED``."""
        data: dict[str, Any] = {
            "mchid": transfer.merchant_id,
            "out_bill_no": transfer.out_bill_no,
            "transfer_bill_no": transfer.transfer_bill_no,
            "state": transfer.state,
            "transfer_amount": transfer.amount,
            "openid": transfer.openid,
            "create_time": protocol.rfc3339(transfer.created_at),
            "update_time": protocol.rfc3339(transfer.updated_at),
        }
        if transfer.fail_reason:
            data["fail_reason"] = transfer.fail_reason
        return data

    def build_transfer_notification(
        self, transfer: SandboxTransfer
    ) -> tuple[dict[str, str], bytes]:
        merchant = self.merchants[transfer.merchant_id]
        resource = protocol.encrypt_resource(
            merchant.apiv3_key,
            protocol.encode_json(self.transfer_resource(transfer)),
            original_type=protocol.TRANSFER_RESOURCE_TYPE,
            associated_data=protocol.TRANSFER_RESOURCE_TYPE,
        )
        event_id = uuid.uuid5(
            uuid.NAMESPACE_URL,
            f"wechatpay:{merchant.mchid}:{transfer.transfer_bill_no}:{protocol.TRANSFER_EVENT}",
        )
        return self._signed_event(
            str(event_id), protocol.TRANSFER_EVENT, "商家转账单据终态通知", resource
        )

    def finish_transfer(self, transfer: SandboxTransfer, *, succeeded: bool) -> bool:
        """Move a bill awaiting the payee to SUCCESS or FAIL and notify. False if already final."""
        if transfer.state in protocol.TRANSFER_FINAL_STATES:
            return False
        transfer.state = "SUCCESS" if succeeded else "FAIL"
        transfer.fail_reason = None if succeeded else self.transfer_fail_reason
        transfer.updated_at = clock.now()
        self.core.spawn(self._notify_transfer(transfer))
        return True

    async def _post_transfer(self, transfer: SandboxTransfer, body: bytes) -> bool:
        core = self.core
        if not transfer.notify_url or core.http is None:
            return False
        # Signed afresh per delivery, like every WeChat notification.
        headers = {"Content-Type": "application/json", **self.sign(body)}
        try:
            response = await core.http.post(transfer.notify_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            core.deliveries.append({"out_bill_no": transfer.out_bill_no, "error": repr(exc)})
            return False
        transfer.notifications_sent += 1
        ok = core.is_ack(response)
        core.deliveries.append(
            {"out_bill_no": transfer.out_bill_no, "status": response.status_code, "acked": ok}
        )
        return ok

    async def _notify_transfer(self, transfer: SandboxTransfer) -> None:
        """Deliver ``MCHTRANSFER.BILL.FINISHED`` per the bill's script, retrying until acked."""
        mode = transfer.script.notify
        if mode is NotifyMode.none or transfer.state not in protocol.TRANSFER_FINAL_STATES:
            return
        if mode is NotifyMode.delayed:
            await asyncio.sleep(transfer.script.delay * self.core.time_scale)
        _, body = self.build_transfer_notification(transfer)
        copies = 2 if mode is NotifyMode.duplicate else 1
        results = await asyncio.gather(
            *(self._post_transfer(transfer, body) for _ in range(copies))
        )
        if any(results):
            return
        for wait in self.core.retry_schedule:
            await asyncio.sleep(wait * self.core.time_scale)
            if await self._post_transfer(transfer, body):
                return

    async def _transfer(self, request: Request) -> Response:
        raw = await request.body()
        merchant = self._authenticate(request, raw)
        body = self._parse(_TransferBody, raw)
        if body.appid != merchant.appid:
            raise WxError(400, "INVALID_REQUEST", "appid与商户号不匹配")
        if body.notify_url is not None:
            notify = urlsplit(body.notify_url)
            if notify.scheme not in ("http", "https") or not notify.netloc or notify.query:
                raise WxError(400, "PARAM_ERROR", "notify_url格式错误")
        user_name = self._sensitive(request, body.user_name)
        if body.transfer_amount >= 200_000 and user_name is None:
            raise WxError(400, "PARAM_ERROR", "转账金额>=2000元时，收款用户姓名必填")
        existing = self.transfers.get((merchant.mchid, body.out_bill_no))
        if existing is not None:
            # Same number, same bill: WeChat pays once per out_bill_no.
            if (existing.openid, existing.amount, existing.remark, existing.scene_id) != (
                body.openid, body.transfer_amount, body.transfer_remark, body.transfer_scene_id,
            ):  # fmt: skip
                raise WxError(400, "INVALID_REQUEST", "商户单号重复，请核实转账参数")
            return self._respond(200, self._transfer_answer(existing))
        script = self._take_transfer_script(body.transfer_remark)
        if script.outcome is RefundOutcome.refuse:
            raise WxError(403, "NOT_ENOUGH", "商户运营账户资金不足，充值后可以原单号发起重试，"
                          "请勿更换商户单号")  # fmt: skip
        if script.outcome is RefundOutcome.create_error:
            raise WxError(500, "SYSTEM_ERROR", "系统繁忙，请使用原单号重试")
        now = clock.now()
        transfer = SandboxTransfer(
            out_bill_no=body.out_bill_no,
            transfer_bill_no="1330" + _random(string.digits, 30),
            merchant_id=merchant.mchid,
            appid=body.appid,
            openid=body.openid,
            amount=body.transfer_amount,
            remark=body.transfer_remark,
            scene_id=body.transfer_scene_id,
            user_name=user_name,
            notify_url=body.notify_url,
            script=script,
            created_at=now,
            updated_at=now,
            state="WAIT_USER_CONFIRM",
            package_info=base64.b64encode(secrets.token_bytes(72)).decode(),
            extra={"report_infos": [i.model_dump() for i in body.transfer_scene_report_infos],
                   "user_recv_perception": body.user_recv_perception},
        )  # fmt: skip
        self.transfers[(merchant.mchid, body.out_bill_no)] = transfer
        await self.core.play(script, lambda ok: self.finish_transfer(transfer, succeeded=ok))
        return self._respond(200, self._transfer_answer(transfer))

    async def _query_transfer(self, request: Request, out_bill_no: str) -> Response:
        merchant = self._authenticate(request, await request.body())
        transfer = self.transfers.get((merchant.mchid, out_bill_no))
        if transfer is None:
            raise WxError(404, "NOT_FOUND", "记录不存在")
        return self._respond(200, self.transfer_bill(transfer))

    def _find_transfer(self, out_bill_no: str) -> SandboxTransfer:
        for (_, no), transfer in self.transfers.items():
            if no == out_bill_no:
                return transfer
        raise HTTPException(404, "no such transfer")

    def _control_router(self) -> APIRouter:
        """Control API for transfers (next to sandbox_kit's ``/_sandbox`` routes)."""
        router = APIRouter(prefix="/_sandbox")
        script_routes(router, "/transfer_scripts", self.transfer_scripts, self.add_transfer_script,
                      "transfer")  # fmt: skip

        @router.get("/transfers/{out_bill_no}")
        async def show_transfer(out_bill_no: str) -> dict[str, Any]:
            transfer = self._find_transfer(out_bill_no)
            return {**self.transfer_bill(transfer), "user_name": transfer.user_name,
                    "notifications_sent": transfer.notifications_sent}  # fmt: skip

        @router.post("/transfers/{out_bill_no}/confirm")
        async def confirm(out_bill_no: str, body: _Confirm) -> dict[str, Any]:
            """Control API: the payee accepts (``confirm``) or declines a bill in WeChat."""
            transfer = self._find_transfer(out_bill_no)
            changed = self.finish_transfer(transfer, succeeded=body.result == "confirm")
            return {"out_bill_no": out_bill_no, "state": transfer.state, "changed": changed}

        return router

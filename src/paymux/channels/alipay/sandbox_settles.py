"""The Alipay sandbox's profit sharing (royalty relations and settles), and its control API
(``POST /_sandbox/settle_scripts``).

Methods:

- ``alipay.trade.royalty.relation.bind``: binds ``userId`` / ``loginName`` receivers of the
  payee directory (``result_code=SUCCESS``; binding again is no error); unknown →
  ``ACQ.USER_NOT_EXIST``, bad type → ``ACQ.INVALID_RECEIVER_TYPE``, empty →
  ``ACQ.RECEIVER_LIST_EMPTY``, a name that does not match → ``ACQ.INVALID_PARAMETER``.
- ``alipay.trade.order.settle``: splits a paid trade to bound receivers (else
  ``ACQ.ROYALTY_RECEIVER_INVALID``) up to what is neither refunded, split nor released by an
  earlier ``royalty_finish`` (else ``ACQ.ALLOC_AMOUNT_VALIDATE_ERROR``); answers
  ``settle_no``. Outcomes follow ``POST /_sandbox/settle_scripts``: ``refuse`` = every
  receiver FAIL at once (``TXN_RESULT_ACCOUNT_BALANCE_NOT_ENOUGH``). The same
  ``out_request_no`` answers the same ``settle_no``. No per-trade split ratio is enforced.
- ``alipay.trade.order.settle.query``: by ``settle_no`` or ``out_request_no`` + ``trade_no``;
  ``royalty_detail_list`` lines with ``state`` SUCCESS / FAIL / PROCESSING.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter

from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.sandbox_apps import _OK, Payee, SandboxApp, _business, _digits, _Fail
from paymux.channels.alipay.sandbox_trades import TradesBase
from paymux.channels.alipay.sandbox_transfers import TransferScript
from paymux.channels.sandbox_kit import OrderStatus, RefundOutcome, SandboxOrder
from paymux.kit import clock


@dataclass
class RoyaltyLine:
    """One receiver of a settle (a ``royalty_detail_list`` entry)."""

    trans_in_type: str
    trans_in: str
    amount: int
    desc: str | None
    detail_id: str
    state: str = "PROCESSING"
    execute_dt: dt.datetime | None = None
    error_code: str | None = None
    error_desc: str | None = None


@dataclass
class SandboxSettle:
    app_id: str
    out_request_no: str
    settle_no: str
    order: SandboxOrder
    lines: list[RoyaltyLine]
    finish: bool
    script: TransferScript
    created_at: dt.datetime
    fingerprint: tuple[Any, ...] = ()


class SettleMethods(TradesBase):
    relations: dict[str, dict[tuple[str, str], Payee]]
    settles: dict[tuple[str, str, str], SandboxSettle]
    settle_scripts: list[TransferScript]

    # ------------------------------------------------------------ profit sharing
    def _receiver(self, kind: str, account: str) -> Payee | None:
        if kind == p.SPLIT_USER_ID:
            return self.find_payee("ALIPAY_USER_ID", account)
        if kind == p.SPLIT_LOGIN_NAME:
            return self.find_payee("ALIPAY_LOGON_ID", account)
        return None

    async def _bind(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        if not str(biz.get("out_request_no") or ""):
            raise _Fail("40002", "isv.missing-parameter", "缺少 out_request_no")
        receivers = biz.get("receiver_list")
        if not isinstance(receivers, list) or not receivers:
            raise _business("ACQ.RECEIVER_LIST_EMPTY", "分账收款方列表为空")
        if len(receivers) > 20:
            raise _business("ACQ.INVALID_PARAMETER", "单次最多绑定20个分账接收方")
        found: list[tuple[tuple[str, str], Payee]] = []
        for entry in receivers:
            entry = entry if isinstance(entry, dict) else {}
            kind, account = str(entry.get("type") or ""), str(entry.get("account") or "")
            name = str(entry.get("name") or "") or None
            if kind not in (p.SPLIT_USER_ID, p.SPLIT_LOGIN_NAME):
                raise _business("ACQ.INVALID_RECEIVER_TYPE", "分账收款方类型参数非法")
            payee = self._receiver(kind, account)
            if payee is None:
                raise _business("ACQ.USER_NOT_EXIST", "分账接收方不存在")
            if kind == p.SPLIT_LOGIN_NAME and not name:
                raise _business("ACQ.INVALID_PARAMETER", "loginName 类型的分账接收方须传 name")
            if name is not None and name != payee.name:
                raise _business("ACQ.INVALID_PARAMETER", "分账接收方姓名与账号不一致")
            found.append(((kind, account), payee))
        # Binding a bound receiver again is no error: the relation simply exists.
        self.relations.setdefault(app.app_id, {}).update(found)
        return {**_OK, "result_code": "SUCCESS"}

    def _settleable(self, order: SandboxOrder) -> int:
        """What of a paid trade can still be split: not refunded, not split, not finished."""
        if order.extra.get("royalty_finished"):
            return 0
        split = sum(
            line.amount
            for s in self.settles.values()
            if s.order is order
            for line in s.lines
            if line.state != "FAIL"
        )
        return order.amount - self.refunded(order) - split

    def take_settle_script(self) -> TransferScript:
        if not self.settle_scripts:
            return TransferScript()
        script = self.settle_scripts[0]
        if not script.sticky:
            del self.settle_scripts[0]
        return script

    def _finish_settle(self, settle: SandboxSettle, *, succeeded: bool) -> None:
        now = clock.now()
        for line in settle.lines:
            if line.state != "PROCESSING":
                continue
            line.execute_dt = now
            if succeeded:
                line.state = "SUCCESS"
            else:
                line.state = "FAIL"
                line.error_code = "TXN_RESULT_ACCOUNT_BALANCE_NOT_ENOUGH"
                line.error_desc = "分账余额不足"

    async def _settle(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        out_request_no = str(biz.get("out_request_no") or "")
        trade_no = str(biz.get("trade_no") or "")
        if not out_request_no or not trade_no:
            raise _Fail("40002", "isv.missing-parameter", "缺少 out_request_no 或 trade_no")
        if len(out_request_no) > 64:
            raise _business("ACQ.INVALID_PARAMETER", "out_request_no 过长")
        order = self._lookup(app, {"trade_no": trade_no})
        parameters = biz.get("royalty_parameters")
        if not isinstance(parameters, list) or not parameters:
            raise _business("ACQ.INVALID_PARAMETER", "royalty_parameters 不能为空")
        relations = self.relations.get(app.app_id, {})
        lines: list[RoyaltyLine] = []
        for entry in parameters:
            entry = entry if isinstance(entry, dict) else {}
            if entry.get("royalty_type", p.ROYALTY_TRANSFER) != p.ROYALTY_TRANSFER:
                raise _business("ACQ.INVALID_PARAMETER", "沙箱只支持 transfer 分账")
            kind = str(entry.get("trans_in_type") or p.SPLIT_USER_ID)
            account = str(entry.get("trans_in") or "")
            if (kind, account) not in relations:
                raise _business("ACQ.ROYALTY_RECEIVER_INVALID", "收入方不在分账关系内")
            try:
                amount = p.to_fen(str(entry.get("amount") or ""))
            except ValueError:
                raise _business("ACQ.INVALID_PARAMETER", "分账金额格式错误") from None
            if amount <= 0:
                raise _business("ACQ.INVALID_PARAMETER", "分账金额须大于0")
            desc = str(entry.get("desc") or "") or None
            lines.append(RoyaltyLine(kind, account, amount, desc, detail_id=_digits(28)))
        extend = biz.get("extend_params")
        finish = isinstance(extend, dict) and str(extend.get("royalty_finish")) == "true"
        fingerprint = tuple((x.trans_in_type, x.trans_in, x.amount) for x in lines)
        existing = self.settles.get((app.app_id, trade_no, out_request_no))
        if existing is not None:
            # "如果前一次分账已经成功，接口会幂等返回成功" [the refusal of a *different*
            # request under the same number is the sandbox's own sub_code]
            if existing.fingerprint != fingerprint:
                raise _business("ACQ.DISCORDANT_REPEAT_REQUEST", "不一致的请求")
            return {**_OK, "trade_no": trade_no, "settle_no": existing.settle_no}
        if order.status is not OrderStatus.succeeded:
            raise _business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if sum(x.amount for x in lines) > self._settleable(order):
            raise _business("ACQ.ALLOC_AMOUNT_VALIDATE_ERROR", "分账金额超过最大可分账金额")
        script = self.take_settle_script()
        if script.outcome is RefundOutcome.create_error:
            raise _business("ACQ.SYSTEM_ERROR", "系统错误")
        now = clock.now()
        settle = SandboxSettle(
            app_id=app.app_id,
            out_request_no=out_request_no,
            settle_no=p.format_time(now)[:10].replace("-", "") + "0025300" + _digits(17),
            order=order,
            lines=lines,
            finish=finish,
            script=script,
            created_at=now,
            fingerprint=fingerprint,
        )
        self.settles[(app.app_id, trade_no, out_request_no)] = settle
        if finish:
            order.extra["royalty_finished"] = True
        if script.outcome is RefundOutcome.refuse:  # processed at once, refused per receiver
            self._finish_settle(settle, succeeded=False)
        else:
            await self.core.play(script, lambda ok: self._finish_settle(settle, succeeded=ok))
        return {**_OK, "trade_no": trade_no, "settle_no": settle.settle_no}

    async def _settle_query(
        self, app: SandboxApp, params: dict[str, str], biz: dict[str, Any], base: str
    ) -> dict[str, Any]:
        settle_no = str(biz.get("settle_no") or "")
        out_request_no = str(biz.get("out_request_no") or "")
        trade_no = str(biz.get("trade_no") or "")
        if settle_no:
            found = [s for s in self.settles.values() if s.settle_no == settle_no]
            settle = found[0] if found and found[0].app_id == app.app_id else None
        elif out_request_no and trade_no:
            self._lookup(app, {"trade_no": trade_no})  # ACQ.TRADE_NOT_EXIST
            settle = self.settles.get((app.app_id, trade_no, out_request_no))
        else:
            raise _Fail(
                "40002", "isv.missing-parameter", "settle_no 或 out_request_no+trade_no 必填"
            )
        if settle is None:
            # [unverified: the sandbox answers an unknown request with no detail lines]
            return {**_OK, "out_request_no": out_request_no}
        seller = str(settle.order.extra["seller_id"])
        details = []
        for line in settle.lines:
            detail: dict[str, Any] = {
                "operation_type": p.ROYALTY_TRANSFER,
                "trans_out": seller,
                "trans_out_type": p.SPLIT_USER_ID,
                "trans_in": line.trans_in,
                "trans_in_type": line.trans_in_type,
                "amount": p.to_yuan(line.amount),
                "state": line.state,
                "detail_id": line.detail_id,
            }
            if line.execute_dt is not None:
                detail["execute_dt"] = p.format_time(line.execute_dt)
            if line.error_code:
                detail["error_code"] = line.error_code
                detail["error_desc"] = line.error_desc
            details.append(detail)
        return {
            **_OK,
            "out_request_no": settle.out_request_no,
            "operation_dt": p.format_time(settle.created_at),
            "royalty_detail_list": details,
        }

    def _settle_router(self) -> APIRouter:
        router = APIRouter(prefix="/_sandbox")

        @router.post("/settle_scripts")
        async def add_settle_script(script: TransferScript) -> dict[str, Any]:
            """Control API: queue the outcome of the next split (order.settle); ``refuse`` =
            every receiver FAIL at once (the seller's balance)."""
            self.settle_scripts.append(script)
            return {"queued": len(self.settle_scripts)}

        return router

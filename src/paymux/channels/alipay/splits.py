"""Alipay profit sharing (:class:`~paymux.channels.base.SplitCapable`):
``alipay.trade.royalty.relation.bind`` then ``alipay.trade.order.settle`` (sync), read back
with ``alipay.trade.order.settle.query``.
"""

from __future__ import annotations

from typing import Any

from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.client import AlipayClient, ErrorTable
from paymux.channels.base import (
    BusinessError,
    ChannelError,
    ChannelSplitStatus,
    CreateSplit,
    SplitReceiver,
    SplitReceiverResult,
    SplitReceiverType,
    SplitState,
    UnknownOutcome,
)

ROYALTY_DESC_MAX = 128

ROYALTY_LINE_STATUS: dict[str, ChannelSplitStatus] = {
    "SUCCESS": ChannelSplitStatus.succeeded,
    "FAIL": ChannelSplitStatus.failed,
    "PROCESSING": ChannelSplitStatus.pending,
}
"""A ``royalty_detail_list`` line's ``state`` → its receiver's normalised status."""

# alipay.trade.royalty.relation.bind / alipay.trade.order.settle sub_codes. Settle's own page:
# after a timeout, ACQ.SYSTEM_ERROR or ACQ.TRADE_SETTLE_ERROR "当前请求可能成功也可能失败。
# 请使用相同的参数再次重试调用" → UnknownOutcome; the same out_request_no settles at most once.
SPLIT_ERRORS: ErrorTable = {
    "ACQ.TRADE_SETTLE_ERROR": (UnknownOutcome, "settle_error"),
    "FREQUENCY_LIMIT": (UnknownOutcome, "frequency_limited"),
    "ACQ.TRADE_NOT_EXIST": (BusinessError, "order_not_found"),
    "ACQ.ALLOC_AMOUNT_VALIDATE_ERROR": (BusinessError, "split_exceeds_available"),
    "ACQ.ROYALTY_RECEIVER_INVALID": (BusinessError, "receiver_not_bound"),
    "ACQ.USER_NOT_EXIST": (BusinessError, "receiver_not_found"),
    "ACQ.RELATION_QUANTITY_LIMIT": (BusinessError, "receiver_limit_reached"),
    "ACQ.PRODUCT_UNSIGN": (BusinessError, "not_authorized"),
    "ACQ.RECEIVER_LIST_EMPTY": (BusinessError, "invalid_request"),
    "ACQ.INVALID_RECEIVER_TYPE": (BusinessError, "invalid_request"),
    "ACQ.INVALID_PARAMETER": (BusinessError, "invalid_request"),
}
SPLIT_RECEIVERS_MAX = 20
"""receiver_list takes at most 20 receivers per bind."""


class SplitsMixin(AlipayClient):
    # ------------------------------------------------------------ profit sharing
    async def create_split(self, request: CreateSplit) -> SplitState:
        """Bind the receivers (``alipay.trade.royalty.relation.bind``: binding a bound receiver
        again succeeds), then ``alipay.trade.order.settle`` with ``out_request_no`` = our
        split id, ``royalty_mode=sync`` and ``royalty_finish`` when ``finish``. A settle may
        still fail per receiver (e.g. the seller's balance), so its result comes from one
        ``alipay.trade.order.settle.query``: see :meth:`query_split`."""
        if not request.receivers or len(request.receivers) > SPLIT_RECEIVERS_MAX:
            raise BusinessError("invalid_request", "1 to 20 receivers per alipay split")
        if any(r.amount <= 0 for r in request.receivers):
            raise BusinessError("invalid_amount", "every receiver needs a positive amount")
        if not request.channel_trade_no:
            raise BusinessError("invalid_request", "alipay splits need the trade_no")
        entities = [self._royalty_entity(r) for r in request.receivers]
        bind = await self._call(
            p.METHOD_ROYALTY_BIND,
            {"receiver_list": entities, "out_request_no": _bind_request_no(request)},
        )
        bound = self._check(bind, SPLIT_ERRORS)
        if bound.get("result_code") != "SUCCESS":
            raise BusinessError(
                "receiver_bind_failed", f"result_code {bound.get('result_code')!r}", raw=bound
            )
        biz: dict[str, Any] = {
            "out_request_no": request.out_order_no,
            "trade_no": request.channel_trade_no,
            "royalty_parameters": [
                {
                    "royalty_type": p.ROYALTY_TRANSFER,
                    "trans_in_type": entity["type"],
                    "trans_in": entity["account"],
                    "amount": p.to_yuan(receiver.amount),
                    "desc": receiver.description[:ROYALTY_DESC_MAX],
                }
                for receiver, entity in zip(request.receivers, entities, strict=True)
            ],
            "royalty_mode": "sync",
        }
        if request.finish:
            biz["extend_params"] = {"royalty_finish": "true"}
        settled = self._check(await self._call(p.METHOD_SETTLE, biz), SPLIT_ERRORS)
        if settled.get("trade_no") not in (None, request.channel_trade_no):
            raise UnknownOutcome("inconsistent_response", "settle answered for another trade")
        settle_no = str(settled["settle_no"]) if settled.get("settle_no") else None
        try:
            state = await self.query_split(
                request.out_order_no, request.out_trade_no, request.channel_trade_no
            )
        except ChannelError:
            state = None
        if state is None or state.status is ChannelSplitStatus.not_found:
            # Accepted (code 10000) but not yet visible: the janitor asks again.
            return SplitState(
                request.out_order_no, ChannelSplitStatus.pending, settle_no, raw=settled
            )
        return state

    async def query_split(
        self, out_order_no: str, out_trade_no: str, channel_trade_no: str
    ) -> SplitState:
        """``alipay.trade.order.settle.query`` by ``out_request_no`` + ``trade_no``; the
        ``transfer`` lines of ``royalty_detail_list`` decide: all SUCCESS → ``succeeded``, all
        FAIL → ``failed``, any PROCESSING → ``pending``, some SUCCESS and some FAIL →
        ``partial`` (``receivers`` says which; a failed line's money stays with the seller).
        No such trade, or an answer without lines, → ``not_found``."""
        biz = {"out_request_no": out_order_no, "trade_no": channel_trade_no}
        raw = await self._call(p.METHOD_SETTLE_QUERY, biz)
        try:
            data = self._check(raw, SPLIT_ERRORS)
        except BusinessError as exc:
            if exc.code == "order_not_found":
                return SplitState(out_order_no, ChannelSplitStatus.not_found, raw=raw.data)
            raise
        if data.get("out_request_no") not in (None, "", out_order_no):
            raise UnknownOutcome("inconsistent_response", "answer is about another split")
        details = data.get("royalty_detail_list") or []
        if not isinstance(details, list):
            raise UnknownOutcome("unparseable_response", "royalty_detail_list is not a list")
        lines = [
            d for d in details
            if isinstance(d, dict) and d.get("operation_type", p.ROYALTY_TRANSFER) == "transfer"
        ]  # fmt: skip
        if not lines:
            return SplitState(out_order_no, ChannelSplitStatus.not_found, raw=data)
        states = {str(d.get("state") or "") for d in lines}
        if not states <= p.ROYALTY_STATES:
            raise UnknownOutcome("unparseable_response", f"royalty states {sorted(states)}")
        failures = [d for d in lines if d.get("state") == "FAIL"]
        failure_code = str(failures[0].get("error_code") or "FAIL") if failures else None
        failure_message = (str(failures[0].get("error_desc") or "") or None) if failures else None
        if states == {"SUCCESS"}:
            status = ChannelSplitStatus.succeeded
        elif states == {"FAIL"}:
            status = ChannelSplitStatus.failed
        elif "PROCESSING" in states:
            status = ChannelSplitStatus.pending
        else:
            status = ChannelSplitStatus.partial
        try:
            results = tuple(
                SplitReceiverResult(
                    account=str(d.get("trans_in") or ""),
                    status=ROYALTY_LINE_STATUS[str(d["state"])],
                    amount=p.to_fen(str(d["amount"])) if d.get("amount") else None,
                    failure_code=str(d["error_code"]) if d.get("error_code") else None,
                )
                for d in lines
            )
        except ValueError as exc:
            raise UnknownOutcome("unparseable_response", str(exc)) from exc
        return SplitState(
            out_order_no=out_order_no,
            status=status,
            channel_split_no=str(data["settle_no"]) if data.get("settle_no") else None,
            failure_code=failure_code,
            failure_message=failure_message,
            raw=data,
            receivers=results,
        )

    @staticmethod
    def _royalty_entity(receiver: SplitReceiver) -> dict[str, str]:
        """A receiver as a ``receiver_list`` entry: a company is bound by user id; a person by
        user id when the account is one (2088…), else by login name, which needs the name."""
        if receiver.type is SplitReceiverType.merchant or p.is_user_id(receiver.account):
            if not p.is_user_id(receiver.account):
                raise BusinessError("invalid_receiver", "a merchant receiver needs a 2088… id")
            kind = p.SPLIT_USER_ID
        else:
            if not receiver.name:
                raise BusinessError("invalid_receiver", "a login-name receiver needs its name")
            kind = p.SPLIT_LOGIN_NAME
        entity = {"type": kind, "account": receiver.account}
        if receiver.name:
            entity["name"] = receiver.name
        entity["memo"] = receiver.description[:ROYALTY_DESC_MAX]
        return entity


def _bind_request_no(request: CreateSplit) -> str:
    """The bind's ``out_request_no`` (≤ 32 letters, digits, ``_``), derived from the split id so
    a retried split binds with the same number."""
    return ("b" + request.out_order_no)[:32]

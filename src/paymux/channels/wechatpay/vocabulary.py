"""WeChat Pay API v3 wire vocabulary: the states WeChat reports for payments, refunds,
transfer bills and split orders with their descriptions and normalised statuses, and the
paths, id rules and timings of payouts and payment codes. Pure data and functions, no I/O;
:mod:`paymux.channels.wechatpay.protocol` re-exports every name, so callers keep using
``protocol.X``.
"""

from __future__ import annotations

import re

from paymux.channels.base import (
    ChannelPaymentStatus,
    ChannelRefundStatus,
    ChannelSplitStatus,
    ChannelTransferStatus,
    FailureCategory,
)

# ---------------------------------------------------------------- wire vocabulary
TRADE_STATES: dict[str, ChannelPaymentStatus] = {
    "SUCCESS": ChannelPaymentStatus.succeeded,
    "NOTPAY": ChannelPaymentStatus.pending,
    "USERPAYING": ChannelPaymentStatus.pending,
    "CLOSED": ChannelPaymentStatus.closed,
    "REVOKED": ChannelPaymentStatus.closed,
    "PAYERROR": ChannelPaymentStatus.failed,
    "REFUND": ChannelPaymentStatus.succeeded,  # paid, then (partly) refunded: still a payment
}

#: ``trade_state`` of an unpaid order → the failure category if the gateway decides it failed
#: (docs/api.md "Final statuses"). WeChat says no more than PAYERROR (支付失败: the bank or
#: WeChat refused); CLOSED is our close or the order's expiry, decided by the gateway.
TRADE_FAILURES: dict[str, FailureCategory] = {
    "PAYERROR": FailureCategory.payment_declined,
}

TRADE_STATE_DESC: dict[str, str] = {
    "SUCCESS": "支付成功",
    "NOTPAY": "订单未支付",
    "USERPAYING": "用户支付中",
    "CLOSED": "订单已关闭",
    "REVOKED": "订单已撤销",
    "PAYERROR": "支付失败，请重新下单支付",
}

#: Our method name → (path suffix of the create endpoint, wire ``trade_type``).
METHOD_ENDPOINTS: dict[str, tuple[str, str]] = {
    "wechat_native": ("native", "NATIVE"),
    "wechat_jsapi": ("jsapi", "JSAPI"),
    "wechat_mini": ("jsapi", "JSAPI"),  # a mini-program pays a JSAPI order under its own appid
    "wechat_h5": ("h5", "MWEB"),
    "wechat_app": ("app", "APP"),
}


def map_trade_state(trade_state: str) -> ChannelPaymentStatus:
    """WeChat ``trade_state`` → normalised status (ValueError if unknown)."""
    try:
        return TRADE_STATES[trade_state]
    except KeyError:
        raise ValueError(f"unknown trade_state {trade_state!r}") from None


# ---------------------------------------------------------------- refunds
#: ``status`` of a refund object (create / query answer) and ``refund_status`` of a refund
#: notification resource → normalised status. ABNORMAL (the money could not reach the payer,
#: e.g. a cancelled card) needs an operator at the merchant platform: failed for us.
REFUND_STATES: dict[str, ChannelRefundStatus] = {
    "SUCCESS": ChannelRefundStatus.succeeded,
    "PROCESSING": ChannelRefundStatus.pending,
    "CLOSED": ChannelRefundStatus.failed,
    "ABNORMAL": ChannelRefundStatus.failed,
}

REFUND_STATE_DESC: dict[str, str] = {
    "SUCCESS": "退款成功",
    "PROCESSING": "退款处理中",
    "CLOSED": "退款关闭",
    "ABNORMAL": "退款异常",
}

#: Refund notification ``event_type`` → the ``refund_status`` it announces.
REFUND_EVENTS: dict[str, str] = {
    "REFUND.SUCCESS": "SUCCESS",
    "REFUND.ABNORMAL": "ABNORMAL",
    "REFUND.CLOSED": "CLOSED",
}

REFUND_RESOURCE_TYPE = "refund"
"""``original_type`` and ``associated_data`` of a refund notification resource."""


def map_refund_state(status: str) -> ChannelRefundStatus:
    """WeChat refund ``status`` / ``refund_status`` → normalised status (ValueError if unknown)."""
    try:
        return REFUND_STATES[status]
    except KeyError:
        raise ValueError(f"unknown refund status {status!r}") from None


# ---------------------------------------------------------------- merchant transfers (商家转账)
#: ``state`` of a transfer bill (create / query answer, notification resource) → normalised.
#: WAIT_USER_CONFIRM: the payee must confirm in WeChat (``package_info`` opens that page);
#: TRANSFERING: confirmed, result not yet known; CANCELING/CANCELLED: the merchant revoked it.
TRANSFER_STATES: dict[str, ChannelTransferStatus] = {
    "ACCEPTED": ChannelTransferStatus.pending,
    "PROCESSING": ChannelTransferStatus.pending,
    "WAIT_USER_CONFIRM": ChannelTransferStatus.pending,
    "TRANSFERING": ChannelTransferStatus.pending,
    "CANCELING": ChannelTransferStatus.pending,
    "SUCCESS": ChannelTransferStatus.succeeded,
    "FAIL": ChannelTransferStatus.failed,
    "CANCELLED": ChannelTransferStatus.failed,
}

TRANSFER_STATE_DESC: dict[str, str] = {
    "ACCEPTED": "转账已受理",
    "PROCESSING": "转账锁定资金中",
    "WAIT_USER_CONFIRM": "待收款用户确认",
    "TRANSFERING": "转账中",
    "SUCCESS": "转账成功",
    "FAIL": "转账失败",
    "CANCELING": "转账撤销中",
    "CANCELLED": "转账撤销完成",
}

TRANSFER_FINAL_STATES = frozenset({"SUCCESS", "FAIL", "CANCELLED"})
TRANSFER_EVENT = "MCHTRANSFER.BILL.FINISHED"
TRANSFER_RESOURCE_TYPE = "mch_payment"
"""``original_type`` and ``associated_data`` of a transfer notification resource."""

_NOT_BILL_NO = re.compile(r"[^0-9A-Za-z]")


def transfer_bill_no(out_biz_no: str) -> str:
    """Our payout id as WeChat's ``out_bill_no`` (letters and digits only, ≤ 32): every other
    character is dropped, so ``po_01jd…`` becomes ``po01jd…``. ValueError if nothing valid
    remains or it is too long."""
    bill_no = _NOT_BILL_NO.sub("", out_biz_no)
    if not 1 <= len(bill_no) <= 32:
        raise ValueError(f"{out_biz_no!r} cannot be a WeChat out_bill_no")
    return bill_no


def payout_id_of(bill_no: str) -> str:
    """The inverse of :func:`transfer_bill_no` for paymux ids (``<prefix>_<26 characters>``,
    see ``kit/ids.py``): ``po01jd…`` → ``po_01jd…``. Other numbers come back unchanged."""
    if len(bill_no) > _ID_BODY and bill_no[:-_ID_BODY].isalpha():
        return f"{bill_no[:-_ID_BODY]}_{bill_no[-_ID_BODY:]}"
    return bill_no


_ID_BODY = 26


def map_transfer_state(state: str) -> ChannelTransferStatus:
    """WeChat transfer bill ``state`` → normalised status (ValueError if unknown)."""
    try:
        return TRANSFER_STATES[state]
    except KeyError:
        raise ValueError(f"unknown transfer state {state!r}") from None


# ---------------------------------------------------------------- profit sharing (分账)
#: Split order ``state``: PROCESSING until every receiver's ``result`` is final, then FINISHED.
SPLIT_ORDER_STATES = frozenset({"PROCESSING", "FINISHED"})
#: A receiver's ``result``: PENDING (待分账), SUCCESS (分账成功), CLOSED (已关闭, not paid).
SPLIT_RESULTS = frozenset({"PENDING", "SUCCESS", "CLOSED"})
SPLIT_FAIL_REASONS: dict[str, str] = {
    "ACCOUNT_ABNORMAL": "分账接收账户异常",
    "NO_RELATION": "分账关系已解除",
    "RECEIVER_HIGH_RISK": "高风险接收方",
    "RECEIVER_REAL_NAME_NOT_VERIFIED": "接收方未实名",
    "NO_AUTH": "分账权限已解除",
}
#: Our receiver type → WeChat ``type``.
SPLIT_RECEIVER_TYPES: dict[str, str] = {
    "merchant": "MERCHANT_ID",
    "person": "PERSONAL_OPENID",
}
MAX_SPLIT_RECEIVERS = 50
SPLIT_ORDER_NO = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")


def split_status(state: str, results: list[str]) -> ChannelSplitStatus:
    """A split order's ``state`` and its receivers' ``result`` values → normalised status.

    FINISHED with every receiver SUCCESS is succeeded, with every receiver CLOSED failed, and
    with both partial. ValueError on an unknown state or result."""
    if state not in SPLIT_ORDER_STATES or not set(results) <= SPLIT_RESULTS:
        raise ValueError(f"unknown split state {state!r} / results {results!r}")
    if state == "PROCESSING" or "PENDING" in results:
        return ChannelSplitStatus.pending
    if results and all(result == "CLOSED" for result in results):
        return ChannelSplitStatus.failed
    if "CLOSED" in results:
        return ChannelSplitStatus.partial
    return ChannelSplitStatus.succeeded


SPLIT_RESULT_STATUS: dict[str, ChannelSplitStatus] = {
    "SUCCESS": ChannelSplitStatus.succeeded,
    "CLOSED": ChannelSplitStatus.failed,
    "PENDING": ChannelSplitStatus.pending,
}
"""A receiver's ``result`` → its normalised status."""


# ---------------------------------------------------------------- payment codes (付款码支付)
# APIv3 付款码支付, published 2024-04 (pay.weixin.qq.com/docs/merchant/apis/code-payment-v3/
# direct/code-pay.html; wechatpayv3's ``pay(pay_type=CODEPAY)`` and ``codepay_reverse``):
# ``POST /v3/pay/transactions/codepay`` with ``appid mchid description out_trade_no
# payer.auth_code amount scene_info{device_id, device_ip, store_info{id, out_id}}`` — no
# ``notify_url`` (a code payment is not notified: the answer and queries tell the outcome).
# The answer is the transaction object; ``trade_state`` USERPAYING means the customer must
# confirm (enter the password) and is queried (``GET …/out-trade-no/{no}``) until final.
# An order still unknown is reversed (撤销): ``POST …/out-trade-no/{no}/reverse`` with
# ``appid mchid``; a reversed unpaid order is closed, a reversed paid one refunded
# (trade_state REVOKED).
BARCODE_METHOD = "wechat_barcode"
CODEPAY_KIND = "codepay"
CODEPAY_TRADE_TYPE = "MICROPAY"
CODEPAY_PATH = "/v3/pay/transactions/codepay"
#: 18 digits starting 10–15 (jeepay ``JeepayKit.getPayWayCodeByBarCode``; WeChat's 付款码规则).
PAYMENT_CODE_LENGTHS = frozenset({18})
PAYMENT_CODE_PREFIXES = ("10", "11", "12", "13", "14", "15")
#: WeChat's advice for USERPAYING: query every 5–10 s; give up (reverse) after 30–45 s; never
#: reverse sooner than 15 s after the charge (v2 付款码支付 page, pay.weixin.qq.com/doc/v2/
#: merchant/4011937125, which the v3 page points back to for the flow).
BARCODE_POLL_SECONDS = 5.0
BARCODE_REVERSE_AFTER_SECONDS = 45.0
DEFAULT_STORE_OUT_ID = "paymux"


def reverse_path(out_trade_no: str) -> str:
    from urllib.parse import quote

    return f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}/reverse"


def is_payment_code(code: str) -> bool:
    return (
        code.isascii()
        and code.isdigit()
        and len(code) in PAYMENT_CODE_LENGTHS
        and code.startswith(PAYMENT_CODE_PREFIXES)
    )

"""WeChat Pay payouts (商家转账, transfer bills): adapter ↔ sandbox end to end.

``POST /v3/fund-app/mch-transfer/transfer-bills``, ``GET …/out-bill-no/{out_bill_no}`` and
``MCHTRANSFER.BILL.FINISHED``. The official ``wechatpayv3`` SDK is the independent oracle: its
own ``mch_transfer_bills`` request (its field names, its ``user_name`` encryption, its
``Wechatpay-Serial``) must be accepted by the sandbox, it must verify the sandbox's answers and
decrypt its notifications, and it must decrypt the names the adapter encrypts.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import wechatpayv3.core as wx_core
import wechatpayv3.utils as wx_utils
from wechatpayv3 import WeChatPay, WeChatPayType

from paymux.channels.base import (
    BusinessError,
    ChannelTransferStatus,
    CreateTransfer,
    InvalidNotification,
    PayeeType,
    RetryableError,
    TransferState,
    UnknownOutcome,
)
from paymux.channels.sandbox_kit import NotifyMode, RefundOutcome, RefundScript
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.adapter import WechatPayAdapter, classify_transfer_answer
from paymux.channels.wechatpay.sandbox import Sandbox
from paymux.kit.ids import new_id
from tests.channels.test_wechatpay import BASE, Env, RefusingTransport, settle_tasks, until
from tests.channels.test_wechatpay_refunds import open_env, signed_call

TRANSFER_NOTIFY_URL = "http://merchant.test/notify/wechatpay/transfers"
SCENE = {
    "transfer_scene_id": "1000",
    "transfer_scene_report_infos": [
        {"info_type": "活动名称", "info_content": "新会员有礼"},
        {"info_type": "奖励说明"},
    ],
}
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
PATH = "/v3/fund-app/mch-transfer/transfer-bills"


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with open_env() as opened:
        opened.creds = {**opened.creds, **SCENE}
        opened.adapter = WechatPayAdapter(opened.creds, opened.http)
        yield opened


def payout(amount: int = 5000, **extra: Any) -> CreateTransfer:
    values: dict[str, Any] = {
        "out_biz_no": new_id("po"),
        "amount": amount,
        "currency": "CNY",
        "payee_type": PayeeType.wechat_openid,
        "payee_account": OPENID,
        "payee_name": None,
        "remark": "佣金提现",
        "notify_url": TRANSFER_NOTIFY_URL,
        **extra,
    }
    return CreateTransfer(**values)


def transfer_notifications(env: Env) -> list[tuple[dict[str, str], bytes]]:
    return [
        (h, b) for h, b in env.receiver.received
        if json.loads(b)["event_type"] == "MCHTRANSFER.BILL.FINISHED"
    ]  # fmt: skip


async def transfer_of(env: Env, headers: dict[str, str], raw: bytes) -> tuple[str, TransferState]:
    """Parse a transfer notification through the adapter's one entry point."""
    note = await env.adapter.parse_notification(headers, raw)
    assert note.payment is None and note.refund is None and note.transfer is not None
    return note.event_key, note.transfer


async def transfer_notified(env: Env, count: int = 1) -> list[tuple[dict[str, str], bytes]]:
    await until(lambda: len(transfer_notifications(env)) >= count, "transfer notifications")
    return transfer_notifications(env)


def bill_of(env: Env, request: CreateTransfer) -> Any:
    bill_no = protocol.transfer_bill_no(request.out_biz_no)
    return env.sandbox.transfers.get((env.creds["mchid"], bill_no))


class SdkRequests:
    """Stands in for ``requests`` inside ``wechatpayv3.core``: the official SDK's own HTTP calls
    (made in a worker thread) reach the sandbox through the test's client on the test's loop."""

    def __init__(self, http: httpx.AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        self.http, self.loop = http, loop

    def _send(self, method: str, url: str, headers: Any, content: bytes | None) -> Any:
        call = self.http.request(method, url, headers=headers, content=content)
        return asyncio.run_coroutine_threadsafe(call, self.loop).result(timeout=10)

    def get(self, url: str, headers: Any = None, **_: Any) -> Any:
        return self._send("GET", url, headers, None)

    def post(self, url: str, json: Any = None, data: Any = None, headers: Any = None,
             **_: Any) -> Any:  # fmt: skip
        import json as jsonlib

        body = jsonlib.dumps(json, allow_nan=False).encode() if json is not None else data
        return self._send("POST", url, headers, body)


def official_client(env: Env, monkeypatch: pytest.MonkeyPatch) -> WeChatPay:
    """The official SDK for our merchant, its HTTP routed to the sandbox."""
    c = env.creds
    client = WeChatPay(
        wechatpay_type=WeChatPayType.MINIPROG, mchid=c["mchid"],
        private_key=c["merchant_private_key"], cert_serial_no=c["merchant_serial_no"],
        appid=c["appid"], apiv3_key=c["apiv3_key"], notify_url=TRANSFER_NOTIFY_URL,
        public_key=c["platform_public_key"], public_key_id=c["platform_public_key_id"],
    )  # fmt: skip
    client._core._gate_way = BASE
    monkeypatch.setattr(wx_core, "requests", SdkRequests(env.http, asyncio.get_running_loop()))
    return client


# ------------------------------------------------------------------ the payee confirms
async def test_transfer_waits_for_the_payee_then_succeeds(env: Env) -> None:
    env.sandbox.add_transfer_script(RefundScript(outcome=RefundOutcome.delayed, delay=1e9))
    request = payout(payee_name="张三")
    state = await env.adapter.create_transfer(request)
    assert state.status is ChannelTransferStatus.pending
    assert state.out_biz_no == request.out_biz_no
    assert state.raw["state"] == "WAIT_USER_CONFIRM"
    assert state.raw["package_info"]  # what wx.requestMerchantTransfer needs
    assert state.channel_transfer_no and state.amount == 5000 and state.finished_at is None

    sent = env.sent[-1]
    assert (sent.method, sent.url.path) == ("POST", PATH)
    assert sent.headers["Wechatpay-Serial"] == env.creds["platform_public_key_id"]
    body = json.loads(sent.content)
    bill_no = protocol.transfer_bill_no(request.out_biz_no)
    assert bill_no == request.out_biz_no.replace("_", "")
    assert {k: v for k, v in body.items() if k != "user_name"} == {
        "appid": env.creds["appid"], "out_bill_no": bill_no, "transfer_scene_id": "1000",
        "openid": OPENID, "transfer_amount": 5000, "transfer_remark": "佣金提现",
        "notify_url": TRANSFER_NOTIFY_URL,
        "transfer_scene_report_infos": [
            {"info_type": "活动名称", "info_content": "新会员有礼"},
            {"info_type": "奖励说明", "info_content": "佣金提现"},
        ],
    }  # fmt: skip
    # The name travels encrypted: the sandbox decrypted it, and so does the official SDK's
    # decryptor given the platform's private key.
    assert body["user_name"] != "张三"
    assert wx_utils.rsa_decrypt(body["user_name"], env.sandbox.platform_private_key) == "张三"
    assert bill_of(env, request).user_name == "张三"

    queried = await env.adapter.query_transfer(request.out_biz_no)
    assert queried.status is ChannelTransferStatus.pending
    assert queried.raw["mch_id"] == env.creds["mchid"]
    assert env.sent[-1].url.path == f"{PATH}/out-bill-no/{bill_no}"
    await settle_tasks()
    assert transfer_notifications(env) == []  # not final: not notified

    r = await env.http.post(f"{BASE}/_sandbox/transfers/{bill_no}/confirm", json={})
    assert r.json() == {"out_bill_no": bill_no, "state": "SUCCESS", "changed": True}
    [(headers, raw)] = await transfer_notified(env)
    envelope = json.loads(raw)
    assert envelope["summary"] == "商家转账单据终态通知"
    assert envelope["resource"]["original_type"] == "mch_payment"
    event_key, notified = await transfer_of(env, headers, raw)
    assert event_key == envelope["id"]
    assert notified.status is ChannelTransferStatus.succeeded
    assert notified.out_biz_no == request.out_biz_no  # our payout id, not the bill number
    assert notified.channel_transfer_no == state.channel_transfer_no
    assert notified.amount == 5000 and notified.finished_at is not None
    official = env.official().callback(headers, raw)
    assert official is not None and official["resource"] == notified.raw
    assert set(official["resource"]) == {
        "mchid", "out_bill_no", "transfer_bill_no", "state", "transfer_amount", "openid",
        "create_time", "update_time",
    }  # fmt: skip

    done = await env.adapter.query_transfer(request.out_biz_no)
    assert done.status is ChannelTransferStatus.succeeded
    assert done.finished_at == notified.finished_at
    r = await env.http.post(f"{BASE}/_sandbox/transfers/{bill_no}/confirm", json={})
    assert r.json()["changed"] is False


async def test_transfer_accepted_at_once_succeeds_and_notifies(env: Env) -> None:
    request = payout()
    state = await env.adapter.create_transfer(request)
    assert state.status is ChannelTransferStatus.succeeded
    assert "package_info" not in state.raw
    assert "user_name" not in json.loads(env.sent[-1].content)
    [(headers, raw)] = await transfer_notified(env)
    _, notified = await transfer_of(env, headers, raw)
    assert notified.status is ChannelTransferStatus.succeeded


async def test_transfer_replay_is_idempotent(env: Env) -> None:
    request = payout()
    first = await env.adapter.create_transfer(request)
    again = await env.adapter.create_transfer(request)
    assert again.channel_transfer_no == first.channel_transfer_no
    assert again.status is ChannelTransferStatus.succeeded
    assert len(env.sandbox.transfers) == 1
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_transfer(payout(amount=5001, out_biz_no=request.out_biz_no))
    assert info.value.code == "duplicate_out_biz_no"
    assert len(env.sandbox.transfers) == 1
    await transfer_notified(env)
    await settle_tasks()
    assert len(transfer_notifications(env)) == 1


# ------------------------------------------------------------------ failures
async def test_failed_transfer_is_notified_failed(env: Env) -> None:
    r = await env.http.post(f"{BASE}/_sandbox/transfer_scripts", json={"outcome": "fail"})
    assert r.status_code == 200
    request = payout()
    state = await env.adapter.create_transfer(request)
    assert state.status is ChannelTransferStatus.pending
    [(headers, raw)] = await transfer_notified(env)
    _, notified = await transfer_of(env, headers, raw)
    assert notified.status is ChannelTransferStatus.failed
    assert notified.failure_code == "PAYEE_ACCOUNT_ABNORMAL"
    assert notified.failure_message == "转账失败"
    assert env.official().callback(headers, raw)["resource"]["state"] == "FAIL"
    queried = await env.adapter.query_transfer(request.out_biz_no)
    assert queried.status is ChannelTransferStatus.failed
    assert queried.failure_code == "PAYEE_ACCOUNT_ABNORMAL"


async def test_payee_declining_fails_the_transfer(env: Env) -> None:
    env.sandbox.add_transfer_script(RefundScript(outcome=RefundOutcome.delayed, delay=1e9))
    request = payout()
    await env.adapter.create_transfer(request)
    bill_no = protocol.transfer_bill_no(request.out_biz_no)
    r = await env.http.post(
        f"{BASE}/_sandbox/transfers/{bill_no}/confirm", json={"result": "decline"}
    )
    assert r.json()["state"] == "FAIL"
    [(headers, raw)] = await transfer_notified(env)
    _, notified = await transfer_of(env, headers, raw)
    assert notified.status is ChannelTransferStatus.failed
    r = await env.http.get(f"{BASE}/_sandbox/transfers/{bill_no}")
    assert r.json()["state"] == "FAIL" and r.json()["notifications_sent"] == 1
    assert (await env.http.get(f"{BASE}/_sandbox/transfers/nosuchbill")).status_code == 404


async def test_refused_transfer_is_insufficient_balance(env: Env) -> None:
    env.sandbox.add_transfer_script(RefundScript(outcome=RefundOutcome.refuse))
    request = payout()
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_transfer(request)
    assert info.value.code == "insufficient_balance"
    assert info.value.raw["code"] == "NOT_ENOUGH"
    missing = await env.adapter.query_transfer(request.out_biz_no)
    assert missing.status is ChannelTransferStatus.not_found
    assert missing.raw["code"] == "NOT_FOUND"


async def test_create_error_is_unknown_outcome_resolved_by_query(env: Env) -> None:
    env.sandbox.add_transfer_script(RefundScript(outcome=RefundOutcome.create_error))
    request = payout()
    with pytest.raises(UnknownOutcome) as info:
        await env.adapter.create_transfer(request)
    assert info.value.code == "system_error"
    missing = await env.adapter.query_transfer(request.out_biz_no)
    assert missing.status is ChannelTransferStatus.not_found
    retried = await env.adapter.create_transfer(request)  # same number, now created
    assert retried.status is ChannelTransferStatus.succeeded


async def test_create_timeout_is_unknown_outcome_resolved_by_query(env: Env) -> None:
    env.sandbox.add_transfer_script(RefundScript(outcome=RefundOutcome.create_timeout))
    request = payout()
    async with env.client(timeout=0.05) as impatient:
        with pytest.raises(UnknownOutcome) as info:
            await WechatPayAdapter(env.creds, impatient).create_transfer(request)
    assert info.value.code == "read_timeout"
    queried = await env.adapter.query_transfer(request.out_biz_no)
    assert queried.status is ChannelTransferStatus.succeeded
    again = await env.adapter.create_transfer(request)
    assert again.channel_transfer_no == queried.channel_transfer_no


async def test_transfer_connect_error_is_retryable(env: Env) -> None:
    async with httpx.AsyncClient(transport=RefusingTransport()) as refused:
        adapter = WechatPayAdapter(env.creds, refused)
        with pytest.raises(RetryableError):
            await adapter.create_transfer(payout())
        with pytest.raises(RetryableError):
            await adapter.query_transfer("po_x")


async def test_transfer_checks_before_any_call(env: Env) -> None:
    unconfigured = WechatPayAdapter({k: v for k, v in env.creds.items() if k not in SCENE},
                                    env.http)  # fmt: skip
    cases: list[tuple[WechatPayAdapter, CreateTransfer, str]] = [
        (env.adapter, payout(payee_type=PayeeType.alipay_user_id), "unsupported_payee_type"),
        (env.adapter, payout(currency="USD"), "unsupported_currency"),
        (env.adapter, payout(amount=0), "invalid_amount"),
        (env.adapter, payout(payee_account=""), "invalid_payee"),
        (env.adapter, payout(amount=200_000), "payee_name_required"),
        (env.adapter, payout(out_biz_no="___"), "invalid_request"),
        (env.adapter, payout(out_biz_no="x" * 33), "invalid_request"),
        (unconfigured, payout(), "transfer_not_configured"),
    ]
    for adapter, request, code in cases:
        with pytest.raises(BusinessError) as info:
            await adapter.create_transfer(request)
        assert info.value.code == code, request
    assert env.sent == []
    assert WechatPayAdapter.payee_types == {PayeeType.wechat_openid}


async def test_large_transfer_carries_the_encrypted_name(env: Env) -> None:
    request = payout(amount=200_000, payee_name="李四")
    state = await env.adapter.create_transfer(request)
    assert state.status is ChannelTransferStatus.succeeded
    assert bill_of(env, request).user_name == "李四"
    tiny = payout(amount=29, payee_name="李四")  # below 0.30 yuan no name is sent
    await env.adapter.create_transfer(tiny)
    assert "user_name" not in json.loads(env.sent[-1].content)


async def test_transfer_notification_is_retried_until_acknowledged(env: Env) -> None:
    env.receiver.statuses.extend([500, 404])
    await env.adapter.create_transfer(payout())
    await transfer_notified(env, 3)
    assert len({raw for _, raw in transfer_notifications(env)}) == 1
    acks = [d["acked"] for d in env.sandbox.core.deliveries if "out_bill_no" in d]
    assert acks == [False, False, True]
    env.sandbox.add_transfer_script(RefundScript(notify=NotifyMode.none))
    await env.adapter.create_transfer(payout())
    await settle_tasks()
    assert len(transfer_notifications(env)) == 3


# ------------------------------------------------------------------ the official SDK as oracle
async def test_official_sdk_transfer_request_is_accepted(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.sandbox.add_transfer_script(RefundScript(outcome=RefundOutcome.delayed, delay=1e9))
    client = official_client(env, monkeypatch)
    bill_no = "sdk" + uuid.uuid4().hex[:20]
    code, message = await asyncio.to_thread(
        client.mch_transfer_bills, out_bill_no=bill_no, transfer_scene_id="1000",
        openid=OPENID, transfer_amount=300_000, transfer_remark="2025年4月报销",
        user_name="王五",
        transfer_scene_report_infos=[{"info_type": "活动名称", "info_content": "新会员有礼"}],
    )  # fmt: skip
    assert code == 200, message  # the SDK verified the sandbox's signature on the way
    answer = json.loads(message)
    assert answer["state"] == "WAIT_USER_CONFIRM" and answer["package_info"]
    transfer = env.sandbox.transfers[(env.creds["mchid"], bill_no)]
    assert transfer.user_name == "王五"  # the SDK's encryption, our decryption
    code, message = await asyncio.to_thread(client.mch_transfer_bills_query, out_bill_no=bill_no)
    assert code == 200 and json.loads(message)["transfer_amount"] == 300_000
    # Our adapter reads the bill the SDK made.
    state = await env.adapter.query_transfer(bill_no)
    assert state.status is ChannelTransferStatus.pending and state.amount == 300_000


async def test_sandbox_validates_transfer_requests(env: Env) -> None:
    good = {
        "appid": env.creds["appid"], "out_bill_no": "bill" + uuid.uuid4().hex[:20],
        "transfer_scene_id": "1000", "openid": OPENID, "transfer_amount": 100,
        "transfer_remark": "奖励", "transfer_scene_report_infos": [
            {"info_type": "活动名称", "info_content": "新会员有礼"}],
    }  # fmt: skip
    name = protocol.encrypt_sensitive(
        protocol.load_public_key(env.creds["platform_public_key"]), "张三"
    )
    cases: list[tuple[Any, dict[str, str], int, str]] = [
        ({**good, "out_bill_no": "po_123"}, {}, 400, "PARAM_ERROR"),
        ({**good, "transfer_amount": "100"}, {}, 400, "PARAM_ERROR"),
        ({**good, "transfer_remark": "x" * 33}, {}, 400, "PARAM_ERROR"),
        ({**good, "transfer_scene_report_infos": []}, {}, 400, "PARAM_ERROR"),
        ({k: v for k, v in good.items() if k != "openid"}, {}, 400, "PARAM_ERROR"),
        ({**good, "appid": "wx0000"}, {}, 400, "INVALID_REQUEST"),
        ({**good, "transfer_amount": 200_000}, {}, 400, "PARAM_ERROR"),
        ({**good, "user_name": name}, {}, 400, "PARAM_ERROR"),  # no Wechatpay-Serial
        ({**good, "user_name": "not-encrypted"},
         {"Wechatpay-Serial": env.creds["platform_public_key_id"]}, 400, "PARAM_ERROR"),
        ({**good, "notify_url": "http://merchant.test/x?y=1"}, {}, 400, "PARAM_ERROR"),
    ]  # fmt: skip
    for data, extra, status, code in cases:
        body = protocol.encode_json(data)
        headers = {**signed_call(env, "POST", PATH, body), **extra}
        r = await env.http.post(BASE + PATH, content=body, headers=headers)
        assert (r.status_code, r.json()["code"]) == (status, code), (data, r.text)
        assert env.official()._verify_signature(r.headers, r.text)
    assert env.sandbox.transfers == {}
    body = protocol.encode_json({**good, "user_name": name})
    headers = {**signed_call(env, "POST", PATH, body),
               "Wechatpay-Serial": env.creds["platform_public_key_id"]}  # fmt: skip
    r = await env.http.post(BASE + PATH, content=body, headers=headers)
    assert r.status_code == 200, r.text
    r = await env.http.get(BASE + PATH + "/out-bill-no/x")
    assert r.status_code == 401


async def test_forged_and_foreign_transfer_notifications_are_rejected(env: Env) -> None:
    await env.adapter.create_transfer(payout())
    [(headers, raw)] = await transfer_notified(env)

    async def rejected(adapter: WechatPayAdapter, h: dict[str, str], b: bytes) -> str:
        with pytest.raises(InvalidNotification) as info:
            await adapter.parse_notification(h, b)
        return info.value.code

    impostor = Sandbox()
    forged = {**headers, **{k.lower(): v for k, v in impostor.sign(raw).items()}}
    forged["wechatpay-serial"] = env.creds["platform_public_key_id"]
    assert await rejected(env.adapter, forged, raw) == "bad_signature"
    other = env.sandbox.provision(BASE)
    assert await rejected(WechatPayAdapter(other, env.http), headers, raw) == "decrypt_failed"
    same_key = WechatPayAdapter({**other, "apiv3_key": env.creds["apiv3_key"]}, env.http)
    assert await rejected(same_key, headers, raw) == "wrong_merchant"
    # A bill that is not final cannot be announced as finished.
    resource = json.loads(protocol.decrypt_resource(env.creds["apiv3_key"],
                                                    json.loads(raw)["resource"]))  # fmt: skip
    for data in ({**resource, "state": "WAIT_USER_CONFIRM"}, {**resource, "state": "NEW"}):
        envelope = {**json.loads(raw), "resource": protocol.encrypt_resource(
            env.creds["apiv3_key"], protocol.encode_json(data),
            original_type="mch_payment", associated_data="mch_payment")}  # fmt: skip
        body = protocol.encode_json(envelope)
        assert await rejected(env.adapter, env.sandbox.sign(body), body) == "malformed"
    # A payment notification is not a transfer notification.
    wrong_event = {**json.loads(raw), "event_type": "TRANSACTION.SUCCESS"}
    body = protocol.encode_json(wrong_event)
    assert await rejected(env.adapter, env.sandbox.sign(body), body) == "unsupported_event"


def test_transfer_vocabulary_and_error_classification() -> None:
    assert protocol.map_transfer_state("WAIT_USER_CONFIRM") is ChannelTransferStatus.pending
    for pending in ("ACCEPTED", "PROCESSING", "TRANSFERING", "CANCELING"):
        assert protocol.map_transfer_state(pending) is ChannelTransferStatus.pending
    assert protocol.map_transfer_state("SUCCESS") is ChannelTransferStatus.succeeded
    assert protocol.map_transfer_state("FAIL") is ChannelTransferStatus.failed
    assert protocol.map_transfer_state("CANCELLED") is ChannelTransferStatus.failed
    with pytest.raises(ValueError):
        protocol.map_transfer_state("DONE")
    assert protocol.transfer_bill_no("po_01jd3xABC") == "po01jd3xABC"
    cases: list[tuple[int, Any, type[Exception], str]] = [
        (500, {"code": "SYSTEM_ERROR"}, UnknownOutcome, "system_error"),
        (429, {"code": "FREQUENCY_LIMITED"}, UnknownOutcome, "frequency_limited"),
        (403, {"code": "NOT_ENOUGH", "message": "商户运营账户资金不足"}, BusinessError,
         "insufficient_balance"),
        (400, {"code": "PARAM_ERROR"}, BusinessError, "invalid_request"),
        (400, {"code": "INVALID_REQUEST", "message": "你尚未获取该转账场景"}, BusinessError,
         "invalid_request"),
        (400, {"code": "INVALID_REQUEST", "message": "商户单号重复"}, BusinessError,
         "duplicate_out_biz_no"),
        (403, {"code": "NO_AUTH"}, BusinessError, "not_authorized"),
        (404, {"code": "NOT_FOUND"}, BusinessError, "not_found"),
        # WeChat: never assume an unknown error means nothing happened.
        (403, {"code": "SOMETHING_NEW"}, UnknownOutcome, "something_new"),
        (502, None, UnknownOutcome, "http_502"),
    ]  # fmt: skip
    for status, payload, kind, code in cases:
        error = classify_transfer_answer(status, payload)
        assert type(error) is kind and error.code == code, (status, payload)

"""WeChat Pay profit sharing (分账): adapter ↔ sandbox end to end.

``settle_info.profit_sharing`` at order creation, ``POST /v3/profitsharing/receivers/add``,
``POST /v3/profitsharing/orders`` and ``GET /v3/profitsharing/orders/{out_order_no}``. Receiver
names travel RSAES-OAEP encrypted under ``Wechatpay-Serial``: the sandbox decrypts them, the
official SDK decrypts what the adapter encrypts, and the sandbox accepts the SDK's own calls.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import wechatpayv3.utils as wx_utils

from paymux.channels.base import (
    BusinessError,
    ChannelSplitStatus,
    CreatePayment,
    CreateSplit,
    RetryableError,
    SplitReceiver,
    SplitReceiverType,
    UnknownOutcome,
)
from paymux.channels.sandbox_kit import RefundOutcome, RefundScript
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.adapter import WechatPayAdapter, classify_split_answer
from tests.channels.test_wechatpay import BASE, Env, pay, payment, settle_tasks, until
from tests.channels.test_wechatpay_refunds import open_env, refund_of, signed_call
from tests.channels.test_wechatpay_transfers import official_client

PARTNER_MCHID = "1900000109"
PARTNER_NAME = "示例商户全称"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
ORDERS = "/v3/profitsharing/orders"
ADD = "/v3/profitsharing/receivers/add"


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with open_env() as opened:
        yield opened


async def splittable(env: Env, amount: int = 10_000, profit_sharing: bool = True) -> Any:
    """A paid order created to stay splittable; returns the sandbox order."""
    created: CreatePayment = payment(amount=amount, profit_sharing=profit_sharing)
    await env.adapter.create_payment(created)
    before = len(env.receiver.received)
    await pay(env, created.out_trade_no)
    await until(lambda: len(env.receiver.received) > before, "the payment notification")
    order = env.sandbox.core.find(created.out_trade_no)
    assert order is not None
    return order


def merchant(amount: int, name: str | None = PARTNER_NAME) -> SplitReceiver:
    return SplitReceiver(SplitReceiverType.merchant, PARTNER_MCHID, amount, "平台服务费", name)


def person(amount: int, name: str | None = "张三", account: str = OPENID) -> SplitReceiver:
    return SplitReceiver(SplitReceiverType.person, account, amount, "分销佣金", name)


def split_of(order: Any, *receivers: SplitReceiver, **extra: Any) -> CreateSplit:
    values: dict[str, Any] = {
        "out_order_no": "spl_" + uuid.uuid4().hex[:20],
        "out_trade_no": order.out_trade_no,
        "channel_trade_no": order.channel_trade_no,
        "receivers": receivers,
        **extra,
    }
    return CreateSplit(**values)


def sent_to(env: Env, path: str) -> list[Any]:
    return [r for r in env.sent if r.url.path == path]


# ------------------------------------------------------------------ end to end
async def test_split_registers_receivers_and_splits(env: Env) -> None:
    order = await splittable(env)
    created = json.loads(sent_to(env, "/v3/pay/transactions/native")[0].content)
    assert created["settle_info"] == {"profit_sharing": True}

    request = split_of(order, merchant(1_000), person(2_000))
    state = await env.adapter.create_split(request)
    assert state.status is ChannelSplitStatus.succeeded
    assert state.out_order_no == request.out_order_no and state.channel_split_no
    assert state.failure_code is None

    adds = sent_to(env, ADD)
    assert len(adds) == 2
    platform_key = env.sandbox.platform_private_key
    for add, (kind, account, name, relation) in zip(adds, [
        ("MERCHANT_ID", PARTNER_MCHID, PARTNER_NAME, "PARTNER"),
        ("PERSONAL_OPENID", OPENID, "张三", "DISTRIBUTOR"),
    ], strict=True):  # fmt: skip
        body = json.loads(add.content)
        assert add.headers["Wechatpay-Serial"] == env.creds["platform_public_key_id"]
        assert {k: v for k, v in body.items() if k != "name"} == {
            "appid": env.creds["appid"], "type": kind, "account": account,
            "relation_type": relation,
        }  # fmt: skip
        # Encrypted for the platform: the official SDK's decryptor agrees with the sandbox.
        assert body["name"] != name
        assert wx_utils.rsa_decrypt(body["name"], platform_key) == name
        stored = env.sandbox.split_receivers[(env.creds["mchid"], kind, account)]
        assert stored["name"] == name

    [split_call] = sent_to(env, ORDERS)
    body = json.loads(split_call.content)
    assert split_call.headers["Wechatpay-Serial"] == env.creds["platform_public_key_id"]
    assert {k: v for k, v in body.items() if k != "receivers"} == {
        "appid": env.creds["appid"], "transaction_id": order.channel_trade_no,
        "out_order_no": request.out_order_no, "unfreeze_unsplit": True,
    }  # fmt: skip
    merchant_wire, person_wire = body["receivers"]
    assert merchant_wire == {"type": "MERCHANT_ID", "account": PARTNER_MCHID, "amount": 1_000,
                             "description": "平台服务费"}  # fmt: skip
    assert wx_utils.rsa_decrypt(person_wire.pop("name"), platform_key) == "张三"
    assert person_wire == {"type": "PERSONAL_OPENID", "account": OPENID, "amount": 2_000,
                           "description": "分销佣金"}  # fmt: skip

    queried = await env.adapter.query_split(request.out_order_no, order.out_trade_no,
                                            order.channel_trade_no)  # fmt: skip
    assert queried.status is ChannelSplitStatus.succeeded
    assert queried.channel_split_no == state.channel_split_no
    assert env.sent[-1].url.raw_path.decode() == (
        f"{ORDERS}/{request.out_order_no}?transaction_id={order.channel_trade_no}"
    )
    # unfreeze_unsplit released the rest to the merchant itself: a detail, not a receiver.
    own = [r for r in queried.raw["receivers"] if r["account"] == env.creds["mchid"]]
    assert [(r["amount"], r["result"]) for r in own] == [(7_000, "SUCCESS")]
    results = {r["account"]: r["result"] for r in queried.raw["receivers"]}
    assert results == {PARTNER_MCHID: "SUCCESS", OPENID: "SUCCESS", env.creds["mchid"]: "SUCCESS"}


async def test_payment_without_profit_sharing_sends_no_settle_info(env: Env) -> None:
    order = await splittable(env, profit_sharing=False)
    created = json.loads(sent_to(env, "/v3/pay/transactions/native")[0].content)
    assert "settle_info" not in created
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_split(split_of(order, person(100)))
    assert info.value.code == "order_not_splittable"
    assert env.sandbox.splits == {}


async def test_split_above_the_ratio_is_refused(env: Env) -> None:
    order = await splittable(env, amount=10_000)
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_split(split_of(order, merchant(2_000), person(1_001)))
    assert info.value.code == "split_ratio_exceeded"
    assert info.value.raw["code"] == "RULE_LIMIT"
    first = await env.adapter.create_split(split_of(order, person(2_000), finish=False))
    assert first.status is ChannelSplitStatus.succeeded
    with pytest.raises(BusinessError) as info:  # 30% counts every split of the order
        await env.adapter.create_split(split_of(order, merchant(1_001), finish=False))
    assert info.value.code == "split_ratio_exceeded"
    last = await env.adapter.create_split(split_of(order, merchant(1_000)))  # exactly 30%
    assert last.status is ChannelSplitStatus.succeeded
    # unfreeze_unsplit released the rest: nothing more can be split.
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_split(split_of(order, merchant(1)))
    assert info.value.code == "insufficient_splittable"


async def test_refunds_and_splits_share_the_order(env: Env) -> None:
    order = await splittable(env, amount=10_000)
    await env.adapter.create_split(split_of(order, person(3_000), finish=False))
    created = payment(amount=10_000)
    created = CreatePayment(**{**created.__dict__, "out_trade_no": order.out_trade_no})
    with pytest.raises(BusinessError) as info:  # split money is no longer refundable
        await env.adapter.create_refund(refund_of(created))
    assert info.value.code == "refund_exceeds_payment"
    refunded = await env.adapter.create_refund(refund_of(created, 7_000))
    assert refunded.amount == 7_000
    with pytest.raises(BusinessError) as info:  # nothing left to split either
        await env.adapter.create_split(split_of(order, merchant(1)))
    assert info.value.code == "insufficient_splittable"


async def test_split_replay_is_idempotent(env: Env) -> None:
    order = await splittable(env)
    request = split_of(order, merchant(500), person(500))
    first = await env.adapter.create_split(request)
    again = await env.adapter.create_split(request)
    assert again.channel_split_no == first.channel_split_no
    assert again.status is ChannelSplitStatus.succeeded
    assert len(env.sandbox.splits) == 1
    assert len(sent_to(env, ADD)) == 4  # registering again is harmless
    changed = split_of(order, merchant(600), person(500), out_order_no=request.out_order_no)
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_split(changed)
    assert info.value.code == "duplicate_out_order_no"


async def test_split_query_of_unknown_split_is_not_found(env: Env) -> None:
    order = await splittable(env)
    missing = await env.adapter.query_split("spl_nothing", order.out_trade_no,
                                            order.channel_trade_no)  # fmt: skip
    assert missing.status is ChannelSplitStatus.not_found
    assert missing.raw["code"] == "RESOURCE_NOT_EXISTS"


# ------------------------------------------------------------------ scripted outcomes
async def test_delayed_split_is_pending_then_succeeds(env: Env) -> None:
    order = await splittable(env)
    env.sandbox.add_split_script(RefundScript(outcome=RefundOutcome.delayed, delay=1e9))
    request = split_of(order, person(1_000), finish=False)
    state = await env.adapter.create_split(request)
    assert state.status is ChannelSplitStatus.pending
    assert state.raw["state"] == "PROCESSING"
    assert [r["result"] for r in state.raw["receivers"]] == ["PENDING"]
    query = (request.out_order_no, order.out_trade_no, order.channel_trade_no)
    assert (await env.adapter.query_split(*query)).status is ChannelSplitStatus.pending
    split = env.sandbox.splits[(env.creds["mchid"], request.out_order_no)]
    assert env.sandbox.finish_split(split, succeeded=True)
    assert (await env.adapter.query_split(*query)).status is ChannelSplitStatus.succeeded

    r = await env.http.post(f"{BASE}/_sandbox/split_scripts", json={"outcome": "delayed"})
    assert r.status_code == 200
    second = split_of(order, merchant(1_000), finish=False)
    assert (await env.adapter.create_split(second)).status is ChannelSplitStatus.pending
    query = (second.out_order_no, order.out_trade_no, order.channel_trade_no)
    split = env.sandbox.splits[(env.creds["mchid"], second.out_order_no)]
    await until(lambda: split.state == "FINISHED", "the split to finish")
    assert (await env.adapter.query_split(*query)).status is ChannelSplitStatus.succeeded


async def test_failed_split_closes_every_receiver(env: Env) -> None:
    order = await splittable(env)
    env.sandbox.add_split_script(RefundScript(outcome=RefundOutcome.fail))
    request = split_of(order, person(1_000), merchant(1_000))
    assert (await env.adapter.create_split(request)).status is ChannelSplitStatus.pending
    split = env.sandbox.splits[(env.creds["mchid"], request.out_order_no)]
    await until(lambda: split.state == "FINISHED", "the split to finish")
    state = await env.adapter.query_split(request.out_order_no, order.out_trade_no,
                                          order.channel_trade_no)  # fmt: skip
    assert state.status is ChannelSplitStatus.failed
    assert state.failure_code == "ACCOUNT_ABNORMAL"
    assert state.failure_message is not None and "分账接收账户异常" in state.failure_message


async def test_partly_closed_split_is_partial_with_each_receivers_result(env: Env) -> None:
    order = await splittable(env)
    env.sandbox.add_split_script(RefundScript(outcome=RefundOutcome.delayed, delay=1e9))
    request = split_of(order, person(1_000), merchant(1_000))
    await env.adapter.create_split(request)
    split = env.sandbox.splits[(env.creds["mchid"], request.out_order_no)]
    split.receivers[0].update(result="CLOSED", fail_reason="NO_RELATION")  # the bank says no
    env.sandbox.finish_split(split, succeeded=True)
    state = await env.adapter.query_split(request.out_order_no, order.out_trade_no,
                                          order.channel_trade_no)  # fmt: skip
    assert state.status is ChannelSplitStatus.partial
    assert state.failure_code == "PARTIALLY_CLOSED"
    assert state.failure_message == f"{OPENID}: 分账关系已解除"
    assert [(r.status, r.amount, r.failure_code) for r in state.receivers] == [
        (ChannelSplitStatus.failed, 1_000, "NO_RELATION"),
        (ChannelSplitStatus.succeeded, 1_000, None),
    ]
    assert state.receivers[0].account == OPENID


async def test_refused_and_unknown_splits(env: Env) -> None:
    order = await splittable(env)
    env.sandbox.add_split_script(RefundScript(outcome=RefundOutcome.refuse))
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_split(split_of(order, person(100), finish=False))
    assert info.value.code == "insufficient_splittable"

    env.sandbox.add_split_script(RefundScript(outcome=RefundOutcome.create_error))
    request = split_of(order, person(100), finish=False)
    with pytest.raises(UnknownOutcome) as info:
        await env.adapter.create_split(request)
    assert info.value.code == "system_error"
    query = (request.out_order_no, order.out_trade_no, order.channel_trade_no)
    assert (await env.adapter.query_split(*query)).status is ChannelSplitStatus.not_found
    assert (await env.adapter.create_split(request)).status is ChannelSplitStatus.succeeded

    env.sandbox.add_split_script(RefundScript(outcome=RefundOutcome.create_timeout))
    timed_out = split_of(order, person(100), finish=False)
    async with env.client(timeout=0.05) as impatient:
        with pytest.raises(UnknownOutcome) as info:
            await WechatPayAdapter(env.creds, impatient).create_split(timed_out)
    assert info.value.code == "read_timeout"
    query = (timed_out.out_order_no, order.out_trade_no, order.channel_trade_no)
    assert (await env.adapter.query_split(*query)).status is ChannelSplitStatus.succeeded


async def test_split_checks_before_any_call(env: Env) -> None:
    order = await splittable(env)
    calls = len(env.sent)
    cases: list[tuple[CreateSplit, str]] = [
        (split_of(order), "invalid_request"),
        (split_of(order, *[person(1, account=f"o{i}") for i in range(51)]), "invalid_request"),
        (split_of(order, person(1), out_order_no="bad/no"), "invalid_request"),
        (split_of(order, person(1), channel_trade_no=""), "invalid_request"),
        (split_of(order, person(0)), "invalid_amount"),
        (split_of(order, person(1, account="")), "invalid_request"),
        (split_of(order, merchant(1, name=None)), "receiver_name_required"),
    ]
    for request, code in cases:
        with pytest.raises(BusinessError) as info:
            await env.adapter.create_split(request)
        assert info.value.code == code, request
    with pytest.raises(BusinessError):
        await env.adapter.query_split("spl_x", order.out_trade_no, "")
    assert len(env.sent) == calls


# ------------------------------------------------------------------ the wire, checked independently
async def test_official_sdk_profit_sharing_calls_are_accepted(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = await splittable(env)
    client = official_client(env, monkeypatch)
    code, message = await asyncio.to_thread(
        client.profitsharing_add_receiver, account_type="PERSONAL_OPENID", account=OPENID,
        relation_type="USER", name="赵六",
    )  # fmt: skip
    assert code == 200, message  # the SDK verified the sandbox's signature
    answer = json.loads(message)
    # Sensitive answer fields come back encrypted for the merchant: the SDK decrypts them.
    assert client._core.decrypt(answer["name"]) == "赵六"
    stored = env.sandbox.split_receivers[(env.creds["mchid"], "PERSONAL_OPENID", OPENID)]
    assert stored == {"name": "赵六", "relation_type": "USER", "custom_relation": None}

    out_order_no = "P" + uuid.uuid4().hex[:20]
    code, message = await asyncio.to_thread(
        client.profitsharing_order, transaction_id=order.channel_trade_no,
        out_order_no=out_order_no, unfreeze_unsplit=False,
        receivers=[{"type": "PERSONAL_OPENID", "account": OPENID, "amount": 888,
                    "description": "分给个人", "name": "赵六"}],
    )  # fmt: skip
    assert code == 200, message
    assert json.loads(message)["state"] == "FINISHED"
    code, message = await asyncio.to_thread(
        client.profitsharing_order_query, transaction_id=order.channel_trade_no,
        out_order_no=out_order_no,
    )  # fmt: skip
    assert code == 200 and json.loads(message)["receivers"][0]["amount"] == 888
    state = await env.adapter.query_split(out_order_no, order.out_trade_no, order.channel_trade_no)
    assert state.status is ChannelSplitStatus.succeeded

    # A name that is not the receiver's real name is refused.
    code, message = await asyncio.to_thread(
        client.profitsharing_order, transaction_id=order.channel_trade_no,
        out_order_no="P" + uuid.uuid4().hex[:20], unfreeze_unsplit=False,
        receivers=[{"type": "PERSONAL_OPENID", "account": OPENID, "amount": 1,
                    "description": "分给个人", "name": "钱七"}],
    )  # fmt: skip
    assert code == 400 and json.loads(message)["code"] == "PARAM_ERROR"


async def test_sandbox_validates_profit_sharing_requests(env: Env) -> None:
    order = await splittable(env)
    serial = {"Wechatpay-Serial": env.creds["platform_public_key_id"]}
    name = protocol.encrypt_sensitive(
        protocol.load_public_key(env.creds["platform_public_key"]), "孙八"
    )
    add = {"appid": env.creds["appid"], "type": "PERSONAL_OPENID", "account": OPENID,
           "relation_type": "DISTRIBUTOR"}  # fmt: skip
    split = {
        "appid": env.creds["appid"], "transaction_id": order.channel_trade_no,
        "out_order_no": "P" + uuid.uuid4().hex[:20], "unfreeze_unsplit": False,
        "receivers": [{"type": "PERSONAL_OPENID", "account": OPENID, "amount": 100,
                       "description": "佣金"}],
    }  # fmt: skip
    cases: list[tuple[str, Any, dict[str, str], int, str]] = [
        (ORDERS, split, {}, 400, "PARAM_ERROR"),  # receiver not added yet
        (ADD, {**add, "type": "MERCHANT_ID", "account": PARTNER_MCHID}, {}, 400, "PARAM_ERROR"),
        (ADD, {**add, "relation_type": "CUSTOM"}, {}, 400, "PARAM_ERROR"),
        (ADD, {**add, "relation_type": "FRIEND"}, {}, 400, "PARAM_ERROR"),
        (ADD, {**add, "appid": "wx0000"}, {}, 400, "INVALID_REQUEST"),
        (ADD, {**add, "name": name}, {}, 400, "PARAM_ERROR"),  # no Wechatpay-Serial
        (ADD, {**add, "name": "plain"}, serial, 400, "PARAM_ERROR"),
        (ADD, {**add, "name": name}, serial, 200, ""),
        (ORDERS, {**split, "transaction_id": "4200000000"}, {}, 404, "RESOURCE_NOT_EXISTS"),
        (ORDERS, {**split, "receivers": split["receivers"] * 51}, {}, 400, "PARAM_ERROR"),
        (ORDERS, {**split, "receivers": []}, {}, 400, "PARAM_ERROR"),
        (ORDERS, {k: v for k, v in split.items() if k != "appid"}, {}, 400, "PARAM_ERROR"),
        (ORDERS, {**split, "unfreeze_unsplit": "false"}, {}, 400, "PARAM_ERROR"),
        (ORDERS, {**split, "out_order_no": "P/1"}, {}, 400, "PARAM_ERROR"),
        (ORDERS, split, {}, 200, ""),
    ]  # fmt: skip
    for path, data, extra, status, code in cases:
        body = protocol.encode_json(data)
        headers = {**signed_call(env, "POST", path, body), **extra}
        r = await env.http.post(BASE + path, content=body, headers=headers)
        assert r.status_code == status, (path, data, r.text)
        if code:
            assert r.json()["code"] == code, (path, data)
        assert env.official()._verify_signature(r.headers, r.text)
    query = f"{ORDERS}/{split['out_order_no']}"
    r = await env.http.get(BASE + query, headers=signed_call(env, "GET", query))
    assert (r.status_code, r.json()["code"]) == (400, "PARAM_ERROR")  # transaction_id missing
    query = f"{ORDERS}/{split['out_order_no']}?transaction_id=4200000000"
    r = await env.http.get(BASE + query, headers=signed_call(env, "GET", query))
    assert (r.status_code, r.json()["code"]) == (404, "RESOURCE_NOT_EXISTS")
    await settle_tasks()


def test_split_vocabulary_and_error_classification() -> None:
    assert protocol.split_status("PROCESSING", ["PENDING"]) is ChannelSplitStatus.pending
    assert protocol.split_status("FINISHED", ["SUCCESS", "SUCCESS"]) is (
        ChannelSplitStatus.succeeded
    )
    assert protocol.split_status("FINISHED", ["CLOSED"]) is ChannelSplitStatus.failed
    assert protocol.split_status("FINISHED", ["CLOSED", "SUCCESS"]) is (ChannelSplitStatus.partial)
    for state, results in (("DONE", []), ("FINISHED", ["LOST"])):
        with pytest.raises(ValueError):
            protocol.split_status(state, results)
    cases: list[tuple[int, Any, type[Exception], str]] = [
        (500, {"code": "SYSTEM_ERROR"}, UnknownOutcome, "system_error"),
        (429, {"code": "FREQUENCY_LIMITED"}, UnknownOutcome, "frequency_limited"),
        (403, {"code": "RULE_LIMIT"}, BusinessError, "split_ratio_exceeded"),
        (400, {"code": "INVALID_REQUEST", "message": "分账金额超出最大分账比例"}, BusinessError,
         "split_ratio_exceeded"),
        (400, {"code": "INVALID_REQUEST", "message": "非分账订单不支持分账"}, BusinessError,
         "order_not_splittable"),
        (400, {"code": "PARAM_ERROR", "message": "分账接收方关系不存在"}, BusinessError,
         "receiver_not_added"),
        (403, {"code": "NOT_ENOUGH", "message": "分账金额不足"}, BusinessError,
         "insufficient_splittable"),
        (400, {"code": "INVALID_REQUEST", "message": "订单处理中，请稍后重试"}, RetryableError,
         "order_processing"),
        (403, {"code": "NO_AUTH"}, BusinessError, "not_authorized"),
        (404, {"code": "RESOURCE_NOT_EXISTS"}, BusinessError, "not_found"),
        (503, None, UnknownOutcome, "channel_error"),
    ]  # fmt: skip
    for status, payload, kind, code in cases:
        error = classify_split_answer(status, payload)
        assert type(error) is kind and error.code == code, (status, payload)

"""Alipay profit sharing: ``alipay.trade.royalty.relation.bind`` + ``alipay.trade.order.settle``
and ``alipay.trade.order.settle.query`` through the adapter against the sandbox, with the
official SDK as the oracle for the requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.adapter import AlipayAdapter
from paymux.channels.alipay.sandbox import Payee
from paymux.channels.base import (
    BusinessError,
    ChannelSplitStatus,
    CreatePayment,
    CreateSplit,
    SplitReceiver,
    SplitReceiverType,
    SplitState,
    UnknownOutcome,
)
from tests.channels.test_alipay import Env, open_env, request

_counter = iter(range(1, 1_000_000))


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with open_env() as environment:
        yield environment


@pytest.fixture
def shop(env: Env) -> Payee:
    """A company account receiving a commission (bound by user id)."""
    return env.sandbox.add_payee("某某科技有限公司")


@pytest.fixture
def rider(env: Env) -> Payee:
    """A person bound by login name."""
    return env.sandbox.add_payee("李四", login_id="rider@example.com")


async def paid(env: Env, amount: int = 10000) -> tuple[CreatePayment, str]:
    req = request(amount=amount)
    await env.adapter.create_payment(req)
    await env.client.post(f"/_sandbox/orders/{req.out_trade_no}/pay", json={"result": "pay"})
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.channel_trade_no is not None
    return req, state.channel_trade_no


def split(pay: CreatePayment, trade_no: str, *receivers: SplitReceiver,
          no: str | None = None, finish: bool = True) -> CreateSplit:  # fmt: skip
    return CreateSplit(
        out_order_no=no or f"spl_{next(_counter):06d}",
        out_trade_no=pay.out_trade_no,
        channel_trade_no=trade_no,
        receivers=receivers,
        finish=finish,
    )


def to_shop(shop: Payee, amount: int = 1000) -> SplitReceiver:
    return SplitReceiver(SplitReceiverType.merchant, shop.user_id, amount, "平台佣金")


def to_rider(rider: Payee, amount: int = 500, name: str | None = "李四") -> SplitReceiver:
    assert rider.login_id is not None
    return SplitReceiver(SplitReceiverType.person, rider.login_id, amount, "配送费", name=name)


async def script(env: Env, **fields: Any) -> None:
    assert (await env.client.post("/_sandbox/settle_scripts", json=fields)).status_code == 200


def settled_lines(env: Env) -> list[tuple[str, int, str]]:
    return [(x.trans_in, x.amount, x.state) for s in env.sandbox.settles.values() for x in s.lines]


# ---------------------------------------------------------------- happy path
async def test_split_binds_then_settles(env: Env, shop: Payee, rider: Payee) -> None:
    pay, trade_no = await paid(env)
    req = split(pay, trade_no, to_shop(shop), to_rider(rider))
    state = await env.adapter.create_split(req)
    assert state.status is ChannelSplitStatus.succeeded and state.failure_code is None
    settle = env.sandbox.settles[(env.creds["app_id"], trade_no, req.out_order_no)]
    assert settled_lines(env) == [
        (shop.user_id, 1000, "SUCCESS"),
        ("rider@example.com", 500, "SUCCESS"),
    ]
    assert settle.finish is True
    relations = env.sandbox.relations[env.creds["app_id"]]
    assert relations[("userId", shop.user_id)] is shop
    assert relations[("loginName", "rider@example.com")] is rider

    queried = await env.adapter.query_split(req.out_order_no, pay.out_trade_no, trade_no)
    assert queried.status is ChannelSplitStatus.succeeded
    assert queried.raw["out_request_no"] == req.out_order_no
    assert [d["state"] for d in queried.raw["royalty_detail_list"]] == ["SUCCESS", "SUCCESS"]

    # royalty_finish released the rest: nothing more can be split from this trade.
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_split(split(pay, trade_no, to_shop(shop, 1)))
    assert info.value.code == "split_exceeds_available"


async def test_split_without_finish_leaves_the_rest_splittable(
    env: Env, shop: Payee, rider: Payee
) -> None:
    pay, trade_no = await paid(env, amount=3000)
    first = split(pay, trade_no, to_shop(shop, 1000), finish=False)
    assert (await env.adapter.create_split(first)).status is ChannelSplitStatus.succeeded
    with pytest.raises(BusinessError) as info:  # 20.01 of the 20.00 left
        await env.adapter.create_split(split(pay, trade_no, to_rider(rider, 2001)))
    assert info.value.code == "split_exceeds_available"
    second = split(pay, trade_no, to_rider(rider, 2000))
    assert (await env.adapter.create_split(second)).status is ChannelSplitStatus.succeeded


async def test_replay_is_idempotent(env: Env, shop: Payee) -> None:
    pay, trade_no = await paid(env)
    req = split(pay, trade_no, to_shop(shop, 700))
    first = await env.adapter.create_split(req)
    again = await env.adapter.create_split(req)
    assert again.status is ChannelSplitStatus.succeeded
    assert len(env.sandbox.settles) == 1 and settled_lines(env) == [(shop.user_id, 700, "SUCCESS")]
    assert first.raw["out_request_no"] == again.raw["out_request_no"] == req.out_order_no
    with pytest.raises(BusinessError) as info:  # another amount under the same number
        await env.adapter.create_split(split(pay, trade_no, to_shop(shop, 800),
                                             no=req.out_order_no))  # fmt: skip
    assert info.value.code == "ACQ.DISCORDANT_REPEAT_REQUEST"
    assert len(env.sandbox.settles) == 1


# ---------------------------------------------------------------- refusals
async def test_receivers_alipay_refuses(env: Env, shop: Payee, rider: Payee) -> None:
    pay, trade_no = await paid(env)
    stranger = SplitReceiver(SplitReceiverType.merchant, "2088999999999999", 100, "?")
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_split(split(pay, trade_no, stranger))
    assert info.value.code == "receiver_not_found"
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_split(split(pay, trade_no, to_rider(rider, name="王五")))
    assert info.value.code == "invalid_request"
    assert env.sandbox.settles == {}
    # Settling to someone never bound is refused by order.settle itself (SDK as the client).
    sdk = env.sdk()
    body = sdk.build_body(p.METHOD_SETTLE, {
        "out_request_no": "spl_sdk_unbound", "trade_no": trade_no,
        "royalty_parameters": [{"royalty_type": "transfer", "trans_in_type": "userId",
                                "trans_in": rider.user_id, "amount": "1.00"}],
    })  # fmt: skip
    raw = (await env.client.get(f"/gateway.do?{sdk.sign_data(body)}")).text
    answer = sdk._verify_and_return_sync_response(raw, "alipay_trade_order_settle_response")
    assert answer["sub_code"] == "ACQ.ROYALTY_RECEIVER_INVALID"


async def test_refused_before_any_call(env: Env, shop: Payee, rider: Payee) -> None:
    calls: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req)
        return httpx.Response(500)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        adapter = AlipayAdapter(env.creds, http)
        pay = request()
        company_by_login = SplitReceiver(SplitReceiverType.merchant, "shop@example.com", 1, "x")
        cases = [
            ("invalid_receiver", split(pay, "2024x", to_rider(rider, name=None))),
            ("invalid_receiver", split(pay, "2024x", company_by_login)),
            ("invalid_amount", split(pay, "2024x", to_shop(shop, 0))),
            ("invalid_request", split(pay, "2024x")),
            ("invalid_request", split(pay, "", to_shop(shop))),
        ]
        for code, req in cases:
            with pytest.raises(BusinessError) as info:
                await adapter.create_split(req)
            assert info.value.code == code
    assert calls == []


# ---------------------------------------------------------------- scripted outcomes
async def _settled(env: Env, req: CreateSplit) -> SplitState:
    for _ in range(300):
        state = await env.adapter.query_split(
            req.out_order_no, req.out_trade_no, req.channel_trade_no
        )
        if state.status is not ChannelSplitStatus.pending:
            return state
        await asyncio.sleep(0.01)
    raise AssertionError("split never settled")


async def test_processing_then_success(env: Env, shop: Payee) -> None:
    pay, trade_no = await paid(env)
    await script(env, outcome="delayed", delay=100)
    req = split(pay, trade_no, to_shop(shop))
    state = await env.adapter.create_split(req)
    assert state.status is ChannelSplitStatus.pending
    assert (await _settled(env, req)).status is ChannelSplitStatus.succeeded


async def test_processing_then_fail(env: Env, shop: Payee, rider: Payee) -> None:
    pay, trade_no = await paid(env)
    await script(env, outcome="fail", delay=100)
    req = split(pay, trade_no, to_shop(shop), to_rider(rider))
    assert (await env.adapter.create_split(req)).status is ChannelSplitStatus.pending
    state = await _settled(env, req)
    assert state.status is ChannelSplitStatus.failed
    assert state.failure_code == "TXN_RESULT_ACCOUNT_BALANCE_NOT_ENOUGH"
    assert state.failure_message == "分账余额不足"


async def test_refused_per_receiver_at_once(env: Env, shop: Payee) -> None:
    pay, trade_no = await paid(env)
    await script(env, outcome="refuse")
    state = await env.adapter.create_split(split(pay, trade_no, to_shop(shop), finish=False))
    assert state.status is ChannelSplitStatus.failed
    assert state.failure_code == "TXN_RESULT_ACCOUNT_BALANCE_NOT_ENOUGH"
    # What failed (and was not released by royalty_finish) is splittable again.
    again = await env.adapter.create_split(split(pay, trade_no, to_shop(shop)))
    assert again.status is ChannelSplitStatus.succeeded


async def test_system_error_is_unknown_then_resolved(env: Env, shop: Payee) -> None:
    pay, trade_no = await paid(env)
    await script(env, outcome="create_error")
    req = split(pay, trade_no, to_shop(shop))
    with pytest.raises(UnknownOutcome) as info:
        await env.adapter.create_split(req)
    assert info.value.code == "ACQ.SYSTEM_ERROR"
    state = await env.adapter.query_split(req.out_order_no, pay.out_trade_no, trade_no)
    assert state.status is ChannelSplitStatus.not_found
    assert (await env.adapter.create_split(req)).status is ChannelSplitStatus.succeeded
    assert len(env.sandbox.settles) == 1


async def test_timeout_is_unknown_and_the_query_finds_the_split(env: Env, shop: Payee) -> None:
    pay, trade_no = await paid(env)
    await script(env, outcome="create_timeout")
    req = split(pay, trade_no, to_shop(shop))
    with pytest.raises(UnknownOutcome) as info:
        await env.adapter_with(timeout=0.05).create_split(req)
    assert info.value.code == "timeout"
    state = await env.adapter.query_split(req.out_order_no, pay.out_trade_no, trade_no)
    assert state.status is ChannelSplitStatus.succeeded


async def test_query_of_unknown_split_is_not_found(env: Env) -> None:
    pay, trade_no = await paid(env)
    state = await env.adapter.query_split("spl_never", pay.out_trade_no, trade_no)
    assert state.status is ChannelSplitStatus.not_found
    state = await env.adapter.query_split("spl_never", "att_x", "2024000000000000")
    assert state.status is ChannelSplitStatus.not_found


async def test_mixed_receiver_results_are_a_partial_split(env: Env) -> None:
    """Alipay's per-receiver states, some paid and some failed: a partial split, with each
    receiver's outcome. A signed canned answer stands in for Alipay here (the sandbox fails
    or pays a settle's receivers together)."""
    details = [
        {"operation_type": "transfer", "trans_in": "2088000000000001", "amount": "1.00",
         "state": "SUCCESS"},
        {"operation_type": "transfer", "trans_in": "2088000000000002", "amount": "2.00",
         "state": "FAIL", "error_code": "TXN_RESULT_ACCOUNT_BALANCE_NOT_ENOUGH",
         "error_desc": "分账余额不足"},
    ]  # fmt: skip
    body = p.build_response(
        "alipay_trade_order_settle_query_response",
        {"code": "10000", "msg": "Success", "out_request_no": "spl_x",
         "royalty_detail_list": details},
        env.sandbox._alipay_key,
    )  # fmt: skip

    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        state = await AlipayAdapter(env.creds, http).query_split("spl_x", "att_x", "2024x")
    assert state.status is ChannelSplitStatus.partial
    assert state.failure_code == "TXN_RESULT_ACCOUNT_BALANCE_NOT_ENOUGH"
    assert state.failure_message == "分账余额不足"
    assert [(r.account, r.status, r.amount) for r in state.receivers] == [
        ("2088000000000001", ChannelSplitStatus.succeeded, 100),
        ("2088000000000002", ChannelSplitStatus.failed, 200),
    ]


# ---------------------------------------------------------------- the SDK as oracle
async def test_split_requests_match_the_sdk(env: Env, shop: Payee, rider: Payee) -> None:
    pay, trade_no = await paid(env)
    sent: list[dict[str, str]] = []

    async def record(req: httpx.Request) -> None:
        params = dict(req.url.params)
        params.update(parse_qsl(req.content.decode()))
        sent.append(params)

    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=env.sandbox.app), timeout=2.0,
        event_hooks={"request": [record]},
    )  # fmt: skip
    env.clients.append(http)
    req = split(pay, trade_no, to_shop(shop, 1234), to_rider(rider, 66))
    await AlipayAdapter(env.creds, http).create_split(req)
    bind, settle, query = sent
    assert bind["method"] == "alipay.trade.royalty.relation.bind"
    assert json.loads(bind["biz_content"]) == {
        "receiver_list": [
            {"type": "userId", "account": shop.user_id, "memo": "平台佣金"},
            {"type": "loginName", "account": "rider@example.com", "name": "李四",
             "memo": "配送费"},
        ],
        "out_request_no": "b" + req.out_order_no,
    }  # fmt: skip
    assert settle["method"] == "alipay.trade.order.settle"
    assert json.loads(settle["biz_content"]) == {
        "out_request_no": req.out_order_no,
        "trade_no": trade_no,
        "royalty_parameters": [
            {"royalty_type": "transfer", "trans_in_type": "userId", "trans_in": shop.user_id,
             "amount": "12.34", "desc": "平台佣金"},
            {"royalty_type": "transfer", "trans_in_type": "loginName",
             "trans_in": "rider@example.com", "amount": "0.66", "desc": "配送费"},
        ],
        "royalty_mode": "sync",
        "extend_params": {"royalty_finish": "true"},
    }  # fmt: skip
    assert query["method"] == "alipay.trade.order.settle.query"
    assert json.loads(query["biz_content"]) == {
        "out_request_no": req.out_order_no,
        "trade_no": trade_no,
    }
    sdk = env.sdk()
    for params in (bind, settle, query):
        ours = params.pop("sign")
        assert dict(parse_qsl(sdk.sign_data(dict(params))))["sign"] == ours

    # The SDK's own settle query, sent to the sandbox, verifies its answer.
    body = sdk.build_body(
        p.METHOD_SETTLE_QUERY, {"out_request_no": req.out_order_no, "trade_no": trade_no}
    )
    raw = (await env.client.get(f"/gateway.do?{sdk.sign_data(body)}")).text
    answer = sdk._verify_and_return_sync_response(raw, "alipay_trade_order_settle_query_response")
    assert [(d["trans_in"], d["amount"], d["state"]) for d in answer["royalty_detail_list"]] == [
        (shop.user_id, "12.34", "SUCCESS"),
        ("rider@example.com", "0.66", "SUCCESS"),
    ]

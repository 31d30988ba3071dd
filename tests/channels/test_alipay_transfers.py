"""Alipay payouts: ``alipay.fund.trans.uni.transfer`` and ``alipay.fund.trans.common.query``
through the adapter against the sandbox, in public-key certificate mode (which Alipay requires
for paying out), with the official SDK's certificate client (``DCAliPay``) as the oracle."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from alipay import AliPay, DCAliPay

from paymux.channels import base
from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.adapter import AlipayAdapter
from paymux.channels.alipay.sandbox import Payee, Sandbox
from paymux.channels.base import (
    BusinessError,
    ChannelPaymentStatus,
    ChannelTransferStatus,
    CreateTransfer,
    PayeeType,
    UnknownOutcome,
)
from tests.channels.test_alipay import BASE, request

_counter = iter(range(1, 1_000_000))


class Env:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.clients: list[httpx.AsyncClient] = []
        self.client = self.http(base_url=BASE)
        self.creds = sandbox.provision(BASE, cert_mode=True)
        self.adapter = self.adapter_with()
        self.alice = sandbox.add_payee("张三", login_id="alice@example.com")

    def http(self, **options: Any) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.sandbox.app), **options)
        self.clients.append(client)
        return client

    def adapter_with(self, timeout: float = 2.0, **overrides: Any) -> AlipayAdapter:
        return AlipayAdapter({**self.creds, **overrides}, self.http(timeout=timeout))

    def sdk(self) -> Any:
        return DCAliPay(
            appid=self.creds["app_id"],
            app_private_key_string=self.creds["app_private_key"],
            app_public_key_cert_string=self.creds["app_cert"],
            alipay_public_key_cert_string=self.creds["alipay_cert"],
            alipay_root_cert_string=self.creds["alipay_root_cert"],
        )

    async def script(self, **fields: Any) -> None:
        answer = await self.client.post("/_sandbox/transfer_scripts", json=fields)
        assert answer.status_code == 200


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    sandbox = Sandbox(time_scale=0.001, hold_timeout_seconds=1.0)
    environment = Env(sandbox)
    yield environment
    await sandbox.core.aclose()
    for c in environment.clients:
        await c.aclose()


def payout(payee: Payee, amount: int = 1234, *, no: str | None = None,
           payee_type: PayeeType = PayeeType.alipay_user_id, name: str | None = None,
           remark: str = "佣金 commission") -> CreateTransfer:  # fmt: skip
    account = {
        PayeeType.alipay_user_id: payee.user_id,
        PayeeType.alipay_open_id: payee.open_id,
        PayeeType.alipay_login_id: payee.login_id,
    }.get(payee_type, "o_wechat")
    return CreateTransfer(
        out_biz_no=no or f"po_{next(_counter):06d}",
        amount=amount,
        currency="CNY",
        payee_type=payee_type,
        payee_account=account or "",
        payee_name=name,
        remark=remark,
        notify_url="http://merchant.test/notify",
    )


def made(env: Env) -> list[tuple[str, int, str]]:
    return [(t.out_biz_no, t.amount, t.status) for t in env.sandbox.transfers.values()]


# ---------------------------------------------------------------- certificate mode
def test_certificate_serial_numbers_match_the_sdk(env: Env) -> None:
    sdk = env.sdk()
    ours = env.adapter._cert_params
    assert ours["app_cert_sn"] == sdk.app_cert_sn
    assert ours["alipay_root_cert_sn"] == sdk.alipay_root_cert_sn
    assert p.root_cert_sn(env.creds["alipay_root_cert"]) == env.sandbox.authority.root_sn
    assert "alipay_public_key" not in env.creds  # the certificate carries Alipay's key


def test_certificate_credentials_are_checked(env: Env) -> None:
    creds = env.creds
    partial = {k: v for k, v in creds.items() if k != "alipay_root_cert"}
    other_app = env.sandbox.provision(BASE, cert_mode=True)
    bad = {
        "partial certificates": partial,
        "no Alipay key at all": {k: v for k, v in partial.items() if k != "alipay_cert"}
        | {"app_cert": None},
        "another app's certificate": {**creds, "app_cert": other_app["app_cert"]},
        "not a certificate": {**creds, "alipay_cert": "-----BEGIN CERTIFICATE-----\nAA==\n"},
    }
    for value in bad.values():  # each one alone is refused
        with pytest.raises(base.InvalidCredentials):
            AlipayAdapter(value, env.client)


async def test_payments_work_in_certificate_mode(env: Env) -> None:
    req = request()
    await env.adapter.create_payment(req)
    assert (await env.adapter.query_payment(req.out_trade_no)).status is (
        ChannelPaymentStatus.pending
    )
    # A request naming another root bundle is refused before anything happens.
    stranger = Sandbox()
    wrong_root = stranger.provision(BASE, cert_mode=True)["alipay_root_cert"]
    with pytest.raises(BusinessError) as info:
        await env.adapter_with(alipay_root_cert=wrong_root).query_payment(req.out_trade_no)
    assert info.value.code == "isv.invalid-alipay-root-cert-sn"


# ---------------------------------------------------------------- payouts
async def test_transfer_to_user_id(env: Env) -> None:
    req = payout(env.alice, 1234)
    state = await env.adapter.create_transfer(req)
    assert state.status is ChannelTransferStatus.succeeded
    transfer = env.sandbox.transfers[(env.creds["app_id"], req.out_biz_no)]
    assert state.channel_transfer_no == transfer.order_id
    assert transfer.finished_at is not None
    assert state.finished_at == transfer.finished_at.replace(microsecond=0)
    assert transfer.payee is env.alice and transfer.amount == 1234
    assert transfer.order_title == "佣金 commission" and transfer.remark == "佣金 commission"

    queried = await env.adapter.query_transfer(req.out_biz_no)
    assert queried.status is ChannelTransferStatus.succeeded
    assert queried.amount == 1234 and queried.channel_transfer_no == transfer.order_id
    assert queried.finished_at == state.finished_at
    assert queried.raw["pay_fund_order_id"] == transfer.pay_fund_order_id


async def test_transfer_to_login_id_and_open_id(env: Env) -> None:
    by_login = payout(env.alice, payee_type=PayeeType.alipay_login_id, name="张三")
    assert (await env.adapter.create_transfer(by_login)).status is (ChannelTransferStatus.succeeded)
    by_open_id = payout(env.alice, payee_type=PayeeType.alipay_open_id)
    assert (await env.adapter.create_transfer(by_open_id)).status is (
        ChannelTransferStatus.succeeded
    )
    assert AlipayAdapter.payee_types == {
        PayeeType.alipay_login_id, PayeeType.alipay_user_id, PayeeType.alipay_open_id,
    }  # fmt: skip


async def test_payee_refusals(env: Env) -> None:
    cases = {
        "payee_name_mismatch": payout(env.alice, payee_type=PayeeType.alipay_login_id,
                                      name="李四"),
        "payee_not_found": payout(Payee(user_id="2088000000000001", open_id="x", name="x")),
    }  # fmt: skip
    for code, req in cases.items():
        with pytest.raises(BusinessError) as info:
            await env.adapter.create_transfer(req)
        assert info.value.code == code
    assert made(env) == []
    # The SDK sees the wire sub_codes Alipay documents.
    sdk = env.sdk()
    body = sdk.build_body(p.METHOD_TRANSFER, {
        "out_biz_no": "po_sdk", "trans_amount": "1.00", "product_code": "TRANS_ACCOUNT_NO_PWD",
        "biz_scene": "DIRECT_TRANSFER",
        "payee_info": {"identity": env.alice.login_id, "identity_type": "ALIPAY_LOGON_ID",
                       "name": "王五"},
    })  # fmt: skip
    raw = (await env.client.get(f"/gateway.do?{sdk.sign_data(body)}")).text
    answer = sdk._verify_and_return_sync_response(raw, "alipay_fund_trans_uni_transfer_response")
    assert answer["sub_code"] == "PAYEE_USER_INFO_ERROR"


async def test_replay_is_idempotent(env: Env) -> None:
    req = payout(env.alice, 500)
    first = await env.adapter.create_transfer(req)
    again = await env.adapter.create_transfer(req)
    assert again.status is ChannelTransferStatus.succeeded
    assert again.channel_transfer_no == first.channel_transfer_no
    assert made(env) == [(req.out_biz_no, 500, "SUCCESS")]
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_transfer(payout(env.alice, 501, no=req.out_biz_no))
    assert info.value.code == "duplicate_out_biz_no"
    assert made(env) == [(req.out_biz_no, 500, "SUCCESS")]


async def test_insufficient_balance(env: Env) -> None:
    await env.script(outcome="refuse")
    req = payout(env.alice)
    with pytest.raises(BusinessError) as info:
        await env.adapter.create_transfer(req)
    assert info.value.code == "insufficient_balance"
    assert "PAYER_BALANCE_NOT_ENOUGH" in info.value.message
    assert (await env.adapter.query_transfer(req.out_biz_no)).status is (
        ChannelTransferStatus.not_found
    )


async def test_system_error_is_unknown_and_resolved(env: Env) -> None:
    await env.script(outcome="create_error")
    req = payout(env.alice)
    with pytest.raises(UnknownOutcome) as info:
        await env.adapter.create_transfer(req)
    assert info.value.code == "system_error"
    # Nothing was made: the query says so, and the same out_biz_no goes through.
    assert (await env.adapter.query_transfer(req.out_biz_no)).status is (
        ChannelTransferStatus.not_found
    )
    assert (await env.adapter.create_transfer(req)).status is ChannelTransferStatus.succeeded
    assert len(made(env)) == 1


async def test_timeout_is_unknown_and_the_query_finds_the_payout(env: Env) -> None:
    await env.script(outcome="create_timeout")
    req = payout(env.alice, 2000)
    with pytest.raises(UnknownOutcome) as info:
        await env.adapter_with(timeout=0.05).create_transfer(req)
    assert info.value.code == "timeout"
    state = await env.adapter.query_transfer(req.out_biz_no)
    assert state.status is ChannelTransferStatus.succeeded and state.amount == 2000
    # re-sending after all is harmless
    assert (await env.adapter.create_transfer(req)).channel_transfer_no == (
        state.channel_transfer_no
    )
    assert len(made(env)) == 1


async def _settled(env: Env, out_biz_no: str) -> base.TransferState:
    for _ in range(300):
        state = await env.adapter.query_transfer(out_biz_no)
        if state.status is not ChannelTransferStatus.pending:
            return state
        await asyncio.sleep(0.01)
    raise AssertionError("transfer never settled")


async def test_dealing_then_success(env: Env) -> None:
    await env.script(outcome="delayed", delay=100)
    req = payout(env.alice)
    state = await env.adapter.create_transfer(req)
    assert state.status is ChannelTransferStatus.pending and state.raw["status"] == "DEALING"
    assert state.channel_transfer_no is not None and state.finished_at is None
    assert (await _settled(env, req.out_biz_no)).status is ChannelTransferStatus.succeeded


async def test_dealing_then_fail(env: Env) -> None:
    await env.script(outcome="fail", delay=100)
    req = payout(env.alice)
    assert (await env.adapter.create_transfer(req)).status is ChannelTransferStatus.pending
    state = await _settled(env, req.out_biz_no)
    assert state.status is ChannelTransferStatus.failed
    assert state.failure_code == "PAYEE_ACCOUNT_STATUS_ERROR"
    assert state.failure_message == "收款方账户状态异常"
    assert state.amount is None and state.finished_at is None


async def test_refused_before_any_call(env: Env) -> None:
    calls: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req)
        return httpx.Response(500)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        adapter = AlipayAdapter(env.creds, http)
        no_name = payout(env.alice, payee_type=PayeeType.alipay_login_id)
        cases = {
            "amount_below_minimum": payout(env.alice, 9),
            "unsupported_payee_type": payout(env.alice, payee_type=PayeeType.wechat_openid),
            "payee_name_required": no_name,
        }
        for code, req in cases.items():
            with pytest.raises(BusinessError) as info:
                await adapter.create_transfer(req)
            assert info.value.code == code
        # Public-key mode cannot pay out at Alipay: refused here, before the channel is asked.
        plain = Sandbox().provision(BASE)
        with pytest.raises(BusinessError) as info:
            await AlipayAdapter(plain, http).create_transfer(payout(env.alice))
        assert info.value.code == "cert_mode_required"
    assert calls == []


async def test_public_key_mode_app_cannot_pay_out(env: Env) -> None:
    plain = env.sandbox.provision(BASE)
    sdk = AliPay(appid=plain["app_id"], app_notify_url=None,
                 app_private_key_string=plain["app_private_key"],
                 alipay_public_key_string=plain["alipay_public_key"])  # fmt: skip
    body = sdk.build_body(p.METHOD_TRANSFER, {"out_biz_no": "po_plain", "trans_amount": "1.00"})
    raw = (await env.client.get(f"/gateway.do?{sdk.sign_data(body)}")).text
    answer = sdk._verify_and_return_sync_response(raw, "alipay_fund_trans_uni_transfer_response")
    assert answer["code"] == "40006" and answer["sub_code"] == "isv.insufficient-isv-permissions"
    assert made(env) == []


# ---------------------------------------------------------------- the SDK as oracle
async def test_transfer_requests_match_the_sdk(env: Env) -> None:
    sent: list[dict[str, str]] = []

    async def record(req: httpx.Request) -> None:
        params = dict(req.url.params)
        params.update(parse_qsl(req.content.decode()))
        sent.append(params)

    adapter = AlipayAdapter(env.creds, env.http(timeout=2.0, event_hooks={"request": [record]}))
    req = payout(env.alice, 1000, payee_type=PayeeType.alipay_login_id, name="张三")
    await adapter.create_transfer(req)
    await adapter.query_transfer(req.out_biz_no)
    transfer, query = sent
    assert transfer["method"] == "alipay.fund.trans.uni.transfer"
    assert json.loads(transfer["biz_content"]) == {
        "out_biz_no": req.out_biz_no,
        "trans_amount": "10.00",
        "product_code": "TRANS_ACCOUNT_NO_PWD",
        "biz_scene": "DIRECT_TRANSFER",
        "payee_info": {"identity": "alice@example.com", "identity_type": "ALIPAY_LOGON_ID",
                       "name": "张三"},
        "order_title": "佣金 commission",
        "remark": "佣金 commission",
    }  # fmt: skip
    assert "notify_url" not in transfer
    assert query["method"] == "alipay.fund.trans.common.query"
    assert json.loads(query["biz_content"]) == {
        "out_biz_no": req.out_biz_no,
        "product_code": "TRANS_ACCOUNT_NO_PWD",
        "biz_scene": "DIRECT_TRANSFER",
    }
    sdk = env.sdk()
    for params in (transfer, query):
        assert params["app_cert_sn"] == sdk.app_cert_sn
        assert params["alipay_root_cert_sn"] == sdk.alipay_root_cert_sn
        ours = params.pop("sign")
        assert dict(parse_qsl(sdk.sign_data(dict(params))))["sign"] == ours

    # The SDK's own query, sent to the sandbox: it verifies the certificate-mode answer.
    body = sdk.build_body(p.METHOD_TRANSFER_QUERY, {
        "out_biz_no": req.out_biz_no, "product_code": "TRANS_ACCOUNT_NO_PWD",
        "biz_scene": "DIRECT_TRANSFER",
    })  # fmt: skip
    raw = (await env.client.post("/gateway.do", data=dict(parse_qsl(sdk.sign_data(body))))).text
    assert json.loads(raw)["alipay_cert_sn"] == p.certificate_key(env.creds["alipay_cert"], "")[1]
    answer = sdk._verify_and_return_sync_response(raw, "alipay_fund_trans_common_query_response")
    assert answer["status"] == "SUCCESS" and answer["trans_amount"] == "10.00"


async def test_unverifiable_answer_names_the_certificate(env: Env) -> None:
    stranger = Sandbox().provision(BASE, cert_mode=True)
    adapter = env.adapter_with(alipay_cert=stranger["alipay_cert"],
                               alipay_root_cert=env.creds["alipay_root_cert"])  # fmt: skip
    with pytest.raises(UnknownOutcome) as info:
        await adapter.query_transfer("po_x")
    assert info.value.code == "unverifiable_response"
    assert "update alipay_cert" in info.value.message

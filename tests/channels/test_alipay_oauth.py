"""Alipay web OAuth ``auth_base`` and the sandbox's stand-in of the Alipay app: the adapter's
authorize URL, the silent redirect with ``auth_code`` and ``state``, ``alipay.system.oauth.token``
signed like every request (checked against the official ``python-alipay-sdk``) and answered
once per code, its errors, and the buyer paying the JSAPI trade through the ``tradePay`` sheet."""

from __future__ import annotations

from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest

from paymux.channels import base
from paymux.channels.alipay import oauth
from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.adapter import PRODUCTION_GATEWAY, AlipayAdapter
from paymux.channels.base import BusinessError, NextActionType, UnknownOutcome
from tests.channels import test_alipay as channel_tests
from tests.channels.test_alipay import BASE, Env, new_private_pem, public_pem_of, request

env = channel_tests.env
BACK = "http://gw.test/pay/pay_1/oauth/return"


async def _auth_code(env: Env, *, user: str = "payer") -> str:
    url = env.adapter.payer_authorize_url(BACK, "0123abcd")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == BASE + oauth.AUTHORIZE_PATH
    query = parse_qs(parts.query)
    assert query == {"app_id": [env.creds["app_id"]], "scope": ["auth_base"],
                     "redirect_uri": [BACK], "state": ["0123abcd"]}  # fmt: skip
    r = await env.client.get(f"{url}&sandbox_user={user}")
    assert r.status_code == 302
    back = urlsplit(r.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == BACK
    got = parse_qs(back.query)
    assert got["state"] == ["0123abcd"] and got["source"] == ["alipay_wallet"]
    assert got["app_id"] == [env.creds["app_id"]] and got["scope"] == ["auth_base"]
    return got["auth_code"][0]


def test_the_authorize_url_of_an_app_on_alipay() -> None:
    creds = {"app_id": "2021000000000001", "app_private_key": new_private_pem(),
             "alipay_public_key": public_pem_of(new_private_pem()),
             "gateway": PRODUCTION_GATEWAY}  # fmt: skip
    adapter = AlipayAdapter(creds, httpx.AsyncClient())
    url = adapter.payer_authorize_url("https://pay.example/pay/p/oauth/return", "s1")
    assert url.startswith(oauth.AUTHORIZE_URL + "?")
    assert parse_qs(urlsplit(url).query)["redirect_uri"] == [
        "https://pay.example/pay/p/oauth/return"
    ]
    assert base.payer_auth_of(adapter) is adapter
    assert adapter.sdk_stand_in("alipay_jsapi", {"tradeNO": "1"}) is None  # the app pays


def test_the_token_request_is_signed_like_the_official_sdk(env: Env) -> None:
    params = env.adapter.oauth_token_params("code-1")
    assert params["method"] == oauth.METHOD_OAUTH_TOKEN
    assert params["grant_type"] == "authorization_code" and params["code"] == "code-1"
    assert "biz_content" not in params  # grant_type and code are common parameters
    unsigned = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign")
    assert env.sdk()._sign(unsigned) == params["sign"]


async def test_the_code_becomes_the_buyer_once(env: Env) -> None:
    code = await _auth_code(env)
    payer = await env.adapter.exchange_payer_code(code)
    assert payer.field == "buyer_id" and p.USER_ID.fullmatch(payer.value)
    assert payer.value == env.sandbox.user_id_of("payer")
    assert not any("token" in k for k in payer.raw)  # no token kept in what may be logged
    with pytest.raises(BusinessError) as used:
        await env.adapter.exchange_payer_code(code)
    assert used.value.code == "invalid_code"
    other = await env.adapter.exchange_payer_code(await _auth_code(env, user="someone"))
    assert other.value != payer.value


async def test_unknown_or_other_apps_codes_are_invalid(env: Env) -> None:
    with pytest.raises(BusinessError) as unknown:
        await env.adapter.exchange_payer_code("not-a-code")
    assert unknown.value.code == "invalid_code"
    with pytest.raises(BusinessError) as empty:
        await env.adapter.exchange_payer_code("")
    assert empty.value.code == "invalid_code"
    second = env.sandbox.provision(BASE)
    theirs = env.adapter_with(**second)
    url = theirs.payer_authorize_url(BACK, "s")
    r = await env.client.get(url)
    their_code = parse_qs(urlsplit(r.headers["location"]).query)["auth_code"][0]
    with pytest.raises(BusinessError) as crossed:
        await env.adapter.exchange_payer_code(their_code)
    assert crossed.value.code == "invalid_code"
    assert (await theirs.exchange_payer_code(their_code)).field == "buyer_id"  # still unused


async def test_a_bad_signature_either_way_is_refused(env: Env) -> None:
    code = await _auth_code(env)
    forger = env.adapter_with(app_private_key=new_private_pem())
    with pytest.raises(BusinessError) as refused:
        await forger.exchange_payer_code(code)
    assert refused.value.code == "isv.invalid-signature"
    assert (await env.adapter.exchange_payer_code(code)).field == "buyer_id"  # code unspent
    # An answer we cannot verify is not believed (the customer must authorize again).
    deaf = env.adapter_with(alipay_public_key=public_pem_of(new_private_pem()))
    with pytest.raises(UnknownOutcome) as unverified:
        await deaf.exchange_payer_code(await _auth_code(env))
    assert unverified.value.code == "unverifiable_response"


async def test_the_buyer_pays_the_jsapi_trade_in_the_trade_pay_sheet(env: Env) -> None:
    payer = await env.adapter.exchange_payer_code(await _auth_code(env))
    req = request("alipay_jsapi")
    req = type(req)(**{**req.__dict__, "customer": {payer.field: payer.value}})
    created = await env.adapter.create_payment(req)
    assert created.next_action is not None and created.next_action.type is NextActionType.sdk_params
    trade_no = created.next_action.params["tradeNO"]
    sdk = env.adapter.sdk_stand_in("alipay_jsapi", created.next_action.params)
    assert sdk is not None and sdk.script_url == BASE + "/_sandbox/alipay-jsbridge.js"
    assert (await env.client.get(sdk.script_url)).text.count("AlipayJSBridge") >= 1
    assert sdk.page_url is not None
    sheet = await env.client.get(sdk.page_url, params={"tradeNO": trade_no, "return_url": BACK})
    assert sheet.status_code == 200 and "data-problem" not in sheet.text
    missing = await env.client.get(sdk.page_url, params={"tradeNO": "2024nope"})
    assert missing.status_code == 400
    cancel = await env.client.post(sdk.page_url, data={"tradeNO": trade_no, "result": "cancel",
                                                       "return_url": BACK})  # fmt: skip
    assert cancel.headers["location"] == f"{BACK}#sandbox_result=6001&tradeNO={trade_no}"
    paid = await env.client.post(sdk.page_url, data={"tradeNO": trade_no, "result": "pay",
                                                     "return_url": BACK})  # fmt: skip
    assert paid.headers["location"] == f"{BACK}#sandbox_result=9000&tradeNO={trade_no}"
    state = await env.adapter.query_payment(req.out_trade_no)
    assert state.status is base.ChannelPaymentStatus.succeeded
    again = await env.client.get(sdk.page_url, params={"tradeNO": trade_no})
    assert again.status_code == 400  # a paid trade cannot be paid twice


async def test_the_app_sdk_stand_in_checks_the_order_string(env: Env) -> None:
    created = await env.adapter.create_payment(request("alipay_app"))
    assert created.next_action is not None
    order_string = created.next_action.params["order_string"]
    sdk = env.adapter.sdk_stand_in("alipay_app", created.next_action.params)
    assert sdk is not None and sdk.script_url is None and sdk.page_url is not None
    fields = dict(parse_qsl(order_string))
    fields["sign"] = fields["sign"][:-8] + "AAAAAAA="
    tampered = "&".join(f"{k}={v}" for k, v in fields.items())
    bad = await env.client.get(sdk.page_url, params={"order_string": tampered})
    assert bad.status_code == 400 and "isv.invalid-signature" in bad.text
    ok = await env.client.get(sdk.page_url, params={"order_string": order_string,
                                                    "return_url": BACK})  # fmt: skip
    assert ok.status_code == 303 and "/_sandbox/pay/" in ok.headers["location"]
    assert "redirect_url=" in ok.headers["location"]

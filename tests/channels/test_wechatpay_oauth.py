"""WeChat web OAuth ``snsapi_base`` on the sandbox, as WeChat does it: the adapter's authorize
URL, the silent redirect with ``code`` and ``state``, the code exchanged once for the openid
(which then pays a JSAPI order), and WeChat's errcodes for bad codes and secrets."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from paymux.channels.base import BusinessError, NextActionType
from paymux.channels.wechatpay.adapter import WechatPayAdapter
from tests.channels import test_wechatpay as channel_tests
from tests.channels.test_wechatpay import BASE, Env, payment

env = channel_tests.env
BACK = "http://gw.test/pay/pay_1/oauth?lang=en"


async def _code(env: Env, user: str = "payer") -> str:
    url = env.adapter.payer_authorize_url(BACK, "st-42")
    parts = urlsplit(url)
    assert parts.fragment == "wechat_redirect" and parts.path == "/connect/oauth2/authorize"
    query = parse_qs(parts.query)
    assert query["scope"] == ["snsapi_base"] and query["response_type"] == ["code"]
    assert query["appid"] == [env.creds["appid"]] and query["redirect_uri"] == [BACK]
    r = await env.http.get(url.split("#")[0] + f"&sandbox_user={user}")
    assert r.status_code == 302
    back = urlsplit(r.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == BACK.split("?")[0]
    got = parse_qs(back.query)
    assert got["state"] == ["st-42"] and got["lang"] == ["en"]
    return got["code"][0]


async def test_code_becomes_the_openid_once_and_pays_jsapi(env: Env) -> None:
    code = await _code(env)
    payer = await env.adapter.exchange_payer_code(code)
    assert payer.field == "openid"
    assert payer.value == env.sandbox.openid_of(env.creds["appid"])
    with pytest.raises(BusinessError) as used:
        await env.adapter.exchange_payer_code(code)
    assert used.value.code == "invalid_code"
    created = await env.adapter.create_payment(
        payment("wechat_jsapi", customer={payer.field: payer.value})
    )
    assert created.next_action is not None
    assert created.next_action.type is NextActionType.sdk_params
    params = created.next_action.params or {}
    assert params["signType"] == "RSA" and params["package"].startswith("prepay_id=")
    other = await env.adapter.exchange_payer_code(await _code(env, "someone-else"))
    assert other.value != payer.value


async def test_bad_codes_and_secrets(env: Env) -> None:
    with pytest.raises(BusinessError) as bad:
        await env.adapter.exchange_payer_code("nope")
    assert bad.value.code == "invalid_code"
    code = await _code(env)
    wrong = WechatPayAdapter({**env.creds, "oauth_app_secret": "0" * 32}, env.http)
    with pytest.raises(BusinessError) as secret:
        await wrong.exchange_payer_code(code)
    assert secret.value.code == "wechat_40125"
    unset = WechatPayAdapter({k: v for k, v in env.creds.items() if k != "oauth_app_secret"},
                             env.http)  # fmt: skip
    with pytest.raises(BusinessError) as missing:
        await unset.exchange_payer_code(code)
    assert missing.value.code == "oauth_not_configured"
    with pytest.raises(BusinessError) as nowhere:  # nobody is sent to a sign-in that cannot end
        unset.payer_authorize_url(BACK, "st")
    assert nowhere.value.code == "oauth_not_configured"
    # the code survived the failed attempts
    assert (await env.adapter.exchange_payer_code(code)).field == "openid"
    r = await env.http.get(f"{BASE}/connect/oauth2/authorize?appid=wxnope&redirect_uri={BACK}"
                           "&response_type=code&scope=snsapi_base")  # fmt: skip
    assert r.status_code == 400

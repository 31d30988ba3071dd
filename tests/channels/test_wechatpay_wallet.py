"""The WeChat sandbox's stand-in of the WeChat app: the ``WeixinJSBridge`` script and the
payment sheets for JSAPI, app SDK and mini-program parameters, which check the signature as
WeChat does before anything is paid; and no stand-in for an account on WeChat itself."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from paymux.channels import base
from paymux.channels.sandbox_kit import OrderStatus
from paymux.channels.wechatpay.adapter import DEFAULT_GATEWAY, WechatPayAdapter
from paymux.channels.wechatpay.sandbox_wallet import BAD_SIGN
from tests.channels import test_wechatpay as channel_tests
from tests.channels.test_wechatpay import BASE, Env, payment

env = channel_tests.env
BACK = "http://gw.test/pay/pay_1"


async def _sdk(env: Env, method: str, **extra: Any) -> tuple[dict[str, str], base.SdkStandIn]:
    created = await env.adapter.create_payment(payment(method, **extra))
    assert created.next_action is not None
    params = dict(created.next_action.params or {})
    sdk = env.adapter.sdk_stand_in(method, params)
    assert sdk is not None and sdk.page_url is not None
    return params, sdk


def _order(env: Env, params: dict[str, str]) -> Any:
    prepay = params.get("prepayid") or params["package"].removeprefix("prepay_id=")
    order = env.sandbox.order_by_prepay_id(prepay)
    assert order is not None
    return order


async def test_jsapi_sheet_verifies_pay_sign_then_pays(env: Env) -> None:
    params, sdk = await _sdk(env, "wechat_jsapi", customer={"openid": "o-payer"})
    assert sdk.script_url == BASE + "/_sandbox/weixin-jsbridge.js"
    script = await env.http.get(sdk.script_url)
    assert script.status_code == 200 and "window.WeixinJSBridge" in script.text
    assert script.headers["content-type"].startswith("text/javascript")
    assert sdk.page_url is not None
    sheet = await env.http.get(sdk.page_url, params={**params, "return_url": BACK})
    assert sheet.status_code == 200 and "data-problem" not in sheet.text and "19.99" in sheet.text
    # A paySign the merchant did not make: WeChat's own refusal, and nothing is paid.
    forged = {**params, "paySign": params["paySign"][:-6] + "AAAAA="}
    refused = await env.http.get(sdk.page_url, params=forged)
    assert refused.status_code == 400 and BAD_SIGN in refused.text
    tried = await env.http.post(sdk.page_url, data={**forged, "result": "pay", "return_url": BACK})
    assert "get_brand_wcpay_request%3Afail" in tried.headers["location"]
    assert _order(env, params).status is OrderStatus.pending
    # Another timestamp under the same signature is a forgery too.
    moved = {**params, "timeStamp": str(int(params["timeStamp"]) + 1)}
    assert (await env.http.get(sdk.page_url, params=moved)).status_code == 400
    paid = await env.http.post(sdk.page_url, data={**params, "result": "pay", "return_url": BACK})
    location = urlsplit(paid.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == BACK
    fragment = parse_qs(location.fragment)
    assert fragment == {"sandbox_result": ["get_brand_wcpay_request:ok"],
                        "package": [params["package"]]}  # fmt: skip
    assert _order(env, params).status is OrderStatus.succeeded


async def test_cancel_in_the_sheet_pays_nothing(env: Env) -> None:
    params, sdk = await _sdk(env, "wechat_jsapi", customer={"openid": "o-payer"})
    assert sdk.page_url is not None
    r = await env.http.post(sdk.page_url, data={**params, "result": "cancel", "return_url": BACK})
    assert parse_qs(urlsplit(r.headers["location"]).fragment)["sandbox_result"] == [
        "get_brand_wcpay_request:cancel"
    ]
    assert _order(env, params).status is OrderStatus.pending


async def test_app_sheet_checks_the_payreq_sign(env: Env) -> None:
    params, sdk = await _sdk(env, "wechat_app")
    assert sdk.script_url is None and sdk.page_url is not None
    ok = await env.http.get(sdk.page_url, params=params)
    assert ok.status_code == 200 and "data-problem" not in ok.text
    forged = await env.http.get(
        sdk.page_url, params={**params, "noncestr": "x" + params["noncestr"]}
    )
    assert forged.status_code == 400 and BAD_SIGN in forged.text
    other = await env.http.get(sdk.page_url, params={**params, "partnerid": "1600000000"})
    assert other.status_code == 400
    await env.http.post(sdk.page_url, data={**params, "result": "pay"})
    assert _order(env, params).status is OrderStatus.succeeded


async def test_mini_program_sheet_uses_the_orders_appid(env: Env) -> None:
    params, sdk = await _sdk(env, "wechat_mini", customer={"openid": "o-mini"})
    assert "appId" not in params and sdk.page_url is not None
    assert (await env.http.get(sdk.page_url, params=params)).status_code == 200
    await env.http.post(sdk.page_url, data={**params, "result": "decline", "return_url": BACK})
    assert _order(env, params).status is OrderStatus.failed


async def test_unknown_prepay_ids_and_missing_fields_are_refused(env: Env) -> None:
    params, sdk = await _sdk(env, "wechat_jsapi", customer={"openid": "o-payer"})
    assert sdk.page_url is not None
    unknown = {**params, "package": "prepay_id=wx000000"}
    assert (await env.http.get(sdk.page_url, params=unknown)).status_code == 400
    partial = {k: v for k, v in params.items() if k != "paySign"}
    assert (await env.http.get(sdk.page_url, params=partial)).status_code == 400


def test_an_account_on_wechat_has_no_stand_in(env: Env) -> None:
    live = WechatPayAdapter({**env.creds, "gateway": DEFAULT_GATEWAY}, httpx.AsyncClient())
    assert live.sdk_stand_in("wechat_jsapi", {}) is None
    assert base.sdk_stand_in_of(live) is live and base.payer_auth_of(live) is live
    assert env.adapter.sdk_stand_in("wechat_native", {}) is None

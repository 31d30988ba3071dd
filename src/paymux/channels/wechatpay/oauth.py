"""Web OAuth of a WeChat official account, scope ``snsapi_base`` (silent): the payer's
``openid`` under ``appid`` for a JSAPI payment opened inside WeChat.

1. The browser goes to ``https://open.weixin.qq.com/connect/oauth2/authorize?appid=…&
   redirect_uri=…&response_type=code&scope=snsapi_base&state=…#wechat_redirect``.
2. WeChat sends it back to ``redirect_uri?code=…&state=…`` (a code is single use, ~5 min).
3. The server exchanges it: ``GET https://api.weixin.qq.com/sns/oauth2/access_token?appid=&
   secret=&code=&grant_type=authorization_code`` → ``{access_token, expires_in, refresh_token,
   openid, scope}`` or ``{errcode, errmsg}`` (40029 invalid code, 40163 code used).

Needs the official account's AppSecret (``oauth_app_secret``). A sandbox gateway serves both
hosts' paths itself."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx

from paymux.channels.base import BusinessError, PayerIdentity, RetryableError, UnknownOutcome
from paymux.channels.wechatpay.keys import DEFAULT_GATEWAY

AUTHORIZE_URL = "https://open.weixin.qq.com/connect/oauth2/authorize"
TOKEN_URL = "https://api.weixin.qq.com/sns/oauth2/access_token"
AUTHORIZE_PATH = "/connect/oauth2/authorize"
TOKEN_PATH = "/sns/oauth2/access_token"
INVALID_CODES = frozenset({40029, 40163, 41008})
"""Invalid, already used, or missing code: the customer must authorize again."""


class OAuthCalls:
    """Mixin of :class:`~paymux.channels.wechatpay.adapter.WechatPayAdapter`
    (:class:`~paymux.channels.base.PayerAuthCapable`)."""

    credentials: Any
    """Direct-mode :class:`WechatPayCredentials` (``appid``, ``oauth_app_secret``, ``gateway``)."""
    _http: httpx.AsyncClient

    def _oauth_base(self, live: str) -> str:
        gateway = self.credentials.gateway
        return live if gateway == DEFAULT_GATEWAY else gateway.rstrip("/") + (
            AUTHORIZE_PATH if live == AUTHORIZE_URL else TOKEN_PATH
        )  # fmt: skip

    def payer_authorize_url(self, redirect_uri: str, state: str) -> str:
        if not getattr(self.credentials, "oauth_app_secret", None):
            # Without the AppSecret the code could not be exchanged: do not send anyone there.
            raise BusinessError("oauth_not_configured", "oauth_app_secret is not set")
        query = urlencode({"appid": self.credentials.appid, "redirect_uri": redirect_uri,
                           "response_type": "code", "scope": "snsapi_base",
                           "state": state})  # fmt: skip
        return f"{self._oauth_base(AUTHORIZE_URL)}?{query}#wechat_redirect"

    async def exchange_payer_code(self, code: str) -> PayerIdentity:
        secret = getattr(self.credentials, "oauth_app_secret", None)
        if not secret:
            raise BusinessError("oauth_not_configured", "oauth_app_secret is not set")
        params = {"appid": self.credentials.appid, "secret": secret, "code": code,
                  "grant_type": "authorization_code"}  # fmt: skip
        try:
            response = await self._http.get(self._oauth_base(TOKEN_URL), params=params)
        except httpx.TimeoutException as exc:
            raise UnknownOutcome("timeout", str(exc)) from exc
        except httpx.HTTPError as exc:
            raise RetryableError("network_error", str(exc)) from exc
        if response.status_code >= 500:
            raise RetryableError("server_error", f"HTTP {response.status_code}")
        try:
            data: dict[str, Any] = response.json()
        except ValueError:
            raise RetryableError("malformed_response", "not JSON") from None
        errcode = data.get("errcode")
        if errcode:
            code_name = "invalid_code" if errcode in INVALID_CODES else f"wechat_{errcode}"
            raise BusinessError(code_name, str(data.get("errmsg") or ""), raw=data)
        openid = data.get("openid")
        if not isinstance(openid, str) or not openid:
            raise RetryableError("malformed_response", "no openid", raw=data)
        return PayerIdentity(field="openid", value=openid, raw=data)

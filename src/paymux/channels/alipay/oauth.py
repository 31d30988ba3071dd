"""Web OAuth of an Alipay app, scope ``auth_base`` (silent, no consent page): who the payer is,
for an ``alipay_jsapi`` payment opened inside the Alipay app.

1. The browser goes to ``https://openauth.alipay.com/oauth2/publicAppAuthorize.htm?app_id=…&
   scope=auth_base&redirect_uri=…&state=…``.
2. Alipay sends it back to ``redirect_uri?app_id=…&source=alipay_wallet&scope=auth_base&
   auth_code=…&state=…`` (an auth_code is single use and short-lived).
3. The server exchanges it with ``alipay.system.oauth.token`` — ``grant_type=
   authorization_code`` and ``code`` are *common* request parameters (no ``biz_content``),
   signed like every request — whose ``alipay_system_oauth_token_response`` carries
   ``user_id`` (2088…) and/or ``open_id`` (the newer per-app id), ``access_token``,
   ``expires_in``, ``refresh_token``; an error answers ``error_response`` (``40002
   isv.code-invalid`` for an unknown, used or expired code).

The payer becomes ``customer.buyer_id`` (a 2088… user id) or ``customer.buyer_open_id``, which
:mod:`.jsapi` sends to ``alipay.trade.create``. A paymux sandbox gateway serves the authorize
page itself at ``<gateway base>/oauth2/publicAppAuthorize.htm``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from paymux.channels.alipay import protocol as p
from paymux.channels.alipay.client import AlipayClient, classify
from paymux.channels.base import BusinessError, PayerIdentity, UnknownOutcome

METHOD_OAUTH_TOKEN = "alipay.system.oauth.token"
AUTHORIZE_URL = "https://openauth.alipay.com/oauth2/publicAppAuthorize.htm"
AUTHORIZE_PATH = "/oauth2/publicAppAuthorize.htm"
SCOPE = "auth_base"
INVALID_CODES = frozenset({"isv.code-invalid", "isv.code-expired", "isv.auth-code-invalid"})
"""An auth_code Alipay no longer takes (unknown, used, expired): authorize again.
[Only ``isv.code-invalid`` is confirmed by public SDK examples; the others are defensive.]"""
_ALIPAY_HOSTS = {
    "openapi.alipay.com": AUTHORIZE_URL,
    "openapi-sandbox.dl.alipaydev.com":
        "https://openauth-sandbox.dl.alipaydev.com/oauth2/publicAppAuthorize.htm",
}  # fmt: skip
"""Alipay's own gateways and their authorize page [the alipaydev one is unverified]."""


class OAuthMixin(AlipayClient):
    """:class:`~paymux.channels.base.PayerAuthCapable` for
    :class:`~paymux.channels.alipay.adapter.AlipayAdapter`."""

    def _authorize_base(self) -> str:
        gateway = urlsplit(self.credentials.gateway)
        known = _ALIPAY_HOSTS.get(gateway.hostname or "")
        if known is not None:
            return known
        root = gateway.path.rsplit("/", 1)[0]  # the sandbox's mount point
        return f"{gateway.scheme}://{gateway.netloc}{root}{AUTHORIZE_PATH}"

    def payer_authorize_url(self, redirect_uri: str, state: str) -> str:
        query = urlencode({"app_id": self.credentials.app_id, "scope": SCOPE,
                           "redirect_uri": redirect_uri, "state": state})  # fmt: skip
        return f"{self._authorize_base()}?{query}"

    def oauth_token_params(self, code: str) -> dict[str, str]:
        """The signed ``alipay.system.oauth.token`` request for ``code`` (no biz_content)."""
        params = p.request_params(
            app_id=self.credentials.app_id, method=METHOD_OAUTH_TOKEN, biz_content={},
            extra={**self._cert_params, "grant_type": "authorization_code", "code": code},
        )  # fmt: skip
        del params["biz_content"]
        return p.sign_params(params, self._private_key)

    async def exchange_payer_code(self, code: str) -> PayerIdentity:
        if not code:
            raise BusinessError("invalid_code", "no auth_code")
        response = await self._send(self.oauth_token_params(code))
        if response.status_code != 200:
            raise UnknownOutcome("http_status", f"HTTP {response.status_code}")
        try:
            raw = p.extract_response(response.content.decode("utf-8"), METHOD_OAUTH_TOKEN)
        except (UnicodeDecodeError, ValueError) as exc:
            raise UnknownOutcome("unparseable_response", str(exc)) from exc
        if not raw.sign or not p.verify(raw.text, raw.sign, self._alipay_key):
            raise UnknownOutcome("unverifiable_response", "response signature invalid or missing")
        data: dict[str, Any] = raw.data
        if raw.key == "error_response" or (data.get("code") and data["code"] != p.SUCCESS_CODE):
            sub_code = str(data.get("sub_code") or "")
            message = str(data.get("sub_msg") or data.get("msg") or "")
            if sub_code in INVALID_CODES:
                raise BusinessError("invalid_code", f"{sub_code}: {message}", raw=data)
            raise classify(str(data.get("code") or ""), sub_code, message, raw=data)
        user_id, open_id = data.get("user_id"), data.get("open_id")
        if isinstance(user_id, str) and p.USER_ID.fullmatch(user_id):
            return PayerIdentity(field="buyer_id", value=user_id, raw=_public(data))
        if isinstance(open_id, str) and open_id:
            return PayerIdentity(field="buyer_open_id", value=open_id, raw=_public(data))
        raise UnknownOutcome("malformed_response", "no user_id or open_id", raw=_public(data))


def _public(data: dict[str, Any]) -> dict[str, Any]:
    """The answer without its tokens (they must not reach a log or an error's raw)."""
    return {k: v for k, v in data.items() if "token" not in k}

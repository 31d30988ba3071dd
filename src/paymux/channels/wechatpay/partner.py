"""WeChat Pay 服务商 (partner / ISV) mode: credentials and the facts of the partner wire format.

A platform that is a WeChat Pay *service provider* (服务商) takes payments for its sub-merchants
(特约商户): it signs every request with its own merchant key (``Authorization: mchid=<sp_mchid>``)
and names the sub-merchant in the body. paymux keeps one channel account per sub-merchant, each
carrying the service provider's credentials plus that sub-merchant's ids, so routing, fees and
reconciliation stay per sub-merchant.

What changes against direct mode (WeChat's partner API docs; wechatpayv3 ``partner_mode``):

- orders: ``POST /v3/pay/partner/transactions/{native|jsapi|h5|app}`` with ``sp_appid,
  sp_mchid, sub_mchid`` and optional ``sub_appid``; the payer is ``sp_openid`` (an openid under
  ``sp_appid``) or ``sub_openid`` (under ``sub_appid``, which must then be sent);
- query: ``GET …/out-trade-no/{no}?sp_mchid=…&sub_mchid=…``; close: ``POST …/close`` with
  ``{sp_mchid, sub_mchid}``;
- transactions (answers and notifications) carry ``sp_appid, sp_mchid, sub_appid, sub_mchid``
  and ``payer.{sp_openid, sub_openid}`` instead of ``appid, mchid, payer.openid``;
- refunds: the same ``/v3/refund/domestic/refunds`` with ``sub_mchid`` in the body, and
  ``?sub_mchid=`` on the refund query; refund notifications carry ``sp_mchid, sub_mchid``;
- JSAPI / mini-program pay parameters are signed by the service provider's key with the appid
  the openid belongs to; the APP SDK's ``partnerid`` is the sub-merchant.
"""

from __future__ import annotations

from pydantic import Field

from paymux.channels.wechatpay.keys import MerchantKeys


class WechatPayPartnerCredentials(MerchantKeys):
    """One sub-merchant (特约商户) served by a WeChat Pay service provider (服务商), in platform
    public-key mode. The key material is the service provider's."""

    sp_mchid: str = Field(min_length=1, max_length=32)
    """The service provider's merchant id: signs every request."""
    sp_appid: str = Field(min_length=1, max_length=32)
    """An appid bound to the service provider (official account, app or mini-program)."""
    sub_mchid: str = Field(min_length=1, max_length=32)
    """The sub-merchant the money is for."""
    sub_appid: str | None = Field(default=None, min_length=1, max_length=32)
    """The sub-merchant's own appid (official account / app), when it pays under its own app:
    then JSAPI payers are ``sub_openid`` under it."""
    sp_mini_appid: str | None = Field(default=None, min_length=1, max_length=32)
    """A mini-program of the service provider that takes ``wechat_mini`` payments."""
    sub_mini_appid: str | None = Field(default=None, min_length=1, max_length=32)
    """The sub-merchant's own mini-program (wins over ``sp_mini_appid``)."""

    @property
    def mchid(self) -> str:
        """Who signs (the ``Authorization`` header's ``mchid``): the service provider."""
        return self.sp_mchid

    @property
    def appid(self) -> str:
        return self.sp_appid

    def payer_app(self, method: str) -> tuple[str, str]:
        """For a JSAPI-kind ``method``: (``sp`` or ``sub``, the appid the payer's openid
        belongs to). The sub-merchant's own app wins; otherwise the service provider's."""
        if method == "wechat_mini":
            if self.sub_mini_appid:
                return "sub", self.sub_mini_appid
            if self.sp_mini_appid:
                return "sp", self.sp_mini_appid
        if self.sub_appid:
            return "sub", self.sub_appid
        return "sp", self.sp_appid

    def order_apps(self, method: str) -> tuple[str, str | None]:
        """(``sp_appid``, ``sub_appid`` or None) to send in an order for ``method``."""
        side, appid = self.payer_app(method)
        return (self.sp_appid, appid) if side == "sub" else (appid, None)

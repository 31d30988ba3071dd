"""The WeChat Pay sandbox's service providers (服务商) and their sub-merchants (特约商户).

Plugged into :class:`paymux.channels.wechatpay.sandbox.Sandbox` as ``sandbox.partners``. A
service provider is a sandbox merchant (it signs requests with its own key); its sub-merchants
hold no keys, only ids and appids. It serves:

- ``POST /v3/pay/partner/transactions/{native,jsapi,h5,app}``: checks what WeChat checks —
  ``sp_mchid`` is the signer, ``sub_mchid`` is one of *its* sub-merchants (else 400
  ``INVALID_REQUEST`` "受理关系不存在" [wording unverified]), ``sp_appid`` is bound to the service
  provider and ``sub_appid`` to the sub-merchant (else ``APPID_MCHID_NOT_MATCH``), a JSAPI payer
  is exactly one of ``sp_openid`` / ``sub_openid``, and ``sub_openid`` needs ``sub_appid``;
- ``GET /v3/pay/partner/transactions/out-trade-no/{no}?sp_mchid=&sub_mchid=`` and ``POST
  …/close`` with ``{sp_mchid, sub_mchid}``;
- refunds through the direct refund endpoints with ``sub_mchid`` (see :meth:`PartnerDesk.
  refund_merchant`);
- notifications (``TRANSACTION.SUCCESS``, ``REFUND.*``) encrypted with the service provider's
  APIv3 key, whose resources carry ``sp_mchid``/``sub_mchid`` (and ``sp_appid``/``sub_appid``,
  ``payer.sp_openid``/``sub_openid`` for transactions).

Control API: ``POST /_sandbox/partners`` (a new service provider: its credentials) and ``POST
/_sandbox/partners/{sp_mchid}/sub_merchants`` (a new sub-merchant: its ids).
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from paymux.channels import sandbox_kit
from paymux.channels.sandbox_kit import OrderStatus, SandboxOrder, SandboxRefund
from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.sandbox_base import SandboxBase, SandboxMerchant, WxError
from paymux.kit import clock

_ALNUM = string.ascii_letters + string.digits
_KINDS = ("native", "jsapi", "h5", "app")


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass
class SubMerchant:
    sub_mchid: str
    sp_mchid: str
    appids: set[str] = field(default_factory=set)
    """Appids bound to the sub-merchant (its official account, app, mini-program)."""


@dataclass
class ServiceProvider:
    sp_mchid: str
    appids: set[str]
    """Appids bound to the service provider."""
    sub_merchants: dict[str, SubMerchant] = field(default_factory=dict)


class _Amount(BaseModel):
    total: StrictInt = Field(ge=1)
    currency: str = "CNY"


class _Payer(BaseModel):
    sp_openid: str | None = Field(default=None, min_length=1, max_length=128)
    sub_openid: str | None = Field(default=None, min_length=1, max_length=128)


class _H5Info(BaseModel):
    type: str = Field(min_length=1, max_length=32)


class _SceneInfo(BaseModel):
    payer_client_ip: str = Field(min_length=1, max_length=45)
    h5_info: _H5Info | None = None


class _SettleInfo(BaseModel):
    profit_sharing: StrictBool = False


class _PartnerCreateBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    sp_appid: str = Field(min_length=1, max_length=32)
    sp_mchid: str = Field(min_length=1, max_length=32)
    sub_appid: str | None = Field(default=None, min_length=1, max_length=32)
    sub_mchid: str = Field(min_length=1, max_length=32)
    description: str = Field(min_length=1, max_length=127)
    out_trade_no: str = Field(pattern=r"^[A-Za-z0-9_\-|*]{6,32}$")
    time_expire: str | None = None
    attach: str | None = Field(default=None, max_length=128)
    notify_url: str = Field(min_length=1, max_length=255)
    amount: _Amount
    payer: _Payer | None = None
    scene_info: _SceneInfo | None = None
    settle_info: _SettleInfo | None = None


class _PartnerCloseBody(BaseModel):
    sp_mchid: str = Field(min_length=1, max_length=32)
    sub_mchid: str = Field(min_length=1, max_length=32)


class _NewSubMerchant(BaseModel):
    sub_appid: StrictBool = False
    """Give the sub-merchant its own appid (official account / app)."""
    sub_mini_appid: StrictBool = False
    """Give the sub-merchant its own mini-program."""


class _NewPartner(BaseModel):
    gateway: str | None = None
    """The base URL the credentials should name; the request's own base when absent."""


class PartnerDesk:
    """Service providers and sub-merchants of one WeChat Pay sandbox."""

    def __init__(self, sandbox: SandboxBase) -> None:
        self.sandbox = sandbox
        self.providers: dict[str, ServiceProvider] = {}

    # ------------------------------------------------------------ provisioning
    def provision_partner(self, base_url: str) -> dict[str, Any]:
        """A new service provider: its key material and ids (what a platform gets from WeChat
        as 服务商), without any sub-merchant yet."""
        creds = self.sandbox.provision(base_url)
        sp_mchid, sp_appid = creds.pop("mchid"), creds.pop("appid")
        creds.pop("oauth_app_secret", None)  # direct-mode field; partner OAuth not here yet
        mini = "wx" + secrets.token_hex(8)
        self.providers[sp_mchid] = ServiceProvider(sp_mchid, {sp_appid, mini})
        return {"sp_mchid": sp_mchid, "sp_appid": sp_appid, "sp_mini_appid": mini, **creds}

    def add_sub_merchant(
        self, sp_mchid: str, *, sub_appid: bool = False, sub_mini_appid: bool = False
    ) -> dict[str, str]:
        """A new sub-merchant of ``sp_mchid`` (WeChat's 特约商户进件): its ids."""
        provider = self.providers[sp_mchid]
        sub = SubMerchant("19" + _random(string.digits, 8), sp_mchid)
        ids = {"sub_mchid": sub.sub_mchid}
        if sub_appid:
            ids["sub_appid"] = "wx" + secrets.token_hex(8)
        if sub_mini_appid:
            ids["sub_mini_appid"] = "wx" + secrets.token_hex(8)
        sub.appids = {v for k, v in ids.items() if k != "sub_mchid"}
        provider.sub_merchants[sub.sub_mchid] = sub
        return ids

    def provision(self, base_url: str, **options: bool) -> dict[str, Any]:
        """Complete channel-account credentials of a sub-merchant of a new service provider."""
        creds = self.provision_partner(base_url)
        return {**creds, **self.add_sub_merchant(creds["sp_mchid"], **options)}

    # ------------------------------------------------------------ checks
    def _provider(self, merchant: SandboxMerchant) -> ServiceProvider:
        provider = self.providers.get(merchant.mchid)
        if provider is None:
            raise self._error(403, "NO_AUTH", "商户号不是服务商，无权调用服务商接口")
        return provider

    def _sub(self, provider: ServiceProvider, sub_mchid: str) -> SubMerchant:
        sub = provider.sub_merchants.get(sub_mchid)
        if sub is None:
            raise self._error(400, "INVALID_REQUEST", "受理关系不存在")
        return sub

    @staticmethod
    def _error(status: int, code: str, message: str) -> Exception:
        return WxError(status, code, message)

    def refund_merchant(self, merchant: SandboxMerchant, sub_mchid: str | None) -> SandboxMerchant:
        """Who a refund call acts for: the signer itself, or (``sub_mchid`` given) one of the
        signing service provider's sub-merchants, whose orders and refunds are keyed by
        ``sub_mchid``."""
        if sub_mchid is None:
            return merchant
        provider = self._provider(merchant)
        sub = self._sub(provider, sub_mchid)
        return SandboxMerchant(
            mchid=sub.sub_mchid,
            appid=merchant.appid,
            serial_no=merchant.serial_no,
            public_key=merchant.public_key,
            apiv3_key=merchant.apiv3_key,
        )

    # ------------------------------------------------------------ views
    def transaction(self, order: SandboxOrder) -> dict[str, Any]:
        """A partner order as WeChat's partner transaction object."""
        base = self.sandbox.transaction(order)
        extra = order.extra
        data: dict[str, Any] = {
            "sp_appid": extra["sp_appid"],
            "sp_mchid": extra["sp_mchid"],
            "sub_mchid": order.merchant_id,
        }
        if extra.get("sub_appid"):
            data["sub_appid"] = extra["sub_appid"]
        data |= {k: v for k, v in base.items() if k not in ("appid", "mchid", "payer")}
        if "payer" in base:
            payer = {"sp_openid": extra["sp_openid"]}
            if extra.get("sub_openid"):
                payer["sub_openid"] = extra["sub_openid"]
            data["payer"] = payer
        return data

    def build_notification(self, order: SandboxOrder) -> tuple[dict[str, str], bytes]:
        sp_mchid = order.extra["sp_mchid"]
        merchant = self.sandbox.merchants[sp_mchid]
        resource = protocol.encrypt_resource(
            merchant.apiv3_key, protocol.encode_json(self.transaction(order))
        )
        event_id = uuid.uuid5(
            uuid.NAMESPACE_URL,
            f"wechatpay:{sp_mchid}:{order.channel_trade_no}:TRANSACTION.SUCCESS",
        )
        return self.sandbox._signed_event(str(event_id), "TRANSACTION.SUCCESS", "支付成功",
                                          resource)  # fmt: skip

    def build_refund_notification(self, refund: SandboxRefund) -> tuple[dict[str, str], bytes]:
        order = refund.order
        sp_mchid = order.extra["sp_mchid"]
        status = self.sandbox._refund_status(refund)
        event_type = f"REFUND.{status}"
        resource_data = self.sandbox.refund_resource(refund)
        resource_data.pop("mchid", None)
        resource_data = {"sp_mchid": sp_mchid, "sub_mchid": order.merchant_id, **resource_data}
        resource = protocol.encrypt_resource(
            self.sandbox.merchants[sp_mchid].apiv3_key,
            protocol.encode_json(resource_data),
            original_type=protocol.REFUND_RESOURCE_TYPE,
            associated_data=protocol.REFUND_RESOURCE_TYPE,
        )
        event_id = uuid.uuid5(
            uuid.NAMESPACE_URL, f"wechatpay:{sp_mchid}:{refund.refund_no}:{event_type}"
        )
        return self.sandbox._signed_event(str(event_id), event_type,
                                          protocol.REFUND_STATE_DESC[status], resource)  # fmt: skip

    # ------------------------------------------------------------ endpoints
    async def create(self, request: Request, kind: str) -> Response:
        sandbox = self.sandbox
        raw = await request.body()
        merchant = sandbox._authenticate(request, raw)
        body = sandbox._parse(_PartnerCreateBody, raw)
        if body.sp_mchid != merchant.mchid:
            raise self._error(400, "PARAM_ERROR", "sp_mchid与请求的商户号不一致")
        provider = self._provider(merchant)
        sub = self._sub(provider, body.sub_mchid)
        if body.sp_appid not in provider.appids:
            raise self._error(400, "APPID_MCHID_NOT_MATCH", "sp_appid和sp_mchid不匹配")
        if body.sub_appid is not None and body.sub_appid not in sub.appids:
            raise self._error(400, "APPID_MCHID_NOT_MATCH", "sub_appid和sub_mchid不匹配")
        if body.amount.currency != "CNY":
            raise self._error(400, "PARAM_ERROR", "不支持的货币类型")
        notify = urlsplit(body.notify_url)
        if notify.scheme not in ("http", "https") or not notify.netloc:
            raise self._error(400, "PARAM_ERROR", "notify_url格式错误")
        expires_at: dt.datetime | None = None
        if body.time_expire is not None:
            try:
                expires_at = protocol.parse_rfc3339(body.time_expire)
            except ValueError as exc:
                raise self._error(400, "PARAM_ERROR", "time_expire格式错误") from exc
        sp_openid, sub_openid = self._payer(kind, body)
        if kind == "h5" and (body.scene_info is None or body.scene_info.h5_info is None):
            raise self._error(400, "PARAM_ERROR", "H5下单缺少scene_info.h5_info")

        existing = sandbox.core.get_order(sub.sub_mchid, body.out_trade_no)
        if existing is not None:
            return self._replay(existing, body, kind)
        script = sandbox.core.take_script(body.description)
        if script.outcome is sandbox_kit.Outcome.create_error:
            raise self._error(500, "SYSTEM_ERROR", "系统错误")
        now = clock.now()
        order = SandboxOrder(
            out_trade_no=body.out_trade_no,
            channel_trade_no="4200" + _random(string.digits, 24),
            merchant_id=sub.sub_mchid,
            amount=body.amount.total,
            currency=body.amount.currency,
            subject=body.description,
            notify_url=body.notify_url,
            method=kind,
            script=script,
            created_at=now,
            extra={
                "appid": body.sub_appid or body.sp_appid,
                "sp_appid": body.sp_appid,
                "sp_mchid": body.sp_mchid,
                "sub_appid": body.sub_appid,
                "attach": body.attach,
                "time_expire": expires_at,
                "openid": sub_openid or sp_openid,
                "sp_openid": sp_openid,
                "sub_openid": sub_openid,
                "prepay_id": "wx" + now.strftime("%d%H%M%S") + secrets.token_hex(12),
                "page_url": f"{sandbox._base_url(request)}/_sandbox/pay/{body.out_trade_no}",
                "profit_sharing": bool(body.settle_info and body.settle_info.profit_sharing),
            },
        )
        sandbox.core.add_order(order)
        await sandbox.core.after_create(order)
        return sandbox._respond(200, sandbox._create_answer(order))

    def _payer(self, kind: str, body: _PartnerCreateBody) -> tuple[str, str | None]:
        """(sp_openid, sub_openid) of the payer. A payer under ``sub_appid`` also has an
        openid under ``sp_appid`` (the sandbox makes one up, as WeChat reports both)."""
        payer = body.payer
        if kind == "jsapi":
            if payer is None or (payer.sp_openid is None) == (payer.sub_openid is None):
                raise self._error(400, "PARAM_ERROR", "须填写payer.sp_openid或sub_openid之一")
            if payer.sub_openid is not None and body.sub_appid is None:
                raise self._error(400, "PARAM_ERROR", "填写sub_openid时须填写sub_appid")
            if payer.sp_openid is not None:
                return payer.sp_openid, None
            return "o" + _random(_ALNUM, 27), payer.sub_openid
        return "o" + _random(_ALNUM, 27), None

    def _replay(self, order: SandboxOrder, body: _PartnerCreateBody, kind: str) -> Response:
        if order.status is OrderStatus.succeeded:
            raise self._error(400, "ORDER_PAID", "该订单已支付")
        if order.status is OrderStatus.closed:
            raise self._error(400, "ORDER_CLOSED", "该订单已关闭")
        if order.status is OrderStatus.failed:
            raise self._error(400, "INVALID_REQUEST", "该订单支付失败，请重新下单")
        if (order.method, order.amount, order.subject) != (
            kind, body.amount.total, body.description,
        ):  # fmt: skip
            raise self._error(403, "OUT_TRADE_NO_USED", "商户订单号重复")
        return self.sandbox._respond(200, self.sandbox._create_answer(order))

    def _own_order(self, merchant: SandboxMerchant, sp_mchid: str | None, sub_mchid: str | None,
                   out_trade_no: str) -> SandboxOrder:  # fmt: skip
        if not sp_mchid or not sub_mchid:
            raise self._error(400, "PARAM_ERROR", "缺少参数sp_mchid或sub_mchid")
        if sp_mchid != merchant.mchid:
            raise self._error(400, "PARAM_ERROR", "sp_mchid与请求的商户号不一致")
        sub = self._sub(self._provider(merchant), sub_mchid)
        order = self.sandbox.core.get_order(sub.sub_mchid, out_trade_no)
        if order is None:
            raise self._error(404, "ORDER_NOT_EXIST", "订单不存在")
        return order

    async def query(self, request: Request, out_trade_no: str) -> Response:
        merchant = self.sandbox._authenticate(request, await request.body())
        params = request.query_params
        order = self._own_order(
            merchant, params.get("sp_mchid"), params.get("sub_mchid"), out_trade_no
        )
        return self.sandbox._respond(200, self.transaction(order))

    async def close(self, request: Request, out_trade_no: str) -> Response:
        raw = await request.body()
        merchant = self.sandbox._authenticate(request, raw)
        body = self.sandbox._parse(_PartnerCloseBody, raw)
        order = self._own_order(merchant, body.sp_mchid, body.sub_mchid, out_trade_no)
        if not self.sandbox.core.close(order):
            raise self._error(400, "ORDER_PAID", "订单已支付")
        return self.sandbox._respond(204)

    # ------------------------------------------------------------ wiring
    def install(self, app: FastAPI) -> None:
        """Add the partner paths and the control API to the sandbox's app."""
        path = protocol.PARTNER_PAY_PATH
        for kind in _KINDS:
            app.add_api_route(
                f"{path}/{kind}", self._create_endpoint(kind), methods=["POST"],
                name=f"partner_create_{kind}",
            )  # fmt: skip

        @app.get(path + "/out-trade-no/{out_trade_no}")
        async def partner_query(request: Request, out_trade_no: str) -> Response:
            return await self.query(request, out_trade_no)

        @app.post(path + "/out-trade-no/{out_trade_no}/close")
        async def partner_close(request: Request, out_trade_no: str) -> Response:
            return await self.close(request, out_trade_no)

        app.include_router(self._control_router())

    def _create_endpoint(self, kind: str) -> Any:
        async def create(request: Request) -> Response:
            return await self.create(request, kind)

        return create

    def _control_router(self) -> APIRouter:
        router = APIRouter(prefix="/_sandbox/partners")

        @router.post("")
        async def new_partner(request: Request, body: _NewPartner) -> dict[str, Any]:
            """Control API: a new service provider (服务商) and its credentials."""
            return self.provision_partner(body.gateway or self.sandbox._base_url(request))

        @router.post("/{sp_mchid}/sub_merchants")
        async def new_sub_merchant(sp_mchid: str, body: _NewSubMerchant) -> dict[str, str]:
            """Control API: a new sub-merchant (特约商户) of ``sp_mchid``: its ids."""
            if sp_mchid not in self.providers:
                raise HTTPException(404, "no such service provider")
            return self.add_sub_merchant(
                sp_mchid, sub_appid=body.sub_appid, sub_mini_appid=body.sub_mini_appid
            )

        return router

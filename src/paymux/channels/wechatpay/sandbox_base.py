"""What every part of the WeChat Pay sandbox shares: the wire helpers (platform signatures,
signed answers and error answers, merchant request authentication, body parsing, signed
notification envelopes, sensitive-field decryption), the merchant record, the notifier core,
the shared state and the hooks one feature offers another.

Each feature of the sandbox (:mod:`.sandbox_refunds`, :mod:`.sandbox_transfers`,
:mod:`.sandbox_profitsharing`, :mod:`.sandbox_codepay`, :mod:`.sandbox_bills`) is a mixin over
:class:`SandboxBase` and the partner desk (:mod:`.partner_sandbox`) plugs into it; this module
imports none of them. :class:`~paymux.channels.wechatpay.sandbox.Sandbox` assembles base and
features.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, StrictBool, StrictInt, ValidationError

from paymux.channels.sandbox_kit import (
    OrderStatus,
    RefundScript,
    RefundStatus,
    SandboxCore,
    SandboxOrder,
    SandboxRefund,
)
from paymux.channels.wechatpay import protocol
from paymux.kit import clock

#: WeChat's notification retry schedule, seconds: 15s 15s 30s 3m 10m 20m 30m 30m 30m 60m 3h 3h
#: 3h 6h 6h.
RETRY_SCHEDULE: tuple[float, ...] = (
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
)  # fmt: skip

_WIRE_STATE: dict[OrderStatus, str] = {
    OrderStatus.pending: "NOTPAY",
    OrderStatus.succeeded: "SUCCESS",
    OrderStatus.failed: "PAYERROR",
    OrderStatus.closed: "CLOSED",
}
_TRADE_TYPES = {kind: trade_type for kind, trade_type in protocol.METHOD_ENDPOINTS.values()}
_ALNUM = string.ascii_letters + string.digits


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


class WxError(Exception):
    """An error answer, rendered like WeChat: ``{"code", "message"}``, signed."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def script_routes(
    router: APIRouter, path: str, queue: list[RefundScript],
    add: Callable[[RefundScript], None], what: str,
) -> None:  # fmt: skip
    """Control API of one script queue: ``POST path`` queues a scripted outcome for the next
    matching ``what`` (through ``add``), ``DELETE path`` empties the queue."""

    async def add_script(script: RefundScript) -> dict[str, Any]:
        add(script)
        return {"queued": len(queue)}

    async def clear_scripts() -> dict[str, Any]:
        queue.clear()
        return {"queued": 0}

    router.add_api_route(
        path,
        add_script,
        methods=["POST"],
        name=f"add_{what}_script",
        description=f"Queue a scripted outcome for the next matching {what}.",
    )
    router.add_api_route(path, clear_scripts, methods=["DELETE"], name=f"clear_{what}_scripts")


# ---------------------------------------------------------------- request bodies
class _Amount(BaseModel):
    total: StrictInt = Field(ge=1)
    currency: str = "CNY"


class _SettleInfo(BaseModel):
    profit_sharing: StrictBool = False


_Body = TypeVar("_Body", bound=BaseModel)


@dataclass
class SandboxMerchant:
    mchid: str
    appid: str
    serial_no: str
    public_key: rsa.RSAPublicKey
    apiv3_key: str
    mini_appids: set[str] = field(default_factory=set)
    """Mini-programs bound to the merchant besides ``appid`` (:meth:`Sandbox.bind_mini_appid`)."""


class _WechatCore(SandboxCore):
    """WeChat notifies successful payments only, and signs every delivery afresh (a retry hours
    later carries a current timestamp, or no receiver's freshness check would accept it)."""

    resign: Callable[[bytes], dict[str, str]] | None = None
    refund_fail_status: str = "ABNORMAL"

    async def _post(
        self, subject: SandboxOrder | SandboxRefund, headers: dict[str, str], body: bytes
    ) -> bool:
        if self.resign is not None:
            headers = {**headers, **self.resign(body)}
        return await super()._post(subject, headers, body)

    async def notify(self, order: SandboxOrder) -> None:
        if order.status is OrderStatus.succeeded:
            await super().notify(order)

    async def _deliver_once_then_retry(self, order: SandboxOrder) -> None:
        if order.status is OrderStatus.succeeded:
            await super()._deliver_once_then_retry(order)

    def finish_refund(self, refund: SandboxRefund, *, succeeded: bool) -> bool:
        # Fix the wire status at the moment the refund fails: CLOSED or ABNORMAL.
        if not super().finish_refund(refund, succeeded=succeeded):
            return False
        refund.extra["wire_status"] = "SUCCESS" if succeeded else self.refund_fail_status
        return True

    async def notify_refund(self, refund: SandboxRefund) -> None:
        # WeChat notifies a refund's final result only.
        if refund.status is not RefundStatus.pending:
            await super().notify_refund(refund)


class PartnerMode(Protocol):
    """What the sandbox's parts ask of its partner desk (服务商): orders of a sub-merchant are
    notified with the service provider's key, and a refund may act for a sub-merchant."""

    def build_notification(self, order: SandboxOrder) -> tuple[dict[str, str], bytes]: ...

    def build_refund_notification(self, refund: SandboxRefund) -> tuple[dict[str, str], bytes]: ...

    def refund_merchant(
        self, merchant: SandboxMerchant, sub_mchid: str | None
    ) -> SandboxMerchant: ...


class SandboxBase:
    """The state every feature shares (set up by
    :class:`~paymux.channels.wechatpay.sandbox.Sandbox`'s ``__init__``; each feature declares its
    own), the wire helpers every endpoint uses and the hooks between features."""

    _platform_key: rsa.RSAPrivateKey
    platform_public_key_id: str
    platform_public_key_pem: str
    merchants: dict[str, SandboxMerchant]
    _core: _WechatCore
    core: SandboxCore
    partners: PartnerMode

    if TYPE_CHECKING:
        # Provided by the assembled sandbox (orders) and its refund feature: how an order and a
        # refund look on the wire, which the partner desk renders for sub-merchants too.
        def provision(self, base_url: str) -> dict[str, Any]: ...

        def transaction(self, order: SandboxOrder) -> dict[str, Any]: ...

        @staticmethod
        def _create_answer(order: SandboxOrder) -> dict[str, Any]: ...

        @staticmethod
        def _refund_status(refund: SandboxRefund) -> str: ...

        def refund_resource(self, refund: SandboxRefund) -> dict[str, Any]: ...

    # ------------------------------------------------------------ between features
    def _split_away(self, order: SandboxOrder) -> int:
        """What splits of an order took or will take: nothing without profit sharing
        (:mod:`.sandbox_profitsharing` overrides this)."""
        return 0

    def refundable(self, order: SandboxOrder) -> int:
        """What of a paid order the merchant can still refund: money split away is gone
        (WeChat wants it returned from the receivers first)."""
        return self.core.refundable(order) - self._split_away(order)

    # ------------------------------------------------------------ wire helpers
    def sign(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        """Platform signature headers for ``body`` (answers and notifications)."""
        return protocol.sign_response(
            self._platform_key, self.platform_public_key_id, body, timestamp=timestamp
        )

    def _respond(self, status: int, payload: Any | None = None) -> Response:
        body = protocol.encode_json(payload) if payload is not None else b""
        headers = self.sign(body)
        headers["Request-ID"] = secrets.token_hex(16)
        media_type = "application/json" if body else None
        return Response(content=body, status_code=status, headers=headers, media_type=media_type)

    @staticmethod
    def _base_url(request: Request) -> str:
        """The sandbox's public base: scheme, host and the mount point (``root_path``)."""
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return f"{request.url.scheme}://{request.url.netloc}{root}"

    @staticmethod
    def _signed_path(request: Request) -> str:
        """The path+query the client signed: relative to the sandbox's mount point."""
        raw = request.scope.get("raw_path")
        path = raw.decode("latin-1").split("?")[0] if raw else str(request.scope["path"])
        root = str(request.scope.get("root_path", "")).rstrip("/")
        if root and path.startswith(root):
            path = path[len(root) :]
        query = request.scope.get("query_string", b"").decode("latin-1")
        return f"{path}?{query}" if query else path

    def _authenticate(self, request: Request, body: bytes) -> SandboxMerchant:
        header = request.headers.get("authorization")
        if not header:
            raise WxError(401, "SIGN_ERROR", "缺少Authorization请求头")
        try:
            auth = protocol.parse_authorization(header)
        except protocol.ProtocolError as exc:
            raise WxError(401, "SIGN_ERROR", f"Authorization格式错误: {exc.message}") from exc
        merchant = self.merchants.get(auth.mchid)
        if merchant is None:
            raise WxError(401, "SIGN_ERROR", "商户号不存在")
        if auth.serial_no != merchant.serial_no:
            raise WxError(401, "SIGN_ERROR", "商户证书序列号有误")
        try:
            protocol.verify_request(
                auth,
                public_key=merchant.public_key,
                method=request.method,
                path_with_query=self._signed_path(request),
                body=body,
            )
        except protocol.ProtocolError as exc:
            raise WxError(401, "SIGN_ERROR", f"签名错误: {exc.message}") from exc
        return merchant

    @staticmethod
    def _parse(model: type[_Body], body: bytes) -> _Body:
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise WxError(400, "PARAM_ERROR", f"输入源“/body/{where}”映射到值字段失败") from exc

    def _signed_event(
        self, event_id: str, event_type: str, summary: str, resource: dict[str, str]
    ) -> tuple[dict[str, str], bytes]:
        envelope = {
            "id": event_id,
            "create_time": protocol.rfc3339(clock.now()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": resource,
        }
        body = protocol.encode_json(envelope)
        headers = self.sign(body)
        headers["Content-Type"] = "application/json"
        return headers, body

    def _sensitive(self, request: Request, ciphertext: str | None) -> str | None:
        """Decrypt a sensitive field sent under ``Wechatpay-Serial`` (our platform key)."""
        if ciphertext is None:
            return None
        if request.headers.get(protocol.HEADER_SERIAL) != self.platform_public_key_id:
            raise WxError(400, "PARAM_ERROR", "Wechatpay-Serial与加密敏感信息所用的公钥不匹配")
        try:
            return protocol.decrypt_sensitive(self._platform_key, ciphertext)
        except protocol.ProtocolError as exc:
            raise WxError(400, "PARAM_ERROR", "敏感信息解密失败，请使用微信支付公钥加密") from exc

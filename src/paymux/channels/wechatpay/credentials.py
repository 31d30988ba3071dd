"""WeChat Pay channel account credentials: a direct merchant in platform public-key mode
(:class:`WechatPayCredentials`) or, told by ``sp_mchid``, a service provider's sub-merchant
(partner mode: :mod:`paymux.channels.wechatpay.partner`), and what payouts and profit sharing
read from them (transfer scene, report infos, split relations)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
    field_validator,
)

from paymux.channels.wechatpay import protocol
from paymux.channels.wechatpay.partner import WechatPayPartnerCredentials

DEFAULT_GATEWAY = "https://api.mch.weixin.qq.com"


#: How a receiver relates to the merchant (``relation_type`` of receivers/add); WeChat reviews it.
SplitRelation = Literal[
    "SERVICE_PROVIDER", "STORE", "STAFF", "STORE_OWNER", "PARTNER", "HEADQUARTER", "BRAND",
    "DISTRIBUTOR", "USER", "SUPPLIER",
]  # fmt: skip


class TransferReportInfo(BaseModel):
    """One ``transfer_scene_report_infos`` entry WeChat requires for the configured scene
    (e.g. scene 1000 现金营销: ``活动名称`` and ``奖励说明``). Without ``info_content`` the
    payout's remark is reported."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    info_type: str = Field(min_length=1, max_length=32)
    info_content: str | None = Field(default=None, min_length=1, max_length=32)


class WechatPayCredentials(BaseModel):
    """A WeChat Pay direct merchant in platform public-key mode."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    mchid: str = Field(min_length=1, max_length=32)
    appid: str = Field(min_length=1, max_length=32)
    merchant_serial_no: str = Field(min_length=1, max_length=64)
    merchant_private_key: str = Field(min_length=1)
    """PEM (PKCS#8 ``BEGIN PRIVATE KEY``, as in ``apiclient_key.pem``)."""
    apiv3_key: str = Field(min_length=32, max_length=32)
    platform_public_key_id: str = Field(min_length=len(protocol.PUBLIC_KEY_ID_PREFIX) + 1)
    platform_public_key: str = Field(min_length=1)
    """PEM (``BEGIN PUBLIC KEY``), downloaded from the merchant platform."""
    gateway: str = DEFAULT_GATEWAY
    transfer_scene_id: str | None = Field(default=None, min_length=1, max_length=36)
    """The 商家转账 scene the merchant platform granted (e.g. ``1000`` 现金营销, ``1005`` 佣金报酬);
    payouts are refused until it is set."""
    transfer_scene_report_infos: list[TransferReportInfo] = Field(default_factory=list)
    transfer_user_recv_perception: str | None = Field(default=None, min_length=1, max_length=32)
    """What the payee is told the money is for; WeChat shows the scene's default without it."""
    split_relation_merchant: SplitRelation = "PARTNER"
    """``relation_type`` registered for merchant split receivers."""
    split_relation_person: SplitRelation = "DISTRIBUTOR"
    """``relation_type`` registered for personal (openid) split receivers."""
    mini_appid: str | None = Field(default=None, min_length=1, max_length=32)
    """The mini-program bound to ``mchid`` that takes ``wechat_mini`` payments (its payers'
    openids are under it); ``appid`` when not set."""

    @field_validator("merchant_private_key")
    @classmethod
    def _private_key(cls, value: str) -> str:
        try:
            protocol.load_private_key(value)
        except (ValueError, TypeError) as exc:
            raise ValueError("merchant_private_key is not an RSA private key PEM") from exc
        return value

    @field_validator("platform_public_key")
    @classmethod
    def _public_key(cls, value: str) -> str:
        try:
            protocol.load_public_key(value)
        except (ValueError, TypeError) as exc:
            raise ValueError("platform_public_key is not an RSA public key PEM") from exc
        return value

    @field_validator("platform_public_key_id")
    @classmethod
    def _public_key_id(cls, value: str) -> str:
        if not value.startswith(protocol.PUBLIC_KEY_ID_PREFIX):
            raise ValueError(
                f"platform_public_key_id must start with {protocol.PUBLIC_KEY_ID_PREFIX}"
            )
        return value

    @field_validator("apiv3_key")
    @classmethod
    def _apiv3_key(cls, value: str) -> str:
        if len(value.encode()) != 32:
            raise ValueError("apiv3_key must be 32 ASCII characters")
        return value

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("gateway must be an http(s) base URL")
        return value.rstrip("/")


def _account_mode(value: Any) -> str:
    """Direct merchant, or a sub-merchant of a service provider (服务商: ``sp_mchid``)."""
    fields = value if isinstance(value, Mapping) else vars(value)
    return "partner" if "sp_mchid" in fields else "direct"


class WechatPayAccountCredentials(
    RootModel[
        Annotated[
            Annotated[WechatPayCredentials, Tag("direct")]
            | Annotated[WechatPayPartnerCredentials, Tag("partner")],
            Discriminator(_account_mode),
        ]
    ]
):
    """What a WeChat Pay channel account holds: a direct merchant's credentials, or (partner
    mode, told by ``sp_mchid``) a service provider's plus one sub-merchant's ids."""

"""WeChat Pay channel account credentials: a direct merchant in platform public-key mode
(:class:`WechatPayCredentials`) or, told by ``sp_mchid``, a service provider's sub-merchant
(partner mode: :mod:`paymux.channels.wechatpay.partner`), and what payouts and profit sharing
read from them (transfer scene, report infos, split relations)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
)

from paymux.channels.wechatpay.keys import MerchantKeys
from paymux.channels.wechatpay.partner import WechatPayPartnerCredentials

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


class WechatPayCredentials(MerchantKeys):
    """A WeChat Pay direct merchant in platform public-key mode."""

    mchid: str = Field(min_length=1, max_length=32)
    appid: str = Field(min_length=1, max_length=32)
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
    oauth_app_secret: str | None = Field(default=None, min_length=1, max_length=64)
    """The AppSecret of the official account ``appid``, for web OAuth (``snsapi_base`` → the
    payer's openid) of JSAPI payments inside WeChat."""
    mini_appid: str | None = Field(default=None, min_length=1, max_length=32)
    """The mini-program bound to ``mchid`` that takes ``wechat_mini`` payments (its payers'
    openids are under it); ``appid`` when not set."""


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

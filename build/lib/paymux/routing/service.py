"""Which channel accounts may take a payment, in the order to try them.

The first version is static: enabled accounts of the app in the payment's mode that offer the
method and currency, by ascending priority. A request may pin a channel (``wechatpay``) or one
account (``chn_…``). Smart routing and scoring build on this candidate list.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.channels.models import ChannelAccount
from paymux.channels.repository import ChannelRepository
from paymux.kit.errors import InvalidRequest
from paymux.merchants.models import Mode


async def candidates(
    session: AsyncSession,
    *,
    app_id: str,
    livemode: bool,
    method: str,
    currency: str,
    pinned: str | None = None,
) -> list[ChannelAccount]:
    mode = Mode.live if livemode else Mode.test
    accounts = await ChannelRepository(session).list_for_app(
        app_id, mode=mode.value, enabled_only=True
    )
    found = [a for a in accounts if method in a.methods and currency in a.currencies]
    if pinned is not None:
        found = [a for a in found if pinned in (a.id, a.channel)]
    if not found:
        what = f" through {pinned!r}" if pinned else ""
        raise InvalidRequest(
            "method_unavailable",
            f"No enabled {mode.value}-mode channel account of this app offers {method!r} in "
            f"{currency}{what}.",
            param="method",
        )
    return found

"""Channel accounts: credentials validated against the channel's model and the test/live
separation (test mode only ever reaches a sandbox or the channel's own test mode), nothing
stored when refused."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from paymux.channel_accounts.models import ChannelAccount
from tests.conftest import GATEWAY, Stack

OPERATOR = {"Authorization": "Bearer op_test_token_0123456789"}


async def _post(stack: Stack, path: str, body: dict[str, Any], status: int = 201) -> Any:
    r = await stack.client.post(f"/v1/operator{path}", json=body, headers=OPERATOR)
    assert r.status_code == status, r.text
    return r.json()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"channel": "nopay"}, "unknown_channel"),
        ({"methods": ["alipay_qr"]}, "unsupported_method"),
        ({"credentials": {"mchid": "1"}}, "invalid_credentials"),
        ({"gateway": "https://api.mch.weixin.qq.com"}, "test_mode_requires_sandbox"),
        ({"mode": "live"}, "live_mode_requires_channel"),
        ({"fee_rate_bps": -1}, "parameter_invalid"),
    ],
)
async def test_bad_channel_accounts_are_refused(
    stack: Stack, change: dict[str, Any], code: str
) -> None:
    merchant = await _post(stack, "/merchants", {"name": "Strict shop"})
    app = await _post(stack, f"/merchants/{merchant['id']}/apps", {"name": "web"})
    creds = stack.sandboxes["wechatpay"].provision(f"{GATEWAY}/sandbox/wechatpay")
    change = dict(change)  # the parameter is shared by every backend's run
    if "gateway" in change:
        creds["gateway"] = change.pop("gateway")
    body = {"channel": "wechatpay", "credentials": creds, **change}
    error = await _post(stack, f"/apps/{app['id']}/channel_accounts", body, status=400)
    assert error["error"]["code"] == code
    async with stack.runtime.db.read() as session:
        count = await session.scalar(
            sa.select(sa.func.count()).where(ChannelAccount.app_id == app["id"])
        )
    assert count == 0


def test_channel_test_credentials_may_reach_the_channels_own_test_mode() -> None:
    """Stripe's test mode is api.stripe.com with ``sk_test_`` keys: a test-mode account may use
    it (such keys cannot move money); live keys never serve test mode, test keys never live."""
    from paymux.channel_accounts.service import validate_credentials
    from paymux.channels import registry
    from paymux.channels.stripe.sandbox import Sandbox as StripeSandbox
    from paymux.kit.errors import InvalidRequest
    from paymux.merchants.models import Mode

    stripe = registry.get("stripe")
    creds = StripeSandbox().provision("http://sandbox.test/stripe")
    at_stripe = {**creds, "gateway": "https://api.stripe.com"}
    assert validate_credentials(stripe, at_stripe, Mode.test)["gateway"] == at_stripe["gateway"]
    live = {
        **at_stripe,
        "secret_key": creds["secret_key"].replace("_test_", "_live_"),
        "publishable_key": creds["publishable_key"].replace("_test_", "_live_"),
    }
    assert validate_credentials(stripe, live, Mode.live)["secret_key"].startswith("sk_live_")
    for given, mode, code in (
        (at_stripe, Mode.live, "live_mode_requires_live_credentials"),
        (live, Mode.test, "test_mode_requires_test_credentials"),
    ):
        with pytest.raises(InvalidRequest) as info:
            validate_credentials(stripe, given, mode)
        assert info.value.code == code

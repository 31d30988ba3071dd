"""The operator API: merchants, apps, keys (shown once, hashed, revocable), and taking payments
through a channel account added with it (channel accounts' own checks:
``tests/channel_accounts``)."""

from __future__ import annotations

from typing import Any

import pytest

from paymux.channel_accounts.models import ChannelAccount
from paymux.merchants.models import ApiKey
from tests.conftest import GATEWAY, Stack

OPERATOR = {"Authorization": "Bearer op_test_token_0123456789"}


async def _post(stack: Stack, path: str, body: dict[str, Any], status: int = 201) -> Any:
    r = await stack.client.post(f"/v1/operator{path}", json=body, headers=OPERATOR)
    assert r.status_code == status, r.text
    return r.json()


async def test_operator_token_is_required(stack: Stack) -> None:
    r = await stack.client.get("/v1/operator/merchants")
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    r = await stack.client.get(
        "/v1/operator/merchants", headers={"Authorization": "Bearer op_wrong"}
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_operator_token"


async def test_merchant_app_key_channel_then_take_payments(stack: Stack) -> None:
    merchant = await _post(stack, "/merchants", {"name": "Operator shop"})
    app = await _post(stack, f"/merchants/{merchant['id']}/apps", {"name": "web"})
    key = await _post(stack, f"/apps/{app['id']}/keys", {"mode": "test"})
    assert key["secret"].startswith("sk_test_") and key["hint"] == key["secret"][-4:]
    async with stack.runtime.db.read() as session:
        stored = await session.get(ApiKey, key["id"])
    assert stored is not None and key["secret"] not in stored.key_hash  # only its hash is kept

    creds = stack.sandboxes["wechatpay"].provision(f"{GATEWAY}/sandbox/wechatpay")
    body = {"channel": "wechatpay", "credentials": creds, "fee_rate_bps": 60}
    account = await _post(stack, f"/apps/{app['id']}/channel_accounts", body)
    assert "credentials" not in account and account["enabled"] is True
    assert account["routing"] == {
        "fee_fixed": 0, "fee_min": None, "fee_max": None, "min_amount": None, "max_amount": None,
        "daily_amount_limit": None, "daily_count_limit": None, "maintenance": []}  # fmt: skip
    async with stack.runtime.db.read() as session:
        row = await session.get(ChannelAccount, account["id"])
    assert row is not None and creds["mchid"] not in row.credentials_enc  # encrypted at rest

    headers = {"Authorization": f"Bearer {key['secret']}"}
    payment = await stack.client.post(
        "/v1/payments", headers=headers,
        json={"amount": 100, "currency": "CNY", "method": "wechat_native",
              "out_trade_no": "op-1", "subject": "Operator"},
    )  # fmt: skip
    assert payment.status_code == 201, payment.text
    assert payment.json()["channel_account"] == account["id"]

    patched = await stack.client.patch(
        f"/v1/operator/channel_accounts/{account['id']}", json={"enabled": False},
        headers=OPERATOR,
    )  # fmt: skip
    assert patched.json()["enabled"] is False
    refused = await stack.client.post(
        "/v1/payments", headers=headers,
        json={"amount": 100, "currency": "CNY", "method": "wechat_native",
              "out_trade_no": "op-2", "subject": "Operator"},
    )  # fmt: skip
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "method_unavailable"

    revoked = await stack.client.delete(
        f"/v1/operator/apps/{app['id']}/keys/{key['id']}", headers=OPERATOR
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    after = await stack.client.get("/v1/payments", headers=headers)
    assert after.status_code == 401


async def test_unknown_parents_are_404(stack: Stack) -> None:
    r = await stack.client.post(
        "/v1/operator/merchants/mch_nope/apps", json={"name": "x"}, headers=OPERATOR
    )
    assert r.status_code == 404
    r = await stack.client.post(
        "/v1/operator/apps/app_nope/keys", json={"mode": "test"}, headers=OPERATOR
    )
    assert r.status_code == 404
    r = await stack.client.get("/v1/operator/apps/app_nope/channel_accounts", headers=OPERATOR)
    assert r.status_code == 404


async def test_a_key_revoked_by_another_process_is_refused_within_a_second(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key cache keeps lookups off the database; a revocation made elsewhere (another API
    process: here the database directly, so this process's cache is not told) holds within
    the cache's second, never later."""
    from paymux.kit import cache
    from paymux.merchants import service as merchants

    merchant = await _post(stack, "/merchants", {"name": "Revoked elsewhere"})
    app = await _post(stack, f"/merchants/{merchant['id']}/apps", {"name": "web"})
    key = await _post(stack, f"/apps/{app['id']}/keys", {"mode": "test"})
    headers = {"Authorization": f"Bearer {key['secret']}"}
    now = [1000.0]
    monkeypatch.setattr(cache, "monotonic", lambda: now[0])
    assert (await stack.client.get("/v1/payments", headers=headers)).status_code == 200
    async with stack.runtime.db.transaction() as session:
        await merchants.revoke_key(session, app_id=app["id"], key_id=key["id"])
    now[0] += 0.5  # inside the cached second: still served from the cache
    assert (await stack.client.get("/v1/payments", headers=headers)).status_code == 200
    now[0] += 0.6  # past it: looked up again, refused
    refused = await stack.client.get("/v1/payments", headers=headers)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"

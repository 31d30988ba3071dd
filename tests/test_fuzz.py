"""Property test of the merchant API: whatever JSON a client sends, the answer is a 2xx or a
4xx with the error object — never a 5xx — and a rejected request creates nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paymux.payments.models import Payment
from paymux.webhooks.models import WebhookEndpoint
from tests.conftest import Stack, Tenant

scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                  max_size=4),
    max_leaves=8,
)  # fmt: skip
tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-|*.", min_size=1, max_size=40)

payment_bodies = st.fixed_dictionaries(
    {},
    optional={
        "amount": st.integers(min_value=-5, max_value=10**16) | json_values,
        "currency": st.sampled_from(["CNY", "USD", "JPY", "cny", "XXX", ""]) | json_values,
        "method": st.sampled_from(
            ["wechat_native", "alipay_qr", "wechat_jsapi", "wechat_h5", "alipay_page", "card", ""]
        )
        | json_values,  # fmt: skip
        "out_trade_no": tokens | json_values,
        "subject": st.text(max_size=200) | json_values,
        "description": st.text(max_size=50) | json_values,
        "expires_in": st.integers(min_value=-10, max_value=10**7) | json_values,
        "customer": st.dictionaries(
            st.sampled_from(["openid", "buyer_id", "x"]), st.text(max_size=200)
        )
        | json_values,  # fmt: skip
        "metadata": st.dictionaries(st.text(max_size=45), st.text(max_size=20), max_size=3)
        | json_values,
        "return_url": st.sampled_from(["https://shop.example/ok", "javascript:x", ""])
        | json_values,
        "client_ip": st.sampled_from(["203.0.113.9", "::1", "not-an-ip"]) | json_values,
        "channel": st.sampled_from(["wechatpay", "alipay", "chn_nope"]) | json_values,
        "extra_field": json_values,
    },
)
plausible_payments = st.fixed_dictionaries(
    {
        "amount": st.integers(min_value=1, max_value=10**9),
        "currency": st.just("CNY"),
        "method": st.sampled_from(["wechat_native", "alipay_qr", "alipay_page", "wechat_h5"]),
        "out_trade_no": tokens.map(lambda t: t[:32]),
        "subject": st.text(min_size=1, max_size=60).filter(str.strip),
    },
    optional={"client_ip": st.just("203.0.113.9"), "expires_in": st.integers(60, 86400)},
)
endpoint_bodies = st.fixed_dictionaries(
    {},
    optional={
        "url": st.sampled_from(["http://merchant.test/fuzz", "ftp://x", "http://", ""])
        | json_values,
        "events": st.lists(st.sampled_from(["*", "payment.succeeded", "nope"]), max_size=3)
        | json_values,
        "description": st.text(max_size=600) | json_values,
    },
)

FUZZ = settings(
    max_examples=120, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip


def _check(status: int, body: Any) -> None:
    assert status < 500, body
    if status >= 400:
        assert set(body["error"]) == {"type", "code", "message", "param"}, body


async def _count(stack: Stack, model: Any, app_id: str) -> int:
    async with stack.runtime.db.read() as session:
        return int(await session.scalar(
            sa.select(sa.func.count()).select_from(model).where(model.app_id == app_id)
        ) or 0)  # fmt: skip


def _on(loop: asyncio.AbstractEventLoop) -> Any:
    """Run a coroutine on the test's event loop from hypothesis's thread; return its result."""
    return lambda coro: asyncio.run_coroutine_threadsafe(coro, loop).result()


async def test_payment_creation_never_fails_server_side(stack: Stack, tenant: Tenant) -> None:
    call = _on(asyncio.get_running_loop())
    created = 0

    @FUZZ
    @given(body=payment_bodies | plausible_payments)
    def one(body: dict[str, Any]) -> None:
        nonlocal created
        r = call(stack.client.post("/v1/payments", json=body, headers=tenant.headers))
        _check(r.status_code, r.json())
        created += r.status_code == 201

    await asyncio.to_thread(one)  # hypothesis drives from a thread; requests run on this loop
    assert created > 0  # the valid region was reached too
    assert await _count(stack, Payment, tenant.app_id) == created


async def test_endpoint_creation_and_queries_never_fail_server_side(
    stack: Stack, tenant: Tenant
) -> None:
    call = _on(asyncio.get_running_loop())
    created = 0

    @FUZZ
    @given(body=endpoint_bodies, query=st.dictionaries(
        st.sampled_from(["limit", "starting_after", "status", "type", "created_gte",
                         "out_trade_no"]), st.text(max_size=30), max_size=3))  # fmt: skip
    def one(body: dict[str, Any], query: dict[str, str]) -> None:
        nonlocal created
        r = call(stack.client.post("/v1/webhook_endpoints", json=body, headers=tenant.headers))
        _check(r.status_code, r.json())
        created += r.status_code == 201
        for path in ("/v1/payments", "/v1/events", "/v1/payments/pay_x", "/v1/events/evt_x"):
            q = call(stack.client.get(path, params=query, headers=tenant.headers))
            _check(q.status_code, q.json())

    await asyncio.to_thread(one)
    assert await _count(stack, WebhookEndpoint, tenant.app_id) == created


async def test_nul_characters_are_refused_before_the_database(stack: Stack, tenant: Tenant) -> None:
    """Found by the property test above: PostgreSQL cannot store NUL, so it must never get one."""
    body = {"amount": 100, "currency": "CNY", "method": "alipay_qr", "out_trade_no": "nul-1",
            "subject": "a\x00b"}  # fmt: skip
    r = await stack.client.post("/v1/payments", json=body, headers=tenant.headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "parameter_invalid"
    r = await stack.client.get("/v1/payments?starting_after=%00", headers=tenant.headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "parameter_invalid"
    r = await stack.client.get("/v1/events/evt%00x", headers=tenant.headers)
    assert r.status_code == 400
    assert await _count(stack, Payment, tenant.app_id) == 0
    ok = await stack.client.post(
        "/v1/payments", json={**body, "subject": "a\\u0000b (escaped text)"},
        headers=tenant.headers,
    )  # fmt: skip
    assert ok.status_code == 201, ok.text

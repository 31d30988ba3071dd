"""DESIGN §3.12: everything knowable before a channel call is a 400 that creates nothing, so the
corrected request succeeds with the same ``out_trade_no`` (issue 10, item 8).

Each channel declares what it refuses for the request's own sake (``check_request`` and
``required_customer`` on its adapter); a refusal leaves no payment, attempt or event behind."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from paymux.channel_accounts import service as channel_service
from paymux.channels import base, registry
from paymux.merchants.models import Mode
from paymux.payments.models import Attempt, Payment
from paymux.routing import service as routing
from paymux.webhooks.models import Event
from tests.conftest import Stack, Tenant, make_tenant
from tests.payments.test_payments import order_no
from tests.routing import scripted


async def _rows(stack: Stack, tenant: Tenant) -> tuple[int, int, int]:
    """(payments, attempts, events) of the tenant's app."""
    async with stack.runtime.db.read() as session:
        payments = await session.scalar(
            sa.select(sa.func.count()).select_from(Payment).where(Payment.app_id == tenant.app_id)
        )
        attempts = await session.scalar(
            sa.select(sa.func.count())
            .select_from(Attempt)
            .join(Payment, Payment.id == Attempt.payment_id)
            .where(Payment.app_id == tenant.app_id)
        )
        events = await session.scalar(
            sa.select(sa.func.count()).select_from(Event).where(Event.app_id == tenant.app_id)
        )
    return int(payments or 0), int(attempts or 0), int(events or 0)


async def refused_then_corrected(
    stack: Stack, tenant: Tenant, body: dict[str, Any], *, code: str, param: str,
    fix: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """``body`` is a 400 (``code`` about ``param``) that changes nothing; ``body`` with ``fix``
    applied — the same out_trade_no — is then created. Returns the created payment."""
    body = {"subject": "Precheck", "out_trade_no": order_no(), "currency": "CNY", **body}
    before = await _rows(stack, tenant)
    r = await stack.client.post("/v1/payments", json=body, headers=tenant.headers)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error", code, param,
    ), error  # fmt: skip
    assert error["message"]
    assert await _rows(stack, tenant) == before
    corrected = {k: v for k, v in {**body, **fix}.items() if v is not None}
    r = await stack.client.post("/v1/payments", json=corrected, headers=tenant.headers)
    assert r.status_code == 201, r.text
    payment = dict(r.json())
    assert payment["out_trade_no"] == body["out_trade_no"]
    assert payment["status"] == "pending", payment
    assert payment["failure"] is None
    return payment


# ------------------------------------------------------------------ WeChat Pay
async def test_wechat_h5_needs_a_client_ip(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("wechatpay",))
    h5 = {"method": "wechat_h5", "amount": 1999}
    await refused_then_corrected(stack, tenant, h5, code="parameter_missing", param="client_ip",
                                 fix={"client_ip": "203.0.113.9"})  # fmt: skip
    payment = await refused_then_corrected(
        stack, tenant, {**h5, "client_ip": "not-an-ip"}, code="parameter_invalid",
        param="client_ip", fix={"client_ip": "2001:db8::1"},
    )  # fmt: skip
    assert payment["next_action"]["type"] == "redirect"


async def test_wechat_jsapi_and_mini_need_an_openid(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("wechatpay",))
    for method in ("wechat_jsapi", "wechat_mini"):
        payment = await refused_then_corrected(
            stack, tenant, {"method": method, "amount": 100}, code="customer_required",
            param="customer.openid", fix={"customer": {"openid": "o-test-openid"}},
        )  # fmt: skip
        assert payment["next_action"]["type"] == "sdk_params"


# ------------------------------------------------------------------ Alipay
async def test_alipay_amount_above_its_maximum(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("alipay",))
    await refused_then_corrected(
        stack, tenant, {"method": "alipay_qr", "amount": 100_000_000_01},
        code="amount_too_large", param="amount", fix={"amount": 100_000_000_00},
    )  # fmt: skip


async def test_alipay_jsapi_needs_a_payer(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("alipay",))
    await refused_then_corrected(
        stack, tenant, {"method": "alipay_jsapi", "amount": 880}, code="customer_required",
        param="customer.buyer_id", fix={"customer": {"buyer_id": "2088000000000001"}},
    )  # fmt: skip


# ------------------------------------------------------------------ UnionPay
async def test_unionpay_amount_beyond_twelve_digits(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("unionpay",))
    await refused_then_corrected(
        stack, tenant, {"method": "unionpay_qr", "amount": 10**12}, code="amount_too_large",
        param="amount", fix={"amount": 10**12 - 1},
    )  # fmt: skip


# ------------------------------------------------------------------ Stripe
@pytest.mark.parametrize(
    ("currency", "small", "enough"), [("USD", 49, 50), ("CNY", 399, 400), ("JPY", 49, 50)]
)
async def test_stripe_amount_below_its_minimum_charge(
    stack: Stack, currency: str, small: int, enough: int
) -> None:
    tenant = await make_tenant(stack, channels=("stripe",))
    payment = await refused_then_corrected(
        stack, tenant, {"method": "card", "amount": small, "currency": currency},
        code="amount_too_small", param="amount", fix={"amount": enough},
    )  # fmt: skip
    assert payment["next_action"]["type"] == "sdk_params"


async def test_stripe_refuses_card_data_and_odd_amounts(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("stripe",))
    await refused_then_corrected(
        stack, tenant, {"method": "card", "amount": 2000, "currency": "USD",
                        "customer": {"card_number": "4242424242424242"}},
        code="parameter_invalid", param="customer.card_number", fix={"customer": {}},
    )  # fmt: skip
    await refused_then_corrected(
        stack, tenant, {"method": "card", "amount": 2000, "currency": "USD",
                        "customer": {"payment_method": "4242424242424242"}},
        code="parameter_invalid", param="customer.payment_method", fix={"customer": {}},
    )  # fmt: skip
    await refused_then_corrected(
        stack, tenant, {"method": "card", "amount": 5124, "currency": "KWD"},
        code="amount_invalid", param="amount", fix={"amount": 5120},
    )  # fmt: skip


# ------------------------------------------------------------------ PayPal
async def test_paypal_whole_unit_currencies(stack: Stack) -> None:
    tenant = await make_tenant(stack, channels=("paypal",))
    await refused_then_corrected(
        stack, tenant, {"method": "paypal", "amount": 150_050, "currency": "HUF"},
        code="amount_invalid", param="amount", fix={"amount": 150_000},
    )  # fmt: skip


# ------------------------------------------------------------------ several channels
class _MinimumAdapter(scripted.ScriptedAdapter):
    """A second channel offering the scripted method, which refuses amounts below 5.00."""

    name: ClassVar[str] = "routetest_min"

    @staticmethod
    def check_request(request: base.PaymentRequest) -> list[base.RequestProblem]:
        return base.amount_limits(request, minimum=500)


@pytest.fixture
def two_channels() -> Iterator[None]:
    for _ in scripted.registered():
        registry._REGISTRY[_MinimumAdapter.name] = _MinimumAdapter  # type: ignore[assignment]
        routing.clear_caches()
        try:
            yield
        finally:
            registry._REGISTRY.pop(_MinimumAdapter.name, None)
            routing.clear_caches()


async def _tenant_of(stack: Stack, channels: Mapping[str, int]) -> tuple[Tenant, dict[str, str]]:
    """A tenant with one scripted account per channel, at the given routing priority."""
    tenant = await make_tenant(stack, channels=())
    ids = {}
    async with stack.runtime.db.transaction() as session:
        for channel, priority in channels.items():
            account = await channel_service.add_account(
                session, stack.runtime.vault, app_id=tenant.app_id, channel=channel,
                mode=Mode.test, credentials={"label": f"{channel}-{tenant.app_id}"},
                priority=priority,
            )  # fmt: skip
            ids[channel] = account.id
    return tenant, ids


@pytest.mark.usefixtures("two_channels")
async def test_a_refusing_channel_is_routed_around(stack: Stack) -> None:
    tenant, ids = await _tenant_of(stack, {"routetest_min": 1, "routetest": 2})
    body = {"method": scripted.METHOD, "amount": 100, "currency": "CNY", "subject": "x",
            "out_trade_no": order_no()}  # fmt: skip
    r = await stack.client.post("/v1/payments", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    assert r.json()["channel_account"] == ids["routetest"]
    detail = await stack.client.get(f"/v1/payments/{r.json()['id']}?expand=attempts",
                                    headers=tenant.headers)  # fmt: skip
    (attempt,) = detail.json()["attempts"]
    excluded = {c["account"]: c.get("excluded") for c in attempt["routing"]["candidates"]}
    assert excluded[ids["routetest_min"]] == "refused_by_channel"
    big = {**body, "amount": 900, "out_trade_no": order_no()}
    r = await stack.client.post("/v1/payments", json=big, headers=tenant.headers)
    assert r.status_code == 201 and r.json()["channel_account"] == ids["routetest_min"], r.text


@pytest.mark.usefixtures("two_channels")
async def test_refused_when_no_account_of_the_app_accepts(stack: Stack) -> None:
    tenant, _ = await _tenant_of(stack, {"routetest_min": 1})
    await refused_then_corrected(
        stack, tenant, {"method": scripted.METHOD, "amount": 100}, code="amount_too_small",
        param="amount", fix={"amount": 500},
    )  # fmt: skip


def test_every_builtin_channel_declares_its_precheck() -> None:
    for name in registry.builtin_channel_names():
        factory = registry.get(name)
        assert callable(getattr(factory, "check_request", None)), name
        assert isinstance(factory.required_customer, Mapping), name

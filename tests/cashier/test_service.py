"""The cashier service over the in-process stack: a cashier payment, its options, choosing and
switching (the previous order closed at its channel), declines that keep the payment open, a
late success, and concurrent choices."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from paymux.cashier import service as cashier
from paymux.kit.errors import Conflict, InvalidRequest
from paymux.payments import lifecycle
from paymux.payments.models import Attempt
from tests.conftest import GATEWAY, Stack, Tenant, make_tenant
from tests.payments.test_payments import create, events_of, pay, wait_for

DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari/537.36"
WECHAT = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 MicroMessenger/8.0"


async def _cashier(stack: Stack, tenant: Tenant, **extra: Any) -> dict[str, Any]:
    r = await create(stack, tenant, method="cashier", **extra)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _attempts(stack: Stack, payment_id: str) -> list[Attempt]:
    async with stack.runtime.db.read() as session:
        stmt = sa.select(Attempt).where(Attempt.payment_id == payment_id).order_by(Attempt.id)
        return list((await session.scalars(stmt)).all())


async def test_a_cashier_payment_has_no_attempt_and_redirects(stack: Stack, tenant: Tenant) -> None:
    payment = await _cashier(stack, tenant, allowed_methods=["alipay_qr", "wechat_native"])
    assert payment["status"] == "pending"
    assert payment["next_action"] == {"type": "redirect", "url": payment["cashier_url"]}
    assert payment["allowed_methods"] == ["alipay_qr", "wechat_native"]
    assert await _attempts(stack, payment["id"]) == []
    omitted = await stack.client.post(
        "/v1/payments", headers=tenant.headers,
        json={"amount": 100, "out_trade_no": "no-method-1", "subject": "x"},
    )  # fmt: skip
    assert omitted.status_code == 201 and omitted.json()["method"] == "cashier"


@pytest.mark.parametrize("allowed", [["wechat_native", "wechat_native"], ["bogus"], ["cashier"]])
async def test_bad_allowed_methods_are_400_and_create_nothing(
    stack: Stack, tenant: Tenant, allowed: list[str]
) -> None:
    r = await create(stack, tenant, method="cashier", allowed_methods=allowed, out_trade_no="bad-1")
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] in ("unsupported_method", "parameter_invalid")
    listed = await stack.client.get("/v1/payments?out_trade_no=bad-1", headers=tenant.headers)
    assert listed.json()["data"] == []


async def test_view_lists_eligible_methods_in_environment_order(
    stack: Stack, tenant: Tenant
) -> None:
    payment = await _cashier(stack, tenant)
    desktop = await cashier.view(stack.runtime, payment["id"], user_agent=DESKTOP)
    assert desktop is not None
    methods = [o.method for o in desktop.options]
    assert methods[:2] == sorted(["alipay_qr", "wechat_native"])  # QR first on a desktop
    assert all("environment:desktop" in o.reasons for o in desktop.options[:2])
    assert "card" not in methods  # no card channel account in this app
    wechat = await cashier.view(stack.runtime, payment["id"], user_agent=WECHAT)
    assert wechat is not None and [o.method for o in wechat.options] == ["wechat_jsapi"]
    assert await cashier.view(stack.runtime, "pay_nope", user_agent=DESKTOP) is None


async def test_choose_then_switch_closes_the_first_order(stack: Stack, tenant: Tenant) -> None:
    payment = await _cashier(stack, tenant, allowed_methods=["wechat_native", "alipay_qr"])
    first = await cashier.choose(stack.runtime, payment["id"], "wechat_native", user_agent=DESKTOP)
    assert first.next_action and first.next_action["type"] == "qr_code"
    view = await cashier.view(stack.runtime, payment["id"], user_agent=DESKTOP)
    assert view is not None and view.current_method == "wechat_native" and view.can_switch
    second = await cashier.choose(stack.runtime, payment["id"], "alipay_qr", user_agent=DESKTOP)
    assert second.id == first.id and second.out_trade_no == first.out_trade_no
    old, new = await _attempts(stack, payment["id"])
    assert (old.status, new.status) == ("closed", "pending")
    # the first order is closed at the channel: paying it there fails
    r = await stack.client.post(
        f"/sandbox/wechatpay/_sandbox/orders/{old.id}/pay", json={"result": "pay"}
    )
    assert r.json()["changed"] is False  # closed at the channel: it can no longer be paid
    await pay(stack, "alipay", new.id)
    done = await wait_for(stack, tenant, payment["id"], "succeeded")
    assert done["method"] == "alipay_qr"
    assert [e.type for e in await events_of(stack, tenant)] == ["payment.succeeded"]
    with pytest.raises(Conflict) as final:
        await cashier.choose(stack.runtime, payment["id"], "wechat_native", user_agent=DESKTOP)
    assert final.value.code == "payment_final"


async def test_a_decline_keeps_the_cashier_payment_open(stack: Stack, tenant: Tenant) -> None:
    payment = await _cashier(stack, tenant)
    first = await cashier.choose(stack.runtime, payment["id"], "wechat_native", user_agent=DESKTOP)
    (attempt,) = await _attempts(stack, first.id)
    await pay(stack, "wechatpay", attempt.id, result="decline")
    await lifecycle.resolve_attempt(stack.runtime, attempt.id)  # WeChat: a decline is queried
    assert (await _attempts(stack, first.id))[0].status == "failed"
    r = await stack.client.get(f"/v1/payments/{first.id}", headers=tenant.headers)
    assert r.json()["status"] == "pending"
    assert r.json()["next_action"]["type"] == "redirect"
    second = await cashier.choose(stack.runtime, first.id, "alipay_qr", user_agent=DESKTOP)
    assert second.status == "pending" and second.next_action["type"] == "qr_code"


async def test_unavailable_method_and_other_tenants(stack: Stack, tenant: Tenant) -> None:
    payment = await _cashier(stack, tenant, allowed_methods=["alipay_qr"])
    with pytest.raises(InvalidRequest) as bad:
        await cashier.choose(stack.runtime, payment["id"], "wechat_native", user_agent=DESKTOP)
    assert bad.value.code == "method_unavailable"
    assert await _attempts(stack, payment["id"]) == []
    fixed = (await create(stack, tenant, method="wechat_native")).json()
    with pytest.raises(Conflict):
        await cashier.choose(stack.runtime, fixed["id"], "alipay_qr", user_agent=DESKTOP)


async def test_two_choices_at_once_leave_one_payable_order(stack: Stack) -> None:
    tenant = await make_tenant(stack)
    payment = await _cashier(stack, tenant)
    results = await asyncio.gather(
        cashier.choose(stack.runtime, payment["id"], "wechat_native", user_agent=DESKTOP),
        cashier.choose(stack.runtime, payment["id"], "alipay_qr", user_agent=DESKTOP),
        return_exceptions=True,
    )
    assert any(not isinstance(r, BaseException) for r in results), results
    for r in results:
        if isinstance(r, BaseException):
            assert isinstance(r, Conflict) and r.code == "choice_in_progress"
    payable = [
        a for a in await _attempts(stack, payment["id"]) if a.status in ("pending", "created")
    ]
    assert len(payable) == 1


async def test_expand_cashier_explains_the_order(stack: Stack, tenant: Tenant) -> None:
    payment = await _cashier(stack, tenant, allowed_methods=["alipay_qr", "wechat_native"])
    r = await stack.client.get(
        f"/v1/payments/{payment['id']}?expand=cashier",
        headers={**tenant.headers, "User-Agent": DESKTOP},
    )
    assert r.status_code == 200, r.text
    got = r.json()["cashier"]
    assert got["environment"] == "desktop" and got["current_method"] is None
    assert got["options"] == [
        {"method": "alipay_qr", "reasons": ["environment:desktop", "merchant_order:1"]},
        {"method": "wechat_native", "reasons": ["environment:desktop", "merchant_order:2"]},
    ]
    other = await make_tenant(stack)
    r = await stack.client.get(
        f"/v1/payments/{payment['id']}?expand=cashier", headers=other.headers
    )
    assert r.status_code == 404


async def test_a_switched_away_order_paid_anyway_is_refunded_once_and_flagged(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paymux.channels.wechatpay.adapter import WechatPayAdapter
    from paymux.refunds.models import Refund
    from tests.conftest import run_worker

    tenant = await make_tenant(stack)
    payment = await _cashier(stack, tenant)
    await cashier.choose(stack.runtime, payment["id"], "wechat_native", user_agent=DESKTOP)

    async def lost_close(self: Any, out_trade_no: str, **kwargs: Any) -> None:
        return None  # the channel acknowledged a close that never took effect

    monkeypatch.setattr(WechatPayAdapter, "close_payment", lost_close)
    await cashier.choose(stack.runtime, payment["id"], "alipay_qr", user_agent=DESKTOP)
    old, new = await _attempts(stack, payment["id"])
    await pay(stack, "alipay", new.id)
    await wait_for(stack, tenant, payment["id"], "succeeded")
    await pay(stack, "wechatpay", old.id)  # the switched-away order, paid anyway
    for _ in range(200):
        if (await _attempts(stack, payment["id"]))[0].late_success_at is not None:
            break
        await asyncio.sleep(0.01)
    await run_worker(stack)
    r = await stack.client.get(f"/v1/payments/{payment['id']}?expand=attempts",
                               headers=tenant.headers)  # fmt: skip
    body = r.json()
    assert body["status"] == "succeeded" and body["method"] == "alipay_qr"
    assert body["amount_refunded"] == 0  # the payment's own money is untouched
    assert body["attempts"][0]["late_success_at"] is not None
    async with stack.runtime.db.read() as session:
        refunds = (await session.scalars(sa.select(Refund).where(
            Refund.payment_id == payment["id"]))).all()  # fmt: skip
    assert [(x.attempt_id, x.status, x.amount) for x in refunds] == [
        (old.id, "succeeded", payment["amount"])
    ]
    types = [e.type for e in await events_of(stack, tenant)]
    assert types.count("payment.succeeded") == 1 and types.count("payment.late_success") == 1
    assert "refund.succeeded" in types
    # the merchant can still refund the payment in full
    r = await stack.client.post("/v1/refunds", headers=tenant.headers,
                                json={"payment": payment["id"], "out_refund_no": "r1"})  # fmt: skip
    assert r.status_code in (200, 201), r.text
    assert r.json()["amount"] == payment["amount"]


async def test_choosing_again_keeps_the_open_order(stack: Stack, tenant: Tenant) -> None:
    payment = await _cashier(stack, tenant)
    first = await cashier.choose(stack.runtime, payment["id"], "wechat_native", user_agent=DESKTOP)
    again = await cashier.choose(stack.runtime, payment["id"], "wechat_native", user_agent=DESKTOP)
    assert again.next_action == first.next_action
    assert [a.status for a in await _attempts(stack, payment["id"])] == ["pending"]


async def test_a_lost_create_answer_is_closed_and_reopened(
    stack: Stack, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paymux.channels import base
    from paymux.payments import service as payments

    real_call = payments._call_create

    async def answer_lost(*args: Any, **kwargs: Any) -> Any:
        await real_call(*args, **kwargs)  # the channel opened the order (answer lost)
        return payments._Outcome(kind="unknown", error=base.UnknownOutcome("timeout", "lost"))

    payment = await _cashier(stack, tenant)
    monkeypatch.setattr(payments, "_call_create", answer_lost)
    lost = await cashier.choose(stack.runtime, payment["id"], "wechat_native", user_agent=DESKTOP)
    monkeypatch.undo()
    assert lost.status == "pending" and not lost.next_action
    (stranded,) = await _attempts(stack, payment["id"])
    await lifecycle.resolve_attempt(stack.runtime, stranded.id)  # the janitor: pending there
    (stranded,) = await _attempts(stack, payment["id"])
    assert stranded.status == "pending" and not stranded.next_action
    view = await cashier.view(stack.runtime, payment["id"], user_agent=DESKTOP)
    assert view is not None and view.current_method is None and view.options
    fresh = await cashier.choose(stack.runtime, payment["id"], "wechat_native", user_agent=DESKTOP)
    assert fresh.next_action and fresh.next_action["type"] == "qr_code"
    old, new = await _attempts(stack, payment["id"])
    assert (old.status, new.status) == ("closed", "pending")
    r = await stack.client.post(
        f"/sandbox/wechatpay/_sandbox/orders/{old.id}/pay", json={"result": "pay"}
    )
    assert r.json()["changed"] is False  # closed at the channel: it can no longer be paid


async def test_an_expired_cashier_payment_cannot_be_chosen(
    stack: Stack, tenant: Tenant, clock: Any
) -> None:
    payment = await _cashier(stack, tenant, expires_in=60)
    clock.advance(61)
    with pytest.raises(Conflict) as expired:
        await cashier.choose(stack.runtime, payment["id"], "wechat_native", user_agent=DESKTOP)
    assert expired.value.code == "payment_expired"
    view = await cashier.view(stack.runtime, payment["id"], user_agent=DESKTOP)
    assert view is not None and view.options == () and not view.can_switch
    assert await _attempts(stack, payment["id"]) == []


async def test_a_payer_identified_by_one_account_pays_there_only(stack: Stack) -> None:
    """An openid belongs to the app id of the account whose OAuth produced it: with two WeChat
    accounts, the order opens on that account even where routing prefers the other, and never
    fails over to an account that could not use the payer id."""
    from paymux.channel_accounts import service as channel_service
    from paymux.merchants.models import Mode

    tenant = await make_tenant(stack, channels=("wechatpay",))
    async with stack.runtime.db.transaction() as session:
        second = await channel_service.add_account(
            session, stack.runtime.vault, app_id=tenant.app_id, channel="wechatpay",
            mode=Mode.test, fee_rate_bps=10,
            credentials=stack.sandboxes["wechatpay"].provision(f"{GATEWAY}/sandbox/wechatpay"),
        )  # fmt: skip
    for account in (tenant.accounts["wechatpay"], second.id):
        payment = await _cashier(stack, tenant, allowed_methods=["wechat_jsapi"])
        await cashier.choose(
            stack.runtime, payment["id"], "wechat_jsapi", user_agent=WECHAT,
            payer={"openid": f"o-{account}"}, payer_account=account,
        )  # fmt: skip
        (attempt,) = await _attempts(stack, payment["id"])
        assert attempt.channel_account_id == account
        skipped = attempt.routing["skipped"]
        assert [s["reason"] for s in skipped] == ["payer_identified_by_another_account"]

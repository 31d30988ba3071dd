"""``Idempotency-Key`` on every mutating API call (DESIGN §3.2).

Every mutating operation of the app is enumerated from its routes and must honour the header:
the same key and body answer the stored response (``Idempotent-Replayed: true``) and change
nothing again; the same key with another body is a 409 ``idempotency_error``; a key belongs to
one app in one mode (another app's or the other mode's use of it is a fresh request)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from paymux.kit import clock, idempotency
from paymux.kit.idempotency import IdempotencyRecord
from paymux.kit.ids import new_id
from paymux.kit.openapi import api_routes
from paymux.merchants import service as merchant_service
from paymux.merchants.models import ApiKey, App, Mode
from paymux.payments.models import Attempt, Payment
from paymux.payouts.models import Payout
from paymux.recon.models import (
    ApprovalState,
    BreakClass,
    BreakState,
    ReconApproval,
    ReconBreak,
    ReconBreakEvent,
    ReconConfig,
    ReconRun,
)
from paymux.refunds.models import Refund
from paymux.risk.models import RiskList, RiskListItem, RiskReview, RuleSet
from paymux.splits.models import Split
from paymux.store_codes.models import StoreCode
from paymux.wallets.models import Wallet
from paymux.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.conftest import GATEWAY, MERCHANT_SITE, Stack, Tenant, make_tenant
from tests.money.test_money import OPERATOR, balances, merchant_balance, no, paid, wallet
from tests.money.test_payouts import OPENID, funded_wallet, payout_tenant
from tests.payments.test_idempotency_recovery import _attempts, _crash_at_the_channel, _orders
from tests.payments.test_payments import order_no

Effect = Callable[[], Awaitable[Any]]


@dataclass
class Call:
    """One request of a route, made ready (the objects it needs exist), and what it changes."""

    method: str
    url: str
    body: Any = None
    effect: Effect | None = None
    """Reads what the call changes: the same after a replay as after the first answer."""
    operator: bool = False
    headers: dict[str, str] | None = None
    """Sent with it besides the credentials (the operator's ``Paymux-Actor``)."""
    content: bytes | None = None
    """A raw body instead of JSON (a bill file upload)."""


@dataclass
class Ctx:
    stack: Stack
    tenant: Tenant

    async def get(self, url: str, *, operator: bool = False) -> Any:
        r = await self.stack.client.get(url, headers=OPERATOR if operator else self.tenant.headers)
        assert r.status_code == 200, r.text
        return r.json()

    async def post(self, url: str, body: Any = None) -> dict[str, Any]:
        r = await self.stack.client.post(url, json=body, headers=self.tenant.headers)
        assert r.status_code in (200, 201), r.text
        return dict(r.json())

    async def count(self, model: Any, *where: Any) -> int:
        async with self.stack.runtime.db.read() as session:
            stmt = sa.select(sa.func.count()).select_from(model).where(*where)
            return int(await session.scalar(stmt) or 0)

    def wallet_state(self, wallet_id: str) -> Effect:
        return lambda: balances(self.stack, self.tenant, wallet_id)


def _payment_body(**extra: Any) -> dict[str, Any]:
    return {"amount": 1999, "currency": "CNY", "method": "wechat_native",
            "out_trade_no": order_no(), "subject": "Idempotent", **extra}  # fmt: skip


# ------------------------------------------------------------------ one scenario per operation
Prepare = Callable[[Ctx], Awaitable[Call]]
SCENARIOS: dict[str, Prepare] = {}


def scenario(label: str) -> Callable[[Prepare], Prepare]:
    def register(prepare: Prepare) -> Prepare:
        SCENARIOS[label] = prepare
        return prepare

    return register


@scenario("POST /v1/payments")
async def _create_payment(c: Ctx) -> Call:
    return Call("POST", "/v1/payments", _payment_body(),
                lambda: c.count(Payment, Payment.app_id == c.tenant.app_id))  # fmt: skip


@scenario("POST /v1/payments/{payment_id}/close")
async def _close_payment(c: Ctx) -> Call:
    payment = await c.post("/v1/payments", _payment_body())
    url = f"/v1/payments/{payment['id']}"
    return Call("POST", f"{url}/close", None, lambda: c.get(url))


async def _escrow(c: Ctx, action: str) -> Call:
    payment = await paid(c.stack, c.tenant, 1000, escrow={"auto_confirm_in": 86400})
    return Call("POST", f"/v1/payments/{payment['id']}/escrow/{action}", None,
                lambda: merchant_balance(c.stack, c.tenant))  # fmt: skip


@scenario("POST /v1/payments/{payment_id}/verify")
async def _verify_payment(c: Ctx) -> Call:
    # The tenant's rules challenge this amount and WeChat cannot step up: the payment waits.
    challenge = {"name": "step_up", "event": "payment.create", "expression": "amount == 4343",
                 "action": "challenge"}  # fmt: skip
    draft = await c.post("/v1/risk/rule_sets", {"rules": [challenge]})
    await c.post(f"/v1/risk/rule_sets/{draft['id']}/publish")
    payment = await c.post("/v1/payments", _payment_body(amount=4343))
    assert payment["next_action"]["type"] == "verify"
    return Call("POST", f"/v1/payments/{payment['id']}/verify", {"method": "sms"},
                lambda: c.count(Attempt, Attempt.payment_id == payment["id"]))  # fmt: skip


@scenario("POST /v1/payments/{payment_id}/escrow/confirm")
async def _escrow_confirm(c: Ctx) -> Call:
    return await _escrow(c, "confirm")


@scenario("POST /v1/payments/{payment_id}/escrow/release")
async def _escrow_release(c: Ctx) -> Call:
    return await _escrow(c, "release")


@scenario("POST /v1/refunds")
async def _create_refund(c: Ctx) -> Call:
    payment = await paid(c.stack, c.tenant, 1000)
    body = {"payment": payment["id"], "amount": 300, "out_refund_no": no()}
    return Call("POST", "/v1/refunds", body,
                lambda: c.count(Refund, Refund.payment_id == payment["id"]))  # fmt: skip


async def _split_body(c: Ctx) -> tuple[dict[str, Any], str]:
    payment = await paid(c.stack, c.tenant, 1000)
    receiver = await wallet(c.stack, c.tenant)
    body = {"payment": payment["id"], "trigger": "manual",
            "receivers": [{"wallet": receiver["id"], "percent_bps": 5000}]}  # fmt: skip
    return body, str(receiver["id"])


@scenario("POST /v1/splits")
async def _create_split(c: Ctx) -> Call:
    body, _ = await _split_body(c)
    return Call("POST", "/v1/splits", body,
                lambda: c.count(Split, Split.payment_id == body["payment"]))  # fmt: skip


@scenario("POST /v1/splits/{split_id}/execute")
async def _execute_split(c: Ctx) -> Call:
    body, receiver = await _split_body(c)
    split = await c.post("/v1/splits", body)
    return Call("POST", f"/v1/splits/{split['id']}/execute", None, c.wallet_state(receiver))


@scenario("POST /v1/wallets")
async def _create_wallet(c: Ctx) -> Call:
    return Call("POST", "/v1/wallets", {"reference": no()},
                lambda: c.count(Wallet, Wallet.app_id == c.tenant.app_id))  # fmt: skip


@scenario("POST /v1/wallets/{wallet_id}")
async def _update_wallet(c: Ctx) -> Call:
    w = await wallet(c.stack, c.tenant)
    url = f"/v1/wallets/{w['id']}"
    return Call("POST", url, {"verification_level": 2}, lambda: c.get(url))


@scenario("POST /v1/wallets/{wallet_id}/freezes")
async def _freeze(c: Ctx) -> Call:
    w = await funded_wallet(c.stack, c.tenant, 1000)
    body = {"action": "freeze", "amount": 300, "out_request_no": no()}
    return Call("POST", f"/v1/wallets/{w}/freezes", body, c.wallet_state(w))


@scenario("POST /v1/wallets/{wallet_id}/points")
async def _points(c: Ctx) -> Call:
    w = await wallet(c.stack, c.tenant)
    body = {"action": "grant", "points": 50, "out_request_no": no()}
    return Call("POST", f"/v1/wallets/{w['id']}/points", body, c.wallet_state(w["id"]))


@scenario("POST /v1/wallets/{wallet_id}/top_ups")
async def _top_up(c: Ctx) -> Call:
    w = await wallet(c.stack, c.tenant)
    body = {"amount": 500, "method": "alipay_qr", "out_trade_no": order_no()}
    return Call("POST", f"/v1/wallets/{w['id']}/top_ups", body,
                lambda: c.count(Payment, Payment.app_id == c.tenant.app_id))  # fmt: skip


@scenario("POST /v1/wallet_transfers")
async def _transfer(c: Ctx) -> Call:
    source = await funded_wallet(c.stack, c.tenant, 1000)
    destination = await wallet(c.stack, c.tenant)
    body = {"source": source, "destination": destination["id"], "amount": 400,
            "out_transfer_no": no()}  # fmt: skip

    async def both() -> Any:
        return [await balances(c.stack, c.tenant, w) for w in (source, destination["id"])]

    return Call("POST", "/v1/wallet_transfers", body, both)


@scenario("POST /v1/payouts")
async def _payout(c: Ctx) -> Call:
    c.tenant = await payout_tenant(c.stack)
    source = await funded_wallet(c.stack, c.tenant, 5000)
    body = {"source": source, "amount": 1000, "speed": "standard", "out_payout_no": no(),
            "destination": {"type": "wechat_openid", "account": OPENID}}  # fmt: skip

    async def held_and_made() -> Any:
        made = await c.count(Payout, Payout.app_id == c.tenant.app_id)
        return made, await balances(c.stack, c.tenant, source)

    return Call("POST", "/v1/payouts", body, held_and_made)


@scenario("PUT /v1/operator/merchants/{merchant_id}/settlement")
async def _settlement_terms(c: Ctx) -> Call:
    url = f"/v1/operator/merchants/{c.tenant.merchant_id}/settlement"
    return Call("PUT", url, {"cycle": "T1", "fee_bps": 30},
                lambda: c.get(url, operator=True), operator=True)  # fmt: skip


@scenario("POST /v1/webhook_endpoints")
async def _create_endpoint(c: Ctx) -> Call:
    made = WebhookEndpoint.app_id == c.tenant.app_id
    return Call("POST", "/v1/webhook_endpoints", {"url": f"{MERCHANT_SITE}/idem"},
                lambda: c.count(WebhookEndpoint, made))  # fmt: skip


@scenario("POST /v1/store_codes")
async def _create_store_code(c: Ctx) -> Call:
    made = StoreCode.app_id == c.tenant.app_id
    return Call("POST", "/v1/store_codes", {"name": "Stall 7", "store_id": "s-7"},
                lambda: c.count(StoreCode, made))  # fmt: skip


@scenario("PATCH /v1/store_codes/{store_code_id}")
async def _update_store_code(c: Ctx) -> Call:
    code = await c.post("/v1/store_codes", {"name": "Stall 8", "store_id": "s-8"})
    url = f"/v1/store_codes/{code['id']}"
    return Call("PATCH", url, {"active": False}, lambda: c.get(url))  # fmt: skip


@scenario("DELETE /v1/webhook_endpoints/{endpoint_id}")
async def _delete_endpoint(c: Ctx) -> Call:
    endpoint = await c.post("/v1/webhook_endpoints", {"url": f"{MERCHANT_SITE}/idem"})
    return Call("DELETE", f"/v1/webhook_endpoints/{endpoint['id']}", None,
                lambda: c.get("/v1/webhook_endpoints"))  # fmt: skip


@scenario("POST /v1/events/{event_id}/resend")
async def _resend(c: Ctx) -> Call:
    await c.post("/v1/webhook_endpoints", {"url": f"{MERCHANT_SITE}/idem"})
    await paid(c.stack, c.tenant, 1000)
    event = (await c.get("/v1/events"))["data"][0]
    delivered = WebhookDelivery.event_id == event["id"]
    return Call("POST", f"/v1/events/{event['id']}/resend", None,
                lambda: c.count(WebhookDelivery, delivered))  # fmt: skip


RULE = {"name": "score all", "action": {"type": "score"}}


def _rules(c: Ctx) -> Effect:
    return lambda: c.get("/v1/routing/rules")


@scenario("POST /v1/routing/rules")
async def _create_rule(c: Ctx) -> Call:
    return Call("POST", "/v1/routing/rules", RULE, _rules(c))


@scenario("PUT /v1/routing/rules/{rule_id}")
async def _replace_rule(c: Ctx) -> Call:
    rule = await c.post("/v1/routing/rules", RULE)
    body = {**RULE, "name": "renamed"}
    return Call("PUT", f"/v1/routing/rules/{rule['id']}", body, _rules(c))


@scenario("DELETE /v1/routing/rules/{rule_id}")
async def _delete_rule(c: Ctx) -> Call:
    rule = await c.post("/v1/routing/rules", RULE)
    return Call("DELETE", f"/v1/routing/rules/{rule['id']}", None, _rules(c))


@scenario("PATCH /v1/routing/settings")
async def _routing_settings(c: Ctx) -> Call:
    return Call("PATCH", "/v1/routing/settings", {"exploration": 0.5},
                lambda: c.get("/v1/routing/settings"))  # fmt: skip


@scenario("PATCH /v1/routing/accounts/{account_id}")
async def _account_routing(c: Ctx) -> Call:
    return Call("PATCH", f"/v1/routing/accounts/{c.tenant.accounts['wechatpay']}",
                {"priority": 7, "daily_count_limit": 100})  # fmt: skip


@scenario("POST /v1/operator/merchants")
async def _create_merchant(c: Ctx) -> Call:
    return Call("POST", "/v1/operator/merchants", {"name": f"shop {no()}"},
                lambda: c.get("/v1/operator/merchants", operator=True), operator=True)  # fmt: skip


@scenario("POST /v1/operator/merchants/{merchant_id}/apps")
async def _create_app(c: Ctx) -> Call:
    merchant = c.tenant.merchant_id
    return Call("POST", f"/v1/operator/merchants/{merchant}/apps", {"name": "pos"},
                lambda: c.count(App, App.merchant_id == merchant), operator=True)  # fmt: skip


@scenario("PATCH /v1/operator/merchants/{merchant_id}")
async def _update_merchant(c: Ctx) -> Call:
    return Call("PATCH", f"/v1/operator/merchants/{c.tenant.merchant_id}",
                {"timezone": "Europe/Berlin"},
                lambda: c.get("/v1/operator/merchants", operator=True), operator=True)  # fmt: skip


@scenario("PATCH /v1/operator/apps/{app_id}")
async def _update_app(c: Ctx) -> Call:
    app = c.tenant.app_id
    return Call("PATCH", f"/v1/operator/apps/{app}", {"display_name": "Brand"},
                lambda: c.count(App, App.id == app, App.display_name == "Brand"),
                operator=True)  # fmt: skip


def _keys(c: Ctx) -> Effect:
    return lambda: c.count(ApiKey, ApiKey.app_id == c.tenant.app_id, ApiKey.revoked_at.is_(None))


@scenario("POST /v1/operator/apps/{app_id}/keys")
async def _create_key(c: Ctx) -> Call:
    return Call("POST", f"/v1/operator/apps/{c.tenant.app_id}/keys", {"mode": "test"},
                _keys(c), operator=True)  # fmt: skip


@scenario("DELETE /v1/operator/apps/{app_id}/keys/{key_id}")
async def _revoke_key(c: Ctx) -> Call:
    url = f"/v1/operator/apps/{c.tenant.app_id}/keys"
    r = await c.stack.client.post(url, json={"mode": "test"}, headers=OPERATOR)
    assert r.status_code == 201, r.text
    return Call("DELETE", f"{url}/{r.json()['id']}", None, _keys(c), operator=True)


def _accounts(c: Ctx) -> Effect:
    return lambda: c.get(f"/v1/operator/apps/{c.tenant.app_id}/channel_accounts", operator=True)


@scenario("POST /v1/operator/apps/{app_id}/channel_accounts")
async def _add_account(c: Ctx) -> Call:
    credentials = c.stack.sandboxes["alipay"].provision(f"{GATEWAY}/sandbox/alipay")
    body = {"channel": "alipay", "credentials": credentials, "name": "second"}
    return Call("POST", f"/v1/operator/apps/{c.tenant.app_id}/channel_accounts", body,
                _accounts(c), operator=True)  # fmt: skip


@scenario("PATCH /v1/operator/channel_accounts/{account_id}")
async def _update_account(c: Ctx) -> Call:
    return Call("PATCH", f"/v1/operator/channel_accounts/{c.tenant.accounts['alipay']}",
                {"priority": 9}, _accounts(c), operator=True)  # fmt: skip


# ------------------------------------------------------------------------------------ recon
ACTOR = {"Paymux-Actor": "idem-tester"}
LONG_AGO = (dt.date.today() - dt.timedelta(days=40)).isoformat()  # no bill: a quick run


def _runs(c: Ctx) -> Effect:
    account = c.tenant.accounts["wechatpay"]
    return lambda: c.count(ReconRun, ReconRun.channel_account_id == account)


@scenario("POST /v1/operator/recon/runs")
async def _recon_run(c: Ctx) -> Call:
    body = {"channel_account_id": c.tenant.accounts["wechatpay"], "bill_date": LONG_AGO}
    return Call("POST", "/v1/operator/recon/runs", body, _runs(c), operator=True, headers=ACTOR)


@scenario("POST /v1/operator/recon/runs/upload")
async def _recon_upload(c: Ctx) -> Call:
    url = (f"/v1/operator/recon/runs/upload?channel_account_id={c.tenant.accounts['wechatpay']}"
           f"&bill_date={LONG_AGO}")  # fmt: skip
    return Call("POST", url, None, _runs(c), operator=True, headers=ACTOR,
                content=b"not a bill, read as one problem")  # fmt: skip


async def _a_break(c: Ctx, *, approval: bool = False) -> tuple[str, str | None]:
    """A break (and a pending approval requested by someone else) written as a run would."""
    now = clock.now()
    bid, rid = new_id("brk"), None
    async with c.stack.runtime.db.transaction() as session:
        session.add(ReconBreak(
            id=bid, channel_account_id=c.tenant.accounts["wechatpay"], app_id=c.tenant.app_id,
            merchant_id=c.tenant.merchant_id, livemode=False, kind="payment", key=new_id("att"),
            klass=BreakClass.amount_over, priority=2, state=BreakState.open, currency="CNY",
            channel_amount=101, local_amount=100, first_bill_date=now.date(),
            last_bill_date=now.date(), first_run_id="rcr_x", last_run_id="rcr_x", opened_at=now,
        ))  # fmt: skip
        if approval:
            rid = new_id("rap")
            session.add(ReconApproval(
                id=rid, break_id=bid, action="adjust", params={"amount": 1, "account": "suspense"},
                amount=1, state=ApprovalState.pending, requested_by="operator:someone-else",
                reason="one fen over",
            ))  # fmt: skip
    return bid, rid


def _history(c: Ctx, break_id: str) -> Effect:
    return lambda: c.count(ReconBreakEvent, ReconBreakEvent.break_id == break_id)


@scenario("POST /v1/operator/recon/breaks/{break_id}/actions")
async def _recon_act(c: Ctx) -> Call:
    bid, _ = await _a_break(c)
    return Call("POST", f"/v1/operator/recon/breaks/{bid}/actions",
                {"action": "ignore", "reason": "a test merchant"}, _history(c, bid),
                operator=True, headers=ACTOR)  # fmt: skip


@scenario("POST /v1/operator/recon/approvals/{approval_id}/approve")
async def _recon_approve(c: Ctx) -> Call:
    bid, rid = await _a_break(c, approval=True)
    return Call("POST", f"/v1/operator/recon/approvals/{rid}/approve", {"reason": "checked"},
                _history(c, bid), operator=True, headers=ACTOR)  # fmt: skip


@scenario("POST /v1/operator/recon/approvals/{approval_id}/reject")
async def _recon_reject(c: Ctx) -> Call:
    bid, rid = await _a_break(c, approval=True)
    return Call("POST", f"/v1/operator/recon/approvals/{rid}/reject", {"reason": "not so"},
                _history(c, bid), operator=True, headers=ACTOR)  # fmt: skip


@scenario("PUT /v1/operator/recon/configs/{channel_account_id}")
async def _recon_config(c: Ctx) -> Call:
    account = c.tenant.accounts["wechatpay"]
    return Call("PUT", f"/v1/operator/recon/configs/{account}", {"grace_days": 2},
                lambda: c.count(ReconConfig, ReconConfig.channel_account_id == account),
                operator=True)  # fmt: skip


# ------------------------------------------------------------------------------------ risk
def _risk_base(operator: bool) -> str:
    return "/v1/operator/risk" if operator else "/v1/risk"


async def _risk_list(c: Ctx, operator: bool, kind: str = "ip") -> str:
    body = {"name": f"l_{no()[-12:].lower()}", "type": kind, "livemode": False}
    headers = {**OPERATOR, **ACTOR} if operator else c.tenant.headers
    r = await c.stack.client.post(f"{_risk_base(operator)}/lists", headers=headers, json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _risk_items(c: Ctx, list_id: str) -> Effect:
    return lambda: c.count(RiskListItem, RiskListItem.list_id == list_id)


for _operator in (False, True):
    _base = _risk_base(_operator)

    @scenario(f"POST {_base}/lists")
    async def _risk_create(c: Ctx, operator: bool = _operator) -> Call:
        body = {"name": f"l_{no()[-12:].lower()}", "type": "sku", "livemode": False}
        return Call("POST", f"{_risk_base(operator)}/lists", body,
                    lambda: c.count(RiskList, RiskList.name == body["name"]), operator=operator,
                    headers=ACTOR if operator else None)  # fmt: skip

    @scenario(f"POST {_base}/lists/{{list_id}}/items")
    async def _risk_add(c: Ctx, operator: bool = _operator) -> Call:
        list_id = await _risk_list(c, operator)
        return Call("POST", f"{_risk_base(operator)}/lists/{list_id}/items",
                    {"items": [{"value": "203.0.113.9", "reason": "abuse"}]},
                    _risk_items(c, list_id), operator=operator,
                    headers=ACTOR if operator else None)  # fmt: skip

    @scenario(f"POST {_base}/lists/{{list_id}}/items/import")
    async def _risk_import(c: Ctx, operator: bool = _operator) -> Call:
        list_id = await _risk_list(c, operator)
        return Call("POST", f"{_risk_base(operator)}/lists/{list_id}/items/import", None,
                    _risk_items(c, list_id), operator=operator,
                    headers={**(ACTOR if operator else {}), "Content-Type": "text/csv"},
                    content=b"value,reason\n203.0.113.10,abuse")  # fmt: skip

    @scenario(f"DELETE {_base}/lists/{{list_id}}/items")
    async def _risk_remove(c: Ctx, operator: bool = _operator) -> Call:
        list_id = await _risk_list(c, operator)
        headers = {**OPERATOR, **ACTOR} if operator else c.tenant.headers
        item = {"value": "203.0.113.11", "reason": "abuse"}
        r = await c.stack.client.post(f"{_risk_base(operator)}/lists/{list_id}/items",
                                      headers=headers, json={"items": [item]})  # fmt: skip
        assert r.status_code == 200, r.text
        return Call("DELETE", f"{_risk_base(operator)}/lists/{list_id}/items?value=203.0.113.11",
                    None, _risk_items(c, list_id), operator=operator,
                    headers=ACTOR if operator else None)  # fmt: skip


_RULE = {"name": "big", "event": "payment.create", "expression": "amount > 500000",
         "action": "review"}  # fmt: skip


_PLATFORM_RULE = {"name": "t_huge_payout", "event": "payout.create",
                  "expression": "amount > 99999999", "action": "review"}  # fmt: skip


async def _rule_set(c: Ctx, operator: bool) -> str:
    """A draft; the platform's keeps the rules in force (the withdrawal limits other tests of
    this database rely on), as a platform team's next version would."""
    from tests.risk.test_decisions import platform_rules

    headers = {**OPERATOR, **ACTOR} if operator else c.tenant.headers
    rules = [*await platform_rules(c.stack), _PLATFORM_RULE] if operator else [_RULE]
    r = await c.stack.client.post(f"{_risk_base(operator)}/rule_sets", headers=headers,
                                  json={"rules": rules, "livemode": False})  # fmt: skip
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


for _operator in (False, True):
    _base = _risk_base(_operator)

    @scenario(f"POST {_base}/rule_sets")
    async def _rule_set_create(c: Ctx, operator: bool = _operator) -> Call:
        note = f"idem {no()}"
        return Call("POST", f"{_risk_base(operator)}/rule_sets",
                    {"rules": [_RULE], "note": note, "livemode": False},
                    lambda: c.count(RuleSet, RuleSet.note == note), operator=operator,
                    headers=ACTOR if operator else None)  # fmt: skip

    @scenario(f"POST {_base}/rule_sets/{{rule_set_id}}/publish")
    async def _rule_set_publish(c: Ctx, operator: bool = _operator) -> Call:
        rule_set = await _rule_set(c, operator)
        return Call("POST", f"{_risk_base(operator)}/rule_sets/{rule_set}/publish", None,
                    lambda: c.count(RuleSet, RuleSet.id == rule_set,
                                    RuleSet.state == "published"), operator=operator,
                    headers=ACTOR if operator else None)  # fmt: skip


_REVIEWED = {"name": "watch", "event": "payment.create", "expression": "amount == 4242",
             "action": "review"}  # fmt: skip


async def _review(c: Ctx) -> str:
    """An open review: the tenant's rules send a payment of 4242 to review."""
    found = await c.stack.client.get("/v1/risk/rule_sets", headers=c.tenant.headers)
    if not any(x["state"] == "published" for x in found.json()["data"]):
        draft = await c.post("/v1/risk/rule_sets", {"rules": [_REVIEWED]})
        await c.post(f"/v1/risk/rule_sets/{draft['id']}/publish")
    payment = await c.post("/v1/payments", {"amount": 4242, "currency": "CNY",
                                            "method": "wechat_native", "out_trade_no": no(),
                                            "subject": "watched"})  # fmt: skip
    return str(payment["risk"]["review"])


for _operator in (False, True):
    _base = _risk_base(_operator)
    for _verb, _state in (("approve", "approved"), ("decline", "declined")):

        @scenario(f"POST {_base}/reviews/{{review_id}}/{_verb}")
        async def _review_close(c: Ctx, operator: bool = _operator, verb: str = _verb,
                                state: str = _state) -> Call:  # fmt: skip
            review = await _review(c)
            return Call("POST", f"{_risk_base(operator)}/reviews/{review}/{verb}",
                        {"reason": "looked at it"},
                        lambda: c.count(RiskReview, RiskReview.id == review,
                                        RiskReview.state == state), operator=operator,
                        headers=ACTOR if operator else None)  # fmt: skip

    @scenario(f"POST {_base}/reviews/{{review_id}}/assign")
    async def _review_assign(c: Ctx, operator: bool = _operator) -> Call:
        review = await _review(c)
        return Call("POST", f"{_risk_base(operator)}/reviews/{review}/assign",
                    {"assignee": "ana"},
                    lambda: c.count(RiskReview, RiskReview.id == review,
                                    RiskReview.assignee == "ana"), operator=operator,
                    headers=ACTOR if operator else None)  # fmt: skip


for _operator in (False, True):
    _base = _risk_base(_operator)

    @scenario(f"POST {_base}/rule_sets/{{rule_set_id}}/shadow")
    async def _rule_set_shadow(c: Ctx, operator: bool = _operator) -> Call:
        rule_set = await _rule_set(c, operator)
        return Call("POST", f"{_risk_base(operator)}/rule_sets/{rule_set}/shadow",
                    {"enabled": True},
                    lambda: c.count(RuleSet, RuleSet.id == rule_set,
                                    RuleSet.shadow_since.is_not(None)), operator=operator,
                    headers=ACTOR if operator else None)  # fmt: skip

    @scenario(f"POST {_base}/backtests")
    async def _backtest(c: Ctx, operator: bool = _operator) -> Call:
        rule_set = await _rule_set(c, operator)
        now = clock.now()
        body = {"rule_set": rule_set, "start": (now - dt.timedelta(days=1)).isoformat(),
                "end": now.isoformat()}  # fmt: skip
        return Call("POST", f"{_risk_base(operator)}/backtests", body, None, operator=operator,
                    headers=ACTOR if operator else None)  # fmt: skip

    @scenario(f"POST {_base}/presets/{{name}}/apply")
    async def _preset_apply(c: Ctx, operator: bool = _operator) -> Call:
        # The platform's in live mode: test-mode platform lists are other tests' (tests/risk).
        owner = "platform" if operator else c.tenant.merchant_id
        return Call("POST", f"{_risk_base(operator)}/presets/card_shop/apply",
                    {"livemode": True} if operator else None,
                    lambda: c.count(RuleSet, RuleSet.owner == owner,
                                    RuleSet.note == "preset card_shop v1"), operator=operator,
                    headers=ACTOR if operator else None)  # fmt: skip


# ------------------------------------------------------------------------------------ the tests
def _mutating(stack: Stack) -> dict[str, Any]:
    """Every mutating operation of an authenticated caller, as the app routes it."""
    found = {}
    for route in api_routes(stack.app):
        for method in (route.methods or set()) & idempotency.MUTATING:
            if route.path_format.startswith("/v1/"):
                found[f"{method} {route.path_format}"] = route
    return found


async def test_every_mutating_operation_honours_the_key_and_the_document_says_so(
    stack: Stack,
) -> None:
    mutating = _mutating(stack)
    assert len(mutating) >= 29
    assert set(mutating) == set(SCENARIOS), "a mutating route without an idempotency scenario"
    assert all(idempotency.honours(route) for route in mutating.values())
    doc = stack.app.openapi()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            declared = [p for p in op.get("parameters", []) if p["name"] == "Idempotency-Key"]
            want = f"{method.upper()} {path}" in mutating
            assert len(declared) == int(want), (method, path)
            if declared:
                assert declared[0]["in"] == "header" and not declared[0]["required"]
                assert "same key" in declared[0]["description"]
    unauthenticated = [r for r in api_routes(stack.app) if not r.path_format.startswith("/v1/")]
    assert unauthenticated and not any(idempotency.honours(r) for r in unauthenticated)


def _headers(c: Ctx, call: Call, key: str, other: dict[str, str] | None = None) -> dict[str, str]:
    auth = OPERATOR if call.operator else (other or c.tenant.headers)
    return {**auth, **(call.headers or {}), "Idempotency-Key": key}


async def _send(c: Ctx, call: Call, headers: dict[str, str], body: Any = None) -> Any:
    if call.content is not None:
        raw = call.content if body is None else call.content + b"\r\n"
        return await c.stack.client.request(call.method, call.url, headers=headers, content=raw)
    sent = call.body if body is None else body
    return await c.stack.client.request(call.method, call.url, headers=headers,
                                        **({} if sent is None else {"json": sent}))  # fmt: skip


async def _other_scopes(c: Ctx) -> list[dict[str, str]]:
    """Keys of another app (another merchant's) and of this app's other mode."""
    other = await make_tenant(c.stack, channels=("wechatpay",))
    async with c.stack.runtime.db.transaction() as session:
        live = await merchant_service.issue_key(session, app_id=c.tenant.app_id, mode=Mode.live)
    return [other.headers, {"Authorization": f"Bearer {live.secret}"}]


@pytest.mark.parametrize("label", sorted(SCENARIOS))
async def test_same_key_replays_different_body_conflicts_and_scope_is_app_and_mode(
    stack: Stack, tenant: Tenant, label: str
) -> None:
    c = Ctx(stack, tenant)
    call = await SCENARIOS[label](c)
    key = f"idem-{uuid.uuid4()}"
    headers = _headers(c, call, key)

    first = await _send(c, call, headers)
    assert first.status_code < 300, (label, first.text)
    assert "Idempotent-Replayed" not in first.headers
    after_first = await call.effect() if call.effect else None

    again = await _send(c, call, headers)
    assert again.status_code == first.status_code, again.text
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    if call.effect:
        assert await call.effect() == after_first, "the replay applied the call again"

    different = {**call.body, "__changed": True} if isinstance(call.body, dict) else {"x": 1}
    conflict = await _send(c, call, headers, different)
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["error"]["type"] == "idempotency_error"
    assert conflict.json()["error"]["code"] == "idempotency_key_reused"
    if call.effect:
        assert await call.effect() == after_first

    if not call.operator:  # the operator has one scope; a merchant key has its app and mode
        for other in await _other_scopes(c):
            fresh = await _send(c, call, _headers(c, call, key, other))
            assert "Idempotent-Replayed" not in fresh.headers, (label, fresh.text)
            assert fresh.status_code != 409 or (
                fresh.json()["error"]["type"] != "idempotency_error"
            ), fresh.text


async def test_the_same_key_in_another_app_or_mode_creates_its_own_object(
    stack: Stack, tenant: Tenant
) -> None:
    c = Ctx(stack, tenant)
    key = f"idem-{uuid.uuid4()}"
    body = {"reference": "same-reference"}
    ids = []
    for auth in [tenant.headers, *await _other_scopes(c)]:
        r = await stack.client.post("/v1/wallets", json=body,
                                    headers={**auth, "Idempotency-Key": key})  # fmt: skip
        assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers, r.text
        ids.append(r.json()["id"])
        replay = await stack.client.post("/v1/wallets", json=body,
                                         headers={**auth, "Idempotency-Key": key})  # fmt: skip
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json()["id"] == ids[-1]
    assert len(set(ids)) == 3


async def test_an_invalid_request_is_not_remembered_but_a_refusal_is(
    stack: Stack, tenant: Tenant
) -> None:
    """Stripe's rule, kept from the kit: a request that failed validation never began, so the
    corrected retry under the same key runs; an answer the operation gave (a 409 refusal) is
    the key's answer from then on."""
    c = Ctx(stack, tenant)
    headers = {**tenant.headers, "Idempotency-Key": f"idem-{uuid.uuid4()}"}
    source, destination = await wallet(stack, tenant), await wallet(stack, tenant)
    body = {"source": source["id"], "destination": destination["id"], "amount": 100,
            "out_transfer_no": no()}  # fmt: skip
    invalid = await stack.client.post("/v1/wallet_transfers", json={**body, "amount": "lots"},
                                      headers=headers)  # fmt: skip
    assert invalid.status_code == 400, invalid.text
    refused = await stack.client.post("/v1/wallet_transfers", json=body, headers=headers)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "insufficient_funds"
    assert "Idempotent-Replayed" not in refused.headers
    again = await stack.client.post("/v1/wallet_transfers", json=body, headers=headers)
    assert again.status_code == 409 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == refused.json()
    assert (await c.wallet_state(destination["id"])())["available"] == 0


async def test_a_stored_answer_keeps_no_secret_in_clear_text(stack: Stack, tenant: Tenant) -> None:
    """A webhook endpoint's ``whsec_`` secret is shown once, and replayed: sealed at rest."""
    key = f"idem-{uuid.uuid4()}"
    headers = {**tenant.headers, "Idempotency-Key": key}
    body = {"url": f"{MERCHANT_SITE}/sealed"}
    first = await stack.client.post("/v1/webhook_endpoints", json=body, headers=headers)
    assert first.status_code == 201 and first.json()["secret"].startswith("whsec_")
    replay = await stack.client.post("/v1/webhook_endpoints", json=body, headers=headers)
    assert replay.json()["secret"] == first.json()["secret"]
    async with stack.runtime.db.read() as session:
        record = (await session.scalars(
            sa.select(IdempotencyRecord).where(IdempotencyRecord.key == key)
        )).one()  # fmt: skip
    assert isinstance(record.response, str) and "whsec_" not in record.response
    assert first.json()["secret"] not in str(record.response)


async def test_a_payment_create_reports_its_channel_time_first_and_replays_without_it(
    stack: Stack, tenant: Tenant
) -> None:
    headers = {**tenant.headers, "Idempotency-Key": f"idem-{uuid.uuid4()}"}
    body = _payment_body()
    first = await stack.client.post("/v1/payments", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert int(first.headers["Paymux-Channel-Time-Ms"]) >= 0
    again = await stack.client.post("/v1/payments", json=body, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Paymux-Channel-Time-Ms" not in again.headers
    plain = await stack.client.post("/v1/payments", json=_payment_body(), headers=tenant.headers)
    assert plain.status_code == 201 and "Paymux-Channel-Time-Ms" in plain.headers


async def test_a_top_up_retried_after_a_crash_gets_its_payment_back(
    stack: Stack, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A top-up is a payment create: the retry after the first try died (the key's lease
    expired) answers with the payment that try made, and the channel has one order."""
    tenant = await make_tenant(stack, channels=("wechatpay",))
    w = await wallet(stack, tenant)
    path = f"/v1/wallets/{w['id']}/top_ups"
    body = {"amount": 700, "method": "wechat_native", "out_trade_no": order_no(),
            "subject": f"top-up-crash-{uuid.uuid4().hex[:8]}"}  # fmt: skip
    headers = {**tenant.headers, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    payment, _ = await _crash_at_the_channel(stack, tenant, monkeypatch, body, headers, path)

    clock.advance(idempotency.LEASE_SECONDS + 1)
    retry = await stack.client.post(path, json=body, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json()["id"] == payment.id
    assert [a.status for a in await _attempts(stack, payment.id)] == ["pending"]
    assert len(_orders(stack.sandboxes["wechatpay"].core, body["subject"])) == 1
    c = Ctx(stack, tenant)
    assert await c.count(Payment, Payment.app_id == tenant.app_id) == 1

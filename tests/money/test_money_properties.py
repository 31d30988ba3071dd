"""Stateful property test of the money domain (hypothesis): any sequence of wallet payments (with
escrow and splits), refunds, escrow releases, wallet transfers, settlements and withdrawals keeps
Σ debits = Σ credits per currency, no account below its floor, every account's held pools equal
to its open holds, and an operation that is refused changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from paymux.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction, Side, TxStatus
from paymux.settlement import service as settlement
from tests.conftest import Stack, Tenant, attempt_ids, make_tenant
from tests.money.test_money import OPERATOR, wallet
from tests.payments.test_payments import pay, wait_for

WALLETS = 3


def _no() -> str:
    return "p" + uuid.uuid4().hex[:20]


async def _snapshot(stack: Stack) -> tuple[Any, ...]:
    async with stack.runtime.db.read() as session:
        accounts = (await session.execute(sa.select(
            LedgerAccount.id, LedgerAccount.balance, LedgerAccount.pending_debits,
            LedgerAccount.pending_credits).order_by(LedgerAccount.id))).all()  # fmt: skip
        txs = await session.scalar(sa.select(sa.func.count()).select_from(LedgerTransaction))
    return tuple(map(tuple, accounts)), txs


async def _check_books(stack: Stack) -> None:
    async with stack.runtime.db.read() as session:
        rows = (await session.execute(
            sa.select(LedgerEntry.account_id, LedgerEntry.side, LedgerEntry.amount,
                      LedgerEntry.currency, LedgerTransaction.status)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        )).all()  # fmt: skip
        accounts = {a.id: a for a in (await session.scalars(sa.select(LedgerAccount))).all()}
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    posted: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    held: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for account_id, side, amount, currency, status in rows:
        i = 0 if side == Side.debit else 1
        if status == TxStatus.posted:
            totals[currency][i] += amount
            posted[account_id][i] += amount
        elif status == TxStatus.pending:
            held[account_id][i] += amount
    assert all(d == c for d, c in totals.values()), totals
    for account in accounts.values():
        d, c = posted[account.id]
        derived = d - c if account.normal == Side.debit else c - d
        assert account.balance == derived, account.id  # kept balance = its entries
        assert (account.pending_debits, account.pending_credits) == tuple(held[account.id])
        if not account.allow_negative:
            assert account.balance - account.pending_out >= 0, account.id


async def test_money_operations_keep_the_books(stack: Stack) -> None:
    loop = asyncio.get_running_loop()

    def call(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    tenant: Tenant = await make_tenant(stack)
    r = await stack.client.put(
        f"/v1/operator/merchants/{tenant.merchant_id}/settlement",
        headers=OPERATOR,
        json={"cycle": "T0", "fee_bps": 100},
    )
    assert r.status_code == 200
    wallets = [(await wallet(stack, tenant))["id"] for _ in range(WALLETS)]
    for w in wallets:  # fund each wallet through a real channel payment
        top = await stack.client.post(f"/v1/wallets/{w}/top_ups", headers=tenant.headers,
                                      json={"amount": 50_000, "method": "alipay_qr",
                                            "out_trade_no": _no()})  # fmt: skip
        (attempt,) = await attempt_ids(stack, top.json()["id"])
        await pay(stack, "alipay", attempt)
        await wait_for(stack, tenant, top.json()["id"], "succeeded")
    amounts = st.integers(min_value=1, max_value=30_000)

    class Money(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.payments: list[str] = []

        def _do(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
            before = call(_snapshot(stack))
            r = call(stack.client.request(method, path, json=body, headers=tenant.headers))
            assert r.status_code < 500, r.text
            if r.status_code >= 400:
                assert "error" in r.json()
                assert call(_snapshot(stack)) == before, f"refused {path} changed money"
            return r

        @rule(
            w=st.integers(0, WALLETS - 1),
            amount=amounts,
            escrow=st.booleans(),
            split_bps=st.sampled_from([0, 800, 5000]),
            to=st.integers(0, WALLETS - 1),
        )
        def pay_with_wallet(self, w: int, amount: int, escrow: bool, split_bps: int,
                            to: int) -> None:  # fmt: skip
            body: dict[str, Any] = {
                "amount": amount, "method": "wallet", "out_trade_no": _no(), "subject": "item",
                "customer": {"wallet": wallets[w]}}  # fmt: skip
            if escrow:
                body["escrow"] = {"auto_confirm_in": 3600}
            if split_bps:
                body["split"] = {"commission_bps": 300, "receivers": [
                    {"wallet": wallets[to], "percent_bps": split_bps}]}  # fmt: skip
            r = self._do("POST", "/v1/payments", body)
            if r.status_code == 201:
                self.payments.append(r.json()["id"])

        @rule(i=st.integers(0, 50), amount=st.none() | amounts)
        def refund(self, i: int, amount: int | None) -> None:
            if self.payments:
                body: dict[str, Any] = {"payment": self.payments[i % len(self.payments)],
                                        "out_refund_no": _no()}  # fmt: skip
                if amount is not None:
                    body["amount"] = amount
                self._do("POST", "/v1/refunds", body)

        @rule(i=st.integers(0, 50))
        def release(self, i: int) -> None:
            if self.payments:
                self._do("POST", f"/v1/payments/{self.payments[i % len(self.payments)]}"
                         "/escrow/release")  # fmt: skip

        @rule(a=st.integers(0, WALLETS - 1), b=st.integers(0, WALLETS - 1), amount=amounts)
        def transfer(self, a: int, b: int, amount: int) -> None:
            self._do("POST", "/v1/wallet_transfers", {
                "source": wallets[a], "destination": wallets[b], "amount": amount,
                "out_transfer_no": _no()})  # fmt: skip

        @rule()
        def settle(self) -> None:
            async def run() -> None:
                async with stack.runtime.db.transaction() as session:
                    await settlement.settle_due(session)

            call(run())

        @rule(amount=st.integers(min_value=100, max_value=60_000), w=st.integers(-1, WALLETS - 1))
        def withdraw(self, amount: int, w: int) -> None:
            self._do(
                "POST",
                "/v1/payouts",
                {
                    "source": "merchant" if w < 0 else wallets[w],
                    "amount": amount,
                    "out_payout_no": _no(),
                    "destination": {
                        "type": "alipay_login_id",
                        "account": "payee@example.com",
                        "name": "张三",
                    },
                },
            )

        @invariant()
        def books(self) -> None:
            call(_check_books(stack))

    def run() -> None:
        run_state_machine_as_test(Money, settings=settings(
            max_examples=12, stateful_step_count=12, deadline=None, derandomize=True,
            suppress_health_check=list(HealthCheck)))  # fmt: skip

    await asyncio.to_thread(run)

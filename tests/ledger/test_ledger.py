"""The double-entry ledger on SQLite and PostgreSQL: balanced transactions, idempotent keys,
floors, two-phase holds, reversals, balances as of a past time, concurrency, and a property test
over random operation sequences (the books balance, kept balances equal the entries, nothing goes
below its floor, reservations equal open holds, a refused operation changes nothing)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paymux.kit.errors import Conflict, IdempotencyError, InvalidRequest, PaymuxError
from paymux.ledger import service as ledger
from paymux.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction, Side, TxStatus
from paymux.ledger.repository import LedgerRepository
from paymux.ledger.service import credit, debit
from tests.conftest import Stack, run_worker


async def accounts(
    stack: Stack, *specs: tuple[str, Side, bool], currency: str = "CNY"
) -> list[str]:
    owner = uuid.uuid4().hex[:12]
    async with stack.runtime.db.transaction() as session:
        made = [
            await ledger.open_account(
                session, owner_type="test", owner_id=owner, purpose=purpose, currency=currency,
                normal=normal, allow_negative=negative,
            )
            for purpose, normal, negative in specs
        ]  # fmt: skip
        return [a.id for a in made]


async def state(stack: Stack, *ids: str) -> list[tuple[int, int, int]]:
    async with stack.runtime.db.read() as session:
        rows = [await session.get(LedgerAccount, i) for i in ids]
        return [(a.balance, a.pending_debits, a.pending_credits) for a in rows if a]


async def run(stack: Stack, op: Callable[[Any], Awaitable[Any]]) -> Any:
    async with stack.runtime.db.transaction() as session:
        return await op(session)


async def move(
    stack: Stack, key: str, src: str, dst: str, amount: int, *, kind: str = "transfer"
) -> Any:
    """Debit ``src`` and credit ``dst`` by ``amount`` (``kind``: transfer or hold)."""
    fn = ledger.transfer if kind == "transfer" else ledger.hold
    return await run(
        stack, lambda s: fn(s, key=key, legs=[debit(src, amount), credit(dst, amount)])
    )


def funded_pair() -> tuple[tuple[str, Side, bool], ...]:
    # clearing (asset, may go negative as the funding source) → merchant (liability)
    return (("clearing", Side.debit, True), ("merchant", Side.credit, False),
            ("payee", Side.credit, False))  # fmt: skip


async def test_transfer_balances_and_is_idempotent(stack: Stack) -> None:
    clearing, merchant, _ = await accounts(stack, *funded_pair())
    legs = [debit(clearing, 1000), credit(merchant, 1000)]
    tx = await run(stack, lambda s: ledger.transfer(s, key="pay-1-" + clearing, legs=legs))
    again = await run(stack, lambda s: ledger.transfer(s, key="pay-1-" + clearing, legs=legs))
    assert again.id == tx.id and tx.status == TxStatus.posted
    assert await state(stack, clearing, merchant) == [(1000, 0, 0), (1000, 0, 0)]
    with pytest.raises(IdempotencyError):
        await move(stack, "pay-1-" + clearing, clearing, merchant, 5)
    async with stack.runtime.db.read() as session:
        entries = await LedgerRepository(session).entries_of(tx.id)
    assert sorted((e.side, e.amount) for e in entries) == [("credit", 1000), ("debit", 1000)]


@pytest.mark.parametrize(
    ("legs", "error"),
    [
        (lambda c, m: [debit(c, 100), credit(m, 99)], InvalidRequest),
        (lambda c, m: [debit(c, 100)], InvalidRequest),
        (lambda c, m: [debit(c, 0), credit(m, 0)], InvalidRequest),
        (lambda c, m: [debit(c, -5), credit(m, -5)], InvalidRequest),
        (lambda c, m: [debit(m, 100), credit(c, 100)], Conflict),  # merchant has nothing
        (lambda c, m: [debit(c, 100), credit("la_missing", 100)], PaymuxError),
    ],
)
async def test_bad_transactions_change_nothing(stack: Stack, legs: Any, error: type) -> None:
    clearing, merchant, _ = await accounts(stack, *funded_pair())
    with pytest.raises(error):
        await run(stack, lambda s: ledger.transfer(s, key=f"bad-{clearing}",
                                                   legs=legs(clearing, merchant)))  # fmt: skip
    assert await state(stack, clearing, merchant) == [(0, 0, 0), (0, 0, 0)]
    async with stack.runtime.db.read() as session:
        assert await LedgerRepository(session).transaction_by_key(f"bad-{clearing}") is None


async def test_currencies_never_mix(stack: Stack) -> None:
    (cny,) = await accounts(stack, ("clearing", Side.debit, True))
    (usd,) = await accounts(stack, ("merchant", Side.credit, False), currency="USD")
    with pytest.raises(InvalidRequest) as caught:
        await move(stack, f"mix-{cny}", cny, usd, 100)
    assert caught.value.code == "ledger_unbalanced"


async def test_holds_reserve_then_post_or_void_once(stack: Stack) -> None:
    clearing, merchant, payee = await accounts(stack, *funded_pair())
    await move(stack, f"fund-{merchant}", clearing, merchant, 1000)
    held = await move(stack, f"h1-{merchant}", merchant, payee, 700, kind="hold")
    assert held.status == TxStatus.pending
    assert await state(stack, merchant, payee) == [(1000, 700, 0), (0, 0, 700)]
    with pytest.raises(Conflict):  # only 300 is available now
        await move(stack, f"h2-{merchant}", merchant, payee, 301, kind="hold")
    await run(stack, lambda s: ledger.post_hold(s, held.id))
    await run(stack, lambda s: ledger.post_hold(s, held.id))  # once
    assert await state(stack, merchant, payee) == [(300, 0, 0), (700, 0, 0)]
    with pytest.raises(Conflict):
        await run(stack, lambda s: ledger.void_hold(s, held.id))

    second = await move(stack, f"h3-{merchant}", merchant, payee, 300, kind="hold")
    await run(stack, lambda s: ledger.void_hold(s, second.id))
    await run(stack, lambda s: ledger.void_hold(s, second.id))
    assert await state(stack, merchant, payee) == [(300, 0, 0), (700, 0, 0)]
    with pytest.raises(Conflict):
        await run(stack, lambda s: ledger.post_hold(s, second.id))


async def test_expired_holds_are_voided(stack: Stack, clock: Any) -> None:
    clearing, merchant, payee = await accounts(stack, *funded_pair())
    await move(stack, f"fund-{merchant}", clearing, merchant, 50)
    expires = clock.now()
    held = await run(stack, lambda s: ledger.hold(
        s, key=f"h-{merchant}", legs=[debit(merchant, 50), credit(payee, 50)],
        expires_at=expires))  # fmt: skip
    clock.advance(1)
    await run_worker(stack)  # the worker's ledger_holds job
    async with stack.runtime.db.read() as session:
        tx = await session.get(LedgerTransaction, held.id)
    assert tx is not None and tx.status == TxStatus.voided
    assert await state(stack, merchant) == [(50, 0, 0)]


async def test_reversal_mirrors_once_and_respects_floors(stack: Stack) -> None:
    clearing, merchant, payee = await accounts(stack, *funded_pair())
    paid = await move(stack, f"p-{merchant}", clearing, merchant, 500)
    spent = await move(stack, f"s-{merchant}", merchant, payee, 400)
    with pytest.raises(Conflict):  # the merchant no longer has the 500 to give back
        await run(stack, lambda s: ledger.reverse(s, key=f"r-{paid.id}", tx_id=paid.id))
    back = await run(stack, lambda s: ledger.reverse(s, key=f"r-{spent.id}", tx_id=spent.id))
    assert back.reverses_id == spent.id
    again = await run(stack, lambda s: ledger.reverse(s, key=f"r-{spent.id}", tx_id=spent.id))
    assert again.id == back.id
    with pytest.raises(Conflict):
        await run(stack, lambda s: ledger.reverse(s, key=f"r2-{spent.id}", tx_id=spent.id))
    assert await state(stack, merchant, payee) == [(500, 0, 0), (0, 0, 0)]


async def test_balance_as_of_a_past_time(stack: Stack, clock: Any) -> None:
    clearing, merchant, _ = await accounts(stack, *funded_pair())
    for i in range(3):
        await move(stack, f"t{i}-{merchant}", clearing, merchant, 100)
        clock.advance(3600)
    mid = clock.now() - dt.timedelta(seconds=5400)
    async with stack.runtime.db.read() as session:
        assert await ledger.balance_as_of(session, merchant, mid) == 200
        assert await ledger.balance_as_of(session, merchant, clock.now()) == 300
        assert await ledger.balance_as_of(session, clearing, clock.now()) == 300


async def test_concurrent_spending_never_overdraws(stack: Stack) -> None:
    clearing, merchant, payee = await accounts(stack, *funded_pair())
    await move(stack, f"fund-{merchant}", clearing, merchant, 50 * 7)

    async def spend(i: int) -> bool:
        try:
            await move(stack, f"spend-{merchant}-{i}", merchant, payee, 7)
        except Conflict:
            return False
        return True

    outcomes = await asyncio.gather(*(spend(i) for i in range(200)))
    assert sum(outcomes) == 50
    assert await state(stack, merchant, payee) == [(0, 0, 0), (350, 0, 0)]


# ------------------------------------------------------------------ property test
OPS = st.lists(
    st.tuples(
        st.sampled_from(["transfer", "hold", "post", "void", "reverse", "replay"]),
        st.integers(0, 3), st.integers(0, 3), st.integers(1, 400), st.integers(0, 20),
    ),
    min_size=1, max_size=25,
)  # fmt: skip


async def _snapshot(stack: Stack, ids: list[str]) -> dict[str, tuple[int, int, int]]:
    async with stack.runtime.db.read() as session:
        rows = (await session.scalars(
            sa.select(LedgerAccount).where(LedgerAccount.id.in_(ids))
        )).all()  # fmt: skip
        return {a.id: (a.balance, a.pending_debits, a.pending_credits) for a in rows}


async def _check_invariants(stack: Stack, ids: list[str]) -> None:
    async with stack.runtime.db.read() as session:
        repo = LedgerRepository(session)
        for currency, (debits, credits) in (await repo.totals_by_currency()).items():
            assert debits == credits, currency
        open_out: dict[str, int] = {i: 0 for i in ids}
        pending = (await session.execute(
            sa.select(LedgerEntry, LedgerAccount)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
            .where(LedgerTransaction.status == TxStatus.pending, LedgerAccount.id.in_(ids))
        )).all()  # fmt: skip
        for entry, account in pending:
            if entry.side != account.normal:
                open_out[account.id] += entry.amount
        for account_id in ids:
            account = await repo.get_account(account_id)
            assert account is not None
            await session.refresh(account)
            debits, credits = await repo.posted_sums(account_id)
            derived = debits - credits if account.normal == Side.debit else credits - debits
            assert account.balance == derived
            assert account.pending_out == open_out[account_id]
            if not account.allow_negative:
                assert account.available >= 0


async def test_random_operation_sequences_keep_the_books(stack: Stack) -> None:
    loop = asyncio.get_running_loop()

    def call(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    quiet = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=quiet)
    @given(ops=OPS)
    def sequence(ops: list[tuple[str, int, int, int, int]]) -> None:
        ids = call(accounts(stack, ("source", Side.debit, True), ("a", Side.credit, False),
                            ("b", Side.credit, False), ("c", Side.credit, False)))  # fmt: skip
        txs: list[str] = []
        keys: list[tuple[str, list[ledger.Leg], bool]] = []
        for n, (kind, src, dst, amount, pick) in enumerate(ops):
            before = call(_snapshot(stack, ids))
            legs = [debit(ids[src], amount), credit(ids[dst], amount)]
            key = f"{ids[0]}-{n}"

            async def op(session: Any, kind: str = kind, legs: list[Any] = legs,
                         key: str = key, pick: int = pick) -> Any:  # fmt: skip
                if kind in ("transfer", "hold"):
                    fn = ledger.transfer if kind == "transfer" else ledger.hold
                    tx = await fn(session, key=key, legs=legs)
                    txs.append(tx.id)
                    keys.append((key, legs, kind == "hold"))
                elif kind in ("post", "void") and txs:
                    fn = ledger.post_hold if kind == "post" else ledger.void_hold
                    await fn(session, txs[pick % len(txs)])
                elif kind == "reverse" and txs:
                    tx_id = txs[pick % len(txs)]
                    await ledger.reverse(session, key=f"rev-{tx_id}", tx_id=tx_id)
                elif kind == "replay" and keys:
                    old_key, old_legs, was_hold = keys[pick % len(keys)]
                    fn = ledger.hold if was_hold else ledger.transfer
                    await fn(session, key=old_key, legs=old_legs)

            try:
                call(run(stack, op))
            except PaymuxError:
                assert call(_snapshot(stack, ids)) == before  # refused: nothing changed
            if kind == "replay":
                assert call(_snapshot(stack, ids)) == before  # a replay applies nothing
            call(_check_invariants(stack, ids))

    await asyncio.to_thread(sequence)

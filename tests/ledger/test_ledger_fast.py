"""The fast path of posting on PostgreSQL (a blind plan, checked and written in one statement):
it is taken, it is one statement, and whatever it takes wrongly — an account's kind, a floor, a
key recorded while it waited for a row lock — it writes nothing and the exact path decides."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from paymux.kit.errors import Conflict
from paymux.ledger import posting
from paymux.ledger import service as ledger
from paymux.ledger.models import LedgerEntry, LedgerTransaction, Side
from paymux.ledger.service import Transfer, credit, debit
from tests.conftest import Stack
from tests.ledger.test_ledger import _check_invariants, accounts, funded_pair, move, run, state


@pytest.fixture
def postgres(stack: Stack) -> None:
    if stack.runtime.db.is_sqlite:
        pytest.skip("the checked one-statement write is PostgreSQL's")


def pay(key: str, src: str, dst: str, amount: int) -> Transfer:
    return Transfer(key, [debit(src, amount), credit(dst, amount)])


@pytest.fixture
def statements(stack: Stack) -> Iterator[list[str]]:
    """The SQL statements sent (BEGIN and COMMIT are not among them)."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    engine = stack.runtime.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    yield sent
    event.remove(engine, "before_cursor_execute", record)


async def orphans(stack: Stack) -> int:
    """Transactions without entries (there must never be any)."""
    async with stack.runtime.db.read() as session:
        return await session.scalar(  # type: ignore[no-any-return]
            sa.select(sa.func.count()).select_from(LedgerTransaction).where(
                ~sa.exists().where(LedgerEntry.transaction_id == LedgerTransaction.id)
            )
        )  # fmt: skip


async def test_a_posting_over_known_accounts_is_one_statement(
    stack: Stack, postgres: None, statements: list[str]
) -> None:
    clearing, merchant, payee = await accounts(stack, *funded_pair())
    await move(stack, f"fund-{merchant}", clearing, merchant, 100)  # reads the accounts' kinds
    await move(stack, f"fund-{payee}", clearing, payee, 10)
    statements.clear()
    posted = await run(stack, lambda s: ledger.transfer_many(s, [
        pay(f"fast-{merchant}-{n}", merchant, payee, 10) for n in range(10)
    ]))  # fmt: skip
    assert len(statements) == 1 and not any(p.replayed for p in posted)
    statements.clear()
    await move(stack, f"fast-{merchant}-single", payee, merchant, 5)
    assert len(statements) == 1
    assert await state(stack, merchant, payee) == [(5, 0, 0), (105, 0, 0)]
    await _check_invariants(stack, [clearing, merchant, payee])


async def test_a_floor_is_checked_against_the_locked_balance_to_the_unit(
    stack: Stack, postgres: None
) -> None:
    """In 50 then out 150 needs exactly 100 available before; a hold counts as spent."""
    clearing, merchant, payee = await accounts(stack, *funded_pair())
    await move(stack, f"fund-{merchant}", clearing, merchant, 100)
    await move(stack, f"hold-{merchant}", merchant, payee, 1, kind="hold")  # 99 available
    k = f"need-{merchant}"
    with pytest.raises(Conflict) as caught:
        await run(stack, lambda s: ledger.transfer_many(s, [
            pay(f"{k}-in", clearing, merchant, 50), pay(f"{k}-out", merchant, payee, 150)
        ]))  # fmt: skip
    assert (caught.value.code, caught.value.param) == ("insufficient_funds", "transfers[1]")
    await run(stack, lambda s: ledger.transfer_many(s, [
        pay(f"{k}-in", clearing, merchant, 51), pay(f"{k}-out", merchant, payee, 150)
    ]))  # fmt: skip
    assert await state(stack, merchant) == [(1, 1, 0)]
    await _check_invariants(stack, [clearing, merchant, payee])


async def test_a_wrong_account_kind_costs_only_the_fast_path(stack: Stack, postgres: None) -> None:
    clearing, merchant, payee = await accounts(stack, *funded_pair())
    await move(stack, f"fund-{merchant}", clearing, merchant, 100)
    posting._KINDS[merchant] = ("USD", Side.debit, True)  # as if it were another account
    try:
        with pytest.raises(Conflict):  # the real account has a floor
            await move(stack, f"kind-{merchant}-over", merchant, payee, 101)
        await run(stack, lambda s: ledger.transfer_many(s, [
            pay(f"kind-{merchant}", merchant, payee, 30)
        ]))  # fmt: skip
    finally:
        posting._KINDS.pop(merchant, None)
    assert await state(stack, merchant, payee) == [(70, 0, 0), (30, 0, 0)]
    async with stack.runtime.db.read() as session:
        currencies = set(await session.scalars(
            sa.select(LedgerEntry.currency).where(LedgerEntry.account_id == merchant)
        ))  # fmt: skip
    assert currencies == {"CNY"}
    await _check_invariants(stack, [clearing, merchant, payee])


async def _waiting_for_a_lock(stack: Stack, task: asyncio.Task[Any]) -> None:
    """Until ``task``'s statement waits for a row lock; if the task ends first, what it did
    is the failure (not a timeout that hides it)."""
    async with stack.runtime.db.engine.connect() as conn:
        for _ in range(3000):
            waiting = await conn.scalar(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            ))  # fmt: skip
            if waiting:
                return
            if task.done():
                raise AssertionError(f"the second batch ended without waiting: {task.result()!r}")
            await asyncio.sleep(0.01)
    raise AssertionError("the second batch never waited for the first one's row locks")


async def test_a_key_recorded_while_the_batch_waited_is_a_replay_and_leaves_no_trace(
    stack: Stack, postgres: None
) -> None:
    """The second batch's statement starts (its snapshot taken) while the first holds the row
    locks; the first commits a key the second also has: the second finds it only on insert,
    takes back the transactions it wrote, and the exact path replays that key."""
    clearing, merchant, payee = await accounts(stack, *funded_pair())
    await move(stack, f"fund-{merchant}", clearing, merchant, 100)
    k = f"waited-{merchant}"
    shared = pay(f"{k}-shared", merchant, payee, 10)
    async with stack.runtime.db.transaction() as session:
        first = await ledger.transfer_many(session, [shared])
        second = asyncio.create_task(run(stack, lambda s: ledger.transfer_many(
            s, [pay(f"{k}-before", merchant, payee, 1), shared,
                pay(f"{k}-after", merchant, payee, 2)]
        )))  # fmt: skip
        await _waiting_for_a_lock(stack, second)
    posted = await second
    assert [p.replayed for p in posted] == [False, True, False]
    assert posted[1].id == first[0].id
    assert await state(stack, merchant, payee) == [(87, 0, 0), (13, 0, 0)]
    assert await orphans(stack) == 0
    await _check_invariants(stack, [clearing, merchant, payee])

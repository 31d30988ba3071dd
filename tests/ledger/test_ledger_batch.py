"""``ledger.transfer_many`` on SQLite and PostgreSQL (both write paths there: ``unnest`` and the
portable one): a batch ends where the same transfers posted one by one end (a property test),
idempotency within and across batches and across the single path, a refused batch changes
nothing and names its offender, holds and past balances stay right, concurrent batches over
overlapping accounts neither deadlock nor lose updates; and the single path's own guarantees
that the set-based rewrite must keep (ORM objects in step, a concurrent twin, pooled
connections the server closed)."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paymux.kit.db import create_engine
from paymux.kit.errors import Conflict, IdempotencyError, InvalidRequest, NotFound, PaymuxError
from paymux.ledger import service as ledger
from paymux.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction, Side
from paymux.ledger.repository import LedgerRepository
from paymux.ledger.service import Transfer, credit, debit
from tests.conftest import Stack
from tests.ledger.test_ledger import _check_invariants, accounts, funded_pair, move, run, state


@pytest.fixture(params=["unnest", "portable"])
def write_path(request: pytest.FixtureRequest, stack: Stack) -> Iterator[str]:
    """Both PostgreSQL write paths; SQLite has only the portable one."""
    if request.param == "unnest" and stack.runtime.db.is_sqlite:
        pytest.skip("unnest is PostgreSQL's")
    previous = LedgerRepository.pg_unnest
    LedgerRepository.pg_unnest = request.param == "unnest"
    yield request.param
    LedgerRepository.pg_unnest = previous


def pay(key: str, src: str, dst: str, amount: int) -> Transfer:
    return Transfer(key, [debit(src, amount), credit(dst, amount)])


async def batch(stack: Stack, transfers: list[Transfer]) -> list[ledger.Posted]:
    return await run(stack, lambda s: ledger.transfer_many(s, transfers))  # type: ignore[no-any-return]


async def full_state(stack: Stack, ids: list[str]) -> dict[str, tuple[int, int, int, int]]:
    async with stack.runtime.db.read() as session:
        rows = await session.scalars(sa.select(LedgerAccount).where(LedgerAccount.id.in_(ids)))
        return {a.id: (a.balance, a.pending_debits, a.pending_credits, a.version) for a in rows}


async def entries_of_accounts(stack: Stack, ids: list[str]) -> dict[str, list[tuple[str, int]]]:
    async with stack.runtime.db.read() as session:
        rows = (await session.scalars(
            sa.select(LedgerEntry).where(LedgerEntry.account_id.in_(ids))
        )).all()  # fmt: skip
    out: dict[str, list[tuple[str, int]]] = {i: [] for i in ids}
    for e in rows:
        out[e.account_id].append((e.side, e.amount))
    return {i: sorted(v) for i, v in out.items()}


async def keys_recorded(stack: Stack, prefix: str) -> int:
    async with stack.runtime.db.read() as session:
        return await session.scalar(  # type: ignore[no-any-return]
            sa.select(sa.func.count()).select_from(LedgerTransaction)
            .where(LedgerTransaction.key.startswith(prefix))
        )  # fmt: skip


# ------------------------------------------------------------------ a batch = the same, singly
SPECS = (("source", Side.debit, True), ("a", Side.credit, False), ("b", Side.credit, False),
         ("c", Side.credit, False))  # fmt: skip
MOVES = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 300),
              st.sampled_from(["new", "new", "new", "replay", "reuse"]), st.integers(0, 30)),
    min_size=1, max_size=30,
)  # fmt: skip


def _transfers(ids: list[str], prefix: str, moves: list[Any]) -> list[Transfer]:
    """The moves as transfers over ``ids``; "replay" repeats an earlier transfer exactly,
    "reuse" sends an earlier key with other legs."""
    out: list[Transfer] = []
    for n, (src, dst, amount, kind, pick) in enumerate(moves):
        if kind == "replay" and out:
            earlier = out[pick % len(out)]
            out.append(Transfer(earlier.key, earlier.legs))
        elif kind == "reuse" and out:
            earlier = out[pick % len(out)]
            out.append(pay(earlier.key, ids[src], ids[dst], amount + 1000))
        else:
            out.append(pay(f"{prefix}-{n}", ids[src], ids[dst], amount))
    return out


def _relabel(state: dict[str, Any], ids: list[str]) -> list[Any]:
    return [state[i] for i in ids]


async def test_a_batch_ends_where_the_same_transfers_singly_end(
    stack: Stack, write_path: str
) -> None:
    loop = asyncio.get_running_loop()

    def call(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    quiet = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

    @settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=quiet)
    @given(moves=MOVES, funding=st.lists(st.integers(0, 400), min_size=3, max_size=3))
    def check(moves: list[Any], funding: list[int]) -> None:
        singly = call(accounts(stack, *SPECS))
        batched = call(accounts(stack, *SPECS))
        for ids in (singly, batched):
            for target, amount in zip(ids[1:], funding, strict=True):
                if amount:
                    call(move(stack, f"fund-{target}", ids[0], target, amount))
        # One by one, each in its own transaction; the first refusal is what the batch names.
        first_refusal: tuple[int, type] | None = None
        ids_single: list[str | None] = []
        for n, t in enumerate(_transfers(singly, singly[0], moves)):
            try:
                tx = call(run(stack, lambda s, t=t: ledger.transfer(s, key=t.key, legs=t.legs)))
                ids_single.append(tx.id)
            except PaymuxError as exc:
                ids_single.append(None)
                if first_refusal is None:
                    first_refusal = (n, type(exc))
        before = call(full_state(stack, batched))
        transfers = _transfers(batched, batched[0], moves)
        if first_refusal is not None:
            n, error = first_refusal
            try:
                call(batch(stack, transfers))
            except PaymuxError as exc:
                assert type(exc) is error and exc.param == f"transfers[{n}]", (exc, n)
                assert repr(transfers[n].key) in exc.message
            else:
                raise AssertionError(f"the batch took transfers[{n}], refused singly")
            assert call(full_state(stack, batched)) == before  # refused: nothing changed
            assert call(keys_recorded(stack, batched[0] + "-")) == 0
            return
        posted = call(batch(stack, transfers))
        assert [p.key for p in posted] == [t.key for t in transfers]
        seen: dict[str, str] = {}
        for p, single_id in zip(posted, ids_single, strict=True):
            assert single_id is not None
            assert p.replayed == (p.key in seen)
            assert p.id == seen.setdefault(p.key, p.id)
        assert _relabel(call(full_state(stack, batched)), batched) == _relabel(
            call(full_state(stack, singly)), singly
        )  # balances, reservations and versions
        assert list(call(entries_of_accounts(stack, batched)).values()) == list(
            call(entries_of_accounts(stack, singly)).values()
        )
        assert call(keys_recorded(stack, batched[0] + "-")) == len(set(seen))
        call(_check_invariants(stack, batched))

    await asyncio.to_thread(check)


# ------------------------------------------------------------------ idempotency
async def test_keys_apply_once_within_and_across_batches_and_paths(
    stack: Stack, write_path: str
) -> None:
    clearing, merchant, payee = await accounts(stack, *funded_pair())
    k = f"idem-{merchant}"
    posted = await batch(stack, [pay(f"{k}-1", clearing, merchant, 100),
                                 pay(f"{k}-2", clearing, merchant, 50),
                                 pay(f"{k}-1", clearing, merchant, 100)])  # fmt: skip
    assert [p.replayed for p in posted] == [False, False, True]
    assert posted[2].id == posted[0].id
    assert await state(stack, clearing, merchant) == [(150, 0, 0), (150, 0, 0)]

    # The same batch again (a retry): every transfer a replay, nothing applied twice.
    again = await batch(stack, [pay(f"{k}-1", clearing, merchant, 100),
                                pay(f"{k}-2", clearing, merchant, 50)])  # fmt: skip
    assert [(p.id, p.replayed) for p in again] == [(posted[0].id, True), (posted[1].id, True)]
    # Keys are shared with the single path, both ways.
    single = await run(stack, lambda s: ledger.transfer(
        s, key=f"{k}-2", legs=[credit(merchant, 50), debit(clearing, 50)]))  # fmt: skip
    assert single.id == posted[1].id
    tx = await move(stack, f"{k}-3", merchant, payee, 30)
    mixed = await batch(stack, [pay(f"{k}-3", merchant, payee, 30),
                                pay(f"{k}-4", merchant, payee, 20)])  # fmt: skip
    assert (mixed[0].id, mixed[0].replayed, mixed[1].replayed) == (tx.id, True, False)
    assert await state(stack, merchant, payee) == [(100, 0, 0), (50, 0, 0)]
    assert await keys_recorded(stack, k) == 4


async def test_a_reused_key_refuses_the_batch(stack: Stack, write_path: str) -> None:
    clearing, merchant, _ = await accounts(stack, *funded_pair())
    k = f"reuse-{merchant}"
    await batch(stack, [pay(f"{k}-old", clearing, merchant, 10)])
    cases = [
        ([pay(f"{k}-a", clearing, merchant, 1), pay(f"{k}-a", clearing, merchant, 2)], 1),
        ([pay(f"{k}-b", clearing, merchant, 1), pay(f"{k}-old", clearing, merchant, 11)], 1),
    ]
    for transfers, offender in cases:
        with pytest.raises(IdempotencyError) as caught:
            await batch(stack, transfers)
        assert caught.value.code == "ledger_key_reused"
        assert caught.value.param == f"transfers[{offender}]"
    assert await state(stack, clearing, merchant) == [(10, 0, 0), (10, 0, 0)]
    assert await keys_recorded(stack, k) == 1


# ------------------------------------------------------------------ refusals
async def test_a_refused_batch_changes_nothing_and_names_its_transfer(
    stack: Stack, write_path: str
) -> None:
    clearing, merchant, payee = await accounts(stack, *funded_pair())
    await move(stack, f"fund-{merchant}", clearing, merchant, 100)
    k = f"refused-{merchant}"
    ok = [pay(f"{k}-0", merchant, payee, 60), pay(f"{k}-1", clearing, payee, 5)]
    bad: list[tuple[Transfer, type, str]] = [
        (pay(f"{k}-2", merchant, payee, 41), Conflict, "insufficient_funds"),  # 40 left
        (Transfer(f"{k}-2", [debit(clearing, 5), credit(merchant, 4)]), InvalidRequest,
         "ledger_unbalanced"),
        (pay(f"{k}-2", clearing, "la_missing", 5), NotFound, "resource_missing"),
        (pay(f"{k}-2", clearing, merchant, 0), InvalidRequest, "ledger_legs_invalid"),
        (pay("", clearing, merchant, 5), InvalidRequest, "ledger_key_invalid"),
        (Transfer(f"{k}-2", [debit(clearing, 5)]), InvalidRequest, "ledger_legs_invalid"),
    ]  # fmt: skip
    for transfer, error, code in bad:
        before = await full_state(stack, [clearing, merchant, payee])
        with pytest.raises(error) as caught:
            await batch(stack, [*ok, transfer, pay(f"{k}-3", clearing, merchant, 1)])
        assert (caught.value.code, caught.value.param) == (code, "transfers[2]")
        assert "transfers[2]" in caught.value.message
        assert await full_state(stack, [clearing, merchant, payee]) == before
        assert await keys_recorded(stack, k) == 0
    # Floors count in order: the same money spent after it came in is fine, before it is not.
    await batch(
        stack, [pay(f"{k}-in", clearing, merchant, 50), pay(f"{k}-out", merchant, payee, 150)]
    )
    assert await state(stack, merchant, payee) == [(0, 0, 0), (150, 0, 0)]
    with pytest.raises(Conflict) as caught:
        await batch(stack, [pay(f"{k}-out2", merchant, payee, 10),
                            pay(f"{k}-in2", clearing, merchant, 50)])  # fmt: skip
    assert caught.value.param == "transfers[0]"
    assert await batch(stack, []) == []


async def test_batches_respect_holds_and_leave_them_alone(stack: Stack, write_path: str) -> None:
    clearing, merchant, payee = await accounts(stack, *funded_pair())
    await move(stack, f"fund-{merchant}", clearing, merchant, 100)
    held = await move(stack, f"hold-{merchant}", merchant, payee, 70, kind="hold")
    with pytest.raises(Conflict):  # 30 available
        await batch(stack, [pay(f"b1-{merchant}", merchant, payee, 31)])
    await batch(stack, [pay(f"b2-{merchant}", merchant, payee, 30)])
    assert await state(stack, merchant, payee) == [(70, 70, 0), (30, 0, 70)]
    await run(stack, lambda s: ledger.post_hold(s, held.id))
    assert await state(stack, merchant, payee) == [(0, 0, 0), (100, 0, 0)]


async def test_balances_as_of_a_past_time_see_batches(
    stack: Stack, write_path: str, clock: Any
) -> None:
    clearing, merchant, _ = await accounts(stack, *funded_pair())
    for i in range(3):
        await batch(stack, [pay(f"asof-{merchant}-{i}-{j}", clearing, merchant, 10)
                            for j in range(5)])  # fmt: skip
        clock.advance(3600)
    async with stack.runtime.db.read() as session:
        mid = clock.now() - dt.timedelta(hours=1.5)
        assert await ledger.balance_as_of(session, merchant, mid) == 100
        assert await ledger.balance_as_of(session, merchant, clock.now()) == 150


# ------------------------------------------------------------------ concurrency
async def test_concurrent_overlapping_batches_neither_deadlock_nor_lose_updates(
    stack: Stack, write_path: str
) -> None:
    specs = [("clearing", Side.debit, True)] + [(f"m{i}", Side.credit, False) for i in range(12)]
    ids = await accounts(stack, *specs)
    clearing, merchants = ids[0], ids[1:]
    await batch(stack, [pay(f"fund-{m}", clearing, m, 1000) for m in merchants])
    tag = f"conc-{clearing}"

    async def worker(w: int) -> int:
        rng = random.Random(w)
        done = 0
        for b in range(6):
            transfers = [pay(f"{tag}-{w}-{b}-{n}", *rng.sample(merchants, 2), rng.randint(1, 9))
                         for n in range(25)]  # fmt: skip
            posted = await batch(stack, transfers)
            done += sum(not p.replayed for p in posted)
        return done

    made = await asyncio.gather(*(worker(w) for w in range(8)))
    assert sum(made) == 8 * 6 * 25
    assert await keys_recorded(stack, tag) == 8 * 6 * 25
    balances = await state(stack, *merchants)
    assert sum(b for b, _, _ in balances) == 12 * 1000  # money only moved between them
    await _check_invariants(stack, ids)  # kept balances equal their entries


async def test_the_same_batch_twice_at_once_applies_once(stack: Stack, write_path: str) -> None:
    clearing, merchant, payee = await accounts(stack, *funded_pair())
    transfers = [pay(f"twin-{merchant}-{n}", clearing, merchant if n % 2 else payee, 10)
                 for n in range(20)]  # fmt: skip
    first, second = await asyncio.gather(batch(stack, transfers), batch(stack, transfers))
    assert [p.id for p in first] == [p.id for p in second]
    assert sorted([any(p.replayed for p in first), any(p.replayed for p in second)]) == [
        False, True,
    ]  # fmt: skip
    assert await state(stack, merchant, payee) == [(100, 0, 0), (100, 0, 0)]


async def test_one_key_for_other_legs_in_two_concurrent_batches_is_recorded_once(
    stack: Stack, write_path: str
) -> None:
    """The two batches share no account, so no row lock orders them: one records the key, the
    other is refused whichever way the race goes (it saw the key, or its insert hit it)."""
    c1, m1, _ = await accounts(stack, *funded_pair())
    c2, m2, _ = await accounts(stack, *funded_pair())
    key = f"race-{m1}"
    outcomes = await asyncio.gather(
        batch(stack, [pay(key, c1, m1, 10), pay(f"{key}-a", c1, m1, 1)]),
        batch(stack, [pay(key, c2, m2, 20), pay(f"{key}-b", c2, m2, 2)]),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, PaymuxError)]
    assert len(refused) == 1, outcomes
    assert refused[0].code in {"ledger_key_reused", "ledger_key_conflict"}
    assert await keys_recorded(stack, key) == 2
    assert sorted(await state(stack, m1, m2)) in ([(0, 0, 0), (11, 0, 0)], [(0, 0, 0), (22, 0, 0)])


async def test_a_single_transfer_and_its_concurrent_twin_record_one_transaction(
    stack: Stack, write_path: str
) -> None:
    clearing, merchant, _ = await accounts(stack, *funded_pair())
    key = f"twin-{merchant}"
    txs = await asyncio.gather(*(move(stack, key, clearing, merchant, 10) for _ in range(5)))
    assert len({tx.id for tx in txs}) == 1
    assert await state(stack, merchant) == [(10, 0, 0)]


# ------------------------------------------------------------------ the single path's session
async def test_posting_keeps_the_sessions_objects_in_step(stack: Stack, write_path: str) -> None:
    clearing, merchant, payee = await accounts(stack, *funded_pair())
    await move(stack, f"fund-{merchant}", clearing, merchant, 100)
    async with stack.runtime.db.transaction() as session:
        account = await ledger.get_account(session, merchant)
        held = await ledger.hold(session, key=f"h-{merchant}",
                                 legs=[debit(merchant, 100), credit(payee, 100)])  # fmt: skip
        assert (account.balance, account.pending_debits, account.available) == (100, 100, 0)
        # Voided through the ORM and not flushed yet: posting must see it, or it would refuse.
        await ledger.void_hold(session, held.id)
        tx = await ledger.transfer(session, key=f"t-{merchant}",
                                   legs=[debit(merchant, 100), credit(payee, 100)])  # fmt: skip
        assert (account.balance, account.pending_debits) == (0, 0)
        assert await ledger.get_transaction(session, tx.id) is tx
        await ledger.transfer_many(session, [pay(f"t2-{merchant}", payee, merchant, 40)])
        assert account.balance == 40
    assert await state(stack, merchant, payee) == [(40, 0, 0), (60, 0, 0)]


async def test_pooled_connections_the_server_closed_are_replaced(stack: Stack) -> None:
    """What ``pool_pre_ping`` did, without its round trips (kit/db.py)."""
    url = stack.runtime.settings.database_url
    if not url.startswith("postgresql"):
        pytest.skip("PostgreSQL connections")
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            pid = await conn.scalar(sa.text("SELECT pg_backend_pid()"))
        async with stack.runtime.db.engine.connect() as admin:
            assert await admin.scalar(sa.text(f"SELECT pg_terminate_backend({pid})"))
        for _ in range(50):  # until the pooled connection has read the server's goodbye
            await asyncio.sleep(0.02)
            async with stack.runtime.db.engine.connect() as admin:
                gone = not await admin.scalar(
                    sa.text(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}")
                )
            if gone:
                break
        await asyncio.sleep(0.05)
        async with engine.begin() as conn:
            assert await conn.scalar(sa.text("SELECT pg_backend_pid()")) != pid
    finally:
        await engine.dispose()

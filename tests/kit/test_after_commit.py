"""Work handed to kit.db.after_commit: counters that run once the caller's write committed."""

from __future__ import annotations

import pytest

from paymux.kit.db import Database, after_commit
from tests.conftest import Stack


async def test_runs_after_a_commit_never_after_a_rollback_and_a_failure_fails_nothing(
    stack: Stack,
) -> None:
    db = stack.runtime.db
    ran: list[str] = []

    async def broken(_: Database) -> None:
        raise RuntimeError("the counter's own trouble")

    async def counted(given: Database) -> None:
        assert given is db
        ran.append("counted")

    async with db.transaction() as session:
        after_commit(session, broken)
        after_commit(session, counted)
        assert ran == []  # not before the commit
    assert ran == ["counted"]  # the broken one neither failed the caller nor stopped the next
    with pytest.raises(ValueError):
        async with db.transaction() as session:
            after_commit(session, counted)
            raise ValueError("rolled back")
    assert ran == ["counted"]
    async with db.statement() as session:  # autocommit on PostgreSQL: after the statement
        after_commit(session, counted)
    assert ran == ["counted", "counted"]

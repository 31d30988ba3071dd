"""The hot path's per-process caches (kit.cache)."""

from __future__ import annotations

import pytest

from paymux.kit import cache
from paymux.kit.cache import TtlCache


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    clock = [100.0]
    monkeypatch.setattr(cache, "monotonic", lambda: clock[0])
    return clock


async def test_an_entry_lives_its_seconds_then_is_loaded_again(now: list[float]) -> None:
    c: TtlCache[str, int] = TtlCache("t", seconds=1.0)
    loads: list[str] = []

    async def load() -> int:
        loads.append("x")
        return len(loads)

    assert await c.get_or_load("k", load) == 1
    now[0] += 0.99
    assert await c.get_or_load("k", load) == 1
    now[0] += 0.02
    assert await c.get_or_load("k", load) == 2
    assert loads == ["x", "x"]


async def test_nothing_found_is_cached_too_and_forget_drops_it(now: list[float]) -> None:
    c: TtlCache[str, int | None] = TtlCache("t")
    calls = 0

    async def load() -> int | None:
        nonlocal calls
        calls += 1
        return None

    assert await c.get_or_load("k", load) is None
    assert await c.get_or_load("k", load) is None and calls == 1
    assert c.get("k") == (True, None)
    c.forget("k")
    assert c.get("k") == (False, None)
    assert await c.get_or_load("k", load) is None and calls == 2


def test_bounded_oldest_first(now: list[float]) -> None:
    c: TtlCache[int, int] = TtlCache("t", max_size=3)
    for i in range(5):
        c.put(i, i)
    assert len(c) == 3 and c.get(0) == (False, None) and c.get(4) == (True, 4)
    cache.forget_all()
    assert len(c) == 0

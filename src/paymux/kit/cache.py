"""Short per-process caches of what the hot path reads on every request and rarely changes
(API keys, a merchant's settlement terms, an app's webhook subscribers).

An entry lives ``seconds`` (one by default): a change made by another process is seen within
that time, and at once in the process that made it when it calls :meth:`TtlCache.forget`.
Values are immutable snapshots (frozen dataclasses, tuples), never ORM objects bound to a
session. Each cache is bounded; the oldest entries go first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

monotonic: Callable[[], float] = time.monotonic
"""Every cache's clock (tests replace it to step past an entry's lifetime)."""

_CACHES: list[TtlCache[object, object]] = []


class TtlCache(Generic[K, V]):
    def __init__(self, name: str, *, seconds: float = 1.0, max_size: int = 10_000) -> None:
        self.name = name
        self.seconds = seconds
        self.max_size = max_size
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        _CACHES.append(self)  # type: ignore[arg-type]

    def get(self, key: K) -> tuple[bool, V | None]:
        """(found, value): a value may itself be None ("nothing there", also worth caching)."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        if entry[0] <= monotonic():
            del self._entries[key]
            return False, None
        return True, entry[1]

    def put(self, key: K, value: V) -> V:
        self._entries[key] = (monotonic() + self.seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)
        return value

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        found, value = self.get(key)
        if found:
            return value  # type: ignore[return-value]
        return self.put(key, await load())

    def forget(self, key: K | None = None) -> None:
        """Drop one entry (this process changed it), or all of them."""
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


def forget_all() -> None:
    """Empty every cache (tests that change the database behind the services' back)."""
    for cache in _CACHES:
        cache.forget()

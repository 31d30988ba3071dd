"""In-process rate limits for public forms (a token bucket per key).

Kept in the memory of one process — no new service: with N API processes a client gets up to
N times the limit (docs/deploy.md says so). Time comes from an injectable monotonic clock so
tests move it instead of sleeping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from fastapi.responses import JSONResponse

from paymux.kit.errors import PaymuxError


class RateLimited(PaymuxError):
    status_code = 429
    type = "rate_limit_error"

    def __init__(self, retry_after: int) -> None:
        super().__init__("rate_limited", f"Too many requests; retry after {retry_after} seconds.")
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.to_dict(), status_code=429, headers={"Retry-After": str(self.retry_after)}
        )


class RateLimiter:
    """``capacity`` requests at once per key, refilled evenly over ``per_seconds``.

    At most ``max_keys`` keys are remembered (least recently seen go first), so a flood of
    distinct keys costs bounded memory; a forgotten key starts again with a full bucket.
    """

    def __init__(
        self,
        *,
        capacity: int,
        per_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.capacity = capacity
        self.rate = capacity / per_seconds
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, at)

    def hit(self, key: str) -> int | None:
        """Take one request for ``key``: None if allowed, else the seconds to wait."""
        now = self.clock()
        tokens, at = self._buckets.pop(key, (float(self.capacity), now))
        tokens = min(float(self.capacity), tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)  # re-inserted: the newest at the end
        while len(self._buckets) > self.max_keys:
            del self._buckets[next(iter(self._buckets))]
        if allowed:
            return None
        return max(1, math.ceil((1.0 - tokens) / self.rate))

    def reset(self) -> None:
        self._buckets.clear()

"""A client-side token bucket shared by every request of a process (kalshi_api.md §6).

Kalshi meters authenticated requests in tokens: a default request costs 10; the Basic tier's read bucket
refills at 200 tokens/s (≈ 20 requests/s) and holds 2 s of budget. A 429 carries no `Retry-After`, so
the cheapest way to stay under the limit is to never exceed it: every request waits for its tokens here.
Waiters are served first-come first-served (the lock is held while sleeping).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

DEFAULT_COST = 10
TOKENS_PER_READ = 10


class TokenBucket:
    """Tokens refilling continuously at `rate_per_s`, holding at most `capacity`."""

    def __init__(
        self,
        rate_per_s: float,
        capacity: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_s <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._tokens = capacity
        self._updated = clock()
        self._lock = asyncio.Lock()
        self.waited_s = 0.0

    @classmethod
    def for_reads(cls, reads_per_second: float, *, burst_s: float = 2.0) -> TokenBucket:
        """The read bucket of a tier given in default-cost requests per second (Basic: 20)."""
        rate = reads_per_second * TOKENS_PER_READ
        return cls(rate, rate * burst_s)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now

    async def acquire(self, tokens: float = DEFAULT_COST) -> float:
        """Wait until `tokens` are available and take them; return the seconds waited."""
        tokens = min(tokens, self.capacity)
        async with self._lock:
            self._refill()
            waited = 0.0
            if self._tokens < tokens:
                waited = (tokens - self._tokens) / self.rate_per_s
                await self._sleep(waited)
                self._refill()
            self._tokens -= tokens
            self.waited_s += waited
            return waited

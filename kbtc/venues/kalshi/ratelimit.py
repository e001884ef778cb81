"""The client-side token bucket, shared by every Kalshi REST client of a process per base URL (kalshi_api.md §6).

Kalshi meters authenticated requests in tokens: a default request costs 10; the Basic tier's read bucket
refills at 200 tokens/s (≈ 20 requests/s) and holds 2 s of budget. A 429 carries no `Retry-After`, so
the cheapest way to stay under the limit is to never exceed it: every request waits for its tokens here.

The budget belongs to the account, not to one client object, so `shared_read_bucket` hands every client of
the same base URL (and budget) the same bucket — `rest_client_from_settings` uses it, so the steps, commands and
flow tasks of one process draw from one budget. A bucket works from any event loop and thread (Prefect runs
tasks in worker threads, commands each start their own loop): taking tokens is arithmetic under a
`threading.Lock`, and a request that finds the bucket short reserves its tokens (the count goes negative) and
sleeps until the refill has paid for them, so waiters are served first-come first-served. A waiter cancelled
while sleeping keeps its reservation (the pacing errs on the slow side).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

DEFAULT_COST = 10
TOKENS_PER_READ = 10

_shared: dict[tuple[str, float, float], TokenBucket] = {}
_shared_lock = threading.Lock()


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
        self._lock = threading.Lock()
        self.waited_s = 0.0

    @classmethod
    def for_reads(cls, reads_per_second: float, *, burst_s: float = 2.0) -> TokenBucket:
        """The read bucket of a tier given in default-cost requests per second (Basic: 20)."""
        rate = reads_per_second * TOKENS_PER_READ
        return cls(rate, rate * burst_s)

    def _reserve(self, tokens: float) -> float:
        """Take `tokens` now (going into debt if short); return the seconds until the refill has covered them."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate_per_s)
            self._updated = now
            self._tokens -= tokens
            wait = -self._tokens / self.rate_per_s if self._tokens < 0 else 0.0
            self.waited_s += wait
            return wait

    async def acquire(self, tokens: float = DEFAULT_COST) -> float:
        """Wait until `tokens` are available and take them; return the seconds waited."""
        wait = self._reserve(min(tokens, self.capacity))
        if wait > 0:
            await self._sleep(wait)
        return wait


def shared_read_bucket(base_url: str, reads_per_second: float, *, burst_s: float = 2.0) -> TokenBucket:
    """The process's read bucket for `base_url` at this budget (created on first use)."""
    key = (base_url.rstrip("/"), reads_per_second, burst_s)
    with _shared_lock:
        bucket = _shared.get(key)
        if bucket is None:
            bucket = _shared[key] = TokenBucket.for_reads(reads_per_second, burst_s=burst_s)
        return bucket

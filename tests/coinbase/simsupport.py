"""Test helpers for running the Coinbase client against `kbtc.sim.coinbase.CoinbaseSim` over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from kbtc.sim.coinbase import CoinbaseSim
from kbtc.sim.faults import FaultPlan
from kbtc.venues.coinbase.ws import CoinbaseFeed, FeedConfig

_ORIGIN_S = int(time.time()) // 3600 * 3600 - 3 * 86400
_SPAN_S = 4 * 86400


class WalkSource:
    """A seeded random walk on a 1-second grid, defined from 3 days before the test session."""

    def __init__(self, seed: int = 11, start_usd: float = 90_000.0) -> None:
        self._prices = np.round(start_usd + np.cumsum(np.random.default_rng(seed).normal(0.0, 6.0, _SPAN_S)), 2)

    def _at(self, ts_ms: int) -> float:
        offset = ts_ms // 1000 - _ORIGIN_S
        if not 0 <= offset < _SPAN_S:
            raise ValueError("outside the simulated path")
        return float(self._prices[offset])

    def index_usd(self, ts_ms: int) -> float:
        return self._at(ts_ms) - 2.5

    def coinbase_usd(self, ts_ms: int) -> float:
        return self._at(ts_ms)


@contextlib.asynccontextmanager
async def running_sim(**knobs: Any) -> AsyncIterator[tuple[CoinbaseSim, FaultPlan]]:
    """A started simulator (fast ticks, no empty minutes unless asked) and its fault plan."""
    faults = FaultPlan()
    knobs = {"ticks_per_second": 20.0, "empty_minute_fraction": 0.0, **knobs}
    async with CoinbaseSim(WalkSource(), faults, **knobs) as sim:
        yield sim, faults


@contextlib.asynccontextmanager
async def running_feed(config: FeedConfig, sink: Any) -> AsyncIterator[CoinbaseFeed]:
    """The feed client running until the block ends."""
    feed = CoinbaseFeed(config, sink)
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    try:
        yield feed
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await task

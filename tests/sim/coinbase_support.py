"""Helpers for the Coinbase simulator tests: a small deterministic SpotSource and WebSocket client helpers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from kbtc.sim.coinbase import CoinbaseSim
from kbtc.sim.faults import FaultPlan

SAMPLES = Path(__file__).parent / "samples" / "coinbase"  # copied from shared/reference/samples/coinbase

# One origin for every source built in a test session, so two sources with one seed are the same path.
_ORIGIN_S = int(time.time()) // 3600 * 3600 - 3 * 86400
_SPAN_S = 4 * 86400


class WalkSource:
    """A seeded random walk on a 1-second grid (about $8 per step), defined from 3 days before the session."""

    def __init__(self, seed: int = 7, start_usd: float = 50_000.0) -> None:
        steps = np.random.default_rng(seed).normal(0.0, 8.0, _SPAN_S)
        self._prices = np.round(start_usd + np.cumsum(steps), 2)
        self.calls = 0

    def _at(self, ts_ms: int) -> float:
        offset = ts_ms // 1000 - _ORIGIN_S
        if not 0 <= offset < _SPAN_S:
            raise ValueError("outside the simulated path")
        self.calls += 1
        return float(self._prices[offset])

    def index_usd(self, ts_ms: int) -> float:
        return self._at(ts_ms) - 3.0

    def coinbase_usd(self, ts_ms: int) -> float:
        return self._at(ts_ms)


@asynccontextmanager
async def running_sim(**knobs: Any) -> AsyncIterator[tuple[CoinbaseSim, FaultPlan]]:
    """A started CoinbaseSim on a WalkSource, with its FaultPlan."""
    faults = FaultPlan()
    seed = knobs.pop("source_seed", 7)
    async with CoinbaseSim(WalkSource(seed), faults, **knobs) as sim:
        yield sim, faults


async def recv_json(ws: ClientConnection, timeout_s: float = 5.0) -> dict[str, Any]:
    """The next frame, parsed."""
    return json.loads(await asyncio.wait_for(ws.recv(), timeout_s))  # type: ignore[no-any-return]


async def subscribe(ws: ClientConnection, channel: str, product_ids: list[str] | None = None) -> dict[str, Any]:
    """Send one Advanced Trade subscribe and return its `subscriptions` ack."""
    message: dict[str, Any] = {"type": "subscribe", "channel": channel}
    if product_ids is not None:
        message["product_ids"] = product_ids
    await ws.send(json.dumps(message))
    while True:
        frame = await recv_json(ws)
        if frame.get("channel") == "subscriptions" or frame.get("type") == "error":
            return frame


async def frames_until(ws: ClientConnection, predicate: Any, limit: int = 200) -> list[dict[str, Any]]:
    """Frames received until (and including) the first one `predicate` accepts."""
    seen: list[dict[str, Any]] = []
    for _ in range(limit):
        frame = await recv_json(ws)
        seen.append(frame)
        if predicate(frame):
            return seen
    raise AssertionError(f"no matching frame in {limit}")


def open_ws(url: str) -> Any:
    """A plain websockets client connection (no keepalive pings, to observe stalls as they are)."""
    return connect(url, ping_interval=None, open_timeout=5)

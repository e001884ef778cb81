"""Helpers for the simulator tests: sample payloads and a fast simulator configuration."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from kbtc.sim.markets import CatalogConfig
from kbtc.sim.simulator import SimConfig

START_MS = 1_790_000_000_000  # 2026-09-21T12:53:20Z
SAMPLES = Path(__file__).parent / "samples" / "kalshi"


def sample(name: str) -> Any:
    """A documented Kalshi payload (copied from shared/reference/samples/kalshi)."""
    return json.loads((SAMPLES / name).read_text())


def fast_config(**overrides: Any) -> SimConfig:
    """2-minute windows, 10-minute events, one hour of history, no rate limit, Kalshi only (manual clock)."""
    catalog = CatalogConfig(window_minutes=2, event_minutes=10, history_s=3600, historical_cutoff_s=1200)
    base: dict[str, Any] = {"seed": 11, "catalog": catalog, "rate_limit_per_s": None, "start_ms": START_MS,
                            "coinbase": False}
    return SimConfig(**(base | overrides))


class WsClient:
    """A plain JSON client for the simulated Kalshi WebSocket."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._next_id = 0

    async def command(self, cmd: str, **params: Any) -> int:
        """Send a command with a fresh id and return the id."""
        self._next_id += 1
        body: dict[str, Any] = {"id": self._next_id, "cmd": cmd}
        if params:
            body["params"] = params
        await self.connection.send(json.dumps(body))
        return self._next_id

    async def recv(self, timeout: float = 3.0) -> Any:  # noqa: ASYNC109
        """The next frame, parsed."""
        return json.loads(await asyncio.wait_for(self.connection.recv(), timeout))

    async def until(self, predicate: Any, timeout: float = 3.0) -> list[Any]:  # noqa: ASYNC109
        """Every message up to and including the first that satisfies `predicate`."""
        out = []
        while True:
            message = await self.recv(timeout)
            out.append(message)
            if predicate(message):
                return out


def index_tick(second: int) -> Any:
    """Predicate: the cfbenchmarks_value message of `second` (published after the other channels)."""
    return lambda m: m.get("type") == "cfbenchmarks_value" and m["msg"]["received_at"] == second * 1000

"""Helpers for the simulator tests: sample payloads and a fast simulator configuration."""

from __future__ import annotations

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
    """2-minute windows, 10-minute events, one hour of history, no rate limit."""
    catalog = CatalogConfig(window_minutes=2, event_minutes=10, history_s=3600, historical_cutoff_s=1200)
    base: dict[str, Any] = {"seed": 11, "catalog": catalog, "rate_limit_per_s": None, "start_ms": START_MS}
    return SimConfig(**(base | overrides))

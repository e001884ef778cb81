"""Shared benchmark helpers: the `BENCH {...}` result line every benchmark prints."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any


def bench_line(name: str, value: float, unit: str, reference: float, *, higher_is_better: bool = True) -> str:
    """Format one result: ours (`value`) beside the reference measured in the same run.

    `ratio` is ours / reference for throughputs (higher is better) and reference / ours for latencies,
    so a ratio above 1 always means we beat the reference.
    """
    ratio = (value / reference if higher_is_better else reference / value) if value and reference else None
    payload: dict[str, Any] = {
        "name": name,
        "value": round(value, 3),
        "unit": unit,
        "reference": round(reference, 3),
        "ratio": None if ratio is None else round(ratio, 3),
    }
    return "BENCH " + json.dumps(payload)


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start

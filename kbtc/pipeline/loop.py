"""Bounded interval loops: "every 10 s for 5 minutes", the shape of the seed's polling loops under Prefect.

A loop run lasts a bounded time and iterates inside it (a 10-second Prefect schedule would create ~8,600 flow
runs a day; see shared/reference/prefect_notes.md). Ticks sit on a fixed grid from the start, so a slow
iteration delays the next one instead of shifting every later tick, and missed ticks are skipped, never
replayed in a burst. A transient failure (kbtc.transient) is logged and the loop goes on; after
`max_consecutive_failures` in a row, or on any other error, the loop stops by raising it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from kbtc.log import get_logger
from kbtc.transient import is_transient

T = TypeVar("T")
_log = get_logger("kbtc.pipeline.loop")


@dataclass(slots=True)
class LoopResult(Generic[T]):
    """What a bounded loop did: the results of the iterations that succeeded, and the failures it absorbed."""

    iterations: int = 0
    failures: int = 0
    skipped_ticks: int = 0
    results: list[T] = field(default_factory=list)


def run_bounded_loop(
    step: Callable[[int], T],
    *,
    interval_s: float,
    duration_s: float,
    name: str = "loop",
    max_consecutive_failures: int = 3,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
) -> LoopResult[T]:
    """Call `step(now_ts_ms)` every `interval_s` seconds until `duration_s` has passed (0 → exactly once).

    The first call is immediate. `stop` ends the loop early (e.g. on SIGTERM) after the current iteration.
    """
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    result: LoopResult[T] = LoopResult()
    stop = stop or threading.Event()
    start = clock()
    end = start + max(0.0, duration_s)
    tick = 0
    last_tick = int(max(0.0, duration_s) // interval_s)
    consecutive_failures = 0
    while True:
        now = clock()
        try:
            result.results.append(step(int(now * 1000)))
            consecutive_failures = 0
        except Exception as exc:
            if not is_transient(exc):
                raise
            result.failures += 1
            consecutive_failures += 1
            _log.warning("loop_iteration_failed", loop=name, error=f"{type(exc).__name__}: {exc}",
                         consecutive=consecutive_failures)
            if consecutive_failures >= max_consecutive_failures:
                raise
        result.iterations += 1
        # The next grid tick strictly after now; ticks that passed during a slow iteration are skipped.
        next_tick = int((clock() - start) // interval_s) + 1
        result.skipped_ticks += max(0, min(next_tick, last_tick + 1) - tick - 1)
        tick = next_tick
        due = start + tick * interval_s
        if due > end or stop.wait(max(0.0, due - clock())):
            return result

"""Run several collectors concurrently in one event loop, for a bounded time or until SIGINT/SIGTERM.

Each collector is an async function `(stop: asyncio.Event) -> result` that runs until `stop` is set and then
cleans up (flushes its batches, closes its tape, records its disconnect) before returning. If one collector
fails, the others are stopped the same way and the failure is raised after they finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kbtc.log import get_logger

Collector = Callable[[asyncio.Event], Awaitable[Any]]
_log = get_logger(__name__)


async def run_collectors(
    collectors: Mapping[str, Collector], seconds: float, *, handle_signals: bool = True
) -> dict[str, Any]:
    """Run every collector until `seconds` elapse (0 = no limit) or a signal arrives; return their results."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, _request_stop, stop, sig)
                installed.append(sig)
    timer = loop.call_later(seconds, stop.set) if seconds > 0 else None
    tasks = {name: asyncio.ensure_future(collector(stop)) for name, collector in collectors.items()}
    try:
        pending = set(tasks.values())
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(task.exception() is not None for task in done if not task.cancelled()):
                stop.set()  # one failed: let the others shut down cleanly
        results: dict[str, Any] = {}
        for name, task in tasks.items():
            results[name] = task.result()  # raises the first failure
        return results
    finally:
        if timer is not None:
            timer.cancel()
        for sig in installed:
            loop.remove_signal_handler(sig)


def _request_stop(stop: asyncio.Event, sig: signal.Signals) -> None:
    _log.info("collector_signal", signal=sig.name)
    stop.set()

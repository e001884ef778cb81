"""A wall-clock simulator served from a background thread, so `kbtc` subprocesses can run against it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kbtc.sim.markets import CatalogConfig
from kbtc.sim.simulator import SimConfig, Simulator

SERIES = "KXBTC15M,KXBTCD,KXBTC"


def fast_wall_config(**overrides: Any) -> SimConfig:
    """2-minute windows, 10-minute events, one hour of history, no REST rate limit, Coinbase on."""
    catalog = CatalogConfig(window_minutes=2, event_minutes=10, history_s=3600, historical_cutoff_s=1200)
    return SimConfig(**({"seed": 5, "catalog": catalog, "rate_limit_per_s": None, "tick_interval_s": 0.1}
                        | overrides))


def steady_wall_config(**overrides: Any) -> SimConfig:
    """`fast_wall_config` with 10-minute windows and events whose current ones opened seconds ago: the markets a
    test sees at its start are the ones it sees for its first ~10 minutes. (A multi-minute test on a slow host
    could straddle a 2-minute roll-over: a refresh then demoted every market, and a tick priced none.)"""
    period_s = 600
    catalog = CatalogConfig(window_minutes=10, event_minutes=10, history_s=3600, historical_cutoff_s=1200,
                            phase_s=(int(time.time()) - 5) % period_s)
    return fast_wall_config(**({"catalog": catalog} | overrides))


@contextlib.contextmanager
def simulator_thread(config: SimConfig | None = None) -> Iterator[Simulator]:
    """Start a simulator on loopback in its own thread and event loop; stop it on exit."""
    loop = asyncio.new_event_loop()
    sim = Simulator(config or fast_wall_config())
    ready = threading.Event()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    async def serve() -> None:
        try:
            async with sim:
                ready.set()
                await stop.wait()
        except BaseException as exc:  # surfaced to the test below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    ready.wait(30)
    if failure:
        raise failure[0]
    try:
        yield sim
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


def kbtc_env(sim: Simulator, workdir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a `kbtc` subprocess pointed at the simulator, with its files under `workdir`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KALSHI_", "COINBASE_", "DB_PATH", "DATABASE_URL", "LOG_", "COLLECTOR_"))}
    env |= sim.env() | {
        "DATA_DIR": str(workdir / "data"),
        "DB_PATH": str(workdir / "data" / "kalshi.sqlite"),
        "LOG_PATH": str(workdir / "logs" / "app.jsonl"),
        "KALSHI_SERIES": SERIES,
        "COINBASE_HEARTBEAT_TIMEOUT_SECONDS": "2",
        "COINBASE_STALE_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    return env | dict(extra or {})


def kbtc(args: Sequence[str], env: Mapping[str, str], cwd: Path, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run `kbtc ARGS` in a subprocess (this interpreter) and return it (never raises on exit status)."""
    return subprocess.run(
        [sys.executable, "-m", "kbtc.cli", *args], env=dict(env), cwd=cwd, capture_output=True, text=True,
        timeout=timeout_s, check=False,
    )


def wait_for(predicate: Any, timeout_s: float = 20.0, interval_s: float = 0.1) -> bool:
    """Poll `predicate()` until true or the timeout passes; return the last result."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())

"""The end-to-end demo: the real flows against the exchange simulator, on short accelerated markets.

`run_demo` starts the simulator on loopback (in a background thread with its own event loop), points every
client at it through the environment, migrates a fresh demo database, and runs the `demo` flow: a collector
session (Coinbase + Kalshi WebSockets) for the whole run beside `pipeline` cycles (refresh markets, poll,
edges, opportunities, settlements, ledger, scoring), then the performance report. Markets last
`window_minutes` and the first window opens `lead_seconds` after the start (`CatalogConfig.phase_s`), so the
first ones settle within the run and get scored.

With `live=True` the simulator is skipped and the configured venues are used (same flows, same steps).
Prefect needs no server: without `PREFECT_API_URL` the first flow run starts Prefect's temporary one.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.common import flow_settings
from flows.maintenance import migrate_database
from flows.pipeline import run_pipeline
from flows.report import model_performance_report
from flows.steps import collect_task
from kbtc.sim.market_maker import MakerConfig
from kbtc.sim.markets import CatalogConfig
from kbtc.sim.simulator import SimConfig, Simulator


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """Shape of a demo run."""

    minutes: float = 5.0
    window_minutes: int = 2  # every simulated series' market length
    cycle_seconds: float = 15.0  # one `pipeline` cycle this often
    lead_seconds: int = 20  # the first window opens this long after the start (collectors warm up)
    seed: int = 7
    maker_noise: float = 0.05  # the simulated market maker's fair-value noise (probability units)
    live: bool = False


@dataclass(slots=True)
class DemoResult:
    """What the demo produced and where it put it."""

    database_url: str
    log_path: Path
    tape_dir: Path
    reports_dir: Path
    cycles: list[dict[str, Any]] = field(default_factory=list)
    collectors: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def sim_config(config: DemoConfig, start_s: int) -> SimConfig:
    """Simulator settings: short windows whose first one opens `lead_seconds` from `start_s`."""
    period_s = config.window_minutes * 60
    catalog = CatalogConfig(
        window_minutes=config.window_minutes, event_minutes=config.window_minutes,
        # A short listing history keeps the catalog small (1-minute events list 60 events an hour otherwise).
        history_s=4 * period_s, historical_cutoff_s=2 * period_s, determination_delay_s=5,
        phase_s=(start_s + config.lead_seconds) % period_s,
    )
    # A noisier market maker than the default (5 ¢ of fair-value noise instead of 1 ¢) leaves mispricings
    # above the ledger's 3 ¢ + 1 ¢ threshold, so a short demo records TAKE decisions and shadow positions.
    return SimConfig(seed=config.seed, catalog=catalog, maker=MakerConfig(fair_noise=config.maker_noise))


class SimulatorThread:
    """The simulator on its own event loop in a daemon thread, so synchronous flows can run beside it."""

    def __init__(self, config: SimConfig) -> None:
        self.simulator = Simulator(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kbtc-simulator", daemon=True)

    def start(self) -> dict[str, str]:
        """Start serving; return the environment that points kbtc at the simulator."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.simulator.start(), self._loop).result(timeout=60)
        return self.simulator.env()

    def stop(self) -> None:
        """Stop the servers and the loop."""
        stopped: Future[None] = asyncio.run_coroutine_threadsafe(self.simulator.stop(), self._loop)
        stopped.result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block and restore the previous values afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# The timeout suits a direct call of up to ~45 minutes; `run_demo` sets one from `minutes`.
@flow(name="demo", flow_run_name="demo-{minutes}min", timeout_seconds=3600)
def demo_flow(minutes: float, cycle_seconds: float, warmup_seconds: float, window_minutes: float,
              accelerated: bool = True) -> dict[str, Any]:
    """Collect for `minutes` beside `pipeline` cycles every `cycle_seconds`, then settle, score and report.

    On accelerated markets (`window_minutes`-long hours) the ledger's near-expiry thresholds shrink in
    proportion, and a σ from the prior may trade (a short run never has the 15 minutes of spot history a
    ready estimate needs; the prior, 50 %, is the simulator's true volatility).
    """
    settings = flow_settings()
    ledger: dict[str, Any] = {}
    if accelerated:
        ledger = {"expiry_scale": window_minutes / 60.0,
                  "sigma_ready_statuses": ["ok", "insufficient_points", "insufficient_span"]}
    logger = get_run_logger()
    run_s = minutes * 60.0
    started = time.monotonic()
    collecting = collect_task.with_options(timeout_seconds=run_s + 300).submit(settings, run_s)
    time.sleep(min(warmup_seconds, run_s))  # the first spot ticks and quotes before the first edge tick
    cycles: list[dict[str, Any]] = []
    while time.monotonic() - started + cycle_seconds / 2 < run_s:
        cycle_start = time.monotonic()
        cycles.append(run_pipeline(settlements_since_seconds=run_s + 3600, **ledger))
        time.sleep(max(0.0, cycle_seconds - (time.monotonic() - cycle_start)))
    collectors = collecting.result()
    # After the collectors stopped: the last results, then a final scoring pass and the report.
    cycles.append(run_pipeline(poll=False, settlements_since_seconds=run_s + 3600, **ledger))
    report = model_performance_report(since_seconds=run_s + 3600, scope="all")
    logger.info("demo done: %d cycles, report %s", len(cycles), report["markdown_path"])
    return {"cycles": cycles, "collectors": collectors, "report": report}


def run_demo(config: DemoConfig, data_dir: Path) -> DemoResult:
    """Run the whole demo with its own database, log and tape under `data_dir`; return where they are."""
    data_dir.mkdir(parents=True, exist_ok=True)
    database_url = f"sqlite:///{(data_dir / 'kbtc-demo.sqlite').resolve()}"
    env = {"DATABASE_URL": database_url, "DATA_DIR": str(data_dir.resolve()),
           "LOG_PATH": str((data_dir / "logs" / "demo.jsonl").resolve())}
    simulator = None
    sim_env: dict[str, str] = {}
    try:
        with environment(env):
            # The first flow run starts Prefect's temporary server (seconds): do it before the simulator's
            # clock matters, so the first window opens `lead_seconds` after the collectors start.
            migrate_database()
            if not config.live:
                simulator = SimulatorThread(sim_config(config, int(time.time())))
                # The simulator's URLs, and the feed and series it serves (whatever .env says); no credentials
                # are needed (it accepts unsigned requests).
                sim_env = simulator.start() | {"KALSHI_SERIES": "KXBTC15M,KXBTCD,KXBTC", "KALSHI_MARKET_TICKERS": "",
                                               "COINBASE_SOURCE": "advanced"}
            with environment(sim_env):
                warmup = config.lead_seconds / 2 if simulator is not None else 10.0
                timed_demo = demo_flow.with_options(timeout_seconds=config.minutes * 60 + 900)
                outcome = timed_demo(config.minutes, config.cycle_seconds, warmup, config.window_minutes,
                                     accelerated=simulator is not None)
    finally:
        if simulator is not None:
            simulator.stop()
    return DemoResult(
        database_url=database_url, log_path=Path(env["LOG_PATH"]), tape_dir=data_dir.resolve() / "tape",
        reports_dir=data_dir.resolve() / "reports", cycles=outcome["cycles"], collectors=outcome["collectors"],
        report=outcome["report"],
    )

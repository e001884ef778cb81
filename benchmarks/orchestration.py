"""Orchestration overhead: one `pipeline` cycle as a Prefect flow vs the same steps called directly.

Against the simulator (loopback), after a 15-s collection so every step has data: `--cycles` cycles of
refresh markets → poll quotes → edge tick → opportunity tick → refresh settlements → settle ledger → score →
data health, (a) called directly (each task's `.fn`, no Prefect), (b) as the `pipeline` flow (task runs, state
tracking and three table artifacts against Prefect's temporary server, started beforehand and timed apart),
with Prefect's default settings (flow-run heartbeats on). Target (issue 8): overhead ≤ 1 s per cycle, small
next to the shortest cadence (10 s).

(c) The same cycle as a *sync* flow, the shape `pipeline` had before: Prefect 3.8.8's sync engine joins the
flow run's heartbeat thread on exit, and that thread sleeps in 1-s steps, so a sync flow's run time is
rounded up to the next whole second. `pipeline` is async (its steps in a worker thread) and does not pay it.
(Heartbeats detect crashed runs of deployments; the bounded loops, sync, pay the wait once per 30 ticks.)

Run: python -m benchmarks.orchestration [--cycles 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import bench_line, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kbtc-bench-orch-"))
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

    from prefect import flow

    from flows.common import flow_settings
    from flows.demo import DemoConfig, SimulatorThread, environment, sim_config
    from flows.maintenance import migrate_database
    from flows.pipeline import cycle_steps, ledger_params, run_pipeline
    from flows.report import score_snapshots_task, settle_ledger_task
    from flows.steps import (
        edge_tick_task,
        engine_for,
        now_ms,
        opportunity_tick_task,
        poll_quotes_task,
        refresh_markets_task,
        refresh_settlements_task,
    )
    from kbtc.pipeline.collect import run_collectors
    from kbtc.pipeline.health import data_health
    from kbtc.pipeline.sessions import stream_collectors

    env = {"DATABASE_URL": f"sqlite:///{work / 'bench.sqlite'}", "DATA_DIR": str(work),
           "LOG_PATH": str(work / "bench.jsonl")}
    with environment(env):
        startup_s = timed(migrate_database)  # the first flow run starts the temporary server
        simulator = SimulatorThread(sim_config(DemoConfig(window_minutes=2), int(time.time())))
        sim_env = simulator.start() | {"KALSHI_SERIES": "KXBTC15M,KXBTCD,KXBTC", "KALSHI_MARKET_TICKERS": ""}
        try:
            with environment(sim_env):
                settings = flow_settings()
                refresh_markets_task.fn(settings)
                from kbtc.db.engine import make_engine

                engine = make_engine(settings.sqlalchemy_url)
                asyncio.run(run_collectors(stream_collectors(settings, engine, coinbase=True, kalshi=True), 15.0,
                                           handle_signals=False))
                engine.dispose()
                params = ledger_params(min_ev=0.03, cost_buffer=0.01)

                def direct() -> None:
                    refresh_markets_task.fn(settings)
                    poll_quotes_task.fn(settings, 0.0, 1.0)
                    edge_tick_task.fn(settings, now_ms())
                    opportunity_tick_task.fn(settings, now_ms(), params)
                    refresh_settlements_task.fn(settings, 86_400.0)
                    settle_ledger_task.fn(settings.sqlalchemy_url)
                    score_snapshots_task.fn(settings.sqlalchemy_url, now_ms())
                    with engine_for(settings) as health_engine:  # the flow's data-health table
                        data_health(health_engine, now_ms(), 3_600.0)

                @flow(name="pipeline-sync")
                def sync_pipeline() -> None:
                    cycle_steps(refresh=True, poll=True, settlements_since_seconds=86_400.0, params=params,
                                health_window_seconds=3_600.0, emit_passes=True)

                def wall_and_cpu(fn: Callable[[], object]) -> tuple[float, float]:
                    cpu = time.process_time()
                    return timed(fn), time.process_time() - cpu

                direct_s, flow_s, sync_s = [], [], []
                for _ in range(args.cycles):  # interleaved, so all see the same data sizes
                    direct_s.append(wall_and_cpu(direct))
                    flow_s.append(wall_and_cpu(run_pipeline))
                    sync_s.append(wall_and_cpu(sync_pipeline))
        finally:
            simulator.stop()
    d, f, q = (statistics.median(wall for wall, _ in runs) for runs in (direct_s, flow_s, sync_s))
    d_cpu, f_cpu = (statistics.median(cpu for _, cpu in runs) for runs in (direct_s, flow_s))
    print(bench_line("orchestration.pipeline_cycle_s", f, "s", d, higher_is_better=False))
    print(bench_line("orchestration.overhead_per_cycle_s", f - d, "s", 1.0, higher_is_better=False))
    # CPU of this process (the steps, the simulator thread, Prefect's client side; the temporary server is
    # another process): moves far less with other load on a shared machine than wall-clock time.
    print(bench_line("orchestration.overhead_cpu_per_cycle_s", f_cpu - d_cpu, "s", 1.0, higher_is_better=False))
    print(bench_line("orchestration.overhead_per_cycle_sync_flow_s", q - d, "s", 1.0, higher_is_better=False))
    print(bench_line("orchestration.temporary_server_first_flow_s", startup_s, "s", d, higher_is_better=False))


if __name__ == "__main__":
    main()

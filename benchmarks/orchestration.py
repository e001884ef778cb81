"""Orchestration overhead: one `pipeline` cycle as a Prefect flow vs the same steps called directly.

Against the simulator (loopback), after a 15-s collection so every step has data: `--cycles` cycles of
refresh markets → poll quotes → edge tick → opportunity tick → refresh settlements → settle ledger → score →
data health, (a) called directly (each task's `.fn`, no Prefect), (b) as the `pipeline` flow (task runs, state
tracking and three table artifacts against Prefect's temporary server, started beforehand and timed apart).
Target (issue 8): overhead ≤ 1 s per cycle, small next to the shortest cadence (10 s).

Prefect 3.8.8 joins each flow run's heartbeat thread on exit, and that thread sleeps in 1-s steps: about 1 s
of every flow run is that wait. The flow is therefore also timed with heartbeats off
(`PREFECT_FLOWS_HEARTBEAT_FREQUENCY` unset), to show what the orchestration itself costs. (Heartbeats detect
crashed runs of deployments; the bounded loops pay the wait once per 30 ticks.)

Run: python -m benchmarks.orchestration [--cycles 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
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

    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.common import flow_settings
    from flows.demo import DemoConfig, SimulatorThread, environment, sim_config
    from flows.maintenance import migrate_database
    from flows.pipeline import ledger_params, pipeline
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

                direct_s, flow_s, quiet_s = [], [], []
                for _ in range(args.cycles):  # interleaved, so all see the same data sizes
                    direct_s.append(timed(direct))
                    flow_s.append(timed(pipeline))
                    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
                        quiet_s.append(timed(pipeline))
        finally:
            simulator.stop()
    d, f, q = statistics.median(direct_s), statistics.median(flow_s), statistics.median(quiet_s)
    print(bench_line("orchestration.pipeline_cycle_s", f, "s", d, higher_is_better=False))
    print(bench_line("orchestration.overhead_per_cycle_s", f - d, "s", 1.0, higher_is_better=False))
    print(bench_line("orchestration.overhead_per_cycle_no_heartbeat_s", q - d, "s", 1.0, higher_is_better=False))
    print(bench_line("orchestration.temporary_server_first_flow_s", startup_s, "s", d, higher_is_better=False))


if __name__ == "__main__":
    main()

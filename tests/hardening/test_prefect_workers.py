"""Scale-out with Prefect itself: two process workers of one work pool run the step flows against one PostgreSQL.

The layout of docs/SCALING.md on one machine: a Prefect server (its own home and state), the deployments of
prefect.yaml registered with `kbtc deploy` into the `kbtc` process pool, and two `prefect worker start --pool
kbtc --type process` subprocesses (at most 3 flow runs each, so neither can take every run) sharing
`DATABASE_URL=postgresql+psycopg://…`, with a Coinbase collector as the single writer of spot. One flow run is
created per step deployment (refresh-markets, poll-quotes, edge-loop, opportunity-loop, refresh-settlements,
score-and-settle) with short loops, on a catalog refreshed and quotes polled beforehand. Then:

- every flow run is COMPLETED, and both workers ran at least one (read back from the `prefect.worker.name`
  label the executing worker puts on each flow run);
- no natural key holds two rows;
- nothing lost: what each flow run reports (its persisted result) is in the database — every REST quote of
  poll-quotes, one edge tick per `asof_ts`, every decision of the opportunity loop, every score.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_server import client_for, prefect_env, prefect_server
from simthread import kbtc, kbtc_env, simulator_thread, steady_wall_config

from kbtc.db.engine import make_engine
from kbtc.db.store import read_frame

# Multi-process: one at a time with the other serial tests (tests/conftest.py), but beside the rest of the suite —
# it mostly waits on Prefect, and its deadlines (120 s for runs of ~10 s) leave room for a busy core.
pytestmark = pytest.mark.serial(alone=False)

REPO = Path(__file__).resolve().parents[2]
POOL = "kbtc"  # the work pool prefect.yaml's deployments name
WORKERS = ("worker-a", "worker-b")
RUNS_PER_WORKER = 3
# One flow run per step deployment, with loops short enough for a test.
STEP_RUNS: dict[str, dict[str, Any]] = {
    "refresh-markets": {},
    "poll-quotes": {"seconds": 10, "interval_seconds": 1},
    "edge-loop": {"duration_seconds": 10, "interval_seconds": 2},
    "opportunity-loop": {"duration_seconds": 10, "interval_seconds": 2, "emit_passes": True},
    "refresh-settlements": {"since_seconds": 3600},
    "score-and-settle": {},
}
RUNS_TIMEOUT_S = 120.0
NATURAL_KEYS = {
    "markets": "market_ticker",
    "quotes": "market_ticker, quote_ts, source",
    "spot_ticks": "product_id, source, venue_time_ns",
    "edges": "asof_ts, market_ticker",
    "edge_snapshots": "asof_ts, market_ticker",
    "opportunities": "snapshot_asof_ts, market_ticker, side",
    "positions": "market_ticker, side, status",
    "snapshot_scores": "asof_ts, market_ticker",
    "feed_events": "feed, connection_id, kind, event_ts, subject",
}


async def _create_pool(api_url: str) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate

    async with client_for(api_url) as client:
        await client.create_work_pool(WorkPoolCreate(name=POOL, type="process"), overwrite=True)


async def _worker_names(api_url: str) -> set[str]:
    async with client_for(api_url) as client:
        # Explicit paging: Prefect 3.8.8's client default (`limit: null`) is rejected by its server.
        return {w.name for w in await client.read_workers_for_work_pool(POOL, offset=0, limit=50)}


async def _create_runs(api_url: str) -> dict[str, Any]:
    async with client_for(api_url) as client:
        runs = {}
        for name, parameters in STEP_RUNS.items():
            deployment = await client.read_deployment_by_name(f"{name}/{name}")
            runs[name] = (await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)).id
        return runs


async def _wait_for_runs(api_url: str, ids: dict[str, Any]) -> dict[str, Any]:
    async with client_for(api_url) as client:
        deadline = time.monotonic() + RUNS_TIMEOUT_S
        while True:
            runs = {name: await client.read_flow_run(run_id) for name, run_id in ids.items()}
            if all(r.state is not None and r.state.is_final() for r in runs.values()) or time.monotonic() > deadline:
                return runs
            await asyncio.sleep(1)


async def _results(api_url: str, runs: dict[str, Any]) -> dict[str, Any]:
    """Each run's persisted result (what the flow returned)."""
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        return {name: await run.state.aresult() for name, run in runs.items()}


def _count(url: str, sql: str) -> int:
    engine = make_engine(url)
    try:
        return int(read_frame(engine, sql)["n"][0])
    finally:
        engine.dispose()


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    try:
        return proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


@pytest.mark.postgres
@pytest.mark.slow
def test_two_prefect_workers_run_the_step_flows_on_one_postgresql(postgres_url: str, tmp_path: Path) -> None:
    home = tmp_path / "prefect"
    home.mkdir()
    with simulator_thread(steady_wall_config()) as sim, prefect_server(home) as api_url:
        env = kbtc_env(sim, tmp_path, {"DATABASE_URL": postgres_url}) | prefect_env(home, api_url) | {
            "KBTC_HOME": str(REPO),
            # The pull steps run `kbtc db upgrade`: the flow-run processes need this venv's `kbtc` on PATH.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
            "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path / "results"),
        }
        assert kbtc(["db", "upgrade"], env, tmp_path).returncode == 0
        assert kbtc(["refresh-markets"], env, tmp_path).returncode == 0  # the catalog of an earlier refresh
        # Quotes of an earlier poll: the edge loop may be dispatched seconds before poll-quotes (or finish before
        # it starts, on a slow host), and with no quote it would price nothing and leave the ledger loop idle.
        assert kbtc(["poll-quotes", "--seconds", "1", "--interval", "0.5"], env, tmp_path).returncode == 0
        seeded_quotes = _count(postgres_url, "SELECT COUNT(*) AS n FROM quotes WHERE source = 'rest'")
        assert seeded_quotes > 0
        spot = subprocess.Popen([sys.executable, "-m", "kbtc.cli", "collect", "--coinbase", "--seconds", "0"],
                                env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        workers: dict[str, subprocess.Popen[str]] = {}
        try:
            asyncio.run(_create_pool(api_url))
            deployed = kbtc(["deploy", *(arg for name in STEP_RUNS for arg in ("--name", name))], env, tmp_path,
                            timeout_s=180)
            assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
            for name in WORKERS:
                workers[name] = subprocess.Popen(
                    [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process",
                     "--name", name, "--limit", str(RUNS_PER_WORKER)],
                    env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            deadline = time.monotonic() + 60
            while asyncio.run(_worker_names(api_url)) < set(WORKERS):
                assert time.monotonic() < deadline, "the workers never registered with the pool"
                assert all(w.poll() is None for w in workers.values()), "a worker exited"
                time.sleep(0.5)
            runs = asyncio.run(_wait_for_runs(api_url, asyncio.run(_create_runs(api_url))))
            completed = all(r.state is not None and r.state.is_completed() for r in runs.values())
            results = asyncio.run(_results(api_url, runs)) if completed else {}
        finally:
            outputs = {name: _stop(proc) for name, proc in workers.items()}
            spot_output = _stop(spot)
    worker_logs = "\n".join(f"--- {name}\n{out[-3000:]}" for name, out in outputs.items())
    states = {name: run.state.type.value if run.state else None for name, run in runs.items()}
    # The worker that ran a flow run labels it (Prefect's own record: only the worker whose PENDING proposal
    # won sets it; a worker that lost the race for a run logs "Aborted submission").
    dispatched = {name: run.labels.get("prefect.worker.name") for name, run in runs.items()}
    assert all(state == "COMPLETED" for state in states.values()), f"{states}\n{worker_logs}"
    assert set(dispatched.values()) == set(WORKERS), f"runs per worker: {dispatched}\n{worker_logs}"
    assert spot.returncode == 0, spot_output[-2000:]

    engine = make_engine(postgres_url)
    try:
        dupes = {t: read_frame(engine, f"SELECT {k}, COUNT(*) AS n FROM {t} GROUP BY {k} HAVING COUNT(*) > 1")
                 for t, k in NATURAL_KEYS.items()}
    finally:
        engine.dispose()
    rest_quotes = _count(postgres_url, "SELECT COUNT(*) AS n FROM quotes WHERE source = 'rest'")
    edge_ticks = _count(postgres_url, "SELECT COUNT(DISTINCT asof_ts) AS n FROM edges")
    decisions = _count(postgres_url, "SELECT COUNT(*) AS n FROM opportunities")
    scores = _count(postgres_url, "SELECT COUNT(*) AS n FROM snapshot_scores")
    markets = _count(postgres_url, "SELECT COUNT(*) AS n FROM markets")
    settled = _count(postgres_url, "SELECT COUNT(*) AS n FROM markets WHERE result IS NOT NULL")
    for table, frame in dupes.items():
        assert frame.height == 0, f"duplicates in {table}: {frame}"
    print(f"\nPrefect workers: {dispatched}\nresults: {results}")
    # Nothing lost: every row a flow run reports is stored (the only writers of these rows are these runs).
    poll, edges, ledger = results["poll-quotes"], results["edge-loop"], results["opportunity-loop"]
    assert poll["quotes"] > 0 and rest_quotes == seeded_quotes + poll["quotes"]
    assert edges["ticks"] > 0 and edge_ticks == edges["ticks"] - edges["failures"]
    assert ledger["evaluated"] > 0 and decisions == ledger["evaluated"]
    assert scores == results["score-and-settle"]["scoring"]["inserted"]
    assert markets >= results["refresh-markets"]["markets"] and settled >= results["refresh-settlements"]["with_result"]

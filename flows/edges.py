"""The edge flow: a bounded loop of edge ticks (every 10 s for just under its 5-minute schedule).

Each tick reads quotes, spot and books as of now, prices every relevant market, and writes `edges` and
`edge_snapshots`; the newest tick is published as the `kbtc-latest-edges` table artifact. Each tick is a task
run, so Prefect retries a transient failure (after 1 s, then 3 s) and times out a hung tick; a tick that still
fails transiently is logged and the loop goes on (three in a row end the run, which the next scheduled run
replaces). Any other error ends the run.
"""

from __future__ import annotations

import polars as pl
from prefect import flow, get_run_logger

from flows.artifacts import publish_edges
from flows.common import flow_settings
from flows.steps import edge_tick_task
from kbtc.pipeline.edges import LiveTickCache
from kbtc.pipeline.loop import run_bounded_loop


# Timeout: three of the deployment's 5-minute runs. A hung run fails instead of cancelling every later scheduled
# run (CANCEL_NEW); a longer loop needs `edge_loop.with_options(timeout_seconds=...)`.
@flow(name="edge-loop", flow_run_name="edges-{duration_seconds}s", timeout_seconds=900)
def edge_loop(duration_seconds: float = 290.0, interval_seconds: float = 10.0,
              contracts: float = 1.0) -> dict[str, int]:
    """Compute edges every `interval_seconds` for `duration_seconds` (0: one tick)."""
    settings = flow_settings()
    logger = get_run_logger()
    latest: list[pl.DataFrame] = []
    cache = LiveTickCache()  # as run-live-edges: later ticks read only what arrived since the previous one

    def tick(asof_ts: int) -> int:
        edges = edge_tick_task(settings, asof_ts, contracts, cache)
        latest[:] = [edges]
        priced = int(edges["skip_reason"].is_null().sum())
        logger.info("tick %d: %d markets, %d priced", asof_ts, edges.height, priced)
        return priced

    result = run_bounded_loop(tick, interval_s=interval_seconds, duration_s=duration_seconds, name="edge_loop")
    if latest:
        publish_edges(latest[0])
    return {"ticks": result.iterations, "failures": result.failures, "skipped": result.skipped_ticks,
            "priced": sum(result.results)}

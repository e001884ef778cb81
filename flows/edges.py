"""The edge flow: a bounded loop of edge ticks (every 10 s for just under its 5-minute schedule).

Each tick reads quotes, spot and books as of now, prices every relevant market, and writes `edges` and
`edge_snapshots`; the newest tick is published as the `kbtc-latest-edges` table artifact. A failed tick is
logged and the loop goes on (three in a row end the run, which the next scheduled run replaces).
"""

from __future__ import annotations

import polars as pl
from prefect import flow, get_run_logger

from flows.artifacts import publish_edges
from flows.common import flow_settings
from flows.steps import edge_tick_task
from kbtc.pipeline.loop import run_bounded_loop


@flow(name="edge-loop", flow_run_name="edges-{duration_seconds}s")
def edge_loop(duration_seconds: float = 290.0, interval_seconds: float = 10.0,
              contracts: float = 1.0) -> dict[str, int]:
    """Compute edges every `interval_seconds` for `duration_seconds` (0: one tick)."""
    settings = flow_settings()
    logger = get_run_logger()
    latest: list[pl.DataFrame] = []

    def tick(asof_ts: int) -> int:
        # `.fn`: a loop of 30 ticks is one flow run, not 30 task runs (about 1 s of overhead each).
        edges = edge_tick_task.fn(settings, asof_ts, contracts)
        latest[:] = [edges]
        priced = int(edges["skip_reason"].is_null().sum())
        logger.info("tick %d: %d markets, %d priced", asof_ts, edges.height, priced)
        return priced

    result = run_bounded_loop(tick, interval_s=interval_seconds, duration_s=duration_seconds, name="edge_loop")
    if latest:
        publish_edges(latest[0])
    return {"ticks": result.iterations, "failures": result.failures, "skipped": result.skipped_ticks,
            "priced": sum(result.results)}

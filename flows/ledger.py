"""The opportunity-ledger flow: a bounded loop of ledger ticks (every 10 s for just under 5 minutes); the
newest evaluated batch's TAKE decisions are published as the `kbtc-take-opportunities` artifact.

A 10-second schedule would create thousands of flow runs a day, so one run iterates inside and exits; the
next scheduled run takes over (`concurrency_limit` 1, CANCEL_NEW), and the ledger's unique keys absorb any
overlap (`reference/prefect_notes.md`). The same loop runs by hand as `kbtc run-opportunity-loop`.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.artifacts import publish_takes
from flows.common import flow_settings
from kbtc.db.migrate import open_engine
from kbtc.pipeline.opportunities import OpportunityTick, run_opportunity_loop
from kbtc.scoring.ledger import LedgerParams


@flow(name="opportunity-loop")
def opportunity_loop(
    *,
    duration_seconds: float = 290.0,
    interval_seconds: float = 10.0,
    min_ev: float = 0.03,
    cost_buffer: float = 0.01,
    emit_passes: bool = False,
    both_sides: bool = False,
) -> dict[str, int]:
    """Record TAKE/PASS decisions for each new snapshot batch for `duration_seconds`; return the totals."""
    settings = flow_settings()
    logger = get_run_logger()
    params = LedgerParams(min_ev_dollars=min_ev, cost_buffer_dollars=cost_buffer, both_sides=both_sides)
    evaluated: list[OpportunityTick] = []

    def on_tick(tick: OpportunityTick) -> None:
        if tick.status == "ok":
            evaluated[:] = [tick]
        if tick.status != "no_new_snapshots":
            logger.info("%s: %d evaluated, %d TAKE, reasons %s", tick.status, tick.evaluated, tick.takes,
                        tick.reason_counts)

    engine = open_engine(settings.sqlalchemy_url)
    try:
        summary = run_opportunity_loop(engine, params, interval_s=interval_seconds, duration_s=duration_seconds,
                                       emit_passes=emit_passes, on_tick=on_tick)
    finally:
        engine.dispose()
    if evaluated:
        publish_takes(evaluated[0].decisions)
    return {"ticks": summary.ticks, "evaluated": summary.evaluated, "takes": summary.takes}

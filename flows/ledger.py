"""The opportunity-ledger flow: a bounded loop of ledger ticks (every 10 s for just under 5 minutes); the
newest evaluated batch's TAKE decisions are published as the `kbtc-take-opportunities` artifact.

A 10-second schedule would create thousands of flow runs a day, so one run iterates inside and exits; the
next scheduled run takes over (`concurrency_limit` 1, CANCEL_NEW), and the ledger's unique keys absorb any
overlap (`reference/prefect_notes.md`). Each tick is a task run (`opportunity-catch-up`: every fresh batch since
the previous tick, as `kbtc run-opportunity-loop` does), so Prefect retries a transient failure and times out a
hung tick; a tick that still fails transiently is logged and the loop goes on (three in a row end the run).
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.artifacts import publish_takes
from flows.common import flow_settings
from flows.steps import opportunity_catch_up_task
from kbtc.pipeline.loop import run_bounded_loop
from kbtc.pipeline.opportunities import OpportunityTick
from kbtc.scoring.ledger import LedgerParams


# Timeout: three of the deployment's 5-minute runs (as edge-loop).
@flow(name="opportunity-loop", flow_run_name="opportunities-{duration_seconds}s", timeout_seconds=900)
def opportunity_loop(
    *,
    duration_seconds: float = 290.0,
    interval_seconds: float = 10.0,
    min_ev: float = 0.03,
    cost_buffer: float = 0.01,
    emit_passes: bool = True,
    both_sides: bool = False,
) -> dict[str, int]:
    """Record TAKE/PASS decisions for each new snapshot batch for `duration_seconds`; return the totals.

    Unlike the CLI (the original's opt-in `--emit-passes`), the flow records PASS rows by default: every
    evaluation is in the ledger, with its reason codes (no survivorship)."""
    settings = flow_settings()
    logger = get_run_logger()
    params = LedgerParams(min_ev_dollars=min_ev, cost_buffer_dollars=cost_buffer, both_sides=both_sides)
    evaluated: list[OpportunityTick] = []

    def tick(now_ts: int) -> list[OpportunityTick]:
        after = evaluated[0].asof_ts if evaluated else None
        ticks = opportunity_catch_up_task(settings, now_ts, params, after, emit_passes)
        for batch in ticks:
            if batch.status == "ok":
                evaluated[:] = [batch]
            if batch.status != "no_new_snapshots":
                logger.info("%s: %d evaluated, %d TAKE, reasons %s", batch.status, batch.evaluated, batch.takes,
                            batch.reason_counts)
        return ticks

    result = run_bounded_loop(tick, interval_s=interval_seconds, duration_s=duration_seconds,
                              name="opportunity_loop")
    batches = [batch for ticks in result.results for batch in ticks]
    if evaluated:
        publish_takes(evaluated[0].decisions)
    return {"ticks": len(batches), "evaluated": sum(b.evaluated for b in batches),
            "takes": sum(b.takes for b in batches), "failures": result.failures}

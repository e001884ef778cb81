"""The `pipeline` flow: one full cycle of every periodic step, in dependency order.

refresh markets → poll quotes (one REST poll) → edge tick → opportunity tick → refresh settlements →
settle ledger → score snapshots, then the `kbtc-latest-edges`, `kbtc-take-opportunities` and
`kbtc-data-health` artifacts. The collectors run beside it (their own flow or daemon) and the report is
hourly (flows/report.py). Useful as a single deployment for a small setup and as the demo's heartbeat; the
per-step deployments give each step its own cadence.

The flow is `async` and runs its (blocking) steps in a worker thread: Prefect's sync engine joins the flow
run's heartbeat thread on exit, and that thread sleeps in whole seconds, so a sync flow's run time is rounded up
to the next second (up to 1 s per cycle, measured by benchmarks/orchestration.py). The async engine still sends
heartbeats but does not wait for that thread. Call it with `asyncio.run(pipeline(...))`, or `run_pipeline(...)`
from synchronous code (including a sync parent flow, where the cycle is a subflow run). A thread cannot be
interrupted: when the flow's timeout fires, the run is marked timed out and the step in progress ends at its
own task timeout.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from prefect import flow, get_run_logger
from prefect.context import SyncClientContext

from flows.artifacts import publish_edges, publish_health, publish_takes
from flows.common import flow_settings, run_name
from flows.report import score_snapshots_task, settle_ledger_task
from flows.steps import (
    data_health_task,
    edge_tick_task,
    now_ms,
    opportunity_tick_task,
    poll_quotes_task,
    refresh_markets_task,
    refresh_settlements_task,
)
from kbtc.scoring.ledger import LedgerParams


def ledger_params(*, min_ev: float, cost_buffer: float, expiry_scale: float = 1.0,
                  sigma_ready_statuses: list[str] | None = None) -> LedgerParams:
    """The ledger's rules with the thresholds the flow parameters change."""
    base = LedgerParams(min_ev_dollars=min_ev, cost_buffer_dollars=cost_buffer)
    return replace(
        base,
        min_tau_s_by_series={k: v * expiry_scale for k, v in base.min_tau_s_by_series.items()},
        default_min_tau_s=base.default_min_tau_s * expiry_scale,
        sigma_ready_statuses=tuple(sigma_ready_statuses or base.sigma_ready_statuses),
    )


@flow(name="pipeline", flow_run_name=run_name("pipeline"), timeout_seconds=900)
async def pipeline(
    *,
    refresh: bool = True,
    poll: bool = True,
    settlements_since_seconds: float = 86_400.0,
    min_ev: float = 0.03,
    cost_buffer: float = 0.01,
    expiry_scale: float = 1.0,
    sigma_ready_statuses: list[str] | None = None,
    health_window_seconds: float = 3_600.0,
    emit_passes: bool = True,
) -> dict[str, Any]:
    """Run one cycle of the pipeline; return each step's summary.

    The ledger records PASS rows too (`emit_passes`): every evaluation is in `opportunities`, so the report's
    scope `all` shows what the gates saved or cost.

    `expiry_scale` multiplies the ledger's near-expiry thresholds and `sigma_ready_statuses` widens which
    volatility statuses may trade: the demo's accelerated markets need both; production keeps the defaults.
    """
    # `to_thread` copies the flow run's context, so the steps run as this flow's task runs; they may call
    # `asyncio.run` themselves (the REST clients), which the event loop's own thread could not.
    return await asyncio.to_thread(
        _with_sync_client, refresh=refresh, poll=poll, settlements_since_seconds=settlements_since_seconds,
        params=ledger_params(min_ev=min_ev, cost_buffer=cost_buffer, expiry_scale=expiry_scale,
                             sigma_ready_statuses=sigma_ready_statuses),
        health_window_seconds=health_window_seconds, emit_passes=emit_passes)


def run_pipeline(**parameters: Any) -> Any:
    """Run the `pipeline` flow from synchronous code (a script, a test, a sync parent flow) and return its result.

    Keyword arguments are the flow's parameters, plus Prefect's `return_state=True`.
    """
    # The async engine reads the default result storage through a *sync* client: without a SyncClientContext
    # (a sync parent flow has one) it would build a new client, SSL context and all, twice per run.
    with SyncClientContext.get_or_create():
        return asyncio.run(pipeline(**parameters))


def _with_sync_client(**steps: Any) -> dict[str, Any]:
    # The async flow run holds only an async client: without a SyncClientContext each sync task run would build
    # its own client (SSL context, connection pool): 8 trivial task runs took 0.79 s of CPU that way, 0.34 s with it.
    with SyncClientContext.get_or_create():
        return cycle_steps(**steps)


def cycle_steps(*, refresh: bool, poll: bool, settlements_since_seconds: float, params: LedgerParams,
                health_window_seconds: float, emit_passes: bool) -> dict[str, Any]:
    """The cycle's steps, in dependency order, as task runs of the calling flow run; return the summary."""
    settings = flow_settings()
    logger = get_run_logger()
    summary: dict[str, Any] = {}
    if refresh:
        summary["catalog"] = refresh_markets_task(settings)
    if poll:
        summary["poll"] = poll_quotes_task(settings, 0.0, 1.0)
    edges = edge_tick_task(settings, now_ms())
    decisions = opportunity_tick_task(settings, now_ms(), params, emit_passes)
    summary["settlements"] = refresh_settlements_task(settings, settlements_since_seconds)
    summary["ledger"] = settle_ledger_task(settings.sqlalchemy_url)
    summary["scoring"] = score_snapshots_task(settings.sqlalchemy_url, now_ms())
    priced = int(edges["skip_reason"].is_null().sum()) if edges.height else 0
    takes = int((decisions["decision"] == "TAKE").sum()) if decisions.height else 0
    summary["edges"] = {"markets": edges.height, "priced": priced}
    summary["opportunities"] = {"evaluated": decisions.height, "takes": takes}
    health = data_health_task(settings, now_ms(), health_window_seconds)
    summary["artifacts"] = [publish_edges(edges), publish_takes(decisions), publish_health(health)]
    logger.info("cycle: %d markets priced of %d, %d TAKE, %d settled with result, %d snapshots scored",
                priced, edges.height, takes, summary["settlements"]["with_result"], summary["scoring"]["inserted"])
    return summary

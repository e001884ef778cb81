"""The `pipeline` flow: one full cycle of every periodic step, in dependency order.

refresh markets → poll quotes (one REST poll) → edge tick → opportunity tick → refresh settlements →
settle ledger → score snapshots, then the `kbtc-latest-edges`, `kbtc-take-opportunities` and
`kbtc-data-health` artifacts. The collectors run beside it (their own flow or daemon) and the report is
hourly (flows/report.py). Useful as a single deployment for a small setup and as the demo's heartbeat; the
per-step deployments give each step its own cadence.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prefect import flow, get_run_logger

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
def pipeline(
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
    settings = flow_settings()
    logger = get_run_logger()
    summary: dict[str, Any] = {}
    if refresh:
        summary["catalog"] = refresh_markets_task(settings)
    if poll:
        summary["poll"] = poll_quotes_task(settings, 0.0, 1.0)
    edges = edge_tick_task(settings, now_ms())
    decisions = opportunity_tick_task(settings, now_ms(), ledger_params(
        min_ev=min_ev, cost_buffer=cost_buffer, expiry_scale=expiry_scale, sigma_ready_statuses=sigma_ready_statuses),
        emit_passes)
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

"""Kalshi catalog, quote-polling and settlement flows (thin wrappers over kbtc.pipeline's Kalshi steps).

Cadences (DESIGN.md §5): refresh markets every 15 min, poll quotes every 5 s inside a bounded loop (one run
lasts just under its 5-minute schedule), refresh settlements every 5 min — and close the ledger right after, so a
shadow position is settled within minutes of its market's result.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.common import flow_settings, run_name
from flows.report import settle_ledger_task
from flows.steps import poll_quotes_task, refresh_markets_task, refresh_settlements_task


@flow(name="refresh-markets", flow_run_name=run_name("refresh-markets"), timeout_seconds=600)
def refresh_markets_flow() -> dict[str, Any]:
    """Series → events → markets (strikes, times, fees, status) for every configured series."""
    summary = refresh_markets_task(flow_settings())
    get_run_logger().info("catalog: %(events)d events, %(markets)d markets, %(demoted)d demoted", summary)
    return summary


# Timeout: three of the deployment's 5-minute runs (as edge-loop).
@flow(name="poll-quotes", flow_run_name="poll-quotes-{seconds}s", timeout_seconds=900)
def poll_quotes_flow(seconds: float = 290.0, interval_seconds: float = 5.0) -> dict[str, int]:
    """Poll top of book over REST every `interval_seconds` for `seconds` (the WebSocket's fallback)."""
    summary = poll_quotes_task(flow_settings(), seconds, interval_seconds)
    get_run_logger().info("%(polls)d polls of %(markets)d markets: %(quotes)d quotes, %(failures)d failures",
                          summary)
    return summary


@flow(name="refresh-settlements", flow_run_name=run_name("refresh-settlements"), timeout_seconds=900)
def refresh_settlements_flow(since_seconds: float = 86_400.0) -> dict[str, Any]:
    """Store results and expiration values of markets settled within `since_seconds`, then close the shadow
    positions of every market with a result (the ledger's settlement step, DESIGN.md §5)."""
    settings = flow_settings()
    summary = refresh_settlements_task(settings, since_seconds)
    ledger = settle_ledger_task(settings.sqlalchemy_url)
    get_run_logger().info("%(fetched)d settled markets fetched, %(with_result)d with a result, "
                          "%(conflicts)d conflicts", summary)
    get_run_logger().info("ledger: %(settled)d of %(open_before)d open positions settled", ledger)
    return {**summary, "ledger": ledger}

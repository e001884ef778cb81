"""One Prefect task per pipeline step: each wraps a whole `kbtc.pipeline` step (whole frames, never a row).

Every task retries transient failures only (jittered backoff, `flows.common.retry_if_transient`), has a
timeout, and is uncached (each one reads and writes the database): `flows.common.task_options`. The ticks of
the bounded loops retry sooner and fewer times (their next tick is due 10 s later). Tasks take the resolved
`Settings`, open their own engine and client, and return small summaries (dicts or frames) for the flow to
log and publish.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, TypeVar

import polars as pl
from prefect import task
from sqlalchemy import Engine

from flows.common import TICK_RETRY_DELAYS_S, task_options
from kbtc.config import Settings
from kbtc.db.migrate import open_engine
from kbtc.pipeline.edges import EdgeSettings, LiveTickCache, compute_edge_tick, edge_settings_from
from kbtc.pipeline.health import DataHealth, data_health
from kbtc.pipeline.opportunities import OpportunityTick, run_opportunity_catch_up, run_opportunity_tick
from kbtc.scoring.ledger import LedgerParams
from kbtc.venues.kalshi.rest import KalshiRestClient, rest_client_from_settings

T = TypeVar("T")


class CatalogRefreshError(RuntimeError):
    """Some series failed to refresh. `transient` (read by kbtc.transient) is true when every failure was
    transient: only then can a retry make the whole refresh succeed."""

    def __init__(self, failed: dict[str, str], transient: bool) -> None:
        super().__init__(f"refresh-markets failed for {failed}")
        self.failed = failed
        self.transient = transient


def now_ms() -> int:
    """Epoch milliseconds now."""
    return int(time.time() * 1000)


@contextmanager
def engine_for(settings: Settings) -> Iterator[Engine]:
    """An engine for the settings' database (refused when newer than this kbtc), disposed afterwards."""
    engine = open_engine(settings.sqlalchemy_url)
    try:
        yield engine
    finally:
        engine.dispose()


def run_with_client(settings: Settings, step: Callable[[Engine, KalshiRestClient], Awaitable[T]]) -> T:
    """Run an async Kalshi step with a REST client and an engine, from synchronous task code."""

    async def go(engine: Engine) -> T:
        async with rest_client_from_settings(settings) as client:
            return await step(engine, client)

    with engine_for(settings) as engine:
        return asyncio.run(go(engine))


def edge_settings(settings: Settings, contracts: float = 1.0) -> EdgeSettings:
    """The edge engine's settings for the configured series, spot product and EDGE_* switches (as `kbtc
    compute-edges`)."""
    return edge_settings_from(settings, contracts=contracts)


@task(name="refresh-markets", **task_options(300))
def refresh_markets_task(settings: Settings) -> dict[str, Any]:
    """Series → events → markets for every configured series (KALSHI_SERIES_TICKER / KALSHI_EVENT_TICKER narrow
    it, as for `kbtc refresh-markets`); raise `CatalogRefreshError` when a series failed."""
    from kbtc.pipeline.kalshi_catalog import refresh_markets

    summary = run_with_client(settings, lambda engine, client: refresh_markets(
        engine, client, list(settings.catalog_series), status=settings.kalshi_market_status,
        event_ticker=settings.kalshi_event_ticker))
    failures = [s for s in summary.series if s.error]
    if failures:
        raise CatalogRefreshError({s.series_ticker: str(s.error) for s in failures},
                                  transient=all(s.error_transient for s in failures))
    return {"events": sum(s.events for s in summary.series), "markets": sum(s.markets for s in summary.series),
            "demoted": sum(s.demoted for s in summary.series), "rejects": sum(s.rejects for s in summary.series)}


@task(name="poll-quotes", **task_options(840))
def poll_quotes_task(settings: Settings, seconds: float, interval_seconds: float) -> dict[str, int]:
    """Poll top of book over REST for the tracked active markets (at least once)."""
    from kbtc.pipeline.poll_quotes import poll_quotes

    summary = run_with_client(settings, lambda engine, client: poll_quotes(
        engine, client, list(settings.kalshi_series), seconds=seconds, interval_s=interval_seconds))
    return asdict(summary)


@task(name="refresh-settlements", **task_options(600))
def refresh_settlements_task(settings: Settings, since_seconds: float) -> dict[str, int]:
    """Results and expiration values of markets settled in the window (idempotent)."""
    from kbtc.pipeline.settlements import refresh_settlements

    summary = run_with_client(settings, lambda engine, client: refresh_settlements(
        engine, client, list(settings.kalshi_series), since_seconds=since_seconds))
    return asdict(summary)


@task(name="edge-tick", **task_options(120, retry_delays_s=TICK_RETRY_DELAYS_S))
def edge_tick_task(settings: Settings, asof_ts: int, contracts: float = 1.0,
                   cache: LiveTickCache | None = None) -> pl.DataFrame:
    """One edge tick at `asof_ts`: write edges and snapshots; return the evaluated markets. A loop passes one
    `cache` to all its ticks (markets, quotes and spot read incrementally, kbtc.pipeline.edges.LiveTickCache)."""
    with engine_for(settings) as engine:
        return compute_edge_tick(engine, asof_ts, edge_settings(settings, contracts), cache).edges


@task(name="opportunity-tick", **task_options(120, retry_delays_s=TICK_RETRY_DELAYS_S))
def opportunity_tick_task(settings: Settings, now_ts: int, params: LedgerParams,
                          emit_passes: bool = True) -> pl.DataFrame:
    """Decide TAKE/PASS on the newest snapshot batch (idempotent per batch); return the decisions."""
    with engine_for(settings) as engine:
        return run_opportunity_tick(engine, now_ts, params, emit_passes=emit_passes).decisions


@task(name="opportunity-catch-up", **task_options(120, retry_delays_s=TICK_RETRY_DELAYS_S))
def opportunity_catch_up_task(settings: Settings, now_ts: int, params: LedgerParams, after_asof_ts: int | None,
                              emit_passes: bool = False) -> list[OpportunityTick]:
    """One opportunity-loop tick: every fresh snapshot batch after `after_asof_ts`, oldest first."""
    with engine_for(settings) as engine:
        return run_opportunity_catch_up(engine, now_ts, params, after_asof_ts=after_asof_ts, emit_passes=emit_passes)


@task(name="data-health", **task_options(120))
def data_health_task(settings: Settings, now_ts: int, window_seconds: float) -> DataHealth:
    """Stream freshness, feed events and rejects over the trailing `window_seconds` (reads only)."""
    with engine_for(settings) as engine:
        return data_health(engine, now_ts, window_seconds)


@task(name="collect-streams", **task_options(840))
def collect_task(settings: Settings, seconds: float, *, coinbase: bool = True, kalshi: bool = True) -> dict[str, Any]:
    """One bounded collection session: the chosen streams concurrently for `seconds`, then flush and exit."""
    from kbtc.pipeline.collect import run_collectors
    from kbtc.pipeline.sessions import stream_collectors

    with engine_for(settings) as engine:
        collectors = stream_collectors(settings, engine, coinbase=coinbase, kalshi=kalshi)
        # No signal handlers: the task may run in a worker thread, and Prefect owns cancellation.
        results = asyncio.run(run_collectors(collectors, seconds, handle_signals=False))
    return {name: asdict(result) for name, result in results.items()}

"""One Prefect task per pipeline step: each wraps a whole `kbtc.pipeline` step (whole frames, never a row).

Every task retries transient failures only (jittered backoff, `flows.common.retry_if_transient`), has a
timeout, and is uncached (each one reads and writes the database). Tasks take the resolved `Settings`, open
their own engine and client, and return small summaries (dicts or frames) for the flow to log and publish.
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
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from flows.common import task_retry_options
from kbtc.config import Settings
from kbtc.db.engine import make_engine
from kbtc.pipeline.edges import EdgeSettings, compute_edge_tick, edge_settings_from
from kbtc.pipeline.opportunities import run_opportunity_tick
from kbtc.scoring.ledger import LedgerParams
from kbtc.venues.kalshi.rest import KalshiRestClient, rest_client_from_settings

T = TypeVar("T")
_STEP: dict[str, Any] = {**task_retry_options(), "cache_policy": NO_CACHE}


def now_ms() -> int:
    """Epoch milliseconds now."""
    return int(time.time() * 1000)


@contextmanager
def engine_for(settings: Settings) -> Iterator[Engine]:
    """An engine for the settings' database, disposed afterwards."""
    engine = make_engine(settings.sqlalchemy_url)
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


@task(name="refresh-markets", timeout_seconds=300, **_STEP)
def refresh_markets_task(settings: Settings) -> dict[str, Any]:
    """Series → events → markets for every configured series; raise when a series failed."""
    from kbtc.pipeline.kalshi_catalog import refresh_markets

    summary = run_with_client(settings, lambda engine, client: refresh_markets(
        engine, client, list(settings.kalshi_series), status=settings.kalshi_market_status))
    failed = {s.series_ticker: s.error for s in summary.series if s.error}
    if failed:
        raise RuntimeError(f"refresh-markets failed for {failed}")
    return {"events": sum(s.events for s in summary.series), "markets": sum(s.markets for s in summary.series),
            "demoted": sum(s.demoted for s in summary.series), "rejects": sum(s.rejects for s in summary.series)}


@task(name="poll-quotes", timeout_seconds=900, **_STEP)
def poll_quotes_task(settings: Settings, seconds: float, interval_seconds: float) -> dict[str, int]:
    """Poll top of book over REST for the tracked active markets (at least once)."""
    from kbtc.pipeline.poll_quotes import poll_quotes

    summary = run_with_client(settings, lambda engine, client: poll_quotes(
        engine, client, list(settings.kalshi_series), seconds=seconds, interval_s=interval_seconds))
    return asdict(summary)


@task(name="refresh-settlements", timeout_seconds=600, **_STEP)
def refresh_settlements_task(settings: Settings, since_seconds: float) -> dict[str, int]:
    """Results and expiration values of markets settled in the window (idempotent)."""
    from kbtc.pipeline.settlements import refresh_settlements

    summary = run_with_client(settings, lambda engine, client: refresh_settlements(
        engine, client, list(settings.kalshi_series), since_seconds=since_seconds))
    return asdict(summary)


@task(name="edge-tick", timeout_seconds=120, **_STEP)
def edge_tick_task(settings: Settings, asof_ts: int, contracts: float = 1.0) -> pl.DataFrame:
    """One edge tick at `asof_ts`: write edges and snapshots; return the evaluated markets."""
    with engine_for(settings) as engine:
        return compute_edge_tick(engine, asof_ts, edge_settings(settings, contracts)).edges


@task(name="opportunity-tick", timeout_seconds=120, **_STEP)
def opportunity_tick_task(settings: Settings, now_ts: int, params: LedgerParams) -> pl.DataFrame:
    """Decide TAKE/PASS on the newest snapshot batch (idempotent per batch); return the decisions."""
    with engine_for(settings) as engine:
        return run_opportunity_tick(engine, now_ts, params).decisions


@task(name="collect-streams", timeout_seconds=3600, **_STEP)
def collect_task(settings: Settings, seconds: float, *, coinbase: bool = True, kalshi: bool = True) -> dict[str, Any]:
    """One bounded collection session: the chosen streams concurrently for `seconds`, then flush and exit."""
    from kbtc.pipeline.collect import run_collectors
    from kbtc.pipeline.sessions import stream_collectors

    with engine_for(settings) as engine:
        collectors = stream_collectors(settings, engine, coinbase=coinbase, kalshi=kalshi)
        # No signal handlers: the task may run in a worker thread, and Prefect owns cancellation.
        results = asyncio.run(run_collectors(collectors, seconds, handle_signals=False))
    return {name: asdict(result) for name, result in results.items()}

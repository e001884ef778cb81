"""A replay of a simulator recording reproduces the live run: the collectors' tape, replayed into a fresh
database holding the same catalog, stores the same rows, and the multi-as-of edges equal the live ticks'."""

from __future__ import annotations

import asyncio
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import Engine

from kbtc.config import load_settings
from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import read_frame, upsert
from kbtc.edge import EdgeParams
from kbtc.pipeline.edge_history import edges_over, load_history
from kbtc.pipeline.edges import EdgeSettings, compute_edge_tick, snapshot_rows
from kbtc.pipeline.kalshi_catalog import refresh_markets
from kbtc.pipeline.kalshi_collector import collect_kalshi
from kbtc.pipeline.replay import ingest
from kbtc.pipeline.spot_collector import collect_spot
from kbtc.sim.markets import CatalogConfig
from kbtc.sim.simulator import SimConfig, Simulator
from kbtc.venues.backoff import Backoff
from kbtc.venues.kalshi.rest import KalshiRestClient
from kbtc.venues.kalshi.ws import StreamSettings

SERIES = ("KXBTCD",)
SETTINGS = EdgeSettings(params=EdgeParams(series=SERIES), book_max_age_s=30.0)
COMPARED = {  # table: columns that identify a row (ids and per-session bookkeeping left out)
    "quotes": "market_ticker, quote_ts, source",
    "spot_ticks": "tick_ts, venue_time_ns, source",
    "orderbook_snapshots": "market_ticker, book_ts, source",
    "market_lifecycle_events": "market_ticker, event_type, event_ts",
}


def _engine(path: Path) -> Engine:
    url = f"sqlite:///{path}"
    upgrade_database(url)
    return make_engine(url)


async def _record(sim: Simulator, engine: Engine, tmp_path: Path, seconds: float) -> None:
    settings = load_settings(KALSHI_WS_URL=sim.kalshi_ws_url, COINBASE_WS_URL=sim.coinbase.ws_url if sim.coinbase
                             else "", KALSHI_SERIES=",".join(SERIES), data_dir=tmp_path / "data")
    stop = asyncio.Event()

    async def spot() -> None:
        await collect_spot(settings, engine, stop, backoff=Backoff(0.02, 0.1))

    async def kalshi() -> None:
        await collect_kalshi(settings, engine, seconds, stream_settings=StreamSettings(backoff=Backoff(0.01, 0.05)),
                             tape_root=tmp_path / "data" / "tape", book_interval_s=0.0)
        stop.set()

    await asyncio.gather(spot(), kalshi())


def _rows(engine: Engine, table: str) -> pl.DataFrame:
    return read_frame(engine, f"SELECT * FROM {table} ORDER BY {COMPARED[table]}").drop("id", strict=False)


@pytest.mark.slow
async def test_replayed_simulator_recording_reproduces_the_live_snapshots(tmp_path: Path) -> None:
    live = _engine(tmp_path / "live.sqlite")
    catalog = CatalogConfig(window_minutes=15, event_minutes=60, ladder_strikes=6, series=SERIES)
    async with Simulator(SimConfig(seed=3, catalog=catalog, rate_limit_per_s=None, tick_interval_s=0.1)) as sim:
        client = KalshiRestClient(sim.kalshi_rest_url)
        try:
            await refresh_markets(live, client, SERIES)
        finally:
            await client.aclose()
        # The replay's database starts from the catalog the live run started from (the tape holds no REST).
        replayed = _engine(tmp_path / "replay.sqlite")
        upsert(replayed, "markets", read_frame(live, "SELECT * FROM markets"))
        await _record(sim, live, tmp_path, seconds=3.0)
    if read_frame(live, "SELECT COUNT(*) AS n FROM market_lifecycle_events")["n"][0]:
        pytest.skip("a market changed status during the recording: the live tick, run afterwards, would see it")

    summary = ingest(replayed, [tmp_path / "data" / "tape"], series=SERIES, book_interval_s=0.0)
    assert summary.quotes > 0 and summary.ticks > 0 and summary.books > 0
    for table in COMPARED:
        assert_frame_equal(_rows(replayed, table), _rows(live, table), check_dtypes=False)

    span = read_frame(live, "SELECT MIN(received_ts) AS a, MAX(received_ts) AS b FROM quotes").row(0)
    asofs = [span[0] + round((span[1] - span[0]) * f) for f in (0.3, 0.6, 0.95)]
    history = load_history(replayed, asofs[0], asofs[-1], SETTINGS)
    batched = pl.concat([batch.edges for batch in edges_over(history, asofs, SETTINGS)])
    params_id = SETTINGS.param_set().params_id
    priced = 0
    for asof in asofs:
        tick = compute_edge_tick(live, asof, SETTINGS).edges
        mine = batched.filter(pl.col("asof_ts") == asof)
        assert_frame_equal(snapshot_rows(mine, params_id), snapshot_rows(tick, params_id),
                           check_exact=False, rel_tol=1e-12, abs_tol=0)
        priced += tick.filter(pl.col("skip_reason").is_null()).height
    assert priced > 0
    live.dispose()
    replayed.dispose()

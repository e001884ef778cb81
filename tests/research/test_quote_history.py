"""The period's quote history read for an as-of grid: only the quotes that are the latest at a grid time, with
the same as-of join and the same edges as every quote; nothing after the period; other as-of times refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from replay_support import START_MS, seed_catalog, tickers
from sqlalchemy import Engine

from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.edge import EdgeParams, quotes_asof
from kbtc.pipeline.edge_history import asof_grid, edges_over, load_history
from kbtc.pipeline.edges import EdgeSettings
from kbtc.pipeline.kalshi_store import write_quotes
from kbtc.pipeline.spot_collector import write_ticks
from kbtc.venues.coinbase.messages import SpotTick
from kbtc.venues.kalshi.marketdata import QuoteRecord

SETTINGS = EdgeSettings(params=EdgeParams(series=("KXBTCD",), quote_max_age_s=30.0))
STEP_MS = 10_000
END_MS = START_MS + 300_000


def quote(ticker: str, ts: int, bid: float, *, source: str = "ws", received: int | None = None) -> QuoteRecord:
    return QuoteRecord(ticker, ts, ts + 20 if received is None else received, source, bid, bid + 2, 98 - bid,
                       100 - bid, 10.0, 12.0, None, None, None, None)


def history_quotes(seed: int) -> list[QuoteRecord]:
    """Dense quotes (every 0.4–2.5 s) on three markets, one market quoted only before its gap, ties across
    sources at bucket ends, quotes too old to count and quotes after the period."""
    rng = np.random.default_rng(seed)
    names = tickers()
    rows: list[QuoteRecord] = []
    for i, ticker in enumerate(names[:3]):
        ts = START_MS - 45_000 - 700 * i  # from before the oldest quote the first as-of time may use
        while ts <= END_MS + 40_000:  # and past the period's end: the future must not leak back
            rows.append(quote(ticker, ts, float(rng.integers(5, 90))))
            ts += int(rng.integers(400, 2_500))
    # A market that stops quoting for two minutes: its last quote ages out, then it comes back.
    rows += [quote(names[3], START_MS + s * 1000, 40.0 + s % 7) for s in range(0, 60, 2)]
    rows += [quote(names[3], START_MS + s * 1000, 41.0) for s in range(180, 240, 3)]
    # Ties at one (market, quote_ts) from two sources, at a grid time and just before one: the later received
    # wins, then the higher source name, wherever the tie falls.
    for ticker, ts in ((names[0], START_MS + 50_000), (names[1], START_MS + 119_999), (names[2], END_MS)):
        rows.append(quote(ticker, ts, 11.0, source="rest", received=ts + 500))
        rows.append(quote(ticker, ts, 12.0, source="ws", received=ts + 100))
    return rows


def spot_ticks() -> list[SpotTick]:
    """1 Hz spot over the volatility lookback before the period and through it."""
    return [
        SpotTick("BTC-USD", "coinbase_exchange_ws", ts, ts * 1_000_000, ts + 15, 100_000.0 + (ts // 1000) % 13,
                 None, None, None, None, None)
        for ts in range(START_MS - 4_000_000, END_MS + 1, 1000)
    ]


def database(tmp_path: Path, name: str, quotes: list[QuoteRecord], url: str | None = None) -> Engine:
    """A migrated database (a new SQLite file unless `url`) with the catalog, `quotes` and the spot ticks."""
    if url is None:
        url = f"sqlite:///{tmp_path / name}"
        upgrade_database(url)
    engine = make_engine(url)
    seed_catalog(engine)
    write_quotes(engine, quotes)
    write_ticks(engine, spot_ticks())
    return engine


def test_grid_reads_fewer_quotes_with_the_same_asof_join_and_edges(tmp_path: Path, migrated_url: str) -> None:
    engine = database(tmp_path, "", history_quotes(seed=1), migrated_url)  # SQLite and PostgreSQL
    asofs = asof_grid(START_MS, END_MS, STEP_MS / 1000)
    full = load_history(engine, asofs[0], asofs[-1], SETTINGS)
    grid = load_history(engine, asofs[0], asofs[-1], SETTINGS, asof_step_ms=STEP_MS)
    assert grid.quotes.height < full.quotes.height / 3  # the reduced read was taken
    assert grid.quotes["market_ticker"].unique().sort().equals(full.quotes["market_ticker"].unique().sort())
    assert int(grid.quotes["quote_ts"].max()) <= asofs[-1]
    joined = quotes_asof(grid.quotes, asofs).sort("asof_ts", "market_ticker")
    assert_frame_equal(joined, quotes_asof(full.quotes, asofs).sort("asof_ts", "market_ticker"), check_exact=True)
    # Each tie's winner is the live tick's: the later received (`rest`), at its grid time.
    tie = joined.filter((pl.col("asof_ts") == START_MS + 50_000) & (pl.col("market_ticker") == tickers()[0]))
    assert tie["yes_bid_cents"].to_list() == [11.0]  # the `rest` row's price
    edges = {
        name: pl.concat([batch.edges for batch in edges_over(inputs, asofs, SETTINGS, chunk_rows=40)])
        for name, inputs in (("full", full), ("grid", grid))
    }
    assert edges["grid"].height == len(asofs) * len(tickers())
    assert_frame_equal(edges["grid"], edges["full"], check_exact=True)
    # The market that stopped quoting: its quote ages out between, as with every quote read.
    quiet = edges["grid"].filter((pl.col("market_ticker") == tickers()[3]) & (pl.col("asof_ts") == START_MS + 120_000))
    assert quiet["skip_reason"].to_list() == ["missing_quote"]
    engine.dispose()


def test_grid_read_sees_nothing_after_the_period(tmp_path: Path) -> None:
    # The period ends between two grid times: a market's last lookup (the grid time after its last quote) must
    # not see the quotes after the end either.
    end = END_MS + 5_000
    later = [quote(row.market_ticker, row.quote_ts, 3.0) for row in history_quotes(seed=3) if row.quote_ts > end]
    reads = []
    for name, rows in (("same", history_quotes(seed=2)),
                       ("perturbed", [row for row in history_quotes(seed=2) if row.quote_ts <= end] + later)):
        engine = database(tmp_path, f"{name}.sqlite", rows)
        reads.append(load_history(engine, START_MS, end, SETTINGS, asof_step_ms=STEP_MS).quotes)
        engine.dispose()
    assert int(reads[0]["quote_ts"].max()) <= end
    assert_frame_equal(reads[0], reads[1], check_exact=True)


def test_a_grid_finer_than_the_quotes_reads_them_all(tmp_path: Path) -> None:
    engine = database(tmp_path, "db.sqlite", history_quotes(seed=4))
    asofs = asof_grid(START_MS, END_MS, 1.0)  # ~1 quote a second a market: as many lookups as quotes
    full = load_history(engine, asofs[0], asofs[-1], SETTINGS)
    fine = load_history(engine, asofs[0], asofs[-1], SETTINGS, asof_step_ms=1_000)
    assert_frame_equal(fine.quotes, full.quotes, check_exact=True)
    engine.dispose()


def test_inputs_read_for_a_grid_refuse_other_asof_times(tmp_path: Path) -> None:
    engine = database(tmp_path, "db.sqlite", history_quotes(seed=5))
    inputs = load_history(engine, START_MS, END_MS, SETTINGS, asof_step_ms=STEP_MS)
    assert [batch.edges.height for batch in edges_over(inputs, [START_MS, START_MS + 20_000], SETTINGS)] == [10]
    with pytest.raises(ValueError, match="as-of times"):
        list(edges_over(inputs, [START_MS + 5_000], SETTINGS))
    with pytest.raises(ValueError, match="positive"):
        load_history(engine, START_MS, END_MS, SETTINGS, asof_step_ms=0)
    engine.dispose()

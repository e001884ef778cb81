"""Edge inputs are read as of a time: nothing later is visible, vanished or other-series markets are left out."""

from __future__ import annotations

import polars as pl
import pytest
from sqlalchemy import Engine

from kbtc.db.engine import make_engine
from kbtc.db.store import upsert
from kbtc.pipeline.edge_inputs import load_edge_inputs, reference_spot_windows

ASOF = 1_795_000_000_000


@pytest.fixture
def engine(migrated_url: str) -> Engine:
    eng = make_engine(migrated_url)
    market = {
        "event_ticker": "KXBTC15M-E",
        "series_ticker": "KXBTC15M",
        "strike_type": "greater_or_equal",
        "status": "active",
        "first_seen_ts": 0,
        "updated_ts": 0,
    }
    upsert(
        eng,
        "markets",
        [
            {**market, "market_ticker": "M-LIVE", "open_ts": ASOF - 600_000, "close_ts": ASOF + 300_000,
             "floor_strike": 95_000.0},
            {**market, "market_ticker": "M-OLD", "open_ts": ASOF - 1_800_000, "close_ts": ASOF - 900_000,
             "floor_strike": 94_900.0, "expiration_value": 95_010.5, "determined_ts": ASOF - 800_000},
            {**market, "market_ticker": "M-FUTURE-RESULT", "open_ts": ASOF - 1_200_000, "close_ts": ASOF - 3_000,
             "floor_strike": 94_950.0, "expiration_value": 95_001.0, "determined_ts": ASOF + 60_000},
            {**market, "market_ticker": "M-GONE", "close_ts": ASOF + 300_000},
            {**market, "market_ticker": "OTHER-1", "series_ticker": "OTHER", "close_ts": ASOF + 300_000},
        ],
    )
    with eng.begin() as conn:
        conn.exec_driver_sql("UPDATE markets SET catalog_status = 'vanished' WHERE market_ticker = 'M-GONE'")
    upsert(
        eng,
        "quotes",
        pl.DataFrame(
            {
                "market_ticker": ["M-LIVE", "M-LIVE", "M-LIVE"],
                "quote_ts": [ASOF - 20_000, ASOF - 1_000, ASOF + 1_000],
                "received_ts": [ASOF - 19_990, ASOF - 990, ASOF + 1_010],
                "source": ["rest", "ws", "ws"],
                "yes_bid_cents": [40.0, 41.0, 99.0],
                "yes_ask_cents": [42.0, 43.5, 99.5],
            }
        ),
    )
    ticks = [ASOF - 4_000_000, ASOF - 2_000, ASOF, ASOF + 500]
    upsert(
        eng,
        "spot_ticks",
        pl.DataFrame(
            {
                "product_id": "BTC-USD",
                "source": "coinbase_advanced",
                "tick_ts": ticks,
                "venue_time_ns": [t * 1_000_000 for t in ticks],
                "received_ts": ticks,
                "price": [1.0, 95_000.0, 95_001.0, 99_999.0],
            }
        ),
    )
    upsert(
        eng,
        "index_prices",
        [{"index_id": "BRTI", "value_ts": ASOF - 1000 * i, "received_ts": 0, "value_usd": 95_000.0 + i} for i in range(-2, 3)],
    )
    yield eng  # type: ignore[misc]
    eng.dispose()


def test_inputs_as_of(engine: Engine) -> None:
    inputs = load_edge_inputs(engine, ASOF, series=["KXBTC15M"], product_id="BTC-USD")
    assert inputs.markets["market_ticker"].to_list() == ["M-FUTURE-RESULT", "M-LIVE"]
    assert inputs.quotes.select("market_ticker", "yes_bid_cents", "yes_ask_cents").rows() == [("M-LIVE", 41.0, 43.5)]
    assert inputs.spot["price"].to_list() == [95_000.0, 95_001.0]
    assert inputs.index_prints["ts"].max() == ASOF
    refs = inputs.settled_references.sort("window_end_ts")
    # M-FUTURE-RESULT's expiration value is determined after ASOF: not visible yet.
    assert refs.select("market_ticker", "kind").rows() == [
        ("M-OLD", "strike"),
        ("M-FUTURE-RESULT", "strike"),
        ("M-OLD", "expiration"),
        ("M-LIVE", "strike"),
    ]
    # Known when published: a strike at its window end, an expiration value once determined (as a replay).
    assert refs.filter(pl.col("kind") == "expiration")["known_ts"].to_list() == [ASOF - 800_000]
    assert inputs.markets.schema["close_ts"] == pl.Int64
    assert inputs.quotes.schema["no_ask_cents"] == pl.Float64


def test_reference_minutes_older_than_the_spot_lookback_are_read_on_their_own(engine: Engine) -> None:
    # A reference whose minute ended 4 000 s ago: its 65 s of spot lie before the 3 900 s spot lookback.
    upsert(engine, "markets", [{"market_ticker": "M-ANCIENT", "event_ticker": "E", "series_ticker": "KXBTC15M",
                                "status": "finalized", "open_ts": ASOF - 3_999_000, "close_ts": ASOF - 3_099_000,
                                "floor_strike": 1.5, "first_seen_ts": 0, "updated_ts": 0}])
    inputs = load_edge_inputs(engine, ASOF, series=["KXBTC15M"], product_id="BTC-USD", spot_lookback_s=3_900.0)
    assert inputs.spot["ts"].to_list() == [ASOF - 2_000, ASOF]
    assert inputs.reference_spot["ts"].to_list() == [ASOF - 4_000_000, ASOF - 2_000, ASOF]
    without = load_edge_inputs(engine, ASOF, series=["KXBTC15M"], product_id="BTC-USD", reference_span_ms=None)
    assert without.reference_spot["ts"].to_list() == [ASOF - 2_000, ASOF]


def test_reference_spot_windows_merge_and_stop_at_the_loaded_spot() -> None:
    refs = pl.DataFrame({"window_end_ts": [10_000, 10_000, 12_000, 50_000, 99_000, None]})
    # Overlapping spans merge; a span inside the loaded spot (≥ before_ts) needs no read.
    assert reference_spot_windows(refs, before_ts=90_000, span_ms=5_000) == [(5_000, 12_000), (45_000, 50_000)]
    assert reference_spot_windows(refs, before_ts=97_000, span_ms=5_000)[-1] == (94_000, 97_000)


def test_empty_database_gives_typed_empty_frames(migrated_url: str) -> None:
    eng = make_engine(migrated_url)
    inputs = load_edge_inputs(eng, ASOF, series=["KXBTC15M"], product_id="BTC-USD")
    assert inputs.markets.height == inputs.quotes.height == inputs.spot.height == 0
    assert inputs.spot.schema["price"] == pl.Float64
    eng.dispose()


def test_no_series_gives_no_markets_and_no_quotes(engine: Engine) -> None:
    inputs = load_edge_inputs(engine, ASOF, series=[], product_id="BTC-USD")
    assert inputs.markets.height == 0 and inputs.quotes.height == 0  # not one all-null row
    assert inputs.markets.schema["close_ts"] == pl.Int64

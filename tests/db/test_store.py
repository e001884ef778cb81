"""Bulk upserts are idempotent on SQLite and PostgreSQL; hot reads return Polars frames without look-ahead."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import Engine

from kbtc.db.engine import make_engine
from kbtc.db.schema import Market, Quote, SpotTick
from kbtc.db.store import (
    copy_upsert,
    count_rows,
    latest_quotes,
    natural_key,
    read_frame,
    spot_ticks_between,
    upsert,
)


@pytest.fixture
def engine(migrated_url: str) -> Engine:
    eng = make_engine(migrated_url)
    yield eng  # type: ignore[misc]
    eng.dispose()


def _quotes(n: int, *, yes_bid: float = 40.0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "market_ticker": [f"KXBTC15M-M{i % 7}" for i in range(n)],
            "quote_ts": [1_700_000_000_000 + i for i in range(n)],
            "received_ts": [1_700_000_000_050 + i for i in range(n)],
            "source": ["ws"] * n,
            "yes_bid_cents": [yes_bid] * n,
            "yes_ask_cents": [yes_bid + 2.35] * n,
        }
    )


def test_natural_keys() -> None:
    assert natural_key(Quote.__table__) == ("market_ticker", "quote_ts", "source")  # type: ignore[arg-type]
    assert natural_key(Market.__table__) == ("market_ticker",)  # type: ignore[arg-type]
    assert natural_key(SpotTick.__table__) == ("product_id", "source", "venue_time_ns")  # type: ignore[arg-type]


def test_same_rows_twice_give_one_copy_and_changes_update(engine: Engine) -> None:
    rows = _quotes(1000)
    assert upsert(engine, "quotes", rows, batch_rows=300) == 1000
    upsert(engine, "quotes", rows, batch_rows=300)
    assert count_rows(engine, "quotes") == 1000

    upsert(engine, "quotes", _quotes(1000, yes_bid=41.5))
    assert count_rows(engine, "quotes") == 1000
    stored = read_frame(engine, "SELECT DISTINCT yes_bid_cents, yes_ask_cents FROM quotes")
    assert stored.rows() == [(41.5, 43.85)]


def test_ignore_mode_keeps_first_write(engine: Engine) -> None:
    upsert(engine, Quote, _quotes(10))
    upsert(engine, Quote, _quotes(10, yes_bid=55.0), on_conflict="ignore")
    assert read_frame(engine, "SELECT DISTINCT yes_bid_cents FROM quotes")["yes_bid_cents"].to_list() == [40.0]


def test_keep_when_null_never_overwrites_with_nulls(engine: Engine) -> None:
    base = {
        "market_ticker": "KXBTCD-26NOV2517-T95999.99",
        "event_ticker": "KXBTCD-26NOV2517",
        "series_ticker": "KXBTCD",
        "strike_type": "greater",
        "floor_strike": 95999.99,
        "status": "active",
        "first_seen_ts": 1,
        "updated_ts": 1,
    }
    upsert(engine, Market, [base])
    upsert(engine, Market, [{**base, "floor_strike": None, "status": "closed", "updated_ts": 2}],
           keep_when_null=["floor_strike"])
    row = read_frame(engine, "SELECT floor_strike, status, updated_ts FROM markets").row(0)
    assert row == (95999.99, "closed", 2)


def test_sub_penny_prices_round_trip_exactly(engine: Engine) -> None:
    cents = [0.1, 95.3, 99.9, 12.34, 0.01]
    frame = _quotes(len(cents)).with_columns(pl.Series("yes_bid_cents", cents))
    upsert(engine, Quote, frame)
    stored = read_frame(engine, "SELECT yes_bid_cents FROM quotes ORDER BY quote_ts")["yes_bid_cents"]
    # cents * 100 = the venue's integer count of $0.0001 — recovered exactly.
    assert [round(x * 100) for x in stored] == [10, 9530, 9990, 1234, 1]


def test_unknown_columns_and_missing_key_are_errors(engine: Engine) -> None:
    with pytest.raises(ValueError, match="not in table"):
        upsert(engine, Quote, _quotes(1).with_columns(pl.lit(1).alias("bogus")))
    with pytest.raises(ValueError, match="natural-key"):
        upsert(engine, Quote, _quotes(1).drop("source"))


def test_latest_quote_as_of_has_no_look_ahead(engine: Engine) -> None:
    frame = pl.DataFrame(
        {
            "market_ticker": ["A", "A", "A", "B"],
            "quote_ts": [1000, 2000, 3000, 1500],
            "received_ts": [1001, 2001, 3001, 1501],
            "source": ["rest", "ws", "ws", "rest"],
            "yes_bid_cents": [10.0, 20.0, 30.0, 50.0],
        }
    )
    upsert(engine, Quote, frame)
    at_2500 = latest_quotes(engine, 2500)
    assert at_2500.select("market_ticker", "yes_bid_cents").rows() == [("A", 20.0), ("B", 50.0)]
    assert latest_quotes(engine, 2500, max_age_ms=600)["market_ticker"].to_list() == ["A"]
    assert latest_quotes(engine, 999).height == 0
    assert latest_quotes(engine, 5000, market_tickers=["B"])["yes_bid_cents"].to_list() == [50.0]
    assert latest_quotes(engine, 5000, market_tickers=[]).height == 0


def test_spot_ticks_between_and_datetime_columns(engine: Engine) -> None:
    ts = pl.datetime_range(
        pl.datetime(2026, 11, 25, 0, 0, 0, time_zone="UTC"),
        pl.datetime(2026, 11, 25, 0, 0, 9, time_zone="UTC"),
        "1s",
        eager=True,
    ).dt.cast_time_unit("ms")
    frame = pl.DataFrame(
        {
            "product_id": "BTC-USD",
            "source": "coinbase",
            "tick_ts": ts,
            "venue_time_ns": ts.dt.epoch("ns"),
            "received_ts": ts,
            "price": [95_000.0 + i for i in range(10)],
        }
    )
    upsert(engine, SpotTick, frame)
    start = int(ts[2].timestamp() * 1000)
    end = int(ts[5].timestamp() * 1000)
    window = spot_ticks_between(engine, "BTC-USD", start, end)
    assert window["price"].to_list() == [95_002.0, 95_003.0, 95_004.0, 95_005.0]
    assert window["tick_ts"].to_list() == list(range(start, end + 1, 1000))


def _awkward_quotes() -> pl.DataFrame:
    """Quotes whose values a text format could get wrong: shortest-repr floats, NaN, ±inf, nulls, odd text."""
    frame = _quotes(6)
    return frame.with_columns(
        pl.Series("yes_bid_cents", [1 / 3, 0.1 + 0.2, float("nan"), None, 5e-324, 12.3456789012345]),
        pl.Series("yes_ask_cents", [float("inf"), -float("inf"), 99.99, 1e300, None, 0.0]),
        pl.Series("source", ["ws", "", 'q"u,o', "l\nb", "ünï", "rest"]),
    )


@pytest.mark.parametrize("any_db_url", ["postgres"], indirect=True)
def test_copy_upsert_writes_what_upsert_writes(engine: Engine) -> None:
    order = "SELECT * FROM quotes ORDER BY market_ticker, quote_ts, source"
    first, second = _awkward_quotes(), _awkward_quotes().with_columns(pl.col("yes_bid_cents") + 1.0)
    upsert(engine, "quotes", first)
    upsert(engine, "quotes", second)
    expected = read_frame(engine, order).drop("id")
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE quotes")
    with engine.begin() as conn:  # twice in one transaction: the staging table is reused, emptied
        assert copy_upsert(conn, "quotes", first) == 6
        assert copy_upsert(conn, "quotes", second) == 6
    assert_frame_equal(read_frame(engine, order).drop("id"), expected)
    with engine.begin() as conn:
        copy_upsert(conn, "quotes", first.with_columns(pl.lit(7.0).alias("yes_bid_cents")), on_conflict="ignore")
        assert copy_upsert(conn, "quotes", first.head(0)) == 0
    assert_frame_equal(read_frame(engine, order).drop("id"), expected)  # ignore kept the stored rows
    with engine.begin() as conn, pytest.raises(ValueError, match="repeat a natural key"):
        copy_upsert(conn, "quotes", pl.concat([first, first]))


def test_copy_upsert_is_postgresql_only(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with engine.begin() as conn, pytest.raises(NotImplementedError):
            copy_upsert(conn, "quotes", _quotes(1))
    finally:
        engine.dispose()

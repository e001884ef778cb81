"""The live loop's spot-tick cache returns what a fresh read returns, tick after tick, while ticks arrive: rows
appended, rows stamped late, rows stamped ahead of the tick, ties on the tick time, the window moving on, time
going backwards, another product and reused ids."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import Engine, text

from kbtc.db.engine import make_engine
from kbtc.db.store import upsert
from kbtc.pipeline.edge_inputs import load_spot_ticks
from kbtc.pipeline.spot_cache import SpotTickCache

ASOF = 1_795_000_000_000
WINDOW_MS = 60_000
PRODUCT = "BTC-USD"


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    eng = make_engine(migrated_url)
    yield eng
    eng.dispose()


def tick(tick_ts: int, price: float, *, offset_ns: int = 0, product: str = PRODUCT, source: str = "ws") -> dict:
    return {"product_id": product, "source": source, "tick_ts": tick_ts,
            "venue_time_ns": tick_ts * 1_000_000 + offset_ns, "received_ts": tick_ts + 50, "price": price,
            "best_bid": price - 0.5, "best_ask": price + 0.5}


def insert(engine: Engine, *rows: dict) -> None:
    upsert(engine, "spot_ticks", list(rows), on_conflict="ignore")  # as the collectors write


def check(engine: Engine, cache: SpotTickCache, asof: int, product: str = PRODUCT) -> pl.DataFrame:
    """The cached read at `asof` equals the fresh read in the same transaction."""
    with engine.connect() as conn, conn.begin():
        cached = cache.load(conn, product, asof - WINDOW_MS, asof)
        fresh = load_spot_ticks(conn, product, asof - WINDOW_MS, asof)
    assert_frame_equal(cached, fresh)
    return cached


def test_cache_equals_fresh_reads_as_ticks_arrive(engine: Engine) -> None:
    cache = SpotTickCache(full_read_interval_ms=600_000)  # no periodic full read within the test
    incremental = engine.dialect.name == "sqlite"  # PostgreSQL reads fresh every tick
    insert(engine, *(tick(ASOF - 90_000 + 500 * i, 100_000.0 + i) for i in range(180)))
    assert check(engine, cache, ASOF).height == 120  # [asof − 60 s, asof − 0.5 s] at 2 a second
    # Appended rows, one stamped ahead of the next tick (held until its time), one on a tied tick time.
    insert(engine, tick(ASOF + 400, 1.0), tick(ASOF + 9_000, 2.0), tick(ASOF + 400, 3.0, source="rest"))
    assert check(engine, cache, ASOF + 1_000)["price"].to_list()[-2:] == [1.0, 3.0]
    assert 2.0 not in check(engine, cache, ASOF + 2_000)["price"].to_list()
    assert 2.0 in check(engine, cache, ASOF + 9_000)["price"].to_list()
    # A late row (stamped before the previous tick, inserted after it) is sorted into place.
    insert(engine, tick(ASOF - 30_000, 4.0, offset_ns=1))
    frame = check(engine, cache, ASOF + 10_000)
    assert frame["ts"].is_sorted() and 4.0 in frame["price"].to_list()
    assert cache.hits == (4 if incremental else 0)
    # The window moves past the oldest rows; then a row older than what the cache holds cannot be read
    # incrementally: a window starting earlier reads fresh.
    check(engine, cache, ASOF + 40_000)
    hits = cache.hits
    with engine.connect() as conn, conn.begin():
        assert_frame_equal(cache.load(conn, PRODUCT, ASOF - 80_000, ASOF + 40_000),
                           load_spot_ticks(conn, PRODUCT, ASOF - 80_000, ASOF + 40_000))
    assert cache.hits == hits
    # Time going backwards and another product read fresh.
    check(engine, cache, ASOF + 20_000)
    insert(engine, tick(ASOF + 20_500, 5.0, product="ETH-USD"))
    assert check(engine, cache, ASOF + 21_000, product="ETH-USD")["price"].to_list() == [5.0]
    assert cache.hits == hits
    check(engine, cache, ASOF + 21_000)
    check(engine, cache, ASOF + 22_000)
    assert cache.hits == hits + (1 if incremental else 0)


def test_reused_ids_and_an_emptied_table_read_fresh(engine: Engine) -> None:
    cache = SpotTickCache(full_read_interval_ms=600_000)
    check(engine, cache, ASOF)  # an empty table
    insert(engine, tick(ASOF + 100, 1.0), tick(ASOF + 200, 2.0))
    assert check(engine, cache, ASOF + 1_000)["price"].to_list() == [1.0, 2.0]
    # The newest row is deleted and its id handed to a new row: "id > last seen" would miss it.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM spot_ticks WHERE price = 2.0"))
    insert(engine, tick(ASOF + 300, 3.0))
    assert check(engine, cache, ASOF + 2_000)["price"].to_list() == [1.0, 3.0]


def test_a_periodic_full_read_bounds_an_unseen_rewrite(engine: Engine) -> None:
    cache = SpotTickCache(full_read_interval_ms=5_000)
    insert(engine, tick(ASOF - 1_000, 1.0), tick(ASOF - 500, 2.0))
    check(engine, cache, ASOF)
    with engine.begin() as conn:  # rewritten in place (same id): invisible to the delta read
        conn.execute(text("UPDATE spot_ticks SET price = 9.0 WHERE price = 1.0"))
    with engine.connect() as conn, conn.begin():
        stale = cache.load(conn, PRODUCT, ASOF + 1_000 - WINDOW_MS, ASOF + 1_000)["price"].to_list()
    assert stale == ([1.0, 2.0] if engine.dialect.name == "sqlite" else [9.0, 2.0])
    assert check(engine, cache, ASOF + 5_000)["price"].to_list() == [9.0, 2.0]  # the interval is over

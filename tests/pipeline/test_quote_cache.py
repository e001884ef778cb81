"""The live loop's latest-quote cache returns what a fresh read returns, tick after tick, while quotes arrive:
late rows stamped before the previous tick, rows stamped ahead of the tick, ties between sources, markets
ageing out of the window, new markets, time going backwards and reused ids."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import Engine, text
from test_edges_pipeline import seed_database

from kbtc.db.engine import make_engine
from kbtc.db.store import upsert
from kbtc.pipeline.edge_inputs import load_latest_quotes, load_markets
from kbtc.pipeline.edges import EdgeSettings, LiveTickCache, compute_edge_tick
from kbtc.pipeline.quote_cache import LatestQuoteCache

ASOF = 1_795_000_000_000
SERIES = ["KXBTCD", "KXBTC15M"]
MAX_AGE_MS = 300_000


@pytest.fixture
def engine(migrated_url: str) -> Engine:
    eng = make_engine(migrated_url)
    yield eng  # type: ignore[misc]
    eng.dispose()


def quote(market: str, quote_ts: int, received_ts: int, bid: float, source: str = "ws") -> dict[str, object]:
    return {"market_ticker": market, "quote_ts": quote_ts, "received_ts": received_ts, "source": source,
            "yes_bid_cents": bid, "yes_ask_cents": bid + 2.0}


def insert(engine: Engine, *rows: dict[str, object]) -> None:
    upsert(engine, "quotes", list(rows), on_conflict="ignore")  # as the collectors write: append, ignore repeats


def check(engine: Engine, cache: LatestQuoteCache, asof: int) -> pl.DataFrame:
    """The cached read at `asof` equals the fresh read in the same transaction."""
    with engine.connect() as conn, conn.begin():
        markets = load_markets(conn, asof, SERIES)
        cached = cache.load(conn, asof, SERIES, markets, max_age_ms=MAX_AGE_MS)
        fresh = load_latest_quotes(conn, asof, SERIES, max_age_ms=MAX_AGE_MS)
    assert_frame_equal(cached, fresh)
    return cached


def bid_of(frame: pl.DataFrame, market: str) -> float | None:
    rows = frame.filter(pl.col("market_ticker") == market)
    return rows["yes_bid_cents"][0] if rows.height else None


def test_cache_equals_fresh_reads_over_ticks_with_late_and_out_of_order_rows(engine: Engine) -> None:
    seed_database(engine, ASOF)  # five markets quoted at ASOF − 3 s
    cache = LatestQuoteCache(full_read_interval_ms=600_000)  # no periodic full read within the test
    incremental = 1 if engine.dialect.name == "sqlite" else 0  # PostgreSQL reads fresh every tick
    a, b, c, d = "KXBTCD-E-T99749.99", "KXBTCD-E-T99999.99", "KXBTCD-E-T100249.99", "KXBTCD-E-T120000"
    check(engine, cache, ASOF)
    assert cache.hits == 0

    t1 = ASOF + 10_000
    insert(engine,
           quote(a, t1 - 1_000, t1 - 900, 61.0),  # an ordinary new quote
           quote(b, ASOF - 1_000, t1 - 800, 44.0),  # late: stamped before the previous tick, newer than b's latest
           quote(c, ASOF - 5_000, t1 - 800, 29.0),  # late and older than c's latest: must not win
           quote(d, t1 + 5_000, t1 - 700, 3.0))  # stamped after the coming tick (a clock ahead of ours)
    frame = check(engine, cache, t1)
    assert cache.hits == incremental
    assert (bid_of(frame, a), bid_of(frame, b), bid_of(frame, c), bid_of(frame, d)) == (61.0, 44.0, 30.0, 1.0)

    t2 = t1 + 10_000  # d's row from the future is now due, though it was in the table before the previous tick
    insert(engine,
           quote(a, t1 - 1_000, t2 - 500, 70.0, source="rest"),  # same time, another source, received later: wins
           quote(b, t2 - 2_000, t2 - 1_000, 40.0),
           quote(b, t2 - 2_000, t2 - 1_000, 41.0, source="rest"))  # same time and receipt: 'ws' > 'rest' wins
    frame = check(engine, cache, t2)
    assert cache.hits == 2 * incremental
    assert (bid_of(frame, a), bid_of(frame, b), bid_of(frame, d)) == (70.0, 40.0, 3.0)

    t3 = ASOF + 297_500  # the seeded quotes (ASOF − 3 s) leave the 300 s window: c drops out
    insert(engine, quote(a, t3 - 100, t3 - 50, 65.0))
    frame = check(engine, cache, t3)
    assert bid_of(frame, c) is None and bid_of(frame, a) == 65.0 and cache.hits == 3 * incremental
    t4 = t3 + 10_000  # nothing new: the cache only ages
    check(engine, cache, t4)
    assert cache.hits == 4 * incremental


def test_cache_reads_fresh_when_it_cannot_prove_itself_current(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL reads fresh on every tick")
    seed_database(engine, ASOF)
    cache = LatestQuoteCache(full_read_interval_ms=100_000)
    check(engine, cache, ASOF)
    check(engine, cache, ASOF + 10_000)
    assert cache.hits == 1
    insert(engine, quote("KXBTCD-E-T99999.99", ASOF + 8_000, ASOF + 1_000, 33.0))  # stamped ahead of the next read
    check(engine, cache, ASOF + 5_000)  # back in time (a replay)
    assert cache.hits == 1
    assert bid_of(check(engine, cache, ASOF + 9_000), "KXBTCD-E-T99999.99") == 33.0  # read as future, now due
    assert cache.hits == 2

    # A newly listed market: the cache holds no history for it (its quote predates the cache's last read).
    insert(engine, quote("KXBTCD-E-T130000", ASOF - 60_000, ASOF - 59_000, 1.0))
    upsert(engine, "markets", [{"market_ticker": "KXBTCD-E-T130000", "event_ticker": "KXBTCD-E",
                                "series_ticker": "KXBTCD", "status": "active", "strike_type": "greater",
                                "floor_strike": 130_000.0, "open_ts": ASOF - 3_600_000, "close_ts": ASOF + 3_600_000,
                                "first_seen_ts": 0, "updated_ts": 1}])
    frame = check(engine, cache, ASOF + 20_000)
    assert bid_of(frame, "KXBTCD-E-T130000") == 1.0 and cache.hits == 2

    # The newest row deleted and its id reused by the next insert: "id > last seen" would miss that row.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM quotes WHERE id = (SELECT MAX(id) FROM quotes)"))
    insert(engine, quote("KXBTCD-E-T99999.99", ASOF + 25_000, ASOF + 25_100, 12.0))
    frame = check(engine, cache, ASOF + 30_000)
    assert bid_of(frame, "KXBTCD-E-T99999.99") == 12.0 and cache.hits == 2
    check(engine, cache, ASOF + 40_000)
    assert cache.hits == 3
    check(engine, cache, ASOF + 30_000 + 100_000)  # the periodic full read
    assert cache.hits == 3


def test_live_ticks_with_the_cache_equal_ticks_without(engine: Engine) -> None:
    seed_database(engine, ASOF)
    settings = EdgeSettings(persist_vol=False)
    cache = LiveTickCache()
    markets = ["KXBTCD-E-T99749.99", "KXBTCD-E-T99999.99", "KXBTCD-E-T100249.99"]
    for k in range(4):
        asof = ASOF + 10_000 * k
        insert(engine, quote(markets[k % 3], asof - 500, asof - 400, 40.0 + k),
               quote(markets[(k + 1) % 3], asof - 15_000, asof - 300, 50.0 + k))  # one late row per tick
        # Spot ticks since the previous tick (seed_database's run at 1 Hz), a late one and one stamped ahead.
        spot = [asof - 9_000 + 1_000 * i + 500 for i in range(9)] + [asof - 20_250, asof + 2_500]
        upsert(engine, "spot_ticks", pl.DataFrame({
            "product_id": "BTC-USD", "source": "coinbase_advanced", "tick_ts": spot,
            "venue_time_ns": [t * 1_000_000 for t in spot], "received_ts": asof - 100,
            "price": [100_000.0 + 3.0 * k + i for i in range(len(spot))],
        }), on_conflict="ignore")
        cached = compute_edge_tick(engine, asof, settings, cache).edges
        assert_frame_equal(cached, compute_edge_tick(engine, asof, settings).edges)
    hits = 3 if engine.dialect.name == "sqlite" else 0
    assert (cache.quotes.hits, cache.spot.hits) == (hits, hits)

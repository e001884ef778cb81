"""Data health reports freshness per stream and the feed events and rejects of the window."""

from __future__ import annotations

from kbtc.db.engine import make_engine
from kbtc.db.store import upsert
from kbtc.pipeline.health import data_health
from kbtc.pipeline.recording import record_feed_events, record_rejects
from kbtc.venues.records import FeedEventKind, FeedEventRecord, RejectRecord

NOW = 1_795_000_000_000


def test_health(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    upsert(
        engine,
        "spot_ticks",
        [
            {"product_id": "BTC-USD", "source": "cb", "tick_ts": NOW - 4_000, "venue_time_ns": 1, "received_ts": 0, "price": 1.0},
            {"product_id": "BTC-USD", "source": "cb", "tick_ts": NOW + 9_000, "venue_time_ns": 2, "received_ts": 0, "price": 1.0},
        ],
    )
    record_feed_events(
        engine,
        [
            FeedEventRecord("coinbase", "c1", FeedEventKind.GAP, NOW - 10_000, "BTC-USD", 3, 7),
            FeedEventRecord("coinbase", "c1", FeedEventKind.STALE, NOW - 9_000, "BTC-USD", duration_ms=12_000),
            FeedEventRecord("coinbase", "c1", FeedEventKind.STALE, NOW - 90_000_000, "BTC-USD", duration_ms=1),
        ],
    )
    record_rejects(engine, [RejectRecord("kalshi.ws", "bad_json", NOW - 5, "{")])
    health = data_health(engine, NOW, window_s=3600)
    spot = health.freshness.filter(stream="spot_ticks").row(0, named=True)
    assert spot["age_s"] == 4.0 and spot["rows_in_window"] == 1  # the future tick is not seen
    quotes = health.freshness.filter(stream="quotes").row(0, named=True)
    assert quotes["latest_ts"] is None and quotes["age_s"] is None
    assert health.feed_events.rows() == [("coinbase", "gap", 1, 0.0), ("coinbase", "stale", 1, 12.0)]
    assert health.rejects.rows() == [("kalshi.ws", "bad_json", 1)]
    engine.dispose()

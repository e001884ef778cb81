"""Feed events and rejects are stored idempotently; backoff stays within its bounds."""

from __future__ import annotations

import random

from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import read_frame
from kbtc.pipeline.recording import record_feed_events, record_rejects
from kbtc.venues.backoff import Backoff
from kbtc.venues.records import FeedEventKind, FeedEventRecord, RejectRecord


def test_records_round_trip_and_are_idempotent(sqlite_url: str) -> None:
    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    gap = FeedEventRecord("coinbase", "c1", FeedEventKind.GAP, 1000, "BTC-USD", expected_seq=5, received_seq=9)
    reject = RejectRecord("coinbase.ws", "bid_above_ask", 1001, '{"best_bid":"2","best_ask":"1"}')
    for _ in range(2):
        record_feed_events(engine, [gap, FeedEventRecord("coinbase", "c1", FeedEventKind.CONNECT, 900)])
        record_rejects(engine, [reject])
    events = read_frame(engine, "SELECT kind, subject, expected_seq, received_seq FROM feed_events ORDER BY event_ts")
    assert events.rows() == [("connect", "", None, None), ("gap", "BTC-USD", 5, 9)]
    rejects = read_frame(engine, "SELECT source, reason, raw FROM rejects")
    assert rejects.rows() == [("coinbase.ws", "bid_above_ask", reject.raw)]
    engine.dispose()


def test_backoff_is_capped_and_jittered() -> None:
    backoff = Backoff(base_s=0.5, cap_s=8.0, floor_fraction=0.5)
    rng = random.Random(3)
    delays = [backoff.delay_s(attempt, rng) for attempt in range(10)]
    for attempt, delay in enumerate(delays):
        ceiling = min(8.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays[5:]}) > 1  # jitter at the cap

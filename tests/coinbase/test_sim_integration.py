"""The Coinbase client and collector against the simulated venue (kbtc.sim.coinbase) over real sockets.

Every fault class the simulator can produce is injected through its FaultPlan and must be recovered from
and recorded: disconnects, stalls, skipped sequence numbers, malformed frames, duplicates, reordering,
missing/unknown fields, 429/5xx on candles.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cbserver import RecordingSink, count, fast_config, start_collector, wait_rows
from simsupport import running_feed, running_sim

from kbtc.config import load_settings
from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import read_frame
from kbtc.pipeline.backfill import backfill_spot
from kbtc.pipeline.collect import run_collectors
from kbtc.pipeline.spot_collector import collect_spot
from kbtc.sim.faults import FaultKind, FaultPlan, FaultTarget
from kbtc.venues.backoff import Backoff
from kbtc.venues.coinbase.rest import CandlesClient
from kbtc.venues.records import FeedEventKind

WS = FaultTarget.COINBASE_WS
REST = FaultTarget.COINBASE_REST
# The simulator beats once a second: allow a little more than two missed beats before reconnecting.
SIM_FEED = {"heartbeat_timeout_s": 2.5, "stale_s": 5.0}


def assert_all_applied(faults: FaultPlan) -> None:
    summary = faults.summary()
    assert summary and all(v["injected"] == v["applied"] for v in summary.values()), summary


@pytest.mark.parametrize("counter_as_int", [False, True])
async def test_clean_stream(counter_as_int: bool) -> None:
    sink = RecordingSink()
    async with (
        running_sim(heartbeat_counter_as_int=counter_as_int) as (sim, _),
        running_feed(fast_config(sim.ws_url, **SIM_FEED), sink) as feed,
    ):
        await sink.wait_for(lambda: len(sink.ticks) >= 20 and feed.stats.frames >= 25)
    assert sink.rejects == [] and sink.kinds(FeedEventKind.GAP) == [] and sink.kinds(FeedEventKind.ERROR) == []
    assert {t.source for t in sink.ticks} == {"coinbase_advanced"}
    times = [t.venue_time_ns for t in sink.ticks]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert all(t.best_bid is not None and t.best_ask is not None and t.best_bid <= t.best_ask for t in sink.ticks)


@pytest.mark.parametrize("kind", [FaultKind.DISCONNECT_CLEAN, FaultKind.DISCONNECT_ABRUPT])
async def test_disconnects_are_recovered(kind: FaultKind) -> None:
    sink = RecordingSink()
    async with running_sim() as (sim, faults), running_feed(fast_config(sim.ws_url, **SIM_FEED), sink) as feed:
        await sink.wait_for(lambda: len(sink.ticks) >= 3)
        faults.inject(WS, kind)
        await sink.wait_for(lambda: feed.stats.connects == 2)
        before = len(sink.ticks)
        await sink.wait_for(lambda: len(sink.ticks) >= before + 5)
    assert_all_applied(faults)
    first = sink.kinds(FeedEventKind.DISCONNECT)[0].detail or ""
    assert "1001" in first if kind is FaultKind.DISCONNECT_CLEAN else "lost" in first
    assert sink.kinds(FeedEventKind.CONNECT)[1].duration_ms is not None


@pytest.mark.slow
async def test_stall_means_reconnect() -> None:
    sink = RecordingSink()
    async with running_sim() as (sim, faults), running_feed(fast_config(sim.ws_url, **SIM_FEED), sink) as feed:
        await sink.wait_for(lambda: len(sink.ticks) >= 3)
        faults.inject(WS, FaultKind.STALL)  # silent until the client gives up
        await sink.wait_for(lambda: feed.stats.connects == 2, timeout_s=10)
        before = len(sink.ticks)
        await sink.wait_for(lambda: len(sink.ticks) >= before + 3)
    assert (sink.kinds(FeedEventKind.DISCONNECT)[0].detail or "").startswith("no heartbeat for")
    assert_all_applied(faults)


async def test_skipped_sequence_and_malformed_frame_are_gaps_and_a_reject() -> None:
    sink = RecordingSink()
    async with running_sim() as (sim, faults), running_feed(fast_config(sim.ws_url, **SIM_FEED), sink) as feed:
        await sink.wait_for(lambda: len(sink.ticks) >= 3)
        faults.inject(WS, FaultKind.SKIP_SEQ)
        await sink.wait_for(lambda: feed.stats.gaps == 1)
        faults.inject(WS, FaultKind.MALFORMED_JSON, channel="ticker")
        await sink.wait_for(lambda: feed.stats.gaps == 2 and len(sink.rejects) == 1)
        before = len(sink.ticks)
        await sink.wait_for(lambda: len(sink.ticks) >= before + 3)
    assert_all_applied(faults)
    gaps = sink.kinds(FeedEventKind.GAP)
    assert all(g.received_seq == (g.expected_seq or 0) + 1 for g in gaps)
    assert sink.rejects[0].reason == "malformed_json"
    assert feed.stats.connects == 1  # a gap is recorded, not a reason to reconnect


async def test_duplicate_and_reorder_lose_nothing() -> None:
    sink = RecordingSink()
    async with running_sim() as (sim, faults), running_feed(fast_config(sim.ws_url, **SIM_FEED), sink) as feed:
        await sink.wait_for(lambda: len(sink.ticks) >= 3)
        faults.inject(WS, FaultKind.DUPLICATE, channel="ticker")
        faults.inject(WS, FaultKind.REORDER)
        await sink.wait_for(lambda: feed.stats.gaps_filled == 1 and feed.stats.out_of_order >= 2)
    assert_all_applied(faults)
    # The reorder opened a gap that the late frame filled; nothing was lost.
    opened, filled = sink.kinds(FeedEventKind.GAP)
    assert filled.event_ts == opened.event_ts and filled.duration_ms == 0
    assert sink.rejects == []


async def test_missing_and_unknown_fields() -> None:
    sink = RecordingSink()
    async with running_sim() as (sim, faults), running_feed(fast_config(sim.ws_url, **SIM_FEED), sink):
        await sink.wait_for(lambda: len(sink.ticks) >= 3)
        faults.inject(WS, FaultKind.UNKNOWN_FIELDS, channel="ticker")
        faults.inject(WS, FaultKind.MISSING_FIELDS, channel="ticker")  # the pre-2024 ticker: no bid/ask
        faults.inject(WS, FaultKind.MISSING_FIELDS, channel="ticker", fields=["price"])
        await sink.wait_for(lambda: len(sink.rejects) == 1 and any(t.best_bid is None for t in sink.ticks))
    assert_all_applied(faults)
    assert sink.rejects[0].reason == "missing_price"
    without_quotes = [t for t in sink.ticks if t.best_bid is None]
    assert len(without_quotes) == 1 and without_quotes[0].best_ask is None and without_quotes[0].price > 0


async def test_exchange_feed() -> None:
    sink = RecordingSink()
    async with running_sim() as (sim, _):
        config = fast_config(sim.exchange_ws_url, source="exchange", **SIM_FEED)
        async with running_feed(config, sink):
            await sink.wait_for(lambda: len(sink.ticks) >= 10)
    assert {t.source for t in sink.ticks} == {"coinbase_exchange"}
    # The first ticker after subscribing has no time (§2): rejected, not stored under a made-up time.
    assert [r.reason for r in sink.rejects] == ["missing_time"]
    assert sink.kinds(FeedEventKind.GAP) == []


@pytest.mark.slow
async def test_collector_records_faults_in_the_database(sqlite_url: str) -> None:
    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    async with running_sim() as (sim, faults):
        settings = load_settings(database_url=sqlite_url, coinbase_ws_url=sim.ws_url, data_dir=Path("data"))

        async def collector(stop: asyncio.Event) -> Any:
            return await collect_spot(
                settings, engine, stop, backoff=Backoff(0.02, 0.1), watchdog_interval_s=0.05, **SIM_FEED
            )

        async def script(stop: asyncio.Event) -> None:
            await asyncio.sleep(0.5)
            faults.inject(WS, FaultKind.SKIP_SEQ)
            faults.inject(WS, FaultKind.MALFORMED_JSON, channel="ticker")
            await asyncio.sleep(0.5)
            faults.inject(WS, FaultKind.DISCONNECT_ABRUPT)
            await asyncio.sleep(1.0)
            stop.set()

        results = await run_collectors({"coinbase": collector, "script": script}, 30, handle_signals=False)
    assert_all_applied(faults)
    result = results["coinbase"]
    kinds = dict(read_frame(engine, "SELECT kind, COUNT(*) AS n FROM feed_events GROUP BY kind").rows())
    assert kinds["connect"] == kinds["disconnect"] == 2 and set(kinds) == {"connect", "disconnect", "gap"}
    # Two frames lost: the skipped one and the malformed one (one gap event when they were adjacent).
    lost = read_frame(engine, "SELECT SUM(received_seq - expected_seq) AS n FROM feed_events WHERE kind = 'gap'")
    assert lost["n"][0] == 2
    assert read_frame(engine, "SELECT reason FROM rejects")["reason"].to_list() == ["malformed_json"]
    stored = read_frame(engine, "SELECT COUNT(*) AS n, COUNT(DISTINCT venue_time_ns) AS d FROM spot_ticks").row(0)
    assert stored[0] == stored[1] == result.ticks_written > 20  # the post-reconnect snapshot added no duplicate
    engine.dispose()


@pytest.mark.parametrize("source", ["advanced", "exchange"])
async def test_backfill_over_the_simulator(source: Any, sqlite_url: str) -> None:
    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    async with running_sim(empty_minute_fraction=0.05) as (sim, faults):
        faults.inject(REST, FaultKind.HTTP_429, count=2)
        faults.inject(REST, FaultKind.HTTP_5XX)
        faults.inject(REST, FaultKind.MALFORMED_JSON)
        end_s = int(time.time()) // 60 * 60 - 120
        start_s = end_s - 60 * 799
        with CandlesClient(source, sim.rest_url, backoff=Backoff(0.01, 0.05)) as client:
            result = await asyncio.to_thread(backfill_spot, engine, client, "BTC-USD", start_s, end_s)
            assert client.retries == 4
        with CandlesClient(source, sim.rest_url) as client:
            again = await asyncio.to_thread(backfill_spot, engine, client, "BTC-USD", start_s - 3000, end_s)
    assert_all_applied(faults)
    assert result.pages == 3  # 800 minutes in windows of ≤ 350 (Advanced Trade) or ≤ 300 (Exchange)
    assert result.candles + result.empty_buckets == 800
    assert 0 < result.empty_buckets < 120  # about 5 % of minutes had no trade: absent, not an error
    assert result.rejects == 0
    stored = read_frame(engine, "SELECT start_ts, low, high, open, close FROM spot_candles ORDER BY start_ts")
    assert stored.height == again.candles  # the second run covered the first: the overlap was not duplicated
    assert stored["start_ts"].is_unique().all()
    assert (stored["low"] <= stored["high"]).all()
    engine.dispose()


@pytest.mark.slow
@pytest.mark.serial
async def test_kill_9_then_restart_against_the_simulator(tmp_path: Path) -> None:
    db = tmp_path / "kbtc.sqlite"
    async with running_sim(ticks_per_second=50.0) as (sim, _):
        proc = await start_collector(sim.ws_url, tmp_path, "--seconds", "0")
        await wait_rows(db, 60)
        proc.kill()  # mid-stream: a batch is buffered or being committed
        await proc.wait()
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        before = count(db, "SELECT COUNT(*) FROM spot_ticks")
        proc = await start_collector(sim.ws_url, tmp_path, "--seconds", "0")
        await wait_rows(db, before + 60)
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()
    assert count(db, "SELECT COUNT(*) FROM spot_ticks") == count(db, "SELECT COUNT(DISTINCT venue_time_ns) FROM spot_ticks")
    assert count(db, "SELECT COUNT(*) FROM feed_events WHERE kind = 'connect'") == 2
    # The killed session never recorded its disconnect; the restarted one did, on shutdown.
    assert count(db, "SELECT COUNT(*) FROM feed_events WHERE kind = 'disconnect' AND detail = 'shutdown'") == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.slow
async def test_backfill_spot_command(tmp_path: Path) -> None:
    end = datetime.fromtimestamp(time.time() // 60 * 60 - 600, tz=UTC)
    start = end - timedelta(minutes=499)
    async with running_sim(empty_minute_fraction=0.02) as (sim, faults):
        faults.inject(REST, FaultKind.HTTP_429)
        env = {**os.environ, "DB_PATH": str(tmp_path / "kbtc.sqlite"), "LOG_PATH": str(tmp_path / "app.jsonl"),
               "COINBASE_REST_URL": sim.rest_url}
        args = ["backfill-spot", "--start", start.isoformat(), "--end", end.strftime("%Y-%m-%dT%H:%MZ")]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kbtc.cli", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    assert_all_applied(faults)
    output = stdout.decode()
    assert "in 2 requests" in output
    stored = count(tmp_path / "kbtc.sqlite", "SELECT COUNT(*) FROM spot_candles")
    assert f"{stored} candles" in output and 450 < stored <= 500


@pytest.mark.slow
async def test_backfill_spot_repair_fills_only_the_holes(tmp_path: Path) -> None:
    from kbtc.pipeline.spot_collector import write_ticks
    from kbtc.venues.coinbase.messages import SpotTick

    db_url = f"sqlite:///{tmp_path / 'kbtc.sqlite'}"
    upgrade_database(db_url)
    engine = make_engine(db_url)
    now_ms = int(time.time()) // 60 * 60 * 1000
    # Ticks every 5 s over the last hour but a 10-minute outage ending 20 minutes ago.
    outage = (now_ms - 30 * 60_000, now_ms - 20 * 60_000)
    stamps = [ts for ts in range(now_ms - 3_600_000, now_ms, 5000) if not outage[0] <= ts < outage[1]]
    write_ticks(engine, [SpotTick("BTC-USD", "coinbase_advanced", ts, ts * 10**6, ts, 1.0, None, None, None, None, i)
                         for i, ts in enumerate(stamps)])
    async with running_sim() as (sim, _):
        env = {**os.environ, "DB_PATH": str(tmp_path / "kbtc.sqlite"), "LOG_PATH": str(tmp_path / "app.jsonl"),
               "COINBASE_REST_URL": sim.rest_url}
        end = datetime.fromtimestamp(now_ms / 1000 - 5, tz=UTC).isoformat()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kbtc.cli", "backfill-spot", "--repair", "--hours", "1", "--end", end, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    assert "1 window(s) to repair" in stdout.decode()
    candles = read_frame(engine, "SELECT start_ts FROM spot_candles ORDER BY start_ts")["start_ts"]
    engine.dispose()
    # The outage's minutes (from the minute of the last tick before it), nothing else.
    assert candles.min() >= outage[0] - 60_000 and candles.max() <= outage[1]
    assert candles.len() >= 10

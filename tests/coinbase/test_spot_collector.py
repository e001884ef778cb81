"""The spot collector step: feed → spot_ticks (batched, idempotent), feed_events, rejects, tape."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cbserver import DocServer, advanced_heartbeat, advanced_ticker, nth_ts
from websockets.asyncio.server import ServerConnection

from kbtc.config import load_settings
from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import read_frame
from kbtc.pipeline.collect import run_collectors
from kbtc.pipeline.spot_collector import SpotCollectResult, collect_spot
from kbtc.pipeline.tape import read_tape, tape_files
from kbtc.venues.backoff import Backoff

StartServer = Callable[..., Awaitable[DocServer]]
FAST = {
    "stale_s": 5.0,
    "heartbeat_timeout_s": 2.0,
    "watchdog_interval_s": 0.05,
    "backoff": Backoff(base_s=0.02, cap_s=0.1),
}


def scripted(n_ticks: int, sent: asyncio.Event) -> Callable[[ServerConnection, int, list[dict[str, Any]]], Awaitable[None]]:
    """Per connection: n ticks (fixed timestamps), one malformed frame, one skipped number, then heartbeats."""

    async def handler(ws: ServerConnection, index: int, subs: list[dict[str, Any]]) -> None:
        seq = 0
        await ws.send(advanced_heartbeat(seq, seq))
        for i in range(n_ticks):
            seq += 1
            await ws.send(advanced_ticker(seq, 95000.0 + i, nth_ts(i)))
        await ws.send("garbage")
        seq += 2  # the garbage took a number; skip one more
        await ws.send(advanced_heartbeat(seq, seq))
        sent.set()
        while True:
            seq += 1
            await ws.send(advanced_heartbeat(seq, seq))
            await asyncio.sleep(0.05)

    return handler


async def run_session(url: str, sqlite_url: str, sent: asyncio.Event) -> SpotCollectResult:
    settings = load_settings(database_url=sqlite_url, coinbase_ws_url=url, data_dir=Path("data"))
    engine = make_engine(sqlite_url)
    try:

        async def collector(stop: asyncio.Event) -> Any:
            return await collect_spot(settings, engine, stop, **FAST)

        async def stop_after_sent(stop: asyncio.Event) -> None:
            await sent.wait()
            await asyncio.sleep(0.3)
            stop.set()

        results = await run_collectors({"coinbase": collector, "timer": stop_after_sent}, 20, handle_signals=False)
        result = results["coinbase"]
        assert isinstance(result, SpotCollectResult)
        return result
    finally:
        engine.dispose()


async def test_collector_stores_ticks_events_rejects_and_tape(doc_server: StartServer, sqlite_url: str) -> None:
    upgrade_database(sqlite_url)
    sent = asyncio.Event()
    server = await doc_server(scripted(250, sent))
    result = await run_session(server.url, sqlite_url, sent)
    assert result.ticks_written == 250 and result.rejects_written == 1
    engine = make_engine(sqlite_url)
    ticks = read_frame(engine, "SELECT * FROM spot_ticks ORDER BY venue_time_ns")
    assert ticks.height == 250
    assert ticks["price"].to_list()[:2] == [95000.0, 95001.0]
    assert ticks["source"].unique().to_list() == ["coinbase_advanced"]
    assert ticks["venue_time_ns"][0] == ticks["tick_ts"][0] * 1_000_000 + 1  # full precision kept
    assert (ticks["received_ts"] > 0).all()
    events = read_frame(engine, "SELECT kind, expected_seq, received_seq, detail FROM feed_events ORDER BY id")
    assert events["kind"].to_list() == ["connect", "gap", "disconnect"]
    assert events.row(1)[1:3] == (251, 252)
    assert events["detail"][2] == "shutdown"
    rejects = read_frame(engine, "SELECT source, reason, raw FROM rejects")
    assert rejects.rows() == [("coinbase_ws", "malformed_json", "garbage")]
    frames = list(read_tape(tape_files(Path("data/tape"), "coinbase")))
    assert len(frames) == result.tape_frames == result.feed.frames
    assert frames[251].raw == "garbage"
    assert json.loads(frames[1].raw)["channel"] == "ticker"

    # A second session receiving the same ticks (a replay, an overlapping collector) adds no row.
    sent.clear()
    again = await run_session(server.url, sqlite_url, sent)
    assert again.ticks_written == 250
    assert read_frame(engine, "SELECT COUNT(*) AS n FROM spot_ticks")["n"][0] == 250
    engine.dispose()


async def test_run_collectors_stops_the_others_when_one_fails() -> None:
    stopped = asyncio.Event()

    async def healthy(stop: asyncio.Event) -> str:
        await stop.wait()
        stopped.set()
        return "clean"

    async def broken(stop: asyncio.Event) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await run_collectors({"a": healthy, "b": broken}, 30, handle_signals=False)
    assert stopped.is_set()


async def test_run_collectors_time_limit() -> None:
    async def waits(stop: asyncio.Event) -> str:
        await stop.wait()
        return "done"

    assert await run_collectors({"a": waits}, 0.05) == {"a": "done"}


def test_write_ticks_is_idempotent(migrated_url: str) -> None:
    from kbtc.pipeline.spot_collector import write_ticks
    from kbtc.venues.coinbase.parsing import parse_advanced_frame

    ticks = [
        parse_advanced_frame(advanced_ticker(i, 95_000.0 + i, nth_ts(i)), 1_795_000_000_000 + i, "BTC-USD").ticks[0]
        for i in range(50)
    ]
    engine = make_engine(migrated_url)
    assert write_ticks(engine, ticks[:30]) == 30
    write_ticks(engine, ticks)  # 30 of them again
    stored = read_frame(engine, "SELECT * FROM spot_ticks ORDER BY venue_time_ns")
    assert stored.height == 50
    assert stored["price"].to_list() == [t.price for t in ticks]
    assert stored["venue_time_ns"].to_list() == [t.venue_time_ns for t in ticks]
    assert stored["sequence_num"].to_list() == list(range(50))
    engine.dispose()

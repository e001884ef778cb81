"""The feed client against a documented-protocol server over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from cbserver import DocServer, RecordingSink, advanced_heartbeat, advanced_ticker, fast_config, nth_ts
from websockets.asyncio.server import ServerConnection

from kbtc.venues.coinbase.ws import CoinbaseFeed, FeedConfig, SequenceTracker
from kbtc.venues.records import FeedEventKind

StartServer = Callable[..., Awaitable[DocServer]]


@contextlib.asynccontextmanager
async def running(config: FeedConfig, sink: RecordingSink) -> AsyncIterator[CoinbaseFeed]:
    feed = CoinbaseFeed(config, sink)
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    try:
        yield feed
    finally:
        stop.set()
        async with asyncio.timeout(5):
            await task


async def heartbeats_forever(ws: ServerConnection, first_seq: int, period_s: float = 0.05) -> None:
    seq = first_seq
    while True:
        await ws.send(advanced_heartbeat(seq, str(seq)))
        seq += 1
        await asyncio.sleep(period_s)


def test_sequence_tracker() -> None:
    tracker = SequenceTracker(contiguous=True)
    assert tracker.observe(5) is None
    assert tracker.observe(6) is None
    assert tracker.observe(9) == 7
    assert tracker.observe(8) is None and tracker.out_of_order == 1
    assert tracker.observe(10) is None
    loose = SequenceTracker(contiguous=False)
    assert loose.observe(100, "BTC-USD") is None
    assert loose.observe(250, "BTC-USD") is None
    assert loose.observe(3, "ETH-USD") is None
    assert loose.observe(200, "BTC-USD") is None and loose.out_of_order == 1


async def test_subscribes_parses_and_detects_gaps(doc_server: StartServer) -> None:
    async def handler(ws: ServerConnection, index: int, subs: list[dict[str, Any]]) -> None:
        await ws.send(advanced_heartbeat(0, 1))
        await ws.send(advanced_ticker(1, 95000.0, nth_ts(1)))
        await ws.send(advanced_ticker(4, 95001.0, nth_ts(2)))  # 2 and 3 lost
        await ws.send("{this is not json")
        await ws.send(advanced_ticker(6, 95002.0, nth_ts(3), best_bid="96000"))  # crossed book; 5 lost (the garbage)
        await heartbeats_forever(ws, 7)

    server = await doc_server(handler)
    sink = RecordingSink()
    async with running(fast_config(server.url), sink) as feed:
        await sink.wait_for(lambda: len(sink.rejects) == 2)
    subs = server.subscriptions[0]
    assert [m["channel"] for m in subs] == ["ticker", "heartbeats"]
    assert all(m["product_ids"] == ["BTC-USD"] for m in subs)
    assert [t.price for t in sink.ticks] == [95000.0, 95001.0]
    assert [t.sequence_num for t in sink.ticks] == [1, 4]
    gaps = sink.kinds(FeedEventKind.GAP)
    assert [(g.expected_seq, g.received_seq) for g in gaps] == [(2, 4), (5, 6)]
    assert sorted(r.reason for r in sink.rejects) == ["crossed_book", "malformed_json"]
    assert feed.stats.gaps == 2 and feed.stats.rejects == 2
    # Every frame reaches the sink, including the malformed one.
    assert len(sink.frames) >= 5 and sink.frames[3][0] == "{this is not json"
    assert [e.kind for e in sink.events][:1] == [FeedEventKind.CONNECT]
    assert sink.events[-1].kind is FeedEventKind.DISCONNECT and sink.events[-1].detail == "shutdown"


@pytest.mark.parametrize("how", ["clean_1001", "abrupt"])
async def test_reconnects_after_any_close_and_resets_the_watermark(doc_server: StartServer, how: str) -> None:
    async def handler(ws: ServerConnection, index: int, subs: list[dict[str, Any]]) -> None:
        await ws.send(advanced_heartbeat(0, 1))
        await ws.send(advanced_ticker(1, 95000.0 + index, nth_ts(10 * index)))
        if index == 0:
            if how == "abrupt":
                ws.transport.abort()
            else:
                await ws.close(1001, "going away")
            return
        await heartbeats_forever(ws, 2)

    server = await doc_server(handler)
    sink = RecordingSink()
    async with running(fast_config(server.url), sink) as feed:
        await sink.wait_for(lambda: len(sink.ticks) == 2)
    assert server.connections == 2 and feed.stats.connects == 2
    kinds = [e.kind for e in sink.events]
    assert kinds[:3] == [FeedEventKind.CONNECT, FeedEventKind.DISCONNECT, FeedEventKind.CONNECT]
    first_disconnect = sink.kinds(FeedEventKind.DISCONNECT)[0]
    assert ("1001" in (first_disconnect.detail or "")) if how == "clean_1001" else "lost" in (first_disconnect.detail or "")
    second_connect = sink.kinds(FeedEventKind.CONNECT)[1]
    assert second_connect.duration_ms is not None and second_connect.duration_ms >= 0  # the downtime
    assert sink.kinds(FeedEventKind.GAP) == []  # the second connection restarts at 0
    assert sink.ticks[0].sequence_num == sink.ticks[1].sequence_num == 1


async def test_no_heartbeats_means_reconnect(doc_server: StartServer) -> None:
    async def handler(ws: ServerConnection, index: int, subs: list[dict[str, Any]]) -> None:
        if index == 0:
            await ws.send(advanced_heartbeat(0, 1))
            await ws.wait_closed()  # a silent stall: the socket stays open until the client gives up
            return
        await heartbeats_forever(ws, 0)

    server = await doc_server(handler)
    sink = RecordingSink()
    async with running(fast_config(server.url), sink):
        await sink.wait_for(lambda: len(sink.kinds(FeedEventKind.CONNECT)) == 2)
    detail = sink.kinds(FeedEventKind.DISCONNECT)[0].detail or ""
    assert detail.startswith("no heartbeat for")


async def test_stale_ticker_while_heartbeats_flow(doc_server: StartServer) -> None:
    resume = asyncio.Event()

    async def handler(ws: ServerConnection, index: int, subs: list[dict[str, Any]]) -> None:
        await ws.send(advanced_ticker(0, 95000.0, nth_ts(1)))
        beats = asyncio.create_task(heartbeats_forever(ws, 1))
        await resume.wait()
        beats.cancel()
        await ws.send(advanced_ticker(1000, 95010.0, nth_ts(2)))  # new numbering: a gap, recorded as such
        await heartbeats_forever(ws, 1001)

    server = await doc_server(handler)
    sink = RecordingSink()
    async with running(fast_config(server.url), sink) as feed:
        await sink.wait_for(lambda: len(sink.kinds(FeedEventKind.STALE)) == 1)
        opened = sink.kinds(FeedEventKind.STALE)[0]
        assert opened.duration_ms is None and "no ticker" in (opened.detail or "")
        resume.set()
        await sink.wait_for(lambda: len(sink.kinds(FeedEventKind.STALE)) == 2)
    closed = sink.kinds(FeedEventKind.STALE)[1]
    # The closing event has the opening event's key and carries the stale period's length.
    assert (closed.connection_id, closed.event_ts) == (opened.connection_id, opened.event_ts)
    assert closed.duration_ms is not None and closed.duration_ms >= 400
    assert feed.stats.stale_periods == 1
    assert sink.kinds(FeedEventKind.DISCONNECT)[0].detail == "shutdown"  # heartbeats kept the socket up


async def test_error_frame_and_empty_ack_are_recorded(doc_server: StartServer) -> None:
    async def handler(ws: ServerConnection, index: int, subs: list[dict[str, Any]]) -> None:
        await ws.send('{"type":"error","message":"authentication failure"}')
        await ws.send('{"channel":"subscriptions","client_id":"","timestamp":"2026-11-25T10:00:00Z","sequence_num":0,"events":[{"subscriptions":{}}]}')
        await heartbeats_forever(ws, 1)

    server = await doc_server(handler)
    sink = RecordingSink()
    async with running(fast_config(server.url), sink):
        await sink.wait_for(lambda: len(sink.kinds(FeedEventKind.ERROR)) == 2)
    details = [e.detail for e in sink.kinds(FeedEventKind.ERROR)]
    assert details == ["authentication failure", "empty subscriptions ack"]


async def test_exchange_feed(doc_server: StartServer) -> None:
    async def handler(ws: ServerConnection, index: int, subs: list[dict[str, Any]]) -> None:
        await ws.send('{"type":"subscriptions","channels":[{"name":"ticker","product_ids":["BTC-USD"]}]}')
        seq = 100
        for i in range(3):
            seq += 7  # the ticker sequence skips every full-channel message: not a gap
            ticker = {
                "type": "ticker", "sequence": seq, "product_id": "BTC-USD", "price": f"9500{i}.5",
                "best_bid": "95000", "best_bid_size": "1", "best_ask": "95100", "best_ask_size": "2", "side": "buy",
                "time": f"2026-11-25T10:00:0{i}.123456Z", "trade_id": i, "last_size": "0.1",
            }
            await ws.send(json.dumps(ticker))
            heartbeat = {"type": "heartbeat", "sequence": seq + 1, "last_trade_id": i, "product_id": "BTC-USD",
                         "time": "2026-11-25T10:00:00Z"}
            await ws.send(json.dumps(heartbeat))
        await ws.wait_closed()

    server = await doc_server(handler, expected_subscribes=1)
    sink = RecordingSink()
    async with running(fast_config(server.url, source="exchange"), sink):
        await sink.wait_for(lambda: len(sink.ticks) == 3)
    (sub,) = server.subscriptions[0]
    assert sub == {"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["ticker", "heartbeat"]}
    assert [t.source for t in sink.ticks] == ["coinbase_exchange"] * 3
    assert [t.venue_time_ns % 10**9 for t in sink.ticks] == [123456000] * 3
    assert sink.kinds(FeedEventKind.GAP) == []


async def test_connect_failures_retry_until_stopped(unused_tcp_port: int) -> None:
    sink = RecordingSink()
    async with running(fast_config(f"ws://127.0.0.1:{unused_tcp_port}"), sink) as feed:
        await sink.wait_for(lambda: feed.stats.connect_failures >= 3)
    assert feed.stats.connects == 0
    assert all(e.kind is FeedEventKind.ERROR and (e.detail or "").startswith("connect failed") for e in sink.events)


async def test_reordered_frame_fills_its_gap_and_duplicates_are_ignored(doc_server: StartServer) -> None:
    async def handler(ws: ServerConnection, index: int, subs: list[dict[str, Any]]) -> None:
        await ws.send(advanced_heartbeat(0, 1))
        await ws.send(advanced_ticker(1, 95000.0, nth_ts(1)))
        await ws.send(advanced_ticker(3, 95002.0, nth_ts(3)))  # 2 is late, not lost
        await ws.send(advanced_ticker(2, 95001.0, nth_ts(2)))
        await ws.send(advanced_ticker(3, 95002.0, nth_ts(3)))  # a duplicate
        await heartbeats_forever(ws, 4)

    server = await doc_server(handler)
    sink = RecordingSink()
    async with running(fast_config(server.url), sink) as feed:
        await sink.wait_for(lambda: feed.stats.gaps_filled == 1 and feed.stats.out_of_order == 2)
    opened, filled = sink.kinds(FeedEventKind.GAP)
    assert (opened.expected_seq, opened.received_seq) == (2, 3)
    assert (filled.connection_id, filled.event_ts, filled.expected_seq) == (opened.connection_id, opened.event_ts, 2)
    assert filled.duration_ms == 0 and (filled.detail or "").startswith("filled")
    assert sorted(t.price for t in sink.ticks) == [95000.0, 95001.0, 95002.0, 95002.0]  # the store dedups

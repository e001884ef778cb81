"""The stream client against an in-test WebSocket server on 127.0.0.1 speaking the documented messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fake_ws import FakeKalshiWs
from kalshi_samples import sample
from websockets.asyncio.server import ServerConnection

from kbtc.venues.backoff import Backoff
from kbtc.venues.kalshi.auth import KalshiSigner
from kbtc.venues.kalshi.errors import KalshiAuthError, KalshiStreamError
from kbtc.venues.kalshi.marketdata import QuoteRecord
from kbtc.venues.kalshi.ws import BookUpdate, KalshiStream, StreamItem, StreamSettings
from kbtc.venues.records import FeedEventKind, FeedEventRecord

FAST = StreamSettings(backoff=Backoff(base_s=0.01, cap_s=0.05), silence_timeout_s=5.0)


async def _take(items: AsyncGenerator[StreamItem, None], until: Any) -> list[StreamItem]:
    """Collect items until `until(collected)` is true (failing after 5 s)."""
    got: list[StreamItem] = []
    async with asyncio.timeout(5.0):
        async for item in items:
            got.append(item)
            if until(got):
                return got
    return got


def _kinds(items: list[StreamItem]) -> list[FeedEventKind]:
    return [i.kind for i in items if isinstance(i, FeedEventRecord)]


async def test_signed_subscribe_and_parsed_items(rsa_key: rsa.RSAPrivateKey, rsa_pem: bytes) -> None:
    async def on_subscribed(ws: ServerConnection, channel: str, tickers: list[str]) -> None:
        if channel == "ticker":
            await ws.send(json.dumps({**sample("ws_ticker.json"), "sid": server.sids["ticker"]}))

    async with FakeKalshiWs(rsa_key.public_key()) as server:
        server.on_subscribed = on_subscribed
        frames: list[str] = []
        stream = KalshiStream(server.url, ["FED-23DEC-T3.00"], signer=KalshiSigner.from_pem("k", rsa_pem),
                              settings=FAST, on_frame=lambda raw, ts, conn: frames.append(raw))
        async with contextlib.aclosing(stream.items()) as items:
            got = await _take(items, lambda g: any(isinstance(i, QuoteRecord) for i in g))
    channels = [c["params"]["channels"][0] for c in server.commands if c["cmd"] == "subscribe"]
    assert channels == ["orderbook_delta", "ticker", "trade", "market_lifecycle_v2"]
    ids = [c["id"] for c in server.commands]
    assert ids == sorted(set(ids))  # unique, counting up
    assert all(c["params"]["market_tickers"] == ["FED-23DEC-T3.00"] for c in server.commands[:3])
    assert _kinds(got)[0] == FeedEventKind.CONNECT
    book = next(i for i in got if isinstance(i, BookUpdate))
    assert book.is_snapshot and book.book.best_yes_bid_cents() == 41.0
    quote = next(i for i in got if isinstance(i, QuoteRecord))
    assert (quote.yes_bid_cents, quote.no_ask_cents) == (45.0, 55.0)
    assert len(frames) == stream.frames and json.loads(frames[0])["type"] == "subscribed"


async def test_signature_rejection_is_a_clear_fatal_error(rsa_pem: bytes) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with FakeKalshiWs(other.public_key()) as server:
        stream = KalshiStream(server.url, ["M"], signer=KalshiSigner.from_pem("k", rsa_pem), settings=FAST)
        with pytest.raises(KalshiAuthError, match=r"HTTP 401.*invalid signature"):
            async with contextlib.aclosing(stream.items()) as items:
                await _take(items, lambda g: False)


async def test_seq_gap_restores_the_servers_book() -> None:
    async with FakeKalshiWs() as server:
        stream = KalshiStream(server.url, ["A", "B"], settings=FAST)
        async with contextlib.aclosing(stream.items()) as items:
            await _take(items, lambda g: sum(isinstance(i, BookUpdate) for i in g) == 2)
            ws = server.connections[0]
            await ws.send(server.delta_frame("A", "yes", "0.4100", "-5.00"))
            await ws.send(server.delta_frame("A", "no", "0.5530", "3.50"))  # sub-penny level
            await ws.send(server.delta_frame("B", "yes", "0.4000", "2.00", skip_seq=True))  # lost: a gap
            await ws.send(server.delta_frame("A", "yes", "0.3900", "1.00"))
            got = await _take(items, lambda g: sum(isinstance(i, BookUpdate) and i.is_snapshot for i in g) == 2)
            await ws.send(server.delta_frame("B", "no", "0.5500", "-7.00"))
            got += await _take(items, lambda g: any(isinstance(i, BookUpdate) for i in g))
    gap = next(i for i in got if isinstance(i, FeedEventRecord) and i.kind == FeedEventKind.GAP)
    assert (gap.expected_seq, gap.received_seq) == (5, 6)
    assert FeedEventKind.SNAPSHOT in _kinds(got)
    snapshot_cmd = [c for c in server.commands if c["cmd"] == "update_subscription"]
    assert snapshot_cmd[0]["params"] == {"sids": [server.sids["orderbook_delta"]], "market_tickers": ["A", "B"],
                                         "action": "get_snapshot"}
    for ticker in ("A", "B"):
        assert stream.books[ticker].yes_bids == server.books[ticker].yes_bids
        assert stream.books[ticker].no_bids == server.books[ticker].no_bids
    assert stream.books["A"].best_yes_ask_cents() == 44.7


async def test_abrupt_drop_reconnects_and_resubscribes() -> None:
    async with FakeKalshiWs() as server:
        stream = KalshiStream(server.url, ["A"], settings=FAST)
        async with contextlib.aclosing(stream.items()) as items:
            await _take(items, lambda g: any(isinstance(i, BookUpdate) for i in g))
            server.connections[0].transport.abort()
            got = await _take(items, lambda g: FeedEventKind.RESUBSCRIBE in _kinds(g)
                              and any(isinstance(i, BookUpdate) for i in g))
            await stream.add_markets(["B"])
            got += await _take(items, lambda g: any(isinstance(i, BookUpdate) and i.book.market_ticker == "B"
                                                    for i in g))
            await stream.remove_markets(["A"])
            await asyncio.sleep(0.05)
    assert _kinds(got)[:3] == [FeedEventKind.DISCONNECT, FeedEventKind.CONNECT, FeedEventKind.RESUBSCRIBE]
    assert stream.connects == 2
    updates = [c["params"] for c in server.commands if c["cmd"] == "update_subscription"]
    assert {"action": "add_markets", "market_tickers": ["B"]}.items() <= updates[0].items()
    assert [u["action"] for u in updates] == ["add_markets"] * 3 + ["delete_markets"] * 3  # one per market channel
    assert "A" not in stream.books


async def test_silence_watchdog_and_error_codes() -> None:
    async def on_subscribed(ws: ServerConnection, channel: str, tickers: list[str]) -> None:
        if channel == "market_lifecycle_v2" and len(server.connections) == 1:
            await ws.send(json.dumps({"id": 0, "type": "error", "msg": {"code": 25, "msg": "Subscription buffer overflow"}}))

    async with FakeKalshiWs() as server:
        server.on_subscribed = on_subscribed
        settings = StreamSettings(backoff=Backoff(0.01, 0.05), silence_timeout_s=0.3)
        stream = KalshiStream(server.url, ["A"], settings=settings)
        async with contextlib.aclosing(stream.items()) as items:
            got = await _take(items, lambda g: FeedEventKind.RESUBSCRIBE in _kinds(g))
    kinds = _kinds(got)
    assert FeedEventKind.ERROR in kinds and FeedEventKind.GAP in kinds and FeedEventKind.STALE in kinds
    assert any(c["cmd"] == "update_subscription" and c["params"]["action"] == "get_snapshot" for c in server.commands)

    async def auth_required(ws: ServerConnection, channel: str, tickers: list[str]) -> None:
        await ws.send(json.dumps({"id": 1, "type": "error", "msg": {"code": 9, "msg": "Authentication required"}}))

    async with FakeKalshiWs() as server:
        server.on_subscribed = auth_required
        stream = KalshiStream(server.url, ["A"], settings=FAST)
        with pytest.raises(KalshiAuthError, match="Authentication required"):
            async with contextlib.aclosing(stream.items()) as items:
                await _take(items, lambda g: False)


def test_malformed_command_errors_are_fatal() -> None:
    stream = KalshiStream("ws://unused/trade-api/ws/v2")
    with pytest.raises(KalshiStreamError, match="Unknown channel name"):
        stream.handle_frame('{"id": 3, "type": "error", "msg": {"code": 8, "msg": "Unknown channel name"}}', 5)
    items = stream.handle_frame('{"id": 4, "type": "error", "msg": {"code": 16, "msg": "Market not found"}}', 5)
    assert [getattr(i, "detail", "") for i in items] == ["code 16: Market not found"]


def test_bad_frames_become_rejects() -> None:
    stream = KalshiStream("ws://unused/trade-api/ws/v2")
    reject = stream.handle_frame('{"type": "ticker", "sid": 1, "msg": {"yes_bid_dollars": "0.5"}}', 5)[0]
    assert getattr(reject, "reason", "") == "market_ticker: missing" and getattr(reject, "source", "") == "kalshi.ws.ticker"
    assert getattr(stream.handle_frame("not json", 5)[0], "source", "") == "kalshi.ws.unparsed"
    assert stream.handle_frame(json.dumps(sample("ws_event_fee_update.json")), 5) == []
    index = stream.handle_frame(json.dumps(sample("ws_cfbenchmarks_value.json")), 5)
    assert getattr(index[-1], "value_usd", None) == 68000.12

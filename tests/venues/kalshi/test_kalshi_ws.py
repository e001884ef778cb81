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
from kbtc.venues.kalshi.ws import MAX_SNAPSHOT_RETRIES, BookUpdate, KalshiStream, StreamItem, StreamSettings
from kbtc.venues.records import FeedEventKind, FeedEventRecord, RejectRecord

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


async def test_unusable_in_order_delta_resnapshots_its_book() -> None:
    async with FakeKalshiWs() as server:
        stream = KalshiStream(server.url, ["A", "B"], settings=FAST)
        async with contextlib.aclosing(stream.items()) as items:
            await _take(items, lambda g: sum(isinstance(i, BookUpdate) for i in g) == 2)
            ws = server.connections[0]
            broken = json.loads(server.delta_frame("A", "yes", "0.4100", "-5.00"))  # the venue's book changed
            del broken["msg"]["delta_fp"]  # ... but the frame we get cannot say how
            await ws.send(json.dumps(broken))
            got = await _take(items, lambda g: any(isinstance(i, BookUpdate) and i.is_snapshot for i in g))
            await ws.send(server.delta_frame("B", "no", "0.5500", "-7.00"))
            got += await _take(items, lambda g: any(isinstance(i, BookUpdate) and not i.is_snapshot for i in g))
    reject = next(i for i in got if isinstance(i, RejectRecord))
    assert (reject.source, reject.reason) == ("kalshi.ws.orderbook_delta", "delta_fp: missing")
    gap = next(i for i in got if isinstance(i, FeedEventRecord) and i.kind == FeedEventKind.GAP)
    assert gap.detail == "unusable orderbook_delta for A: delta_fp: missing"
    assert FeedEventKind.SNAPSHOT in _kinds(got)
    snapshot_cmd = [c["params"] for c in server.commands if c["cmd"] == "update_subscription"]
    assert snapshot_cmd == [{"sids": [server.sids["orderbook_delta"]], "market_tickers": ["A"],
                             "action": "get_snapshot"}]  # only the book the frame was for
    for ticker in ("A", "B"):
        assert (stream.books[ticker].yes_bids, stream.books[ticker].no_bids) == (
            server.books[ticker].yes_bids, server.books[ticker].no_bids)


def test_unusable_snapshots_are_requested_again_a_few_times_only() -> None:
    stream = KalshiStream("ws://unused/trade-api/ws/v2", ["A"])
    bad = json.dumps({"type": "orderbook_snapshot", "sid": 1, "seq": 1,
                      "msg": {"market_ticker": "A", "yes_dollars_fp": [["0.40"]]}})
    outcomes = []
    for _ in range(MAX_SNAPSHOT_RETRIES + 1):
        items = stream.handle_frame(bad.replace('"seq": 1', f'"seq": {len(outcomes) + 1}'), 5)
        assert isinstance(items[0], RejectRecord) and items[0].reason.startswith("book level is not [price, size]")
        outcomes.append([i.kind for i in items if isinstance(i, FeedEventRecord)])
    assert outcomes[:-1] == [[FeedEventKind.GAP, FeedEventKind.SNAPSHOT]] * MAX_SNAPSHOT_RETRIES
    assert outcomes[-1] == [FeedEventKind.ERROR] and stream.books["A"].stale
    good = json.dumps({"type": "orderbook_snapshot", "sid": 1, "seq": MAX_SNAPSHOT_RETRIES + 2,
                       "msg": {"market_ticker": "A", "yes_dollars_fp": [["0.40", "1.00"]]}})
    assert isinstance(stream.handle_frame(good, 6)[0], BookUpdate) and not stream.books["A"].stale
    # An unreadable ticker: every tracked book is re-snapshotted.
    items = stream.handle_frame(json.dumps({"type": "orderbook_delta", "sid": 1, "seq": MAX_SNAPSHOT_RETRIES + 3,
                                            "msg": {"side": "yes", "price_dollars": "0.4", "delta_fp": "1"}}), 7)
    assert getattr(items[0], "reason", "") == "market_ticker: missing" and stream.books["A"].stale
    assert [getattr(i, "detail", "") for i in items[1:]] == ["unusable orderbook_delta for every market: "
                                                             "market_ticker: missing", "1 markets"]


def test_legacy_cent_snapshots_and_deltas_build_the_same_book() -> None:
    current, legacy = (KalshiStream("ws://unused/trade-api/ws/v2", ["M"]) for _ in range(2))
    frames = {
        current: [{"yes_dollars_fp": [["0.4000", "10.00"]], "no_dollars_fp": [["0.5500", "7.00"]]},
                  {"side": "yes", "price_dollars": "0.4100", "delta_fp": "5.00"},
                  {"side": "no", "price_dollars": "0.5500", "delta_fp": "-7.00"}],
        legacy: [{"yes": [[40, 10]], "no": [[55, 7]]},
                 {"side": "yes", "price": 41, "delta": 5},
                 {"side": "no", "price_dollars": "0.5500", "delta": -7}],  # Jan 2026: dollars next to int counts
    }
    for stream, msgs in frames.items():
        snapshot, *deltas = msgs
        items = stream.handle_frame(json.dumps({"type": "orderbook_snapshot", "sid": 1, "seq": 1,
                                                "msg": {"market_ticker": "M", **snapshot}}), 5)
        for seq, delta in enumerate(deltas, start=2):
            items += stream.handle_frame(json.dumps({"type": "orderbook_delta", "sid": 1, "seq": seq,
                                                     "msg": {"market_ticker": "M", **delta}}), 5)
        assert [type(i) for i in items] == [BookUpdate] * 3
    assert legacy.books["M"].yes_bids == current.books["M"].yes_bids == {4000: 10.0, 4100: 5.0}
    assert legacy.books["M"].no_bids == current.books["M"].no_bids == {}
    reject = legacy.handle_frame(json.dumps({"type": "orderbook_delta", "sid": 1, "seq": 4, "msg": {
        "market_ticker": "M", "side": "yes", "price": 140, "delta": 1}}), 5)[0]
    assert getattr(reject, "reason", "") == "price: outside 0-100 cents: 140"

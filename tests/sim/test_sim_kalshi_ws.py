"""The simulated Kalshi WebSocket: handshake auth, commands and error codes, channels, seq, lifecycle."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sim_support import START_MS, WsClient, fast_config, index_tick, sample
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from kbtc.sim.kalshi.auth import ApiKey, sign
from kbtc.sim.simulator import ManualClock, Simulator

PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def wsim(clock: ManualClock) -> AsyncIterator[Simulator]:
    async with Simulator(fast_config(tick_interval_s=0.02), clock=clock) as simulator:
        yield simulator


@pytest.fixture
async def client(wsim: Simulator) -> AsyncIterator[WsClient]:
    async with connect(wsim.kalshi_ws_url) as connection:
        yield WsClient(connection)


async def open_markets(sim: Simulator, series: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=sim.kalshi_rest_url) as rest:
        return (await rest.get("/markets", params={"series_ticker": series, "status": "open"})).json()["markets"]


def apply(book: dict[str, dict[str, float]], message: dict[str, Any]) -> None:
    msg = message["msg"]
    if message["type"] == "orderbook_snapshot":
        book["yes"] = {p: float(c) for p, c in msg.get("yes_dollars_fp", [])}
        book["no"] = {p: float(c) for p, c in msg.get("no_dollars_fp", [])}
        return
    side = book[msg["side"]]
    side[msg["price_dollars"]] = round(side.get(msg["price_dollars"], 0.0) + float(msg["delta_fp"]), 2)
    if side[msg["price_dollars"]] == 0:
        del side[msg["price_dollars"]]


async def test_handshake_requires_a_valid_signature(clock: ManualClock) -> None:
    key = ApiKey("key-1", PRIVATE.public_key())
    async with Simulator(fast_config(api_keys=(key,)), clock=clock) as sim:
        with pytest.raises(InvalidStatus) as missing:
            async with connect(sim.kalshi_ws_url):
                pass
        assert missing.value.response.status_code == 401
        stale = clock() - 120_000
        headers = {"KALSHI-ACCESS-KEY": "key-1", "KALSHI-ACCESS-TIMESTAMP": str(stale),
                   "KALSHI-ACCESS-SIGNATURE": sign(PRIVATE, stale, "GET", "/trade-api/ws/v2")}
        with pytest.raises(InvalidStatus):
            async with connect(sim.kalshi_ws_url, additional_headers=headers):
                pass
        now = clock()
        headers = {"KALSHI-ACCESS-KEY": "key-1", "KALSHI-ACCESS-TIMESTAMP": str(now),
                   "KALSHI-ACCESS-SIGNATURE": sign(PRIVATE, now, "GET", "/trade-api/ws/v2")}
        async with connect(sim.kalshi_ws_url, additional_headers=headers) as connection:
            ws = WsClient(connection)
            await ws.command("subscribe", channels=["cfbenchmarks_value"], index_ids=["BRTI"])
            refused = await ws.recv()
            assert refused["type"] == "error" and refused["msg"]["code"] == 9  # key not entitled
        with pytest.raises(InvalidStatus) as wrong_path:
            async with connect(sim.kalshi_ws_url.replace("/ws/v2", "/ws/v1")):
                pass
        assert wrong_path.value.response.status_code == 404


async def test_commands_and_replies_match_the_documented_shapes(wsim: Simulator, client: WsClient) -> None:
    documented = sample("ws_commands_and_control_messages.json")
    markets = await open_markets(wsim, "KXBTCD")
    first, second = markets[0]["ticker"], markets[1]["ticker"]
    sub_id = await client.command("subscribe", channels=["orderbook_delta"], market_ticker=first)
    subscribed, snapshot = await client.recv(), await client.recv()
    assert subscribed == {"id": sub_id, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 1}}
    assert set(subscribed) == set(documented["subscribed"])
    assert snapshot["type"] == "orderbook_snapshot" and snapshot["seq"] == 1 and snapshot["sid"] == 1
    assert {"market_ticker", "market_id"} <= set(snapshot["msg"])
    assert set(snapshot["msg"]) <= set(sample("ws_orderbook_snapshot.json")["msg"])

    add_id = await client.command("update_subscription", sids=[1], market_tickers=[second], action="add_markets")
    ok, added = await client.recv(), await client.recv()
    assert ok == {"id": add_id, "sid": 1, "seq": 2, "type": "ok", "msg": {"market_tickers": sorted([first, second])}}
    assert set(ok) == set(documented["ok"])
    assert added["type"] == "orderbook_snapshot" and added["msg"]["market_ticker"] == second and added["seq"] == 3

    snap_id = await client.command("update_subscription", sid=1, market_tickers=[first], action="get_snapshot")
    ok, fresh = await client.recv(), await client.recv()
    assert ok["id"] == snap_id and ok["seq"] == 4 and fresh["seq"] == 5
    assert fresh["msg"]["market_ticker"] == first

    await client.command("update_subscription", sids=[1], market_tickers=[second], action="delete_markets")
    assert (await client.recv())["msg"]["market_tickers"] == [first]

    await client.command("subscribe", channels=["ticker", "trade"])
    assert [(await client.recv())["msg"]["sid"] for _ in range(2)] == [2, 3]
    list_id = await client.command("list_subscriptions")
    listing = await client.recv()
    assert listing == {"id": list_id, "type": "ok", "msg": [
        {"channel": "orderbook_delta", "sid": 1}, {"channel": "ticker", "sid": 2}, {"channel": "trade", "sid": 3}]}

    unsub_id = await client.command("unsubscribe", sids=[2])
    unsubscribed = await client.recv()
    assert set(unsubscribed) == set(documented["unsubscribed"])
    assert (unsubscribed["id"], unsubscribed["sid"], unsubscribed["type"]) == (unsub_id, 2, "unsubscribed")


@pytest.mark.parametrize(("command", "code"), [
    ({"cmd": "dance"}, 5),
    ({"cmd": "subscribe"}, 2),
    ({"cmd": "subscribe", "params": {}}, 3),
    ({"cmd": "subscribe", "params": {"channels": ["ticker_v2"]}}, 8),
    ({"cmd": "subscribe", "params": {"channels": ["orderbook_delta"]}}, 14),
    ({"cmd": "subscribe", "params": {"channels": ["orderbook_delta"], "market_ticker": "NOPE-1"}}, 16),
    ({"cmd": "subscribe", "params": {"channels": ["cfbenchmarks_value"]}}, 24),
    ({"cmd": "unsubscribe", "params": {"sids": []}}, 4),
    ({"cmd": "unsubscribe", "params": {"sids": [99]}}, 7),
    ({"cmd": "update_subscription", "params": {"sids": [1, 2], "action": "add_markets"}}, 12),
    ({"cmd": "update_subscription", "params": {"sid": 99, "action": "add_markets"}}, 7),
])
async def test_error_codes(client: WsClient, command: dict[str, Any], code: int) -> None:
    await client.connection.send(json.dumps({"id": 7, **command}))
    reply = await client.recv()
    assert reply == {"id": 7, "type": "error", "msg": {"code": code, "msg": reply["msg"]["msg"]}}


async def test_bad_json_and_bad_actions(wsim: Simulator, client: WsClient) -> None:
    await client.connection.send("{not json")
    assert (await client.recv())["msg"]["code"] == 1
    ticker = (await open_markets(wsim, "KXBTC15M"))[0]["ticker"]
    await client.command("subscribe", channels=["orderbook_delta"], market_ticker=ticker)
    await client.until(lambda m: m["type"] == "orderbook_snapshot")
    await client.command("update_subscription", sids=[1], market_tickers=[ticker])
    assert (await client.recv())["msg"]["code"] == 15
    await client.command("update_subscription", sids=[1], market_tickers=[ticker], action="explode")
    assert (await client.recv())["msg"]["code"] == 13


async def test_book_deltas_keep_seq_and_rebuild_the_rest_book(
    wsim: Simulator, client: WsClient, clock: ManualClock
) -> None:
    tickers = [m["ticker"] for m in (await open_markets(wsim, "KXBTC"))[4:8]]
    await client.command("subscribe", channels=["orderbook_delta"], market_tickers=tickers)
    await client.command("subscribe", channels=["cfbenchmarks_value"], index_ids=["BRTI"])
    messages = await client.until(lambda m: m.get("type") == "subscribed" and m["msg"]["sid"] == 2)
    books: dict[str, dict[str, dict[str, float]]] = {t: {"yes": {}, "no": {}} for t in tickers}
    seqs: dict[int, list[int]] = {}
    deltas = 0
    for _ in range(12):
        second = clock.advance(1) // 1000
        messages += await client.until(index_tick(second))
    for message in messages:
        if "seq" in message:
            seqs.setdefault(message["sid"], []).append(message["seq"])
        if message["type"] in ("orderbook_snapshot", "orderbook_delta"):
            deltas += message["type"] == "orderbook_delta"
            apply(books[message["msg"]["market_ticker"]], message)
    for sid_seqs in seqs.values():
        assert sid_seqs == list(range(1, len(sid_seqs) + 1))
    assert deltas > 0
    async with httpx.AsyncClient(base_url=wsim.kalshi_rest_url) as rest:
        for ticker in tickers:
            rest_book = (await rest.get(f"/markets/{ticker}/orderbook")).json()["orderbook_fp"]
            for side in ("yes", "no"):
                assert books[ticker][side] == {p: float(c) for p, c in rest_book[f"{side}_dollars"]}


async def test_ticker_and_trade_messages(wsim: Simulator, client: WsClient, clock: ManualClock) -> None:
    await client.command("subscribe", channels=["ticker", "trade"], send_initial_snapshot=True)
    await client.command("subscribe", channels=["cfbenchmarks_value"], index_ids=["all"])
    messages = await client.until(lambda m: m.get("type") == "subscribed" and m["msg"]["sid"] == 3)
    for _ in range(6):
        messages += await client.until(index_tick(clock.advance(1) // 1000))
    tickers = [m for m in messages if m["type"] == "ticker"]
    trades = [m for m in messages if m["type"] == "trade"]
    assert tickers and trades
    assert set(tickers[0]) == set(sample("ws_ticker.json"))
    assert set(tickers[0]["msg"]) == set(sample("ws_ticker.json")["msg"])
    assert set(sample("ws_trade.json")["msg"]) <= set(trades[0]["msg"])
    assert all("seq" not in m for m in tickers + trades)


async def test_lifecycle_through_settlement(wsim: Simulator, client: WsClient, clock: ManualClock) -> None:
    window = (await open_markets(wsim, "KXBTC15M"))[0]
    await client.command("subscribe", channels=["market_lifecycle_v2"])
    await client.recv()
    clock.advance(150)  # past the close, the determination (+10 s) and the settlement timer (+1 s)
    events = await client.until(lambda m: m["msg"].get("event_type") == "settled"
                                and m["msg"]["market_ticker"] == window["ticker"])
    kinds = [(m["type"], m["msg"].get("event_type")) for m in events]
    assert ("market_lifecycle_v2", "created") in kinds and ("event_lifecycle", None) in kinds
    assert ("market_lifecycle_v2", "metadata_updated") in kinds
    created = next(m for m in events if m["msg"].get("event_type") == "created")
    assert set(sample("ws_market_lifecycle_v2_created.json")["msg"]) <= set(created["msg"])
    determined = next(m["msg"] for m in events if m["msg"].get("event_type") == "determined"
                      and m["msg"]["market_ticker"] == window["ticker"])
    async with httpx.AsyncClient(base_url=wsim.kalshi_rest_url) as rest:
        final = (await rest.get(f"/markets/{window['ticker']}")).json()["market"]
    assert final["status"] == "finalized" and determined["result"] == final["result"]
    assert determined["settlement_value"] == final["settlement_value_dollars"]


async def test_cfbenchmarks_average_at_the_close_is_the_settlement_value(
    wsim: Simulator, client: WsClient, clock: ManualClock
) -> None:
    window = (await open_markets(wsim, "KXBTC15M"))[0]
    close_s = int(datetime.fromisoformat(window["close_time"].replace("Z", "+00:00")).timestamp())
    clock.now_ms = (close_s - 3) * 1000
    await client.command("subscribe", channels=["cfbenchmarks_value"], index_ids=["BRTI"])
    await client.recv()
    for _ in range(3):
        clock.advance(1)
    ticks = await client.until(index_tick(close_s))
    last = ticks[-1]["msg"]
    assert set(last) == set(sample("ws_cfbenchmarks_value.json")["msg"])
    settlement = last["last_60s_windowed_average_15min"]
    assert settlement["window_size"] == 60
    # avg_60s_data is the trailing [time − 60 000, time), as in the documented sample: the close print is not in it
    # yet; one tick later the trailing window is the settlement window.
    trailing = last["avg_60s_data"]
    documented = sample("ws_cfbenchmarks_value.json")["msg"]
    time_ms = json.loads(documented["data"])["time"]
    assert (documented["avg_60s_data"]["window_start_ts_ms"],
            documented["avg_60s_data"]["window_end_ts_exclusive"]) == (time_ms - 60_000, time_ms)
    assert (trailing["window_start_ts_ms"], trailing["window_end_ts_exclusive"], trailing["window_size"]) == (
        close_s * 1000 - 60_000, close_s * 1000, 60)
    source = wsim.venue.catalog.source
    assert trailing["value"] == f"{source.index_at_seconds(np.arange(close_s - 60, close_s)).mean():.8f}"
    clock.advance(1)
    after = (await client.until(index_tick(close_s + 1)))[-1]["msg"]
    assert after["avg_60s_data"]["value"] == settlement["value"]
    clock.advance(30)
    async with httpx.AsyncClient(base_url=wsim.kalshi_rest_url) as rest:
        final = (await rest.get(f"/markets/{window['ticker']}")).json()["market"]
    assert final["expiration_value"] == f"{float(settlement['value']):.2f}"


async def test_same_seed_same_stream(clock: ManualClock) -> None:
    async def stream() -> list[Any]:
        clock.now_ms = START_MS
        async with Simulator(fast_config(tick_interval_s=0.02), clock=clock) as sim, \
                connect(sim.kalshi_ws_url) as connection:
            ws = WsClient(connection)
            tickers = [m["ticker"] for m in await open_markets(sim, "KXBTCD")][:5]
            await ws.command("subscribe", channels=["orderbook_delta", "trade"], market_tickers=tickers)
            await ws.command("subscribe", channels=["cfbenchmarks_value"], index_ids=["BRTI"])
            out = await ws.until(lambda m: m.get("type") == "subscribed" and m["msg"]["sid"] == 3)
            for _ in range(4):
                out += await ws.until(index_tick(clock.advance(1) // 1000))
            return out

    assert await stream() == await stream()


async def test_server_pings_with_heartbeat_body(clock: ManualClock) -> None:
    async with Simulator(fast_config(ping_interval_s=0.1), clock=clock) as sim:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.kalshi_ws_port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /trade-api/ws/v2 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 101")
        frame = await asyncio.wait_for(reader.readexactly(2 + len(b"heartbeat")), 3)
        assert frame[0] == 0x89 and frame[1] == len(b"heartbeat") and frame[2:] == b"heartbeat"  # FIN + ping
        writer.close()
        await writer.wait_closed()


async def test_legacy_cent_fields_on_the_stream(clock: ManualClock) -> None:
    async with Simulator(fast_config(legacy_cents=True, tick_interval_s=0.02), clock=clock) as sim, \
            connect(sim.kalshi_ws_url) as connection:
        ws = WsClient(connection)
        ticker = (await open_markets(sim, "KXBTC15M"))[0]["ticker"]
        await ws.command("subscribe", channels=["orderbook_delta", "ticker"], market_ticker=ticker,
                         send_initial_snapshot=True)
        messages = await ws.until(lambda m: m["type"] == "ticker")
        snapshot = next(m["msg"] for m in messages if m["type"] == "orderbook_snapshot")
        for side in ("yes", "no"):
            if f"{side}_dollars_fp" in snapshot:
                assert [p for p, _ in snapshot[side]] == [round(float(p) * 100) for p, _ in snapshot[f"{side}_dollars_fp"]]
        tick = messages[-1]["msg"]
        assert tick["yes_bid"] == round(float(tick["yes_bid_dollars"]) * 100) and isinstance(tick["volume"], int)


async def test_a_failing_subscribe_subscribes_nothing_and_a_repeat_adds_tickers(
    wsim: Simulator, client: WsClient
) -> None:
    tickers = [m["ticker"] for m in await open_markets(wsim, "KXBTCD")][:3]
    await client.command("subscribe", channels=["ticker", "orderbook_delta"])
    assert (await client.recv())["msg"]["code"] == 14
    await client.command("list_subscriptions")
    assert (await client.recv())["msg"] == []
    await client.command("subscribe", channels=["orderbook_delta"], market_tickers=tickers[:2])
    await client.until(lambda m: m["type"] == "orderbook_snapshot" and m["msg"]["market_ticker"] == tickers[1])
    await client.command("subscribe", channels=["orderbook_delta"], market_tickers=tickers[1:])
    again = await client.until(lambda m: m["type"] == "orderbook_snapshot")
    assert again[0]["msg"] == {"channel": "orderbook_delta", "sid": 1}
    assert again[-1]["msg"]["market_ticker"] == tickers[2] and again[-1]["seq"] == 3

"""The simulated Advanced Trade feed over a real socket: frame shapes, sequence numbers, subscribe rules."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from typing import Any

import pytest
from coinbase_support import SAMPLES, frames_until, open_ws, recv_json, running_sim, subscribe
from websockets.exceptions import ConnectionClosed

RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
GO_TIME_STRING = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,9})? \+0000 UTC m=\+\d+\.\d{9}$")


def shape(value: Any) -> Any:
    """Keys and JSON types of a payload (lists by their first element)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())  # type: ignore[no-any-return]


async def test_frames_have_the_documented_shapes() -> None:
    async with running_sim(ticks_per_second=10) as (sim, _), open_ws(sim.ws_url) as ws:
        ack = await subscribe(ws, "ticker", ["BTC-USD"])
        assert ack["channel"] == "subscriptions"
        assert ack["events"] == [{"subscriptions": {"ticker": ["BTC-USD"]}}]
        await subscribe(ws, "market_trades", ["BTC-USD"])
        await subscribe(ws, "heartbeats")
        frames = await frames_until(ws, lambda f: f["channel"] == "heartbeats")
        frames += await frames_until(ws, lambda f: f["channel"] == "ticker" and f["events"][0]["type"] == "update")
        frames += await frames_until(ws, lambda f: f["channel"] == "market_trades" and f["events"][0]["type"] == "update")
    by_channel = {(f["channel"], f["events"][0].get("type")): f for f in frames}
    ticker = by_channel[("ticker", "update")]
    assert shape(ticker) == shape(sample("advanced_trade_ws_ticker.json"))
    trades = by_channel[("market_trades", "update")]
    assert shape(trades) == shape(sample("advanced_trade_ws_market_trades.json"))
    heartbeat = by_channel[("heartbeats", None)]
    assert shape(heartbeat) == shape(sample("advanced_trade_ws_heartbeats.json"))
    for frame in (ticker, trades, heartbeat):
        assert RFC3339_NANO.match(frame["timestamp"]), frame["timestamp"]
        datetime.fromisoformat(frame["timestamp"])  # Python 3.11 accepts nanosecond digits (§1.3)
    assert GO_TIME_STRING.match(heartbeat["events"][0]["current_time"])
    record = ticker["events"][0]["tickers"][0]
    assert float(record["best_bid"]) <= float(record["price"]) <= float(record["best_ask"])
    assert float(record["best_bid"]) < float(record["best_ask"])
    assert float(record["low_24_h"]) <= float(record["price"]) <= float(record["high_24_h"])
    assert all(t["product_id"] == "BTC-USD" and t["side"] in ("BUY", "SELL") for t in trades["events"][0]["trades"])


async def test_first_frame_per_channel_is_a_snapshot() -> None:
    async with running_sim(ticks_per_second=10) as (sim, _), open_ws(sim.ws_url) as ws:
        await ws.send(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "market_trades"}))
        ack = await recv_json(ws)
        first = await recv_json(ws)
        second = await recv_json(ws)
    assert ack["channel"] == "subscriptions"
    assert first["channel"] == "market_trades" and first["events"][0]["type"] == "snapshot"
    assert len(first["events"][0]["trades"]) > 1  # recent trades, newest first
    ids = [int(t["trade_id"]) for t in first["events"][0]["trades"]]
    assert ids == sorted(ids, reverse=True)
    assert second["events"][0]["type"] == "update"
    assert int(second["events"][0]["trades"][0]["trade_id"]) > ids[0]


async def test_sequence_num_is_one_counter_per_connection_across_channels() -> None:
    async with running_sim(ticks_per_second=20) as (sim, _), open_ws(sim.ws_url) as ws:
        await subscribe(ws, "ticker", ["BTC-USD"])
        await subscribe(ws, "heartbeats")
        await subscribe(ws, "market_trades", ["BTC-USD"])
        frames = await frames_until(ws, lambda f: f["channel"] == "heartbeats", limit=400)
        frames += [await recv_json(ws) for _ in range(10)]
        async with open_ws(sim.ws_url) as other:
            other_ack = await subscribe(other, "ticker", ["BTC-USD"])
    numbers = [f["sequence_num"] for f in frames]
    # The acks are 0, 1 (after a ticker snapshot) ... — every frame, whatever its channel, takes the next number.
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert numbers[0] >= 3
    assert {f["channel"] for f in frames} >= {"ticker", "market_trades", "heartbeats"}
    assert other_ack["sequence_num"] == 0  # a new connection starts again at 0


@pytest.mark.slow
async def test_heartbeats_once_a_second_with_a_contiguous_counter() -> None:
    async with running_sim(heartbeat_counter_as_int=True) as (sim, _), open_ws(sim.ws_url) as ws:
        ack = await subscribe(ws, "heartbeats")
        beats = [await recv_json(ws) for _ in range(2)]
    assert ack["events"] == [{"subscriptions": {"heartbeats": ["heartbeats"]}}]
    counters = [b["events"][0]["heartbeat_counter"] for b in beats]
    assert all(isinstance(c, int) for c in counters)  # the live-feed variant (§1.5)
    assert counters[1] == counters[0] + 1
    first, second = (datetime.fromisoformat(b["timestamp"]) for b in beats)
    assert 0.5 < (second - first).total_seconds() < 1.5


async def test_no_subscribe_within_the_deadline_closes_the_connection() -> None:
    async with running_sim(subscribe_timeout_s=0.3) as (sim, _):
        async with open_ws(sim.ws_url) as idle:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(idle.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        async with open_ws(sim.ws_url) as active:
            await subscribe(active, "heartbeats")
            await asyncio.sleep(0.5)  # past the deadline: a subscribed client stays connected
            assert (await recv_json(active))["channel"] == "heartbeats"


@pytest.mark.parametrize(
    ("message", "error_fragment"),
    [
        ({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"}, "not supported"),
        ({"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["ticker", "heartbeats"]}, "one channel"),
        ({"type": "subscribe", "product_ids": ["DOGE-EUR"], "channel": "ticker"}, "unknown product"),
        ({"type": "subscribe", "channel": "ticker"}, "product_ids"),
        ({"type": "hello", "channel": "ticker"}, "unknown message type"),
    ],
)
async def test_invalid_subscriptions_get_an_error_frame(message: dict[str, Any], error_fragment: str) -> None:
    async with running_sim() as (sim, _), open_ws(sim.ws_url) as ws:
        await ws.send(json.dumps(message))
        error = await recv_json(ws)
        ack = await subscribe(ws, "heartbeats")  # the connection stays usable
    assert set(error) == {"type", "message"} and error["type"] == "error"
    assert error_fragment in error["message"]
    assert ack["events"] == [{"subscriptions": {"heartbeats": ["heartbeats"]}}]


async def test_unsubscribe_stops_the_channel() -> None:
    async with running_sim(ticks_per_second=20) as (sim, _), open_ws(sim.ws_url) as ws:
        await subscribe(ws, "ticker", ["BTC-USD"])
        await subscribe(ws, "heartbeats")
        await ws.send(json.dumps({"type": "unsubscribe", "product_ids": ["BTC-USD"], "channel": "ticker"}))
        frames = await frames_until(ws, lambda f: f["channel"] == "subscriptions")
        after = await frames_until(ws, lambda f: f["channel"] == "heartbeats")
    assert frames[-1]["events"] == [{"subscriptions": {"heartbeats": ["heartbeats"]}}]
    assert [f["channel"] for f in after] == ["heartbeats"]


async def test_a_quiet_subscription_without_heartbeats_is_closed() -> None:
    # Every minute empty: no ticker update ever follows the snapshot, so only heartbeats could keep it open.
    async with running_sim(empty_minute_fraction=0.999999, idle_close_s=0.5) as (sim, _), \
            open_ws(sim.ws_url) as quiet, open_ws(sim.ws_url) as kept:
        await subscribe(quiet, "ticker", ["BTC-USD"])
        await subscribe(kept, "ticker", ["BTC-USD"])
        await subscribe(kept, "heartbeats")
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                frame = await recv_json(quiet)
                assert frame["channel"] == "ticker" and frame["events"][0]["type"] == "snapshot"
        beats = await frames_until(kept, lambda f: f["channel"] == "heartbeats")
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    assert beats[-1]["channel"] == "heartbeats"

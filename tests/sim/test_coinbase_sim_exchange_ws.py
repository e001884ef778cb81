"""The simulated legacy Exchange feed: ticker shape, the first ticker's missing trade fields, heartbeats."""

from __future__ import annotations

import json
from typing import Any

import pytest
from coinbase_support import SAMPLES, open_ws, recv_json, running_sim
from websockets.exceptions import ConnectionClosed

SUBSCRIBE = {"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["ticker", {"name": "heartbeat"}]}


async def test_ticker_matches_the_sample_and_sequences_increase() -> None:
    sample = json.loads((SAMPLES / "exchange_ws_ticker.json").read_text())
    async with running_sim(ticks_per_second=10) as (sim, _), open_ws(sim.exchange_ws_url) as ws:
        await ws.send(json.dumps(SUBSCRIBE))
        ack = await recv_json(ws)
        first = await recv_json(ws)
        tickers: list[dict[str, Any]] = []
        heartbeats: list[dict[str, Any]] = []
        while len(tickers) < 5 or not heartbeats:
            frame = await recv_json(ws)
            (tickers if frame["type"] == "ticker" else heartbeats).append(frame)
    assert ack == {"type": "subscriptions", "channels": [{"name": "heartbeat", "product_ids": ["BTC-USD"]},
                                                         {"name": "ticker", "product_ids": ["BTC-USD"]}]}
    # The first ticker after subscribing lacks the trade fields (§2); later ones have every sample field.
    assert first["type"] == "ticker" and set(sample) - set(first) == {"side", "time", "trade_id", "last_size"}
    for ticker in tickers:
        assert list(ticker) == list(sample)
        assert {k: type(v) for k, v in ticker.items()} == {k: type(v) for k, v in sample.items()}
        assert ticker["time"].endswith("Z") and len(ticker["time"].split(".")[1]) == 7  # six digits + "Z"
    sequences = [first["sequence"], *(t["sequence"] for t in tickers)]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    trade_ids = [t["trade_id"] for t in tickers]
    assert trade_ids == sorted(trade_ids)
    beat = heartbeats[0]
    assert set(beat) == {"type", "sequence", "last_trade_id", "product_id", "time"}
    assert isinstance(beat["last_trade_id"], int) and isinstance(beat["sequence"], int)


@pytest.mark.parametrize(
    ("message", "reason_fragment"),
    [
        ({"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["level3"]}, "not a valid channel"),
        ({"type": "subscribe", "product_ids": ["XRP-EUR"], "channels": ["ticker"]}, "not a valid product"),
        ({"type": "subscribe", "product_ids": ["BTC-USD"]}, "channels"),
    ],
)
async def test_invalid_subscriptions_get_an_error(message: dict[str, Any], reason_fragment: str) -> None:
    async with running_sim() as (sim, _), open_ws(sim.exchange_ws_url) as ws:
        await ws.send(json.dumps(message))
        error = await recv_json(ws)
    assert error["type"] == "error" and error["message"] == "Failed to subscribe"
    assert reason_fragment in error["reason"]


async def test_the_subscribe_deadline_applies_to_the_exchange_feed_too() -> None:
    async with running_sim(subscribe_timeout_s=0.2) as (sim, _), open_ws(sim.exchange_ws_url) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

"""Every Coinbase fault class, injected through the shared FaultPlan and observed by a plain client."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from coinbase_support import open_ws, recv_json, running_sim, subscribe
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

from kbtc.sim.coinbase import CoinbaseSim
from kbtc.sim.faults import FaultKind, FaultPlan, FaultTarget
from kbtc.venues.coinbase.messages import rfc3339_to_ns

WS = FaultTarget.COINBASE_WS
REST = FaultTarget.COINBASE_REST
AT_PATH = "/api/v3/brokerage/market/products/BTC-USD/candles"
EX_PATH = "/products/BTC-USD/candles"


@asynccontextmanager
async def ticker_feed() -> AsyncIterator[tuple[CoinbaseSim, FaultPlan, ClientConnection]]:
    """A fast ticker + heartbeats subscription on the Advanced Trade feed, acks already read."""
    async with running_sim(ticks_per_second=100, empty_minute_fraction=0.0) as (sim, faults), \
            open_ws(sim.ws_url) as ws:
        await subscribe(ws, "ticker", ["BTC-USD"])
        await subscribe(ws, "heartbeats")
        yield sim, faults, ws


async def raw_frames(ws: ClientConnection, count: int) -> list[str]:
    return [str(await asyncio.wait_for(ws.recv(), 5)) for _ in range(count)]


def sequence_nums(texts: list[str]) -> list[int]:
    return [json.loads(t)["sequence_num"] for t in texts]


def assert_all_applied(faults: FaultPlan) -> None:
    summary = faults.summary()
    assert summary and all(v["injected"] == v["applied"] for v in summary.values()), summary


async def test_skip_seq_leaves_exactly_one_gap() -> None:
    async with ticker_feed() as (_, faults, ws):
        first = sequence_nums(await raw_frames(ws, 1))
        faults.inject(WS, FaultKind.SKIP_SEQ)
        numbers = first + sequence_nums(await raw_frames(ws, 15))
    steps = [b - a for a, b in itertools.pairwise(numbers)]
    assert sorted(steps) == [1] * (len(steps) - 1) + [2]
    assert_all_applied(faults)


async def test_duplicate_sends_one_frame_twice() -> None:
    async with ticker_feed() as (_, faults, ws):
        faults.inject(WS, FaultKind.DUPLICATE, channel="ticker")
        texts = await raw_frames(ws, 15)
    repeats = [a for a, b in itertools.pairwise(texts) if a == b]
    assert len(repeats) == 1 and json.loads(repeats[0])["channel"] == "ticker"
    assert_all_applied(faults)


async def test_reorder_swaps_two_frames() -> None:
    async with ticker_feed() as (_, faults, ws):
        faults.inject(WS, FaultKind.REORDER)
        numbers = sequence_nums(await raw_frames(ws, 15))
    descents = [i for i in range(1, len(numbers)) if numbers[i] < numbers[i - 1]]
    assert len(descents) == 1
    assert sorted(numbers) == list(range(min(numbers), min(numbers) + len(numbers)))
    assert_all_applied(faults)


async def test_malformed_json_frame_uses_up_its_sequence_number() -> None:
    async with ticker_feed() as (_, faults, ws):
        texts = await raw_frames(ws, 1)
        faults.inject(WS, FaultKind.MALFORMED_JSON)
        texts += await raw_frames(ws, 15)
    broken = []
    numbers = []
    for text in texts:
        try:
            numbers.append(json.loads(text)["sequence_num"])
        except json.JSONDecodeError:
            broken.append(text)
    assert len(broken) == 1 and broken[0].startswith('{"channel"')
    steps = [b - a for a, b in itertools.pairwise(numbers)]
    assert sorted(steps) == [1] * (len(steps) - 1) + [2]  # one number went to the broken frame
    assert_all_applied(faults)


async def test_unknown_fields_appear_at_every_level() -> None:
    async with ticker_feed() as (_, faults, ws):
        faults.inject(WS, FaultKind.UNKNOWN_FIELDS, channel="ticker")
        frames = [json.loads(t) for t in await raw_frames(ws, 15)]
    extended = [f for f in frames if "sim_unlisted_field" in f]
    assert len(extended) == 1 and extended[0]["channel"] == "ticker"
    assert "sim_unlisted_field" in extended[0]["events"][0]
    assert "sim_unlisted_field" in extended[0]["events"][0]["tickers"][0]
    assert_all_applied(faults)


@pytest.mark.parametrize(
    ("params", "absent"),
    [
        ({"channel": "ticker"}, {"best_bid", "best_ask", "best_bid_quantity", "best_ask_quantity"}),
        ({"fields": ["timestamp", "price"], "channel": "ticker"}, {"timestamp", "price"}),
    ],
)
async def test_missing_fields_are_left_out(params: dict[str, Any], absent: set[str]) -> None:
    async with ticker_feed() as (_, faults, ws):
        faults.inject(WS, FaultKind.MISSING_FIELDS, **params)
        frames = [json.loads(t) for t in await raw_frames(ws, 15)]
    tickers = [f for f in frames if f["channel"] == "ticker"]
    present = [set(f) | set(f["events"][0]["tickers"][0]) for f in tickers]
    assert sum(1 for keys in present if not keys & absent) == 1
    assert sum(1 for keys in present if absent <= keys) == len(tickers) - 1
    assert_all_applied(faults)


@pytest.mark.parametrize(("params", "code"), [({}, 1001), ({"code": 1000, "reason": "restart"}, 1000)])
async def test_clean_disconnect_sends_a_close_frame(params: dict[str, Any], code: int) -> None:
    async with ticker_feed() as (_, faults, ws):
        faults.inject(WS, FaultKind.DISCONNECT_CLEAN, **params)
        with pytest.raises(ConnectionClosedOK) as closed:
            await raw_frames(ws, 100)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code
    assert_all_applied(faults)


async def test_abrupt_disconnect_drops_tcp_without_a_close_frame() -> None:
    async with ticker_feed() as (_, faults, ws):
        faults.inject(WS, FaultKind.DISCONNECT_ABRUPT)
        with pytest.raises(ConnectionClosedError) as closed:
            await raw_frames(ws, 100)
    assert closed.value.rcvd is None  # the client saw no close frame (1006)
    assert_all_applied(faults)


@pytest.mark.slow
async def test_stall_silences_everything_then_resumes_in_sequence() -> None:
    async with ticker_feed() as (_, faults, ws):
        heartbeat = await recv_json(ws)
        while heartbeat["channel"] != "heartbeats":
            heartbeat = await recv_json(ws)
        faults.inject(WS, FaultKind.STALL, duration_s=2.5)
        last = heartbeat
        with pytest.raises(TimeoutError):  # a few frames may already be in flight, then silence
            while True:
                last = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
        after = [await recv_json(ws)]
        while after[-1]["channel"] != "heartbeats":
            after.append(await recv_json(ws))
    assert after[0]["sequence_num"] == last["sequence_num"] + 1  # nothing was numbered during the stall
    # Heartbeats are back, and their counter shows the ones the stall swallowed.
    assert int(after[-1]["events"][0]["heartbeat_counter"]) >= int(heartbeat["events"][0]["heartbeat_counter"]) + 2
    assert_all_applied(faults)


@pytest.mark.slow
async def test_a_ticker_stall_keeps_heartbeats_flowing_and_numbers_in_sequence() -> None:
    async with ticker_feed() as (_, faults, ws):
        started, started_ns = time.monotonic(), time.time_ns()
        faults.inject(WS, FaultKind.STALL, duration_s=2.0, channel="ticker")
        frames: list[tuple[int, dict[str, Any]]] = []
        while time.monotonic() - started < 3.5:
            frame = await recv_json(ws)
            # The frames' own timestamps (stamped by the simulator as it builds them): on a loaded machine the
            # client may read the last frames before the stall late, which would shorten a gap timed on arrival.
            frames.append((rfc3339_to_ns(frame["timestamp"]), frame))
    tickers = [started_ns] + [at for at, frame in frames if frame["channel"] == "ticker"]
    # The ticker fell silent for the stall (it sends 100 a second otherwise) and came back ...
    silent_from, silent_to = max(itertools.pairwise(tickers), key=lambda pair: pair[1] - pair[0])
    assert silent_to - silent_from >= 1.8e9
    # ... while heartbeats (once a second) kept arriving on the open socket.
    assert sum(1 for at, frame in frames if frame["channel"] == "heartbeats" and silent_from < at < silent_to) >= 1
    numbers = [frame["sequence_num"] for _, frame in frames]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # no number taken while silent
    assert_all_applied(faults)


@pytest.mark.slow
async def test_stall_without_duration_lasts_until_the_client_gives_up() -> None:
    async with ticker_feed() as (_, faults, ws):
        faults.inject(WS, FaultKind.STALL)
        with pytest.raises(TimeoutError):
            while True:
                await asyncio.wait_for(ws.recv(), 1.5)
        assert ws.state.name == "OPEN"  # the socket is still open: only a watchdog notices
    assert_all_applied(faults)


async def test_faults_scoped_to_one_api_leave_the_other_feed_alone() -> None:
    async with running_sim(ticks_per_second=25, empty_minute_fraction=0.0) as (sim, faults), \
            open_ws(sim.ws_url) as advanced, open_ws(sim.exchange_ws_url) as exchange:
        await subscribe(advanced, "ticker", ["BTC-USD"])
        await exchange.send(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["ticker"]}))
        await raw_frames(exchange, 2)  # the ack and the first ticker
        faults.inject(WS, FaultKind.DUPLICATE, api="exchange")
        advanced_texts = await raw_frames(advanced, 15)
        exchange_texts = await raw_frames(exchange, 15)
    assert len(set(advanced_texts)) == len(advanced_texts)
    assert len(set(exchange_texts)) == len(exchange_texts) - 1
    assert_all_applied(faults)


async def test_a_disconnect_ends_one_connection_and_the_next_one_works() -> None:
    async with ticker_feed() as (sim, faults, ws):
        faults.inject(WS, FaultKind.DISCONNECT_ABRUPT)
        with pytest.raises(ConnectionClosed):
            await raw_frames(ws, 100)
        async with open_ws(sim.ws_url) as again:
            ack = await subscribe(again, "ticker", ["BTC-USD"])
            follow = await recv_json(again)
    assert ack["sequence_num"] == 0 and follow["channel"] == "ticker"


# -- REST -----------------------------------------------------------------------------------------------


def candle_params(api: str) -> dict[str, Any]:
    now_s = int(time.time())
    start = now_s - now_s % 60 - 120 * 60
    if api == "advanced_trade":
        return {"start": start, "end": start + 60 * 60, "granularity": "ONE_MINUTE"}
    return {"start": start, "end": start + 60 * 60, "granularity": 60}


async def test_429_burst_then_success() -> None:
    async with running_sim() as (sim, faults), httpx.AsyncClient(base_url=sim.rest_url) as client:
        faults.inject(REST, FaultKind.HTTP_429, count=3)
        faults.inject(REST, FaultKind.HTTP_429, retry_after_s=2)
        responses = [await client.get(AT_PATH, params=candle_params("advanced_trade")) for _ in range(5)]
    assert [r.status_code for r in responses] == [429, 429, 429, 429, 200]
    assert set(responses[0].json()) == {"error", "code", "message", "details"}
    assert "retry-after" not in responses[0].headers and responses[3].headers["retry-after"] == "2"
    assert_all_applied(faults)


async def test_5xx_with_the_exchange_error_shape() -> None:
    async with running_sim() as (sim, faults), httpx.AsyncClient(base_url=sim.rest_url) as client:
        faults.inject(REST, FaultKind.HTTP_5XX, status=502, api="exchange")
        advanced = await client.get(AT_PATH, params=candle_params("advanced_trade"))
        failed = await client.get(EX_PATH, params=candle_params("exchange"))
        recovered = await client.get(EX_PATH, params=candle_params("exchange"))
    assert advanced.status_code == 200  # scoped to the Exchange API
    assert failed.status_code == 502 and set(failed.json()) == {"message"}
    assert recovered.status_code == 200
    assert_all_applied(faults)


async def test_slow_response_trips_a_client_timeout() -> None:
    async with running_sim() as (sim, faults), httpx.AsyncClient(base_url=sim.rest_url) as client:
        faults.inject(REST, FaultKind.SLOW_RESPONSE, duration_s=0.8)
        with pytest.raises(httpx.ReadTimeout):
            await client.get(AT_PATH, params=candle_params("advanced_trade"), timeout=0.2)
        fine = await client.get(AT_PATH, params=candle_params("advanced_trade"), timeout=5)
    assert fine.status_code == 200
    assert_all_applied(faults)


async def test_malformed_unknown_and_missing_bodies() -> None:
    async with running_sim() as (sim, faults), httpx.AsyncClient(base_url=sim.rest_url) as client:
        faults.inject(REST, FaultKind.MALFORMED_JSON)
        malformed = await client.get(EX_PATH, params=candle_params("exchange"))
        faults.inject(REST, FaultKind.UNKNOWN_FIELDS, count=2)
        at_extra = (await client.get(AT_PATH, params=candle_params("advanced_trade"))).json()
        ex_extra = (await client.get(EX_PATH, params=candle_params("exchange"))).json()
        faults.inject(REST, FaultKind.MISSING_FIELDS, count=2)
        at_missing = (await client.get(AT_PATH, params=candle_params("advanced_trade"))).json()
        ex_missing = (await client.get(EX_PATH, params=candle_params("exchange"))).json()
    assert malformed.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(malformed.text)
    assert "sim_unlisted_field" in at_extra and all("sim_unlisted_field" in c for c in at_extra["candles"])
    assert ex_extra and all(len(row) == 7 for row in ex_extra)
    assert at_missing["candles"] and all("volume" not in c for c in at_missing["candles"])
    assert ex_missing and all(len(row) == 5 for row in ex_missing)
    assert_all_applied(faults)

"""Every WebSocket fault class, observed by a plain client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sim_support import WsClient, fast_config, index_tick
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

from kbtc.sim.faults import FaultKind, FaultTarget
from kbtc.sim.simulator import ManualClock, Simulator


@pytest.fixture
async def fsim(clock: ManualClock) -> AsyncIterator[Simulator]:
    async with Simulator(fast_config(tick_interval_s=0.02), clock=clock) as simulator:
        yield simulator


async def subscribed_client(sim: Simulator) -> tuple[Any, WsClient]:
    connection = await connect(sim.kalshi_ws_url)
    client = WsClient(connection)
    await client.command("subscribe", channels=["cfbenchmarks_value"], index_ids=["BRTI"])
    await client.recv()
    return connection, client


async def ticks(client: WsClient, clock: ManualClock, seconds: int) -> list[Any]:
    """Raw frames (str) for the next `seconds` index ticks, parsing only to find the last one."""
    frames: list[str] = []
    last = (clock() // 1000) + seconds
    for _ in range(seconds):
        clock.advance(1)
    while True:
        frame = await asyncio.wait_for(client.connection.recv(), 3)
        frames.append(frame)
        try:
            if index_tick(last)(json.loads(frame)):
                return frames
        except ValueError:
            continue


def seqs(frames: list[str]) -> list[int]:
    return [json.loads(f)["seq"] for f in frames]


async def test_skipped_duplicated_and_reordered_sequence_numbers(fsim: Simulator, clock: ManualClock) -> None:
    connection, client = await subscribed_client(fsim)
    async with connection:
        assert seqs(await ticks(client, clock, 2)) == [1, 2]
        fsim.faults.inject(FaultTarget.KALSHI_WS, FaultKind.SKIP_SEQ)
        assert seqs(await ticks(client, clock, 2)) == [4, 5]
        fsim.faults.inject(FaultTarget.KALSHI_WS, FaultKind.DUPLICATE)
        frames = await ticks(client, clock, 2)
        assert seqs(frames) == [6, 6, 7] and frames[0] == frames[1]
        fsim.faults.inject(FaultTarget.KALSHI_WS, FaultKind.REORDER)
        assert seqs(await ticks(client, clock, 3))[:3] == [9, 8, 10]
    assert fsim.faults.summary()["kalshi_ws/reorder"] == {"injected": 1, "applied": 1}


async def test_malformed_unknown_and_missing_fields(fsim: Simulator, clock: ManualClock) -> None:
    connection, client = await subscribed_client(fsim)
    async with connection:
        fsim.faults.inject(FaultTarget.KALSHI_WS, FaultKind.MALFORMED_JSON)
        frames = await ticks(client, clock, 2)
        with pytest.raises(json.JSONDecodeError):
            json.loads(frames[0])
        fsim.faults.inject(FaultTarget.KALSHI_WS, FaultKind.UNKNOWN_FIELDS)
        extra = json.loads((await ticks(client, clock, 1))[0])
        assert "sim_unknown_field" in extra["msg"] and "sim_extra" in extra
        fsim.faults.inject(FaultTarget.KALSHI_WS, FaultKind.MISSING_FIELDS, fields=["avg_60s_data"])
        bare = json.loads((await ticks(client, clock, 1))[0])
        assert "avg_60s_data" not in bare["msg"] and "index_id" in bare["msg"]


async def test_stall_keeps_the_socket_open_and_sends_nothing(fsim: Simulator, clock: ManualClock) -> None:
    connection, _client = await subscribed_client(fsim)
    async with connection:
        fsim.faults.inject(FaultTarget.KALSHI_WS, FaultKind.STALL, duration_s=0.6)
        await asyncio.sleep(0.1)  # let the sender pick the stall up
        clock.advance(1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(connection.recv(), 0.3)
        await connection.ping()  # the connection is still open
        late = json.loads(await asyncio.wait_for(connection.recv(), 3))
        assert late["type"] == "cfbenchmarks_value"


async def test_clean_disconnect_sends_a_close_frame(fsim: Simulator, clock: ManualClock) -> None:
    connection, _ = await subscribed_client(fsim)
    async with httpx.AsyncClient(base_url=fsim.control_url) as control:
        await control.post("/faults", json={"target": "kalshi_ws", "kind": "disconnect_clean"})
    with pytest.raises(ConnectionClosedOK):
        while True:
            await asyncio.wait_for(connection.recv(), 3)
    assert connection.close_code == 1001


async def test_abrupt_disconnect_has_no_close_frame(fsim: Simulator, clock: ManualClock) -> None:
    connection, _ = await subscribed_client(fsim)
    fsim.faults.inject(FaultTarget.KALSHI_WS, FaultKind.DISCONNECT_ABRUPT)
    with pytest.raises(ConnectionClosedError) as closed:
        while True:
            await asyncio.wait_for(connection.recv(), 3)
    assert closed.value.rcvd is None  # no close frame was received
    with pytest.raises(ConnectionClosed):
        await connection.send("{}")


async def test_a_client_that_falls_behind_gets_error_25_and_a_seq_gap(clock: ManualClock) -> None:
    async with Simulator(fast_config(tick_interval_s=0.02, ws_max_queue=3), clock=clock) as sim:
        connection, client = await subscribed_client(sim)
        async with connection:
            sim.faults.inject(FaultTarget.KALSHI_WS, FaultKind.STALL, duration_s=0.5)
            await asyncio.sleep(0.1)
            for _ in range(5):
                clock.advance(1)
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # the stall ends and the backlog drains
            frames = [json.loads(f) for f in await ticks(client, clock, 1)]
        overflow = [f for f in frames if f.get("type") == "error"]
        assert overflow == [{"id": 0, "sid": 1, "type": "error", "msg": {"code": 25, "msg": "Subscription buffer overflow"}}]
        seqs_seen = [f["seq"] for f in frames if "seq" in f]
        assert seqs_seen[0] == 1 and seqs_seen[-1] - seqs_seen[0] + 1 > len(seqs_seen)

"""Exchange simulator throughput, each beside a reference measured in the same run.

- price path: seconds of 1 Hz index generated per second by `GbmSpotSource` (chunked, seeded, with
  jumps and the start anchor) vs a bare `numpy` cumulative sum of the same number of normal draws;
- REST: `GET /markets?limit=1000` (a fresh simulator each round, so books and tapes are computed) vs the
  same body served pre-serialized by a static Starlette route on the same uvicorn setup;
- WebSocket: data messages per second for one client subscribed to every KXBTCD/KXBTC order book while
  the clock runs 120 s ahead, vs `json.dumps` + send of the same number of prepared frames.

Run: python -m benchmarks.sim
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from websockets.asyncio.client import connect

from benchmarks.common import bench_line, timed
from kbtc.sim.markets import CatalogConfig
from kbtc.sim.price import GbmSpotSource, PriceConfig
from kbtc.sim.simulator import ManualClock, QuietServer, SimConfig, Simulator, bind_socket

START_MS = 1_790_000_000_000
DAYS = 30


def bench_price() -> str:
    seconds = DAYS * 86400
    source = GbmSpotSource(PriceConfig(seed=1, jumps_per_day=10, warmup_s=0), START_MS)
    ours = timed(lambda: source.index_at_seconds(np.arange(START_MS // 1000, START_MS // 1000 + seconds)))
    rng = np.random.default_rng(1)
    reference = timed(lambda: np.exp(np.cumsum(rng.standard_normal(seconds) * 1e-4)))
    return bench_line("sim_price_path_seconds_per_s", seconds / ours, "prints/s", seconds / reference)


def config() -> SimConfig:
    catalog = CatalogConfig(window_minutes=2, event_minutes=10, history_s=3600)
    return SimConfig(seed=3, catalog=catalog, rate_limit_per_s=None, start_ms=START_MS, tick_interval_s=0.01)


async def bench_rest(rounds: int = 3) -> str:
    ours, body = [], b""
    for _ in range(rounds):
        async with Simulator(config(), clock=ManualClock(START_MS)) as sim, httpx.AsyncClient() as client:
            started = time.perf_counter()
            response = await client.get(sim.kalshi_rest_url + "/markets", params={"limit": 1000})
            ours.append(time.perf_counter() - started)
            body = response.content

    async def static(_: object) -> Response:
        return Response(body, media_type="application/json")

    sock = bind_socket("127.0.0.1", 0)
    server = QuietServer(uvicorn.Config(Starlette(routes=[Route("/m", static)]), log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.01)
    reference = []
    async with httpx.AsyncClient() as client:
        for _ in range(rounds):
            started = time.perf_counter()
            await client.get(f"http://127.0.0.1:{sock.getsockname()[1]}/m")
            reference.append(time.perf_counter() - started)
    server.should_exit = True
    await task
    return bench_line("sim_rest_markets_1000_latency", min(ours) * 1000, "ms", min(reference) * 1000,
                      higher_is_better=False)


async def bench_ws(seconds: int = 120) -> str:
    clock = ManualClock(START_MS)
    async with Simulator(config(), clock=clock) as sim, connect(sim.kalshi_ws_url, max_size=None) as ws:
        async with httpx.AsyncClient() as client:
            markets = (await client.get(sim.kalshi_rest_url + "/markets",
                                        params={"status": "open", "limit": 1000})).json()["markets"]
        tickers = [m["ticker"] for m in markets if not m["ticker"].startswith("KXBTC15M")]
        await ws.send(json.dumps({"id": 1, "cmd": "subscribe",
                                  "params": {"channels": ["orderbook_delta"], "market_tickers": tickers}}))
        await ws.send(json.dumps({"id": 2, "cmd": "subscribe",
                                  "params": {"channels": ["cfbenchmarks_value"], "index_ids": ["BRTI"]}}))
        frames: list[str] = []
        started = time.perf_counter()
        last = START_MS // 1000 + seconds
        for _ in range(seconds):
            clock.advance(1)
            while True:
                frame = str(await ws.recv())
                frames.append(frame)
                message = json.loads(frame)
                if message.get("type") == "cfbenchmarks_value" and message["msg"]["received_at"] >= clock():
                    break
        ours = len(frames) / (time.perf_counter() - started)
        assert clock() // 1000 == last
    prepared = [json.loads(f) for f in frames]
    sink: list[str] = []
    reference_s = timed(lambda: sink.extend(json.dumps(m, separators=(",", ":")) for m in prepared))
    return bench_line("sim_ws_book_messages_per_s", ours, "msg/s", len(prepared) / reference_s)


async def main() -> None:
    print(bench_price())
    print(await bench_rest())
    print(await bench_ws())


if __name__ == "__main__":
    asyncio.run(main())

"""Simulated Coinbase: cost of a cold candle backfill and of building ticker frames, against references.

Measures, same run:
- ours: a cold Advanced Trade request for 350 one-minute candles over HTTP (fresh simulator, so nothing is
  cached); reference: only the price reads those candles need (350 × 12 `coinbase_usd` calls) — the ratio
  shows what HTTP, Polars aggregation and formatting add on top of the unavoidable source reads.
- ours: ticker frames built (`messages.envelope` + `ticker_event`) and serialised per second; reference:
  `json.dumps` of the documented sample ticker alone.

Run: python -m benchmarks.sim_coinbase [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.common import bench_line
from kbtc.sim.coinbase import CoinbaseSim, messages
from kbtc.sim.faults import FaultPlan

SAMPLE = Path(__file__).parent.parent / "tests/sim/samples/coinbase/advanced_trade_ws_ticker.json"


class WalkSource:
    """A seeded 1-second random walk over the last 3 days."""

    def __init__(self, seed: int = 1) -> None:
        self.origin_s = int(time.time()) - 3 * 86400
        self.prices = 60_000 + np.cumsum(np.random.default_rng(seed).normal(0, 8, 4 * 86400))

    def index_usd(self, ts_ms: int) -> float:
        return self.coinbase_usd(ts_ms)

    def coinbase_usd(self, ts_ms: int) -> float:
        return float(self.prices[ts_ms // 1000 - self.origin_s])


async def cold_candles_s(start_s: int) -> float:
    async with CoinbaseSim(WalkSource(), FaultPlan()) as sim, httpx.AsyncClient(base_url=sim.rest_url) as client:
        params = {"start": start_s, "end": start_s + 350 * 60, "granularity": "ONE_MINUTE"}
        began = time.perf_counter()
        response = await client.get("/api/v3/brokerage/market/products/BTC-USD/candles", params=params)
        elapsed = time.perf_counter() - began
        response.raise_for_status()
    return elapsed


def source_reads_s(start_s: int) -> float:
    source = WalkSource()
    times = [start_s * 1000 + i * 5000 for i in range(350 * 12)]
    began = time.perf_counter()
    for ts in times:
        round(source.coinbase_usd(ts), 2)
    return time.perf_counter() - began


def ticker_frames_per_s(n: int) -> tuple[float, float]:
    sim = CoinbaseSim(WalkSource(), FaultPlan(), empty_minute_fraction=0.0)
    now_ms = int(time.time() * 1000)
    index = sim.tape.tick_index_at(now_ms)
    ticks = [sim.tape.tick(index - k) for k in range(200)]
    stats = sim.tape.stats_24h(now_ms, ticks[0].price_usd)
    began = time.perf_counter()
    for i in range(n):
        event = messages.ticker_event("update", "BTC-USD", ticks[i % 200], stats)
        json.dumps(messages.envelope("ticker", [event], time.time_ns()), separators=(",", ":"))
    ours = n / (time.perf_counter() - began)
    sample = json.loads(SAMPLE.read_text())
    began = time.perf_counter()
    for _ in range(n):
        json.dumps(sample, separators=(",", ":"))
    return ours, n / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    now_s = int(time.time())
    start_s = now_s - now_s % 60 - 400 * 60
    ours = statistics.median(asyncio.run(cold_candles_s(start_s)) for _ in range(args.repeat))
    reference = statistics.median(source_reads_s(start_s) for _ in range(args.repeat))
    print(bench_line("sim_coinbase_cold_candles_350", ours * 1000, "ms", reference * 1000, higher_is_better=False))
    frames, dumps = ticker_frames_per_s(20_000)
    print(bench_line("sim_coinbase_ticker_frames", frames, "frames/s", dumps))


if __name__ == "__main__":
    main()

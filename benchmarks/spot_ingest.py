"""Coinbase spot ingest: ticker frames parsed and stored per second, and tick-to-commit latency.

Measures, in one run:
- `spot_ingest.parse_store`: N Advanced Trade ticker frames (shaped like samples/coinbase/advanced_trade_ws_ticker.json)
  parsed by `kbtc.venues.coinbase.parsing.parse_frame`, written to the tape and stored in batches by the
  collector's `SpotStore` (BatchWriter → `upsert(..., on_conflict="ignore")` into a migrated SQLite file),
  until the last batch is committed. Reference: `json.loads` of the same frames and nothing else.
  Target (issue 5): ≥ 50k frames/s.
- `spot_ingest.tick_to_commit_p99`: a local WebSocket server sends ticker frames at 1k frames/s (plus 1 Hz
  heartbeats) to the real `CoinbaseFeed` + `SpotStore`; each frame's envelope timestamp is its send time, so
  commit time − send time is the tick-to-commit latency (p99 over all ticks). Reference: the p99 of
  send → receive over the same socket (what the batching adds is the difference). Target: ≤ 300 ms.

Run: python -m benchmarks.spot_ingest [--frames 200000] [--rate 1000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection, serve

from benchmarks.common import bench_line, timed
from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import count_rows
from kbtc.pipeline.spot_collector import SpotStore, write_ticks
from kbtc.pipeline.tape import TapeWriter
from kbtc.venues.backoff import Backoff
from kbtc.venues.coinbase.messages import SpotTick
from kbtc.venues.coinbase.parsing import parse_frame
from kbtc.venues.coinbase.ws import CoinbaseFeed, FeedConfig


def ns_to_rfc3339(ns: int) -> str:
    seconds, nanos = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def ticker_frame(seq: int, venue_ns: int, price: float) -> str:
    return json.dumps(
        {
            "channel": "ticker",
            "client_id": "",
            "timestamp": ns_to_rfc3339(venue_ns),
            "sequence_num": seq,
            "events": [
                {
                    "type": "update",
                    "tickers": [
                        {
                            "type": "ticker",
                            "product_id": "BTC-USD",
                            "price": f"{price:.2f}",
                            "volume_24_h": "16038.28770938",
                            "low_24_h": "21835.29",
                            "high_24_h": "23011.18",
                            "low_52_w": "15460",
                            "high_52_w": "48240",
                            "price_percent_chg_24_h": "-4.15775596190603",
                            "best_bid": f"{price - 0.01:.2f}",
                            "best_bid_quantity": "0.21",
                            "best_ask": f"{price + 0.01:.2f}",
                            "best_ask_quantity": "0.38",
                        }
                    ],
                }
            ],
        }
    )


def heartbeat_frame(seq: int, counter: int) -> str:
    return json.dumps(
        {
            "channel": "heartbeats",
            "client_id": "",
            "timestamp": ns_to_rfc3339(time.time_ns()),
            "sequence_num": seq,
            "events": [{"current_time": "", "heartbeat_counter": counter}],
        }
    )


def frames(n: int) -> list[str]:
    rng = np.random.default_rng(5)
    prices = 95_000 + np.cumsum(rng.normal(0, 2.0, n))
    start_ns = 1_795_000_000_000_000_000
    return [ticker_frame(i, start_ns + i * 250_000_000 + 17, float(p)) for i, p in enumerate(prices)]


async def parse_and_store(batch: list[str], tmp: Path) -> int:
    url = f"sqlite:///{tmp / 'ingest.sqlite'}"
    upgrade_database(url)
    engine = make_engine(url)
    store = SpotStore(engine, TapeWriter(tmp / "tape", "coinbase"))
    received_ts = time.time_ns() // 1_000_000
    for raw in batch:
        await store.on_frame(raw, received_ts, "bench")
        parsed = parse_frame("advanced", raw, received_ts, "BTC-USD")
        if parsed.ticks:
            await store.on_ticks(parsed.ticks)
    await store.close()
    stored = count_rows(engine, "spot_ticks")
    engine.dispose()
    return stored


def bench_parse_store(n: int) -> str:
    batch = frames(n)
    ref_s = timed(lambda: [json.loads(raw) for raw in batch])
    with tempfile.TemporaryDirectory() as tmp:
        stored: list[int] = []
        ours_s = timed(lambda: stored.append(asyncio.run(parse_and_store(batch, Path(tmp)))))
    assert stored == [n], stored
    return bench_line("spot_ingest.parse_store", n / ours_s, "frames/s", n / ref_s)


class TimedStore(SpotStore):
    """Records, for every stored tick, commit time − venue (= send) time, and send → receive per frame."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commit_latency_ms: list[float] = []
        self.receive_latency_ms: list[float] = []

    async def on_frame(self, raw: str | bytes, received_ts: int, connection_id: str) -> None:
        await super().on_frame(raw, received_ts, connection_id)
        data = json.loads(raw)
        if data.get("channel") == "ticker":
            sent_ns = int(datetime.fromisoformat(data["timestamp"][:26] + "+00:00").timestamp() * 1e9)
            self.receive_latency_ms.append((time.time_ns() - sent_ns) / 1e6)

    def _write_ticks(self, rows: list[SpotTick]) -> None:
        write_ticks(self.engine, rows)
        now_ns = time.time_ns()
        self.commit_latency_ms.extend((now_ns - tick.venue_time_ns) / 1e6 for tick in rows)


async def latency_run(rate: float, seconds: float, tmp: Path) -> tuple[float, float, int]:
    url = f"sqlite:///{tmp / 'latency.sqlite'}"
    upgrade_database(url)
    engine = make_engine(url)
    total = int(rate * seconds)
    done = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        for _ in range(2):  # ticker + heartbeats subscriptions
            await ws.recv()
        seq = 0
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send(ticker_frame(seq, time.time_ns(), 95_000 + i * 0.01))
            seq += 1
            if i % int(rate) == 0:
                await ws.send(heartbeat_frame(seq, i))
                seq += 1
        done.set()
        await ws.wait_closed()

    server = await serve(handler, "127.0.0.1", 0)
    port = next(iter(server.sockets)).getsockname()[1]
    store = TimedStore(engine, TapeWriter(tmp / "tape", "coinbase"))
    config = FeedConfig(url=f"ws://127.0.0.1:{port}", heartbeat_timeout_s=5.0, backoff=Backoff(0.05, 0.1))
    feed = CoinbaseFeed(config, store)
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    await done.wait()
    await asyncio.sleep(0.6)  # let the last batch's timer fire
    stop.set()
    await task
    await store.close()
    server.close()
    await server.wait_closed()
    engine.dispose()
    p99 = float(np.percentile(store.commit_latency_ms, 99))
    ref = float(np.percentile(store.receive_latency_ms, 99))
    return p99, ref, len(store.commit_latency_ms)


def bench_latency(rate: float, seconds: float) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        p99, ref, n = asyncio.run(latency_run(rate, seconds, Path(tmp)))
    assert n == int(rate * seconds), n
    return bench_line("spot_ingest.tick_to_commit_p99", p99, "ms", ref, higher_is_better=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(bench_parse_store(args.frames), flush=True)
    print(bench_latency(args.rate, args.seconds), flush=True)


if __name__ == "__main__":
    main()

"""Kalshi ingest throughput: order-book deltas applied and ticker frames parsed + stored, vs `json.loads` alone.

- `kalshi_book_deltas`: raw `orderbook_delta` frames (200 markets, signed deltas on both sides, sub-penny
  prices) through `KalshiStream.handle_frame` — JSON decode, `seq` check, apply to the book — per second.
  Reference: `json.loads` of the same frames. Target (issue 4): >= 200k deltas/s.
- `kalshi_ticker_store`: raw `ticker` frames through `handle_frame` (→ quote records), then stored with
  `write_quotes` in batches of 5000 into a migrated SQLite database, per second.
  Reference: `json.loads` of the same frames. Target (issue 4): >= 50k frames/s.

Each number is the best of `--repeat` interleaved runs (ours, then the reference), which keeps a noisy shared
machine from deciding the ratio.

Run: python -m benchmarks.kalshi_ingest [--deltas 500000] [--tickers 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import bench_line
from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.pipeline.kalshi_store import write_quotes
from kbtc.venues.kalshi.marketdata import QuoteRecord
from kbtc.venues.kalshi.ws import KalshiStream

MARKETS = [f"KXBTCD-26NOV2517-T{95000 + 250 * i}.99" for i in range(200)]


def delta_frames(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    frames = []
    for seq in range(1, n + 1):
        units = rng.randrange(10, 9990)
        msg = {
            "market_ticker": MARKETS[seq % len(MARKETS)],
            "market_id": "9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1",
            "price_dollars": f"{units / 10000:.4f}",
            "delta_fp": f"{rng.choice((-1, 1)) * rng.randrange(1, 500) / 100:.2f}",
            "side": "yes" if seq % 2 else "no",
            "ts": "2026-11-25T17:00:00Z",
            "ts_ms": 1_795_000_000_000 + seq,
        }
        frames.append(json.dumps({"type": "orderbook_delta", "sid": 1, "seq": seq + len(MARKETS), "msg": msg}))
    return frames


def snapshot_frames() -> list[str]:
    return [
        json.dumps({"type": "orderbook_snapshot", "sid": 1, "seq": i + 1, "msg": {
            "market_ticker": ticker, "yes_dollars_fp": [["0.4000", "10.00"]], "no_dollars_fp": [["0.5500", "7.00"]]}})
        for i, ticker in enumerate(MARKETS)
    ]


def ticker_frames(n: int, seed: int = 2) -> list[str]:
    rng = random.Random(seed)
    frames = []
    for i in range(n):
        bid = rng.randrange(1, 9900)
        msg = {
            "market_id": "9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1",
            "market_ticker": MARKETS[i % len(MARKETS)],
            "price_dollars": f"{bid / 10000:.4f}",
            "yes_bid_dollars": f"{bid / 10000:.4f}",
            "yes_ask_dollars": f"{(bid + 100) / 10000:.4f}",
            "volume_fp": "33896.00",
            "open_interest_fp": "20422.00",
            "dollar_volume": 16948,
            "dollar_open_interest": 10211,
            "yes_bid_size_fp": "300.00",
            "yes_ask_size_fp": "150.00",
            "last_trade_size_fp": "25.00",
            "ts": 1_795_000_000 + i // 1000,
            "ts_ms": 1_795_000_000_000 + i,
            "time": "2026-11-25T17:00:00Z",
        }
        frames.append(json.dumps({"type": "ticker", "sid": 2, "msg": msg}))
    return frames


def json_loads_rate(frames: list[str]) -> float:
    """The reference: frames per second through `json.loads` alone."""
    start = time.perf_counter()
    for frame in frames:
        json.loads(frame)
    return len(frames) / (time.perf_counter() - start)


def apply_deltas_rate(frames: list[str]) -> float:
    """Deltas per second through `KalshiStream.handle_frame` (decode, seq check, apply) on fresh books."""
    stream = KalshiStream("ws://unused/trade-api/ws/v2", MARKETS)
    for frame in snapshot_frames():
        stream.handle_frame(frame, 0)
    start = time.perf_counter()
    for frame in frames:
        stream.handle_frame(frame, 0)
    rate = len(frames) / (time.perf_counter() - start)
    assert all(not book.stale for book in stream.books.values()), "a gap was detected in a gap-free feed"
    return rate


def store_tickers_rate(frames: list[str], batch: int = 5000) -> float:
    """Ticker frames per second parsed into quotes and stored in batches into a fresh migrated SQLite file."""
    stream = KalshiStream("ws://unused/trade-api/ws/v2", MARKETS)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        upgrade_database(url)
        engine = make_engine(url)
        start = time.perf_counter()
        pending: list[QuoteRecord] = []
        for frame in frames:
            for item in stream.handle_frame(frame, 0):
                if isinstance(item, QuoteRecord):
                    pending.append(item)
            if len(pending) >= batch:
                write_quotes(engine, pending)
                pending = []
        write_quotes(engine, pending)
        rate = len(frames) / (time.perf_counter() - start)
        with engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT count(*) FROM quotes").scalar()
        engine.dispose()
    assert stored == len(frames), f"stored {stored} of {len(frames)} quotes"
    return rate


def best_of(repeat: int, ours: Callable[[], float], reference: Callable[[], float]) -> tuple[float, float]:
    """The best rate of each over `repeat` interleaved runs."""
    ours_best = reference_best = 0.0
    for _ in range(repeat):
        ours_best = max(ours_best, ours())
        reference_best = max(reference_best, reference())
    return ours_best, reference_best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deltas", type=int, default=500_000)
    parser.add_argument("--tickers", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    deltas = delta_frames(args.deltas)
    ours, reference = best_of(args.repeat, lambda: apply_deltas_rate(deltas), lambda: json_loads_rate(deltas))
    print(bench_line("kalshi_book_deltas", ours, "deltas/s", reference), flush=True)
    tickers = ticker_frames(args.tickers)
    ours, reference = best_of(args.repeat, lambda: store_tickers_rate(tickers), lambda: json_loads_rate(tickers))
    print(bench_line("kalshi_ticker_store", ours, "frames/s", reference), flush=True)


if __name__ == "__main__":
    main()

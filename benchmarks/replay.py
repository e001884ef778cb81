"""Replay throughput and sweep cost on a synthetic day (BENCH lines).

1. `replay_updates_per_s`: a day of Kalshi `ticker` frames (default 10M quote updates over 240 markets) plus
   1 Hz Coinbase ticks, as our gzip tape, replayed end to end — parse → database → edges every 10 s →
   snapshots → scores. Reference: the floor of reading the same tape and decoding every line (orjson), measured
   in the same run. The issue's target is 200k updates/s. `replay_cpu_updates_per_s` is the same against CPU
   time (all threads; a shared machine's load moves it far less than wall time), and a `#` line gives the
   database's size after the replay (file + WAL). The database is new, so the replay writes it with the bulk-load
   pragmas, as `kbtc replay` does a file it creates (kbtc/db/engine.py).
2. `sweep_4_settings_cost`: a 4-setting `vol.half_life` sweep over ~10M (as-of × market) pairs against one
   setting over the same pairs; value = time(4) / time(1) (lower is better, target ≤ 4), reference = 4.

Run: `.venv/bin/python -m benchmarks.replay [--updates N] [--markets M] [--sweep-pairs P] [--skip-sweep]
[--keep DIR]`.
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import polars as pl

from benchmarks.common import bench_line
from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import upsert
from kbtc.edge import EdgeParams
from kbtc.pipeline.edges import EdgeSettings
from kbtc.pipeline.replay import run_replay
from kbtc.pipeline.sweep import run_sweep, sweep_settings

DAY_MS = 86_400_000
START_MS = 1_795_046_400_000  # 2026-11-19T00:00Z
EVENT = "KXBTCD-26NOV20H00"


def _text(*parts: str | pl.Expr) -> pl.Expr:
    """Concatenate literal text and string-cast columns (pl.format would read JSON braces as column names)."""
    return pl.concat_str([pl.lit(p) if isinstance(p, str) else p.cast(pl.String) for p in parts])


def _tape_lines(frame: pl.DataFrame, raw: pl.Expr, feed: str) -> pl.Series:
    """Our tape's line for each row: `raw` is the frame text with its quotes already escaped."""
    return frame.select(
        _text('{"received_ts":', pl.col("received_ts"), f',"feed":"{feed}","connection_id":"bench","raw":"', raw,
              '"}').alias("line")
    )["line"]


def write_day(path: Path, updates: int, markets: int, seed: int = 7) -> tuple[list[str], list[float], float]:
    """Write the synthetic tape; return the market tickers, their strikes and the day's last spot price."""
    rng = np.random.default_rng(seed)
    strikes = [100_000.0 + 50.0 * (k - markets // 2) for k in range(markets)]
    tickers = [f"{EVENT}-T{s:.2f}" for s in strikes]
    spot_ts = np.arange(START_MS, START_MS + DAY_MS, 1000, dtype=np.int64)
    spot = 100_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.5 / np.sqrt(365 * 86_400), spot_ts.size)))
    ts = np.sort(rng.integers(START_MS, START_MS + DAY_MS, updates, dtype=np.int64))
    which = rng.integers(0, markets, updates)
    fair = 1.0 / (1.0 + np.exp((np.asarray(strikes)[which] - spot[(ts - START_MS) // 1000]) / 400.0))
    bid = np.clip(np.round(fair * 100) - 1, 1, 97).astype(np.int64)
    quotes = pl.DataFrame({"received_ts": ts + 20, "ts": ts, "ticker": np.asarray(tickers)[which], "bid": bid,
                           "seq": np.arange(1, updates + 1)})
    dollars = pl.col("bid").cast(pl.String).str.zfill(2)
    ask = (pl.col("bid") + 2).cast(pl.String).str.zfill(2)
    q = '\\"'
    kalshi_raw = _text(
        f"{{{q}type{q}:{q}ticker{q},{q}sid{q}:2,{q}seq{q}:", pl.col("seq"),
        f",{q}msg{q}:{{{q}market_ticker{q}:{q}", pl.col("ticker"), f"{q},{q}yes_bid_dollars{q}:{q}0.", dollars,
        f"00{q},{q}yes_ask_dollars{q}:{q}0.", ask,
        f"00{q},{q}yes_bid_size_fp{q}:{q}10.00{q},{q}yes_ask_size_fp{q}:{q}10.00{q},{q}ts_ms{q}:", pl.col("ts"), "}}",
    )
    spots = pl.DataFrame({"received_ts": spot_ts + 15, "ts": spot_ts, "price": spot, "seq": np.arange(spot_ts.size)})
    iso = pl.from_epoch("ts", time_unit="ms").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
    price = pl.col("price").round(2).cast(pl.String)
    coinbase_raw = _text(
        f"{{{q}type{q}:{q}ticker{q},{q}sequence{q}:", pl.col("seq"), f",{q}product_id{q}:{q}BTC-USD{q},{q}price{q}:{q}",
        price, f"{q},{q}best_bid{q}:{q}", price, f"{q},{q}best_ask{q}:{q}", price,
        f"{q},{q}best_bid_size{q}:{q}1{q},{q}best_ask_size{q}:{q}1{q},{q}time{q}:{q}", iso, f"{q}}}",
    )
    lines = pl.concat([
        pl.DataFrame({"received_ts": quotes["received_ts"], "line": _tape_lines(quotes, kalshi_raw, "kalshi")}),
        pl.DataFrame({"received_ts": spots["received_ts"], "line": _tape_lines(spots, coinbase_raw, "coinbase")}),
    ]).sort("received_ts")
    with gzip.open(path, "wb", compresslevel=1) as handle:
        for start in range(0, lines.height, 1_000_000):
            handle.write(("\n".join(lines["line"].slice(start, 1_000_000).to_list()) + "\n").encode())
    return tickers, strikes, float(spot[-1])


def seed_catalog(url: str, tickers: list[str], strikes: list[float], last_spot: float) -> None:
    """One event of `len(tickers)` strikes open all day, closing at its end; settled on the last spot."""
    engine = make_engine(url)
    upsert(engine, "markets", [
        {"market_ticker": t, "event_ticker": EVENT, "series_ticker": "KXBTCD", "status": "active",
         "strike_type": "greater", "floor_strike": s, "open_ts": START_MS - 3_600_000, "close_ts": START_MS + DAY_MS,
         "fee_type": "quadratic", "fee_multiplier": 1.0, "price_level_structure": "linear_cent",
         "result": "yes" if last_spot > s else "no", "first_seen_ts": START_MS, "updated_ts": START_MS}
        for t, s in zip(tickers, strikes, strict=True)
    ])
    engine.dispose()


def decode_floor_s(path: Path) -> tuple[float, float]:
    """Wall and CPU seconds to read the tape and decode every line and its frame (the reference)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    with gzip.open(path, "rb") as handle:
        for line in handle:
            orjson.loads(orjson.loads(line)["raw"])
    return time.perf_counter() - start, time.process_time() - start_cpu


def database_bytes(db: Path) -> tuple[int, int]:
    """Sizes of the SQLite file and its WAL (0 when there is none)."""
    wal = db.with_name(db.name + "-wal")
    return db.stat().st_size, wal.stat().st_size if wal.exists() else 0


def main() -> None:
    """Build the day, replay it, sweep it; print BENCH lines."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=10_000_000)
    parser.add_argument("--markets", type=int, default=240)
    parser.add_argument("--sweep-pairs", type=int, default=10_000_000, help="(as-of × market) pairs of the sweep.")
    parser.add_argument("--skip-sweep", action="store_true", help="Replay only (no sweep_4_settings_cost).")
    parser.add_argument("--keep", type=Path, default=None, help="Work in this directory and keep it.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        tape, db = work / "day.jsonl.gz", work / "replay.sqlite"
        db.unlink(missing_ok=True)
        started = time.perf_counter()
        tickers, strikes, last_spot = write_day(tape, args.updates, args.markets)
        print(f"# synthetic day written in {time.perf_counter() - started:.1f} s: {tape.stat().st_size / 1e6:.0f} MB")
        url = f"sqlite:///{db}"
        upgrade_database(url)
        seed_catalog(url, tickers, strikes, last_spot)
        # Every market is priceable all day (the horizon bound would leave most of the day unpriced).
        settings = EdgeSettings(params=EdgeParams(series=("KXBTCD",), max_horizon_s=2 * 86_400.0),
                                book_max_age_s=None)
        floor_s, floor_cpu_s = decode_floor_s(tape)
        engine = make_engine(url, bulk_load=True)  # as `kbtc replay` into a file it creates
        started, started_cpu = time.perf_counter(), time.process_time()
        result = run_replay(engine, [tape], settings, cadence_s=10.0)
        replay_s, replay_cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
        engine.dispose()  # the last connection's close checkpoints the WAL
        main_bytes, wal_bytes = database_bytes(db)
        print(f"# replay: {replay_s:.1f} s ({replay_cpu_s:.1f} s CPU), {result.ingest.quotes:,} quotes, "
              f"{result.asofs:,} as-of times, {result.edges_written:,} edges, {result.snapshots_written:,} snapshots; "
              f"database {main_bytes / 1e6:.1f} MB + WAL {wal_bytes / 1e6:.1f} MB; stages (wall): "
              + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in result.stage_s.items()))
        print(bench_line("replay_updates_per_s", args.updates / replay_s, "updates/s", args.updates / floor_s))
        print(bench_line("replay_cpu_updates_per_s", args.updates / replay_cpu_s, "updates/CPU-s",
                         args.updates / floor_cpu_s))
        if args.skip_sweep:
            return
        engine = make_engine(url)
        cadence_s = max(1.0, round(DAY_MS / 1000 * args.markets / args.sweep_pairs, 3))
        end = START_MS + DAY_MS - 1
        one = sweep_settings(settings, ["vol.half_life=15m"])
        four = sweep_settings(settings, ["vol.half_life=5m,15m,30m,60m"])
        started = time.perf_counter()
        run_sweep(engine, one, START_MS, end, cadence_s)
        one_s = time.perf_counter() - started
        started = time.perf_counter()
        run_sweep(engine, four, START_MS, end, cadence_s)
        four_s = time.perf_counter() - started
        pairs = round(DAY_MS / 1000 / cadence_s) * args.markets
        print(f"# sweep over {pairs:,} (as-of × market) pairs: 1 setting {one_s:.1f} s, 4 settings {four_s:.1f} s")
        print(bench_line("sweep_4_settings_cost", four_s / one_s, "× one setting", 4.0, higher_is_better=False))
        engine.dispose()


if __name__ == "__main__":
    main()

"""Bulk upsert throughput into SQLite vs plain `sqlite3.executemany` of the same rows, same run.

Measures, for 1M spot ticks and 1M quotes (override with --rows):
- ours: `kbtc.db.store.upsert` (ON CONFLICT DO UPDATE on the natural key, 50k-row transactions) from a
  Polars frame into a migrated database (with its unique constraints and indexes);
- reference: `sqlite3.executemany` of a plain INSERT of the same tuples in one transaction into the same
  schema (same indexes), same pragmas.
Then re-upserts the same rows (the idempotent path: every row conflicts) and reports that too.
Target (issue 2): ours >= 0.5x the reference throughput.

Run: python -m benchmarks.store [--rows 1000000]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.common import bench_line, timed
from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import count_rows, upsert


def spot_frame(n: int, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ts = 1_795_000_000_000 + np.arange(n, dtype=np.int64) * 250
    price = 95_000 + np.cumsum(rng.normal(0, 2.0, n))
    return pl.DataFrame(
        {
            "product_id": "BTC-USD",
            "source": "coinbase",
            "tick_ts": ts,
            "venue_time_ns": ts * 1_000_000 + rng.integers(0, 999_999, n),
            "received_ts": ts + 40,
            "price": price,
            "best_bid": price - 0.01,
            "best_ask": price + 0.01,
            "best_bid_size": rng.random(n),
            "best_ask_size": rng.random(n),
            "sequence_num": np.arange(n, dtype=np.int64),
        }
    )


def quote_frame(n: int, seed: int = 2) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    bid = np.round(rng.uniform(1, 97, n), 2)
    return pl.DataFrame(
        {
            "market_ticker": [f"KXBTCD-26NOV2517-T{95000 + 250 * (i % 200)}.99" for i in range(n)],
            "quote_ts": 1_795_000_000_000 + np.arange(n, dtype=np.int64) * 10,
            "received_ts": 1_795_000_000_000 + np.arange(n, dtype=np.int64) * 10 + 30,
            "source": "ws",
            "yes_bid_cents": bid,
            "yes_ask_cents": bid + 1.0,
            "no_bid_cents": 99.0 - bid,
            "no_ask_cents": 100.0 - bid,
            "yes_bid_size": np.round(rng.uniform(1, 500, n), 2),
            "yes_ask_size": np.round(rng.uniform(1, 500, n), 2),
            "volume": np.round(rng.uniform(0, 1e5, n), 2),
            "open_interest": np.round(rng.uniform(0, 1e5, n), 2),
        }
    )


def raw_executemany(path: Path, table: str, frame: pl.DataFrame) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    placeholders = ", ".join("?" for _ in frame.columns)
    sql = f"INSERT INTO {table} ({', '.join(frame.columns)}) VALUES ({placeholders})"
    with conn:
        conn.executemany(sql, frame.iter_rows())
    conn.close()


def run(rows: int) -> list[str]:
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for table, frame in (("spot_ticks", spot_frame(rows)), ("quotes", quote_frame(rows))):
            ours_path = Path(tmp) / f"ours_{table}.sqlite"
            ref_path = Path(tmp) / f"ref_{table}.sqlite"
            for path in (ours_path, ref_path):
                upgrade_database(f"sqlite:///{path}")
            engine = make_engine(f"sqlite:///{ours_path}")
            ref_s = timed(partial(raw_executemany, ref_path, table, frame))
            ours_s = timed(partial(upsert, engine, table, frame))
            again_s = timed(partial(upsert, engine, table, frame))
            assert count_rows(engine, table) == rows
            engine.dispose()
            lines.append(bench_line(f"store.upsert.{table}", rows / ours_s, "rows/s", rows / ref_s))
            lines.append(bench_line(f"store.reupsert.{table}", rows / again_s, "rows/s", rows / ref_s))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    for line in run(args.rows):
        print(line, flush=True)


if __name__ == "__main__":
    main()

"""Retention: delete old high-volume market data and old tape files.

Ledger tables (edges, snapshots, opportunities, positions, scores) and the catalog are never pruned: they are
the evidence. Deletes run in bounded batches so a prune never holds the SQLite write lock for long.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from kbtc.db.engine import write_transaction

# table → its time column. Only raw, re-derivable market data is prunable.
PRUNABLE: dict[str, str] = {
    "spot_ticks": "tick_ts",
    "quotes": "quote_ts",
    "orderbook_snapshots": "book_ts",
    "kalshi_trades": "trade_ts",
    "index_prices": "value_ts",
    "feed_events": "event_ts",
    "rejects": "received_ts",
    "market_lifecycle_events": "event_ts",
}


@dataclass(frozen=True, slots=True)
class PruneResult:
    """Rows deleted per table and tape files removed."""

    rows_deleted: dict[str, int]
    tape_files_removed: int
    tape_bytes_removed: int


def prune(
    engine: Engine,
    *,
    older_than_ts: int,
    tables: tuple[str, ...] = tuple(PRUNABLE),
    tape_root: Path | None = None,
    batch_rows: int = 50_000,
) -> PruneResult:
    """Delete rows older than `older_than_ts` from `tables`, and tape files last written before it."""
    unknown = sorted(set(tables) - set(PRUNABLE))
    if unknown:
        raise ValueError(f"not prunable: {', '.join(unknown)} (prunable: {', '.join(PRUNABLE)})")
    deleted: dict[str, int] = {}
    for table in tables:
        column = PRUNABLE[table]
        # Names come from PRUNABLE, the cutoff is bound; rowid-free batching works on SQLite and PostgreSQL.
        sql = text(
            f"DELETE FROM {table} WHERE {column} IN "  # noqa: S608
            f"(SELECT {column} FROM {table} WHERE {column} < :cutoff ORDER BY {column} LIMIT :n)"
        )
        total = 0
        while True:
            with write_transaction(engine) as conn:
                count = conn.execute(sql, {"cutoff": older_than_ts, "n": batch_rows}).rowcount or 0
            total += count
            if count == 0:
                break
        deleted[table] = total
    files = 0
    size = 0
    if tape_root is not None and tape_root.exists():
        cutoff_s = older_than_ts / 1000.0
        for path in sorted(tape_root.rglob("*.jsonl.gz")):
            stat = path.stat()
            if stat.st_mtime < cutoff_s and stat.st_mtime < time.time() - 60:
                size += stat.st_size
                path.unlink()
                files += 1
    return PruneResult(deleted, files, size)

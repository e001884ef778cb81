"""Data health: how fresh each stream is, and the gaps, stale periods and rejects recorded in a window.

Used by `kbtc health`, the performance report and the Prefect data-health artifact.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from sqlalchemy import Engine

from kbtc.db.store import read_frame

_LATEST = {
    # stream name → (table, timestamp column)
    "spot_ticks": ("spot_ticks", "tick_ts"),
    "quotes": ("quotes", "quote_ts"),
    "index_prices": ("index_prices", "value_ts"),
    "edge_snapshots": ("edge_snapshots", "asof_ts"),
    "opportunities": ("opportunities", "eval_ts"),
    "snapshot_scores": ("snapshot_scores", "scored_ts"),
}


@dataclass(frozen=True, slots=True)
class DataHealth:
    """Freshness per stream plus feed events and rejects in the window."""

    now_ts: int
    since_ts: int
    freshness: pl.DataFrame  # stream, latest_ts, age_s, rows_in_window
    feed_events: pl.DataFrame  # feed, kind, events, total_duration_s
    rejects: pl.DataFrame  # source, reason, rejects


def data_health(engine: Engine, now_ts: int, window_s: float = 86_400.0) -> DataHealth:
    """Measure data health at `now_ts` over the trailing `window_s` seconds."""
    since_ts = now_ts - int(window_s * 1000)
    rows = []
    with engine.connect() as conn:
        for stream, (table, column) in _LATEST.items():
            sql = f"""
                SELECT MAX({column}) AS latest_ts,
                       SUM(CASE WHEN {column} >= :since THEN 1 ELSE 0 END) AS rows_in_window
                FROM {table} WHERE {column} <= :now
            """  # noqa: S608 — table and column names come from the constant above
            latest_ts, in_window = read_frame(conn, sql, {"since": since_ts, "now": now_ts}).row(0)
            rows.append(
                {
                    "stream": stream,
                    "latest_ts": latest_ts,
                    "age_s": None if latest_ts is None else (now_ts - int(latest_ts)) / 1000.0,
                    "rows_in_window": int(in_window or 0),
                }
            )
        feed_events = read_frame(
            conn,
            """
            SELECT feed, kind, COUNT(*) AS events, COALESCE(SUM(duration_ms), 0) / 1000.0 AS total_duration_s
            FROM feed_events WHERE event_ts >= :since AND event_ts <= :now
            GROUP BY feed, kind ORDER BY feed, kind
            """,
            {"since": since_ts, "now": now_ts},
            # PostgreSQL returns NUMERIC for the division (shown as `0E-20`): seconds are a float everywhere.
            schema={"events": pl.Int64, "total_duration_s": pl.Float64},
        )
        rejects = read_frame(
            conn,
            """
            SELECT source, reason, COUNT(*) AS rejects
            FROM rejects WHERE received_ts >= :since AND received_ts <= :now
            GROUP BY source, reason ORDER BY rejects DESC, source, reason
            """,
            {"since": since_ts, "now": now_ts},
        )
    freshness = pl.DataFrame(
        rows, schema={"stream": pl.String, "latest_ts": pl.Int64, "age_s": pl.Float64, "rows_in_window": pl.Int64}
    )
    return DataHealth(now_ts, since_ts, freshness, feed_events, rejects)

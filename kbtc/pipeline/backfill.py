"""Backfill `spot_candles` from Coinbase REST candles: page a time range, store idempotently.

Used after downtime (a disconnect, a sequence gap, a stopped collector) to warm up the volatility estimator:
the edge loaders complete its spot series from the stored 1-minute candles of the configured product in the
minutes without a tick, each from its end on (kbtc.pipeline.vol_spot), so σ is ready as soon as the collector
is back instead of a lookback later. Other granularities are stored but not used there.

The range is split into windows of at most the venue's per-request maximum (350 Advanced Trade, 300 Exchange)
and fetched at ≤ 10 requests/s by `CandlesClient`. Rows are upserted on (product, source, granularity, start):
re-running a backfill never duplicates, and a candle that was still forming the first time is corrected the
next. Buckets without a candle are minutes nothing traded (the venue omits them), so they are counted, not
treated as errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
from sqlalchemy import Engine

from kbtc.db.store import read_frame, upsert
from kbtc.log import get_logger
from kbtc.pipeline.recording import record_rejects
from kbtc.venues.coinbase.messages import SOURCE_ADVANCED, SOURCE_EXCHANGE
from kbtc.venues.coinbase.rest import CandlesClient, check_granularity, max_candles

_log = get_logger(__name__)
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What a backfill did."""

    pages: int
    candles: int
    rejects: int
    empty_buckets: int


def candle_windows(start_s: int, end_s: int, granularity_s: int, per_request: int) -> list[tuple[int, int]]:
    """Request windows `(first_start, last_start)` (unix s, inclusive) covering [start_s, end_s] in buckets.

    `start_s` is aligned down to the granularity; each window holds at most `per_request` bucket starts, so no
    request can exceed the venue's maximum whether it treats `end` as inclusive or not.
    """
    if end_s < start_s:
        raise ValueError("end is before start")
    first = start_s - start_s % granularity_s
    windows = []
    while first <= end_s:
        last = min(first + (per_request - 1) * granularity_s, end_s - end_s % granularity_s)
        windows.append((first, last))
        first = last + granularity_s
    return windows


def backfill_spot(
    engine: Engine,
    client: CandlesClient,
    product_id: str,
    start_s: int,
    end_s: int,
    *,
    granularity_s: int = 60,
    progress: Progress | None = None,
) -> BackfillResult:
    """Fetch candles for [start_s, end_s] page by page into `spot_candles`; call `progress(done, total)`."""
    check_granularity(client.source, granularity_s)
    source = SOURCE_EXCHANGE if client.source == "exchange" else SOURCE_ADVANCED
    windows = candle_windows(start_s, end_s, granularity_s, max_candles(client.source))
    candles = rejects = empty = 0
    for done, (first, last) in enumerate(windows, start=1):
        page = client.fetch(product_id, first, last, granularity_s)
        received_ts = time.time_ns() // 1_000_000
        rows = [
            {
                "product_id": product_id,
                "source": source,
                "granularity_s": granularity_s,
                "start_ts": c.start_ts,
                "open": c.open,
                "high": c.high,
                "low": c.low,
                "close": c.close,
                "volume": c.volume,
                "received_ts": received_ts,
            }
            for c in page.candles
        ]
        if rows:
            upsert(engine, "spot_candles", rows, on_conflict="update")
        if page.rejects:
            record_rejects(engine, page.rejects)
        candles += len(rows)
        rejects += len(page.rejects)
        empty += (last - first) // granularity_s + 1 - len({c.start_ts for c in page.candles})
        if progress is not None:
            progress(done, len(windows))
    result = BackfillResult(len(windows), candles, rejects, empty)
    _log.info(
        "spot_backfill_done",
        product=product_id,
        source=source,
        start_s=start_s,
        end_s=end_s,
        granularity_s=granularity_s,
        pages=result.pages,
        candles=result.candles,
        rejects=result.rejects,
        empty_buckets=result.empty_buckets,
    )
    return result


def repair_windows(
    engine: Engine, product_id: str, since_ts: int, until_ts: int, *, hole_s: float = 30.0, source: str | None = None
) -> list[tuple[int, int]]:
    """Time windows (epoch ms, merged, oldest first) in [since_ts, until_ts] where spot data is missing.

    Two kinds: holes in `spot_ticks` longer than `hole_s` (an outage, a stale feed, a killed collector —
    whatever the cause, even one that left no feed event), and the loss windows of recorded sequence gaps
    that were not filled late (`feed_events` kind `gap` with a positive `duration_ms`).
    """
    source_filter = "" if source is None else "AND source = :source"
    params = {"product": product_id, "since": since_ts, "until": until_ts, "source": source}
    ticks = read_frame(
        engine,
        f"""
        SELECT DISTINCT tick_ts FROM spot_ticks
        WHERE product_id = :product AND tick_ts >= :since AND tick_ts <= :until {source_filter}
        ORDER BY tick_ts
        """,  # noqa: S608 — a fixed fragment, values are bound
        params,
        schema={"tick_ts": pl.Int64},
    )["tick_ts"]
    bounds = pl.concat([pl.Series([since_ts], dtype=pl.Int64), ticks, pl.Series([until_ts], dtype=pl.Int64)])
    holes = pl.DataFrame({"start": bounds[:-1], "end": bounds[1:]}).filter(
        pl.col("end") - pl.col("start") > int(hole_s * 1000)
    )
    gaps = read_frame(
        engine,
        """
        SELECT event_ts - duration_ms AS start, event_ts AS "end" FROM feed_events
        WHERE feed = 'coinbase' AND kind = 'gap' AND subject = :product AND duration_ms > 0
          AND event_ts >= :since AND event_ts <= :until
        """,
        params,
        schema={"start": pl.Int64, "end": pl.Int64},
    )
    windows = pl.concat([holes, gaps.select("start", "end")]).sort("start")
    merged: list[tuple[int, int]] = []
    for start, end in windows.iter_rows():  # few windows: merging overlaps in Python is clearer than in SQL
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged

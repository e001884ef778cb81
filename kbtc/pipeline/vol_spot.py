"""The volatility estimator's spot series: the stored ticks, completed from backfilled candles where ticks are missing.

After downtime the ticks cover only part of the estimator's lookback, so σ would wait an hour to be ready
again. `kbtc backfill-spot` stores Coinbase's 1-minute candles (`spot_candles`); here each candle of the
configured product whose minute holds no tick becomes one point: its close, stamped at the candle's end
(`start + 60 s`), because that is when the close is known. A candle is therefore only visible to as-of times
at or after its end (no look-ahead), and ticks win wherever both exist — a minute with any tick uses its ticks
only. The estimator (kbtc.edge.volatility) divides by elapsed time, not by a count, so one point a minute
beside one per grid bucket is an irregular series it already handles. A close is a trade price where a tick
gives the bid/ask mid: half a spread apart (BTC-USD usually quotes a cent wide), nothing beside a minute's move.

Only 1-minute candles from the Coinbase backfill (Advanced Trade or Exchange) are used: coarser candles would
need a tick read a whole candle wider, and imported CSV candles may stamp a different time. When both sources
hold a minute, the Advanced Trade candle is used. Only the volatility series is completed: the spot price, the
settlement-window prints and the basis keep reading ticks (a candle's close is neither a live price nor a
1-second print). So σ's `spot_age_s` counts from the newest point, tick or candle, while the engine's
`spot_stale` gate still looks at the ticks.

Whether a candle's minute holds a tick depends on ticks up to one minute before the lookback starts, so the
live loader reads ticks from there (`CANDLE_MS` earlier) and the history loader from as far back: both build
the same series. The live tick reads candles (one range seek) only when its ticks leave room for a tickless
minute, so a healthy feed costs one extra minute of ticks and no candle read.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from kbtc.venues.coinbase.messages import SOURCE_ADVANCED, SOURCE_EXCHANGE

CANDLE_GRANULARITY_S = 60
CANDLE_MS = CANDLE_GRANULARITY_S * 1000

CANDLE_SQL = """
    SELECT start_ts, source, close FROM spot_candles
    WHERE product_id = :product AND source IN (:advanced, :exchange) AND granularity_s = :granularity
      AND start_ts >= :first_start AND start_ts <= :last_start
    ORDER BY start_ts, source
"""
CANDLE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "start_ts": pl.Int64,
    "source": pl.String,
    "close": pl.Float64,
}


def candle_params(product_id: str, first_start_ts: int, last_start_ts: int) -> dict[str, object]:
    """Bound parameters of `CANDLE_SQL`: the product's 1-minute candles starting in [first, last] (epoch ms).

    `source IN (…)` names both sources so the read is a range seek on the primary key (product, source,
    granularity, start), not a scan of the product's candles.
    """
    return {
        "product": product_id,
        "advanced": SOURCE_ADVANCED,
        "exchange": SOURCE_EXCHANGE,
        "granularity": CANDLE_GRANULARITY_S,
        "first_start": first_start_ts,
        "last_start": last_start_ts,
    }


def needs_candles(tick_ts: pl.Series, first_start_ts: int, asof_ts: int) -> bool:
    """Whether a candle starting at or after `first_start_ts` and ending by `asof_ts` could hold no tick.

    `tick_ts` is sorted. A tickless minute needs a stretch of at least a minute without ticks: before the
    first tick, between two ticks, or after the last. With a live feed (a tick every second or so) there is
    none, and no candle is read.
    """
    ts = tick_ts.to_numpy()
    if ts.shape[0] == 0:
        return asof_ts - first_start_ts >= CANDLE_MS
    widest_gap = int(np.max(np.diff(ts))) if ts.shape[0] > 1 else 0
    return bool(ts[0] - first_start_ts >= CANDLE_MS or asof_ts - ts[-1] > CANDLE_MS or widest_gap > CANDLE_MS)


def complete_with_candles(ticks: pl.DataFrame, candles: pl.DataFrame) -> pl.DataFrame:
    """`ticks` (load_spot's columns, oldest first) plus a point for every candle whose minute holds no tick.

    `ticks` must have been read from the first candle's start on, so that every candle's minute is known. A
    point is the candle's close at its end, with no bid or ask (so the estimator takes the close). On equal
    times the candle point comes first: the tick, later in the grid bucket, is the one sampled.
    """
    if candles.height == 0:
        return ticks
    tick_times = ticks.select(pl.col("ts").alias("next_tick_ts")).sort("next_tick_ts")
    end = pl.col("start_ts") + CANDLE_MS
    points = (
        candles.sort("start_ts", "source")
        .unique("start_ts", keep="first", maintain_order=True)
        .join_asof(tick_times, left_on="start_ts", right_on="next_tick_ts", strategy="forward")
        .filter(pl.col("next_tick_ts").is_null() | (pl.col("next_tick_ts") >= end))
        .select(
            end.alias("ts"),
            pl.col("close").alias("price"),
            pl.lit(None).alias("best_bid"),
            pl.lit(None).alias("best_ask"),
        )
        .cast(ticks.schema)
    )
    if points.height == 0:
        return ticks
    return pl.concat([points, ticks]).sort("ts", maintain_order=True)

"""The settlement window's prints already fixed at an information time, from a 1-second spot proxy.

Kalshi's BTC markets settle on the mean of 60 one-second BRTI prints ending at the close
(kalshi_api.md §8: the window is `(close − 60 s, close]`). Once the window has opened, some prints are known;
model_math.md §1.3(b) prices the rest with a shifted strike. We do not receive the index every second, so each
print is proxied by the last spot price at or before its second (no look-ahead), in spot units — the engine
adds the basis.
"""

from __future__ import annotations

import polars as pl


def spot_price(frame: pl.DataFrame | pl.LazyFrame) -> pl.Expr:
    """The spot level to model: the bid/ask mid when both sides are sane, else the last trade `price`.

    model_math.md §2.3: the mid carries less bid–ask bounce than trade prints.
    """
    names = frame.collect_schema().names()
    price = pl.col("price")
    if "best_bid" not in names or "best_ask" not in names:
        return price
    bid, ask = pl.col("best_bid"), pl.col("best_ask")
    return pl.when((bid > 0) & (ask >= bid)).then((bid + ask) / 2.0).otherwise(price)


def first_print_offset_ms(window_prints: int, print_interval_s: float) -> int:
    """How long before the close the window's first print is fixed: `(n − 1)·Δ`, in ms.

    From then on at least one print is known; before it the market prices as "before the window" (the
    probability's `prints_left` is n), even though the averaging window `(close − nΔ, close]` has opened.
    """
    return (window_prints - 1) * round(print_interval_s * 1000)


def fixed_window_prints(
    spot: pl.DataFrame,
    keys: pl.DataFrame,
    *,
    window_prints: int = 60,
    print_interval_s: float = 1.0,
    max_print_age_s: float = 30.0,
) -> pl.DataFrame:
    """Sum and count of the settlement prints fixed by `info_ts`, per (info_ts, close_ts) of `keys`.

    `spot` has (ts, price[, best_bid, best_ask]); `keys` has `info_ts` and `close_ts` (epoch ms). Prints sit at
    `close − jΔ`, j = 0…n−1, and a print is fixed when its time is ≤ `info_ts`. A print whose proxy is missing or
    older than `max_print_age_s` makes the row's `fixed_sum_usd` null (the engine skips it as
    `window_prints_missing`). Keys before the first print (`close − (n−1)Δ`) — including those inside the
    window's first second, `(close − nΔ, close − (n−1)Δ)` — get a sum of 0 and a count of 0.
    """
    interval_ms = round(print_interval_s * 1000)
    out_schema = {"info_ts": pl.Int64, "close_ts": pl.Int64, "fixed_sum_usd": pl.Float64, "fixed_count": pl.Int64}
    unique = keys.select(pl.col("info_ts").cast(pl.Int64), pl.col("close_ts").cast(pl.Int64)).unique()
    first_print = pl.col("close_ts") - first_print_offset_ms(window_prints, print_interval_s)
    opened = unique.filter(pl.col("info_ts") >= first_print)
    before = unique.filter(pl.col("info_ts") < first_print).with_columns(
        pl.lit(0.0).alias("fixed_sum_usd"), pl.lit(0, pl.Int64).alias("fixed_count")
    )
    if opened.height == 0:
        return before.select(out_schema.keys()).cast(out_schema)  # type: ignore[arg-type]
    prints = (
        opened.with_columns(pl.int_ranges(0, window_prints).alias("j"))
        .explode("j")
        .with_columns((pl.col("close_ts") - pl.col("j") * interval_ms).alias("print_ts"))
        .filter(pl.col("print_ts") <= pl.col("info_ts"))
        .sort("print_ts")
    )
    proxy = (
        spot.lazy()
        .select(pl.col("ts").cast(pl.Int64).alias("tick_ts"), spot_price(spot).alias("print_usd"))
        .filter(pl.col("print_usd").is_finite() & (pl.col("print_usd") > 0))
        .sort("tick_ts")
        .collect()
    )
    joined = prints.join_asof(
        proxy,
        left_on="print_ts",
        right_on="tick_ts",
        strategy="backward",
        tolerance=round(max_print_age_s * 1000),
    )
    sums = joined.group_by("info_ts", "close_ts").agg(
        pl.when(pl.col("print_usd").null_count() == 0).then(pl.col("print_usd").sum()).alias("fixed_sum_usd"),
        pl.len().cast(pl.Int64).alias("fixed_count"),
    )
    return pl.concat([sums.select(out_schema.keys()), before.select(out_schema.keys())]).cast(
        out_schema  # type: ignore[arg-type]
    )

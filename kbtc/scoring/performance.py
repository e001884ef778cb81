"""Ledger performance: what the recorded decisions earned once their markets settled.

Input rows are `opportunities` rows with the market's `outcome` (null while unsettled) and `settled_ts`.
Each row is priced per contract as held to settlement at its recorded price with its recorded order fee:
`pnl_dollars = win − price_cents/100 − fee_dollars/contracts`, `win = y` for YES and `1 − y` for NO. With scope
`policy` the rows are the TAKEs (the shadow positions); with scope `all` PASS rows are priced the same way —
what passing on them was worth — which is how a reader sees whether the gates help.

Reported: count, settled, hit rate, mean PnL with its standard error clustered by event (the strikes of one
event settle on one print), total, the cumulative PnL path in settlement order and its maximum drawdown, and
model vs market Brier on the same rows.
"""

from __future__ import annotations

import polars as pl

from kbtc.scoring.inference import clustered_mean
from kbtc.scoring.metrics import brier, pnl_side


def price_ledger(rows: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Add `win` (1 when the row's side won), `pnl_dollars` and the model/market Brier to settled rows."""
    y = pl.col("outcome")
    return (
        rows.lazy()
        .with_columns(
            pl.when(pl.col("side") == "YES").then(y).otherwise(1 - y).alias("win"),
            pnl_side("side", y, "price_cents", pl.col("fee_dollars") / pl.col("contracts")).alias("pnl_dollars"),
            brier("p_model", y).alias("brier_model"),
            brier("p_market", y).alias("brier_market"),
        )
        .collect()
    )


def cumulative_pnl(priced: pl.DataFrame) -> pl.DataFrame:
    """Settled rows in settlement order with `cum_pnl_dollars` and `drawdown_dollars` (≤ 0, from the peak)."""
    cum = pl.col("pnl_dollars").cum_sum()
    return (
        priced.filter(pl.col("pnl_dollars").is_not_null())
        .sort(["settled_ts", "eval_ts", "market_ticker", "side"])
        .with_columns(cum.alias("cum_pnl_dollars"))
        .with_columns(
            # The peak includes the starting equity of 0, so a first loss is a drawdown too.
            (pl.col("cum_pnl_dollars") - pl.col("cum_pnl_dollars").cum_max().clip(lower_bound=0.0))
            .alias("drawdown_dollars")
        )
        .select("settled_ts", "eval_ts", "market_ticker", "side", "pnl_dollars", "cum_pnl_dollars",
                "drawdown_dollars")
    )


def ledger_summary(priced: pl.DataFrame) -> pl.DataFrame:
    """One row: decisions, settled, unsettled, hit_rate, pnl_mean, pnl_se (clustered by event), t, totals."""
    settled = priced.filter(pl.col("pnl_dollars").is_not_null())
    head = priced.select(
        pl.len().alias("decisions"),
        pl.col("outcome").count().alias("settled"),
        pl.col("outcome").null_count().alias("unsettled"),
        pl.col("win").mean().alias("hit_rate"),
        pl.col("pnl_dollars").sum().alias("pnl_total"),
        pl.col("brier_model").filter(pl.col("brier_market").is_not_null()).mean().alias("brier_model"),
        pl.col("brier_market").filter(pl.col("brier_model").is_not_null()).mean().alias("brier_market"),
    )
    if settled.height:
        stats = clustered_mean(settled, "pnl_dollars", "event_ticker").select(
            pl.col("mean").alias("pnl_mean"), pl.col("se").alias("pnl_se"), pl.col("clusters").alias("events"),
            pl.col("t"),
        )
        drawdown = cumulative_pnl(priced)["drawdown_dollars"].min()
    else:
        stats = pl.DataFrame(schema={"pnl_mean": pl.Float64, "pnl_se": pl.Float64, "events": pl.UInt32,
                                     "t": pl.Float64}).clear(1)
        drawdown = None
    return pl.concat([head, stats], how="horizontal").with_columns(
        pl.lit(drawdown, pl.Float64).alias("max_drawdown")
    )


def ledger_by_day(priced: pl.DataFrame) -> pl.DataFrame:
    """Settled rows per UTC settlement day: count, wins, PnL."""
    return (
        priced.filter(pl.col("pnl_dollars").is_not_null())
        .group_by(pl.from_epoch("settled_ts", time_unit="ms").dt.strftime("%Y-%m-%d").alias("day"))
        .agg(pl.len().alias("settled"), pl.col("win").sum().alias("wins"), pl.col("pnl_dollars").sum().alias("pnl"))
        .sort("day")
    )


def decision_counts(rows: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Recorded decisions per decision and reason code (a PASS row counts once under each of its reasons)."""
    return (
        rows.lazy()
        .select("decision", pl.col("reasons").fill_null("trade_signal").str.split(",").alias("reason"))
        .explode("reason")
        .group_by("decision", "reason")
        .len("rows")
        .sort(["decision", "rows", "reason"], descending=[True, True, False])
        .collect()
    )

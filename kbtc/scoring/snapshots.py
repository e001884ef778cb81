"""Scores of settled edge snapshots, the model and the market mid side by side, and their aggregates.

Input: `edge_snapshots` rows (kbtc/db/schema.py) with the market's `outcome` (1 YES / 0 NO) and `settled_ts`
joined on, and `contracts`, the order size the snapshot's fees and EVs are totals for (`model_params.contracts`;
model_math.md §3.2). `score_frame` adds, per snapshot:

- `p_mkt`: the snapshot's `p_market`, else the YES (or NO) bid/ask mid — the market's forecast;
- `brier_model`, `brier_market`; `logloss_*` at ε = 1e-6 and `logloss_*_grid` at ε = 0.01;
- `pnl_yes_dollars`, `pnl_no_dollars`: buying YES at the yes ask / NO at the no ask (else 100 − yes bid) and
  holding to settlement, per contract, with the snapshot's stored taker fee per contract (order fee / contracts);
- `pnl_model_dollars`: the PnL of the side the model's fee-aware EV picks (the higher of `ev_yes_dollars`,
  `ev_no_dollars` when it is > 0), null when the model would not trade — the model's "vote with money";
- `error`: comma-joined tokens for what could not be scored (`missing_prob`, `missing_market_prob`,
  `missing_yes_ask`, `missing_no_ask`, `missing_yes_fee`, `missing_no_fee`); the row is kept either way.

`summary` aggregates any grouping (series, lead-time bucket, moneyness bucket, UTC day) in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from kbtc.scoring import metrics as m
from kbtc.scoring.inference import brier_skill_score

# Lead time = close − as-of. Edges in seconds; labels name the interval.
LEAD_BREAKS_S = [300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0]
LEAD_LABELS = ["0-5m", "5-15m", "15-60m", "1-4h", "4-24h", ">24h"]
# Moneyness = (strike − spot)/spot in percent; the strike of a range bucket is its midpoint.
MONEYNESS_BREAKS_PCT = [-2.0, -0.5, 0.5, 2.0]
MONEYNESS_LABELS = ["<-2%", "-2..-0.5%", "-0.5..0.5%", "0.5..2%", ">2%"]


def _bucket(value: pl.Expr, breaks: Sequence[float], labels: Sequence[str]) -> pl.Expr:
    """Label of the interval `[breaks[i-1], breaks[i])` holding `value` (null stays null)."""
    labelled: pl.Expr = pl.lit(labels[-1])
    for upper, label in reversed(list(zip(breaks, labels, strict=False))):
        labelled = pl.when(value < upper).then(pl.lit(label)).otherwise(labelled)
    return pl.when(value.is_not_null()).then(labelled)


def lead_bucket(close_ts: str = "close_ts", asof_ts: str = "asof_ts") -> pl.Expr:
    """Lead-time bucket of a snapshot (time from as-of to the market's close)."""
    lead_s = (pl.col(close_ts) - pl.col(asof_ts)) / 1000.0
    return _bucket(lead_s, LEAD_BREAKS_S, LEAD_LABELS)


def reference_strike() -> pl.Expr:
    """The strike a snapshot is about: the range midpoint for `between`, else whichever bound exists."""
    both = (pl.col("floor_strike") + pl.col("cap_strike")) / 2.0
    return pl.when(pl.col("strike_type") == "between").then(both).otherwise(
        pl.coalesce(pl.col("floor_strike"), pl.col("cap_strike"))
    )


def moneyness_bucket(spot: str = "spot_usd") -> pl.Expr:
    """Moneyness bucket: where the strike sits relative to spot, in percent of spot."""
    pct = (reference_strike() - pl.col(spot)) / pl.col(spot) * 100.0
    return _bucket(pct, MONEYNESS_BREAKS_PCT, MONEYNESS_LABELS)


def utc_day(ts: str = "asof_ts") -> pl.Expr:
    """UTC calendar day (YYYY-MM-DD) of an epoch-ms column."""
    return pl.from_epoch(pl.col(ts), time_unit="ms").dt.strftime("%Y-%m-%d")


def _error_tokens() -> pl.Expr:
    checks = [
        (pl.col("p_model").is_null(), "missing_prob"),
        (pl.col("p_mkt").is_null(), "missing_market_prob"),
        (pl.col("yes_ask_cents").is_null(), "missing_yes_ask"),
        (m.no_ask_cents().is_null(), "missing_no_ask"),
        (pl.col("fee_yes_dollars").is_null(), "missing_yes_fee"),
        (pl.col("fee_no_dollars").is_null(), "missing_no_fee"),
    ]
    joined = pl.concat_str([pl.when(cond).then(pl.lit(token)) for cond, token in checks],
                           separator=",", ignore_nulls=True)
    return pl.when(joined == "").then(None).otherwise(joined)


def score_frame(snapshots: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Add the per-snapshot scores (see the module docstring) to snapshots that carry `outcome`."""
    y = pl.col("outcome")
    pick_yes = pl.col("ev_yes_dollars").fill_null(float("-inf"))
    pick_no = pl.col("ev_no_dollars").fill_null(float("-inf"))
    return (
        snapshots.lazy()
        .with_columns(pl.coalesce(pl.col("p_market"), m.market_mid()).alias("p_mkt"))
        .with_columns(
            m.brier("p_model", y).alias("brier_model"),
            m.brier("p_mkt", y).alias("brier_market"),
            m.log_loss("p_model", y, m.LOGLOSS_EPS_STRICT).alias("logloss_model"),
            m.log_loss("p_mkt", y, m.LOGLOSS_EPS_STRICT).alias("logloss_market"),
            m.log_loss("p_model", y, m.LOGLOSS_EPS_GRID).alias("logloss_model_grid"),
            m.log_loss("p_mkt", y, m.LOGLOSS_EPS_GRID).alias("logloss_market_grid"),
            m.pnl_yes(y, "yes_ask_cents", pl.col("fee_yes_dollars") / pl.col("contracts")).alias("pnl_yes_dollars"),
            m.pnl_no(y, m.no_ask_cents(), pl.col("fee_no_dollars") / pl.col("contracts")).alias("pnl_no_dollars"),
        )
        .with_columns(
            pl.when((pick_yes > 0) & (pick_yes >= pick_no)).then(pl.col("pnl_yes_dollars"))
            .when(pick_no > 0).then(pl.col("pnl_no_dollars"))
            .alias("pnl_model_dollars"),
            _error_tokens().alias("error"),
        )
    )


def with_buckets(scored: pl.LazyFrame) -> pl.LazyFrame:
    """Add `lead_bucket`, `moneyness_bucket` and `day` (UTC day of the as-of time)."""
    return scored.with_columns(
        lead_bucket().alias("lead_bucket"), moneyness_bucket().alias("moneyness_bucket"), utc_day().alias("day")
    )


def summary(scored: pl.DataFrame | pl.LazyFrame, by: Sequence[str] = ()) -> pl.DataFrame:
    """Model vs market per group: counts, mean scores, Brier skill score, PnL of always-YES/NO and the model pick.

    Model and market means are taken over the same rows (both forecasts present), so they are comparable.
    """
    paired = pl.col("brier_model").is_not_null() & pl.col("brier_market").is_not_null()

    def mean_paired(name: str) -> pl.Expr:
        return pl.col(name).filter(paired).mean()

    aggs = [
        pl.len().alias("snapshots"),
        pl.col("event_ticker").n_unique().alias("events"),
        paired.sum().alias("paired"),
        mean_paired("brier_model").alias("brier_model"),
        mean_paired("brier_market").alias("brier_market"),
        brier_skill_score(pl.col("brier_model").filter(paired), pl.col("brier_market").filter(paired)).alias("bss"),
        mean_paired("logloss_model").alias("logloss_model"),
        mean_paired("logloss_market").alias("logloss_market"),
        mean_paired("logloss_model_grid").alias("logloss_model_grid"),
        mean_paired("logloss_market_grid").alias("logloss_market_grid"),
        pl.col("pnl_yes_dollars").mean().alias("pnl_yes_mean"),
        pl.col("pnl_no_dollars").mean().alias("pnl_no_mean"),
        pl.col("pnl_model_dollars").count().alias("model_picks"),
        pl.col("pnl_model_dollars").mean().alias("pnl_model_mean"),
        pl.col("pnl_model_dollars").sum().alias("pnl_model_total"),
    ]
    lazy = scored.lazy()
    if by:
        return lazy.group_by(list(by)).agg(aggs).sort(list(by)).collect()
    return lazy.select(aggs).collect()

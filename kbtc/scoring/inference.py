"""Means with cluster-robust standard errors, and the paired model-vs-market loss comparison.

Dozens of strikes share one settlement print, so their scores and PnL are not independent: the effective
sample size is the number of events, not the number of contracts (model_math.md §4). The standard error
of a mean is therefore clustered by event (Liang–Zeger with the CR1 small-sample factor):

    x̄ = (1/N) Σ x_i,   S_g = Σ_{i∈g} (x_i − x̄),   SE² = G/(G−1) · Σ_g S_g² / N²

With one observation per cluster this is the usual `s/√N` (with an N−1 denominator).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

_ALL = "_all_rows"


def clustered_mean(
    frame: pl.DataFrame | pl.LazyFrame,
    value: str | pl.Expr,
    cluster: str,
    *,
    by: Sequence[str] = (),
) -> pl.DataFrame:
    """Per group: n, clusters, mean of `value`, its cluster-robust SE (null with < 2 clusters) and t = mean/SE."""
    expr = pl.col(value) if isinstance(value, str) else value
    groups = list(by) or [_ALL]
    lazy = frame.lazy()
    if not by:
        lazy = lazy.with_columns(pl.lit(0).alias(_ALL))
    lazy = lazy.select(*groups, pl.col(cluster), expr.cast(pl.Float64).alias("_x")).filter(
        pl.col("_x").is_not_null() & pl.col("_x").is_not_nan()
    )
    lazy = lazy.with_columns(pl.col("_x").mean().over(groups).alias("_mean"))
    per_cluster = lazy.group_by([*groups, cluster]).agg(
        (pl.col("_x") - pl.col("_mean")).sum().alias("_s"),
        pl.len().alias("_n"),
        pl.col("_mean").first(),
    )
    clusters = pl.len().cast(pl.Float64)
    n = pl.col("_n").sum().cast(pl.Float64)
    out = per_cluster.group_by(groups).agg(
        pl.col("_n").sum().alias("n"),
        pl.len().alias("clusters"),
        pl.col("_mean").first().alias("mean"),
        pl.when(clusters > 1)
        .then((clusters / (clusters - 1) * pl.col("_s").pow(2).sum()).sqrt() / n)
        .alias("se"),
    ).with_columns(
        pl.when(pl.col("se") > 0).then(pl.col("mean") / pl.col("se")).alias("t")
    )
    frame_out = out.sort(groups).collect()
    return frame_out if by else frame_out.drop(_ALL)


def paired_loss_difference(
    frame: pl.DataFrame | pl.LazyFrame,
    model_loss: str,
    market_loss: str,
    cluster: str,
    *,
    by: Sequence[str] = (),
) -> pl.DataFrame:
    """Mean of `d = model_loss − market_loss` on rows where both exist, clustered by `cluster`.

    Negative means the model's loss is lower (the model is better); |t| > 2 is the usual bar.
    """
    both = frame.lazy().filter(pl.col(model_loss).is_not_null() & pl.col(market_loss).is_not_null())
    return clustered_mean(both, pl.col(model_loss) - pl.col(market_loss), cluster, by=by)


def brier_skill_score(model_brier: pl.Expr, reference_brier: pl.Expr) -> pl.Expr:
    """`BSS = 1 − mean(BS_model)/mean(BS_ref)`, an aggregation: > 0 means the model beats the reference."""
    return 1.0 - model_brier.mean() / reference_brier.mean()

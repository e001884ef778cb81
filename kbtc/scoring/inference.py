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


def encompassing_regression(
    frame: pl.DataFrame | pl.LazyFrame,
    model: str,
    market: str,
    outcome: str,
    cluster: str,
    *,
    eps: float = 0.01,
    max_iter: int = 50,
) -> pl.DataFrame:
    """Fit `logit P(y) = a + b·logit(p_model) + c·logit(p_market)` with SEs clustered by `cluster`.

    The forecast-encompassing test of model_math.md §4: `b` significantly above 0 means the model carries
    information the market price does not; `c` near 1 with `b` near 0 means the market already holds it.
    Probabilities are clipped to [eps, 1 − eps] (the 1 ¢ grid) before the logit. Fitted by Newton–Raphson
    (IRLS); the SE is the cluster-robust sandwich with the G/(G−1) factor. Returns term, coef, se, z, n,
    clusters — empty when fewer than 3 clusters or the fit does not converge (e.g. perfect separation).
    """
    import numpy as np

    def logit(name: str) -> pl.Expr:
        clipped = pl.col(name).clip(eps, 1 - eps)
        return (clipped / (1 - clipped)).log()

    data = (
        frame.lazy()
        .filter(pl.col(model).is_not_null() & pl.col(market).is_not_null() & pl.col(outcome).is_not_null())
        .select(pl.col(cluster), logit(model).alias("x_model"), logit(market).alias("x_market"),
                pl.col(outcome).cast(pl.Float64).alias("y"))
        .collect()
    )
    terms = ["intercept", "model", "market"]
    empty = pl.DataFrame(schema={"term": pl.String, "coef": pl.Float64, "se": pl.Float64, "z": pl.Float64,
                                 "n": pl.Int64, "clusters": pl.Int64})
    clusters = data[cluster].n_unique()
    if clusters < 3:
        return empty
    x = np.column_stack([np.ones(data.height), data["x_model"].to_numpy(), data["x_market"].to_numpy()])
    y = data["y"].to_numpy()
    beta = np.zeros(3)
    # Separation drives the coefficients to infinity: overflow is expected there and ends in "no fit".
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for _ in range(max_iter):
            mu = 1.0 / (1.0 + np.exp(-(x @ beta)))
            hessian = x.T @ (x * (mu * (1 - mu))[:, None])
            try:
                step = np.linalg.solve(hessian, x.T @ (y - mu))
            except np.linalg.LinAlgError:
                return empty
            beta = beta + step
            if not np.all(np.isfinite(beta)):
                return empty
            if np.max(np.abs(step)) < 1e-10:
                break
        else:
            return empty
        mu = 1.0 / (1.0 + np.exp(-(x @ beta)))
    scores = data.select(pl.col(cluster)).with_columns(
        pl.Series(f"s{j}", x[:, j] * (y - mu)) for j in range(3)
    ).group_by(cluster).agg(pl.col(f"s{j}").sum() for j in range(3)).drop(cluster).to_numpy()
    try:
        bread = np.linalg.inv(x.T @ (x * (mu * (1 - mu))[:, None]))
    except np.linalg.LinAlgError:
        return empty
    covariance = clusters / (clusters - 1) * bread @ (scores.T @ scores) @ bread
    se = np.sqrt(np.diag(covariance))
    return pl.DataFrame({
        "term": terms, "coef": beta, "se": se, "z": beta / se,
        "n": [data.height] * 3, "clusters": [clusters] * 3,
    })

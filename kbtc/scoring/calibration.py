"""Calibration of probability forecasts: Murphy decomposition, ECE/MCE and the reliability table.

Frame functions (frames in, frames out) built on equal-mass bins, because BTC ladders put most forecasts
near 0 or 1 and equal-width bins would leave the middle nearly empty (model_math.md §4). All of them take
an optional `by` list and return one row per group (per group and bin for the reliability table), so
"calibration by series" is the same call as "calibration overall".

Murphy (1973) with the within-bin terms of Stephenson, Coelho & Jolliffe (2008):
`BS = REL − RES + UNC + WBV − WBC` holds exactly for any binning, where
`REL = (1/N) Σ n_k (f̄_k − ō_k)²`, `RES = (1/N) Σ n_k (ō_k − ō)²`, `UNC = ō (1 − ō)`,
`WBV = (1/N) Σ (p_i − f̄_k)²`, `WBC = (2/N) Σ (p_i − f̄_k)(y_i − ō_k)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import polars as pl

DEFAULT_BINS = 10
WILSON_Z = 1.959963984540054  # two-sided 95 %
_ALL = "_all_rows"


def equal_mass_bin(p: str, n_bins: int, over: Sequence[str] = ()) -> pl.Expr:
    """Bin index of `p` among `n_bins` equal-mass bins: the number of inner quantile edges at or below `p`.

    The edges are the j/n_bins quantiles (`higher` rule: each edge is an observed forecast), taken from one
    sort and located by binary search. Equal forecasts always share a bin; a heavy tie block makes edges
    coincide, so fewer, larger bins remain (empty bins are simply absent from the results).
    """
    # No edges at all for an empty input (its edge positions would be out of bounds).
    edge_count_end = pl.when(pl.len() > 0).then(pl.lit(n_bins)).otherwise(pl.lit(1))
    positions = (pl.int_range(1, edge_count_end, dtype=pl.Int64) * (pl.len() - 1) / n_bins).ceil().cast(pl.UInt32)
    edges = pl.col(p).sort().gather(positions)
    index = edges.search_sorted(pl.col(p), side="right")
    return (index.over(list(over)) if over else index).cast(pl.Int32)


def _prepare(frame: pl.DataFrame | pl.LazyFrame, p: str, y: str, by: Sequence[str], n_bins: int
             ) -> tuple[pl.LazyFrame, list[str]]:
    """Drop rows without a forecast or outcome, add the bin (edges within each group) and the group key."""
    groups = list(by) or [_ALL]
    lazy = frame.lazy().filter(pl.col(p).is_not_null() & pl.col(y).is_not_null() & pl.col(p).is_not_nan())
    lazy = lazy.with_columns(pl.col(p).cast(pl.Float64), pl.col(y).cast(pl.Float64)).with_columns(
        equal_mass_bin(p, n_bins, by).alias("bin")
    )
    return lazy, groups


def _per_cell(lazy: pl.LazyFrame, by: Sequence[str], aggs: Sequence[pl.Expr]) -> pl.LazyFrame:
    """Aggregate per (group, bin); without groups, add the constant group key only to the small result."""
    cells = lazy.group_by([*by, "bin"]).agg(aggs)
    return cells if by else cells.with_columns(pl.lit(0).alias(_ALL))


def _finish(lazy: pl.LazyFrame, by: Sequence[str], order: Sequence[str]) -> pl.DataFrame:
    frame = lazy.sort(order).collect()
    return frame if by else frame.drop(_ALL)


def murphy_decomposition(
    frame: pl.DataFrame | pl.LazyFrame,
    p: str,
    y: str,
    *,
    by: Sequence[str] = (),
    n_bins: int = DEFAULT_BINS,
) -> pl.DataFrame:
    """Brier score and its decomposition per group: n, brier, rel, res, unc, wbv, wbc, and `residual`.

    One pass of per-bin sums (n, Σp, Σy, Σp², Σpy, Σ(p−y)²) gives every term:
    `WBV = (1/N) Σ_k (Σp² − n f̄²)`, `WBC = (2/N) Σ_k (Σpy − n f̄ ō)`.
    `residual = brier − (rel − res + unc + wbv − wbc)`, with `brier` summed directly from `(p − y)²`, is zero
    up to rounding: it is reported so a reader can see the identity hold on the data at hand.
    """
    lazy, groups = _prepare(frame, p, y, by, n_bins)
    cells = _per_cell(lazy, by, [
        pl.len().cast(pl.Float64).alias("nk"),
        pl.col(p).sum().alias("sp"),
        pl.col(y).sum().alias("sy"),
        pl.col(p).pow(2).sum().alias("spp"),
        (pl.col(p) * pl.col(y)).sum().alias("spy"),
        (pl.col(p) - pl.col(y)).pow(2).sum().alias("sbs"),
    ]).with_columns((pl.col("sp") / pl.col("nk")).alias("fk"), (pl.col("sy") / pl.col("nk")).alias("ok"))
    n = pl.col("nk").sum()
    base = pl.col("sy").sum() / n
    out = cells.group_by(groups).agg(
        n.cast(pl.UInt32).alias("n"),
        (pl.col("sbs").sum() / n).alias("brier"),
        ((pl.col("nk") * (pl.col("fk") - pl.col("ok")).pow(2)).sum() / n).alias("rel"),
        ((pl.col("nk") * (pl.col("ok") - base).pow(2)).sum() / n).alias("res"),
        (base * (1 - base)).alias("unc"),
        ((pl.col("spp") - pl.col("nk") * pl.col("fk").pow(2)).sum() / n).alias("wbv"),
        (2 * (pl.col("spy") - pl.col("nk") * pl.col("fk") * pl.col("ok")).sum() / n).alias("wbc"),
    ).with_columns(
        (pl.col("brier") - (pl.col("rel") - pl.col("res") + pl.col("unc") + pl.col("wbv") - pl.col("wbc")))
        .alias("residual")
    )
    return _finish(out, by, groups)


def _per_bin(lazy: pl.LazyFrame, p: str, y: str, by: Sequence[str]) -> pl.LazyFrame:
    return _per_cell(lazy, by, [
        pl.len().alias("n"),
        pl.col(p).mean().alias("p_mean"),
        pl.col(p).min().alias("p_min"),
        pl.col(p).max().alias("p_max"),
        pl.col(y).mean().alias("y_rate"),
    ])


def calibration_error(
    frame: pl.DataFrame | pl.LazyFrame,
    p: str,
    y: str,
    *,
    by: Sequence[str] = (),
    n_bins: int = DEFAULT_BINS,
) -> pl.DataFrame:
    """ECE `Σ (n_k/N)|ō_k − f̄_k|` and MCE `max |ō_k − f̄_k|` over equal-mass bins, per group.

    ECE is biased upward in small bins: a perfectly calibrated bin still shows |ō − f̄| ≈ √(2f̄(1−f̄)/(π n))
    (the mean absolute deviation of a binomial rate, model_math.md §4). `ece_if_calibrated` is that expected
    ECE of a calibrated forecaster with the same bins — read ECE against it — and the bin count and the
    smallest bin are reported too.
    """
    lazy, groups = _prepare(frame, p, y, by, n_bins)
    gap = (pl.col("y_rate") - pl.col("p_mean")).abs()
    noise = (2 * pl.col("p_mean") * (1 - pl.col("p_mean")) / (math.pi * pl.col("n"))).sqrt()
    out = _per_bin(lazy, p, y, by).group_by(groups).agg(
        ((pl.col("n") * gap).sum() / pl.col("n").sum()).alias("ece"),
        ((pl.col("n") * noise).sum() / pl.col("n").sum()).alias("ece_if_calibrated"),
        gap.max().alias("mce"),
        pl.len().alias("bins"),
        pl.col("n").min().alias("min_bin_n"),
        pl.col("n").sum().alias("n"),
    )
    return _finish(out, by, groups)


def reliability_table(
    frame: pl.DataFrame | pl.LazyFrame,
    p: str,
    y: str,
    *,
    by: Sequence[str] = (),
    n_bins: int = DEFAULT_BINS,
) -> pl.DataFrame:
    """Per equal-mass bin: count, mean forecast, forecast range, observed frequency and its 95 % Wilson interval."""
    lazy, groups = _prepare(frame, p, y, by, n_bins)
    z2 = WILSON_Z**2
    n = pl.col("n").cast(pl.Float64)
    centre = (pl.col("y_rate") + z2 / (2 * n)) / (1 + z2 / n)
    half = WILSON_Z / (1 + z2 / n) * (pl.col("y_rate") * (1 - pl.col("y_rate")) / n + z2 / (4 * n * n)).sqrt()
    out = _per_bin(lazy, p, y, by).with_columns(
        # Renumbered 0, 1, ... over the bins present (coinciding edges leave gaps in the raw index).
        (pl.col("bin").rank("dense").over(groups) - 1).cast(pl.Int32).alias("bin"),
        (centre - half).clip(0.0, 1.0).alias("y_low"),
        (centre + half).clip(0.0, 1.0).alias("y_high"),
    )
    return _finish(out, by, [*groups, "bin"])

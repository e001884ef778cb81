"""The basis from Coinbase spot to the settlement index (CF Benchmarks BRTI), estimated online.

Kalshi settles BTC contracts on the 60-second average of BRTI, not on Coinbase (coinbase_api.md §4.2). On
real KXBTC15M data the Coinbase 60 s average sat a persistent few dollars from the published BRTI averages
(median |gap| ≈ $6, p90 ≈ $14, changing sign over hours; §4.4), enough to decide near-expiry outcomes. The
engine adds `basis_usd` to spot and `basis_std_usd²` to the variance of the settlement average.

Evidence, best first (`basis_status`):
- `index`: index prints (`index_prices`, BRTI from Kalshi's `cfbenchmarks_value`) against the Coinbase mid at
  the same instants, averaged per completed minute, so each observation is a 60 s average gap like the
  settlement's own.
- `references`: published 60 s BRTI averages — every KXBTC15M `floor_strike` is the average before its
  window opened, every `expiration_value` the one before it closed (kbtc.pipeline.edge_inputs
  .load_settled_references) — each against the Coinbase 60 s average over the same minute. A strike and the
  previous market's expiration value describe the same minute and count once.
- `insufficient_observations`: fewer observations than required: the prior (`prior_basis_usd` ± `prior_std_usd`).
- `disabled`: `enabled=False`: basis 0 ± 0, so the engine's arithmetic is unchanged and the value of the
  correction can be measured by switching it off.

While index prints are fresh the engine does not use the basis at all: the index is the spot
(kbtc.edge.engine.market_state, `basis_status = "spot_is_index"`); the estimate covers the feed's gaps.

Estimator: an exponentially time-weighted mean and variance of the observed gaps (half-life per source); the
sparse references are shrunk toward the prior by `prior_weight_obs` pseudo-observations.
`basis_std_usd = sqrt(var·(1 + 1/n_eff))` is the spread of the next 60 s gap around the estimate, including the
estimate's own error, floored at `min_std_usd`. No look-ahead: a reference counts once it was published
(`known_ts`, default its window end) and an index minute once it is complete, both at or before the as-of time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from kbtc.edge.vol_recursion import FloatArray, IntArray, decayed_cumsum, spot_mid, window_sum

STATUS_INDEX = "index"
STATUS_REFERENCES = "references"
STATUS_INSUFFICIENT = "insufficient_observations"
STATUS_DISABLED = "disabled"

_MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class BasisParams:
    """How the Coinbase-to-index basis is estimated (see the module docstring)."""

    enabled: bool = True
    half_life_s: float = 1_800.0
    lookback_s: float = 7_200.0
    min_observations: int = 3
    prior_basis_usd: float = 0.0
    prior_std_usd: float = 10.0
    prior_weight_obs: float = 2.0
    min_std_usd: float = 1.0
    average_window_s: int = 60
    min_marks: int = 45
    max_tick_age_s: float = 5.0
    use_index: bool = True
    index_half_life_s: float = 300.0
    index_lookback_s: float = 1_800.0
    index_min_minutes: int = 3
    index_min_prints_per_minute: int = 10

    def __post_init__(self) -> None:
        if min(self.half_life_s, self.index_half_life_s, self.lookback_s, self.index_lookback_s) <= 0:
            raise ValueError("half-lives and lookbacks must be positive")
        if not 0 < self.min_marks <= self.average_window_s:
            raise ValueError("min_marks must be in 1..average_window_s")
        if self.min_observations < 1 or self.index_min_minutes < 1 or self.prior_weight_obs < 0:
            raise ValueError("min_observations, index_min_minutes >= 1 and prior_weight_obs >= 0 required")
        if self.prior_std_usd < 0 or self.min_std_usd < 0:
            raise ValueError("standard deviations must be non-negative")


def reference_spot_span_ms(params: BasisParams) -> int:
    """How far before a reference's window end the Coinbase ticks for its average reach (ms).

    The earliest mark is `end − w`; it takes a tick at most `max_tick_age_s` older.
    """
    return round((params.average_window_s + params.max_tick_age_s) * 1000)


def coinbase_window_average(
    ts_ms: IntArray, mid: FloatArray, window_end_ts: IntArray, params: BasisParams
) -> tuple[FloatArray, IntArray]:
    """The Coinbase mid averaged over the seconds before each `window_end_ts`, as BRTI's 60 s average is.

    Marks are `end − w, …, end − 1 s` (one per second, like BRTI's prints); each takes the last tick at or
    before it if that tick is at most `max_tick_age_s` old. Returns (average, valid marks); the average is NaN
    where fewer than `min_marks` marks are valid.
    """
    offsets = np.arange(-params.average_window_s, 0, dtype=np.int64) * 1000
    marks = window_end_ts[:, None] + offsets[None, :]
    idx = np.searchsorted(ts_ms, marks, side="right") - 1
    if ts_ms.shape[0] == 0:
        return np.full(window_end_ts.shape[0], np.nan), np.zeros(window_end_ts.shape[0], dtype=np.int64)
    safe = np.maximum(idx, 0)
    valid = (idx >= 0) & (marks - ts_ms[safe] <= params.max_tick_age_s * 1000)
    count = valid.sum(axis=1).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        average = np.where(valid, mid[safe], 0.0).sum(axis=1) / count
    return np.where(count >= params.min_marks, average, np.nan), count


def reference_gaps(spot: pl.DataFrame, references: pl.DataFrame, params: BasisParams) -> pl.DataFrame:
    """One row per published 60 s index average with a usable Coinbase average over the same seconds.

    `references` has `window_end_ts` and `index_avg_usd` (load_settled_references), optionally `known_ts`
    (when the value became public; default the window end). Returns `window_end_ts, known_ts, index_avg_usd,
    coinbase_avg_usd, gap_usd` (gap = index − Coinbase), oldest first.
    """
    known = pl.col("known_ts") if "known_ts" in references.columns else pl.col("window_end_ts")
    refs = (
        references.lazy()
        .filter(pl.col("window_end_ts").is_not_null() & pl.col("index_avg_usd").is_finite())
        .group_by("window_end_ts")
        .agg(
            # A value cannot be public before its window ended; the first publication of a minute counts.
            pl.max_horizontal(known, pl.col("window_end_ts")).min().alias("known_ts"),
            pl.col("index_avg_usd").mean(),
        )
        .sort("window_end_ts")
        .collect()
    )
    ts_ms, mid = spot_mid(spot)
    ends = refs["window_end_ts"].to_numpy().astype(np.int64)
    average, _ = coinbase_window_average(ts_ms, mid, ends, params)
    return (
        refs.with_columns(coinbase_avg_usd=pl.Series(average, dtype=pl.Float64, nan_to_null=True))
        .drop_nulls("coinbase_avg_usd")
        .with_columns(gap_usd=pl.col("index_avg_usd") - pl.col("coinbase_avg_usd"))
        .sort("known_ts", "window_end_ts")
    )


def index_minute_gaps(spot: pl.DataFrame, index_prints: pl.DataFrame, params: BasisParams) -> pl.DataFrame:
    """Index prints minus the Coinbase mid at the same instant, averaged per minute: `known_ts, gap_usd, prints`.

    `known_ts` is the end of the minute (the observation is complete then). Prints without a Coinbase tick in
    the last `max_tick_age_s` are left out; minutes with fewer than `index_min_prints_per_minute` prints too.
    """
    ts_ms, mid = spot_mid(spot)
    prints = index_prints.filter(pl.col("ts").is_not_null() & pl.col("price").is_finite() & (pl.col("price") > 0))
    if ts_ms.shape[0] == 0:
        prints = prints.clear()
    p_ts = prints["ts"].to_numpy().astype(np.int64)
    idx = np.searchsorted(ts_ms, p_ts, side="right") - 1
    safe = np.maximum(idx, 0)
    valid = (idx >= 0) & (p_ts - ts_ms[np.minimum(safe, max(ts_ms.shape[0] - 1, 0))] <= params.max_tick_age_s * 1000)
    gaps = pl.DataFrame(
        {"minute": p_ts[valid] // _MINUTE_MS, "gap_usd": prints["price"].to_numpy()[valid] - mid[safe[valid]]},
        schema={"minute": pl.Int64, "gap_usd": pl.Float64},
    )
    return (
        gaps.group_by("minute")
        .agg(pl.col("gap_usd").mean(), pl.len().cast(pl.Int64).alias("prints"))
        .filter(pl.col("prints") >= params.index_min_prints_per_minute)
        .select(((pl.col("minute") + 1) * _MINUTE_MS).alias("known_ts"), "gap_usd", "prints")
        .sort("known_ts")
    )


@dataclass(frozen=True, slots=True)
class _Stats:
    mean: FloatArray
    std: FloatArray
    n: IntArray


def _weighted_stats(
    known_ts: IntArray,
    gap: FloatArray,
    asof: IntArray,
    *,
    half_life_s: float,
    lookback_s: float,
    prior_weight: float,
    params: BasisParams,
) -> _Stats:
    """Time-weighted mean/std of the gaps known in [t − lookback, t], for every as-of t, shrunk to the prior."""
    # A leading zero observation makes "everything up to j" an ordinary window (0, j].
    ts = np.concatenate([known_ts[:1] if known_ts.shape[0] else np.zeros(1, np.int64), known_ts])
    values = np.concatenate([[0.0], gap])
    ones = np.concatenate([[0.0], np.ones_like(gap)])
    k = math.log(2.0) / half_life_s
    log_decay = np.concatenate([[0.0], k * np.diff(ts) / 1000.0])
    s0, cum = decayed_cumsum(ones, log_decay)
    s1, _ = decayed_cumsum(ones * values, log_decay)
    s2, _ = decayed_cumsum(ones * values**2, log_decay)
    q, cum2 = decayed_cumsum(ones, 2 * log_decay)
    last = np.searchsorted(ts[1:], asof, side="right").astype(np.int64)
    first = np.searchsorted(ts[1:], asof - round(lookback_s * 1000), side="left").astype(np.int64)
    w0, w1, w2 = (window_sum(acc, cum, first, last) for acc in (s0, s1, s2))
    w_sq = window_sum(q, cum2, first, last)
    n0 = prior_weight
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = w1 / w0
        n_eff = w0**2 / w_sq
        var = np.maximum(w2 / w0 - mean**2, 0.0) * np.where(n_eff > 1, n_eff / (n_eff - 1), np.nan)
        n_eff = np.nan_to_num(n_eff, nan=0.0)
        post_mean = (n_eff * np.nan_to_num(mean) + n0 * params.prior_basis_usd) / (n_eff + n0)
        post_var = (n_eff * np.nan_to_num(var) + n0 * params.prior_std_usd**2) / (n_eff + n0)
        std = np.sqrt(post_var * (1 + 1 / n_eff))
    return _Stats(post_mean, np.maximum(std, params.min_std_usd), np.maximum(last - first, 0))


def estimate_basis(
    spot: pl.DataFrame,
    asof_ts: Sequence[int] | IntArray,
    *,
    references: pl.DataFrame | None = None,
    index_prints: pl.DataFrame | None = None,
    params: BasisParams | None = None,
    reference_spot: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Estimate index − Coinbase at each as-of time: `asof_ts, basis_usd, basis_std_usd, basis_n, basis_status`.

    `spot` (load_spot) must cover the index minutes inside `index_lookback_s`, and `reference_spot` (default
    `spot`) the reference minutes inside `lookback_s` — a live tick passes its recent spot plus the older
    reference minutes alone (kbtc.pipeline.edge_inputs.load_spot_windows), a replay the whole period.
    `references` comes from load_settled_references, `index_prints` from load_index_prints (`ts`, `price`).
    Either may be None or empty. One row per as-of time, in the given order.
    """
    params = params or BasisParams()
    asof = np.asarray(asof_ts, dtype=np.int64)
    n = asof.shape[0]
    basis = np.full(n, params.prior_basis_usd if params.enabled else 0.0)
    std = np.full(n, params.prior_std_usd if params.enabled else 0.0)
    count = np.zeros(n, dtype=np.int64)
    status = np.full(n, STATUS_INSUFFICIENT if params.enabled else STATUS_DISABLED, dtype=object)
    if params.enabled:
        # Lower-priority evidence first, so the index overwrites references where both qualify.
        if references is not None and references.height:
            gaps = reference_gaps(spot if reference_spot is None else reference_spot, references, params)
            stats = _weighted_stats(
                gaps["known_ts"].to_numpy().astype(np.int64),
                gaps["gap_usd"].to_numpy(),
                asof,
                half_life_s=params.half_life_s,
                lookback_s=params.lookback_s,
                prior_weight=params.prior_weight_obs,
                params=params,
            )
            use = stats.n >= params.min_observations
            basis, std = np.where(use, stats.mean, basis), np.where(use, stats.std, std)
            status, count = np.where(use, STATUS_REFERENCES, status), stats.n
        if params.use_index and index_prints is not None and index_prints.height:
            minutes = index_minute_gaps(spot, index_prints, params)
            stats = _weighted_stats(
                minutes["known_ts"].to_numpy().astype(np.int64),
                minutes["gap_usd"].to_numpy(),
                asof,
                half_life_s=params.index_half_life_s,
                lookback_s=params.index_lookback_s,
                prior_weight=0.0,  # a minute of index prints per observation: the data outweigh any prior
                params=params,
            )
            use = stats.n >= params.index_min_minutes
            basis, std = np.where(use, stats.mean, basis), np.where(use, stats.std, std)
            status, count = np.where(use, STATUS_INDEX, status), np.where(use, stats.n, count)
    return pl.DataFrame(
        {"asof_ts": asof, "basis_usd": basis, "basis_std_usd": std, "basis_n": count, "basis_status": status.tolist()},
        schema={
            "asof_ts": pl.Int64,
            "basis_usd": pl.Float64,
            "basis_std_usd": pl.Float64,
            "basis_n": pl.Int64,
            "basis_status": pl.String,
        },
    )

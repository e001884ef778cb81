"""Annualised volatility of BTC-USD from Coinbase ticks, read at many as-of times with no look-ahead.

Methods (model_math.md §2):
- `ewma` (default): time-decayed variance *rate* on a sampling grid, `σ̂² = Σ w_i r_i² / Σ w_i Δt_i` with
  `w_i = exp(−(t − t_i)·ln2/h)` (§2.2). Dividing by the decayed elapsed time, not by a count, keeps it unbiased
  when ticks arrive irregularly or the feed has gaps. An initial prior (`prior_weight_s` seconds of data at
  `prior_sigma_annual`) sits at the start of the window and decays like data, so early values are not wild.
- `bipower`: the same weighting on `(π/2)·|r_i||r_{i−1}|` over `√(Δt_i Δt_{i−1})`, which ignores isolated
  jumps (Barndorff-Nielsen & Shephard 2004, §2.3).
- `seed`: the original system exactly (seed_system.md §3.2): last trade price per 5 s bucket, no forward fill,
  `var₀ = r₀²`, `varₖ = λ·varₖ₋₁ + (1−λ)·rₖ²` with λ = 0.94, annualised with √(Y/5), 3900 s lookback,
  ≥ 2 points, ≥ 3600 s span, ≥ 10 returns, rejected (not clamped) outside (0, 5]. Deliberate differences: the
  lookback ends at the as-of time (the original's SQLite path used the database clock, a look-ahead in replay),
  the row cap (`max_spot_points`) is not applied, and the fallback to the last stored estimate is replaced by
  the prior (0.6, its `sigma_default`).

Sampling: the price of a grid bucket `[kG, (k+1)G)` is its last tick (the mid of best bid/ask, falling back to
the last price), stamped with that tick's own time. The bucket holding the as-of time contributes its latest
tick at or before the as-of time, so the row for t depends only on ticks with ts ≤ t in `[t − lookback, t]`:
the same frame answers a live tick and a months-long replay identically. Annualisation uses Y = 365×86400 s
(a 24/7 market).

After downtime the loaders complete the series from backfilled 1-minute candles (kbtc.pipeline.vol_spot): one
point a minute, the close at the candle's end, where no tick arrived. `ewma` and `bipower` weigh each return by
its elapsed time, so such a stretch counts for its duration, and its points count towards readiness (points,
span) like sampled ticks: after a backfill σ can be `ok` as soon as the collector is back. `seed` treats every
return as one grid step, as the original did across any gap, so it overstates the variance of such stretches.

Statuses (`sigma_status`), checked in this order, first failure wins:
`insufficient_points` (< 2 sampled points), `insufficient_span` (first-to-last sampled point < `min_span_s`),
`insufficient_points` (< `min_points` returns), `spot_stale` (newest tick older than `max_spot_age_s`),
`non_finite`, `out_of_bounds` (estimate ≤ 0 or outside [floor, cap]); otherwise `ok`.
Which rows carry a usable sigma (`sigma_source`):
- `ok` → the estimate (`estimate`);
- `out_of_bounds` with `clamp_to_bounds` → the nearer bound (`floor` or `cap`);
- every other non-ok status (and `out_of_bounds` without clamping, as in `seed`) → `prior_sigma_annual`
  (`prior`) when `fallback == "prior"`, else null sigma and null source.
So `sigma_annual`, when not null, is always a usable σ; `sigma_status` says whether it is the estimate itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import polars as pl

from kbtc.edge.vol_recursion import BoolArray, FloatArray, IntArray, decayed_cumsum, spot_mid, window_sum

SECONDS_PER_YEAR = 365 * 86_400

VolMethod = Literal["ewma", "bipower", "seed"]
FallbackPolicy = Literal["prior", "none"]

STATUS_OK = "ok"
STATUS_INSUFFICIENT_POINTS = "insufficient_points"
STATUS_INSUFFICIENT_SPAN = "insufficient_span"
STATUS_SPOT_STALE = "spot_stale"
STATUS_NON_FINITE = "non_finite"
STATUS_OUT_OF_BOUNDS = "out_of_bounds"

VOL_COLUMNS = (
    "asof_ts",
    "sigma_annual",
    "sigma_status",
    "sigma_source",
    "sigma_estimate_annual",
    "vol_points",
    "vol_span_s",
    "spot_age_s",
)


@dataclass(frozen=True, slots=True)
class VolParams:
    """How volatility is estimated. Defaults: the signature study in docs/EDGE_VALIDATION_VOL.md.

    `half_life_s` and `prior_weight_s` are used by `ewma`/`bipower`; `seed_lambda` only by `seed`.
    `max_spot_age_s=None` disables the staleness check. `use_quotes=False` samples the last trade price.
    """

    method: VolMethod = "ewma"
    grid_s: float = 15.0
    half_life_s: float = 600.0
    prior_sigma_annual: float = 0.5
    prior_weight_s: float = 300.0
    lookback_s: float = 3_900.0
    min_points: int = 30
    min_span_s: float = 900.0
    max_spot_age_s: float | None = 60.0
    floor_sigma_annual: float = 0.15
    cap_sigma_annual: float = 2.5
    clamp_to_bounds: bool = True
    fallback: FallbackPolicy = "prior"
    use_quotes: bool = True
    seed_lambda: float = 0.94

    def __post_init__(self) -> None:
        if self.method not in ("ewma", "bipower", "seed"):
            raise ValueError(f"unknown volatility method {self.method!r}")
        if self.fallback not in ("prior", "none"):
            raise ValueError(f"unknown fallback policy {self.fallback!r}")
        grid_ms = self.grid_s * 1000
        if self.grid_s <= 0 or grid_ms != round(grid_ms):
            raise ValueError("grid_s must be a positive whole number of milliseconds")
        if self.lookback_s < self.grid_s:
            raise ValueError("lookback_s must cover at least one grid step")
        if self.half_life_s <= 0 or self.prior_weight_s < 0 or self.min_points < 1 or self.min_span_s < 0:
            raise ValueError("half_life_s > 0, prior_weight_s >= 0, min_points >= 1 and min_span_s >= 0 required")
        if not 0 < self.seed_lambda < 1:
            raise ValueError("seed_lambda must be in (0, 1)")
        if not (0 <= self.floor_sigma_annual <= self.cap_sigma_annual and self.prior_sigma_annual > 0):
            raise ValueError("need 0 <= floor <= cap and a positive prior")

    @classmethod
    def seed(cls) -> VolParams:
        """The original system's estimator and defaults (seed_system.md §3.2, §3.11)."""
        return cls(
            method="seed",
            grid_s=5.0,
            seed_lambda=0.94,
            lookback_s=3_900.0,
            min_points=10,
            min_span_s=3_600.0,
            max_spot_age_s=None,
            floor_sigma_annual=0.0,
            cap_sigma_annual=5.0,
            clamp_to_bounds=False,
            prior_sigma_annual=0.6,
            use_quotes=False,
        )

    def to_json(self) -> str:
        """The parameters as compact JSON (stored with every persisted estimate)."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class _Points:
    """The grid-sampled series: one (last) tick per non-empty bucket, with returns into each point."""

    ts_ms: IntArray
    mid: FloatArray
    bucket: IntArray
    ret: FloatArray  # ret[j] = ln(mid_j / mid_{j−1}); ret[0] = 0
    dt_s: FloatArray  # dt_s[j] = t_j − t_{j−1} in seconds; dt_s[0] = 0


@dataclass(frozen=True, slots=True)
class _Windows:
    """For each as-of time: which sampled points it sees, and its partial (current-bucket) point."""

    first: IntArray  # index of the first completed point inside the lookback
    last: IntArray  # index of the last completed point (bucket closed before the as-of bucket)
    n_completed: IntArray  # completed points inside the window (last − first + 1, or 0)
    partial: BoolArray  # the as-of bucket already holds a tick ≤ asof
    partial_ts_ms: IntArray
    partial_mid: FloatArray
    n_points: IntArray
    span_s: FloatArray
    spot_age_s: FloatArray  # NaN when no tick at or before the as-of time


def _sample(ts_ms: IntArray, mid: FloatArray, grid_ms: int) -> _Points:
    bucket = ts_ms // grid_ms
    is_last = np.append(bucket[1:] != bucket[:-1], True) if bucket.shape[0] else np.zeros(0, dtype=bool)
    p_ts, p_mid, p_bucket = ts_ms[is_last], mid[is_last], bucket[is_last]
    ret = np.zeros(p_mid.shape[0], dtype=np.float64)
    dt_s = np.zeros(p_mid.shape[0], dtype=np.float64)
    if p_mid.shape[0] > 1:
        ret[1:] = np.log(p_mid[1:] / p_mid[:-1])
        dt_s[1:] = np.diff(p_ts) / 1000.0
    return _Points(p_ts, p_mid, p_bucket, ret, dt_s)


def _windows(points: _Points, ts_ms: IntArray, mid: FloatArray, asof: IntArray, params: VolParams) -> _Windows:
    grid_ms = round(params.grid_s * 1000)
    current = asof // grid_ms
    last = np.searchsorted(points.bucket, current, side="left").astype(np.int64) - 1
    first = np.searchsorted(points.ts_ms, asof - round(params.lookback_s * 1000), side="left").astype(np.int64)
    n_completed = np.maximum(last - first + 1, 0)
    tick = np.searchsorted(ts_ms, asof, side="right").astype(np.int64) - 1
    has_tick = tick >= 0
    tick_safe = np.maximum(tick, 0)
    partial = has_tick & ((ts_ms[tick_safe] // grid_ms) == current)
    partial_ts = ts_ms[tick_safe]
    partial_mid = mid[tick_safe]
    n_points = n_completed + partial.astype(np.int64)
    start_ts = np.where(n_completed > 0, points.ts_ms[np.clip(first, 0, len(points.ts_ms) - 1)], partial_ts)
    end_ts = np.where(partial, partial_ts, points.ts_ms[np.maximum(last, 0)])
    span_s = np.where(n_points > 0, (end_ts - start_ts) / 1000.0, 0.0)
    spot_age_s = np.where(has_tick, (asof - partial_ts) / 1000.0, np.nan)
    return _Windows(first, last, n_completed, partial, partial_ts, partial_mid, n_points, span_s, spot_age_s)


def _partial_step(points: _Points, win: _Windows) -> tuple[BoolArray, FloatArray, FloatArray]:
    """The return from the last completed point to the as-of bucket's tick, where both are in the window."""
    last = np.maximum(win.last, 0)
    applies = win.partial & (win.n_completed > 0)
    ret = np.where(applies, np.log(win.partial_mid / points.mid[last]), 0.0)
    dt_s = np.where(applies, (win.partial_ts_ms - points.ts_ms[last]) / 1000.0, 0.0)
    return applies, ret, dt_s


def _time_decayed_rate(points: _Points, win: _Windows, params: VolParams, *, bipower: bool) -> FloatArray:
    """Variance rate per second (EWMA of r² or bipower products over decayed elapsed time), with the prior."""
    k = math.log(2.0) / params.half_life_s
    log_decay = k * points.dt_s
    applies, ret_p, dt_p = _partial_step(points, win)
    last = np.maximum(win.last, 0)
    if bipower:
        # Products of adjacent returns: both must lie inside the window, so the first product is at first + 2.
        prod = np.zeros_like(points.ret)
        span = np.zeros_like(points.dt_s)
        prod[2:] = np.abs(points.ret[2:]) * np.abs(points.ret[1:-1])
        span[2:] = np.sqrt(points.dt_s[2:] * points.dt_s[1:-1])
        num_acc, cum = decayed_cumsum((math.pi / 2) * prod, log_decay)
        den_acc, _ = decayed_cumsum(span, log_decay)
        num = window_sum(num_acc, cum, win.first + 1, win.last)
        den = window_sum(den_acc, cum, win.first + 1, win.last)
        applies = applies & (win.n_completed >= 2)
        x_p = (math.pi / 2) * np.abs(ret_p) * np.abs(points.ret[last])
        y_p = np.sqrt(dt_p * points.dt_s[last])
    else:
        num_acc, cum = decayed_cumsum(points.ret**2, log_decay)
        den_acc, _ = decayed_cumsum(points.dt_s, log_decay)
        num = window_sum(num_acc, cum, win.first, win.last)
        den = window_sum(den_acc, cum, win.first, win.last)
        x_p, y_p = ret_p**2, dt_p
    step = np.exp(-k * dt_p)
    num = np.where(applies, step * num + x_p, num)
    den = np.where(applies, step * den + y_p, den)
    prior_w = params.prior_weight_s * np.exp(-k * win.span_s)
    prior_rate = params.prior_sigma_annual**2 / SECONDS_PER_YEAR
    with np.errstate(divide="ignore", invalid="ignore"):
        rate: FloatArray = (num + prior_rate * prior_w) / (den + prior_w)
    return rate


def _seed_variance_annual(points: _Points, win: _Windows, params: VolParams) -> FloatArray:
    """The original per-step EWMA (var₀ = r₀²) over the window, annualised with √(Y / bucket)."""
    lam = params.seed_lambda
    log_decay = np.full(points.ret.shape[0], -math.log(lam))
    acc, cum = decayed_cumsum((1 - lam) * points.ret**2, log_decay)
    last, first = np.maximum(win.last, 0), win.first
    first_ret = points.ret[np.clip(first + 1, 0, max(len(points.ret) - 1, 0))]
    # Windowed recursion started at var = r²_first: V_last − λ^(last−first)·(V_first − r²_first) (see docs).
    completed = window_sum(acc, cum, first, win.last)
    completed = completed + np.exp(-(cum[last] - cum[np.clip(first, 0, len(cum) - 1)])) * first_ret**2
    applies, ret_p, _ = _partial_step(points, win)
    var = np.where(win.n_completed >= 2, completed, np.nan)
    var = np.where(applies & (win.n_completed >= 2), lam * var + (1 - lam) * ret_p**2, var)
    var = np.where(applies & (win.n_completed == 1), ret_p**2, var)
    result: FloatArray = var * (SECONDS_PER_YEAR / params.grid_s)
    return result


def _classify(
    estimate: FloatArray, n_points: IntArray, span_s: FloatArray, spot_age_s: FloatArray, params: VolParams
) -> tuple[FloatArray, BoolArray, list[str | None], list[str | None]]:
    """Statuses in check order, and the sigma the engine should use with its source (see module docstring)."""
    n_returns = np.maximum(n_points - 1, 0)
    stale = np.zeros(estimate.shape[0], dtype=bool)
    if params.max_spot_age_s is not None:
        stale = ~(spot_age_s <= params.max_spot_age_s)  # NaN age (no tick at all) is stale too
    finite = np.isfinite(estimate)
    with np.errstate(invalid="ignore"):
        outside = (estimate <= 0) | (estimate < params.floor_sigma_annual) | (estimate > params.cap_sigma_annual)
    status = np.select(
        [n_points < 2, span_s < params.min_span_s, n_returns < params.min_points, stale, ~finite, outside],
        [
            STATUS_INSUFFICIENT_POINTS,
            STATUS_INSUFFICIENT_SPAN,
            STATUS_INSUFFICIENT_POINTS,
            STATUS_SPOT_STALE,
            STATUS_NON_FINITE,
            STATUS_OUT_OF_BOUNDS,
        ],
        default=STATUS_OK,
    )
    is_ok = status == STATUS_OK
    clamped = (status == STATUS_OUT_OF_BOUNDS) & params.clamp_to_bounds
    low = estimate < params.floor_sigma_annual
    prior = params.prior_sigma_annual if params.fallback == "prior" else np.nan
    bound = np.where(low, params.floor_sigma_annual, params.cap_sigma_annual)
    sigma = np.where(is_ok, estimate, np.where(clamped, bound, prior))
    source = np.where(is_ok, "estimate", np.where(clamped, np.where(low, "floor", "cap"), "prior"))
    source_list: list[str | None] = [
        name if np.isfinite(value) else None for name, value in zip(source.tolist(), sigma.tolist(), strict=True)
    ]
    return sigma, is_ok, status.tolist(), source_list


def _empty_result(asof: IntArray, params: VolParams) -> pl.DataFrame:
    n = asof.shape[0]
    prior = params.prior_sigma_annual if params.fallback == "prior" else None
    return pl.DataFrame(
        {
            "asof_ts": asof,
            "sigma_annual": [prior] * n,
            "sigma_status": [STATUS_INSUFFICIENT_POINTS] * n,
            "sigma_source": ["prior" if prior is not None else None] * n,
            "sigma_estimate_annual": [None] * n,
            "vol_points": [0] * n,
            "vol_span_s": [None] * n,
            "spot_age_s": [None] * n,
        },
        schema=_RESULT_SCHEMA,
    )


_RESULT_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "asof_ts": pl.Int64,
    "sigma_annual": pl.Float64,
    "sigma_status": pl.String,
    "sigma_source": pl.String,
    "sigma_estimate_annual": pl.Float64,
    "vol_points": pl.Int64,
    "vol_span_s": pl.Float64,
    "spot_age_s": pl.Float64,
}


def estimate_volatility(
    spot: pl.DataFrame, asof_ts: Sequence[int] | IntArray, params: VolParams | None = None
) -> pl.DataFrame:
    """Estimate annualised volatility at each as-of time from `spot` (kbtc.pipeline.edge_inputs.load_spot).

    Returns one row per as-of time, in the given order, with the columns of `VOL_COLUMNS`:
    `sigma_annual` (what to price with; null only when not ready and `fallback == "none"`), `sigma_status`,
    `sigma_source` (`estimate` | `floor` | `cap` | `prior`), `sigma_estimate_annual` (the raw estimate, for
    diagnostics), `vol_points` (returns used), `vol_span_s` (first to last sampled point) and `spot_age_s`.
    The row for t uses only ticks with ts in [t − lookback_s, t]; the recursion runs once over the grid.
    """
    params = params or VolParams()
    asof = np.asarray(asof_ts, dtype=np.int64)
    ts_ms, mid = spot_mid(spot, use_quotes=params.use_quotes)
    if ts_ms.shape[0] == 0:
        return _empty_result(asof, params)
    points = _sample(ts_ms, mid, round(params.grid_s * 1000))
    win = _windows(points, ts_ms, mid, asof, params)
    if params.method == "seed":
        with np.errstate(invalid="ignore"):
            estimate = np.sqrt(_seed_variance_annual(points, win, params))
    else:
        rate = _time_decayed_rate(points, win, params, bipower=params.method == "bipower")
        with np.errstate(invalid="ignore"):
            estimate = np.sqrt(rate * SECONDS_PER_YEAR)
    estimate = np.where(win.n_points >= 2, estimate, np.nan)
    sigma, _, status, source = _classify(estimate, win.n_points, win.span_s, win.spot_age_s, params)
    has_points = win.n_points > 0
    return pl.DataFrame(
        {
            "asof_ts": asof,
            "sigma_annual": pl.Series(sigma, dtype=pl.Float64, nan_to_null=True),
            "sigma_status": status,
            "sigma_source": source,
            "sigma_estimate_annual": pl.Series(estimate, dtype=pl.Float64, nan_to_null=True),
            "vol_points": np.maximum(win.n_points - 1, 0),
            "vol_span_s": pl.Series(np.where(has_points, win.span_s, np.nan), nan_to_null=True),
            "spot_age_s": pl.Series(win.spot_age_s, nan_to_null=True),
        },
        schema=_RESULT_SCHEMA,
    )


def vol_estimate_rows(estimates: pl.DataFrame, product_id: str, params: VolParams) -> pl.DataFrame:
    """Turn `estimate_volatility` output into `vol_estimates` rows (kbtc.db.schema.VolEstimate).

    `sigma_annual` is the value the engine priced with and `status` its readiness; the source follows from
    them (module docstring). `params_json` records the estimator's full configuration.
    """
    return estimates.select(
        pl.lit(product_id, dtype=pl.String).alias("product_id"),
        pl.col("asof_ts"),
        pl.lit(params.method, dtype=pl.String).alias("method"),
        pl.col("sigma_annual"),
        pl.col("sigma_status").alias("status"),
        pl.col("vol_points").cast(pl.Int64).alias("points"),
        pl.col("vol_span_s").alias("span_s"),
        pl.lit(params.to_json(), dtype=pl.String).alias("params_json"),
    )


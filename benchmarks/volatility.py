"""Throughput of `estimate_volatility` over many as-of times vs a straightforward per-as-of NumPy loop.

A day of 10 Hz Coinbase ticks (864,000 rows) read at 8,640 as-of times (every 10 s, the edge cadence):
- ours: one call of `kbtc.edge.volatility.estimate_volatility` (the recursion once over the grid, answers
  gathered per as-of time);
- reference: for each as-of time, slice the window with `np.searchsorted`, sample the grid, and evaluate the
  same weighted sums with NumPy — what a replay would do by calling a single-as-of estimator in a loop.
Both produce the same numbers (checked); reported as as-of times per second, for `ewma` and `seed`.

Run: python -m benchmarks.volatility [--hours 24] [--rate-hz 10]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import numpy as np
import polars as pl

from benchmarks.common import bench_line, timed
from kbtc.edge.vol_recursion import spot_mid
from kbtc.edge.volatility import SECONDS_PER_YEAR, VolParams, estimate_volatility

T0 = 1_795_000_000_000


def ticks(hours: float, rate_hz: float, seed: int = 1) -> pl.DataFrame:
    """Poisson ticks of a 50 % GBM mid with a one-cent spread."""
    rng = np.random.default_rng(seed)
    n = int(hours * 3600 * rate_hz)
    ts = T0 + np.cumsum(rng.exponential(1000 / rate_hz, n)).astype(np.int64)
    dt = np.diff(ts, prepend=T0) / 1000
    mid = 95_000 * np.exp(np.cumsum(rng.normal(0, 1, n) * 0.5 * np.sqrt(dt / SECONDS_PER_YEAR)))
    return pl.DataFrame({"ts": ts, "price": mid, "best_bid": mid - 0.005, "best_ask": mid + 0.005})


def per_asof_loop(spot: pl.DataFrame, asof: np.ndarray, params: VolParams) -> np.ndarray:
    """The reference: one window at a time (same estimator, statuses left out)."""
    ts, mid = spot_mid(spot, use_quotes=params.use_quotes)
    grid_ms = round(params.grid_s * 1000)
    lookback_ms = round(params.lookback_s * 1000)
    k = math.log(2) / params.half_life_s
    out = np.full(asof.shape[0], np.nan)
    for i, t in enumerate(asof.tolist()):
        lo, hi = np.searchsorted(ts, t - lookback_ms, "left"), np.searchsorted(ts, t, "right")
        w_ts, w_mid = ts[lo:hi], mid[lo:hi]
        bucket = w_ts // grid_ms
        last = np.append(bucket[1:] != bucket[:-1], True)
        p_ts, p_mid = w_ts[last] / 1000.0, w_mid[last]
        if p_ts.shape[0] < 2:
            continue
        r = np.diff(np.log(p_mid))
        if params.method == "seed":
            lam = params.seed_lambda
            powers = lam ** np.arange(r.shape[0] - 1, -1, -1)
            var = powers[0] * r[0] ** 2 + np.sum((1 - lam) * powers[1:] * r[1:] ** 2)
            out[i] = math.sqrt(var * SECONDS_PER_YEAR / params.grid_s)
        else:
            w = np.exp(-k * (p_ts[-1] - p_ts[1:]))
            prior_w = params.prior_weight_s * math.exp(-k * (p_ts[-1] - p_ts[0]))
            num = np.sum(w * r**2) + params.prior_sigma_annual**2 / SECONDS_PER_YEAR * prior_w
            out[i] = math.sqrt(num / (np.sum(w * np.diff(p_ts)) + prior_w) * SECONDS_PER_YEAR)
    return out


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    """The fastest of `repeats` timed calls (the first call also warms caches)."""
    return min(timed(fn) for _ in range(repeats))


def main() -> None:
    """Print BENCH lines for ewma and seed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--rate-hz", type=float, default=10.0)
    parser.add_argument("--every-s", type=float, default=10.0)
    args = parser.parse_args()
    spot = ticks(args.hours, args.rate_hz)
    last_ts = int(spot["ts"].to_numpy()[-1])
    asof = np.arange(T0 + int(args.every_s * 1000), last_ts + 1, int(args.every_s * 1000))
    for params in (VolParams(), VolParams.seed()):
        ours_s = best_of(3, lambda: estimate_volatility(spot, asof, params))  # noqa: B023 — called at once
        ref_s = best_of(1, lambda: per_asof_loop(spot, asof, params))  # noqa: B023
        ours = estimate_volatility(spot, asof, params)["sigma_estimate_annual"].to_numpy()
        np.testing.assert_allclose(ours, per_asof_loop(spot, asof, params), rtol=1e-8)
        print(
            bench_line(
                f"estimate_volatility_{params.method}_{spot.height}_ticks_{asof.shape[0]}_asof",
                asof.shape[0] / ours_s,
                "asof/s",
                asof.shape[0] / ref_s,
            )
        )


if __name__ == "__main__":
    main()

"""Basis study on a simulated Coinbase/BRTI pair: what the online basis estimate is worth, and its half-life.

Simulates Coinbase ticks (1 Hz, GBM at 50 %) and a BRTI-like index = Coinbase + basis + print noise, where the
basis is the sum of two Ornstein–Uhlenbeck processes (mean reversion 2 h with sd $8, and 1 min with sd $3), so the
60 s gaps have a median |gap| ≈ $6 and p90 ≈ $14 as observed on real KXBTC15M data (coinbase_api.md §4.4).
Every 15 minutes a KXBTC15M-style reference (the index 60 s average) is published. A minute before each
reference window opens, `estimate_basis` predicts the gap of that window; the table reports RMSE, mean
predicted std and the coverage of the 90 % interval, against the basis switched off (0 ± 0).

Run: python -m benchmarks.basis_study [--days 6] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

import numpy as np
import polars as pl

from benchmarks.vol_signature import ar1
from kbtc.edge.basis import BasisParams, estimate_basis

T0 = 1_795_000_200_000  # a quarter hour
QUARTER_S = 900


def simulate(days: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, np.ndarray]:
    """(Coinbase ticks, index prints, references, true gap of each reference window)."""
    rng = np.random.default_rng(seed)
    seconds = int(days * 86_400)
    cb = 95_000.0 * np.exp(np.cumsum(rng.normal(0, 0.5 / math.sqrt(31_536_000), seconds)))
    basis = np.zeros(seconds)
    # A slow component (2 h mean reversion, sd $8) and a fast one (1 min, sd $3): stationary sd ≈ $8.5.
    for reversion_s, sd in ((7_200.0, 8.0), (60.0, 3.0)):
        shocks = rng.normal(0, sd * math.sqrt(2 / reversion_s), seconds)
        shocks[0] = rng.normal(0, sd)  # start in the stationary distribution
        basis += ar1(shocks, math.exp(-1 / reversion_s))
    index = cb + basis + rng.normal(0, 2.0, seconds)
    ts = T0 + np.arange(seconds, dtype=np.int64) * 1000
    spot = pl.DataFrame({"ts": ts, "price": cb, "best_bid": cb - 0.005, "best_ask": cb + 0.005})
    prints = pl.DataFrame({"ts": ts, "price": index})
    ends = np.arange(QUARTER_S, seconds, QUARTER_S)
    window = ends[:, None] + np.arange(-60, 0)[None, :]
    index_avg = index[window].mean(axis=1)
    true_gap = index_avg - cb[window].mean(axis=1)
    references = pl.DataFrame(
        {"window_end_ts": T0 + ends.astype(np.int64) * 1000, "index_avg_usd": index_avg, "kind": "strike"}
    )
    return spot, prints, references, true_gap


def score(out: pl.DataFrame, true_gap: np.ndarray, label: str) -> dict[str, object]:
    """RMSE of the predicted gap, mean predicted std and 90 % coverage."""
    err = true_gap - out["basis_usd"].to_numpy()
    std = out["basis_std_usd"].to_numpy()
    covered = np.abs(err) <= 1.645 * np.maximum(std, 1e-9)
    return {
        "setting": label,
        "rmse_usd": round(float(np.sqrt(np.mean(err**2))), 2),
        "mean_abs_err_usd": round(float(np.mean(np.abs(err))), 2),
        "mean_std_usd": round(float(np.mean(std)), 2),
        "coverage_90": round(float(np.mean(covered)), 3),
        "status": ",".join(sorted(set(out["basis_status"].to_list()))),
    }


def main() -> None:
    """Print the basis table (markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    spot, prints, references, true_gap = simulate(args.days, args.seed)
    ends = references["window_end_ts"].to_numpy()
    warm = 16  # four hours of references before scoring
    asof = ends[warm:] - 120_000  # a minute before each window opens
    target = true_gap[warm:]
    gaps = np.abs(true_gap)
    rows = [score(estimate_basis(spot, asof, params=BasisParams(enabled=False)), target, "off (basis 0 ± 0)")]
    default = BasisParams()
    for half_life in (600.0, 900.0, 1_800.0, 3_600.0, 7_200.0, 14_400.0):
        params = replace(default, half_life_s=half_life, lookback_s=max(default.lookback_s, 4 * half_life))
        out = estimate_basis(spot, asof, references=references, params=params)
        mark = " (default)" if params == default else ""
        rows.append(score(out, target, f"references, half-life {half_life / 60:g} min{mark}"))
    for half_life in (60.0, 120.0, 300.0, 600.0):
        params = replace(default, index_half_life_s=half_life)
        out = estimate_basis(spot, asof, references=references, index_prints=prints, params=params)
        mark = " (default)" if params == default else ""
        rows.append(score(out, target, f"index prints, half-life {half_life / 60:g} min{mark}"))
    shrunk = replace(BasisParams(), prior_weight_obs=0.0)
    rows.append(score(estimate_basis(spot, asof, references=references, params=shrunk), target,
                      "references, default, no prior shrinkage"))
    pl.Config.set_tbl_formatting("MARKDOWN")
    pl.Config.set_tbl_hide_dataframe_shape(True)
    pl.Config.set_tbl_hide_column_data_types(True)
    pl.Config.set_tbl_width_chars(200)
    pl.Config.set_fmt_str_lengths(60)
    pl.Config.set_tbl_rows(50)
    print(f"Simulated gaps: median |gap| ${np.median(gaps):.2f}, p90 ${np.quantile(gaps, 0.9):.2f}, "
          f"{target.shape[0]} scored windows\n")
    print(pl.DataFrame(rows))


if __name__ == "__main__":
    main()

"""Scoring throughput: kbtc.scoring (Polars expressions) vs a NumPy implementation of the same metrics, same run.

Work measured on N settled snapshots (default 10M, override with --rows), identical for both sides:
1. per snapshot: market mid, Brier and log loss (ε = 1e-6 and 0.01) for model and market, PnL of YES and NO
   with fees, the model-pick PnL;
2. aggregates by series: count, paired mean Brier/log loss for model and market, mean PnL of YES/NO/pick;
3. the Murphy decomposition (REL, RES, UNC, WBV, WBC) over 10 equal-mass bins of the model forecast.
The two results are checked against each other before timing is reported.
Target (issue 7): ours >= 5M rows/s.

Run: python -m benchmarks.scoring [--rows 10000000]
"""

from __future__ import annotations

import argparse

import numpy as np
import polars as pl

from benchmarks.common import bench_line, timed
from kbtc.scoring.calibration import murphy_decomposition
from kbtc.scoring.snapshots import score_frame, summary

SERIES = np.array(["KXBTC", "KXBTCD", "KXBTC15M"])


def snapshot_frame(n: int, seed: int = 3) -> pl.DataFrame:
    """Synthetic settled snapshots: a model forecast, a quoted book around the truth, fees, an outcome."""
    rng = np.random.default_rng(seed)
    truth = rng.beta(0.6, 0.6, n)
    outcome = (rng.random(n) < truth).astype(np.int32)
    p_model = np.clip(truth + rng.normal(0, 0.05, n), 0.0, 1.0)
    mid = np.clip(np.round(truth * 100 + rng.normal(0, 3, n)), 2, 98)
    yes_bid, yes_ask = mid - 1.0, mid + 1.0
    fee = np.ceil(7 * mid * (100 - mid) / 10_000) / 100
    return pl.DataFrame(
        {
            "series_ticker": pl.Series(SERIES[rng.integers(0, 3, n)]).cast(pl.Enum(list(SERIES))),
            "event_ticker": rng.integers(0, 5_000, n),
            "p_model": p_model,
            "p_market": pl.Series([None] * n, dtype=pl.Float64),
            "yes_bid_cents": yes_bid,
            "yes_ask_cents": yes_ask,
            "no_bid_cents": 100.0 - yes_ask,
            "no_ask_cents": 100.0 - yes_bid,
            "fee_yes_dollars": fee,
            "fee_no_dollars": fee,
            "ev_yes_dollars": p_model - yes_ask / 100 - fee,
            "ev_no_dollars": (1 - p_model) - (100.0 - yes_bid) / 100 - fee,
            "outcome": outcome,
            "contracts": np.ones(n),
        }
    )


def ours(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    scored = score_frame(frame).collect()
    return scored, summary(scored, ["series_ticker"]), murphy_decomposition(scored, "p_model", "outcome")


def _log_loss(p: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:
    q = np.clip(p, eps, 1 - eps)
    return -(y * np.log(q) + (1 - y) * np.log1p(-q))


def reference(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    """The same metrics in NumPy (columns extracted once; group means through bincount)."""
    y = frame["outcome"].to_numpy().astype(np.float64)
    p = frame["p_model"].to_numpy()
    ya, yb = frame["yes_ask_cents"].to_numpy(), frame["yes_bid_cents"].to_numpy()
    na, nb = frame["no_ask_cents"].to_numpy(), frame["no_bid_cents"].to_numpy()
    fy, fn = frame["fee_yes_dollars"].to_numpy(), frame["fee_no_dollars"].to_numpy()
    evy, evn = frame["ev_yes_dollars"].to_numpy(), frame["ev_no_dollars"].to_numpy()
    q = (yb + ya) / 200.0
    q = np.where(np.isnan(q), 1.0 - (nb + na) / 200.0, q)
    scores = {
        "brier_model": (p - y) ** 2,
        "brier_market": (q - y) ** 2,
        "logloss_model": _log_loss(p, y, 1e-6),
        "logloss_market": _log_loss(q, y, 1e-6),
        "logloss_model_grid": _log_loss(p, y, 0.01),
        "logloss_market_grid": _log_loss(q, y, 0.01),
        "pnl_yes_dollars": y - ya / 100 - fy,
        "pnl_no_dollars": (1 - y) - na / 100 - fn,
    }
    pick = np.where((evy > 0) & (evy >= evn), scores["pnl_yes_dollars"],
                    np.where(evn > 0, scores["pnl_no_dollars"], np.nan))
    codes = frame["series_ticker"].to_physical().to_numpy()
    counts = np.bincount(codes)
    out = {name: np.bincount(codes, weights=values) / counts for name, values in scores.items()}
    picked = ~np.isnan(pick)
    out["pnl_model_mean"] = np.bincount(codes[picked], weights=pick[picked]) / np.bincount(codes[picked])
    # Murphy over 10 equal-mass bins of the model forecast (average rank of ties, as kbtc does).
    order = np.argsort(p, kind="stable")
    ranks = np.empty(p.size)
    ranks[order] = np.arange(1, p.size + 1)
    bins = np.minimum(((ranks - 0.5) / p.size * 10).astype(np.int64), 9)
    n_k = np.bincount(bins, minlength=10)
    f_k = np.bincount(bins, weights=p, minlength=10) / n_k
    o_k = np.bincount(bins, weights=y, minlength=10) / n_k
    base = y.mean()
    out["murphy"] = np.array([
        (n_k * (f_k - o_k) ** 2).sum() / p.size,
        (n_k * (o_k - base) ** 2).sum() / p.size,
        base * (1 - base),
        ((p - f_k[bins]) ** 2).mean(),
        2 * ((p - f_k[bins]) * (y - o_k[bins])).mean(),
    ])
    out["codes"] = np.arange(counts.size)
    return out


def check(ours_result: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame], ref: dict[str, np.ndarray],
          frame: pl.DataFrame) -> None:
    """Fail loudly if the two implementations disagree."""
    _, by_series, murphy = ours_result
    categories = list(SERIES)
    by_name = {row["series_ticker"]: row for row in by_series.iter_rows(named=True)}
    for code, name in enumerate(categories):
        for metric in ("brier_model", "brier_market", "logloss_model", "logloss_market_grid", "pnl_yes_dollars"):
            column = metric.replace("_dollars", "_mean")
            assert np.isclose(by_name[name][column], ref[metric][code], rtol=1e-9), (name, metric)
        assert np.isclose(by_name[name]["pnl_model_mean"], ref["pnl_model_mean"][code], rtol=1e-9)
    row = murphy.row(0, named=True)
    assert np.allclose([row["rel"], row["res"], row["unc"], row["wbv"], row["wbc"]], ref["murphy"], rtol=1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    frame = snapshot_frame(args.rows)
    check(ours(frame), reference(frame), frame)
    ours_s = min(timed(lambda: ours(frame)) for _ in range(3))
    ref_s = min(timed(lambda: reference(frame)) for _ in range(3))
    print(bench_line("scoring_rows_per_s", args.rows / ours_s, "rows/s", args.rows / ref_s))
    print(bench_line("scoring_seconds", ours_s, "s", ref_s, higher_is_better=False))


if __name__ == "__main__":
    main()

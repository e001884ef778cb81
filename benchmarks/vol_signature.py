"""Volatility-signature study on noisy simulated ticks: choose the sampling grid and half-life with evidence.

Simulates Coinbase-like ticks (model_math.md §2.3): an efficient log price with stochastic volatility (log-σ
Ornstein–Uhlenbeck around 50 %, optional Poisson jumps), observed at irregular Poisson times (rate varying
through the day, occasional feed gaps) through i.i.d. microstructure noise ω on the mid, and a last-trade price
that bounces between bid and ask. Then:
1. the signature: annualised realised volatility against the sampling grid (1 s … 5 min), for the mid and the
   last trade, at several noise levels, on a constant-σ path (truth 50 %);
2. the forecast: `estimate_volatility` (ewma, bipower, seed) at every 5 min, against the realised volatility of
   the *next* 15 and 60 minutes (what a contract needs), across grids and half-lives: bias, RMSE and QLIKE
   (Patton 2011: robust to the noisy target).
Prints markdown tables; the conclusions are in docs/EDGE_VALIDATION_VOL.md.

Run: python -m benchmarks.vol_signature [--days 6] [--seed 1] [--quick]
     python -m benchmarks.vol_signature --database-url sqlite:///data/kalshi.sqlite [--hours 24]
       (the same signature on recorded Coinbase ticks: take the shortest grid where the curve is flat)
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from kbtc.db.engine import make_engine
from kbtc.db.store import read_frame
from kbtc.edge.vol_recursion import spot_mid
from kbtc.edge.volatility import SECONDS_PER_YEAR, VolParams, estimate_volatility
from kbtc.pipeline.edge_inputs import load_spot

T0 = 1_795_000_000_000
SIGNATURE_GRIDS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300)
NOISE_LEVELS = (0.0, 1e-5, 3e-5, 1e-4)  # log-price noise sd: $0, ~$1, ~$3, ~$10 at $95k
DEFAULT = VolParams()


@dataclass(frozen=True)
class Simulation:
    """Ticks as load_spot returns them, and the true variance of the efficient price per second."""

    spot: pl.DataFrame
    true_var_per_s: np.ndarray  # true diffusive + jump variance in each 1 s slot
    seconds: int


def simulate(
    days: float,
    *,
    seed: int,
    noise: float,
    stochastic_vol: bool = True,
    jumps_per_day: float = 0.0,
    jump_sd: float = 0.004,
    mean_rate_hz: float = 4.0,
    spread_usd: float = 1.0,
) -> Simulation:
    """One path: per-second σ(t), Poisson ticks, noisy mid, bid/ask-bouncing last trade."""
    rng = np.random.default_rng(seed)
    seconds = int(days * 86_400)
    sec = np.arange(seconds)
    if stochastic_vol:
        # log σ: OU with a 3 h mean-reversion time and stationary sd 0.35 (σ mostly in 25 %–100 %).
        theta, sd = 1 / (3 * 3600), 0.35
        shocks = rng.normal(0, sd * math.sqrt(2 * theta), seconds)
        log_dev = ar1(shocks, math.exp(-theta))
        sigma = 0.5 * np.exp(log_dev - sd**2 / 2)
    else:
        sigma = np.full(seconds, 0.5)
    var_per_s = sigma**2 / SECONDS_PER_YEAR
    jumps = np.zeros(seconds)
    if jumps_per_day > 0:
        hit = rng.random(seconds) < jumps_per_day / 86_400
        jumps[hit] = rng.normal(0, jump_sd, int(hit.sum()))
    # Tick times: Poisson with a daily rate cycle (2–6 Hz) and a 10-minute feed gap every ~day.
    rate = mean_rate_hz * (1 + 0.5 * np.sin(2 * np.pi * sec / 86_400))
    counts = rng.poisson(rate)
    for day in range(int(days)):
        start = day * 86_400 + int(rng.integers(3_600, 80_000))
        counts[start : start + 600] = 0
    tick_sec = np.repeat(sec, counts)
    tick_ts = T0 + tick_sec * 1000 + rng.integers(0, 1000, tick_sec.shape[0])
    tick_ts = np.sort(tick_ts)
    tick_sec = (tick_ts - T0) // 1000
    # Efficient log price at each tick: Brownian increments with the slot's variance, plus jumps by second.
    dt = np.diff(tick_ts, prepend=T0) / 1000.0
    x = np.cumsum(rng.normal(0, 1, tick_ts.shape[0]) * np.sqrt(var_per_s[tick_sec] * dt))
    x += np.cumsum(jumps)[tick_sec]
    mid = 95_000.0 * np.exp(x + noise * rng.normal(0, 1, tick_ts.shape[0]))
    half = spread_usd / 2
    last = mid + np.where(rng.random(tick_ts.shape[0]) < 0.5, -half, half)
    spot = pl.DataFrame({"ts": tick_ts, "price": last, "best_bid": mid - half, "best_ask": mid + half})
    return Simulation(spot, var_per_s + jumps**2, seconds)


def ar1(shocks: np.ndarray, decay: float) -> np.ndarray:
    """x_t = decay·x_{t−1} + shock_t, in blocks so decay^−t never overflows."""
    out = np.empty_like(shocks)
    block = int(500 / -math.log(decay))
    carry = 0.0
    for start in range(0, shocks.shape[0], block):
        chunk = shocks[start : start + block]
        powers = decay ** np.arange(chunk.shape[0])
        acc = np.cumsum(chunk / powers) * powers
        out[start : start + chunk.shape[0]] = acc + carry * decay * powers
        carry = out[start + chunk.shape[0] - 1]
    return out


def realised_vol(ts_ms: np.ndarray, price: np.ndarray, grid_s: float) -> float:
    """Annualised realised volatility of last-tick-per-bucket samples over the whole sample."""
    bucket = ts_ms // int(grid_s * 1000)
    last = np.append(bucket[1:] != bucket[:-1], True)
    t, p = ts_ms[last], price[last]
    r = np.diff(np.log(p))
    return math.sqrt(np.sum(r**2) / ((t[-1] - t[0]) / 1000) * SECONDS_PER_YEAR)


def signature_table(days: float, seed: int, paths: int) -> pl.DataFrame:
    """Annualised RV by grid, for the mid and the last trade, at each noise level (truth 0.50, mean of paths)."""
    rows = []
    for noise in NOISE_LEVELS:
        variances: dict[str, list[list[float]]] = {"mid": [], "last": []}
        for path in range(paths):
            sim = simulate(days, seed=seed + 100 * path, noise=noise, stochastic_vol=False)
            ts = sim.spot["ts"].to_numpy()
            mid = ((sim.spot["best_bid"] + sim.spot["best_ask"]) / 2).to_numpy()
            for label, series in (("mid", mid), ("last", sim.spot["price"].to_numpy())):
                variances[label].append([realised_vol(ts, series, g) ** 2 for g in SIGNATURE_GRIDS_S])
        for label, values in variances.items():
            vols = np.sqrt(np.mean(values, axis=0))
            row: dict[str, object] = {"noise_log": noise, "price": label}
            row.update({f"{g}s": round(float(v), 3) for g, v in zip(SIGNATURE_GRIDS_S, vols, strict=True)})
            rows.append(row)
    return pl.DataFrame(rows)


def signature_of(spot: pl.DataFrame) -> pl.DataFrame:
    """Annualised RV by grid of recorded ticks (load_spot columns), for the mid and the last trade."""
    rows = []
    for label, series in (("mid", spot_mid(spot)), ("last", spot_mid(spot, use_quotes=False))):
        row: dict[str, object] = {"price": label, "ticks": series[0].shape[0]}
        row.update({f"{g}s": round(realised_vol(series[0], series[1], g), 3) for g in SIGNATURE_GRIDS_S})
        rows.append(row)
    return pl.DataFrame(rows)


def forecast_scores(sim: Simulation, params: VolParams, horizons_s: tuple[int, ...], warmup_s: int) -> dict[str, float]:
    """Bias, RMSE (annualised σ) and mean QLIKE (variance) of σ̂(t) against the realised σ of (t, t + T]."""
    max_h = max(horizons_s)
    asof_s = np.arange(warmup_s, sim.seconds - max_h, 300)
    out = estimate_volatility(sim.spot, T0 + asof_s * 1000, params)
    est = out["sigma_annual"].to_numpy()
    ok_share = float((out["sigma_status"] == "ok").mean())  # type: ignore[arg-type]
    cum = np.concatenate([[0.0], np.cumsum(sim.true_var_per_s)])
    scores: dict[str, float] = {"ok_share": round(ok_share, 3)}
    for horizon in horizons_s:
        target_var = (cum[asof_s + horizon] - cum[asof_s]) / horizon * SECONDS_PER_YEAR
        target = np.sqrt(target_var)
        ratio = target_var / est**2
        scores[f"bias_{horizon // 60}m"] = round(float(np.mean(est - target)), 4)
        scores[f"rmse_{horizon // 60}m"] = round(float(np.sqrt(np.mean((est - target) ** 2))), 4)
        scores[f"qlike_{horizon // 60}m"] = round(float(np.mean(ratio - np.log(ratio) - 1)), 4)
    return scores


def forecast_table(
    days: float, seed: int, noise: float, grids: tuple[float, ...], half_lives: tuple[float, ...], jumps: float
) -> pl.DataFrame:
    """Scores of ewma (grid × half-life), bipower at the same settings, and the seed estimator."""
    sim = simulate(days, seed=seed, noise=noise, jumps_per_day=jumps)
    horizons = (900, 3600)
    warmup = 12 * 3600
    rows = []
    for method in ("ewma", "bipower"):
        for grid in grids:
            for half_life in half_lives:
                params = VolParams(
                    method=method,
                    grid_s=grid,
                    half_life_s=half_life,
                    lookback_s=max(3_900.0, 6 * half_life),
                    max_spot_age_s=None,
                    floor_sigma_annual=0.0,
                    cap_sigma_annual=10.0,
                )
                bounds = {
                    "max_spot_age_s": DEFAULT.max_spot_age_s,
                    "floor_sigma_annual": DEFAULT.floor_sigma_annual,
                    "cap_sigma_annual": DEFAULT.cap_sigma_annual,
                }
                is_default = replace(params, **bounds) == DEFAULT  # type: ignore[arg-type]
                rows.append({"method": method + (" (default)" if is_default else ""), "grid_s": grid,
                             "half_life_s": half_life, **forecast_scores(sim, params, horizons, warmup)})
    seed_params = replace(VolParams.seed(), max_spot_age_s=None)
    rows.append({"method": "seed", "grid_s": 5.0, "half_life_s": round(5 * math.log(0.5) / math.log(0.94), 1),
                 **forecast_scores(sim, seed_params, horizons, warmup)})
    return pl.DataFrame(rows)


def main() -> None:
    """Print the signature table and the forecast tables (markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="fewer settings, 2 days")
    parser.add_argument("--database-url", help="instead: the signature of recorded spot ticks in this database")
    parser.add_argument("--product", default="BTC-USD")
    parser.add_argument("--hours", type=float, default=24.0, help="with --database-url: the last N hours")
    args = parser.parse_args()
    days = 2.0 if args.quick else args.days
    pl.Config.set_tbl_formatting("MARKDOWN")
    pl.Config.set_tbl_rows(200)
    pl.Config.set_tbl_cols(30)
    pl.Config.set_tbl_hide_dataframe_shape(True)
    pl.Config.set_tbl_hide_column_data_types(True)
    pl.Config.set_tbl_width_chars(250)
    if args.database_url:
        engine = make_engine(args.database_url)
        newest = read_frame(engine, "SELECT MAX(tick_ts) AS ts FROM spot_ticks WHERE product_id = :p",
                            {"p": args.product})["ts"][0]
        spot = load_spot(engine, args.product, int(newest or 0), args.hours * 3600)
        print(f"## Signature of recorded {args.product} ticks, last {args.hours:g} h\n")
        print(signature_of(spot))
        return
    paths = 1 if args.quick else 4
    print(f"## Signature: annualised RV by grid (σ = 0.50 constant, 4 Hz mean tick rate, $1 spread, {paths} paths)\n")
    print(signature_table(min(days, 2.0), args.seed, paths))
    grids = (15.0, 30.0) if args.quick else (5.0, 10.0, 15.0, 30.0, 60.0)
    half_lives = (600.0, 1_800.0) if args.quick else (300.0, 600.0, 900.0, 1_800.0, 3_600.0, 7_200.0)
    for noise, jumps in ((3e-5, 0.0), (1e-4, 0.0), (3e-5, 4.0)):
        print(f"\n## Forecast of the next 15/60 min realised σ (stochastic σ, noise {noise:g}, jumps/day {jumps:g})\n")
        print(forecast_table(days, args.seed + 1, noise, grids, half_lives, jumps))


if __name__ == "__main__":
    main()

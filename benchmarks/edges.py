"""Edge-engine throughput, each against a reference measured in the same run.

(a) `pricing`: probability (60 s average) + exact fees + EV + Kelly on 1M and 10M rows (kbtc.edge.pricing.price,
    vectorised Polars) vs the same math as a per-row pure-Python loop (math.erfc, integer fees, pre-extracted
    lists — the fastest loop form) on a 200k-row subset. Targets: ≥ 20M rows/s and ≥ 50× the loop.
    `pricing_*_cpu_ns_per_row` is the CPU time of all threads per row (ratio: the loop's / ours): on the shared
    2-core machine it moves far less with other processes' load than the wall-clock rate does. Ours runs on the
    streaming engine with the morsel size every kbtc process uses (kbtc.edge.streaming, set when kbtc.edge is
    imported; `POLARS_IDEAL_MORSEL_SIZE=100000` in the environment measures Polars' default).
(b) `live_tick_500_markets_ms`: one live tick of 500 markets including the DB read (load_edge_inputs), σ and
    basis, and the edges + edge_snapshots write, on SQLite; median over 15 ticks. Target: ≤ 50 ms.
(c) `tick_10k_markets_per_s`: 10k markets per tick including DB I/O. Target: ≥ 100k markets/s.
    Ours in (b) and (c) runs as `run-live-edges` does, with a MarketCatalogCache across ticks. Reference for
    (b) and (c), same run and databases: the original's shape — the same read (markets every tick), then a
    per-market Python loop and one INSERT per snapshot (benchmarks/edges_db.py). `*_cpu_ms` lines are the CPU
    time of all threads per tick (median), which other processes' load on a shared machine moves far less.

Measured numbers and where the time goes: docs/EDGE_VALIDATION.md §8.

Run: python -m benchmarks.edges [--rows 1000000 10000000] [--cases a b c] [--skip-db (= --cases a)]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.common import bench_line, timed
from kbtc.edge.params import SECONDS_PER_YEAR, EdgeParams
from kbtc.edge.pricing import price

TYPES = ("greater", "less", "between")


def pricing_rows(n: int, seed: int = 5) -> pl.DataFrame:
    """Random rows before the settlement window: all strike types, sub-cent asks, sizes 1–100.

    `strike_type` and `fee_type` are Categorical, as the engine's rows carry them (kbtc.edge.engine.MARKET_SCHEMA:
    typed once on the markets frame, inherited by every as-of × market row).
    """
    rng = np.random.default_rng(seed)
    spot = 100_000 + rng.normal(0, 2_000, n)
    floor = spot + rng.normal(0, 1_500, n)
    kind = rng.integers(0, 3, n)
    ask = np.round(rng.uniform(1, 99, n), 1)
    bid = np.maximum(ask - np.round(rng.uniform(0, 5, n), 1), 0.0)
    return pl.DataFrame(
        {
            "model_spot_usd": spot,
            "sigma_annual": rng.uniform(0.2, 1.2, n),
            "horizon_s": rng.uniform(60, 21_600, n),
            "strike_type": pl.Series(np.array(TYPES)[kind], dtype=pl.Categorical),
            "floor_strike": np.where(kind == 1, np.nan, floor),
            "cap_strike": np.where(kind == 0, np.nan, floor + 500),
            "fixed_sum_usd": np.zeros(n),
            "basis_std_usd": np.zeros(n),
            "yes_ask_used_cents": ask,
            "no_ask_used_cents": 100.0 - bid,
            "contracts": rng.integers(1, 101, n).astype(float),
            "fee_type": pl.Series(["quadratic"] * n, dtype=pl.Categorical),
            "fee_multiplier": 1.0,
        }
    ).with_columns(pl.col("floor_strike").fill_nan(None), pl.col("cap_strike").fill_nan(None))


OUTPUTS = ("p_model", "ev_yes_dollars", "ev_no_dollars", "kelly_yes")


def ours(frame: pl.DataFrame, params: EdgeParams) -> pl.DataFrame:
    return price(frame.lazy(), params).select(OUTPUTS).collect()


def python_loop(frame: pl.DataFrame, params: EdgeParams) -> list[tuple[float, float, float]]:
    """The same math per row in plain Python (before the window; integer fees rounded to the cent)."""
    n_prints, dt = params.window_prints, params.print_interval_s
    cols = [frame[c].to_list() for c in ("model_spot_usd", "sigma_annual", "horizon_s", "strike_type",
                                         "floor_strike", "cap_strike", "yes_ask_used_cents", "no_ask_used_cents",
                                         "contracts")]
    out = []
    clip = params.prob_clip
    for x, sigma, t, kind, lo, hi, ask, no_ask, c in zip(*cols, strict=True):
        m = min(float(n_prints), math.ceil(t / dt))
        v = sigma * sigma / SECONDS_PER_YEAR * ((t - (m - 1) * dt) + dt * (m - 1) * (2 * m - 1) / (6 * m))
        sv = math.sqrt(v)

        def upper(k: float) -> float:
            d = (math.log(x / k) - 0.5 * v) / sv  # noqa: B023 — evaluated within the iteration
            return 0.5 * math.erfc(-d / math.sqrt(2))

        def lower(k: float) -> float:
            d = (math.log(x / k) - 0.5 * v) / sv  # noqa: B023
            return 0.5 * math.erfc(d / math.sqrt(2))

        if kind == "greater":
            p = upper(lo)
        elif kind == "less":
            p = lower(hi)
        else:
            d_hi = (math.log(x / hi) - 0.5 * v) / sv
            p = lower(hi) - lower(lo) if d_hi > 0 else upper(lo) - upper(hi)
        p = min(max(p, clip), 1 - clip)
        cu = round(c * 100)
        fees = []
        for a in (ask, no_ask):
            pu = round(a * 100)
            num = 7 * 10_000 * cu * pu * (10_000 - pu)
            fees.append(-(-num // 10**14) / 100)
        ev_yes = c * (p - ask / 100) - fees[0]
        ev_no = c * ((1 - p) - no_ask / 100) - fees[1]
        out.append((p, ev_yes, ev_no))
    return out


def _cpu_s(fn: Callable[[], object]) -> float:
    """CPU seconds of one call, all threads: less sensitive than wall time to other processes' load."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def bench_pricing(rows: list[int]) -> None:
    params = EdgeParams()
    subset = pricing_rows(200_000)
    start, start_cpu = time.perf_counter(), time.process_time()
    reference_out = python_loop(subset, params)
    loop_rate = subset.height / (time.perf_counter() - start)
    loop_cpu_ns = (time.process_time() - start_cpu) / subset.height * 1e9
    check = ours(subset, params)
    diffs = [abs(a - b) for (a, _, _), b in zip(reference_out, check["p_model"], strict=True)]
    ev_diffs = [abs(a - b) for (_, a, _), b in zip(reference_out, check["ev_yes_dollars"], strict=True)]
    assert max(diffs) < 1e-12 and max(ev_diffs) < 1e-9, (max(diffs), max(ev_diffs))  # same math
    for n in rows:
        frame = pricing_rows(n)
        ours(frame, params)  # warm-up
        best = min(timed(lambda f=frame: ours(f, params)) for _ in range(3))
        print(bench_line(f"pricing_{n // 1_000_000}M_rows_per_s", n / best, "rows/s", loop_rate))
        cpu = min(_cpu_s(lambda f=frame: ours(f, params)) for _ in range(3))
        print(bench_line(f"pricing_{n // 1_000_000}M_cpu_ns_per_row", cpu / n * 1e9, "ns", loop_cpu_ns,
                         higher_is_better=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--cases", nargs="+", choices=("a", "b", "c"), default=["a", "b", "c"],
                        help="which parts to run (default all)")
    parser.add_argument("--skip-db", action="store_true", help="only (a)")
    parser.add_argument("--history-ticks", type=int, default=0,
                        help="(b), (c): earlier ticks' edges and snapshots already in the database (0: a fresh file)")
    args = parser.parse_args()
    cases = ["a"] if args.skip_db else args.cases
    if "a" in cases:
        bench_pricing(args.rows)
    markets = [n for case, n in (("b", 500), ("c", 10_000)) if case in cases]
    if markets:
        from benchmarks.edges_db import bench_ticks

        with tempfile.TemporaryDirectory() as tmp:
            bench_ticks(Path(tmp), markets, args.history_ticks)


if __name__ == "__main__":
    main()

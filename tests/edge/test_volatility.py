"""The time-decayed EWMA and bipower estimators: definition, no look-ahead, statuses, accuracy, jumps."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kbtc.edge.vol_recursion import decayed_cumsum, spot_mid, window_sum
from kbtc.edge.volatility import SECONDS_PER_YEAR, VolParams, _classify, estimate_volatility

T0 = 1_795_000_000_000


def gbm_ticks(
    seconds: float, sigma: float, *, rate_hz: float = 4.0, seed: int = 1, spread: float = 0.01
) -> pl.DataFrame:
    """Irregular (Poisson) ticks of a zero-drift GBM with a constant bid/ask spread around it."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate_hz)
    ts = T0 + np.cumsum(rng.exponential(1000.0 / rate_hz, n)).astype(np.int64)
    dt_s = np.diff(ts, prepend=T0) / 1000.0
    mid = 95_000.0 * np.exp(np.cumsum(rng.normal(0.0, 1.0, n) * sigma * np.sqrt(dt_s / SECONDS_PER_YEAR)))
    return pl.DataFrame({"ts": ts, "price": mid + spread / 2, "best_bid": mid - spread / 2, "best_ask": mid + spread / 2})


def brute_force(frame: pl.DataFrame, asof: int, params: VolParams) -> float:
    """The estimator's definition for one as-of time, written out with explicit weights."""
    ts, mid = spot_mid(frame.filter(pl.col("ts") <= asof))
    keep = ts >= asof - params.lookback_s * 1000
    ts, mid = ts[keep], mid[keep]
    grid_ms = params.grid_s * 1000
    last_per_bucket = {int(t // grid_ms): (int(t), float(m)) for t, m in zip(ts, mid, strict=True)}
    points = [last_per_bucket[b] for b in sorted(last_per_bucket)]
    t_pts = np.array([p[0] for p in points]) / 1000.0
    r = np.diff(np.log([p[1] for p in points]))
    dt = np.diff(t_pts)
    k = math.log(2) / params.half_life_s
    if params.method == "bipower":
        w = np.exp(-k * (t_pts[-1] - t_pts[2:]))
        num = (math.pi / 2) * np.sum(w * np.abs(r[1:]) * np.abs(r[:-1]))
        den = np.sum(w * np.sqrt(dt[1:] * dt[:-1]))
    else:
        w = np.exp(-k * (t_pts[-1] - t_pts[1:]))
        num, den = np.sum(w * r**2), np.sum(w * dt)
    prior_w = params.prior_weight_s * math.exp(-k * (t_pts[-1] - t_pts[0]))
    rate = (num + params.prior_sigma_annual**2 / SECONDS_PER_YEAR * prior_w) / (den + prior_w)
    return math.sqrt(rate * SECONDS_PER_YEAR)


@pytest.mark.parametrize("method", ["ewma", "bipower"])
def test_matches_the_definition_at_every_asof(method: str) -> None:
    frame = gbm_ticks(3 * 3600, 0.6, rate_hz=0.5, seed=3)
    params = VolParams(method=method, grid_s=20.0, half_life_s=900.0, lookback_s=3_600.0, prior_weight_s=600.0)  # type: ignore[arg-type]
    asof = np.linspace(T0 + 100_000, T0 + 3 * 3_600_000, 41).astype(np.int64)
    out = estimate_volatility(frame, asof, params)
    for row, t in zip(out.iter_rows(named=True), asof.tolist(), strict=True):
        assert row["sigma_estimate_annual"] == pytest.approx(brute_force(frame, t, params), rel=1e-9)


FLOATS = ("sigma_annual", "sigma_estimate_annual")


def test_no_look_ahead_and_window_consistency() -> None:
    frame = gbm_ticks(4 * 3600, 0.5, seed=5)
    asof = np.arange(T0 + 3_600_000, T0 + 4 * 3_600_000, 37_001, dtype=np.int64)
    base = estimate_volatility(frame, asof, VolParams())
    rng = np.random.default_rng(0)
    for t in asof[::25].tolist():
        later = pl.col("ts") > t
        scrambled = frame.with_columns(
            pl.when(later).then(pl.col(c) * pl.lit(rng.uniform(0.5, 1.5))).otherwise(pl.col(c)).alias(c)
            for c in ("price", "best_bid", "best_ask")
        )
        again = estimate_volatility(scrambled, [t], VolParams())
        assert again.row(0) == base.filter(pl.col("asof_ts") == t).row(0)
        # A live caller loads only [t − lookback, t] (kbtc.pipeline.edge_inputs.load_spot): same answer.
        window = frame.filter(pl.col("ts").is_between(t - int(VolParams().lookback_s * 1000), t))
        expected = again.row(0, named=True)
        expected.update({c: pytest.approx(expected[c], rel=1e-12) for c in FLOATS})
        assert estimate_volatility(window, [t], VolParams()).row(0, named=True) == expected


@pytest.mark.parametrize("method", ["ewma", "bipower"])
def test_recovers_the_true_volatility(method: str) -> None:
    frame = gbm_ticks(6 * 3600, 0.5, seed=11)
    out = estimate_volatility(frame, [T0 + 6 * 3_600_000 - 1], VolParams(method=method))  # type: ignore[arg-type]
    assert out["sigma_status"][0] == "ok"
    assert out["sigma_annual"][0] == pytest.approx(0.5, rel=0.12)


def test_bipower_ignores_a_jump_that_ewma_counts() -> None:
    frame = gbm_ticks(5 * 3600, 0.5, seed=13)
    jump_ts = T0 + 4 * 3_600_000
    jumped = frame.with_columns(
        pl.when(pl.col("ts") >= jump_ts).then(pl.col(c) * 1.01).otherwise(pl.col(c)).alias(c)
        for c in ("price", "best_bid", "best_ask")
    )
    t = [jump_ts + 600_000]
    ewma_before = estimate_volatility(frame, t)["sigma_annual"][0]
    ewma_after = estimate_volatility(jumped, t)["sigma_annual"][0]
    bipower_before = estimate_volatility(frame, t, VolParams(method="bipower"))["sigma_annual"][0]
    bipower_after = estimate_volatility(jumped, t, VolParams(method="bipower"))["sigma_annual"][0]
    assert ewma_after > 1.5 * ewma_before
    # A 30-sd jump still meets its two neighbours in the products (a finite-sample effect), but it moves the
    # bipower variance far less than the EWMA's, which takes the squared jump in full.
    assert (bipower_after / bipower_before) ** 2 - 1 < 0.3 * ((ewma_after / ewma_before) ** 2 - 1)


def test_mid_falls_back_to_last_price() -> None:
    frame = pl.DataFrame(
        {
            "ts": [1, 2, 3, 4, 5],
            "price": [100.0, 101.0, None, 103.0, -1.0],
            "best_bid": [99.0, None, 98.0, 104.0, None],
            "best_ask": [99.5, 102.0, 99.0, 103.0, None],
        }
    )
    ts, mid = spot_mid(frame)
    assert ts.tolist() == [1, 2, 3, 4]  # the last tick has no usable price at all
    assert mid.tolist() == [99.25, 101.0, 98.5, 103.0]  # one-sided and crossed books use the trade price


def test_unsorted_input_is_sorted_first() -> None:
    frame = gbm_ticks(3600, 0.5, seed=23)
    t = [int(frame["ts"].max())]
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=1)
    assert estimate_volatility(shuffled, t).equals(estimate_volatility(frame, t))


def test_statuses_in_order_and_fallbacks() -> None:
    frame = gbm_ticks(3 * 3600, 0.5, seed=17)
    end = int(frame["ts"].max())
    asof = [T0 - 1, T0 + 60_000, T0 + 22 * 60_000, end, end + 120_000]
    out = estimate_volatility(frame, asof, VolParams(grid_s=30.0, min_span_s=1_200.0, min_points=50))
    assert out["sigma_status"].to_list() == [
        "insufficient_points",  # no tick yet
        "insufficient_span",  # one minute of data
        "insufficient_points",  # 22 min span, but only ~44 returns on the 30 s grid
        "ok",
        "spot_stale",  # newest tick 120 s old > 60 s
    ]
    assert out["sigma_source"].to_list()[:2] == ["prior", "prior"]
    assert out["sigma_annual"][4] == 0.5
    assert out["spot_age_s"][0] is None
    none = estimate_volatility(frame, asof[:2], VolParams(fallback="none"))
    assert none["sigma_annual"].to_list() == [None, None]
    assert none["sigma_source"].to_list() == [None, None]


def test_out_of_bounds_is_clamped_or_falls_back() -> None:
    calm = gbm_ticks(3 * 3600, 0.05, seed=19)
    t = [int(calm["ts"].max())]
    clamped = estimate_volatility(calm, t, VolParams(prior_weight_s=0.0))
    assert clamped["sigma_status"][0] == "out_of_bounds"
    assert clamped["sigma_annual"][0] == 0.15
    assert clamped["sigma_source"][0] == "floor"
    assert clamped["sigma_estimate_annual"][0] == pytest.approx(0.05, rel=0.2)
    wild = gbm_ticks(3 * 3600, 4.0, seed=19)
    capped = estimate_volatility(wild, [int(wild["ts"].max())])
    assert (capped["sigma_annual"][0], capped["sigma_source"][0]) == (2.5, "cap")
    rejected = estimate_volatility(calm, t, VolParams(prior_weight_s=0.0, clamp_to_bounds=False))
    assert (rejected["sigma_annual"][0], rejected["sigma_source"][0]) == (0.5, "prior")


def test_non_finite_estimate_is_reported() -> None:
    estimate = np.array([np.nan, 0.4, np.inf])
    n_points = np.array([100, 100, 100])
    sigma, ok, status, source = _classify(estimate, n_points, np.full(3, 5_000.0), np.zeros(3), VolParams())
    assert status == ["non_finite", "ok", "non_finite"]
    assert ok.tolist() == [False, True, False]
    assert sigma.tolist() == [0.5, 0.4, 0.5]
    assert source == ["prior", "estimate", "prior"]


def test_decayed_cumsum_matches_the_loop_across_blocks_and_gaps() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(size=3_000)
    log_decay = rng.exponential(0.4, 3_000)
    log_decay[1_500] = 2_000.0  # a gap longer than any block: the past is forgotten entirely
    acc, cum = decayed_cumsum(values, log_decay)
    expected = np.empty_like(values)
    running = 0.0
    for j, (x, c) in enumerate(zip(values, log_decay, strict=True)):
        running = math.exp(-c) * running + x
        expected[j] = running
    np.testing.assert_allclose(acc, expected, rtol=1e-9, atol=1e-12)
    first, last = np.array([10, 1_600, 5]), np.array([400, 2_999, 5])
    got = window_sum(acc, cum, first, last)
    for g, f, la in zip(got, first, last, strict=True):
        manual = sum(values[i] * math.exp(-(cum[la] - cum[i])) for i in range(f + 1, la + 1))
        assert g == pytest.approx(manual, rel=1e-9, abs=1e-12)


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="grid_s"):
        VolParams(grid_s=0.0001)
    with pytest.raises(ValueError, match="method"):
        VolParams(method="garch")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lookback"):
        VolParams(grid_s=60.0, lookback_s=30.0)
    assert replace(VolParams(), method="bipower").method == "bipower"


@settings(max_examples=40, deadline=None)
@given(
    gaps_ms=st.lists(st.integers(1, 40_000), min_size=2, max_size=300),
    moves=st.lists(st.floats(-1e-3, 1e-3), min_size=300, max_size=300),
    cut=st.floats(0.0, 1.0),
    method=st.sampled_from(["ewma", "bipower", "seed"]),
)
def test_property_rows_ignore_everything_after_their_asof(
    gaps_ms: list[int], moves: list[float], cut: float, method: str
) -> None:
    ts = T0 + np.cumsum(gaps_ms).astype(np.int64)
    mid = 95_000 * np.exp(np.cumsum(moves[: len(gaps_ms)]))
    frame = pl.DataFrame({"ts": ts, "price": mid, "best_bid": mid - 0.01, "best_ask": mid + 0.01})
    t = int(ts[0] + cut * (ts[-1] - ts[0]))
    params = VolParams.seed() if method == "seed" else VolParams(method=method, min_points=2, min_span_s=60.0)  # type: ignore[arg-type]
    full = estimate_volatility(frame, [t], params)
    past = estimate_volatility(frame.filter(pl.col("ts") <= t), [t], params)
    assert full.equals(past)

"""`seed` mode reproduces the original volatility estimator (seed_system.md §3.2) exactly."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from kbtc.edge.volatility import SECONDS_PER_YEAR, VolParams, estimate_volatility

T0 = 1_795_000_000_000  # a multiple of 5 s


def spot(ts: list[int] | np.ndarray, price: list[float] | np.ndarray) -> pl.DataFrame:
    return pl.DataFrame(
        {"ts": ts, "price": price, "best_bid": [None] * len(ts), "best_ask": [None] * len(ts)},
        schema={"ts": pl.Int64, "price": pl.Float64, "best_bid": pl.Float64, "best_ask": pl.Float64},
    )


def original_sigma(ts_ms: list[int], price: list[float], now_ms: int) -> tuple[float | None, str]:
    """A line-by-line transcription of the original's SQLite path, with its check order."""
    history = [(t, p) for t, p in zip(ts_ms, price, strict=True) if p > 0 and now_ms - 3_900_000 <= t <= now_ms]
    buckets: dict[int, tuple[int, float]] = {}
    for t, p in history:  # ascending, so the last tick of each 5 s bucket wins; empty buckets are skipped
        buckets[t // 5_000] = (t, p)
    points = [buckets[b] for b in sorted(buckets)]
    if len(points) < 2:
        return None, "insufficient_points"
    if (points[-1][0] - points[0][0]) / 1000 < 3600:
        return None, "insufficient_span"
    returns = [math.log(points[i][1] / points[i - 1][1]) for i in range(1, len(points))]
    if len(returns) < 10:
        return None, "insufficient_points"
    var = returns[0] ** 2
    for r in returns[1:]:
        var = 0.94 * var + 0.06 * r * r
    sigma = math.sqrt(var) * math.sqrt(31_536_000 / 5)
    if not 0 < sigma <= 5.0:
        return None, "out_of_bounds"
    return sigma, "ok"


def test_three_buckets_by_hand() -> None:
    params = replace(VolParams.seed(), min_span_s=0.0, min_points=1)
    # Buckets [T0, +5 s), [+5, +10 s), [+10, +15 s): last ticks at +4 s, +9 s and +12 s.
    frame = spot([T0, T0 + 4_000, T0 + 9_000, T0 + 11_000, T0 + 12_000], [95_000, 95_010, 95_004, 94_990, 95_021])
    out = estimate_volatility(frame, [T0 + 12_000, T0 + 14_999, T0 + 9_000], params)
    r0, r1 = math.log(95_004 / 95_010), math.log(95_021 / 95_004)
    expected = math.sqrt(0.94 * r0**2 + 0.06 * r1**2) * math.sqrt(SECONDS_PER_YEAR / 5)
    assert out["sigma_estimate_annual"][0] == pytest.approx(expected, rel=1e-12)
    assert out["sigma_estimate_annual"][1] == pytest.approx(expected, rel=1e-12)
    # At +9 s the second bucket holds only the tick at +9 s: one return ln(101/102), var₀ = r₀².
    assert out["sigma_estimate_annual"][2] == pytest.approx(abs(r0) * math.sqrt(SECONDS_PER_YEAR / 5), rel=1e-12)
    assert out["vol_points"].to_list() == [2, 2, 1]
    assert out["sigma_source"].to_list() == ["estimate"] * 3


def test_empty_buckets_are_skipped_not_filled() -> None:
    params = replace(VolParams.seed(), min_span_s=0.0, min_points=1)
    # A 60 s gap between the two ticks is one return, not 12 (no forward fill).
    out = estimate_volatility(spot([T0, T0 + 60_000], [95_000.0, 95_020.0]), [T0 + 60_000], params)
    assert out["vol_points"][0] == 1
    expected = math.log(95_020 / 95_000) * math.sqrt(SECONDS_PER_YEAR / 5)
    assert out["sigma_estimate_annual"][0] == pytest.approx(expected, rel=1e-12)


def test_matches_transcription_of_the_original_on_random_ticks() -> None:
    rng = np.random.default_rng(7)
    n = 6_000
    ts = T0 + np.cumsum(rng.exponential(900.0, n)).astype(np.int64)
    ts[2_000:2_100] += 400_000  # a feed gap
    ts = np.sort(ts)
    price = 95_000 * np.exp(np.cumsum(rng.normal(0, 2e-4, n)))
    asof = np.linspace(ts[0] - 5_000, ts[-1] + 10_000, 97).astype(np.int64)
    ours = estimate_volatility(spot(ts, price), asof, VolParams.seed())
    for row, now in zip(ours.iter_rows(named=True), asof.tolist(), strict=True):
        sigma, status = original_sigma(ts.tolist(), price.tolist(), now)
        assert row["sigma_status"] == status, now
        if sigma is None:
            assert row["sigma_annual"] == pytest.approx(0.6)
            assert row["sigma_source"] == "prior"
        else:
            assert row["sigma_annual"] == pytest.approx(sigma, rel=1e-9)
    assert set(ours["sigma_status"]) >= {"ok", "insufficient_span", "insufficient_points"}


def test_rejects_above_five_and_falls_back_to_the_default() -> None:
    ts = [T0 + 5_000 * i for i in range(800)]
    price = [100.0 * (1.3 if i % 2 else 1.0) for i in range(800)]  # ±26 % every 5 s
    out = estimate_volatility(spot(ts, price), [ts[-1]], VolParams.seed())
    assert out.row(0, named=True)["sigma_status"] == "out_of_bounds"
    assert out["sigma_annual"][0] == 0.6
    assert out["sigma_estimate_annual"][0] > 5.0


def test_uses_last_trade_price_not_the_mid() -> None:
    ts = [T0 + 5_000 * i for i in range(800)]
    rng = np.random.default_rng(3)
    price = (95_000 * np.exp(np.cumsum(rng.normal(0, 1e-4, 800)))).tolist()
    frame = spot(ts, price).with_columns(best_bid=pl.lit(90_000.0), best_ask=pl.lit(90_000.02))
    out = estimate_volatility(frame, [ts[-1]], VolParams.seed())
    sigma, _ = original_sigma(ts, price, ts[-1])
    assert out["sigma_annual"][0] == pytest.approx(sigma, rel=1e-9)

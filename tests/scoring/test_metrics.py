"""Per-forecast metrics, calibration and clustered inference on data whose scores are known by hand."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from kbtc.scoring import metrics as m
from kbtc.scoring.calibration import calibration_error, murphy_decomposition, reliability_table
from kbtc.scoring.inference import clustered_mean, paired_loss_difference


def _eval(expr: pl.Expr, **columns: list[float | None]) -> list[float | None]:
    return pl.DataFrame(columns).select(expr.alias("v"))["v"].to_list()


def test_brier_and_log_loss_by_hand() -> None:
    p = [0.8, 0.8, 0.5, 0.0]
    y = [1, 0, 1, 1]
    assert _eval(m.brier("p", "y"), p=p, y=y) == pytest.approx([0.04, 0.64, 0.25, 1.0])
    assert _eval(m.log_loss("p", "y"), p=p, y=y) == pytest.approx(
        [-math.log(0.8), -math.log(0.2), math.log(2), -math.log(1e-6)]
    )
    # ε = 0.01 caps the penalty of a certain-and-wrong forecast at −ln 0.01.
    assert _eval(m.log_loss("p", "y", m.LOGLOSS_EPS_GRID), p=[0.0], y=[1])[0] == pytest.approx(-math.log(0.01))


def test_perfect_forecast_scores_zero() -> None:
    p = [1.0, 0.0, 1.0]
    y = [1, 0, 1]
    assert _eval(m.brier("p", "y"), p=p, y=y) == [0.0, 0.0, 0.0]
    assert max(_eval(m.log_loss("p", "y"), p=p, y=y)) == pytest.approx(-math.log(1 - 1e-6))
    frame = pl.DataFrame({"p": p * 10, "y": y * 10})
    decomposition = murphy_decomposition(frame, "p", "y", n_bins=2).row(0, named=True)
    assert decomposition["brier"] == 0.0 and decomposition["rel"] == 0.0
    assert decomposition["res"] == pytest.approx(decomposition["unc"])
    assert calibration_error(frame, "p", "y", n_bins=2)["ece"][0] == 0.0


@pytest.mark.parametrize(
    ("side", "outcome", "price", "fee", "expected"),
    [
        ("YES", 1, 55.0, 0.02, 0.43),  # YES wins: 1 − 0.55 − 0.02
        ("YES", 0, 55.0, 0.02, -0.57),  # YES loses the premium and the fee
        ("NO", 0, 38.0, 0.02, 0.60),  # NO wins: 1 − 0.38 − 0.02
        ("NO", 1, 38.0, 0.02, -0.40),  # NO loses
    ],
)
def test_pnl_signs_with_fees(side: str, outcome: int, price: float, fee: float, expected: float) -> None:
    frame = pl.DataFrame({"side": [side], "y": [outcome], "price": [price], "fee": [fee]})
    got = frame.select(m.pnl_side("side", "y", "price", "fee"))[0, 0]
    assert got == pytest.approx(expected)
    direct = m.pnl_yes("y", "price", "fee") if side == "YES" else m.pnl_no("y", "price", "fee")
    assert frame.select(direct)[0, 0] == pytest.approx(expected)


def test_market_mid_falls_back_to_the_no_book_and_outcome_parsing() -> None:
    mids = _eval(m.market_mid("yb", "ya", "nb", "na"), yb=[40.0, None], ya=[44.0, None], nb=[None, 70.0], na=[None, 72.0])
    assert mids == pytest.approx([0.42, 0.29])
    outcomes = pl.DataFrame({"r": ["yes", "NO ", "", "scalar", None]}).select(m.outcome_from_result("r"))
    assert outcomes.to_series().to_list() == [1, 0, None, None, None]


def test_murphy_decomposition_adds_up_and_matches_numpy() -> None:
    rng = np.random.default_rng(7)
    p = rng.random(5_000)
    y = (rng.random(5_000) < p**1.3).astype(np.int64)
    frame = pl.DataFrame({"p": p, "y": y, "g": rng.integers(0, 3, 5_000)})
    for row in murphy_decomposition(frame, "p", "y", by=["g"], n_bins=12).iter_rows(named=True):
        assert row["residual"] == pytest.approx(0.0, abs=1e-12)
    overall = murphy_decomposition(frame, "p", "y", n_bins=10).row(0, named=True)
    assert overall["brier"] == pytest.approx(np.mean((p - y) ** 2))
    # The same decomposition by hand in NumPy, with equal-mass bins from the ranks.
    bins = np.argsort(np.argsort(p)) * 10 // p.size
    base = y.mean()
    rel = res = wbv = wbc = 0.0
    for k in range(10):
        pk, yk = p[bins == k], y[bins == k]
        rel += pk.size * (pk.mean() - yk.mean()) ** 2
        res += pk.size * (yk.mean() - base) ** 2
        wbv += ((pk - pk.mean()) ** 2).sum()
        wbc += 2 * ((pk - pk.mean()) * (yk - yk.mean())).sum()
    n = p.size
    assert overall["rel"] == pytest.approx(rel / n)
    assert overall["res"] == pytest.approx(res / n)
    assert overall["unc"] == pytest.approx(base * (1 - base))
    assert overall["wbv"] == pytest.approx(wbv / n)
    assert overall["wbc"] == pytest.approx(wbc / n)


def test_constant_forecasts_within_bins_make_the_classic_decomposition_exact() -> None:
    # Market prices on a cent grid: one bin per price level means WBV = WBC = 0.
    frame = pl.DataFrame({"p": [0.2] * 5 + [0.7] * 5, "y": [0, 0, 0, 0, 1, 1, 1, 1, 0, 0]})
    row = murphy_decomposition(frame, "p", "y", n_bins=2).row(0, named=True)
    assert row["wbv"] == pytest.approx(0.0, abs=1e-15) and row["wbc"] == pytest.approx(0.0, abs=1e-15)
    # REL = (5(0.2−0.2)² + 5(0.7−0.6)²)/10 = 0.005; RES = (5(0.2−0.4)² + 5(0.6−0.4)²)/10 = 0.04; UNC = 0.24.
    assert (row["rel"], row["res"], row["unc"]) == pytest.approx((0.005, 0.04, 0.24))
    assert row["brier"] == pytest.approx(0.005 - 0.04 + 0.24)


def test_ece_and_reliability_table_by_hand() -> None:
    frame = pl.DataFrame({"p": [0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9], "y": [0, 0, 1, 1, 1, 1, 1, 1]})
    err = calibration_error(frame, "p", "y", n_bins=2).row(0, named=True)
    # Bin 0: |0.5 − 0.1| = 0.4; bin 1: |1.0 − 0.9| = 0.1; equal mass → ECE 0.25, MCE 0.4.
    assert err["ece"] == pytest.approx(0.25) and err["mce"] == pytest.approx(0.4)
    # A calibrated forecaster with bins of 4 at 0.1 and 0.9 would still show √(2·0.09/(4π)) ≈ 0.1197.
    assert err["ece_if_calibrated"] == pytest.approx(math.sqrt(2 * 0.09 / (4 * math.pi)))
    table = reliability_table(frame, "p", "y", n_bins=2)
    assert table["n"].to_list() == [4, 4]
    assert table["y_rate"].to_list() == pytest.approx([0.5, 1.0])
    low, high = table.row(0, named=True)["y_low"], table.row(0, named=True)["y_high"]
    # Wilson 95 % for 2/4: 0.5 ± 0.3994 (centre stays at 0.5 when the rate is 0.5).
    assert (low, high) == pytest.approx((0.1500, 0.8500), abs=1e-4)


def test_clustered_standard_error_known_case() -> None:
    # Two clusters: A = {1, 3}, B = {5, 7}. Mean 4; S_A = (1−4)+(3−4) = −4, S_B = +4.
    # SE² = G/(G−1) · Σ S_g² / N² = 2 · 32 / 16 = 4 → SE = 2 (the i.i.d. SE would be √(20/3)/2 ≈ 1.29).
    frame = pl.DataFrame({"x": [1.0, 3.0, 5.0, 7.0], "event": ["A", "A", "B", "B"]})
    row = clustered_mean(frame, "x", "event").row(0, named=True)
    assert (row["n"], row["clusters"], row["mean"]) == (4, 2, 4.0)
    assert row["se"] == pytest.approx(2.0) and row["t"] == pytest.approx(2.0)
    # One observation per cluster: the ordinary s/√N.
    single = clustered_mean(frame.with_columns(pl.col("x").cast(pl.String).alias("event")), "x", "event")
    assert single["se"][0] == pytest.approx(np.std([1, 3, 5, 7], ddof=1) / 2)
    # A single cluster has no SE.
    assert clustered_mean(frame.filter(event="A"), "x", "event")["se"][0] is None


def test_paired_loss_difference_uses_rows_with_both_losses() -> None:
    frame = pl.DataFrame(
        {"model": [0.1, 0.2, 0.3, None], "market": [0.2, 0.2, 0.5, 0.1], "event": ["A", "A", "B", "B"]}
    )
    row = paired_loss_difference(frame, "model", "market", "event").row(0, named=True)
    assert row["n"] == 3 and row["mean"] == pytest.approx(-0.1)


def test_encompassing_regression_finds_the_informative_forecast() -> None:
    from kbtc.scoring.inference import encompassing_regression

    rng = np.random.default_rng(11)
    n = 20_000
    truth = rng.uniform(0.02, 0.98, n)
    y = (rng.random(n) < truth).astype(np.int64)
    noise = rng.uniform(0.02, 0.98, n)  # carries no information about y
    frame = pl.DataFrame({"truth": truth, "noise": noise, "y": y, "event": rng.integers(0, 400, n)})
    fit = {row["term"]: row for row in encompassing_regression(frame, "noise", "truth", "y", "event").iter_rows(named=True)}
    # The market (here the truth) is calibrated: slope 1, intercept 0; the uninformative model gets slope 0.
    assert abs(fit["market"]["coef"] - 1.0) < 3 * fit["market"]["se"]
    assert abs(fit["model"]["coef"]) < 3 * fit["model"]["se"]
    assert abs(fit["intercept"]["coef"]) < 3 * fit["intercept"]["se"]
    assert fit["market"]["z"] > 20 and fit["model"]["clusters"] == 400
    swapped = encompassing_regression(frame, "truth", "noise", "y", "event")
    assert swapped.filter(term="model")["z"][0] > 20
    # Too few clusters for a clustered SE: no fit.
    assert encompassing_regression(frame.with_columns(pl.lit("A").alias("event")), "truth", "noise", "y", "event").height == 0
    # Perfect separation has no finite maximum-likelihood fit: reported as no fit, without warnings.
    separated = pl.DataFrame({"m": [0.1, 0.2, 0.8, 0.9] * 10, "k": [0.3, 0.3, 0.6, 0.6] * 10,
                              "y": [0, 0, 1, 1] * 10, "event": list(range(40))})
    assert encompassing_regression(separated, "m", "k", "y", "event").height == 0

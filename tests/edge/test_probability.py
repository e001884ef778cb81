"""P(YES): seeded Monte Carlo checks (before and inside the averaging window), identities, edge cases, tails,
and the original system's point formula against hand computation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from _frames import prob_frame, probabilities

Y = 31_536_000.0
S = 100_000.0


def simulate_average(
    rng: np.random.Generator, *, spot: float, sigma: float, horizon_s: float, fixed: list[float], paths: int
) -> np.ndarray:
    """Arithmetic mean of the 60 one-second prints ending at the close, under zero-drift GBM (exact steps).

    `fixed` are the prints already known; the remaining m = 60 − len(fixed) prints sit at horizon − (m−1) … horizon.
    """
    m = 60 - len(fixed)
    var_s = sigma**2 / Y
    first = horizon_s - (m - 1)
    steps = np.empty((paths, m))
    steps[:, 0] = rng.normal(-0.5 * var_s * first, math.sqrt(var_s * first), paths)
    steps[:, 1:] = rng.normal(-0.5 * var_s, math.sqrt(var_s), (paths, m - 1))
    future = spot * np.exp(np.cumsum(steps, axis=1))
    return (sum(fixed) + future.sum(axis=1)) / 60.0


# Tolerance: 4 standard errors of the MC estimate (≤ 0.0011 at 200k paths) plus 0.0015 model error (the
# lognormal moment match and, inside the window, the shifted-strike approximation; model_math.md §1.3).
PATHS = 200_000


def mc_tolerance(p: float) -> float:
    return 4 * math.sqrt(max(p * (1 - p), 1e-4) / PATHS) + 0.0015


@pytest.mark.parametrize(
    ("horizon_s", "strike"),
    [(3600.0, S + 641.0), (300.0, S + 185.0), (60.0, S + 83.0), (60.0, S - 83.0), (75.0, S + 20.0)],
)
def test_before_window_matches_monte_carlo(horizon_s: float, strike: float) -> None:
    rng = np.random.default_rng(7)
    avg = simulate_average(rng, spot=S, sigma=0.6, horizon_s=horizon_s, fixed=[], paths=PATHS)
    mc = float((avg > strike).mean())
    [p] = probabilities(prob_frame(spot=S, sigma=0.6, horizon_s=horizon_s, strike_type="greater", floor=strike))
    assert p == pytest.approx(mc, abs=mc_tolerance(mc))


@pytest.mark.parametrize(
    ("horizon_s", "fixed_level", "strike_type", "floor", "cap"),
    [
        (20.0, S + 30.0, "greater", S + 20.0, None),  # 40 prints fixed above spot
        (30.0, S - 40.0, "greater_or_equal", S - 10.0, None),
        (5.0, S + 10.0, "greater", S + 9.0, None),  # 5 prints left: the hard case for the geometric version
        (45.0, S, "less", None, S + 5.0),
        (25.0, S + 15.0, "between", S, S + 25.0),
    ],
)
def test_inside_window_matches_monte_carlo(
    horizon_s: float, fixed_level: float, strike_type: str, floor: float | None, cap: float | None
) -> None:
    rng = np.random.default_rng(11)
    k = 60 - int(horizon_s)
    fixed = list(fixed_level + rng.normal(0, 5.0, k))
    avg = simulate_average(rng, spot=S, sigma=0.6, horizon_s=horizon_s, fixed=fixed, paths=PATHS)
    if strike_type in ("greater", "greater_or_equal"):
        mc = float((avg > floor).mean())
    elif strike_type == "less":
        mc = float((avg < cap).mean())
    else:
        mc = float(((avg >= floor) & (avg <= cap)).mean())
    [p] = probabilities(
        prob_frame(
            spot=S, sigma=0.6, horizon_s=horizon_s, strike_type=strike_type, floor=floor, cap=cap,
            fixed_sum=sum(fixed),
        )
    )
    assert p == pytest.approx(mc, abs=mc_tolerance(mc))


def test_point_mode_matches_monte_carlo_of_the_terminal_price() -> None:
    rng = np.random.default_rng(3)
    v = 0.5**2 * 3600 / Y
    terminal = S * np.exp(rng.normal(-v / 2, math.sqrt(v), 400_000))
    mc = float((terminal > S + 300).mean())
    [p] = probabilities(prob_frame(spot=S, sigma=0.5, horizon_s=3600.0, strike_type="greater", floor=S + 300), "point")
    assert p == pytest.approx(mc, abs=4 * math.sqrt(mc * (1 - mc) / 400_000))


def test_after_window_the_realised_average_decides() -> None:
    fixed = 60 * (S + 1.0)
    frame = prob_frame(
        spot=S - 500.0, sigma=0.6, horizon_s=[0.0, -3.0, -3.0, -3.0, -3.0, -3.0, -3.0, -3.0],
        strike_type=["greater", "greater", "greater_or_equal", "less", "less_or_equal", "between", "between",
                     "between"],
        floor=[S, S + 1.0, S + 1.0, None, None, S + 1.0, S, S + 2.0],
        cap=[None, None, None, S + 1.0, S + 1.0, S + 2.0, S + 1.0, S + 3.0], fixed_sum=fixed,
    )
    # Spot has moved, but only the fixed average counts; equality follows each strike type's own inequality
    # (a between includes both its floor and its cap).
    assert probabilities(frame) == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0]


def test_monotone_in_strike_and_complements() -> None:
    strikes = list(np.linspace(S - 3000, S + 3000, 121))
    for horizon, fixed in ((3600.0, None), (30.0, 30 * (S + 12.0))):
        above = probabilities(
            prob_frame(spot=S, sigma=0.5, horizon_s=horizon, strike_type="greater", floor=strikes, fixed_sum=fixed)
        )
        below = probabilities(
            prob_frame(spot=S, sigma=0.5, horizon_s=horizon, strike_type="less_or_equal", cap=strikes, fixed_sum=fixed)
        )
        assert all(a >= b for a, b in itertools.pairwise(above))
        assert above[0] > 0.99 and above[-1] < 0.01
        assert max(abs(a + b - 1.0) for a, b in zip(above, below, strict=True)) < 1e-14


def test_range_buckets_of_a_partition_sum_to_one() -> None:
    edges = [S - 5000 + 250 * i for i in range(41)]
    floors = [None, *edges]
    caps = [*edges, None]
    types = ["less", *["between"] * 40, "greater"]
    for horizon in (3600.0, 40.0):
        p = probabilities(
            prob_frame(spot=S, sigma=0.7, horizon_s=horizon, strike_type=types, floor=floors, cap=caps,
                       fixed_sum=20 * S if horizon < 60 else None)
        )
        assert sum(p) == pytest.approx(1.0, abs=1e-12)
        assert all(0.0 <= x <= 1.0 for x in p)


def test_tails_keep_relative_precision() -> None:
    # 1 h at 50 %: K = 1.2·S is ~34 sd away; N(d2) must come from erfc of the small tail, not 1 − N.
    v = 0.25 * 3600 / Y
    d2_far = (math.log(1 / 1.2) - v / 2) / math.sqrt(v)
    expected_far = 0.5 * math.erfc(-d2_far / math.sqrt(2))
    d2_below = (math.log(1 / 0.97) - v / 2) / math.sqrt(v)
    expected_below = 0.5 * math.erfc(d2_below / math.sqrt(2))
    above, below = probabilities(
        prob_frame(spot=S, sigma=0.5, horizon_s=3600.0, strike_type=["greater", "less"], floor=[1.2 * S, None],
                   cap=[None, 0.97 * S]),
        "point",
    )
    assert above == pytest.approx(expected_far, rel=1e-10) and 0 < above < 1e-200
    assert below == pytest.approx(expected_below, rel=1e-10) and below < 1e-6
    # A bucket far below spot: both tails near 1 in "above" form; computed from the lower tails instead.
    low_bucket = probabilities(
        prob_frame(spot=S, sigma=0.5, horizon_s=3600.0, strike_type="between", floor=0.95 * S, cap=0.96 * S),
        "point",
    )[0]
    lo = (math.log(1 / 0.95) - v / 2) / math.sqrt(v)
    hi = (math.log(1 / 0.96) - v / 2) / math.sqrt(v)
    exact = 0.5 * math.erfc(hi / math.sqrt(2)) - 0.5 * math.erfc(lo / math.sqrt(2))
    assert low_bucket == pytest.approx(exact, rel=1e-9) and low_bucket > 0


NAN = float("nan")


def edge_case_frame():  # type: ignore[no-untyped-def]
    """model_math.md §1's edge cases, one per row, all before the window (1 h to the close)."""
    return prob_frame(
        spot=[S, S, S, S, S, S, -1.0, NAN, S, S, S, S, S],
        sigma=[0.0, 0.0, 0.5, 0.5, 0.5, 1e6, 0.5, 0.5, NAN, 0.5, 0.5, -0.1, 0.5],
        horizon_s=[3600.0] * 12 + [NAN],
        strike_type=["greater", "less", "greater", "less", "between", "greater", "greater", "greater", "greater",
                     "between", "functional", "greater", "greater"],
        floor=[S - 1, None, -5.0, None, -5.0, S, S, S, S, S + 10, S, S, S],
        cap=[None, S - 1, None, 0.0, S, None, None, None, None, S, None, None, None],
    )


def test_edge_cases_of_model_math_section_1_in_average_mode() -> None:
    p = probabilities(edge_case_frame())
    assert p[0] == 1.0 and p[1] == 0.0  # σ = 0 before the window: the outcome is decided (v = 0)
    assert p[2] == 1.0 and p[3] == 0.0  # K ≤ 0: always above
    assert 0.4 < p[4] < 0.6  # floor ≤ 0: "below cap" (≈ 0.5 at the money)
    assert p[5] < 1e-12  # σ → ∞: all mass near 0
    # S ≤ 0, NaN spot, NaN σ, cap ≤ floor, unknown type, σ < 0, NaN horizon: no fake number
    assert p[6:] == [None] * 7


def test_average_mode_edge_cases_inside_and_after_the_window() -> None:
    frame = prob_frame(
        spot=S, sigma=[0.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
        horizon_s=[30.0, 30.0, 30.0, 30.0, 30.0, 0.0, -5.0, 30.0, 30.0, 3600.0],
        strike_type=["greater", "less", "greater", "less", "between", "greater", "greater", "greater", "greater",
                     "greater"],
        floor=[S + 1.0, None, -5.0, None, 0.0, S, S, NAN, S, S],
        cap=[None, S + 1.0, None, -1.0, S, None, None, None, None, None],
        fixed_sum=[30 * S] * 5 + [None, 60 * (S + 1.0), 30 * S, NAN, None],
        basis_std=[None] * 9 + [NAN],
    )
    p = probabilities(frame)
    # σ = 0 inside the window: the 30 future prints equal spot, the average is S: decided against K = S + 1.
    assert p[0] == 0.0 and p[1] == 1.0
    assert p[2] == 1.0 and p[3] == 0.0  # K ≤ 0 inside the window
    assert 0.4 < p[4] < 0.6  # a range with floor ≤ 0 is "below cap"
    assert p[5] is None  # T = 0 without the realised prints: unknown, not a guess
    assert p[6] == 1.0  # T < 0: the realised average S + 1 > S decides
    assert p[7:] == [None] * 3  # NaN strike, NaN fixed sum, NaN basis std


def test_edge_cases_in_point_mode_follow_the_original() -> None:
    p = probabilities(edge_case_frame(), "point")
    # The original returns None for σ ≤ 0 when T > 0 and for any bound ≤ 0 (seed_system.md §3.3).
    assert p[:5] == [None] * 5
    assert p[5] < 1e-12  # σ → ∞: all mass near 0
    assert p[6:] == [None] * 7  # S ≤ 0, NaN spot, NaN σ, cap ≤ floor, unknown type, σ < 0, NaN horizon
    # At T ≤ 0 the original's step never reads σ (σ = 0, even NaN, is fine there); a bound ≤ 0 is still None.
    expired = prob_frame(spot=S, sigma=[0.0, NAN, 0.5], horizon_s=[0.0, -1.0, 0.0], strike_type="greater",
                         floor=[S, S, 0.0])
    assert probabilities(expired, "point") == [1.0, 1.0, None]


def test_inside_window_shifted_strike_at_or_below_zero_is_certain() -> None:
    # 59 prints far above the strike: even a zero future print settles above.
    [p] = probabilities(prob_frame(spot=S, sigma=0.6, horizon_s=1.0, strike_type="greater", floor=S,
                                   fixed_sum=59 * 2 * S))
    assert p == 1.0


def test_inside_window_without_fixed_prints_is_null() -> None:
    [p] = probabilities(prob_frame(spot=S, sigma=0.6, horizon_s=30.0, strike_type="greater", floor=S))
    assert p is None


def test_basis_uncertainty_widens_the_distribution() -> None:
    base, wide = probabilities(
        prob_frame(spot=S, sigma=0.3, horizon_s=600.0, strike_type="greater", floor=S + 200, basis_std=[None, 100.0])
    )
    assert base < wide < 0.5


def seed_probability(strike_type: str, spot: float, sigma: float, horizon: float, lower: float | None,
                     upper: float | None) -> float:
    """The original system's formula, restated by hand (seed_system.md §3.3), before its clamp."""
    if horizon <= 0:
        if strike_type == "less":
            return float(spot <= upper)  # type: ignore[operator]
        if strike_type == "greater":
            return float(spot >= lower)  # type: ignore[operator]
        return float(lower <= spot < upper)  # type: ignore[operator]
    s = sigma * math.sqrt(horizon / Y)

    def cdf(k: float) -> float:
        z = (math.log(k / spot) + 0.5 * s * s) / s
        return 0.5 * (1 + math.erf(z / math.sqrt(2)))

    if strike_type == "less":
        return cdf(upper)  # type: ignore[arg-type]
    if strike_type == "greater":
        return 1 - cdf(lower)  # type: ignore[arg-type]
    return cdf(upper) - cdf(lower)  # type: ignore[arg-type]


def test_point_mode_equals_the_original_formula() -> None:
    cases = [
        ("greater", 97_500.0, 0.55, 1800.0, 97_749.99, None),
        ("less", 97_500.0, 0.80, 86_400.0, None, 96_000.0),
        ("between", 97_500.0, 0.40, 600.0, 97_250.0, 97_749.99),
        ("greater", 97_500.0, 0.40, 0.0, 97_500.0, None),  # step at T ≤ 0: ≥ lower
        ("less", 97_500.0, 0.40, -5.0, None, 97_500.0),  # ≤ upper
        ("between", 97_500.0, 0.40, 0.0, 97_000.0, 97_500.0),  # [lower, upper)
        ("between", 97_500.0, 0.40, 0.0, 97_000.0, 98_000.0),  # inside [lower, upper): 1, clamped once
        ("between", 97_500.0, 0.40, 600.0, 50_000.0, 98_000.0),  # F(lower) = 0: the original clamps it first
    ]
    frame = prob_frame(
        spot=[c[1] for c in cases], sigma=[c[2] for c in cases], horizon_s=[c[3] for c in cases],
        strike_type=[c[0] for c in cases], floor=[c[4] for c in cases], cap=[c[5] for c in cases],
    )
    got = probabilities(frame, "point")
    for value, case in zip(got, cases, strict=True):
        assert value == pytest.approx(seed_probability(*case), abs=1e-12)
    clipped = probabilities(frame, "point", column="p_model")
    assert clipped[3] == 1 - 1e-12 and clipped[5] == 1e-12  # the original's clamp to [1e-12, 1 − 1e-12]
    for value, case in zip(clipped, cases, strict=True):
        assert value == pytest.approx(seed_clamped(*case), abs=1e-13)  # the double clamp moves it 1e-12


def seed_clamped(strike_type: str, spot: float, sigma: float, horizon: float, lower: float | None,
                 upper: float | None) -> float:
    """The original's stored `prob_yes`: clamp, and for a range with T > 0 clamp(clamp(F(upper)) − clamp(F(lower)))."""
    def clamp(x: float) -> float:
        return min(max(x, 1e-12), 1 - 1e-12)

    if strike_type != "between" or horizon <= 0:
        return clamp(seed_probability(strike_type, spot, sigma, horizon, lower, upper))
    below_upper = seed_probability("less", spot, sigma, horizon, None, upper)
    below_lower = seed_probability("less", spot, sigma, horizon, None, lower)
    return clamp(clamp(below_upper) - clamp(below_lower))

"""P(YES) of a Kalshi BTC market under zero-drift GBM, for the 60-second settlement average or a point.

The model (reference/model_math.md §1): the price is a martingale, `ln S_T ~ N(ln S − v/2, v)` with
`v = σ²·T/Y` (Y = 365·86 400 s), so `P(S_T > K) = N(d2)`, `d2 = (ln(S/K) − v/2)/√v` — the undiscounted
cash-or-nothing call. Kalshi's BTC series settle on the simple average of 60 one-second BRTI prints ending
at the close (kalshi_api.md §8), which model_math.md §1.3 prices as follows, all with the same `N(d2)`:

- **before the window** (no print fixed yet): an effective horizon. With `m` = `n` future prints spaced `Δ`,
  the first one `δ` from now, `v = σ_s²·(δ + Δ(m−1)(2m−1)/(6m))` — for T ≥ w this is `T − w + Δ(n+1)(2n+1)/(6n)`,
  i.e. `T − 39.497 s` for 60 one-second prints.
- **inside the window** (`k = n − m` prints fixed, their sum `Σ`): `A > K ⇔ F > K* = (n·K − Σ)/m` where `F`
  is the mean of the `m` future prints, priced with the same variance formula (K* ≤ 0 ⇒ P = 1).
- **after the window** (`m = 0`): the realised average `A = Σ/n` decides.

The basis uncertainty to the settlement index (`basis_std_usd`) is added to the log-variance; inside the
window it is scaled by `n/m`, because a level error in the average is an `n/m` times larger error in `F`.

`point` mode is the original system's formula (seed_system.md §3.3): `N(d2)` over T with the deterministic
step `≥ lower`, `≤ upper`, `lower ≤ S < upper` at T ≤ 0 (σ is not read there), and the original's invalid
inputs: null for σ ≤ 0 when T > 0 (no indicator at σ = 0) and for a bound ≤ 0 (no "K ≤ 0 is always
exceeded"); a range's `p_model` is the original's `clamp(clamp(F(cap)) − clamp(F(floor)))`. The one extension:
`greater_or_equal` / `less_or_equal`, which the original did not price, are priced as `greater` / `less`.

Conventions of `average` mode (documented in docs/EDGE_VALIDATION.md):
- When the total variance is 0 (T ≤ 0 after the window, or σ = 0) the outcome is the strict indicator of the
  strike type's own inequality (`greater` is `>`, `greater_or_equal` is `≥`, `between` is `floor ≤ A ≤ cap`),
  not the `v → 0` limit 0.5 at the strike.
- `K ≤ 0`: `P(A > K) = 1`; a `between` with `floor ≤ 0` is "below cap".
- Invalid inputs (spot ≤ 0, σ < 0, a NaN or infinite spot, σ or horizon, a missing bound, cap ≤ floor, an
  unknown strike type) give null, never a fake probability — in both modes.
- Tails are computed from the smaller tail: `e = ½·erfc(|d|/√2)`, so `P(above)` and `P(below)` keep full
  relative precision far out (never `1 − N(d)` for a small result). A range bucket whose strikes both lie
  far *below* the centre is `L(cap) − L(floor)` (both near 0), otherwise `U(floor) − U(cap)`.
"""

from __future__ import annotations

import functools
import math

import polars as pl

from kbtc.edge.params import SECONDS_PER_YEAR, SettlementMode
from kbtc.edge.stages import Stages, apply_stages

GREATER_TYPES = ("greater", "greater_or_equal")
LESS_TYPES = ("less", "less_or_equal")
# The numeric strike types we price; Kalshi's others (`functional`, `custom`, `structured`) are skipped.
PRICED_STRIKE_TYPES = (*GREATER_TYPES, *LESS_TYPES, "between")
_INV_SQRT2 = 1.0 / math.sqrt(2.0)

# Columns the probability step reads.
PROBABILITY_INPUTS = (
    "model_spot_usd",  # spot in settlement-index units (spot + basis)
    "sigma_annual",
    "horizon_s",  # seconds from the spot's time to the close (≤ 0: the window has ended)
    "strike_type",  # String or Categorical (the engine's: its comparisons with literals are integer ones)
    "floor_strike",
    "cap_strike",
    "fixed_sum_usd",  # sum of the window's prints already fixed (index units); ignored before the window
    "basis_std_usd",  # null = no basis uncertainty
)


def is_finite(value: pl.Expr) -> pl.Expr:
    """`value.is_finite()` (null stays null) as two SIMD kernels: Polars' `is_finite` costs ~20× a comparison.

    NaN fails `< ∞` because Polars orders NaN above every number.
    """
    return value.abs() < math.inf


def _times(value: pl.Expr, factor: float) -> pl.Expr:
    """`value · factor`, without a pass over the column when the factor is 1 (1-second prints)."""
    return value if factor == 1.0 else value * factor


def future_prints(horizon_s: pl.Expr, window_prints: int, print_interval_s: float) -> pl.Expr:
    """Number of settlement prints still to come: `min(n, ⌈T/Δ⌉)`, 0 once the window has ended.

    Prints sit at `close − jΔ`, j = 0…n−1; the one exactly at "now" counts as fixed. Null for a NaN or infinite
    horizon (`min_horizontal` would skip a NaN and answer n).
    """
    ceil = (horizon_s / print_interval_s if print_interval_s != 1.0 else horizon_s).ceil()
    return (
        pl.when(~is_finite(horizon_s))
        .then(None)
        .when(horizon_s <= 0)
        .then(0.0)
        .otherwise(pl.min_horizontal(ceil, float(window_prints)))
    )


def _log_ratio(x: pl.Expr, k: pl.Expr) -> pl.Expr:
    """ln(x/k) as `log1p(x/k − 1)`: libm's `log` takes a slower path near 1, where strikes near the spot put
    x/k (7 against 3 ns a row); `log1p` does not. For x/k in [½, 2] the subtraction is exact (Sterbenz), so
    the result is as accurate as `log`'s; beyond 2 its rounding costs ≤ 2⁻⁵³ relative to x/k (≤ 1.1·10⁻¹⁶
    absolute in the logarithm), below ½ ≤ 2⁻⁵⁴/(x/k) absolute (5.5·10⁻¹⁵ at x/k = 0.01)."""
    return (x / k - 1.0).log1p()


def _at_least_zero(strike: pl.Expr) -> pl.Expr:
    """`strike`, with values ≤ 0 as +0.0: ln(x/0) = +∞ gives P(above) = 1 without a branch per tail (−0.0 would
    give −∞). NaN stays NaN (Polars orders it above 0); null becomes 0.0 (its row is invalid: `bounds_ok`)."""
    return pl.when(strike > 0).then(strike).otherwise(0.0)


def at_least(value: pl.Expr, bound: float) -> pl.Expr:
    """`value.clip(lower_bound=bound)` (NaN, null and −0.0 kept alike) as a compare and a select: a third
    cheaper than Polars' scalar clip loop."""
    return pl.when(value < bound).then(bound).otherwise(value)


def fill_nan(value: pl.Expr, fill: pl.Expr | float) -> pl.Expr:
    """`value.fill_nan(fill)` (null stays null) as one test and one select: Polars' `fill_nan` tests
    `is_not_nan() | is_null()`, two more passes."""
    return pl.when(value.is_nan()).then(fill).otherwise(value)


def _indicator(mask: pl.Expr, value: float = 1.0) -> pl.Expr:
    """`value` where `mask`, else 0.0: a select of two literals costs a quarter of `cast(Float64)`. Typed
    literals: with untyped ones Polars casts the select's result, one more pass."""
    return pl.when(mask).then(pl.lit(value, pl.Float64)).otherwise(pl.lit(0.0, pl.Float64))


# Strike-type masks are computed once per row as booleans (string equality is cheap; mapping strings is not).
_GT, _LT, _BT, _INCL = pl.col("_gt"), pl.col("_lt"), pl.col("_bt"), pl.col("_incl")

# `_k_lo` is the strike of the tail every type reads (the floor; a `less`'s cap), `_k_hi` a `between`'s cap. A
# `greater`'s `_k_hi` is its floor: computed, never read — libm's log1p at +∞ (a null strike clamped to 0) costs
# mispredicted branches where it alternates with finite arguments (5.2 against 3.2 ns a row for a third of ∞).
_primary_strike = pl.when(_LT).then(pl.col("cap_strike")).otherwise(pl.col("floor_strike"))
_cap_strike = pl.when(_GT).then(pl.col("floor_strike")).otherwise(pl.col("cap_strike"))
# The temporary columns of `probability_stages` (dropped by `with_probability` and by kbtc.edge.pricing.price).
PROBABILITY_TEMPORARIES = (
    "_gt",
    "_lt",
    "_bt",
    "_incl",
    "_x",
    "_k_lo",
    "_k_hi",
    "_w",
    "_hv",
    "_z_hi",
    "_sgn",
    "_a",
    "_b",
    "_scale",
    "_shift",
    "_vdiff",
)


def with_probability(
    frame: pl.LazyFrame,
    *,
    mode: SettlementMode = "average",
    window_prints: int = 60,
    print_interval_s: float = 1.0,
    prob_clip: float = 1e-12,
) -> pl.LazyFrame:
    """Add `p_model_raw`, `p_model` (clipped to [ε, 1 − ε]), `model_var` and `prints_left` to `frame`.

    `frame` must carry the columns of `PROBABILITY_INPUTS`. Vectorised: a few passes of Polars expressions,
    each stage materialised once so that no branch recomputes a transcendental function.
    """
    return apply_stages(frame, probability_stages(mode, window_prints, print_interval_s, prob_clip)).drop(
        *PROBABILITY_TEMPORARIES, strict=False
    )


@functools.lru_cache(maxsize=64)
def probability_stages(mode: SettlementMode, window_prints: int, print_interval_s: float, prob_clip: float) -> Stages:
    """The expressions of `with_probability`, stage by stage (before dropping the temporaries).

    Built once per setting (kbtc.edge.stages).
    """
    n = float(window_prints)
    dt = float(print_interval_s)
    t = pl.col("horizon_s")
    sigma = pl.col("sigma_annual")
    var_per_s = sigma * sigma / SECONDS_PER_YEAR
    basis_std = pl.col("basis_std_usd").fill_null(0.0)
    greater, less = _GT, _LT
    strike_type = pl.col("strike_type")
    stages: list[tuple[pl.Expr, ...]] = []
    stages.append(
        (
            ((strike_type == "greater") | (strike_type == "greater_or_equal")).alias("_gt"),
            ((strike_type == "less") | (strike_type == "less_or_equal")).alias("_lt"),
            (strike_type == "between").alias("_bt"),
            ((strike_type == "greater_or_equal") | (strike_type == "less_or_equal")).alias("_incl"),
        )
    )
    if mode == "average":
        m = pl.col("prints_left")
        # δ + Δ(m−1)(2m−1)/(6m) with δ = T − (m−1)Δ the time to the first future print, as
        # T − Δ(m−1)(2/3 + 1/(6m)): fewer passes, and exactly T at m = 1. Null m (a NaN or infinite horizon) gives
        # 0 here, its variance is null through `_scale`; a null σ gives null.
        diffusion = (
            pl.when(m > 0)
            .then(var_per_s * (t - _times((m - 1.0) * (2.0 / 3.0 + (1.0 / 6.0) / m), dt)))
            .otherwise(0.0)
        )
        stages.append((future_prints(t, window_prints, print_interval_s).alias("prints_left"),))
        stages.append(
            (
                pl.when(pl.col("prints_left") == 0)
                .then(pl.col("fixed_sum_usd") / n)
                .otherwise(pl.col("model_spot_usd"))
                .alias("_x"),
                pl.when(pl.col("prints_left") == 0).then(1.0).otherwise(n / pl.col("prints_left")).alias("_scale"),
                # Before the window nothing is fixed (Σ = 0 even when no prints were supplied).
                pl.when((pl.col("prints_left") > 0) & (pl.col("prints_left") < n))
                .then(pl.col("fixed_sum_usd") / pl.col("prints_left"))
                .otherwise(0.0)
                .alias("_shift"),
                diffusion.alias("_vdiff"),
            )
        )
        # A strike the type does not use is computed but never read (see `_primary_strike`).
        stages.append(
            (
                _at_least_zero(pl.col("_scale") * _primary_strike - pl.col("_shift")).alias("_k_lo"),
                _at_least_zero(pl.col("_scale") * _cap_strike - pl.col("_shift")).alias("_k_hi"),
                (pl.col("_vdiff") + (basis_std * pl.col("_scale") / pl.col("_x")) ** 2).alias("model_var"),
            )
        )
        # A NaN sum would reach erfc as NaN and be read as a tie: only a finite sum prices the window.
        # Inside the window the shift is Σ/m: a null, NaN or infinite sum makes it so (before the window it is 0,
        # after it the sum is the spot `_x`, checked below).
        in_window_without_prints = ~is_finite(pl.col("_shift"))
    else:
        # The original's horizon is max(T, 0); at T ≤ 0 it never reads σ. (Not `max_horizontal(t, 0)`: it
        # skips a NaN and would turn a NaN horizon into an expired market.)
        point_diffusion = pl.when(t > 0).then(var_per_s * t).otherwise(0.0)
        stages.append(
            (
                pl.lit(None, pl.Float64).alias("prints_left"),
                pl.col("model_spot_usd").alias("_x"),
                _at_least_zero(_primary_strike).alias("_k_lo"),
                _at_least_zero(_cap_strike).alias("_k_hi"),
                (point_diffusion + (basis_std / pl.col("model_spot_usd")) ** 2).alias("model_var"),
            )
        )
        in_window_without_prints = pl.lit(False)

    x, v = pl.col("_x"), pl.col("model_var")
    k_lo, k_hi = pl.col("_k_lo"), pl.col("_k_hi")
    # z = d/√2 = (ln(x/K) − v/2)·w with w = 1/√(2v), so Φ(±d) = ½·erfc(∓z).
    stages.append(((_INV_SQRT2 / v.sqrt()).alias("_w"), (0.5 * v).alias("_hv")))
    w, half_v = pl.col("_w"), pl.col("_hv")
    z_lo = (_log_ratio(x, k_lo) - half_v) * w
    z_hi = (_log_ratio(x, k_hi) - half_v) * w
    # Φ(y) = ½·erfc(−y/√2) keeps full relative precision in both tails. A bucket whose strikes both lie below
    # the centre (d_hi > 0) is computed from the lower tails, Φ(−d_hi) − Φ(−d_lo), both small: no cancellation.
    stages.append((z_hi.alias("_z_hi"),))
    stages.append(
        (
            # −z < 0, not z > 0: Polars orders NaN above every number, and a tie at the cap (z = NaN) is not
            # "below the centre".
            pl.when(less | (_BT & (-pl.col("_z_hi") < 0))).then(1.0).otherwise(-1.0).alias("_sgn"),
        )
    )
    sgn = pl.col("_sgn")
    # With v = 0 (outcome decided) z = ±∞ and Φ gives the indicator; at a tie x = K, z = 0·∞ = NaN and the
    # strike type's own inequality decides. `a` is twice the tail every type reads, at `_k_lo`: P(above floor)
    # for `greater` and `between` (below, when sgn = +1), P(below cap) for `less` (sgn = +1); `b` is twice a
    # `between`'s tail at the cap, P(above cap) (below, when sgn = +1), and exactly 0 for the other types. A tie
    # counts for `a` when its bound is inclusive, for `b` never (a range's "above cap" is strict).
    tie_a: pl.Expr | float
    if mode == "average":
        tie_a = _indicator(_INCL | _BT, 2.0)  # ≥ floor, ≤ cap: greater_or_equal, less_or_equal and between
    else:  # the original's step at T ≤ 0: ≥ lower, ≤ upper, [lower, upper)
        tie_a = tie_b = 2.0  # (average mode: no tie value for `b`, see `b_tail`)
    # erfc is the costliest step (~14 ns a row, ~1.5 at ±∞, and a branch mispredicted where finite and infinite
    # arguments alternate): `a`'s arguments are all finite, and only a `between` gives `b` a finite one. A
    # `between`'s `b` argument sgn·z_hi is |z_hi|.
    # A strike ≤ 0 was clamped to 0: z = +∞ and the tail is the limit (model_math.md §1.1: always exceeded).
    if mode == "average":
        # A tie at the cap counts for nothing: its argument becomes +∞ (erfc = 0) before erfc, not after.
        b_tail = pl.when(_BT & ~pl.col("_z_hi").is_nan()).then(pl.col("_z_hi").abs()).otherwise(math.inf).erfc()
    else:
        b_tail = fill_nan(pl.when(_BT).then(pl.col("_z_hi").abs()).otherwise(math.inf).erfc(), tie_b)
    stages.append((fill_nan((sgn * z_lo).erfc(), tie_a).alias("_a"), b_tail.alias("_b")))
    a, b = pl.col("_a"), pl.col("_b")
    # P = ½·sgn·(b − a) for a `between` and ½·a for the other types (b = 0): ½·|b − a| in both, since the
    # difference of a range's tails has the sign of sgn (a rounding below 0 comes out as its magnitude, ~10⁻¹⁷,
    # where a clamp gave 0). The ½ of Φ = ½·erfc is applied once, to the difference (exact: a power of 2).
    smooth = 0.5 * (b - a).abs()
    floor, cap = pl.col("floor_strike"), pl.col("cap_strike")
    # Boolean algebra, not a when-chain: bitmap operations instead of a select per branch.
    bounds_ok = (
        (greater & is_finite(floor))
        | (less & is_finite(cap))
        | (_BT & is_finite(floor) & is_finite(cap) & (cap > floor))
    )
    # Polars orders NaN above every number (`NaN > 0` is true): `< ∞` and `is_finite` reject NaN.
    if mode == "average":
        inputs_ok = (sigma >= 0) & (sigma < math.inf) & ~in_window_without_prints
    else:  # the original's None: σ ≤ 0 when T > 0, any bound the type uses ≤ 0 (seed_system.md §3.3)
        positive_bounds = pl.when(greater).then(floor > 0).when(less).then(cap > 0).otherwise(floor > 0)
        inputs_ok = ((t <= 0) | ((sigma > 0) & (sigma < math.inf))) & positive_bounds
    valid = (
        bounds_ok
        & inputs_ok
        & (x > 0)
        & (x < math.inf)
        & (pl.col("model_spot_usd") > 0)
        & (pl.col("model_spot_usd") < math.inf)
        & (v < math.inf)
    )
    if mode == "point":
        # In average mode a NaN or infinite horizon has no prints count, so its variance is null already.
        valid = valid & is_finite(t)
    stages.append((pl.when(valid).then(smooth).alias("p_model_raw"),))
    clipped = pl.col("p_model_raw")
    if mode == "point":
        # With T > 0 the original clamps both CDFs of a range before the difference (≤ 2ε from clip(raw)).
        eps_a, eps_b = (0.5 * a).clip(prob_clip, 1.0 - prob_clip), (0.5 * b).clip(prob_clip, 1.0 - prob_clip)
        clipped = pl.when(_BT & (t > 0)).then(sgn * (eps_b - eps_a)).otherwise(clipped)
        clipped = pl.when(valid).then(clipped)
    # p is never NaN here, so a chained select equals `clip` (whose scalar loop costs ~1.5× the two compares).
    high = 1.0 - prob_clip
    p_model = pl.when(clipped < prob_clip).then(prob_clip).when(clipped > high).then(high).otherwise(clipped)
    stages.append((p_model.alias("p_model"),))
    return tuple(stages)

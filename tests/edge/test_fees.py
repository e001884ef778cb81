"""Kalshi fees: the model_math.md §3.1 table exactly, and exact agreement with rational arithmetic everywhere."""

from __future__ import annotations

import math
from fractions import Fraction

import polars as pl
import pytest

from kbtc.edge.fees import round_whole, with_fees


def fees(prices: list[float], contracts: list[float], fee_type: str = "quadratic", multiplier: float = 1.0,
         **kwargs: object) -> list[int | None]:
    frame = pl.DataFrame({"p": prices, "contracts": contracts}, schema={"p": pl.Float64, "contracts": pl.Float64})
    frame = frame.with_columns(pl.lit(fee_type).alias("fee_type"), pl.lit(multiplier).alias("fee_multiplier"))
    return with_fees(frame.lazy(), {"f": "p"}, units=True, **kwargs).collect()["f"].to_list()  # type: ignore[arg-type]


# price (¢) → taker C=1, C=10, C=100, maker C=1, maker C=100 (cents, order total) — model_math.md §3.1.
TABLE = {
    5: (1, 4, 34, 1, 9),
    10: (1, 7, 63, 1, 16),
    25: (2, 14, 132, 1, 33),
    40: (2, 17, 168, 1, 42),
    50: (2, 18, 175, 1, 44),
}


@pytest.mark.parametrize("price", [5, 10, 25, 40, 50, 60, 75, 90, 95])
def test_fee_table_exactly(price: int) -> None:
    t1, t10, t100, m1, m100 = TABLE[min(price, 100 - price)]
    p = float(price)
    assert fees([p, p, p], [1, 10, 100], "quadratic_with_maker_fees") == [t1, t10, t100]
    assert fees([p, p], [1, 100], "quadratic_with_maker_fees", role="maker") == [m1, m100]
    assert fees([p], [100], "quadratic", role="maker") == [0]  # quadratic: takers only


def exact_cents(price_cents: Fraction, contracts: Fraction, coefficient: Fraction, unit: Fraction) -> int:
    raw = coefficient * contracts * (price_cents / 100) * (1 - price_cents / 100)
    return math.ceil(raw / unit)


def test_matches_rational_arithmetic_for_every_cent_price_and_size_up_to_200() -> None:
    prices = [float(p) for p in range(1, 100) for _ in range(1, 201)]
    sizes = [float(c) for _ in range(1, 100) for c in range(1, 201)]
    got = fees(prices, sizes)
    want = [exact_cents(Fraction(int(p)), Fraction(int(c)), Fraction(7, 100), Fraction(1, 100))
            for p, c in zip(prices, sizes, strict=True)]
    assert got == want
    # The naive float ceiling is wrong somewhere in this grid (the reason for integers): e.g. 4 × 50 ¢ = 7 ¢.
    assert fees([50.0], [4.0]) == [7] and math.ceil(0.07 * 4 * 0.5 * 0.5 * 100) == 8


@pytest.mark.parametrize(
    ("price", "contracts", "fee_type", "multiplier", "role", "rounding"),
    [
        (95.3, 7.25, "quadratic", 1.0, "taker", "cent"),  # sub-cent price, fractional size
        (0.5, 1.0, "quadratic", 1.0, "taker", "ten_thousandth"),
        (55.5, 1.0, "quadratic", 1.0, "taker", "ten_thousandth"),
        (37.0, 100_000.0, "quadratic", 1.0, "taker", "cent"),  # large orders: exact in 64 bits
        (37.0, 19_999.99, "quadratic_with_combo_maker_fees", 2.5, "maker", "ten_thousandth"),
        (12.34, 33.0, "quadratic", 0.5, "taker", "cent"),
        (62.0, 3.0, "quadratic_with_combo_maker_fees", 1.0, "maker", "cent"),
    ],
)
def test_exact_for_sub_cent_prices_fractions_multipliers_and_large_sizes(
    price: float, contracts: float, fee_type: str, multiplier: float, role: str, rounding: str
) -> None:
    share = {"taker": Fraction(1), "maker": Fraction(1, 2) if "combo" in fee_type else Fraction(1, 4)}[role]
    unit = Fraction(1, 100) if rounding == "cent" else Fraction(1, 10_000)
    want = exact_cents(
        Fraction(round(price * 100), 100), Fraction(round(contracts * 100), 100),
        Fraction(7, 100) * share * Fraction(round(multiplier * 10_000), 10_000), unit,
    )
    got = fees([price], [contracts], fee_type, multiplier, role=role, rounding=rounding)
    assert got == [want]


def test_flat_fee_boundaries_and_invalid_inputs() -> None:
    assert fees([50.0, 3.0], [10.0, 10.0], "flat", flat_fee_per_contract_dollars=0.01) == [10, 10]
    assert fees([50.0], [10.0], "flat", 0.5, flat_fee_per_contract_dollars=0.015) == [8]  # 7.5 ¢ → 8
    assert fees([0.0, 100.0], [5.0, 5.0]) == [0, 0]  # P(1 − P) = 0 at the boundaries
    assert fees([-1.0, 101.0, 50.0, 50.0], [1.0, 1.0, 0.0, -2.0]) == [None, None, None, None]
    assert fees([50.0], [1.0], "per_contract_mystery") == [None]
    assert fees([50.0], [10_000_000.0]) == [None]  # beyond the exact 64-bit range: no number rather than a wrong one
    nan, inf = math.nan, math.inf
    assert fees([50.0, 50.0, 50.0, nan, inf, -0.0], [nan, inf, -inf, 1.0, 1.0, 1.0]) == [None] * 5 + [0]
    for multiplier in (nan, inf, -0.5):
        assert fees([50.0], [1.0], "quadratic", multiplier) == [None]
        assert fees([50.0], [1.0], "flat", multiplier) == [None]
    assert fees([50.0], [1.0], "quadratic", 0.0) == [0] and fees([50.0], [1.0], "quadratic_with_maker_fees",
                                                               role="maker") == [1]


def test_fee_dollars_units() -> None:
    frame = pl.DataFrame({"p": [50.0], "contracts": [1.0], "fee_type": ["quadratic"], "fee_multiplier": [1.0]}).lazy()
    cent = with_fees(frame, {"f": "p"}).collect()["f"].item()
    fine = with_fees(frame, {"f": "p"}, rounding="ten_thousandth").collect()["f"].item()
    assert cent == 0.02 and fine == 0.0175


def test_round_whole_is_round_half_to_even_where_the_guards_let_values_through() -> None:
    ties = [k / 2 for k in range(-4_001, 4_002)]  # every half between −2000.5 and 2000.5
    wide = [v * s for v in (0.49999999999999994, 1e5, 123_456.5, 2.0**51 - 1.5, 1e9 + 0.25) for s in (1, -1)]
    values = pl.Series("v", [*ties, *wide, -0.0, math.nan, math.inf, -math.inf], dtype=pl.Float64)
    rounded = pl.select(round_whole(pl.lit(values))).to_series()
    expected = values.round(0)
    assert rounded.is_nan().to_list() == expected.is_nan().to_list()
    assert rounded.fill_nan(0.0).to_list() == expected.fill_nan(0.0).to_list()

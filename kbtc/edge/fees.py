"""Kalshi trading fees, exact in integers, as Polars expressions (reference/model_math.md §3.1, kalshi_api.md §7).

General form per order of `C` contracts at price `P` dollars with the series/event `fee_multiplier` `M`:
taker `⌈0.07·M·C·P(1−P)⌉`, maker `⌈r·0.07·M·C·P(1−P)⌉` with the maker share `r` of the fee type:

| fee_type                          | taker | maker |
|-----------------------------------|-------|-------|
| `quadratic`                       | 0.07  | 0     |
| `quadratic_with_maker_fees`       | 0.07  | 0.0175 (r = ¼) |
| `quadratic_with_combo_maker_fees` | 0.07  | 0.035 (r = ½)  |
| `flat`                            | `M × flat rate` per contract, both roles (unpublished table) |

Rounding: up to the cent per order (the conservative standard, `fee_rounding="cent"`), or up to $0.0001
(`"ten_thousandth"`, the trade fee before Kalshi's balance rounding; docs getting_started/fee_rounding).

Exactness: the price is an integer `p` of $0.0001 (cents × 100, the venue's resolution), the size an integer
`c` of 0.01 contract, the multiplier an integer `μ` of 1/10 000. Then the taker fee in cents is
`⌈7·μ·c·p·(10 000 − p) / 10¹⁴⌉` — integer arithmetic, never `math.ceil` on a float product (which is wrong in
81 of 19 800 cases with C ≤ 200). The product is split so it cannot overflow Int64 below 10⁶ contracts.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from kbtc.edge.params import FeeRounding

FeeRole = Literal["taker", "maker"]
FEE_TYPES = ("quadratic", "quadratic_with_maker_fees", "quadratic_with_combo_maker_fees", "flat")
# Denominator divisor k of the quadratic coefficient 7/(100·k) per role; 0 = no fee for that role.
_MAKER_DIVISOR = {"quadratic_with_maker_fees": 4, "quadratic_with_combo_maker_fees": 2}
_SPLIT = 10_000  # contracts are split as c = hi·_SPLIT + lo to keep every product inside Int64


def price_units(price_cents: pl.Expr) -> pl.Expr:
    """Price as an integer of $0.0001 (0…10 000); null outside [0, 100] ¢."""
    units = (price_cents * 100.0).round(0).cast(pl.Int64)
    return pl.when((price_cents >= 0) & (price_cents <= 100)).then(units)


def _ceil_div_product(a: pl.Expr, c: pl.Expr, den: int) -> pl.Expr:
    """⌈a·c/den⌉ for non-negative Int64 `a`, `c`, exact, with `den` a multiple of `_SPLIT`."""
    den_hi = den // _SPLIT
    hi = c // _SPLIT
    lo = c % _SPLIT
    ahi = a * hi
    q1 = ahi // den_hi
    rest = (ahi % den_hi) * _SPLIT + a * lo
    return q1 + (rest + (den - 1)) // den


def fee_units(
    price_cents: pl.Expr,
    contracts: pl.Expr,
    fee_type: pl.Expr,
    fee_multiplier: pl.Expr,
    *,
    role: FeeRole = "taker",
    rounding: FeeRounding = "cent",
    flat_fee_per_contract_dollars: float = 0.01,
) -> pl.Expr:
    """Fee of one order as an integer: cents (`rounding="cent"`) or $0.0001 units (`"ten_thousandth"`).

    Null for a price outside [0, 100] ¢, contracts ≤ 0, a negative multiplier or an unknown fee type.
    A price of exactly 0 or 100 ¢ costs nothing (P(1−P) = 0).
    """
    p = price_units(price_cents)
    c = (contracts * 100.0).round(0).cast(pl.Int64)
    mu = (fee_multiplier * 10_000.0).round(0).cast(pl.Int64)
    # quadratic: fee$ = 7·μ·c·q / (k·10¹⁶) with q = p(10⁴ − p); in cents ÷10¹⁴, in $0.0001 ÷10¹².
    base = 10**14 if rounding == "cent" else 10**12
    a = 7 * mu * p * (10_000 - p)
    quadratic_taker = _ceil_div_product(a, c, base)
    maker_terms = {name: _ceil_div_product(a, c, base * k) for name, k in _MAKER_DIVISOR.items()}
    # flat: fee$ = μ·c·r / 10¹⁰ with r the per-contract rate in $0.0001; in cents ÷10⁸, in $0.0001 ÷10⁶.
    rate = round(flat_fee_per_contract_dollars * 10_000)
    flat = _ceil_div_product(mu * rate, c, 10**8 if rounding == "cent" else 10**6)
    fee: pl.Expr
    if role == "taker":
        fee = pl.when(fee_type.is_in(("quadratic", *_MAKER_DIVISOR))).then(quadratic_taker)
    else:
        fee = (
            pl.when(fee_type == "quadratic")
            .then(pl.lit(0, pl.Int64))
            .when(fee_type == "quadratic_with_maker_fees")
            .then(maker_terms["quadratic_with_maker_fees"])
            .when(fee_type == "quadratic_with_combo_maker_fees")
            .then(maker_terms["quadratic_with_combo_maker_fees"])
        )
    fee = pl.when(fee_type == "flat").then(flat).otherwise(fee)
    valid = p.is_not_null() & (c > 0) & (mu >= 0)
    return pl.when(valid).then(fee)


def fee_dollars(
    price_cents: pl.Expr,
    contracts: pl.Expr,
    fee_type: pl.Expr,
    fee_multiplier: pl.Expr,
    *,
    role: FeeRole = "taker",
    rounding: FeeRounding = "cent",
    flat_fee_per_contract_dollars: float = 0.01,
) -> pl.Expr:
    """Fee of one order of `contracts` in dollars (see `fee_units`)."""
    units = fee_units(
        price_cents,
        contracts,
        fee_type,
        fee_multiplier,
        role=role,
        rounding=rounding,
        flat_fee_per_contract_dollars=flat_fee_per_contract_dollars,
    )
    return units.cast(pl.Float64) / (100.0 if rounding == "cent" else 10_000.0)

"""Kalshi trading fees, exact in integers, vectorised in Polars (reference/model_math.md §3.1, kalshi_api.md §7).

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
81 of 19 800 cases with C ≤ 200). The two factors `7·p·(10 000 − p)` (≤ 1.75·10⁸) and `μ·c` (< 1.03·10¹¹ under
the guard) are exact in Float64 and multiplied in UInt64, exact up to ~10⁵ contracts per order (null beyond:
never a wrong number).
"""

from __future__ import annotations

import functools
from typing import Literal

import polars as pl

from kbtc.edge.params import FeeRounding
from kbtc.edge.stages import Stages, apply_stages

FeeRole = Literal["taker", "maker"]
QUADRATIC_TYPES = ("quadratic", "quadratic_with_maker_fees", "quadratic_with_combo_maker_fees")
# a·c ≤ 7·μ·max p(10⁴ − p)·c = 7·2.5·10⁷·μ·c must stay below 2⁶⁴ − 1 ≈ 1.845e19 (with margin for the guard).
_MAX_MU_C = 1.8e19 / (7 * 25_000_000)


def _quadratic_factor(price_cents: pl.Expr) -> pl.Expr:
    """`7·p·(10 000 − p)` as a UInt64, `p` the price in $0.0001 (0…10 000); null outside [0, 100] ¢ (NaN fails
    `≤ 10 000`: Polars orders NaN above every number). Computed in floats, exact: every product is below 2⁵³."""
    units = round_whole(price_cents * 100.0)
    return _to_uint64(pl.when((units >= 0) & (units <= 10_000)).then(7.0 * units * (10_000.0 - units)))


# 1.5·2⁵²: x + M lies in [2⁵², 2⁵³) for |x| < 2⁵¹, where the float spacing is 1, so the addition itself rounds x
# to an integer — to even on a tie, as IEEE 754 rounds — and subtracting M again is exact.
_ROUNDING_MAGIC = 6_755_399_441_055_744.0


def round_whole(value: pl.Expr) -> pl.Expr:
    """`value.round(0)` (half to even) for |value| < 2⁵¹ — every value a guard here lets through — as two
    vectorised additions (Polars' `round` calls a function per value; ~30 instructions a row for the four here).
    NaN and ±∞ stay; larger magnitudes come out as another number just as large, which the guards reject."""
    return (value + _ROUNDING_MAGIC) - _ROUNDING_MAGIC


def _to_uint64(whole: pl.Expr) -> pl.Expr:
    """Whole non-negative floats below 2⁶³ as UInt64: a wrapping cast to Int64 reinterpreted, ~a third of a
    checked cast's cost (and of a cast to UInt64, which x86 has no single instruction for). Other values wrap:
    callers guard them."""
    return whole.cast(pl.Int64, wrap_numerical=True).reinterpret(signed=False)


def _ceil_div(a: pl.Expr, c: pl.Expr, den: int) -> pl.Expr:
    """⌈a·c/den⌉ for non-negative UInt64 `a`, `c` whose product fits in 64 bits (the caller guards that)."""
    return (a * c + (den - 1)) // den


def with_fees(
    frame: pl.LazyFrame,
    prices: dict[str, str],
    *,
    contracts: str = "contracts",
    fee_type: str = "fee_type",
    fee_multiplier: str = "fee_multiplier",
    role: FeeRole = "taker",
    rounding: FeeRounding = "cent",
    flat_fee_per_contract_dollars: float = 0.01,
    units: bool = False,
) -> pl.LazyFrame:
    """Add one fee column per `{output: price column}`: the fee of one order of `contracts` at that price.

    Dollars (or, with `units=True`, the integer in cents / $0.0001 per `rounding`). Null for a price outside
    [0, 100] ¢, contracts ≤ 0, a negative multiplier or an unknown fee type; 0 at a price of exactly 0 or 100 ¢.
    Intermediate integers are materialised once and shared by every price (this is a hot path).
    """
    stages, temporaries = fee_stages(
        tuple(prices.items()),
        contracts=contracts,
        fee_type=fee_type,
        fee_multiplier=fee_multiplier,
        role=role,
        rounding=rounding,
        flat_fee_per_contract_dollars=flat_fee_per_contract_dollars,
        units=units,
    )
    return apply_stages(frame, stages).drop(*temporaries)


@functools.lru_cache(maxsize=64)
def fee_stages(
    prices: tuple[tuple[str, str], ...],
    *,
    contracts: str,
    fee_type: str,
    fee_multiplier: str,
    role: FeeRole,
    rounding: FeeRounding,
    flat_fee_per_contract_dollars: float,
    units: bool,
) -> tuple[Stages, tuple[str, ...]]:
    """The expressions of `with_fees` stage by stage, and the temporary columns to drop; built once per setting."""
    kind = pl.col(fee_type)
    stages: list[tuple[pl.Expr, ...]] = []
    # The rounded size and multiplier are materialised: Polars' common-subexpression elimination does not reach
    # inside the expressions below, which would round each twice.
    stages.append(
        (
            round_whole(pl.col(contracts) * 100.0).alias("_fee_c"),
            round_whole(pl.col(fee_multiplier) * 10_000.0).alias("_fee_mu"),
        )
    )
    c, mu = pl.col("_fee_c"), pl.col("_fee_mu")
    # μ·c is exact in floats below the guard (< 2⁵³), so it is cast once instead of each factor.
    stages.append(((c * mu).alias("_fee_mu_c_f"),))
    mu_c = pl.col("_fee_mu_c_f")
    # One guard for every price, in floats: the product is exact in UInt64 (beyond: null, never a wrong number).
    # NaN fails it too: Polars orders NaN above every number, so `NaN·μ < max` is false.
    # A null size or multiplier is not refused here: its fee is null through `μ·c` (a maker's zero fee excepted).
    ok = ((c > 0) & (mu >= 0) & (mu_c < _MAX_MU_C)).fill_null(True)
    stages.append(
        (
            # A wrapping cast: every guarded value is an exact integer in range; an unguarded row has no fee mode,
            # so its wrapped value is never read.
            _to_uint64(mu_c).alias("_fee_mu_c"),
            # The fee mode as two masks (bitmaps, no select): neither for no valid fee (unknown type, size ≤ 0,
            # negative multiplier, overflow). Equalities, not `is_in`: three broadcast comparisons cost about half
            # of one hash-set probe per row.
            (ok & pl.any_horizontal(kind == name for name in QUADRATIC_TYPES)).alias("_fee_quadratic"),
            (ok & (kind == "flat")).alias("_fee_flat"),
            # Maker share divisor k; 0 = this role pays nothing (a taker always pays: no column).
            *(
                ()
                if role == "taker"
                else (
                    pl.when(kind == "quadratic_with_maker_fees")
                    .then(4)
                    .when(kind == "quadratic_with_combo_maker_fees")
                    .then(2)
                    .otherwise(0)
                    .alias("_fee_k"),
                )
            ),
        )
    )
    mu_cu = pl.col("_fee_mu_c")
    base = 10**14 if rounding == "cent" else 10**12
    scale = 100.0 if rounding == "cent" else 10_000.0
    rate = round(flat_fee_per_contract_dollars * 10_000)
    # flat: fee$ = μ·c·r / 10¹⁰ with r the per-contract rate in $0.0001; in cents ÷10⁸, in $0.0001 ÷10⁶.
    flat = _ceil_div(mu_cu, pl.lit(rate, pl.UInt64), 10**8 if rounding == "cent" else 10**6)
    temps = [f"_fee_q_{out}" for out, _ in prices]
    stages.append(
        (
            flat.alias("_fee_flat_units"),
            *(_quadratic_factor(pl.col(col)).alias(tmp) for tmp, (_, col) in zip(temps, prices, strict=True)),
        )
    )
    outputs = []
    for (out, _), tmp in zip(prices, temps, strict=True):
        # quadratic: fee$ = 7·μ·c·q / (k·10¹⁶) with q = p(10⁴ − p); in cents ÷10¹⁴, in $0.0001 ÷10¹².
        a = pl.col(tmp)
        if role == "taker":
            quadratic = _ceil_div(a, mu_cu, base)
        else:
            k = pl.col("_fee_k")
            quadratic = (
                pl.when(k == 0)
                .then(0)
                .when(k == 2)
                .then(_ceil_div(a, mu_cu, 2 * base))
                .otherwise(_ceil_div(a, mu_cu, 4 * base))
            )
        # A null price propagates through `quadratic`; the flat fee does not read the price, so check it.
        fee = (
            pl.when(pl.col("_fee_quadratic"))
            .then(quadratic)
            .when(pl.col("_fee_flat") & a.is_not_null())
            .then(pl.col("_fee_flat_units"))
            # A fee is far below 2⁶³: as Int64 (reinterpreted) it converts to a float in one instruction.
            .reinterpret(signed=True)
        )
        outputs.append(fee.alias(out) if units else (fee.cast(pl.Float64) / scale).alias(out))
    stages.append(tuple(outputs))
    drop = (
        *("_fee_c", "_fee_mu", "_fee_mu_c_f", "_fee_mu_c", "_fee_quadratic", "_fee_flat", "_fee_flat_units"),
        *(() if role == "taker" else ("_fee_k",)),
    )
    return tuple(stages), (*drop, *temps)

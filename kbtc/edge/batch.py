"""The engine's public batch API: price arbitrary rows (what-if scenarios, research) without a database.

Each row is (spot, sigma, strike_type, floor_strike, cap_strike, seconds_to_close, yes_bid, yes_ask) with
prices in cents, plus optional `contracts`, `no_ask`, `fee_type`, `fee_multiplier`, `basis_usd`,
`basis_std_usd` and `fixed_avg_usd` — the mean of the settlement prints already fixed when the row is inside
the averaging window (default: the spot, i.e. no information beyond it). The result adds `p_model_raw`,
`p_model`, fees, EVs, break-evens, Kelly fractions and a `skip_reason`, with the same math as the live engine.
"""

from __future__ import annotations

import polars as pl

from kbtc.edge.ev import no_ask_cents
from kbtc.edge.params import EdgeParams
from kbtc.edge.pricing import PRICING_OUTPUTS, price
from kbtc.edge.probability import future_prints
from kbtc.edge.quality import crossed
from kbtc.edge.selection import bounds_ok, unsupported_strike_type

REQUIRED = ("spot", "sigma", "strike_type", "floor_strike", "cap_strike", "seconds_to_close", "yes_bid", "yes_ask")
_OPTIONAL: dict[str, pl.DataType | type[pl.DataType]] = {
    "contracts": pl.Float64,
    "no_ask": pl.Float64,
    "fee_type": pl.String,
    "fee_multiplier": pl.Float64,
    "basis_usd": pl.Float64,
    "basis_std_usd": pl.Float64,
    "fixed_avg_usd": pl.Float64,
}
_TYPES: dict[str, pl.DataType | type[pl.DataType]] = {
    **{name: pl.Float64 for name in REQUIRED},
    "strike_type": pl.String,
    **_OPTIONAL,
}


class BatchInputError(ValueError):
    """The rows lack a required column."""


def price_rows(rows: pl.DataFrame, params: EdgeParams | None = None) -> pl.DataFrame:
    """Price every row; return the input columns followed by the pricing outputs and `skip_reason`."""
    params = params or EdgeParams()
    missing = [name for name in REQUIRED if name not in rows.columns]
    if missing:
        raise BatchInputError(f"input lacks required column(s): {', '.join(missing)}")
    typed = rows.with_columns(
        (pl.col(name) if name in rows.columns else pl.lit(None)).cast(dtype, strict=False).alias(name)
        for name, dtype in _TYPES.items()
    )
    n = params.window_prints
    fixed_prints = n - future_prints(pl.col("seconds_to_close"), n, params.print_interval_s)
    basis = pl.col("basis_usd").fill_null(0.0)
    yes_bid, yes_ask = pl.col("yes_bid"), pl.col("yes_ask")
    no_ask = no_ask_cents(pl.col("no_ask"), yes_bid)
    tradable_yes = ((yes_ask >= params.min_ask_cents) & (yes_ask <= params.max_ask_cents)).fill_null(False)
    tradable_no = ((no_ask >= params.min_ask_cents) & (no_ask <= params.max_ask_cents)).fill_null(False)
    staged = typed.lazy().with_columns(
        (pl.col("spot") + basis).alias("model_spot_usd"),
        pl.col("sigma").alias("sigma_annual"),
        pl.col("seconds_to_close").alias("horizon_s"),
        (fixed_prints * (pl.coalesce(pl.col("fixed_avg_usd"), pl.col("spot")) + basis)).alias("fixed_sum_usd"),
        pl.when(tradable_yes).then(yes_ask).alias("yes_ask_used_cents"),
        pl.when(tradable_no).then(no_ask).alias("no_ask_used_cents"),
        pl.col("contracts").fill_null(float(params.contracts)),
        pl.col("fee_type").fill_null(params.default_fee_type),
        pl.col("fee_multiplier").fill_null(params.default_fee_multiplier),
        pl.when(~tradable_yes).then(pl.lit("missing_yes_ask")).alias("yes_side_reason"),
        pl.when(~tradable_no).then(pl.lit("missing_no_ask")).alias("no_side_reason"),
    )
    priced = price(staged, params)
    reason = (
        pl.when(~(pl.col("spot").is_finite() & (pl.col("spot") > 0)).fill_null(False))
        .then(pl.lit("spot_missing"))
        .when(unsupported_strike_type())
        .then(pl.lit("unsupported_strike_type"))
        .when(~bounds_ok())
        .then(pl.lit("missing_bounds"))
        .when(~(pl.col("sigma").is_finite() & (pl.col("sigma") >= 0)).fill_null(False))
        .then(pl.lit("sigma_not_ready"))
        .when(crossed(yes_bid, yes_ask, pl.lit(None, pl.Float64), pl.col("no_ask")))
        .then(pl.lit("crossed_market"))
        .when(~tradable_yes & ~tradable_no)
        .then(pl.lit("missing_both_sides"))
        .when(pl.col("p_model_raw").is_null() | pl.col("ev_yes_dollars").is_null() & pl.col("ev_no_dollars").is_null())
        .then(pl.lit("invalid_edge"))
    )
    outputs = [c for c in PRICING_OUTPUTS if c != "prints_left"]
    return (
        priced.with_columns(reason.alias("skip_reason"))
        .select(*typed.columns, "model_spot_usd", *outputs, "yes_side_reason", "no_side_reason", "skip_reason")
        .collect()
    )

"""Probability → fees → EV → Kelly in one vectorised pass: the numeric core shared by the engine and `kbtc price`.

Input columns: those of `probability.PROBABILITY_INPUTS`, plus `yes_ask_used_cents` / `no_ask_used_cents` (the
tradable asks, null when a side is not tradable), `contracts`, `fee_type`, `fee_multiplier`.
"""

from __future__ import annotations

import polars as pl

from kbtc.edge.ev import breakeven_probability, kelly_fraction
from kbtc.edge.fees import with_fees
from kbtc.edge.params import EdgeParams
from kbtc.edge.probability import with_probability

PRICING_OUTPUTS = (
    "prints_left",
    "model_var",
    "p_model_raw",
    "p_model",
    "fee_yes_dollars",
    "fee_no_dollars",
    "ev_yes_dollars",
    "ev_no_dollars",
    "ev_yes_per_contract",
    "ev_no_per_contract",
    "breakeven_yes",
    "breakeven_no",
    "kelly_yes",
    "kelly_no",
)


def price(frame: pl.LazyFrame, params: EdgeParams) -> pl.LazyFrame:
    """Add the columns of `PRICING_OUTPUTS` to `frame` (see the module docstring for the inputs)."""
    priced = with_probability(
        frame,
        mode=params.settlement,
        window_prints=params.window_prints,
        print_interval_s=params.print_interval_s,
        prob_clip=params.prob_clip,
    )
    contracts = pl.col("contracts")
    q_yes = pl.col("p_model")
    q_no = 1.0 - pl.col("p_model")
    priced = with_fees(
        priced,
        {"fee_yes_dollars": "yes_ask_used_cents", "fee_no_dollars": "no_ask_used_cents"},
        role="taker",
        rounding=params.fee_rounding,
        flat_fee_per_contract_dollars=params.flat_fee_per_contract_dollars,
    )
    # Per side: all-in cost c = ask + fee/C (the break-even probability), EV = C·(q − c), Kelly from (q, c).
    priced = priced.with_columns(
        breakeven_probability(pl.col("yes_ask_used_cents"), pl.col("fee_yes_dollars"), contracts).alias(
            "breakeven_yes"
        ),
        breakeven_probability(pl.col("no_ask_used_cents"), pl.col("fee_no_dollars"), contracts).alias(
            "breakeven_no"
        ),
    ).with_columns(
        (q_yes - pl.col("breakeven_yes")).alias("ev_yes_per_contract"),
        (q_no - pl.col("breakeven_no")).alias("ev_no_per_contract"),
        kelly_fraction(q_yes, pl.col("breakeven_yes"), params.kelly_multiplier).alias("kelly_yes"),
        kelly_fraction(q_no, pl.col("breakeven_no"), params.kelly_multiplier).alias("kelly_no"),
    )
    return priced.with_columns(
        (pl.col("ev_yes_per_contract") * contracts).alias("ev_yes_dollars"),
        (pl.col("ev_no_per_contract") * contracts).alias("ev_no_dollars"),
    )

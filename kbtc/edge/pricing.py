"""Probability → fees → EV → Kelly in one vectorised pass: the numeric core shared by the engine and `kbtc price`.

Input columns: those of `probability.PROBABILITY_INPUTS`, plus `yes_ask_used_cents` / `no_ask_used_cents` (the
tradable asks, null when a side is not tradable), `contracts`, `fee_type`, `fee_multiplier`.
"""

from __future__ import annotations

import functools

import polars as pl

from kbtc.edge.ev import breakeven_probability, kelly_fraction
from kbtc.edge.fees import fee_stages
from kbtc.edge.params import EdgeParams
from kbtc.edge.probability import PROBABILITY_TEMPORARIES, probability_stages
from kbtc.edge.stages import Stages, apply_stages

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
    # Each step's temporaries are dropped before the next: carried on, they would cost a streaming query's
    # every batch.
    for stages, temporaries in pricing_steps(params):
        frame = apply_stages(frame, stages).drop(*temporaries, strict=False)
    return frame


@functools.lru_cache(maxsize=64)
def pricing_steps(params: EdgeParams) -> tuple[tuple[Stages, tuple[str, ...]], ...]:
    """The expressions of `price` step by step (probability, fees, value), each with the temporary columns to
    drop after it; built once per setting."""
    probability = probability_stages(params.settlement, params.window_prints, params.print_interval_s, params.prob_clip)
    fees, fee_temporaries = fee_stages(
        (("fee_yes_dollars", "yes_ask_used_cents"), ("fee_no_dollars", "no_ask_used_cents")),
        contracts="contracts",
        fee_type="fee_type",
        fee_multiplier="fee_multiplier",
        role="taker",
        rounding=params.fee_rounding,
        flat_fee_per_contract_dollars=params.flat_fee_per_contract_dollars,
        units=False,
    )
    contracts = pl.col("contracts")
    q_yes = pl.col("p_model")
    q_no = 1.0 - pl.col("p_model")
    # Per side: all-in cost c = ask + fee/C (the break-even probability), EV = C·(q − c), Kelly from (q, c).
    value = (
        (
            breakeven_probability(pl.col("yes_ask_used_cents"), pl.col("fee_yes_dollars"), contracts).alias(
                "breakeven_yes"
            ),
            breakeven_probability(pl.col("no_ask_used_cents"), pl.col("fee_no_dollars"), contracts).alias(
                "breakeven_no"
            ),
        ),
        (
            (q_yes - pl.col("breakeven_yes")).alias("ev_yes_per_contract"),
            (q_no - pl.col("breakeven_no")).alias("ev_no_per_contract"),
        ),
        (
            # From the materialised edges: Polars' common-subexpression elimination does not reach inside
            # `kelly_fraction`, which would subtract each twice more.
            kelly_fraction(
                q_yes, pl.col("breakeven_yes"), params.kelly_multiplier, edge=pl.col("ev_yes_per_contract")
            ).alias("kelly_yes"),
            kelly_fraction(
                q_no, pl.col("breakeven_no"), params.kelly_multiplier, edge=pl.col("ev_no_per_contract")
            ).alias("kelly_no"),
            (pl.col("ev_yes_per_contract") * contracts).alias("ev_yes_dollars"),
            (pl.col("ev_no_per_contract") * contracts).alias("ev_no_dollars"),
        ),
    )
    return (probability, PROBABILITY_TEMPORARIES), (fees, fee_temporaries), (value, ())

"""Closing shadow positions at settlement: outcome, realised PnL per position and per contract, fees included.

A position holds `contracts` of one side bought at `entry_price_cents` for an order-total taker fee of
`entry_fee_dollars`; it is held to settlement (the ledger models no exits, `reference/seed_system.md` §4.2).
At settlement a contract pays $1 if its side won (model_math.md §3.2; settlement itself has no fee):

    pnl_dollars = contracts · (win − entry_price_cents/100) − entry_fee_dollars,   win = y for YES, 1 − y for NO
"""

from __future__ import annotations

import polars as pl

SETTLED_COLUMNS = [
    "market_ticker", "side", "opened_ts", "contracts", "entry_price_cents", "entry_fee_dollars",
    "status", "outcome", "settled_ts", "pnl_dollars",
]


def settle_positions(open_positions: pl.DataFrame, outcomes: pl.DataFrame) -> pl.DataFrame:
    """Settled rows for the open positions whose market has an outcome.

    `open_positions`: rows of the `positions` table; `outcomes`: market_ticker, outcome (1 YES / 0 NO, null
    while unknown), settled_ts. Returns the positions with status `settled`, outcome, settled_ts and
    pnl_dollars (whole `positions` rows); positions whose market has no outcome yet are left out (they stay open).
    """
    known = outcomes.filter(pl.col("outcome").is_not_null()).select("market_ticker", "outcome", "settled_ts")
    win = pl.when(pl.col("side") == "YES").then(pl.col("outcome")).otherwise(1 - pl.col("outcome"))
    return (
        open_positions.join(known, on="market_ticker", how="inner")
        .with_columns(
            pl.lit("settled").alias("status"),
            (pl.col("contracts") * (win - pl.col("entry_price_cents") / 100.0) - pl.col("entry_fee_dollars"))
            .alias("pnl_dollars"),
        )
        .select(SETTLED_COLUMNS)
        .sort(["market_ticker", "side", "opened_ts"])
    )


def pnl_per_contract() -> pl.Expr:
    """Realised PnL per contract of a settled position (position PnL / contracts)."""
    return pl.col("pnl_dollars") / pl.col("contracts")

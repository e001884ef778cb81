"""Open and recently settled shadow positions (`reference/seed_system.md` §4.7), marked to the latest quote.

Open positions are marked at the price they could be sold for now — the side's bid, else its mid — from
the newest quote at or before `now_ts`: `unrealised = contracts · (mark − entry)/100 − entry_fee` (the entry
fee is already paid, so it is included, unlike the original's report). Settled positions show their realised
PnL per position and per contract.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from sqlalchemy import Engine

from kbtc.db.store import latest_quotes, read_frame
from kbtc.scoring.settlement import pnl_per_contract

_POSITION_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "market_ticker": pl.String, "side": pl.String, "opened_ts": pl.Int64, "contracts": pl.Float64,
    "entry_price_cents": pl.Float64, "entry_fee_dollars": pl.Float64, "status": pl.String, "outcome": pl.Int32,
    "settled_ts": pl.Int64, "pnl_dollars": pl.Float64,
}
QUOTE_MAX_AGE_MS = 86_400_000  # a position with no quote for a day is shown unmarked
_QUOTE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "market_ticker": pl.String, "quote_ts": pl.Int64, "yes_bid_cents": pl.Float64, "yes_ask_cents": pl.Float64,
    "no_bid_cents": pl.Float64, "no_ask_cents": pl.Float64,
}


@dataclass(frozen=True, slots=True)
class PositionsReport:
    """Open positions (marked) and the most recently settled ones, with totals."""

    open_positions: pl.DataFrame
    settled_positions: pl.DataFrame
    totals: pl.DataFrame


def positions_report(engine: Engine, now_ts: int, *, limit: int = 100, settled_limit: int = 30) -> PositionsReport:
    """Open positions marked at `now_ts` (oldest first, up to `limit`) and the last `settled_limit` settled."""
    positions = read_frame(engine, "SELECT * FROM positions", schema=_POSITION_SCHEMA).cast(_POSITION_SCHEMA)  # type: ignore[arg-type]
    open_rows = positions.filter(pl.col("status") == "open").sort("opened_ts")
    tickers = open_rows["market_ticker"].unique()
    quotes = latest_quotes(engine, now_ts, max_age_ms=QUOTE_MAX_AGE_MS, market_tickers=tickers)
    quotes = quotes.select(list(_QUOTE_SCHEMA)).cast(_QUOTE_SCHEMA)  # type: ignore[arg-type]
    yes = pl.col("side") == "YES"
    bid = pl.when(yes).then(pl.col("yes_bid_cents")).otherwise(pl.col("no_bid_cents"))
    ask = pl.when(yes).then(pl.col("yes_ask_cents")).otherwise(pl.col("no_ask_cents"))
    marked = (
        open_rows.join(quotes, on="market_ticker", how="left")
        .with_columns(pl.coalesce(bid, (bid + ask) / 2).alias("mark_cents"),
                      ((now_ts - pl.col("opened_ts")) / 1000.0).alias("age_s"),
                      ((now_ts - pl.col("quote_ts")) / 1000.0).alias("quote_age_s"))
        .with_columns((pl.col("contracts") * (pl.col("mark_cents") - pl.col("entry_price_cents")) / 100.0
                       - pl.col("entry_fee_dollars")).alias("unrealised_dollars"))
        .select("market_ticker", "side", "opened_ts", "age_s", "contracts", "entry_price_cents",
                "entry_fee_dollars", "mark_cents", "quote_age_s", "unrealised_dollars")
    )
    settled = (
        positions.filter(pl.col("status") == "settled")
        .sort("settled_ts", descending=True, nulls_last=True)
        .with_columns(pnl_per_contract().alias("pnl_per_contract_dollars"))
        .select("market_ticker", "side", "opened_ts", "settled_ts", "outcome", "contracts", "entry_price_cents",
                "entry_fee_dollars", "pnl_dollars", "pnl_per_contract_dollars")
    )
    totals = pl.DataFrame({
        "open_positions": [marked.height],
        "open_contracts": [marked["contracts"].sum()],
        "marked": [marked["mark_cents"].count()],
        "unrealised_dollars": [marked["unrealised_dollars"].sum()],
        "settled_positions": [settled.height],
        "realised_dollars": [settled["pnl_dollars"].sum()],
    })
    return PositionsReport(marked.head(limit), settled if settled_limit == 0 else settled.head(settled_limit), totals)

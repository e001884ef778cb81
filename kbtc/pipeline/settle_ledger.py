"""The settlement step of the ledger: close open shadow positions whose market has a yes/no result.

Outcomes come from `markets.result` (filled by the catalog refresh and the lifecycle stream); the settlement
time is the venue's `settled_ts`, else its determination time. Only `open` positions are read and each is
updated once to `settled` with its outcome and realised PnL (fees included), so re-running changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from sqlalchemy import Engine

from kbtc.db.store import read_frame, upsert
from kbtc.scoring.metrics import outcome_from_result
from kbtc.scoring.settlement import settle_positions

_OPEN_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "market_ticker": pl.String, "side": pl.String, "opened_ts": pl.Int64, "contracts": pl.Float64,
    "entry_price_cents": pl.Float64, "entry_fee_dollars": pl.Float64, "result": pl.String, "settled_ts": pl.Int64,
}


@dataclass(frozen=True, slots=True)
class SettlementRun:
    """What one settlement run did."""

    open_before: int
    settled: int
    pnl_dollars: float


def settle_ledger(engine: Engine) -> SettlementRun:
    """Settle every open position whose market has a result; return counts and the PnL realised now."""
    rows = read_frame(
        engine,
        """
        SELECT p.market_ticker, p.side, p.opened_ts, p.contracts, p.entry_price_cents, p.entry_fee_dollars,
               mk.result AS result, COALESCE(mk.settled_ts, mk.determined_ts) AS settled_ts
        FROM positions p LEFT JOIN markets mk ON mk.market_ticker = p.market_ticker
        WHERE p.status = 'open'
        """,
        schema=_OPEN_SCHEMA,
    ).cast(_OPEN_SCHEMA)  # type: ignore[arg-type]
    outcomes = rows.select("market_ticker", outcome_from_result("result").alias("outcome"), "settled_ts").unique()
    settled = settle_positions(rows.drop("result", "settled_ts"), outcomes)
    upsert(engine, "positions", settled, on_conflict="update")
    return SettlementRun(rows.height, settled.height, float(settled["pnl_dollars"].sum()))

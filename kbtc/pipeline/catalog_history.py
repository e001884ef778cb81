"""The catalog of a recorded period as the live tick saw it at each as-of time.

The `markets` table holds each market's final state; a live tick read the row as it was then. Two columns move
with the lifecycle and are rebuilt here from the stored `market_lifecycle_events`, through the collector's own
parser (kbtc.venues.kalshi.marketdata.parse_lifecycle), each counting from its event's receive time:
- `status`: set by the latest status event (`activated`, `deactivated`, `determined`, `settled`), else `active`;
- `close_ts`: the close time as first listed, replaced by each `close_date_updated`; `settlement_ts` follows it,
  as the collector's writer sets it. Every `close_date_updated` overwrites the catalog row, so the first close
  time is the market's `created` event's when stored, else the catalog's — for a market listed before the
  recording began that is already the latest one (docs/RESEARCH.md, known differences).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import polars as pl
from sqlalchemy import Engine

from kbtc.db.store import read_frame
from kbtc.venues.kalshi.marketdata import parse_lifecycle
from kbtc.venues.kalshi.parsing import FieldError

EXPIRED_TOLERANCE_MS = 5_000  # as kbtc.pipeline.edge_inputs.load_markets
_STATUS_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "market_ticker": pl.String, "received_ts": pl.Int64, "status": pl.String,
}
_CLOSE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "market_ticker": pl.String, "received_ts": pl.Int64, "close_ts": pl.Int64,
}


@dataclass(frozen=True, slots=True)
class CatalogChanges:
    """What the lifecycle events received by the period's end changed in the catalog."""

    status_events: pl.DataFrame  # market_ticker, received_ts, status
    close_events: pl.DataFrame  # market_ticker, received_ts, close_ts: `close_date_updated`, by receive time
    created_close: pl.DataFrame  # market_ticker, close_ts: the close time of the market's first `created` event


def read_catalog_changes(engine: Engine, tickers: list[str], end_ts: int) -> CatalogChanges:
    """Read the status and close-time changes of `tickers` received by `end_ts`."""
    sql = "SELECT raw_json, received_ts FROM market_lifecycle_events WHERE received_ts <= :end ORDER BY received_ts, id"
    raw = read_frame(engine, sql, {"end": end_ts})
    wanted = set(tickers)
    status_rows, close_rows, created_rows = [], [], []
    for raw_json, received_ts in raw.iter_rows():
        try:
            record = parse_lifecycle(json.loads(raw_json), int(received_ts))
        except (FieldError, ValueError, TypeError):
            continue  # stored rows parsed once already; one that no longer parses changes nothing
        if record.market_ticker not in wanted:
            continue
        status = record.market_update.get("status")
        if status is not None:
            status_rows.append((record.market_ticker, record.received_ts, status))
        close_ts = record.market_update.get("close_ts")
        if close_ts is None:
            continue
        if record.event_type == "close_date_updated":
            close_rows.append((record.market_ticker, record.received_ts, close_ts))
        elif record.event_type == "created":
            created_rows.append((record.market_ticker, close_ts))
    close_events = pl.DataFrame(close_rows, schema=_CLOSE_SCHEMA, orient="row")
    # Two updates received in the same millisecond: the later stored one is the one the catalog kept.
    close_events = close_events.unique(["market_ticker", "received_ts"], keep="last", maintain_order=True)
    created = pl.DataFrame(created_rows, schema={"market_ticker": pl.String, "close_ts": pl.Int64}, orient="row")
    return CatalogChanges(
        status_events=pl.DataFrame(status_rows, schema=_STATUS_SCHEMA, orient="row"),
        close_events=close_events.sort("received_ts", "market_ticker"),
        created_close=created.unique("market_ticker", keep="first", maintain_order=True),
    )


def as_first_listed(markets: pl.DataFrame, changes: CatalogChanges, start_ts: int) -> pl.DataFrame:
    """Set each market's close time (and `settlement_ts`) as first listed; drop those closed before `start_ts`.

    `markets` may hold markets whose catalog close is before the period but that had a close-time event: one
    closed retroactively was open, under its earlier close time, until the update was received.
    """
    created = changes.created_close.rename({"close_ts": "created_close_ts"})
    first = (
        markets.join(created, on="market_ticker", how="left")
        .with_columns(
            pl.when(pl.col("created_close_ts").is_not_null()).then(pl.col("created_close_ts"))
            .otherwise(pl.col("settlement_ts")).alias("settlement_ts"),
            pl.coalesce(pl.col("created_close_ts"), pl.col("close_ts")).alias("close_ts"),
        )
        .drop("created_close_ts")
    )
    latest = changes.close_events.group_by("market_ticker").agg(pl.col("close_ts").max().alias("latest_close"))
    return (
        first.join(latest, on="market_ticker", how="left")
        .filter(pl.col("close_ts").is_null()
                | (pl.max_horizontal("close_ts", "latest_close") >= start_ts - EXPIRED_TOLERANCE_MS))
        .drop("latest_close")
        .select(markets.columns)
    )


def change_times(markets: pl.DataFrame, status_events: pl.DataFrame, close_events: pl.DataFrame) -> np.ndarray:
    """The sorted receive times (epoch ms) at which some market's status or close time changed while evaluable."""
    # A change after the market stopped being evaluable (closed + tolerance, under the latest close time it
    # had) cannot matter; one before it opened can (it is the status or close the market opens with).
    closes = pl.concat([markets.select("market_ticker", "close_ts"), close_events.select("market_ticker", "close_ts")])
    last_close = closes.group_by("market_ticker").agg(
        pl.when(pl.col("close_ts").null_count() > 0).then(None).otherwise(pl.col("close_ts").max()).alias("close_ts")
    )
    events = pl.concat([status_events.select("market_ticker", "received_ts"),
                        close_events.select("market_ticker", "received_ts")])
    evaluable = events.join(last_close, on="market_ticker", how="inner").filter(
        pl.col("close_ts").is_null() | (pl.col("received_ts") <= pl.col("close_ts") + EXPIRED_TOLERANCE_MS)
    )
    return np.unique(evaluable["received_ts"].to_numpy().astype(np.int64))


def catalog_asof(markets: pl.DataFrame, status_events: pl.DataFrame, close_events: pl.DataFrame,
                 asof_ts: int) -> pl.DataFrame:
    """The catalog at `asof_ts`: status and close time from the latest events received by then.

    Without a status event a market is `active` (the engine itself leaves out markets that have not opened yet);
    without a `close_date_updated` its close time is the first listed (`markets` as from `as_first_listed`).
    """
    latest = (
        status_events.filter(pl.col("received_ts") <= asof_ts)
        .group_by("market_ticker")
        .agg(pl.col("status").sort_by("received_ts").last().alias("status_asof"))
    )
    close = (
        markets.select("market_ticker", pl.lit(asof_ts, dtype=pl.Int64).alias("asof_ts"))
        .join_asof(close_events.rename({"close_ts": "close_asof"}), left_on="asof_ts", right_on="received_ts",
                   by="market_ticker", strategy="backward", check_sortedness=False)
        .select("market_ticker", "close_asof")
    )
    return (
        markets.join(latest, on="market_ticker", how="left")
        .join(close, on="market_ticker", how="left")
        .with_columns(
            pl.coalesce(pl.col("status_asof"), pl.lit("active")).alias("status"),
            pl.coalesce(pl.col("close_asof"), pl.col("close_ts")).alias("close_ts"),
            pl.coalesce(pl.col("close_asof"), pl.col("settlement_ts")).alias("settlement_ts"),
        )
        .drop("status_asof", "close_asof")
    )

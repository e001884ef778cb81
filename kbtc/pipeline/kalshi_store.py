"""Writes of Kalshi records: catalog rows that are never overwritten with nulls, market data, lifecycle updates.

Every write is an idempotent upsert on the table's natural key, so re-running a step, replaying a tape or
overlapping collector sessions never duplicates rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import polars as pl
from sqlalchemy import Engine, bindparam, text

from kbtc.db.engine import write_transaction
from kbtc.db.store import DEFAULT_BATCH_ROWS, read_frame, table_of, upsert, upsert_sql
from kbtc.venues.kalshi.catalog import EventRecord, MarketRecord, SeriesRecord
from kbtc.venues.kalshi.marketdata import IndexPriceRecord, LifecycleRecord, QuoteRecord, TradeRecord

_MARKET_KEY = ("market_ticker",)
# Columns a refresh writes but that must keep their stored value when the venue omits them.
_NEVER_NULL_OVER = (
    "market_type", "title", "yes_sub_title", "strike_type", "floor_strike", "cap_strike", "custom_strike_json",
    "open_ts", "close_ts", "expected_expiration_ts", "latest_expiration_ts", "settlement_ts", "settlement_timer_s",
    "status", "can_close_early", "price_level_structure", "price_ranges_json", "result", "expiration_value",
    "settlement_value_dollars", "determined_ts", "settled_ts", "fee_type", "fee_multiplier", "rules_primary",
    "raw_json",
)


def write_series(engine: Engine, records: Iterable[SeriesRecord]) -> int:
    """Upsert series rows."""
    rows = [r.as_row() for r in records]
    return upsert(engine, "series", rows, keep_when_null=[k for k in rows[0] if k != "series_ticker"]) if rows else 0


def write_events(engine: Engine, records: Iterable[EventRecord]) -> int:
    """Upsert event rows."""
    rows = [r.as_row() for r in records]
    return upsert(engine, "events", rows, keep_when_null=[k for k in rows[0] if k != "event_ticker"]) if rows else 0


def write_markets(
    engine: Engine,
    records: Iterable[MarketRecord],
    fees: Mapping[str, tuple[str | None, float | None]] | None = None,
    *,
    catalog_status: str | None = "listed",
) -> int:
    """Upsert market rows; `fees` maps event ticker → (fee_type, fee_multiplier).

    `catalog_status` is written when given (a catalog refresh lists the market); None leaves it alone.
    """
    rows = []
    for record in records:
        row = record.as_row()
        fee_type, fee_multiplier = (fees or {}).get(record.event_ticker, (None, None))
        row.update(fee_type=fee_type, fee_multiplier=fee_multiplier, first_seen_ts=record.updated_ts)
        if catalog_status is not None:
            row["catalog_status"] = catalog_status
        rows.append(row)
    return upsert_market_rows(engine, rows)


def upsert_market_rows(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> int:
    """Upsert partial market rows: null values keep the stored value; `first_seen_ts` is set only on insert."""
    if not rows:
        return 0
    frame = pl.DataFrame([dict(r) for r in rows], infer_schema_length=None)
    update = [c for c in frame.columns if c not in (*_MARKET_KEY, "first_seen_ts")]
    return upsert(engine, "markets", frame, update_columns=update,
                  keep_when_null=[c for c in update if c in _NEVER_NULL_OVER or c in ("title", "event_ticker")])


def demote_vanished(
    engine: Engine,
    series_ticker: str,
    returned: set[str],
    statuses: Sequence[str] | None,
    now_ms: int,
    *,
    event_ticker: str | None = None,
) -> list[str]:
    """Mark listed markets of a series (or of one of its events) that a complete refresh of it no longer
    returned as `vanished`.

    Only rows whose stored status is in `statuses` (the refresh's filter) are candidates; no other column changes.
    """
    sql = "SELECT market_ticker, status FROM markets WHERE series_ticker = :s AND catalog_status = 'listed'"
    params = {"s": series_ticker}
    if event_ticker is not None:
        sql += " AND event_ticker = :e"
        params["e"] = event_ticker
    listed = read_frame(engine, sql, params)
    if listed.height == 0:
        return []
    if statuses is not None:
        listed = listed.filter(pl.col("status").is_in(list(statuses)))
    gone = sorted(set(listed["market_ticker"].to_list()) - returned)
    if gone:
        stmt = text(
            "UPDATE markets SET catalog_status = 'vanished', updated_ts = :now WHERE market_ticker IN :tickers"
        ).bindparams(bindparam("tickers", expanding=True))
        with write_transaction(engine) as conn:
            for start in range(0, len(gone), 500):
                conn.execute(stmt, {"now": now_ms, "tickers": gone[start : start + 500]})
    return gone


def insert_tuples(engine: Engine, table: str, fields: Sequence[str], records: Sequence[tuple[Any, ...]]) -> int:
    """Insert NamedTuple records, ignoring natural-key conflicts, straight into the driver's `executemany`.

    The same statement `upsert` compiles, minus the frame round trip: the collector's hot path
    (benchmarks/kalshi_ingest.py).
    """
    if not records:
        return 0
    sql, order = upsert_sql(engine, table_of(table), fields, on_conflict="ignore")
    if order is None:
        params: list[Any] = [dict(zip(fields, record, strict=True)) for record in records]
    elif tuple(order) == tuple(fields):
        params = list(records)
    else:
        index = [list(fields).index(name) for name in order]
        params = [tuple(record[i] for i in index) for record in records]
    for start in range(0, len(params), DEFAULT_BATCH_ROWS):
        with write_transaction(engine) as conn:
            conn.exec_driver_sql(sql, params[start : start + DEFAULT_BATCH_ROWS])
    return len(params)


def write_quotes(engine: Engine, records: Sequence[QuoteRecord]) -> int:
    """Insert quotes (a re-delivered quote with the same market, time and source is ignored)."""
    return insert_tuples(engine, "quotes", QuoteRecord._fields, records)


def write_trades(engine: Engine, records: Sequence[TradeRecord]) -> int:
    """Insert trades (idempotent on trade_id)."""
    return upsert(engine, "kalshi_trades", [r.as_row() for r in records], on_conflict="ignore") if records else 0


def write_books(engine: Engine, rows: Sequence[Mapping[str, Any]]) -> int:
    """Upsert order-book rows on (market, book time, source): of two states in the same millisecond (a
    snapshot stamped on receipt and a delta stamped by the venue can collide) the later one wins."""
    return upsert(engine, "orderbook_snapshots", list(rows)) if rows else 0


def write_index_prices(engine: Engine, records: Sequence[IndexPriceRecord]) -> int:
    """Insert index prints (idempotent on index and time)."""
    return upsert(engine, "index_prices", [r.as_row() for r in records], on_conflict="ignore") if records else 0


def write_lifecycle(engine: Engine, records: Sequence[LifecycleRecord]) -> int:
    """Store lifecycle events and apply their market updates (result, settlement value, times, strikes)."""
    if not records:
        return 0
    upsert(engine, "market_lifecycle_events", [r.as_row() for r in records], on_conflict="ignore")
    updates = []
    for record in records:
        update = {k: v for k, v in record.market_update.items() if v is not None}
        update.update(updated_ts=record.received_ts, first_seen_ts=record.received_ts)
        updates.append(update)
    columns = sorted({k for u in updates for k in u})
    return upsert_market_rows(engine, [{c: u.get(c) for c in columns} for u in updates])

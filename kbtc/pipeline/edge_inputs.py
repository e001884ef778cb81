"""Read what the edge engine needs at an as-of time, as Polars frames, with no look-ahead.

Everything is bounded by `asof_ts`: quotes, ticks and candles newer than it are never read, so the same function
serves a live tick and a replay. The engine itself (kbtc.edge) is pure; this module is its only database reader.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import polars as pl
from sqlalchemy import Connection, Dialect, Engine, text

from kbtc.db.store import read_frame
from kbtc.edge.quality import PriceGrids, price_grids
from kbtc.pipeline.vol_spot import (
    CANDLE_MS,
    CANDLE_SCHEMA,
    CANDLE_SQL,
    candle_params,
    complete_with_candles,
    needs_candles,
)

if TYPE_CHECKING:
    from kbtc.pipeline.quote_cache import LatestQuoteCache
    from kbtc.pipeline.spot_cache import SpotTickCache

MARKET_COLUMNS = """
    market_ticker, event_ticker, series_ticker, status, strike_type, floor_strike, cap_strike,
    open_ts, close_ts, expected_expiration_ts, settlement_ts, fee_type, fee_multiplier,
    price_level_structure, price_ranges_json AS price_ranges, result, expiration_value
"""

_MARKET_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "market_ticker": pl.String,
    "event_ticker": pl.String,
    "series_ticker": pl.String,
    "status": pl.String,
    "strike_type": pl.Categorical,  # as the engine takes them (kbtc.edge.engine.MARKET_SCHEMA)
    "floor_strike": pl.Float64,
    "cap_strike": pl.Float64,
    "open_ts": pl.Int64,
    "close_ts": pl.Int64,
    "expected_expiration_ts": pl.Int64,
    "settlement_ts": pl.Int64,
    "fee_type": pl.Categorical,
    "fee_multiplier": pl.Float64,
    "price_level_structure": pl.String,
    "price_ranges": pl.String,
    "result": pl.String,
    "expiration_value": pl.Float64,
}
QUOTE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "market_ticker": pl.String,
    "quote_ts": pl.Int64,
    "received_ts": pl.Int64,
    "source": pl.String,
    "yes_bid_cents": pl.Float64,
    "yes_ask_cents": pl.Float64,
    "no_bid_cents": pl.Float64,
    "no_ask_cents": pl.Float64,
    "yes_bid_size": pl.Float64,
    "yes_ask_size": pl.Float64,
}
SPOT_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "ts": pl.Int64,
    "price": pl.Float64,
    "best_bid": pl.Float64,
    "best_ask": pl.Float64,
}


@dataclass(frozen=True, slots=True)
class EdgeInputs:
    """The engine's inputs at one as-of time.

    `spot` holds the ticks (the spot price, the settlement-window prints, the basis); `vol_spot` is the
    volatility estimator's series: the same ticks, completed from 1-minute candles where none arrived
    (kbtc.pipeline.vol_spot), and `spot` itself when nothing was missing.
    """

    asof_ts: int
    markets: pl.DataFrame
    quotes: pl.DataFrame
    spot: pl.DataFrame
    vol_spot: pl.DataFrame
    index_prints: pl.DataFrame
    settled_references: pl.DataFrame
    reference_spot: pl.DataFrame  # spot ticks covering every reference's minute (older windows + `spot`)


def read_typed(
    conn: Connection | Engine, sql: str, params: dict[str, object], schema: dict[str, pl.DataType | type[pl.DataType]]
) -> pl.DataFrame:
    """Run `sql` (selecting exactly `schema`'s columns, in order) into a typed frame, column-wise.

    Building the frame from columns with a known schema skips per-row type inference: this is the edge tick's
    hot read (10k markets and their quotes per tick).
    """
    if isinstance(conn, Engine):
        with conn.connect() as connection:
            return read_typed(connection, sql, params, schema)
    with driver_cursor(conn, sql, params) as cursor:
        return typed_frame(cursor.fetchall(), schema)


@contextmanager
def driver_cursor(conn: Connection, sql: str, params: dict[str, object]) -> Iterator[Any]:
    """`sql` (with `:name` placeholders) executed on the driver's cursor of the connection's (transaction's) DBAPI
    connection: rows come as plain tuples, without a SQLAlchemy Row per result row (~0.3 µs a row: a quarter of
    reading 10k markets or an hour of ticks). Closed on exit."""
    statement, order = _compiled_sql(conn.dialect, sql)
    cursor = conn.connection.cursor()
    try:
        cursor.execute(statement, tuple(params[name] for name in order) if order is not None else params)
        yield cursor
    finally:
        cursor.close()


def typed_frame(
    rows: Sequence[Sequence[object]], schema: dict[str, pl.DataType | type[pl.DataType]]
) -> pl.DataFrame:
    """Driver rows (in `schema`'s column order) as a typed frame, built column-wise: no per-row inference."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    return pl.DataFrame(
        {name: pl.Series(name, list(values), dtype=dtype, strict=False) for (name, dtype), values in
         zip(schema.items(), columns, strict=True)},
        schema=schema,
    )


@lru_cache(maxsize=64)
def _compiled_sql(dialect: Dialect, sql: str) -> tuple[str, tuple[str, ...] | None]:
    """`sql` (with `:name` placeholders) in the driver's paramstyle, and the parameter order when positional."""
    compiled = text(sql).compile(dialect=dialect)
    return compiled.string, tuple(compiled.positiontup or ()) if compiled.positional else None


def _typed(frame: pl.DataFrame, schema: dict[str, pl.DataType | type[pl.DataType]]) -> pl.DataFrame:
    if frame.width == 0:  # selecting literals from a frame without columns would make one all-null row
        return pl.DataFrame(schema=schema)
    columns = [
        (pl.col(name) if name in frame.columns else pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in schema.items()
    ]
    return frame.select(columns)


def _market_filter(series: Sequence[str], asof_ts: int, expired_tolerance_ms: int) -> tuple[str, dict[str, object]]:
    names = [f"s{i}" for i in range(len(series))]
    params: dict[str, object] = dict(zip(names, series, strict=True))
    params["earliest_close"] = asof_ts - expired_tolerance_ms
    where = f"""
        m.series_ticker IN ({", ".join(":" + n for n in names)})
        AND m.catalog_status = 'listed'
        AND (m.close_ts IS NULL OR m.close_ts >= :earliest_close)
    """
    return where, params


def load_markets(
    conn: Connection | Engine, asof_ts: int, series: Sequence[str], *, expired_tolerance_ms: int = 5_000
) -> pl.DataFrame:
    """Listed markets of the tracked series that have not closed before `asof − tolerance` (or lack a close)."""
    if not series:
        return _typed(pl.DataFrame(), _MARKET_SCHEMA)
    where, params = _market_filter(series, asof_ts, expired_tolerance_ms)
    columns = ", ".join("m." + c.strip() for c in MARKET_COLUMNS.split(","))
    sql = f"SELECT {columns} FROM markets m WHERE {where} ORDER BY m.market_ticker"  # noqa: S608 — placeholders only
    return read_typed(conn, sql, params, _MARKET_SCHEMA)


@dataclass(slots=True)
class MarketCatalogCache:
    """The `load_markets` result kept between live ticks: the catalog changes every few minutes, ticks every 10 s.

    Valid while a fingerprint of the markets it was read from — the count, sum and max of `updated_ts` of the
    rows the read selected — is unchanged (every catalog writer stamps `updated_ts`; a new, vanished or edited
    market changes it) and time does not go backwards; a later tick then only drops the markets that have
    since expired, as the SQL filter would. Anything else re-reads.
    """

    series: tuple[str, ...] = ()
    asof_ts: int | None = None
    fingerprint: tuple[object, ...] | None = None
    markets: pl.DataFrame | None = None
    hits: int = 0
    _grids: PriceGrids | None = None

    def grids(self) -> PriceGrids | None:
        """The tick-size grids of the markets read (for the engine's off-grid check), computed once per read;
        None before the first read. A superset of a later tick's markets: the engine joins them by market."""
        if self._grids is None and self.markets is not None:
            self._grids = PriceGrids.of(price_grids(self.markets))
        return self._grids

    def load(
        self, conn: Connection, asof_ts: int, series: Sequence[str], *, expired_tolerance_ms: int = 5_000
    ) -> pl.DataFrame:
        """`load_markets(conn, asof_ts, series)`, from the cache when the catalog has not changed."""
        if (
            self.markets is not None
            and self.asof_ts is not None
            and self.series == tuple(series)
            and asof_ts >= self.asof_ts
            and _catalog_fingerprint(conn, self.asof_ts, series, expired_tolerance_ms) == self.fingerprint
        ):
            self.hits += 1
            close = pl.col("close_ts")
            return self.markets.filter(close.is_null() | (close >= asof_ts - expired_tolerance_ms))
        self.fingerprint = _catalog_fingerprint(conn, asof_ts, series, expired_tolerance_ms)
        self.markets = load_markets(conn, asof_ts, series, expired_tolerance_ms=expired_tolerance_ms)
        self.series, self.asof_ts, self._grids = tuple(series), asof_ts, None
        return self.markets


def _catalog_fingerprint(
    conn: Connection, asof_ts: int, series: Sequence[str], expired_tolerance_ms: int
) -> tuple[object, ...]:
    if not series:
        return ()
    where, params = _market_filter(series, asof_ts, expired_tolerance_ms)
    sql = f"SELECT COUNT(*), SUM(m.updated_ts), MAX(m.updated_ts) FROM markets m WHERE {where}"  # noqa: S608
    return tuple(conn.execute(text(sql), params).one())


def load_latest_quotes(
    conn: Connection | Engine,
    asof_ts: int,
    series: Sequence[str],
    *,
    max_age_ms: int,
    expired_tolerance_ms: int = 5_000,
) -> pl.DataFrame:
    """The newest quote in [asof − max_age, asof] of every market `load_markets` returns (no look-ahead).

    Driven from the market list: one index seek per market on the quotes' (market_ticker, quote_ts) key, so
    the cost follows the number of markets, not the number of quotes in the window. Ties on `quote_ts` go to
    the latest received, then the source name (as kbtc.db.store.latest_quotes).
    """
    if not series:
        return _typed(pl.DataFrame(), QUOTE_SCHEMA)
    where, params = _market_filter(series, asof_ts, expired_tolerance_ms)
    params.update({"asof": asof_ts, "start": asof_ts - max_age_ms})
    columns = ", ".join(f"q.{name}" for name in QUOTE_SCHEMA)
    sql = f"""
        SELECT {columns} FROM markets m
        JOIN quotes q ON q.id = (
            SELECT q2.id FROM quotes q2
            WHERE q2.market_ticker = m.market_ticker AND q2.quote_ts <= :asof AND q2.quote_ts >= :start
            ORDER BY q2.quote_ts DESC, q2.received_ts DESC, q2.source DESC
            LIMIT 1
        )
        WHERE {where}
        ORDER BY m.market_ticker
    """  # noqa: S608 — generated placeholder names only; values are bound
    return read_typed(conn, sql, params, QUOTE_SCHEMA)


# The elements of the JSON array parameter `:tickers` as rows of one text column `value`, per dialect.
_JSON_TEXT_ELEMENTS = {
    "sqlite": "SELECT value FROM json_each(:tickers)",
    "postgresql": "SELECT json_array_elements_text(CAST(:tickers AS json)) AS value",
}


def load_latest_books(
    conn: Connection | Engine,
    asof_ts: int,
    series: Sequence[str],
    *,
    max_age_ms: int,
    expired_tolerance_ms: int = 5_000,
    tickers: Sequence[str] | None = None,
) -> pl.DataFrame:
    """The newest order book in [asof − max_age, asof] of each market `load_markets` returns, as bid levels.

    Returns market_ticker, side (`yes`/`no`: whose bids), price_cents, size — one row per level, from the
    stored ladders (`[[price_cents, size], ...]`). `tickers`: only these of those markets (a live tick reads
    the books of the markets it priced): the read is driven from the list, one index seek per ticker.
    """
    schema: dict[str, pl.DataType | type[pl.DataType]] = {
        "market_ticker": pl.String, "side": pl.String, "price_cents": pl.Float64, "size": pl.Float64,
    }
    if not series or (tickers is not None and len(tickers) == 0):
        return pl.DataFrame(schema=schema)
    where, params = _market_filter(series, asof_ts, expired_tolerance_ms)
    params.update({"asof": asof_ts, "start": asof_ts - max_age_ms})
    markets = "markets m"
    if tickers is not None:
        # One JSON array parameter whatever the number of markets (one statement, not one per list length).
        # CROSS JOIN: SQLite keeps the list as the outer loop (else it walks every market of the series).
        markets = f"({_JSON_TEXT_ELEMENTS[conn.dialect.name]}) t CROSS JOIN markets m"
        where += " AND m.market_ticker = t.value"
        params["tickers"] = json.dumps(list(tickers))
    sql = f"""
        SELECT b.market_ticker, b.yes_bids_json, b.no_bids_json FROM {markets}
        JOIN orderbook_snapshots b ON b.id = (
            SELECT b2.id FROM orderbook_snapshots b2
            WHERE b2.market_ticker = m.market_ticker AND b2.book_ts <= :asof AND b2.book_ts >= :start
            ORDER BY b2.book_ts DESC, b2.received_ts DESC, b2.source DESC
            LIMIT 1
        )
        WHERE {where}
    """  # noqa: S608 — generated placeholder names only; values are bound
    raw = read_typed(conn, sql, params, {"market_ticker": pl.String, "yes_bids_json": pl.String,
                                         "no_bids_json": pl.String})
    if raw.height == 0:
        return pl.DataFrame(schema=schema)
    ladder = pl.List(pl.List(pl.Float64))
    levels = [
        raw.select("market_ticker", pl.lit(side).alias("side"), pl.col(f"{side}_bids_json").str.json_decode(ladder)
                   .alias("level"))
        .explode("level")
        .filter(pl.col("level").is_not_null())
        .select("market_ticker", "side", pl.col("level").list.get(0).alias("price_cents"),
                pl.col("level").list.get(1).alias("size"))
        for side in ("yes", "no")
    ]
    return pl.concat(levels).cast(schema)  # type: ignore[arg-type]


def load_spot(conn: Connection | Engine, product_id: str, asof_ts: int, lookback_s: float) -> pl.DataFrame:
    """Spot ticks in [asof − lookback, asof] as (ts, price, best_bid, best_ask), oldest first."""
    return load_spot_ticks(conn, product_id, asof_ts - int(lookback_s * 1000), asof_ts)


def load_spot_ticks(conn: Connection | Engine, product_id: str, start_ts: int, asof_ts: int) -> pl.DataFrame:
    """Spot ticks with `tick_ts` in [start, asof] as (ts, price, best_bid, best_ask), by (tick_ts, venue_time_ns)."""
    sql = """
        SELECT tick_ts AS ts, price, best_bid, best_ask FROM spot_ticks
        WHERE product_id = :product AND tick_ts >= :start AND tick_ts <= :asof
        ORDER BY tick_ts, venue_time_ns
    """
    params: dict[str, object] = {"product": product_id, "start": start_ts, "asof": asof_ts}
    return read_typed(conn, sql, params, SPOT_SCHEMA)


def load_spot_with_candles(
    conn: Connection, product_id: str, asof_ts: int, lookback_s: float, cache: SpotTickCache | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Spot ticks in [asof − lookback, asof] (as `load_spot`), and the volatility series over the same span.

    The volatility series is the ticks completed from the stored 1-minute candles that ended by `asof` in
    minutes without a tick (kbtc.pipeline.vol_spot). Ticks are read from one minute before the lookback so
    that the first candle's minute is known; candles are read (one range seek) only when the ticks leave a
    minute-long stretch empty. `cache` (a live loop's): read only the ticks inserted since the previous tick
    (kbtc.pipeline.spot_cache).
    """
    start_ts = asof_ts - int(lookback_s * 1000)
    ticks = (cache.load(conn, product_id, start_ts - CANDLE_MS, asof_ts) if cache is not None
             else load_spot_ticks(conn, product_id, start_ts - CANDLE_MS, asof_ts))
    spot = ticks.slice(ticks["ts"].search_sorted(start_ts, side="left"))
    if not needs_candles(ticks["ts"], start_ts - CANDLE_MS, asof_ts):
        return spot, spot
    params = candle_params(product_id, start_ts - CANDLE_MS, asof_ts - CANDLE_MS)
    completed = complete_with_candles(ticks, read_typed(conn, CANDLE_SQL, params, CANDLE_SCHEMA))
    return spot, completed.slice(completed["ts"].search_sorted(start_ts, side="left"))


def load_index_prints(conn: Connection | Engine, index_id: str, asof_ts: int, lookback_s: float) -> pl.DataFrame:
    """Settlement-index prints (e.g. BRTI via Kalshi) in [asof − lookback, asof] as (ts, price)."""
    sql = """
        SELECT value_ts AS ts, value_usd AS price FROM index_prices
        WHERE index_id = :index AND value_ts >= :start AND value_ts <= :asof
        ORDER BY value_ts
    """
    params = {"index": index_id, "start": asof_ts - int(lookback_s * 1000), "asof": asof_ts}
    return _typed(read_frame(conn, sql, params), {"ts": pl.Int64, "price": pl.Float64})


# When a published value became known: a strike at its window's end, an expiration value once determined.
KNOWN_EXPIRATION_SQL = """CASE WHEN COALESCE(determined_ts, settled_ts, close_ts) > close_ts
                            THEN COALESCE(determined_ts, settled_ts, close_ts) ELSE close_ts END"""


def load_settled_references(
    conn: Connection | Engine, series_ticker: str, asof_ts: int, lookback_s: float
) -> pl.DataFrame:
    """Published 60-second index averages known in [asof − lookback, asof]: strikes and expiration values.

    Every KXBTC15M `floor_strike` is the average of the 60 s of BRTI before `open_ts`, and `expiration_value`
    the average before `close_ts` — the evidence for the Coinbase-to-index basis. `known_ts` is when the value
    became public: the window end for a strike, the determination (at the earliest the close) for an
    expiration value — the same rule as a replay (kbtc.pipeline.edge_history.load_history), so a live tick
    weights each value as a replay of the same time does.
    """
    sql = f"""
        SELECT market_ticker, open_ts AS window_end_ts, open_ts AS known_ts, floor_strike AS index_avg_usd,
               'strike' AS kind
        FROM markets
        WHERE series_ticker = :series AND floor_strike IS NOT NULL
          AND open_ts IS NOT NULL AND open_ts <= :asof AND open_ts >= :start
        UNION ALL
        SELECT market_ticker, close_ts AS window_end_ts, {KNOWN_EXPIRATION_SQL} AS known_ts,
               expiration_value AS index_avg_usd, 'expiration' AS kind
        FROM markets
        WHERE series_ticker = :series AND expiration_value IS NOT NULL AND close_ts IS NOT NULL
          AND {KNOWN_EXPIRATION_SQL} <= :asof AND {KNOWN_EXPIRATION_SQL} >= :start
        ORDER BY window_end_ts, market_ticker
    """  # noqa: S608 — a constant expression; values are bound
    params = {"series": series_ticker, "asof": asof_ts, "start": asof_ts - int(lookback_s * 1000)}
    schema: dict[str, pl.DataType | type[pl.DataType]] = {
        "market_ticker": pl.String,
        "window_end_ts": pl.Int64,
        "known_ts": pl.Int64,
        "index_avg_usd": pl.Float64,
        "kind": pl.String,
    }
    return _typed(read_frame(conn, sql, params), schema)


def reference_spot_windows(references: pl.DataFrame, before_ts: int, span_ms: int) -> list[tuple[int, int]]:
    """The `[end − span, end)` spans of spot the references need, merged, cut at `before_ts` (already loaded)."""
    ends = sorted(set(references["window_end_ts"].drop_nulls().to_list()))
    windows: list[tuple[int, int]] = []
    for end in ends:
        start, stop = end - span_ms, min(end, before_ts)
        if start >= stop:
            continue
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(windows[-1][1], stop))
        else:
            windows.append((start, stop))
    return windows


def load_spot_windows(conn: Connection | Engine, product_id: str, windows: Sequence[tuple[int, int]]) -> pl.DataFrame:
    """Spot ticks in each `[start, stop)` of `windows` (sorted, disjoint), oldest first: one index range read each.

    The basis compares each published index average with the Coinbase average over the same minute; a live
    tick reads only those minutes (a few hundred ticks each) instead of the hours of ticks they span.
    """
    if isinstance(conn, Engine):
        with conn.connect() as connection:
            return load_spot_windows(connection, product_id, windows)
    sql = """
        SELECT tick_ts AS ts, price, best_bid, best_ask FROM spot_ticks
        WHERE product_id = :product AND tick_ts >= :start AND tick_ts < :stop
        ORDER BY tick_ts, venue_time_ns
    """
    parts = [read_typed(conn, sql, {"product": product_id, "start": start, "stop": stop}, SPOT_SCHEMA)
             for start, stop in windows]
    return pl.concat(parts) if parts else pl.DataFrame(schema=SPOT_SCHEMA)


def load_edge_inputs(
    engine: Engine,
    asof_ts: int,
    *,
    series: Sequence[str],
    product_id: str,
    spot_lookback_s: float = 3_900.0,
    quote_max_age_s: float = 300.0,
    index_id: str = "BRTI",
    basis_lookback_s: float = 6 * 3_600.0,
    reference_span_ms: int | None = 65_000,
    catalog: MarketCatalogCache | None = None,
    quote_cache: LatestQuoteCache | None = None,
    spot_cache: SpotTickCache | None = None,
) -> EdgeInputs:
    """All inputs of one edge tick at `asof_ts`, read in one connection (one consistent snapshot on SQLite WAL).

    `reference_span_ms`: how much spot before each reference's window end the basis needs (its 60 s average
    plus the tick-age tolerance, kbtc.edge.basis.reference_spot_span_ms); those spans older than the spot
    lookback are read too, so every reference in `basis_lookback_s` gets its Coinbase average, as in a replay.
    None: none are read (the basis is off). `catalog` (a live loop's): reuse the markets read by an earlier
    tick while the catalog is unchanged; `quote_cache` (a live loop's): read only the quotes inserted since
    the previous tick (kbtc.pipeline.quote_cache); `spot_cache` (a live loop's): the same for the spot ticks
    (kbtc.pipeline.spot_cache).
    """
    spot_start = asof_ts - int(spot_lookback_s * 1000)
    with engine.connect() as conn, conn.begin():
        markets = catalog.load(conn, asof_ts, series) if catalog is not None else load_markets(conn, asof_ts, series)
        max_age_ms = int(quote_max_age_s * 1000)
        quotes = (
            quote_cache.load(conn, asof_ts, series, markets, max_age_ms=max_age_ms)
            if quote_cache is not None
            else load_latest_quotes(conn, asof_ts, series, max_age_ms=max_age_ms)
        )
        spot, vol_spot = load_spot_with_candles(conn, product_id, asof_ts, spot_lookback_s, spot_cache)
        index_prints = load_index_prints(conn, index_id, asof_ts, spot_lookback_s)
        references = load_settled_references(conn, "KXBTC15M", asof_ts, basis_lookback_s)
        windows = [] if reference_span_ms is None else reference_spot_windows(references, spot_start, reference_span_ms)
        older = load_spot_windows(conn, product_id, windows)
    return EdgeInputs(
        asof_ts=asof_ts,
        markets=markets,
        quotes=quotes,
        spot=spot,
        vol_spot=vol_spot,
        index_prints=index_prints,
        settled_references=references,
        reference_spot=pl.concat([older, spot]) if older.height else spot,
    )

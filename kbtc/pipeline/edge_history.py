"""Edges over a recorded period: the inputs of many as-of times read once, the engine called on batches of them.

The live tick (`kbtc.pipeline.edges.compute_edge_tick`) reads the database as of one time; a replay or a sweep
needs thousands of as-of times. `load_history` reads the period once; `edges_over` then evaluates every as-of
time through the engine's multi-as-of entry point (`kbtc.edge.compute_edges`): volatility and basis for all
as-of times in one vectorised pass each, quotes by an as-of join (for an as-of grid, only the quotes that can
be chosen are read), and one engine call per *segment* — a run of as-of times over which no tracked market
changed its tradable status or its close time — cut into chunks of at most `chunk_rows` (as-of × market) pairs
so memory stays bounded (streaming).

Why segments: the engine takes one catalog frame per call, but a market's status moves with its lifecycle
(`activated`, `deactivated`, `determined`, …). The status at an as-of time is the one set by the latest
lifecycle event received by then, else `active` — what the live tick read from the catalog
at that time, never the final state the database holds after the period (that would be look-ahead). So does
its close time: the one first listed, replaced by each `close_date_updated` from its receive time on (an
as-of join per market; `settlement_ts` follows it). The catalog row holds only the latest close time, so the
first is the market's `created` event's when stored, else the catalog's (kbtc.pipeline.catalog_history).

No look-ahead, the same rules as the live loaders (kbtc.pipeline.edge_inputs): quotes with quote_ts ≤ as-of
(newest per market, at most `quote_max_age_s` old, ties to the latest received then the source name), spot
ticks in [as-of − lookback, as-of] (for volatility completed from 1-minute candles that ended by the as-of
time, in minutes without a tick: kbtc.pipeline.vol_spot), references once published, index minutes once
complete, books with book_ts ≤ as-of. Rows count from their venue time, as in the live loaders (the
collector's millisecond latency is not modelled); a status or a close time counts from its lifecycle event's
receive time.
Markets closed more than `expired_tolerance` before the as-of time are not evaluated, as live.
Known differences from the live tick: `catalog_status` is ignored (a market delisted after the period was
listed during it); a market with no stored `created` event (listed before the recording began) that closed
early has its early close at every as-of time before the `close_date_updated`, the catalog's being the only
close time known. The basis sees the same references with the same Coinbase minutes as live: the live tick
reads the minutes of references older than its spot lookback on their own (edge_inputs.load_spot_windows).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from sqlalchemy import Engine, text

from kbtc.db.store import read_frame
from kbtc.edge import compute_edges, quotes_asof
from kbtc.edge.basis import estimate_basis, reference_spot_span_ms
from kbtc.edge.engine import MARKET_SCHEMA
from kbtc.edge.volatility import estimate_volatility
from kbtc.pipeline.catalog_history import (
    EXPIRED_TOLERANCE_MS,
    as_first_listed,
    catalog_asof,
    change_times,
    read_catalog_changes,
)
from kbtc.pipeline.edge_inputs import KNOWN_EXPIRATION_SQL, MARKET_COLUMNS, driver_cursor, typed_frame
from kbtc.pipeline.edges import EdgeSettings, tick_state
from kbtc.pipeline.vol_spot import CANDLE_MS, CANDLE_SCHEMA, CANDLE_SQL, candle_params, complete_with_candles

DEFAULT_CHUNK_ROWS = 2_000_000
QUOTE_HISTORY_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "market_ticker": pl.String, "quote_ts": pl.Int64, "received_ts": pl.Int64, "source": pl.String,
    "yes_bid_cents": pl.Float64, "yes_ask_cents": pl.Float64, "no_bid_cents": pl.Float64, "no_ask_cents": pl.Float64,
    "yes_bid_size": pl.Float64, "yes_ask_size": pl.Float64,
}


@dataclass(frozen=True, slots=True)
class HistoryInputs:
    """Everything the engine needs for as-of times in [start_ts, end_ts], read once."""

    start_ts: int
    end_ts: int
    markets: pl.DataFrame  # the catalog rows (final state; close_ts, settlement_ts as first listed)
    status_events: pl.DataFrame  # market_ticker, received_ts, status: lifecycle status changes
    close_events: pl.DataFrame  # market_ticker, received_ts, close_ts: `close_date_updated`, by receive time
    quotes: pl.DataFrame  # quote history, one row per (market, quote_ts)
    spot: pl.DataFrame  # ts, price, best_bid, best_ask
    vol_spot: pl.DataFrame  # spot completed from candles where ticks are missing (the volatility estimator's)
    index_prints: pl.DataFrame  # ts, price
    references: pl.DataFrame  # market_ticker, window_end_ts, known_ts, index_avg_usd, kind
    books: pl.DataFrame  # market_ticker, book_ts, yes_bids_json, no_bids_json
    asof_step_ms: int | None = None  # when set, the inputs serve start_ts + k·asof_step_ms only


def cadence_ms(cadence_s: float) -> int:
    """The as-of grid's step for a cadence in seconds (epoch ms)."""
    step = round(cadence_s * 1000)
    if step <= 0:
        raise ValueError("cadence must be positive")
    return step


def asof_grid(start_ts: int, end_ts: int, cadence_s: float) -> list[int]:
    """As-of times on whole multiples of the cadence in [start_ts, end_ts] (epoch ms)."""
    step = cadence_ms(cadence_s)
    first = -(-start_ts // step) * step
    return list(range(first, end_ts + 1, step))


Schema = dict[str, pl.DataType | type[pl.DataType]]
_READ_CHUNK_ROWS = 250_000


def read_large(engine: Engine, sql: str, params: dict[str, object], schema: Schema) -> pl.DataFrame:
    """Run `sql` (selecting exactly `schema`'s columns) into a typed frame, streamed in chunks of rows.

    A period holds millions of quotes: building each chunk column-wise with a known schema keeps both the time
    and the peak memory bounded (never all rows as Python tuples at once). On SQLite the rows come from the
    driver's cursor, which steps lazily (plain tuples: a SQLAlchemy Row per row cost about a third of reading
    10M quotes); elsewhere through SQLAlchemy's server-side cursor.
    """
    parts = [pl.DataFrame(schema=schema)]
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            with driver_cursor(conn, sql, params) as cursor:
                while rows := cursor.fetchmany(_READ_CHUNK_ROWS):
                    parts.append(typed_frame(rows, schema))
        else:
            result = conn.execution_options(stream_results=True).execute(text(sql), params)
            for chunk in result.partitions(_READ_CHUNK_ROWS):
                parts.append(typed_frame(chunk, schema))
    return pl.concat(parts, rechunk=True)


_QUOTE_COLUMNS = ("q.market_ticker, q.quote_ts, q.received_ts, q.source, q.yes_bid_cents, q.yes_ask_cents, "
                  "q.no_bid_cents, q.no_ask_cents, q.yes_bid_size, q.yes_ask_size")
_QUOTE_SPANS_SQL = """
    SELECT q.market_ticker AS market_ticker, MIN(q.quote_ts) AS first_ts, MAX(q.quote_ts) AS last_ts,
           COUNT(*) AS quotes
    FROM quotes q
    WHERE q.market_ticker IN (SELECT market_ticker FROM markets WHERE series_ticker IN ({placeholders}))
      AND q.quote_ts >= :start AND q.quote_ts <= :end
    GROUP BY q.market_ticker"""
# (An IN list, not a join: SQLite then walks the quotes key in market order and groups without a sort.)
# A market's grid runs from the first as-of time at or after its first quote to the first at or after its last:
# an as-of time before that sees no quote, one after it the same last quote. At each, the newest quote time
# (an index seek backwards); then every quote at those (market, time) keys, ties included (`_latest_per_key`
# breaks them as live does). Integer division of non-negative values: the same in SQLite and PostgreSQL.
_GRID_QUOTES_SQL = """
    WITH RECURSIVE spans AS ({spans}),
    grid(market_ticker, t, last_t) AS (
        SELECT market_ticker,
               CAST(:first AS BIGINT) + (CASE WHEN first_ts > :first THEN first_ts - :first ELSE 0 END
                                        + :step - 1) / :step * :step,
               CAST(:first AS BIGINT) + (CASE WHEN last_ts > :first THEN last_ts - :first ELSE 0 END
                                        + :step - 1) / :step * :step
        FROM spans
        UNION ALL
        SELECT market_ticker, t + :step, last_t FROM grid WHERE t < last_t),
    latest AS (
        SELECT DISTINCT g.market_ticker AS market_ticker,
               (SELECT MAX(x.quote_ts) FROM quotes x WHERE x.market_ticker = g.market_ticker
                  AND x.quote_ts <= g.t AND x.quote_ts >= :start AND x.quote_ts <= :end) AS quote_ts
        FROM grid g)
    SELECT {columns} FROM latest l
    JOIN quotes q ON q.market_ticker = l.market_ticker AND q.quote_ts = l.quote_ts"""


def _grid_pairs(spans: pl.DataFrame, first_ts: int, step_ms: int) -> int:
    """(as-of × market) lookups of the grid query: per market, the grid times from its first quote to its last."""
    def ceil_index(ts: pl.Expr) -> pl.Expr:
        return ((ts - first_ts).clip(lower_bound=0) + step_ms - 1) // step_ms

    return int(spans.select((ceil_index(pl.col("last_ts")) - ceil_index(pl.col("first_ts")) + 1).sum()).item() or 0)


def _read_quotes(
    engine: Engine,
    start_ts: int,
    end_ts: int,
    *,
    max_age_ms: int,
    series: dict[str, object],
    placeholders: str,
    asof_step_ms: int | None,
) -> pl.DataFrame:
    """The period's quotes of the series' markets: every one, or with `asof_step_ms` (as-of times
    `start_ts + k·step`) only those that are the latest at one of them, when that grid has at most half as many
    (as-of × market) lookups as the period has quotes (a seek costs about two quotes read in full).

    The reduced set gives the same as-of join (`quotes_asof`) at every grid time: each one's latest quote, and its
    ties, are in it, and no kept quote is later than it.
    """
    params: dict[str, object] = {**series, "start": start_ts - max_age_ms, "end": end_ts}
    spans_sql = _QUOTE_SPANS_SQL.format(placeholders=placeholders)
    if asof_step_ms is not None:
        if asof_step_ms <= 0:
            raise ValueError("asof_step_ms must be positive")
        spans = read_frame(engine, spans_sql, params, schema={
            "market_ticker": pl.String, "first_ts": pl.Int64, "last_ts": pl.Int64, "quotes": pl.Int64})
        quote_count = int(spans["quotes"].sum()) if spans.height else 0
        if spans.height and 2 * _grid_pairs(spans, start_ts, asof_step_ms) <= quote_count:
            # The query computes the spans again (one pass over the key, ~1 s on a 10M-quote day) rather than
            # taking hundreds of markets' spans back as bound parameters.
            return read_large(
                engine, _GRID_QUOTES_SQL.format(spans=spans_sql, columns=_QUOTE_COLUMNS),
                {**params, "first": start_ts, "step": asof_step_ms}, QUOTE_HISTORY_SCHEMA,
            )
    return read_large(
        engine,
        f"SELECT {_QUOTE_COLUMNS} FROM quotes q JOIN markets m ON m.market_ticker = q.market_ticker "  # noqa: S608
        f"WHERE m.series_ticker IN ({placeholders}) AND q.quote_ts >= :start AND q.quote_ts <= :end",
        params,
        QUOTE_HISTORY_SCHEMA,
    )


def _series_params(series: Sequence[str]) -> tuple[str, dict[str, object]]:
    names = [f"s{i}" for i in range(len(series))]
    return ", ".join(":" + n for n in names), dict(zip(names, series, strict=True))


def load_history(
    engine: Engine, start_ts: int, end_ts: int, settings: EdgeSettings, *, asof_step_ms: int | None = None
) -> HistoryInputs:
    """Read the inputs of every as-of time in [start_ts, end_ts] (nothing after `end_ts`).

    With `asof_step_ms`, the inputs serve only the as-of times `start_ts + k·asof_step_ms` (an `asof_grid`):
    where that grid needs at most half as many (as-of × market) lookups as the period has quotes, only the quotes
    that are the latest at one of its times are read (`edges_over` then refuses other as-of times).
    """
    params = settings.params
    placeholders, series = _series_params(params.series or ("",))
    columns = ", ".join(c.strip() for c in MARKET_COLUMNS.split(","))
    markets = read_frame(
        engine,
        f"SELECT {columns} FROM markets WHERE series_ticker IN ({placeholders}) "  # noqa: S608 — placeholders only
        "AND (close_ts IS NULL OR close_ts >= :start OR market_ticker IN (SELECT market_ticker FROM "
        "market_lifecycle_events WHERE event_type IN ('created', 'close_date_updated') AND received_ts <= :end)) "
        "AND (open_ts IS NULL OR open_ts <= :end) ORDER BY market_ticker",
        {**series, "start": start_ts - EXPIRED_TOLERANCE_MS, "end": end_ts},
        schema=MARKET_SCHEMA,  # typed even when empty: the lifecycle frames join on it
    )
    tickers = markets["market_ticker"].to_list() if markets.height else []
    changes = read_catalog_changes(engine, tickers, end_ts)
    markets = as_first_listed(markets, changes, start_ts)
    tickers = markets["market_ticker"].to_list() if markets.height else []
    quotes = _read_quotes(engine, start_ts, end_ts, max_age_ms=round(params.quote_max_age_s * 1000),
                          series=series, placeholders=placeholders, asof_step_ms=asof_step_ms)
    spot_lookback_ms = round(max(settings.vol.lookback_s, settings.basis.index_lookback_s + 120.0) * 1000)
    basis_lookback_ms = round(max(settings.basis.lookback_s, settings.basis.index_lookback_s) * 1000)
    # As load_settled_references: known_ts is when each value became public; those known inside the basis
    # lookback of the period's first as-of time (or later) count.
    references = read_frame(
        engine,
        f"""SELECT market_ticker, open_ts AS window_end_ts, open_ts AS known_ts, floor_strike AS index_avg_usd,
                  'strike' AS kind FROM markets
           WHERE series_ticker = 'KXBTC15M' AND floor_strike IS NOT NULL AND open_ts IS NOT NULL
             AND open_ts >= :start AND open_ts <= :end
           UNION ALL
           SELECT market_ticker, close_ts AS window_end_ts, {KNOWN_EXPIRATION_SQL} AS known_ts,
                  expiration_value AS index_avg_usd, 'expiration' AS kind FROM markets
           WHERE series_ticker = 'KXBTC15M' AND expiration_value IS NOT NULL AND close_ts IS NOT NULL
             AND {KNOWN_EXPIRATION_SQL} >= :start AND close_ts <= :end
           ORDER BY window_end_ts, market_ticker""",  # noqa: S608 — a constant expression; values are bound
        {"start": start_ts - round(settings.basis.lookback_s * 1000), "end": end_ts},
        schema={"market_ticker": pl.String, "window_end_ts": pl.Int64, "known_ts": pl.Int64,
                "index_avg_usd": pl.Float64, "kind": pl.String},
    )
    # Spot for σ, the index minutes and every reference's minute (its Coinbase average reaches back a span).
    earliest = start_ts - max(spot_lookback_ms, basis_lookback_ms)
    if references.height:
        oldest_end = int(references.select(pl.col("window_end_ts").min()).item())
        earliest = min(earliest, oldest_end - reference_spot_span_ms(settings.basis))
    # Candles that end inside the first as-of time's volatility lookback or later; the ticks from their start.
    first_candle = start_ts - round(settings.vol.lookback_s * 1000) - CANDLE_MS
    ticks = read_large(
        engine,
        "SELECT tick_ts AS ts, price, best_bid, best_ask FROM spot_ticks WHERE product_id = :p "
        "AND tick_ts >= :start AND tick_ts <= :end ORDER BY tick_ts, venue_time_ns",
        {"p": settings.product_id, "start": min(earliest, first_candle), "end": end_ts},
        {"ts": pl.Int64, "price": pl.Float64, "best_bid": pl.Float64, "best_ask": pl.Float64},
    )
    candles = read_large(engine, CANDLE_SQL, candle_params(settings.product_id, first_candle, end_ts - CANDLE_MS),
                         CANDLE_SCHEMA)
    spot = ticks.slice(ticks["ts"].search_sorted(earliest, side="left"))
    index_prints = read_frame(
        engine,
        "SELECT value_ts AS ts, value_usd AS price FROM index_prices WHERE index_id = :i "
        "AND value_ts >= :start AND value_ts <= :end ORDER BY value_ts",
        {"i": settings.index_id, "start": start_ts - spot_lookback_ms, "end": end_ts},
        schema={"ts": pl.Int64, "price": pl.Float64},
    )
    books_schema: Schema = {"market_ticker": pl.String, "book_ts": pl.Int64, "received_ts": pl.Int64,
                            "source": pl.String, "yes_bids_json": pl.String, "no_bids_json": pl.String}
    books = pl.DataFrame(schema=books_schema)
    if settings.book_max_age_s is not None:
        books = read_large(
            engine,
            "SELECT b.market_ticker, b.book_ts, b.received_ts, b.source, b.yes_bids_json, b.no_bids_json "  # noqa: S608
            "FROM orderbook_snapshots b JOIN markets m ON m.market_ticker = b.market_ticker "
            f"WHERE m.series_ticker IN ({placeholders}) AND b.book_ts >= :start AND b.book_ts <= :end",
            {**series, "start": start_ts - round(settings.book_max_age_s * 1000), "end": end_ts},
            books_schema,
        )
    return HistoryInputs(
        start_ts=start_ts,
        end_ts=end_ts,
        markets=markets,
        status_events=changes.status_events.filter(pl.col("market_ticker").is_in(tickers)),
        close_events=changes.close_events.filter(pl.col("market_ticker").is_in(tickers)),
        quotes=_latest_per_key(quotes, "quote_ts"),
        asof_step_ms=asof_step_ms,
        spot=spot,
        vol_spot=complete_with_candles(ticks, candles),
        index_prints=index_prints,
        references=references,
        books=_latest_per_key(books, "book_ts"),
    )


def _latest_per_key(frame: pl.DataFrame, ts: str) -> pl.DataFrame:
    """One row per (market, ts): the latest received, then the highest source name (the live tie-break)."""
    if frame.height == 0:
        return frame
    return frame.sort("market_ticker", ts, "received_ts", "source").unique(
        ["market_ticker", ts], keep="last", maintain_order=True
    )


def _segments(inputs: HistoryInputs, asofs: np.ndarray) -> np.ndarray:
    """Segment id per as-of time: it changes wherever a market's status or close time changed while it was
    evaluable."""
    boundaries = change_times(inputs.markets, inputs.status_events, inputs.close_events)
    return np.searchsorted(boundaries, asofs, side="right")


def _books_asof(books: pl.DataFrame, asofs: pl.DataFrame, max_age_ms: int) -> pl.DataFrame:
    """Bid levels of the newest book at or before each as-of time, at most `max_age_ms` old."""
    schema = {"asof_ts": pl.Int64, "market_ticker": pl.String, "side": pl.String, "price_cents": pl.Float64,
              "size": pl.Float64}
    if books.height == 0:
        return pl.DataFrame(schema=schema)
    grid = asofs.join(books.select("market_ticker").unique(), how="cross").sort("asof_ts")
    latest = grid.join_asof(
        books.sort("book_ts"), left_on="asof_ts", right_on="book_ts", by="market_ticker", strategy="backward",
        check_sortedness=False,
    ).filter(pl.col("book_ts").is_not_null() & (pl.col("book_ts") >= pl.col("asof_ts") - max_age_ms))
    ladder = pl.List(pl.List(pl.Float64))
    levels = [
        latest.select("asof_ts", "market_ticker", pl.lit(side).alias("side"),
                      pl.col(f"{side}_bids_json").str.json_decode(ladder).alias("level"))
        .explode("level")
        .filter(pl.col("level").is_not_null())
        .select("asof_ts", "market_ticker", "side", pl.col("level").list.get(0).alias("price_cents"),
                pl.col("level").list.get(1).alias("size"))
        for side in ("yes", "no")
    ]
    return pl.concat(levels).cast(schema)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class EdgeBatch:
    """The engine's output for a batch of as-of times, with the volatility estimates used."""

    asofs: list[int]
    edges: pl.DataFrame
    vol: pl.DataFrame


def edges_over(
    inputs: HistoryInputs,
    asofs: Sequence[int],
    settings: EdgeSettings,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[EdgeBatch]:
    """Evaluate every as-of time, yielding batches in time order (each at most ~`chunk_rows` pairs)."""
    params = settings.params
    times = np.asarray(sorted(set(asofs)), dtype=np.int64)
    if times.shape[0] == 0:
        return
    step = inputs.asof_step_ms
    if step is not None and bool(np.any((times - inputs.start_ts) % step != 0)):
        raise ValueError(f"these inputs serve the as-of times start_ts + k·{step} ms only")
    vol = estimate_volatility(inputs.vol_spot, times.tolist(), settings.vol)
    basis = estimate_basis(inputs.spot, times, references=inputs.references, index_prints=inputs.index_prints,
                           params=settings.basis)
    state = tick_state(inputs.spot, times.tolist(), vol, basis, index_prints=inputs.index_prints, params=params)
    # The live tick reads spot within its lookback only: an older tick is no spot at all.
    spot_lookback_ms = round(max(settings.vol.lookback_s, settings.basis.index_lookback_s + 120.0) * 1000)
    fresh = pl.col("spot_ts") >= pl.col("asof_ts") - spot_lookback_ms
    state = state.with_columns(
        pl.when(fresh).then(pl.col(c)).alias(c) for c in ("spot_usd", "spot_ts")
    )
    segment_of = _segments(inputs, times)
    per_chunk = max(1, chunk_rows // max(inputs.markets.height, 1))
    max_age_ms = round(params.quote_max_age_s * 1000)
    start = 0
    while start < times.shape[0]:
        # A chunk never spans two segments: one catalog frame per engine call.
        end = min(start + per_chunk, times.shape[0])
        end = start + int(np.searchsorted(segment_of[start:end], segment_of[start], side="right"))
        chunk = times[start:end].tolist()
        markets = catalog_asof(inputs.markets, inputs.status_events, inputs.close_events, chunk[0])
        chunk_frame = pl.DataFrame({"asof_ts": chunk}, schema={"asof_ts": pl.Int64})
        quotes = quotes_asof(inputs.quotes, chunk).filter(
            pl.col("quote_ts") >= pl.col("asof_ts") - max_age_ms
        )
        books = None
        if settings.book_max_age_s is not None:
            books = _books_asof(inputs.books, chunk_frame, round(settings.book_max_age_s * 1000))
        edges = compute_edges(
            markets, quotes, state.filter(pl.col("asof_ts").is_in(chunk)), prints=inputs.spot,
            index_prints=inputs.index_prints, books=books, params=params,
        )
        # Live loads no market closed more than the tolerance before the tick: drop what it never saw.
        edges = edges.filter(
            pl.col("close_ts").is_null() | (pl.col("close_ts") >= pl.col("asof_ts") - EXPIRED_TOLERANCE_MS)
        )
        yield EdgeBatch(chunk, edges, vol.filter(pl.col("asof_ts").is_in(chunk)))
        start = end

"""`kbtc replay`: recorded frames → the live parsers and writers → edges over the period → scores.

Ingest: frames (kbtc.pipeline.replay_sources) go through the collectors' own parsers — a `KalshiStream` per
recorded connection (`handle_frame`: quotes, books with sequence checks, trades, lifecycle, index prints) and
`kbtc.venues.coinbase.parsing.parse_frame` — and the collectors' own writers (kbtc.pipeline.kalshi_store,
spot_collector.write_ticks, recording), in batches, in order, on one background thread. Plain Kalshi `ticker` lines
of our tape — most of a day — take a vectorised path with the same rules (kbtc.pipeline.replay_batch); their quotes
reach the writer in line order among the per-frame path's. The clock is simulated: whatever the live collector
times with the wall clock (the book throttle, feed-event times) uses the frame's `received_ts`, so the same input
always gives the same rows. Coinbase Exchange `match`/`last_match` messages become ticks too (source
`coinbase_exchange_matches`), for users whose recordings hold trades only. Lifecycle events of series that are not
tracked are skipped, as live.

Then: settlements from the recorded lifecycle events (applied by the writer) and an optional settlements file
(`kbtc import settlements` format); edges at a cadence over the period through the multi-as-of path
(kbtc.pipeline.edge_history), written as the live tick writes them; scoring stamped with the period's end.
Every write is an idempotent upsert: replaying twice, or into the live database, adds nothing twice.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import Engine

from kbtc.log import get_logger
from kbtc.pipeline.edge_history import DEFAULT_CHUNK_ROWS, asof_grid, cadence_ms, edges_over, load_history
from kbtc.pipeline.edges import EdgeSettings, write_edges
from kbtc.pipeline.kalshi_store import write_books, write_index_prices, write_lifecycle, write_quotes, write_trades
from kbtc.pipeline.recording import record_feed_events, record_rejects
from kbtc.pipeline.replay_batch import lines_text, ticker_batch
from kbtc.pipeline.replay_sources import COINBASE, line_record, read_line_chunks
from kbtc.pipeline.score_snapshots import ScoreRun, score_snapshots
from kbtc.pipeline.spot_collector import write_ticks
from kbtc.pipeline.tape import TapeRecord
from kbtc.pipeline.volatility import persist_vol_estimates
from kbtc.venues.coinbase.messages import (
    SOURCE_EXCHANGE,
    FeedSource,
    FrameError,
    build_tick,
    load_object,
    rfc3339_to_ns,
)
from kbtc.venues.coinbase.parsing import parse_frame
from kbtc.venues.kalshi.marketdata import IndexPriceRecord, LifecycleRecord, QuoteRecord, TradeRecord
from kbtc.venues.kalshi.ws import BookUpdate, KalshiStream
from kbtc.venues.records import FeedEventRecord, RejectRecord

_log = get_logger(__name__)
MATCH_SOURCE = "coinbase_exchange_matches"
BATCH_ROWS = 50_000
CHUNK_LINES = 100_000


@dataclass(slots=True)
class IngestSummary:
    """What the ingest stored."""

    frames: int = 0
    skipped_outside: int = 0
    quotes: int = 0
    books: int = 0
    trades: int = 0
    lifecycle: int = 0
    index_prices: int = 0
    ticks: int = 0
    feed_events: int = 0
    rejects: int = 0
    first_ts: int | None = None
    last_ts: int | None = None


class _Writer:
    """The batches' writes, in submission order, on one background thread: SQLite releases the GIL while it
    steps an insert, so a day's millions of quote inserts overlap the decoding of the next chunks (which runs in
    Polars, also without the GIL). One writer, first in first out: the tables get the rows, and the row ids, of a
    write on the calling thread. At most `depth` batches wait; a failed write is raised on the next submit or at
    `close`, and nothing after it is written."""

    def __init__(self, depth: int = 2) -> None:
        self._queue: queue.Queue[tuple[Callable[[list[Any]], object], list[Any]] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._abandoned = False
        self._thread = threading.Thread(target=self._run, name="kbtc-replay-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None and not self._abandoned:
                write, rows = item
                try:
                    write(rows)
                except BaseException as exc:  # handed to the submitting thread, raised there
                    self._error = exc

    def submit(self, write: Callable[[list[Any]], object], rows: list[Any]) -> None:
        self._raise()
        self._queue.put((write, rows))

    def close(self) -> None:
        """Wait for every submitted write; raise the first failure."""
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def abandon(self) -> None:
        """Stop after the write in progress (the caller failed): the waiting batches are not written."""
        self._abandoned = True
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


class _Batches:
    """One buffer per table, written through the collectors' writers (on the `_Writer` thread) when full and at
    the end."""

    def __init__(self, engine: Engine, batch_rows: int) -> None:
        self.batch_rows = batch_rows
        self._writers: dict[str, Callable[[list[Any]], object]] = {
            "quotes": lambda rows: write_quotes(engine, rows),
            "ticks": lambda rows: write_ticks(engine, rows),
            "books": lambda rows: write_books(engine, rows),
            "trades": lambda rows: write_trades(engine, rows),
            "lifecycle": lambda rows: write_lifecycle(engine, rows),
            "index_prices": lambda rows: write_index_prices(engine, rows),
            "feed_events": lambda rows: record_feed_events(engine, rows),
            "rejects": lambda rows: record_rejects(engine, rows),
        }
        self._rows: dict[str, list[Any]] = {name: [] for name in self._writers}
        self._writer = _Writer()

    def add(self, table: str, row: Any) -> None:
        rows = self._rows[table]
        rows.append(row)
        if len(rows) >= self.batch_rows:
            self.flush(table)

    def extend(self, table: str, new_rows: Sequence[Any]) -> None:
        rows = self._rows[table]
        rows.extend(new_rows)
        if len(rows) >= self.batch_rows:
            self.flush(table)

    def flush(self, table: str) -> None:
        rows = self._rows[table]
        if rows:
            self._writer.submit(self._writers[table], rows)
            self._rows[table] = []

    def flush_all(self) -> None:
        """Write every buffered row and wait for the writes."""
        for table in self._writers:
            self.flush(table)
        self._writer.close()

    def abandon(self) -> None:
        """Stop the writer thread without writing what waits (the ingest failed)."""
        self._writer.abandon()


class _BookThrottle:
    """The live collector's rule on the simulated clock: every snapshot, at most one delta-driven row per market
    per interval, and the last unstored state at the end."""

    def __init__(self, interval_ms: int, batches: _Batches, summary: IngestSummary) -> None:
        self.interval_ms = interval_ms
        self.batches = batches
        self.summary = summary
        self._stored_at: dict[str, int] = {}
        self._unstored: dict[str, BookUpdate] = {}

    def offer(self, update: BookUpdate) -> None:
        ticker = update.book.market_ticker
        last = self._stored_at.get(ticker)
        if update.is_snapshot or last is None or update.received_ts - last >= self.interval_ms:
            self._stored_at[ticker] = update.received_ts
            self._unstored.pop(ticker, None)
            self._store(update)
        else:
            self._unstored[ticker] = update

    def flush(self) -> None:
        for update in self._unstored.values():
            self._store(update)
        self._unstored.clear()

    def _store(self, update: BookUpdate) -> None:
        self.summary.books += 1
        self.batches.add("books", update.book.snapshot_row(update.book_ts, update.received_ts, "ws"))


class _Ingest:
    def __init__(self, engine: Engine, series: Sequence[str], product_id: str, book_interval_s: float,
                 batch_rows: int, *, from_ts: int | None, to_ts: int | None) -> None:
        self.from_ts, self.to_ts = from_ts, to_ts
        self.summary = IngestSummary()
        self.batches = _Batches(engine, batch_rows)
        self.books = _BookThrottle(round(book_interval_s * 1000), self.batches, self.summary)
        self.series = set(series)
        self.product_id = product_id
        self._streams: dict[str, KalshiStream] = {}

    def kalshi(self, record: TapeRecord) -> None:
        # One parser per recorded connection: sequence numbers and books restart with each connection, as live.
        stream = self._streams.get(record.connection_id)
        if stream is None:
            stream = self._streams[record.connection_id] = KalshiStream("replay://kalshi")
            stream.connection_id = record.connection_id
        summary, add = self.summary, self.batches.add
        for item in stream.handle_frame(record.raw, record.received_ts):
            if isinstance(item, QuoteRecord):
                summary.quotes += 1
                add("quotes", item)
            elif isinstance(item, BookUpdate):
                self.books.offer(item)
            elif isinstance(item, TradeRecord):
                summary.trades += 1
                add("trades", item)
            elif isinstance(item, LifecycleRecord):
                if item.market_update["series_ticker"] in self.series:
                    summary.lifecycle += 1
                    add("lifecycle", item)
            elif isinstance(item, IndexPriceRecord):
                summary.index_prices += 1
                add("index_prices", item)
            elif isinstance(item, FeedEventRecord):
                summary.feed_events += 1
                # The parser stamps events with the wall clock; the replay's clock is the frame's receive time.
                add("feed_events", dataclasses.replace(item, event_ts=record.received_ts))
            elif isinstance(item, RejectRecord):
                self.reject(item)

    def record(self, record: TapeRecord | RejectRecord) -> None:
        """One record of the per-frame path: a reader's reject, or a frame inside or outside the period."""
        if isinstance(record, RejectRecord):
            self.reject(record)
            return
        summary, ts = self.summary, record.received_ts
        if (self.from_ts is not None and ts < self.from_ts) or (self.to_ts is not None and ts > self.to_ts):
            summary.skipped_outside += 1
            return
        summary.frames += 1
        summary.first_ts = ts if summary.first_ts is None else min(summary.first_ts, ts)
        summary.last_ts = ts if summary.last_ts is None else max(summary.last_ts, ts)
        if record.feed == COINBASE:
            self.coinbase(record)
        else:
            self.kalshi(record)

    def coinbase(self, record: TapeRecord) -> None:
        raw = record.raw
        source: FeedSource = "advanced" if '"channel"' in raw else "exchange"
        if source == "exchange" and ('"match"' in raw or '"last_match"' in raw):
            self._match(record)
            return
        parsed = parse_frame(source, raw, record.received_ts, self.product_id)
        for tick in parsed.ticks:
            self.summary.ticks += 1
            self.batches.add("ticks", tick)
        for reject in parsed.rejects:
            self.reject(reject)

    def _match(self, record: TapeRecord) -> None:
        try:
            data = load_object(record.raw)
            if data.get("product_id") != self.product_id:
                return
            sequence = data.get("sequence")
            tick = build_tick(
                {**data, "best_bid": None, "best_ask": None}, source=MATCH_SOURCE,
                venue_time_ns=rfc3339_to_ns(data.get("time")), received_ts=record.received_ts,
                sequence_num=int(sequence) if isinstance(sequence, int) else None,
                bid_size_key="best_bid_size", ask_size_key="best_ask_size",
            )
        except FrameError as exc:
            self.reject(RejectRecord(f"{SOURCE_EXCHANGE}.match", str(exc), record.received_ts, record.raw))
            return
        self.summary.ticks += 1
        self.batches.add("ticks", tick)

    def reject(self, reject: RejectRecord) -> None:
        self.summary.rejects += 1
        self.batches.add("rejects", reject)

    def finish(self) -> IngestSummary:
        self.books.flush()
        self.batches.flush_all()
        return self.summary


def ingest(
    engine: Engine,
    paths: Iterable[Path],
    *,
    series: Sequence[str],
    product_id: str = "BTC-USD",
    from_ts: int | None = None,
    to_ts: int | None = None,
    book_interval_s: float = 1.0,
    batch_rows: int = BATCH_ROWS,
    chunk_lines: int = CHUNK_LINES,
) -> IngestSummary:
    """Feed the recorded frames received in [from_ts, to_ts] through the live parsers into the database.

    Lines are read in chunks: the chunk's Kalshi ticker lines of the plain shape go through the vectorised
    path (kbtc.pipeline.replay_batch, the same rules), every other line through the per-frame parsers, and the
    quotes of both reach the writer in line order — the rows are those of a frame-by-frame ingest.
    """
    state = _Ingest(engine, series, product_id, book_interval_s, batch_rows, from_ts=from_ts, to_ts=to_ts)
    try:
        _ingest_chunks(state, paths, from_ts, to_ts, chunk_lines)
        return state.finish()
    except BaseException:
        state.batches.abandon()  # the writer thread never outlives a failed ingest
        raise


def _ingest_chunks(
    state: _Ingest, paths: Iterable[Path], from_ts: int | None, to_ts: int | None, chunk_lines: int
) -> None:
    summary = state.summary
    for path, first, lines in read_line_chunks(paths, chunk_lines):
        batch = ticker_batch(lines_text(lines))
        received = batch.received_ts
        inside = np.ones(received.shape[0], dtype=bool)
        if from_ts is not None:
            inside &= received >= from_ts
        if to_ts is not None:
            inside &= received <= to_ts
        summary.skipped_outside += int(received.shape[0] - inside.sum())
        if inside.any():
            kept = received[inside]
            summary.frames += int(kept.shape[0])
            summary.quotes += int(kept.shape[0])
            low, high = int(kept.min()), int(kept.max())
            summary.first_ts = low if summary.first_ts is None else min(summary.first_ts, low)
            summary.last_ts = high if summary.last_ts is None else max(summary.last_ts, high)
        taken = np.zeros(len(lines), dtype=bool)
        taken[batch.index] = True
        quote_rows = batch.quotes.filter(pl.Series(inside)).rows()
        quote_line = batch.index[inside]
        emitted = 0
        for position in np.flatnonzero(~taken).tolist():
            # The batch's quotes from lines before this one reach the writer first: line order is kept.
            upto = int(np.searchsorted(quote_line, position))
            if upto > emitted:
                state.batches.extend("quotes", quote_rows[emitted:upto])
                emitted = upto
            record = line_record(path, first + position, lines[position])
            if record is not None:
                state.record(record)
        if emitted < len(quote_rows):
            state.batches.extend("quotes", quote_rows[emitted:])


@dataclass(slots=True)
class ReplayResult:
    """What a replay did: the ingest, the as-of times evaluated, the rows written and the scoring run."""

    ingest: IngestSummary
    asofs: int = 0
    edges_written: int = 0
    snapshots_written: int = 0
    score: ScoreRun | None = None
    settlements_applied: int = 0
    settlement_errors: list[tuple[int, str]] = field(default_factory=list)
    stage_s: dict[str, float] = field(default_factory=dict)  # wall seconds: ingest, edges, score


def replay_edges(
    engine: Engine,
    start_ts: int,
    end_ts: int,
    cadence_s: float,
    settings: EdgeSettings,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> tuple[int, int, int]:
    """Compute and write edges at every cadence point in [start_ts, end_ts]; return (as-ofs, edges, snapshots)."""
    asofs = asof_grid(start_ts, end_ts, cadence_s)
    if not asofs:
        return 0, 0, 0
    inputs = load_history(engine, asofs[0], asofs[-1], settings, asof_step_ms=cadence_ms(cadence_s))
    params = settings.param_set()
    edges_written = snapshots_written = 0
    for batch in edges_over(inputs, asofs, settings, chunk_rows=chunk_rows):
        written = write_edges(engine, batch.edges, params)
        edges_written += written[0]
        snapshots_written += written[1]
        if settings.persist_vol:
            persist_vol_estimates(engine, batch.vol, settings.product_id, settings.vol)
    return len(asofs), edges_written, snapshots_written


def run_replay(
    engine: Engine,
    paths: Sequence[Path],
    settings: EdgeSettings,
    *,
    cadence_s: float = 10.0,
    from_ts: int | None = None,
    to_ts: int | None = None,
    settlements: Path | None = None,
    book_interval_s: float = 1.0,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> ReplayResult:
    """Ingest, settle, compute edges over the period and score; the database must be migrated.

    With `from_ts`, frames from the estimators' warm-up before it (the longest lookback) are ingested too, so the
    first as-of time sees the history live would have had; edges are computed in [from_ts, to_ts] only.
    """
    from kbtc.pipeline.imports import import_csv

    # Frames before the period are history the first as-of time would have known (volatility, basis, quotes).
    warmup_ms = round(1000 * max(settings.vol.lookback_s, settings.basis.lookback_s,
                                 settings.basis.index_lookback_s + 120.0, settings.params.quote_max_age_s))
    started = time.perf_counter()
    summary = ingest(engine, paths, series=settings.params.series, product_id=settings.product_id,
                     from_ts=None if from_ts is None else from_ts - warmup_ms, to_ts=to_ts,
                     book_interval_s=book_interval_s)
    result = ReplayResult(summary)
    result.stage_s["ingest"] = time.perf_counter() - started
    start = from_ts if from_ts is not None else summary.first_ts
    end = to_ts if to_ts is not None else summary.last_ts
    if settlements is not None:
        imported = import_csv(engine, "settlements", settlements, now_ts=end or 0)
        result.settlements_applied, result.settlement_errors = imported.rows_written, imported.errors
    if start is None or end is None:
        return result
    started = time.perf_counter()
    result.asofs, result.edges_written, result.snapshots_written = replay_edges(
        engine, start, end, cadence_s, settings, chunk_rows=chunk_rows
    )
    result.stage_s["edges"] = time.perf_counter() - started
    started = time.perf_counter()
    # Stamped with the period's end, not the wall clock: the same input gives the same scores table.
    result.score = score_snapshots(engine, end)
    result.stage_s["score"] = time.perf_counter() - started
    _log.info("replay_done", frames=summary.frames, asofs=result.asofs, edges=result.edges_written,
              snapshots=result.snapshots_written, scored=result.score.inserted,
              seconds={stage: round(seconds, 3) for stage, seconds in result.stage_s.items()})
    return result

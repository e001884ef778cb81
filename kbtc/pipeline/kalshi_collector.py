"""Step `kbtc collect --kalshi` (and `kbtc collect-kalshi`): the Kalshi WebSocket stream into the database.

Quotes (`ticker`); books (every snapshot, then at most one row per market per `book_interval_s` while deltas
change it, and the last state when the session ends); trades; lifecycle events (which also update `markets`:
results, settlement values, strikes); index prints (`cfbenchmarks_value`, optional); feed events and rejects —
each through its own batch writer, so a slow commit never stalls the socket. Every raw frame is appended to
the tape (feed `kalshi`).

The tracked set is the catalog's listed markets of the configured series that are active (or created and about
to open: the open sends no lifecycle event) and not closed; it is re-read every `catalog_refresh_s` and the
subscription follows (markets added/removed), and a lifecycle `determined`/`settled` drops the market at once.
On the same timer a channel whose `subscribe` the venue refused is subscribed again (also with fixed markets).
Lifecycle events of other series are kept on the tape only. All writes are idempotent: a re-delivered ticker
after a reconnect (same market, `ts_ms`) or trade (same `trade_id`) does not add a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from kbtc.config import Settings
from kbtc.db.store import read_frame
from kbtc.log import get_logger
from kbtc.pipeline.batching import BatchWriter
from kbtc.pipeline.kalshi_store import (
    write_books,
    write_index_prices,
    write_lifecycle,
    write_quotes,
    write_trades,
)
from kbtc.pipeline.recording import record_feed_events, record_rejects
from kbtc.pipeline.tape import TapeWriter
from kbtc.venues.kalshi.auth import KalshiSigner
from kbtc.venues.kalshi.catalog import event_ticker_of, series_ticker_of
from kbtc.venues.kalshi.marketdata import IndexPriceRecord, LifecycleRecord, QuoteRecord, TradeRecord
from kbtc.venues.kalshi.ws import BookUpdate, KalshiStream, StreamSettings
from kbtc.venues.records import FeedEventRecord, RejectRecord

_log = get_logger(__name__)
_DONE_EVENTS = ("determined", "settled", "deactivated")


@dataclass(slots=True)
class CollectSummary:
    """Counters of a collector session."""

    frames: int = 0
    quotes: int = 0
    books: int = 0
    trades: int = 0
    lifecycle: int = 0
    index_prices: int = 0
    feed_events: int = 0
    rejects: int = 0
    connects: int = 0
    markets: int = 0


class _Writers:
    """One batch writer per table."""

    def __init__(self, engine: Engine) -> None:
        def make(fn: Callable[[Engine, list[Any]], object]) -> BatchWriter[Any]:
            return BatchWriter(lambda rows: fn(engine, rows), max_rows=2000, max_delay_s=0.5)

        self.quotes = make(write_quotes)
        self.books = make(write_books)
        self.trades = make(write_trades)
        self.lifecycle = make(write_lifecycle)
        self.index = make(write_index_prices)
        self.feed_events = make(record_feed_events)
        self.rejects = make(record_rejects)

    def all(self) -> list[BatchWriter[Any]]:
        return [self.quotes, self.books, self.trades, self.lifecycle, self.index, self.feed_events, self.rejects]


async def collect_kalshi(
    settings: Settings,
    engine: Engine,
    stop: asyncio.Event | float,
    *,
    debug: bool = False,
    markets: Sequence[str] | None = None,
    signer: KalshiSigner | None = None,
    stream_settings: StreamSettings | None = None,
    tape_root: Path | None = None,
    book_interval_s: float = 1.0,
    catalog_refresh_s: float = 10.0,
    clock_ms: Callable[[], int] | None = None,
) -> CollectSummary:
    """Stream Kalshi into the database and the tape until `stop` is set (or for `stop` seconds); return counts.

    The `(settings, engine, stop)` form is the `kbtc collect --kalshi` collector (kbtc.pipeline.collect).
    `debug` logs every frame (truncated to 1500 characters) at DEBUG level.
    """
    series = list(settings.kalshi_series)
    fixed = markets if markets is not None else (settings.kalshi_market_tickers or None)

    def desired() -> set[str]:
        if fixed is not None:
            return set(fixed)
        now_ms = clock_ms() if clock_ms is not None else int(time.time() * 1000)
        return streamable_markets(engine, series, now_ms, int(catalog_refresh_s * 1000))

    # market_lifecycle_v2 cannot be filtered by ticker and carries every market on the exchange: only the
    # tracked series reach the database (all frames are on the tape).
    lifecycle_series = set(series) | {series_ticker_of(event_ticker_of(m)) for m in fixed or ()}
    summary = CollectSummary()
    tape = TapeWriter(tape_root or settings.data_dir / "tape", "kalshi")
    stream = KalshiStream(
        settings.kalshi_ws_url,
        desired(),
        signer=signer if signer is not None else KalshiSigner.from_settings(settings),
        settings=stream_settings,
        on_frame=_debug_tap(tape.write) if debug else tape.write,
    )
    writers = _Writers(engine)
    books = _BookThrottle(book_interval_s)

    async def consume() -> None:
        async with contextlib.aclosing(stream.items()) as items:
            async for item in items:
                if isinstance(item, LifecycleRecord) and item.market_update["series_ticker"] not in lifecycle_series:
                    continue
                await _route(item, writers, summary, books)
                if isinstance(item, LifecycleRecord) and item.event_type in _DONE_EVENTS and fixed is None:
                    await stream.remove_markets([item.market_ticker])

    async def follow_catalog() -> None:
        # On a timer, not on arriving frames: when every tracked market has closed, nothing arrives for them, and
        # the next window's market must still be picked up as it opens.
        while True:
            await asyncio.sleep(catalog_refresh_s)
            if fixed is None:
                want = await asyncio.to_thread(desired)
                await stream.add_markets(want - stream.markets)
                await stream.remove_markets(stream.markets - want)
            await stream.resync()  # a subscribe the venue refused (e.g. market not found yet) is sent again

    async def run() -> None:
        follower = asyncio.ensure_future(follow_catalog())
        try:
            await consume()
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    try:
        await _run_until(run(), stop)
    finally:
        await books.flush(writers, summary)
        for writer in writers.all():
            await writer.close()
        tape.close()
    summary.frames, summary.connects, summary.markets = stream.frames, stream.connects, len(stream.markets)
    _log.info("kalshi_collect_done", frames=summary.frames, quotes=summary.quotes, books=summary.books,
              trades=summary.trades, lifecycle=summary.lifecycle, feed_events=summary.feed_events,
              rejects=summary.rejects, connects=summary.connects)
    return summary


class _BookThrottle:
    """Store every snapshot and at most one book row per market per interval; the last state at the end."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stored_at: dict[str, float] = {}
        self._unstored: dict[str, BookUpdate] = {}

    async def offer(self, update: BookUpdate, writers: _Writers, summary: CollectSummary) -> None:
        ticker = update.book.market_ticker
        now = time.monotonic()
        if update.is_snapshot or now - self._stored_at.get(ticker, float("-inf")) >= self.interval_s:
            self._stored_at[ticker] = now
            self._unstored.pop(ticker, None)
            await self._store(update, writers, summary)
        else:
            self._unstored[ticker] = update

    async def flush(self, writers: _Writers, summary: CollectSummary) -> None:
        for update in self._unstored.values():
            await self._store(update, writers, summary)
        self._unstored.clear()

    @staticmethod
    async def _store(update: BookUpdate, writers: _Writers, summary: CollectSummary) -> None:
        summary.books += 1
        await writers.books.add(update.book.snapshot_row(update.book_ts, update.received_ts, "ws"))


def streamable_markets(engine: Engine, series: Sequence[str], now_ms: int, lead_ms: int) -> set[str]:
    """Listed, not yet closed markets of the series that are active, or created and opening within `lead_ms`.

    The open itself sends no lifecycle event (kalshi_api.md §5), so a market the collector learnt about from
    `created` (status NULL) or a refresh (`initialized`) is streamed from just before its `open_ts`.
    """
    if not series:
        return set()
    names = [f"s{i}" for i in range(len(series))]
    params: dict[str, object] = dict(zip(names, series, strict=True))
    params.update(now=now_ms, opens_by=now_ms + lead_ms)
    sql = f"""
        SELECT market_ticker FROM markets
        WHERE series_ticker IN ({", ".join(":" + n for n in names)}) AND catalog_status = 'listed'
          AND (close_ts IS NULL OR close_ts >= :now)
          AND (status = 'active' OR (COALESCE(status, 'initialized') = 'initialized' AND open_ts <= :opens_by))
    """  # noqa: S608 — generated placeholder names only; values are bound
    return {str(t) for t in read_frame(engine, sql, params)["market_ticker"].to_list()}


async def _run_until(work: Coroutine[Any, Any, None], stop: asyncio.Event | float) -> None:
    """Run `work` until `stop` is set (or for `stop` seconds); its own failure is raised."""
    if not isinstance(stop, asyncio.Event):
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(stop):
                await work
        return
    worker = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({worker, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (worker, waiter):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _debug_tap(write: Callable[[str, int, str], None]) -> Callable[[str, int, str], None]:
    def tap(raw: str, received_ts: int, connection_id: str) -> None:
        _log.debug("kalshi_frame", raw=raw[:1500], connection_id=connection_id)
        write(raw, received_ts, connection_id)

    return tap


async def _route(item: object, writers: _Writers, summary: CollectSummary, books: _BookThrottle) -> None:
    if isinstance(item, QuoteRecord):
        summary.quotes += 1
        await writers.quotes.add(item)
    elif isinstance(item, BookUpdate):
        await books.offer(item, writers, summary)
    elif isinstance(item, TradeRecord):
        summary.trades += 1
        await writers.trades.add(item)
    elif isinstance(item, LifecycleRecord):
        summary.lifecycle += 1
        await writers.lifecycle.add(item)
    elif isinstance(item, IndexPriceRecord):
        summary.index_prices += 1
        await writers.index.add(item)
    elif isinstance(item, FeedEventRecord):
        summary.feed_events += 1
        await writers.feed_events.add(item)
    elif isinstance(item, RejectRecord):
        summary.rejects += 1
        await writers.rejects.add(item)

"""The latest quote per market kept between live edge ticks: each tick reads only the quote rows that arrived since.

A fresh read (kbtc.pipeline.edge_inputs.load_latest_quotes) costs one index seek per market — ~35 ms of a
10k-market tick — although between two ticks 10 s apart only the markets that were quoted changed. The cache
holds the previous tick's answer and merges into it the rows the database received since, found by the
quotes' integer id (SQLite's rowid: assigned in commit order, since SQLite has one writer at a time).

Same as-of semantics as the fresh read: the newest `quote_ts` in [asof − max_age, asof] per listed market, ties
to the latest received, then the source name. A late row (stamped before the previous tick, inserted after it)
has a new id, so it is merged like any other; a row stamped after the previous tick's as-of time but inserted
before it (a venue clock ahead of ours) is read once its time is reached.

The cache assumes quote rows are only appended, which is what every live writer does (the collectors and the
poller insert and ignore re-delivered keys; a prune deletes rows older than its cutoff). What it can detect it
checks on every tick, reading fresh instead: time going backwards, other series or another window, a market
the cache has no history for, and the newest row it saw deleted or replaced (ids reused). What it cannot
detect cheaply — `kbtc import quotes` rewriting an existing quote in place, a prune inside the quote window —
lasts at most `full_read_interval_ms`, after which the tick reads fresh. PostgreSQL hands out ids when rows are
inserted, not when they commit (a concurrent writer can commit a lower id later), so there every tick reads
fresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl
from sqlalchemy import Connection, text

from kbtc.pipeline.edge_inputs import QUOTE_SCHEMA, load_latest_quotes, read_typed

_ORDER = ["market_ticker", "quote_ts", "received_ts", "source"]  # ascending: the last row per market wins
_COLUMNS = ", ".join(QUOTE_SCHEMA)
# Rows inserted since the watermark: a rowid range (the unary `+` keeps SQLite from scanning the whole quote
# window on ix_quotes_quote_ts instead). Those stamped after the as-of time wait in `pending` until it is reached.
_DELTA_SQL = f"SELECT {_COLUMNS} FROM quotes WHERE id > :last_id AND +quote_ts >= :start"  # noqa: S608
_FUTURE_SQL = f"SELECT {_COLUMNS} FROM quotes WHERE quote_ts > :asof"  # noqa: S608 — schema columns only
# Built once: SQLAlchemy caches a statement's compiled form per object.
_NEWEST = text("SELECT id, market_ticker, quote_ts, source, received_ts FROM quotes ORDER BY id DESC LIMIT 1")
_ROW = text("SELECT id, market_ticker, quote_ts, source, received_ts FROM quotes WHERE id = :id")


@dataclass(slots=True)
class LatestQuoteCache:
    """`load_latest_quotes` across live ticks, reading only the quote rows inserted since the previous tick.

    `full_read_interval_ms` bounds how long a change the cache cannot see (a quote rewritten in place) can
    last. `hits` counts the ticks served incrementally.
    """

    full_read_interval_ms: int = 300_000
    series: tuple[str, ...] = ()
    max_age_ms: int | None = None
    asof_ts: int | None = None
    full_read_ts: int | None = None
    # (id, market_ticker, quote_ts, source, received_ts) of the newest row seen; (0,) when the table was empty
    newest: tuple[object, ...] | None = None
    tickers: pl.Series | None = None  # the markets whose history the cache holds, in `load_markets` order
    position: dict[str, int] = field(default_factory=dict)  # ticker → its row in `latest`
    # One row per ticker, aligned with `tickers`: its newest quote with quote_ts <= `asof_ts`, nulls for none. Row
    # positions instead of joins on the ticker: merging a tick's new rows touches only their markets' rows.
    latest: pl.DataFrame | None = None
    pending: pl.DataFrame | None = None  # rows seen with quote_ts after `asof_ts` (a venue clock ahead of ours)
    hits: int = 0

    def load(
        self, conn: Connection, asof_ts: int, series: Sequence[str], markets: pl.DataFrame, *, max_age_ms: int
    ) -> pl.DataFrame:
        """`load_latest_quotes(conn, asof_ts, series, max_age_ms=...)` for `markets` (that tick's
        `load_markets` result), merged from the rows inserted since the previous tick where that is exact."""
        start = asof_ts - max_age_ms
        if not self._valid(conn, asof_ts, series, markets, max_age_ms):
            return self._full_read(conn, asof_ts, series, markets, max_age_ms)
        assert self.latest is not None and self.newest is not None and self.pending is not None
        new = read_typed(conn, _DELTA_SQL, {"last_id": self.newest[0], "start": start}, QUOTE_SCHEMA)
        newest = self._newest(conn)
        if self.pending.height:
            new = pl.concat([self.pending, new])
        due = pl.col("quote_ts") <= asof_ts
        # The watermark moves only after the merge: a tick that fails midway (and is retried) reads the same
        # rows again instead of losing them.
        self._merge(new.filter(due))
        self.newest, self.pending, self.asof_ts = newest, new.filter(~due), asof_ts
        self.hits += 1
        return self.latest.filter(pl.col("quote_ts") >= start)

    def _full_read(
        self, conn: Connection, asof_ts: int, series: Sequence[str], markets: pl.DataFrame, max_age_ms: int
    ) -> pl.DataFrame:
        quotes = load_latest_quotes(conn, asof_ts, series, max_age_ms=max_age_ms)
        if conn.dialect.name == "sqlite":
            self.series, self.max_age_ms, self.asof_ts, self.full_read_ts = tuple(series), max_age_ms, asof_ts, asof_ts
            self.newest = self._newest(conn)
            self.pending = read_typed(conn, _FUTURE_SQL, {"asof": asof_ts}, QUOTE_SCHEMA)
            self._align(markets["market_ticker"])
            self.latest = markets.select("market_ticker").join(
                quotes, on="market_ticker", how="left", maintain_order="left"
            ).select(list(QUOTE_SCHEMA))
        return quotes

    def _align(self, tickers: pl.Series) -> None:
        self.tickers = tickers
        self.position = {ticker: i for i, ticker in enumerate(tickers.to_list())}

    def _merge(self, delta: pl.DataFrame) -> None:
        """Replace each market's row by its newest new row where that is newer (quote_ts, received_ts, source)."""
        assert self.latest is not None
        if delta.height == 0:
            return
        best = delta.sort(_ORDER).unique("market_ticker", keep="last", maintain_order=True)
        # Rows of markets the cache does not hold cannot be returned: a market new to the list forces a full read.
        rows = [self.position.get(ticker) for ticker in best["market_ticker"].to_list()]
        best = best.filter(pl.Series([row is not None for row in rows]))
        index = pl.Series([row for row in rows if row is not None], dtype=pl.UInt32)
        current = self.latest[index]
        q, r, s = (best[name] for name in ("quote_ts", "received_ts", "source"))
        cq, cr, cs = (current[name] for name in ("quote_ts", "received_ts", "source"))
        newer = (cq.is_null() | (q > cq) | ((q == cq) & ((r > cr) | ((r == cr) & (s > cs))))).fill_null(False)
        if not newer.any():
            return
        index, winners = index.filter(newer), best.filter(newer)
        self.latest = pl.DataFrame([self.latest[name].clone().scatter(index, winners[name]) for name in QUOTE_SCHEMA])

    def _valid(
        self, conn: Connection, asof_ts: int, series: Sequence[str], markets: pl.DataFrame, max_age_ms: int
    ) -> bool:
        if (
            self.latest is None
            or self.tickers is None
            or self.newest is None
            or self.asof_ts is None
            or self.pending is None
            or self.full_read_ts is None
            or conn.dialect.name != "sqlite"
            or self.series != tuple(series)
            or self.max_age_ms != max_age_ms
            or not self.asof_ts <= asof_ts < self.full_read_ts + self.full_read_interval_ms
            or not self._holds(markets["market_ticker"])
        ):
            return False
        if self.newest == (0,):  # the table was empty: every row now is new
            return True
        # The newest row seen must still be there, unchanged: else ids were reused and "id > last" misses rows.
        return tuple(conn.execute(_ROW, {"id": self.newest[0]}).one_or_none() or ()) == self.newest

    def _holds(self, tickers: pl.Series) -> bool:
        """Whether the cache holds every market of `tickers`; fewer markets (expired since) shrink it to them."""
        assert self.tickers is not None and self.latest is not None
        if tickers.equals(self.tickers):
            return True
        rows = [self.position.get(ticker) for ticker in tickers.to_list()]
        if any(row is None for row in rows):
            return False
        self.latest = self.latest[pl.Series(rows, dtype=pl.UInt32)]
        self._align(tickers)
        return True

    @staticmethod
    def _newest(conn: Connection) -> tuple[object, ...]:
        row = conn.execute(_NEWEST).one_or_none()
        return tuple(row) if row is not None else (0,)  # ids start at 1

"""The spot ticks of the volatility lookback kept between live edge ticks: each tick reads only the rows since.

A live tick needs the last ~66 minutes of Coinbase ticks (the volatility lookback and a minute before it for
the candles). Read fresh, that is ~8k rows at 2 ticks a second, and building them into a frame was the largest
single cost of a 500-market tick (~25 ms of ~100). Between two ticks 10 s apart only a few rows arrived, so the
cache keeps the previous tick's rows and appends those the database received since, found by the ticks'
integer id (SQLite's rowid: assigned in commit order, since SQLite has one writer at a time), as
kbtc.pipeline.quote_cache does for quotes.

Same answer as the fresh read (kbtc.pipeline.edge_inputs.load_spot): the ticks with `tick_ts` in
[start, asof], ordered by (tick_ts, venue_time_ns). A late row (stamped before the previous tick, inserted
after it) has a new id and is sorted into place; a row stamped after the as-of time is held until that time
is reached.

The cache assumes spot rows are only appended, which is what the collectors and the backfill do (they insert
and ignore re-delivered keys; a prune deletes rows far older than the lookback). It reads fresh instead when
it can tell otherwise: another product, time going backwards, a window starting before the one it holds, and
the newest row it saw deleted or replaced (ids reused). A change it cannot see (a row rewritten in place)
lasts at most `full_read_interval_ms`. PostgreSQL hands out ids when rows are inserted, not when they commit,
so there every tick reads fresh.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from sqlalchemy import Connection, text

from kbtc.pipeline.edge_inputs import SPOT_SCHEMA, load_spot_ticks, read_typed

# The cache keeps `venue_time_ns`, the second sort key, so that rows arriving late sort as the fresh read does.
_CACHE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {**SPOT_SCHEMA, "venue_time_ns": pl.Int64}
_ORDER = ["ts", "venue_time_ns"]
_COLUMNS = "tick_ts AS ts, price, best_bid, best_ask, venue_time_ns"
# The unary `+` keeps SQLite on the rowid range instead of the (product, tick_ts) index over the whole window.
_DELTA_SQL = (f"SELECT {_COLUMNS} FROM spot_ticks "  # noqa: S608 — constant column list; values are bound
              "WHERE id > :last_id AND product_id = :product AND +tick_ts >= :start")
_FULL_SQL = (f"SELECT {_COLUMNS} FROM spot_ticks "  # noqa: S608 — constant column list; values are bound
             "WHERE product_id = :product AND tick_ts >= :start ORDER BY tick_ts, venue_time_ns")
_NEWEST = text("SELECT id, product_id, source, venue_time_ns FROM spot_ticks ORDER BY id DESC LIMIT 1")
_ROW = text("SELECT id, product_id, source, venue_time_ns FROM spot_ticks WHERE id = :id")


@dataclass(slots=True)
class SpotTickCache:
    """`load_spot_ticks` across live ticks, reading only the spot rows inserted since the previous tick.

    `hits` counts the ticks served incrementally.
    """

    full_read_interval_ms: int = 300_000
    product_id: str | None = None
    held_from_ts: int | None = None  # every row of the product with tick_ts >= this and id <= newest is held
    asof_ts: int | None = None
    full_read_ts: int | None = None
    newest: tuple[object, ...] | None = None  # (id, product_id, source, venue_time_ns); (0,) for an empty table
    ticks: pl.DataFrame | None = None  # sorted by (ts, venue_time_ns), future rows included
    hits: int = 0

    def load(self, conn: Connection, product_id: str, start_ts: int, asof_ts: int) -> pl.DataFrame:
        """`load_spot_ticks(conn, product_id, start_ts, asof_ts)`, merged from the rows inserted since the
        previous tick where that is exact."""
        if not self._valid(conn, product_id, start_ts, asof_ts):
            return self._full_read(conn, product_id, start_ts, asof_ts)
        assert self.ticks is not None and self.newest is not None and self.held_from_ts is not None
        new = read_typed(conn, _DELTA_SQL, {"last_id": self.newest[0], "product": product_id,
                                            "start": self.held_from_ts}, _CACHE_SCHEMA)
        newest = _newest(conn)
        ticks = self.ticks.filter(pl.col("ts") >= start_ts) if start_ts > self.held_from_ts else self.ticks
        if new.height:
            new = new.sort(_ORDER, maintain_order=True)
            appended = ticks.height == 0 or _key(new, 0) >= _key(ticks, ticks.height - 1)
            ticks = pl.concat([ticks, new])
            if not appended:  # a late row: sorted into place (stable, so earlier rows keep their order)
                ticks = ticks.sort(_ORDER, maintain_order=True)
        # State changes only once everything was read and merged: a tick that fails midway (and is retried)
        # leaves the cache as the previous tick left it.
        self.ticks, self.newest = ticks, newest
        self.held_from_ts, self.asof_ts = max(start_ts, self.held_from_ts), asof_ts
        self.hits += 1
        return self._answer(start_ts, asof_ts)

    def _answer(self, start_ts: int, asof_ts: int) -> pl.DataFrame:
        assert self.ticks is not None
        ts = self.ticks["ts"]
        lo, hi = ts.search_sorted(start_ts, side="left"), ts.search_sorted(asof_ts, side="right")
        return self.ticks.slice(lo, hi - lo).select(list(SPOT_SCHEMA))

    def _full_read(self, conn: Connection, product_id: str, start_ts: int, asof_ts: int) -> pl.DataFrame:
        if conn.dialect.name != "sqlite":
            return load_spot_ticks(conn, product_id, start_ts, asof_ts)
        newest = _newest(conn)
        self.ticks = read_typed(conn, _FULL_SQL, {"product": product_id, "start": start_ts}, _CACHE_SCHEMA)
        self.newest = newest
        self.product_id, self.held_from_ts, self.asof_ts, self.full_read_ts = product_id, start_ts, asof_ts, asof_ts
        return self._answer(start_ts, asof_ts)

    def _valid(self, conn: Connection, product_id: str, start_ts: int, asof_ts: int) -> bool:
        if (
            self.ticks is None
            or self.newest is None
            or self.held_from_ts is None
            or self.asof_ts is None
            or self.full_read_ts is None
            or conn.dialect.name != "sqlite"
            or self.product_id != product_id
            or start_ts < self.held_from_ts
            or not self.asof_ts <= asof_ts < self.full_read_ts + self.full_read_interval_ms
        ):
            return False
        if self.newest == (0,):  # the table was empty: every row now is new
            return True
        # The newest row seen must still be there, unchanged: else ids were reused and "id > last" misses rows.
        return tuple(conn.execute(_ROW, {"id": self.newest[0]}).one_or_none() or ()) == self.newest


def _key(frame: pl.DataFrame, row: int) -> tuple[int, int]:
    return int(frame["ts"][row]), int(frame["venue_time_ns"][row])


def _newest(conn: Connection) -> tuple[object, ...]:
    row = conn.execute(_NEWEST).one_or_none()
    return tuple(row) if row is not None else (0,)  # ids start at 1

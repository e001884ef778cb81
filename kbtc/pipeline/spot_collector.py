"""Collect Coinbase spot: the feed client's output → `spot_ticks` (batched), `feed_events`, `rejects`, the tape.

Ticks are buffered by a `BatchWriter` and written every `batch_rows` rows or `batch_delay_s` seconds in one
short transaction (`INSERT … ON CONFLICT DO NOTHING` on product, source and venue time, the statement of
`kbtc.db.store.upsert`): a kill -9 loses at most the unflushed batch, and a restart, a replayed tape or an
overlapping session never duplicates a row.
Every received frame goes to the tape (`<DATA_DIR>/tape/coinbase/…`) before it is parsed, so whatever the
parser made of it can be re-derived. Feed events are written as they happen (they are rare and they are what
an operator reads after an incident).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from kbtc.config import Settings
from kbtc.db.engine import write_transaction
from kbtc.db.store import table_of, upsert_sql
from kbtc.log import get_logger
from kbtc.pipeline.batching import BatchWriter
from kbtc.pipeline.recording import record_feed_events, record_rejects
from kbtc.pipeline.tape import TapeWriter
from kbtc.venues.backoff import Backoff
from kbtc.venues.coinbase.messages import TICK_COLUMNS, SpotTick
from kbtc.venues.coinbase.ws import FEED_NAME, CoinbaseFeed, FeedConfig, FeedStats
from kbtc.venues.records import FeedEventRecord, RejectRecord

_log = get_logger(__name__)


def write_ticks(engine: Engine, ticks: Sequence[SpotTick]) -> int:
    """Insert ticks in one transaction, ignoring ones already stored (same product, source, venue time).

    The statement is `kbtc.db.store.upsert`'s (`upsert_sql`), but the tick tuples go to the driver as they
    are: building a frame first would double the cost of the collector's hottest write.
    """
    if not ticks:
        return 0
    sql, order = upsert_sql(engine, table_of("spot_ticks"), TICK_COLUMNS, on_conflict="ignore")
    params: Sequence[Any]
    if order == TICK_COLUMNS:
        params = ticks
    elif order is None:  # a named paramstyle (PostgreSQL)
        params = [tick._asdict() for tick in ticks]
    else:
        params = [tuple(getattr(tick, name) for name in order) for tick in ticks]
    with write_transaction(engine) as conn:
        conn.exec_driver_sql(sql, params)
    return len(ticks)


class SpotStore:
    """A `FeedSink` that stores everything the Coinbase feed delivers."""

    def __init__(
        self,
        engine: Engine,
        tape: TapeWriter | None,
        *,
        batch_rows: int = 1000,
        batch_delay_s: float = 0.25,
        debug: bool = False,
    ) -> None:
        self.engine = engine
        self.tape = tape
        self.debug = debug
        self.ticks = BatchWriter[SpotTick](self._write_ticks, max_rows=batch_rows, max_delay_s=batch_delay_s)
        self.rejects = BatchWriter[RejectRecord](self._write_rejects, max_rows=500, max_delay_s=batch_delay_s)
        self.feed_events = 0

    def _write_ticks(self, rows: list[SpotTick]) -> None:
        write_ticks(self.engine, rows)

    def _write_rejects(self, rejects: list[RejectRecord]) -> None:
        record_rejects(self.engine, rejects)

    async def on_frame(self, raw: str | bytes, received_ts: int, connection_id: str) -> None:
        """Append the frame to the tape."""
        if self.tape is not None:
            self.tape.write(raw, received_ts, connection_id)
        if self.debug:
            _log.debug("coinbase_frame", connection_id=connection_id, received_ts=received_ts, raw=str(raw)[:300])

    async def on_ticks(self, ticks: list[SpotTick]) -> None:
        """Buffer ticks for the next batch."""
        await self.ticks.add_many(ticks)

    async def on_event(self, event: FeedEventRecord) -> None:
        """Write a feed event now (a later record of the same event replaces the earlier one)."""
        self.feed_events += 1
        await asyncio.to_thread(record_feed_events, self.engine, [event], on_conflict="update")

    async def on_rejects(self, rejects: list[RejectRecord]) -> None:
        """Buffer rejects for the next batch."""
        await self.rejects.add_many(rejects)

    async def close(self) -> None:
        """Flush both batches and close the tape."""
        try:
            await self.ticks.close()
            await self.rejects.close()
        finally:
            if self.tape is not None:
                self.tape.close()


@dataclass(frozen=True, slots=True)
class SpotCollectResult:
    """What a collector session did."""

    feed: FeedStats
    ticks_written: int
    rejects_written: int
    feed_events: int
    tape_frames: int
    tape_root: Path | None


def feed_config(settings: Settings, **overrides: Any) -> FeedConfig:
    """The feed client's settings from `COINBASE_*` (overrides for tests and benchmarks)."""
    values: dict[str, Any] = {
        "url": settings.coinbase_feed_ws_url,
        "product_id": settings.coinbase_product_id,
        "source": settings.coinbase_source,
        "stale_s": settings.coinbase_stale_seconds,
        "heartbeat_timeout_s": settings.coinbase_heartbeat_timeout_seconds,
        "market_trades": settings.coinbase_market_trades,
        "backoff": Backoff(base_s=0.5, cap_s=30.0),
    }
    values.update(overrides)
    return FeedConfig(**values)


async def collect_spot(
    settings: Settings,
    engine: Engine,
    stop: asyncio.Event,
    *,
    debug: bool = False,
    tape: bool = True,
    **feed_overrides: Any,
) -> SpotCollectResult:
    """Run the Coinbase feed until `stop` is set, then flush the batches, close the tape and return counts."""
    tape_root = settings.data_dir / "tape" if tape else None
    writer = TapeWriter(tape_root, FEED_NAME) if tape_root is not None else None
    store = SpotStore(engine, writer, debug=debug)
    feed = CoinbaseFeed(feed_config(settings, **feed_overrides), store)
    _log.info("spot_collector_start", url=feed.config.url, source=feed.config.source, product=feed.config.product_id)
    try:
        await feed.run(stop)
    finally:
        await store.close()
    result = SpotCollectResult(
        feed=feed.stats,
        ticks_written=store.ticks.rows_flushed,
        rejects_written=store.rejects.rows_flushed,
        feed_events=store.feed_events,
        tape_frames=writer.frames_written if writer is not None else 0,
        tape_root=tape_root,
    )
    _log.info(
        "spot_collector_stop",
        frames=feed.stats.frames,
        ticks=result.ticks_written,
        rejects=result.rejects_written,
        gaps=feed.stats.gaps,
        connects=feed.stats.connects,
        stale_periods=feed.stats.stale_periods,
    )
    return result

"""The Coinbase WebSocket feed client: subscribe, parse, detect gaps and stalls, reconnect forever.

Behaviour (reference/coinbase_api.md §0, §1.2, §1.5, §1.6, §5.6):
- subscribe right after connecting (the venue drops a socket that has not subscribed within 5 s), one message
  per channel on Advanced Trade, always including `heartbeats`;
- `sequence_num` is checked on every frame of a connection, whatever its channel (one counter per connection,
  as observed by several clients; the watermark restarts on reconnect); a jump is a `gap` feed event;
- a watchdog: no heartbeat for `heartbeat_timeout_s` → the socket is dead, close and reconnect; no ticker for
  `stale_s` while heartbeats flow → a `stale` event, re-emitted with its duration when tickers resume;
- every close — clean (1000/1001) or not — is followed by a reconnect with capped, jittered backoff
  (the official SDK stops on a clean 1001, coinbase-advanced-py #63).

The client has no database code: it hands frames, ticks, feed events and rejects to a `FeedSink`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException

from kbtc.log import get_logger
from kbtc.venues.backoff import Backoff
from kbtc.venues.coinbase.messages import FeedSource, FrameKind, ParsedFrame, SpotTick
from kbtc.venues.coinbase.parsing import parse_frame, subscribe_messages
from kbtc.venues.records import FeedEventKind, FeedEventRecord, RejectRecord

FEED_NAME = "coinbase"
_log = get_logger(__name__)


def now_ms() -> int:
    """Wall-clock epoch milliseconds."""
    return time.time_ns() // 1_000_000


class FeedSink(Protocol):
    """Where the client delivers what it receives (the collector stores it; tests collect it)."""

    async def on_frame(self, raw: str | bytes, received_ts: int, connection_id: str) -> None:
        """Every frame exactly as received (for the tape)."""

    async def on_ticks(self, ticks: list[SpotTick]) -> None:
        """Validated ticker updates of the subscribed product."""

    async def on_event(self, event: FeedEventRecord) -> None:
        """A connect, disconnect, gap, stale period or error (a stale event is sent again when it ends)."""

    async def on_rejects(self, rejects: list[RejectRecord]) -> None:
        """Frames or tickers that failed parsing or validation."""


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """Where and how to connect."""

    url: str
    product_id: str = "BTC-USD"
    source: FeedSource = "advanced"
    stale_s: float = 10.0
    heartbeat_timeout_s: float = 5.0
    market_trades: bool = False
    backoff: Backoff = field(default_factory=lambda: Backoff(base_s=0.5, cap_s=30.0))
    open_timeout_s: float = 10.0
    # A connection that lived this long resets the backoff to its base delay.
    healthy_after_s: float = 30.0
    watchdog_interval_s: float = 0.25


@dataclass(slots=True)
class FeedStats:
    """Counters over the client's lifetime."""

    connects: int = 0
    connect_failures: int = 0
    frames: int = 0
    ticks: int = 0
    rejects: int = 0
    gaps: int = 0
    stale_periods: int = 0
    errors: int = 0
    out_of_order: int = 0
    gaps_filled: int = 0


class SequenceTracker:
    """Per-connection sequence watermark (keyed by product on the Exchange feed, a single key otherwise).

    With `contiguous` a number above watermark + 1 is a gap (Advanced Trade `sequence_num`). Without it (the
    Exchange feed, whose ticker `sequence` skips every full-channel message we are not subscribed to) only a
    number at or below the watermark is an anomaly.
    """

    def __init__(self, *, contiguous: bool) -> None:
        self.contiguous = contiguous
        self.out_of_order = 0
        self._last: dict[str | None, int] = {}

    def observe(self, sequence: int, key: str | None = None) -> int | None:
        """Record `sequence`; return the expected number when messages were skipped, else None.

        A number at or below the watermark (a duplicate or late message) is counted in `out_of_order` and
        leaves the watermark alone.
        """
        last = self._last.get(key)
        if last is None:
            # The first frame sets the watermark: a per-connection start value is not documented.
            self._last[key] = sequence
            return None
        if sequence <= last:
            self.out_of_order += 1
            return None
        self._last[key] = sequence
        if self.contiguous and sequence > last + 1:
            return last + 1
        return None


@dataclass(slots=True)
class _OpenGap:
    event: FeedEventRecord
    missing: set[int]


# Gaps whose missing numbers may still arrive late (a reordered frame); bounded memory per connection.
_OPEN_GAPS = 32
_MAX_TRACKED_MISSING = 1000


@dataclass(slots=True)
class _Connection:
    connection_id: str
    connected_mono: float
    last_heartbeat_mono: float
    last_ticker_mono: float
    last_ticker_ts: int
    last_frame_ts: int
    tracker: SequenceTracker
    stale_since_ts: int | None = None
    heartbeats: int = 0
    open_gaps: deque[_OpenGap] = field(default_factory=lambda: deque(maxlen=_OPEN_GAPS))


class CoinbaseFeed:
    """Runs the feed until `stop` is set, delivering everything to `sink`."""

    def __init__(self, config: FeedConfig, sink: FeedSink) -> None:
        self.config = config
        self.sink = sink
        self.stats = FeedStats()
        self._session_id = uuid.uuid4().hex[:8]
        self._connection_number = 0

    def _event(
        self,
        kind: FeedEventKind,
        connection_id: str,
        event_ts: int,
        *,
        duration_ms: int | None = None,
        detail: str | None = None,
        expected_seq: int | None = None,
        received_seq: int | None = None,
    ) -> FeedEventRecord:
        return FeedEventRecord(
            FEED_NAME,
            connection_id,
            kind,
            event_ts,
            self.config.product_id,
            expected_seq=expected_seq,
            received_seq=received_seq,
            duration_ms=duration_ms,
            detail=detail,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, subscribe, read and reconnect until `stop` is set; the last event is a `disconnect`."""
        attempt = 0
        down_since_ts: int | None = None
        while not stop.is_set():
            try:
                ws = await connect(self.config.url, open_timeout=self.config.open_timeout_s, max_size=10 * 2**20)
            except InvalidURI:
                raise
            except (OSError, TimeoutError, WebSocketException) as exc:
                self.stats.connect_failures += 1
                down_since_ts = down_since_ts or now_ms()
                _log.warning("coinbase_connect_failed", url=self.config.url, error=repr(exc), attempt=attempt)
                detail = f"connect failed: {exc!r}"[:500]
                await self.sink.on_event(self._event(FeedEventKind.ERROR, "", now_ms(), detail=detail))
                await self._sleep(stop, self.config.backoff.delay_s(attempt))
                attempt += 1
                continue
            reason, lived_s = await self._serve(ws, stop, down_since_ts)
            down_since_ts = now_ms()
            if stop.is_set():
                break
            attempt = 0 if lived_s >= self.config.healthy_after_s else attempt + 1
            delay = self.config.backoff.delay_s(attempt)
            _log.info("coinbase_reconnecting", reason=reason, delay_s=round(delay, 3))
            await self._sleep(stop, delay)

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    async def _serve(self, ws: ClientConnection, stop: asyncio.Event, down_since_ts: int | None) -> tuple[str, float]:
        self._connection_number += 1
        connected_ts = now_ms()
        mono = time.monotonic()
        conn = _Connection(
            connection_id=f"{self._session_id}-{self._connection_number}",
            connected_mono=mono,
            last_heartbeat_mono=mono,
            last_ticker_mono=mono,
            last_ticker_ts=connected_ts,
            last_frame_ts=connected_ts,
            tracker=SequenceTracker(contiguous=self.config.source == "advanced"),
        )
        self.stats.connects += 1
        downtime = None if down_since_ts is None else connected_ts - down_since_ts
        await self.sink.on_event(
            self._event(
                FeedEventKind.CONNECT, conn.connection_id, connected_ts, duration_ms=downtime, detail=self.config.url
            )
        )
        _log.info("coinbase_connected", connection_id=conn.connection_id, url=self.config.url, downtime_ms=downtime)
        reader = asyncio.ensure_future(self._read(ws, conn))
        watchdog = asyncio.ensure_future(self._watch(conn))
        stopper = asyncio.ensure_future(stop.wait())
        tasks = {reader, watchdog, stopper}
        try:
            for message in subscribe_messages(
                self.config.source, self.config.product_id, market_trades=self.config.market_trades
            ):
                await ws.send(json.dumps(message))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            ended = reader if reader in done else watchdog
            # A failing sink (the database) is fatal: `result()` re-raises it.
            reason = "shutdown" if stopper in done else str(ended.result())
        except ConnectionClosed as exc:
            reason = f"connection lost while subscribing: {exc}"
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)
        closed_ts = now_ms()
        await self._end_stale(conn, closed_ts)
        lived_s = time.monotonic() - conn.connected_mono
        await self.sink.on_event(
            self._event(
                FeedEventKind.DISCONNECT, conn.connection_id, closed_ts, duration_ms=int(lived_s * 1000), detail=reason
            )
        )
        _log.info("coinbase_disconnected", connection_id=conn.connection_id, reason=reason, lived_s=round(lived_s, 3))
        return reason, lived_s

    async def _read(self, ws: ClientConnection, conn: _Connection) -> str:
        try:
            async for raw in ws:
                await self._handle(raw, conn)
        except ConnectionClosed as exc:
            return f"connection lost: {exc}"
        return f"closed by server: code {ws.close_code} {ws.close_reason or ''}".strip()

    async def _watch(self, conn: _Connection) -> str:
        config = self.config
        while True:
            await asyncio.sleep(config.watchdog_interval_s)
            mono = time.monotonic()
            silent_s = mono - conn.last_heartbeat_mono
            if silent_s > config.heartbeat_timeout_s:
                return f"no heartbeat for {silent_s:.1f} s"
            if conn.stale_since_ts is None and mono - conn.last_ticker_mono > config.stale_s:
                conn.stale_since_ts = conn.last_ticker_ts
                self.stats.stale_periods += 1
                _log.warning("coinbase_stale", connection_id=conn.connection_id, since_ts=conn.stale_since_ts)
                await self.sink.on_event(
                    self._event(
                        FeedEventKind.STALE,
                        conn.connection_id,
                        conn.stale_since_ts,
                        detail=f"no ticker for {config.stale_s:g} s while heartbeats flow",
                    )
                )

    async def _end_stale(self, conn: _Connection, end_ts: int) -> None:
        if conn.stale_since_ts is None:
            return
        since, conn.stale_since_ts = conn.stale_since_ts, None
        # Same key as the opening event: the store replaces it, now with the stale period's duration.
        await self.sink.on_event(
            self._event(
                FeedEventKind.STALE, conn.connection_id, since, duration_ms=end_ts - since, detail="stale period ended"
            )
        )

    async def _handle(self, raw: str | bytes, conn: _Connection) -> None:
        received_ts = now_ms()
        self.stats.frames += 1
        await self.sink.on_frame(raw, received_ts, conn.connection_id)
        parsed = parse_frame(self.config.source, raw, received_ts, self.config.product_id)
        if parsed.sequence_num is not None:
            await self._check_sequence(parsed, conn, received_ts)
        conn.last_frame_ts = received_ts
        kind = parsed.kind
        if kind is FrameKind.HEARTBEAT:
            conn.last_heartbeat_mono = time.monotonic()
            conn.heartbeats += 1
        elif kind is FrameKind.TICKER and parsed.ticks:
            conn.last_ticker_mono = time.monotonic()
            conn.last_ticker_ts = received_ts
            await self._end_stale(conn, received_ts)
            self.stats.ticks += len(parsed.ticks)
            await self.sink.on_ticks(parsed.ticks)
        elif kind is FrameKind.ERROR:
            self.stats.errors += 1
            _log.warning("coinbase_error_frame", message=parsed.error_message)
            await self.sink.on_event(
                self._event(FeedEventKind.ERROR, conn.connection_id, received_ts, detail=parsed.error_message)
            )
        elif kind is FrameKind.SUBSCRIPTIONS and not parsed.subscriptions:
            # Several clients treat an empty acknowledgement as a rejected subscription (§1.2).
            self.stats.errors += 1
            await self.sink.on_event(
                self._event(FeedEventKind.ERROR, conn.connection_id, received_ts, detail="empty subscriptions ack")
            )
        if parsed.rejects:
            self.stats.rejects += len(parsed.rejects)
            await self.sink.on_rejects(parsed.rejects)

    async def _check_sequence(self, parsed: ParsedFrame, conn: _Connection, received_ts: int) -> None:
        assert parsed.sequence_num is not None
        received = parsed.sequence_num
        late_before = conn.tracker.out_of_order
        expected = conn.tracker.observe(received, parsed.sequence_product)
        if conn.tracker.out_of_order > late_before:
            self.stats.out_of_order += 1
            _log.debug("coinbase_out_of_order", connection_id=conn.connection_id, sequence=received)
            await self._late_arrival(conn, received)
        elif expected is not None:
            self.stats.gaps += 1
            _log.warning("coinbase_gap", connection_id=conn.connection_id, expected=expected, received=received)
            event = self._event(
                FeedEventKind.GAP,
                conn.connection_id,
                received_ts,
                expected_seq=expected,
                received_seq=received,
                # The window in which the lost messages were sent: since the previous frame.
                duration_ms=received_ts - conn.last_frame_ts,
                detail=f"{received - expected} message(s) lost after ts {conn.last_frame_ts}",
            )
            if received - expected <= _MAX_TRACKED_MISSING:
                conn.open_gaps.append(_OpenGap(event, set(range(expected, received))))
            await self.sink.on_event(event)

    async def _late_arrival(self, conn: _Connection, sequence: int) -> None:
        # "A lower number … means out-of-order delivery" (§1.6): a gap whose every missing number arrived
        # late lost nothing. Its event is re-sent (same key) to say so.
        for gap in conn.open_gaps:
            if sequence in gap.missing:
                gap.missing.discard(sequence)
                if not gap.missing:
                    conn.open_gaps.remove(gap)
                    self.stats.gaps_filled += 1
                    await self.sink.on_event(
                        replace(gap.event, duration_ms=0, detail="filled: the message(s) arrived late, nothing lost")
                    )
                return

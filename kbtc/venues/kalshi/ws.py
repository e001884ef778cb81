"""WebSocket stream client: signed connect, subscriptions from a desired state, books, gaps, reconnects (§5).

- Connect: the three `KALSHI-ACCESS-*` headers on the upgrade request, signed over
  `timestamp_ms + "GET" + "/trade-api/ws/v2"` with a fresh timestamp on every (re)connect (§2). A 401/403
  on the handshake is fatal (`KalshiAuthError`), anything else is retried with capped backoff + jitter.
- Subscribe (one command each, ids counting up): `orderbook_delta`, `ticker`, `trade` for the tracked
  markets (`market_tickers`), `market_lifecycle_v2` (all markets; it cannot be filtered), and optionally
  `cfbenchmarks_value` with `index_ids`. The `subscribed` replies map channels to `sid`s.
- Markets added or removed while connected go out as `update_subscription` `add_markets`/`delete_markets`;
  after a reconnect everything is resubscribed from the desired state.
- `seq` is checked per `sid` on `orderbook_snapshot`/`orderbook_delta` (and `cfbenchmarks_value`). A jump, or
  error 25 (subscription buffer overflow), marks that sid's books stale and sends `get_snapshot` for its
  markets; deltas for a stale book are ignored until its snapshot arrives. Every gap is a feed event.
- A delta or snapshot that arrives in order but cannot be applied (a field missing or malformed) is a lost
  update too: it goes to `rejects`, and its book (every book of the sid when the ticker is unreadable) is
  marked stale and re-snapshotted, recorded as a gap. A book whose snapshots keep failing is left stale after
  `MAX_SNAPSHOT_RETRIES` requests (an error feed event), so a broken venue cannot make us loop.
- Liveness: websockets answers Kalshi's 10 s pings and sends its own (a missing pong drops the socket);
  a silence watchdog reconnects when no frame arrived for `silence_timeout_s`.
- Error replies: 9 (auth required) raises `KalshiAuthError`; codes meaning our command is malformed raise
  `KalshiStreamError`; 25 triggers a re-snapshot; every other code is recorded as a feed event. A refused
  `subscribe` (e.g. 16, a market not found) leaves its channel unsubscribed: it is subscribed again at the
  next sync (`resync()`, a market change, or another channel's `subscribed` reply).
- Every raw frame goes to `on_frame` (the tape) before it is parsed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from kbtc.log import get_logger
from kbtc.venues.backoff import Backoff
from kbtc.venues.kalshi.auth import KalshiSigner
from kbtc.venues.kalshi.errors import KalshiAuthError, KalshiStreamError
from kbtc.venues.kalshi.marketdata import (
    IndexPriceRecord,
    LifecycleRecord,
    QuoteRecord,
    TradeRecord,
    parse_index_value,
    parse_lifecycle,
    parse_trade,
    quote_from_ticker,
)
from kbtc.venues.kalshi.orderbook import OrderBook, parse_delta
from kbtc.venues.kalshi.parsing import FieldError, time_ms
from kbtc.venues.records import FeedEventKind, FeedEventRecord, RejectRecord

_log = get_logger(__name__)
FEED = "kalshi"
MARKET_CHANNELS = ("orderbook_delta", "ticker", "trade")
ERROR_AUTH_REQUIRED = 9
ERROR_BUFFER_OVERFLOW = 25
# Error codes that mean our command itself is malformed (§5 "Error codes"): retrying cannot help, so stop.
# Others (6 already subscribed, 7 unknown sid, 16 market not found, 10/17/18 server-side) are recorded only.
FATAL_ERROR_CODES = frozenset({1, 2, 3, 4, 5, 8, 11, 12, 13, 14, 15})
MAX_SNAPSHOT_RETRIES = 3  # consecutive unusable snapshots of one book before we stop asking


class BookUpdate(NamedTuple):
    """A book changed (snapshot or delta); `book` is the live object, copy what you keep."""

    book: OrderBook
    book_ts: int
    received_ts: int
    is_snapshot: bool


StreamItem = (
    QuoteRecord | TradeRecord | LifecycleRecord | IndexPriceRecord | BookUpdate | FeedEventRecord | RejectRecord
)


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Timing and protocol options of the stream."""

    ping_interval_s: float = 10.0
    ping_timeout_s: float = 10.0
    silence_timeout_s: float = 120.0
    open_timeout_s: float = 10.0
    backoff: Backoff = field(default_factory=lambda: Backoff(base_s=0.5, cap_s=30.0))
    use_yes_price: bool = False
    lifecycle: bool = True
    index_ids: tuple[str, ...] = ()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class KalshiStream:
    """Streams parsed Kalshi market data for a changing set of markets; iterate `items()`."""

    def __init__(
        self,
        url: str,
        markets: Iterable[str] = (),
        *,
        signer: KalshiSigner | None = None,
        settings: StreamSettings | None = None,
        on_frame: Callable[[str, int, str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self.settings = settings or StreamSettings()
        self.markets: set[str] = set(markets)
        self.books: dict[str, OrderBook] = {}
        self._signer = signer
        self._on_frame = on_frame
        self._rng = rng
        self._ws: ClientConnection | None = None
        self._next_id = 1
        self._pending: dict[int, str] = {}  # command id → channel
        self._sids: dict[str, int] = {}  # channel → sid
        self._last_seq: dict[int, int] = {}
        self._pending_sends: list[dict[str, Any]] = []
        self._sent: dict[str, set[str]] = {}  # channel → markets its subscription covers
        self._snapshot_failures: dict[str, int] = {}  # ticker ("" = unreadable) → unusable snapshots in a row
        self.connection_id = ""
        self.connects = 0
        self.frames = 0

    # -- desired state ------------------------------------------------------------------------------------

    async def add_markets(self, tickers: Iterable[str]) -> None:
        """Track more markets (sent now when connected, else with the next subscribe)."""
        new = set(tickers) - self.markets
        if new:
            self.markets.update(new)
            self._sync()
            await self._flush_sends()

    async def remove_markets(self, tickers: Iterable[str]) -> None:
        """Stop tracking markets (their books are dropped)."""
        gone = self.markets & set(tickers)
        if gone:
            self.markets.difference_update(gone)
            for ticker in gone:
                self.books.pop(ticker, None)
            self._sync()
            await self._flush_sends()

    async def resync(self) -> None:
        """Subscribe channels whose `subscribe` the venue refused, and send any market change not sent yet."""
        self._sync()
        await self._flush_sends()

    def _other_channels(self) -> list[str]:
        """The channels wanted besides the market channels."""
        channels = ["market_lifecycle_v2"] if self.settings.lifecycle else []
        if self.settings.index_ids:
            channels.append("cfbenchmarks_value")
        return channels

    def _sync(self) -> None:
        """Queue the commands that bring the subscriptions to the desired state.

        A channel with neither a `sid` nor a subscribe in flight (its subscribe was refused) is subscribed again;
        acknowledged market channels get `update_subscription` `add_markets`/`delete_markets`.
        """
        if self._ws is None:
            return  # the next connection subscribes from the desired state
        in_flight = set(self._pending.values())
        for channel in self._other_channels():
            if channel not in self._sids and channel not in in_flight:
                self._subscribe(channel)
        for channel in MARKET_CHANNELS:
            sid = self._sids.get(channel)
            if sid is None:
                if channel not in in_flight and self.markets:
                    self._subscribe(channel)
                continue
            sent = self._sent.setdefault(channel, set())
            for action, tickers in (("add_markets", self.markets - sent), ("delete_markets", sent - self.markets)):
                if tickers:
                    self._queue("update_subscription",
                                {"sids": [sid], "market_tickers": sorted(tickers), "action": action})
            self._sent[channel] = set(self.markets)

    def _queue(self, cmd: str, params: Mapping[str, Any] | None, channel: str = "") -> int:
        command_id = self._next_id
        self._next_id += 1
        message: dict[str, Any] = {"id": command_id, "cmd": cmd}
        if params is not None:
            message["params"] = dict(params)
        if channel:
            self._pending[command_id] = channel
        self._pending_sends.append(message)
        return command_id

    def _subscribe(self, channel: str) -> None:
        params: dict[str, Any] = {"channels": [channel]}
        if channel in MARKET_CHANNELS:
            params["market_tickers"] = sorted(self.markets)
            self._sent[channel] = set(self.markets)
            if channel == "orderbook_delta" and self.settings.use_yes_price:
                params["use_yes_price"] = True
        elif channel == "cfbenchmarks_value":
            params["index_ids"] = list(self.settings.index_ids)
        self._queue("subscribe", params, channel)

    async def _flush_sends(self) -> None:
        while self._pending_sends and self._ws is not None:
            message = self._pending_sends.pop(0)
            await self._ws.send(json.dumps(message))

    # -- connection loop ----------------------------------------------------------------------------------

    def _event(self, kind: FeedEventKind, subject: str = "", **extra: Any) -> FeedEventRecord:
        return FeedEventRecord(FEED, self.connection_id, kind, _now_ms(), subject, **extra)

    async def items(self) -> AsyncGenerator[StreamItem, None]:
        """Connect, subscribe and yield parsed items forever, reconnecting on drops (cancel to stop)."""
        attempt = 0
        while True:
            self.connection_id = uuid.uuid4().hex[:16]
            path = urlsplit(self.url).path or "/"
            headers = self._signer.headers("GET", path) if self._signer is not None else {}
            started = time.monotonic()
            try:
                async with connect(
                    self.url,
                    additional_headers=headers,
                    ping_interval=self.settings.ping_interval_s,
                    ping_timeout=self.settings.ping_timeout_s,
                    open_timeout=self.settings.open_timeout_s,
                    max_size=None,
                    compression=None,
                    proxy=None,
                ) as ws:
                    self._ws = ws
                    self.connects += 1
                    self._reset_session()
                    await self._flush_sends()
                    yield self._event(FeedEventKind.CONNECT, detail=f"attempt {attempt + 1}")
                    if self.connects > 1:
                        yield self._event(FeedEventKind.RESUBSCRIBE, detail=f"{len(self.markets)} markets")
                    async for item in self._read(ws):
                        attempt = 0
                        yield item
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    body = exc.response.body.decode("utf-8", "replace")[:200] if exc.response.body else ""
                    raise KalshiAuthError(
                        f"WebSocket handshake rejected with HTTP {status}: {body or 'unauthorized'} "
                        "(check KALSHI_API_KEY_ID, the private key, and the clock)",
                        status_code=status,
                    ) from None
                detail = f"handshake HTTP {status}"
            except (ConnectionClosed, OSError, TimeoutError, websockets.exceptions.InvalidHandshake) as exc:
                detail = f"{type(exc).__name__}: {exc}"[:300]
            finally:
                self._ws = None
            yield self._event(FeedEventKind.DISCONNECT, detail=detail,
                              duration_ms=int((time.monotonic() - started) * 1000))
            delay = self.settings.backoff.delay_s(attempt, self._rng)
            attempt += 1
            _log.warning("kalshi_ws_reconnect", detail=detail, delay_s=round(delay, 3))
            await asyncio.sleep(delay)

    def _reset_session(self) -> None:
        self._pending.clear()
        self._sids.clear()
        self._last_seq.clear()
        self._pending_sends.clear()
        self._sent.clear()
        self._snapshot_failures.clear()
        for book in self.books.values():
            book.stale = True
        if self.markets:
            for channel in MARKET_CHANNELS:
                self._subscribe(channel)
        for channel in self._other_channels():
            self._subscribe(channel)

    async def _read(self, ws: ClientConnection) -> AsyncIterator[StreamItem]:
        while True:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow an outer cancellation when
                # recv() completes at the same moment, and a collector's session deadline would be lost.
                async with asyncio.timeout(self.settings.silence_timeout_s):
                    raw = await ws.recv()
            except TimeoutError:
                yield self._event(FeedEventKind.STALE, detail=f"no frame for {self.settings.silence_timeout_s:g} s")
                await ws.close()
                raise
            received_ts = _now_ms()
            text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
            self.frames += 1
            if self._on_frame is not None:
                self._on_frame(text, received_ts, self.connection_id)
            for item in self.handle_frame(text, received_ts):
                yield item
            await self._flush_sends()

    # -- frames -------------------------------------------------------------------------------------------

    def handle_frame(self, text: str, received_ts: int) -> list[StreamItem]:
        """Parse one frame into items (and queue any commands it calls for, e.g. `get_snapshot`)."""
        try:
            frame = orjson.loads(text)
            if not isinstance(frame, dict):
                raise FieldError("frame is not an object")
            kind = frame.get("type")
            msg = frame.get("msg")
            if kind == "orderbook_delta":
                return self._delta(frame, text, received_ts)
            if kind == "ticker":
                return [quote_from_ticker(_mapping(msg), received_ts)]
            if kind == "orderbook_snapshot":
                return self._snapshot(frame, text, received_ts)
            if kind == "trade":
                return [parse_trade(_mapping(msg), received_ts, "ws")]
            if kind == "market_lifecycle_v2":
                return [parse_lifecycle(frame, received_ts)]
            if kind == "cfbenchmarks_value":
                return [*self._check_seq(frame, "cfbenchmarks_value"), parse_index_value(frame, received_ts)]
            if kind in ("subscribed", "ok", "unsubscribed", "error"):
                return self._control(kind, frame)
            return []  # event_lifecycle, event_fee_update and unknown types: kept on the tape only
        except (FieldError, ValueError, TypeError, KeyError) as exc:  # orjson.JSONDecodeError is a ValueError
            return [RejectRecord(f"kalshi.ws.{_type_of(text)}", _reason(exc), received_ts, text)]

    def _delta(self, frame: dict[str, Any], text: str, received_ts: int) -> list[StreamItem]:
        """The hot path: one `orderbook_delta` frame (seq check inlined; the gap path is `_check_seq`)."""
        sid, seq = frame.get("sid"), frame.get("seq")
        if type(sid) is int and type(seq) is int:
            last = self._last_seq.get(sid)
            if last is not None and seq != last + 1:
                return self._check_seq(frame, "orderbook_delta")  # a gap: this delta is not applied
            self._last_seq[sid] = seq
        else:
            seq = None
        msg = frame.get("msg")
        try:
            if type(msg) is not dict:
                raise FieldError("msg: missing")
            book = self.books.get(msg["market_ticker"])
            if book is None or book.stale:
                return []
            side, units, change = parse_delta(msg)
            book.apply_change(side, units, change, seq)
        except (FieldError, KeyError, TypeError) as exc:
            # The seq is consumed but the update is lost: the book would silently diverge from the venue's.
            return self._unusable_book_frame(frame, text, received_ts, exc)
        ts_ms = msg.get("ts_ms")
        return [BookUpdate(book, ts_ms if type(ts_ms) is int else received_ts, received_ts, False)]

    def _unusable_book_frame(
        self, frame: Mapping[str, Any], text: str, received_ts: int, exc: Exception
    ) -> list[StreamItem]:
        """Reject an in-order delta/snapshot that cannot be applied and re-snapshot the book(s) it was for."""
        kind = str(frame.get("type"))
        reason = _reason(exc)
        items: list[StreamItem] = [RejectRecord(f"kalshi.ws.{kind}", reason, received_ts, text)]
        msg = frame.get("msg")
        raw_ticker = msg.get("market_ticker") if isinstance(msg, Mapping) else None
        ticker = raw_ticker if isinstance(raw_ticker, str) and raw_ticker else None
        candidates = [ticker] if ticker is not None else sorted(self.markets)
        if kind == "orderbook_delta":
            # A stale or missing book is awaiting its snapshot already, and ignores deltas until then.
            targets = [t for t in candidates if (b := self.books.get(t)) is not None and not b.stale]
        else:
            key = ticker or ""
            failures = self._snapshot_failures[key] = self._snapshot_failures.get(key, 0) + 1
            targets = [t for t in candidates if t in self.markets]
            if failures > MAX_SNAPSHOT_RETRIES:
                for target in targets:
                    if (book := self.books.get(target)) is not None:
                        book.stale = True
                items.append(self._event(FeedEventKind.ERROR, "orderbook_delta",
                                         detail=f"{failures} unusable snapshots for {ticker or 'a market'} ({reason});"
                                                " the book stays stale until the next gap or reconnect"))
                return items
        if not targets:
            return items
        detail = f"unusable {kind} for {ticker or 'every market'}: {reason}"
        items.append(self._event(FeedEventKind.GAP, "orderbook_delta", detail=detail))
        sid = frame.get("sid") if type(frame.get("sid")) is int else self._sids.get("orderbook_delta")
        items.extend(self._request_snapshots(sid, targets))
        return items

    def _control(self, kind: str, frame: Mapping[str, Any]) -> list[StreamItem]:
        msg = frame.get("msg")
        if kind == "subscribed" and isinstance(msg, Mapping):
            channel = str(msg.get("channel") or self._pending.get(int(frame.get("id") or 0), ""))
            self._pending.pop(int(frame.get("id") or 0), None)
            if channel and msg.get("sid") is not None:
                self._sids[channel] = int(msg["sid"])
                self._sync()  # markets added while the subscribe was in flight (and refused channels)
            return []
        if kind != "error":
            # `ok`/`unsubscribed` replies consume a `seq` on the sid they answer (§5 "Sequence numbers").
            for channel in ("orderbook_delta", "cfbenchmarks_value"):
                if frame.get("sid") is not None and frame.get("sid") == self._sids.get(channel):
                    return self._check_seq(frame, channel)
            return []
        code = msg.get("code") if isinstance(msg, Mapping) else None
        text = str(msg.get("msg")) if isinstance(msg, Mapping) else str(msg)
        if code == ERROR_AUTH_REQUIRED:
            raise KalshiAuthError(f"WebSocket error {code}: {text}")
        if code in FATAL_ERROR_CODES:
            raise KalshiStreamError(code if isinstance(code, int) else None, text)
        command_id = frame.get("id")
        refused = self._pending.pop(command_id, None) if type(command_id) is int else None
        if refused is not None:
            # No sid for this channel: `_sync` subscribes it again (a pending entry would block that forever).
            _log.warning("kalshi_ws_subscribe_refused", channel=refused, code=code, error=text)
            return [self._event(FeedEventKind.ERROR, refused,
                                detail=f"code {code}: {text} (subscribe refused; retried at the next sync)")]
        events: list[StreamItem] = [self._event(FeedEventKind.ERROR, detail=f"code {code}: {text}")]
        if code == ERROR_BUFFER_OVERFLOW:
            sid = frame.get("sid") if frame.get("sid") is not None else self._sids.get("orderbook_delta")
            events.extend(self._resnapshot(int(sid) if sid is not None else None, None, None))
        return events

    def _check_seq(self, frame: Mapping[str, Any], subject: str) -> list[StreamItem]:
        sid, seq = frame.get("sid"), frame.get("seq")
        if not isinstance(sid, int) or not isinstance(seq, int):
            return []
        last = self._last_seq.get(sid)
        self._last_seq[sid] = seq
        if last is None or seq == last + 1:
            return []
        if subject == "orderbook_delta":
            return self._resnapshot(sid, last + 1, seq)
        return [self._event(FeedEventKind.GAP, subject, expected_seq=last + 1, received_seq=seq)]

    def _resnapshot(self, sid: int | None, expected: int | None, received: int | None) -> list[StreamItem]:
        """Mark the sid's books stale and ask for fresh snapshots (`update_subscription` `get_snapshot`)."""
        for book in self.books.values():
            book.stale = True
        items: list[StreamItem] = [self._event(FeedEventKind.GAP, "orderbook_delta",
                                               expected_seq=expected, received_seq=received)]
        items.extend(self._request_snapshots(sid, sorted(self.markets)))
        return items

    def _request_snapshots(self, sid: int | None, tickers: Sequence[str]) -> list[StreamItem]:
        """Mark these books stale and queue `get_snapshot` for them on the order-book sid."""
        for ticker in tickers:
            if (book := self.books.get(ticker)) is not None:
                book.stale = True
        if sid is None or not tickers:
            return []
        self._queue("update_subscription",
                    {"sids": [sid], "market_tickers": sorted(tickers), "action": "get_snapshot"})
        return [self._event(FeedEventKind.SNAPSHOT, "orderbook_delta", detail=f"{len(tickers)} markets")]

    def _snapshot(self, frame: Mapping[str, Any], text: str, received_ts: int) -> list[StreamItem]:
        items = self._check_seq(frame, "orderbook_delta")
        try:
            msg = _mapping(frame.get("msg"))
            ticker = msg.get("market_ticker")
            if not isinstance(ticker, str) or not ticker:
                raise FieldError("market_ticker: missing")
            seq = frame.get("seq") if isinstance(frame.get("seq"), int) else None
            book_ts = time_ms(msg.get("ts_ms"), "ts_ms") or received_ts
            book = self.books.get(ticker)
            if book is None:
                book = self.books[ticker] = OrderBook(ticker, use_yes_price=self.settings.use_yes_price)
            book.apply_snapshot(msg, seq)
        except (FieldError, KeyError, TypeError) as exc:
            return [*items, *self._unusable_book_frame(frame, text, received_ts, exc)]
        self._snapshot_failures.pop(ticker, None)
        items.append(BookUpdate(book, book_ts, received_ts, True))
        return items


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FieldError("msg: missing")
    return value


def _reason(exc: Exception) -> str:
    """A reject reason a reader can act on (`KeyError('delta_fp')` → "delta_fp: missing")."""
    if isinstance(exc, KeyError):
        return f"{exc.args[0] if exc.args else 'field'}: missing"[:128]
    return str(exc)[:128]


def _type_of(text: str) -> str:
    try:
        frame = json.loads(text)
    except ValueError:
        return "unparsed"
    return str(frame.get("type", "unknown"))[:24] if isinstance(frame, dict) else "unknown"

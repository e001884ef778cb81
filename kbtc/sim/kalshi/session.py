"""One Kalshi WebSocket connection: its subscriptions, `seq` counters, and the sender that applies faults.

Every outgoing message goes through the connection's queue and single sender task, so faults apply in
one place: a stall (socket open, nothing sent, no pings), a clean close (close frame 1001) or an abrupt
drop (TCP abort, no close frame), and per data message: duplicate, reorder (swap with the next), malformed
JSON (the frame is cut in half and the message is lost), unknown fields (added), missing fields (removed).
Skipped sequence numbers are applied where `seq` is assigned.

A client that does not keep up fills its queue; past `max_queue` messages, data messages are dropped and
the subscription gets error 25 "Subscription buffer overflow" once (`reference/kalshi_api.md` §5), so the
client sees a `seq` gap and must re-snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from kbtc.sim.faults import Fault, FaultKind, FaultPlan, FaultTarget
from kbtc.sim.kalshi.ws_messages import with_legacy_fields
from kbtc.sim.market_maker import Book

SEQ_CHANNELS = frozenset({"orderbook_delta", "cfbenchmarks_value"})
REPLY_TYPES = frozenset({"subscribed", "unsubscribed", "ok", "error"})
DEFAULT_MISSING_FIELDS = ("market_id", "yes_bid_size_fp", "yes_ask_size_fp", "ts", "time")
_TARGET = FaultTarget.KALSHI_WS


class WsError(Exception):
    """A command error with the documented code (`reference/kalshi_api.md` §5 error codes)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(slots=True)
class Subscription:
    """One subscription: channel, markets (None = every market), `seq`, and the books last sent."""

    sid: int
    channel: str
    tickers: list[str] | None
    use_yes_price: bool = False
    seq: int = 0
    books: dict[str, Book] = field(default_factory=dict)
    last_ticker: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def covers(self, ticker: str) -> bool:
        """True when the subscription includes this market."""
        return self.tickers is None or ticker in self.tickers

    def add_tickers(self, tickers: list[str] | None) -> list[str]:
        """Add markets; return those that were new."""
        if self.tickers is None or not tickers:
            return []
        added = [t for t in tickers if t not in self.tickers]
        self.tickers.extend(added)
        return added

    def remove_tickers(self, tickers: list[str]) -> None:
        """Drop markets (and their book state)."""
        if self.tickers is not None:
            self.tickers = [t for t in self.tickers if t not in tickers]
        for ticker in tickers:
            self.books.pop(ticker, None)


class Session:
    """A connected client."""

    def __init__(self, connection: ServerConnection, faults: FaultPlan, clock: Callable[[], int], *,
                 entitled: bool, legacy_cents: bool = False, max_queue: int = 100_000) -> None:
        self.connection = connection
        self.legacy_cents = legacy_cents
        self.clock = clock
        self.faults = faults
        self.entitled = entitled
        self.subscriptions: dict[int, Subscription] = {}
        self._sids = itertools.count(1)
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._stalled_until = 0.0
        self.max_queue = max_queue
        self._overflowed: set[int] = set()

    def parse(self, raw: str | bytes) -> dict[str, Any]:
        """A command as a dict, or error 1 (unable to process message)."""
        try:
            command = json.loads(raw)
        except ValueError:
            raise WsError(1, "Unable to process message") from None
        if not isinstance(command, dict) or not isinstance(command.get("id", 0), int):
            raise WsError(1, "Unable to process message")
        return command

    def add(self, channel: str, tickers: list[str] | None, *, use_yes_price: bool) -> Subscription:
        """Create a subscription with the next sid."""
        sub = Subscription(next(self._sids), channel, None if tickers is None else list(tickers), use_yes_price)
        self.subscriptions[sub.sid] = sub
        return sub

    def next_seq(self, sub: Subscription) -> int:
        """The subscription's next `seq`."""
        sub.seq += 1
        return sub.seq

    def data(self, sub: Subscription, kind: str, msg: dict[str, Any]) -> dict[str, Any]:
        """A data message envelope; `seq` only on the channels that carry one."""
        envelope: dict[str, Any] = {"type": kind, "sid": sub.sid}
        if sub.channel in SEQ_CHANNELS:
            if self.faults.take(_TARGET, FaultKind.SKIP_SEQ) is not None:
                sub.seq += 1  # this number is never sent: the client sees a gap
            envelope["seq"] = self.next_seq(sub)
        if kind == "ticker":
            envelope["sending_ts_ms"] = self.clock()
        envelope["msg"] = with_legacy_fields(kind, msg) if self.legacy_cents else msg
        return envelope

    def enqueue(self, message: dict[str, Any]) -> None:
        """Queue a message for the sender (data beyond `max_queue` is dropped: error 25 per subscription)."""
        sid = message.get("sid")
        if message.get("type") not in REPLY_TYPES and isinstance(sid, int):
            if self._queue.qsize() >= self.max_queue:
                if sid not in self._overflowed:
                    self._overflowed.add(sid)
                    self._queue.put_nowait({"id": 0, "sid": sid, "type": "error",
                                            "msg": {"code": 25, "msg": "Subscription buffer overflow"}})
                return
            if self._queue.qsize() < self.max_queue // 2:
                self._overflowed.discard(sid)
        self._queue.put_nowait(message)

    @property
    def stalled(self) -> bool:
        """True during a STALL fault."""
        return time.monotonic() < self._stalled_until

    async def _connection_faults(self) -> bool:
        """Apply stall and disconnect faults; True when the connection was closed."""
        stall = self.faults.take(_TARGET, FaultKind.STALL)
        if stall is not None:
            self._stalled_until = time.monotonic() + (stall.duration_s or 15.0)
            await asyncio.sleep(stall.duration_s or 15.0)
        if self.faults.take(_TARGET, FaultKind.DISCONNECT_CLEAN) is not None:
            await self.connection.close(1001, "simulated disconnect")
            return True
        if self.faults.take(_TARGET, FaultKind.DISCONNECT_ABRUPT) is not None:
            transport = self.connection.transport
            transport.abort()
            return True
        return False

    async def send_forever(self, tick_s: float) -> None:
        """Send queued messages, applying faults, until the connection closes."""
        held: dict[str, Any] | None = None
        while True:
            if await self._connection_faults():
                return
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races the get.
                async with asyncio.timeout(tick_s):
                    message = await self._queue.get()
            except TimeoutError:
                if held is not None:
                    await self._send(held)
                    held = None
                continue
            if message.get("type") in REPLY_TYPES:
                await self._send(message)
                continue
            if held is None and self.faults.take(_TARGET, FaultKind.REORDER) is not None:
                held = message
                continue
            await self._send(self._mangle(message))
            if self.faults.take(_TARGET, FaultKind.DUPLICATE) is not None:
                await self._send(message)
            if held is not None:
                await self._send(held)
                held = None

    def _mangle(self, message: dict[str, Any]) -> dict[str, Any] | str:
        if self.faults.take(_TARGET, FaultKind.MALFORMED_JSON) is not None:
            text = json.dumps(message, separators=(",", ":"))
            return text[: len(text) // 2]
        if self.faults.take(_TARGET, FaultKind.UNKNOWN_FIELDS) is not None:
            message = {**message, "sim_extra": 1, "msg": {**message["msg"], "sim_unknown_field": "x"}}
        missing: Fault | None = self.faults.take(_TARGET, FaultKind.MISSING_FIELDS)
        if missing is not None and isinstance(message.get("msg"), dict):
            names = set(missing.params.get("fields", DEFAULT_MISSING_FIELDS))
            message = {**message, "msg": {k: v for k, v in message["msg"].items() if k not in names}}
        return message

    async def _send(self, message: dict[str, Any] | str) -> None:
        text = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
        await self.connection.send(text)

    async def ping_forever(self, interval_s: float) -> None:
        """Ping with the body `heartbeat` every `interval_s` (not while stalled)."""
        while True:
            await asyncio.sleep(interval_s)
            if not self.stalled:
                with contextlib.suppress(ConnectionClosed):
                    await self.connection.ping(b"heartbeat")

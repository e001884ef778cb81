"""The simulated Kalshi WebSocket API at `/trade-api/ws/v2` (`reference/kalshi_api.md` §5).

- Handshake signed like REST (`timestamp + "GET" + "/trade-api/ws/v2"`) when API keys are configured; 401
  otherwise. Pings every `ping_interval_s` (10 s on the venue) with the body `heartbeat`.
- Commands `subscribe`, `unsubscribe`, `update_subscription` (`add_markets`, `delete_markets`,
  `get_snapshot`) and `list_subscriptions`, replies echoing `id`, errors with the documented codes.
- Channels `orderbook_delta` (snapshot, then signed deltas; `seq` +1 per subscription), `ticker`, `trade`,
  `market_lifecycle_v2` (with `event_lifecycle` messages), `cfbenchmarks_value` (1 Hz, `seq`; refused
  unless the connection's key is entitled, when keys are configured).

A publisher task wakes every `tick_interval_s`, and for every new second of the simulator's clock sends
what changed to every subscription. Each connection has one sender task; faults from the `FaultPlan`
apply there (stall, disconnects, duplicate, reorder, malformed JSON, unknown/missing fields) and at `seq`
assignment (skipped sequence numbers).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from kbtc.sim.faults import FaultPlan
from kbtc.sim.kalshi.auth import ApiKey, AuthError, verify
from kbtc.sim.kalshi.session import Session, Subscription, WsError
from kbtc.sim.kalshi.venue import KalshiVenue
from kbtc.sim.kalshi.ws_messages import (
    book_deltas,
    cfbenchmarks_msg,
    lifecycle_events,
    snapshot_msg,
    ticker_msg,
    trade_msg,
)
from kbtc.sim.market_maker import Book

WS_PATH = "/trade-api/ws/v2"
CHANNELS = ("orderbook_delta", "ticker", "trade", "market_lifecycle_v2", "cfbenchmarks_value")
_MARKET_CHANNELS = ("orderbook_delta", "ticker", "trade")
_MAX_CATCH_UP_S = 5  # after a long pause of the clock, only the last few seconds are published


class KalshiWs:
    """The WebSocket server; `await start(sock)`, `await stop()`."""

    def __init__(self, venue: KalshiVenue, faults: FaultPlan, *, keys: Mapping[str, ApiKey] | None = None,
                 tick_interval_s: float = 0.25, ping_interval_s: float = 10.0, max_skew_ms: int = 30_000,
                 max_queue: int = 100_000) -> None:
        self.venue = venue
        self.faults = faults
        self.keys = dict(keys or {})
        self.tick_interval_s = tick_interval_s
        self.ping_interval_s = ping_interval_s
        self.max_skew_ms = max_skew_ms
        self.max_queue = max_queue
        self.sessions: set[Session] = set()
        self._key_of: dict[int, ApiKey] = {}
        self._server: Server | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._last_second = venue.now_ms() // 1000
        self._last_lifecycle_ms = venue.now_ms()

    async def start(self, sock: socket.socket) -> None:
        """Serve on an already bound socket and start the publisher."""
        self._server = await serve(self._handle, sock=sock, process_request=self._process_request,
                                   ping_interval=None, max_queue=None)
        self._publisher = asyncio.create_task(self._publish_forever())

    async def stop(self) -> None:
        """Close every connection and stop publishing."""
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?")[0] != WS_PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if not self.keys:
            return None
        try:
            key = verify(request.headers, "GET", WS_PATH, self.keys, now_ms=self.venue.now_ms(),
                         max_skew_ms=self.max_skew_ms)
        except AuthError as exc:
            return connection.respond(HTTPStatus.UNAUTHORIZED, f"{exc}\n")
        self._key_of[id(connection)] = key
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        key = self._key_of.pop(id(connection), None)
        entitled = not self.keys or (key is not None and key.entitled)
        session = Session(connection, self.faults, self.venue.clock, entitled=entitled,
                          legacy_cents=self.venue.legacy_cents, max_queue=self.max_queue)
        self.sessions.add(session)
        tasks = [asyncio.create_task(session.send_forever(self.tick_interval_s)),
                 asyncio.create_task(session.ping_forever(self.ping_interval_s))]
        try:
            async for raw in connection:
                for reply in self._command(session, raw):
                    session.enqueue(reply)
        except ConnectionClosed:
            pass
        finally:
            self.sessions.discard(session)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await task

    # --- commands ----------------------------------------------------------------------------------------

    def _command(self, session: Session, raw: str | bytes) -> list[dict[str, Any]]:
        command_id = 0
        try:
            command = session.parse(raw)
            command_id = int(command.get("id") or 0)
            name = command.get("cmd")
            params = command.get("params")
            if name == "list_subscriptions":
                listing = [{"channel": s.channel, "sid": s.sid} for s in session.subscriptions.values()]
                return [{"id": command_id, "type": "ok", "msg": listing}]
            if name not in ("subscribe", "unsubscribe", "update_subscription"):
                raise WsError(5, "Unknown command")
            if not isinstance(params, dict):
                raise WsError(2, "Params required")
            if name == "subscribe":
                return self._subscribe(session, command_id, params)
            if name == "unsubscribe":
                return self._unsubscribe(session, command_id, params)
            return self._update(session, command_id, params)
        except WsError as exc:
            return [{"id": command_id, "type": "error", "msg": {"code": exc.code, "msg": exc.message}}]

    def _tickers(self, params: dict[str, Any], *, required: bool) -> list[str] | None:
        if "market_ticker" in params and "market_tickers" in params:
            raise WsError(11, "market_ticker and market_tickers are mutually exclusive")
        tickers = [params["market_ticker"]] if "market_ticker" in params else params.get("market_tickers")
        if not tickers:
            if required:
                raise WsError(14, "Market Ticker required")
            return None
        now_ms = self.venue.now_ms()
        for ticker in tickers:
            if not isinstance(ticker, str) or self.venue.catalog.market(ticker, now_ms) is None:
                raise WsError(16, "Market not found")
        return list(dict.fromkeys(tickers))

    def _subscribe(self, session: Session, command_id: int, params: dict[str, Any]) -> list[dict[str, Any]]:
        channels = params.get("channels")
        if not channels or not isinstance(channels, list):
            raise WsError(3, "Channels required")
        # Validate every channel before subscribing any, so an error leaves no partial subscription.
        tickers_by_channel: dict[str, list[str] | None] = {}
        for channel in channels:
            if channel not in CHANNELS:
                raise WsError(8, "Unknown channel name")
            tickers_by_channel[channel] = self._tickers(params, required=channel == "orderbook_delta") \
                if channel in _MARKET_CHANNELS else None
            if channel == "cfbenchmarks_value":
                if not session.entitled:
                    raise WsError(9, "cfbenchmarks_value requires an entitled API key")
                index_ids = params.get("index_ids")
                if not index_ids or not isinstance(index_ids, list):
                    raise WsError(24, "Index IDs required")
                if any(i not in ("BRTI", "all") for i in index_ids):
                    raise WsError(11, "Unknown index id")
        replies: list[dict[str, Any]] = []
        for channel, tickers in tickers_by_channel.items():
            existing = next((s for s in session.subscriptions.values() if s.channel == channel), None)
            # Repeating a subscribe adds new tickers to the existing subscription (changelog 2025-09-25).
            sub = existing or session.add(channel, tickers, use_yes_price=bool(params.get("use_yes_price")))
            added = sub.add_tickers(tickers) if existing is not None else list(tickers or [])
            replies.append({"id": command_id, "type": "subscribed", "msg": {"channel": channel, "sid": sub.sid}})
            replies.extend(self._initial(session, sub, added, params))
        return replies

    def _initial(self, session: Session, sub: Subscription, tickers: list[str],
                 params: dict[str, Any]) -> list[dict[str, Any]]:
        now_ms = self.venue.now_ms()
        out: list[dict[str, Any]] = []
        for ticker in tickers:
            market = self.venue.catalog.market(ticker, now_ms)
            if market is None:
                continue
            if sub.channel == "orderbook_delta":
                book = self.venue.book(market, now_ms)
                sub.books[ticker] = book
                out.append(session.data(sub, "orderbook_snapshot",
                                        snapshot_msg(market, book, use_yes_price=sub.use_yes_price)))
            elif sub.channel == "ticker" and params.get("send_initial_snapshot"):
                out.append(session.data(sub, "ticker", ticker_msg(market, self.venue.top(market, now_ms), now_ms)))
        return out

    def _unsubscribe(self, session: Session, command_id: int, params: dict[str, Any]) -> list[dict[str, Any]]:
        sids = params.get("sids")
        if not sids or not isinstance(sids, list):
            raise WsError(4, "Subscription IDs required")
        if any(sid not in session.subscriptions for sid in sids):
            raise WsError(7, "Unknown subscription ID")
        replies = []
        for sid in sids:
            sub = session.subscriptions.pop(sid)
            replies.append({"id": command_id, "sid": sid, "seq": session.next_seq(sub), "type": "unsubscribed"})
        return replies

    def _update(self, session: Session, command_id: int, params: dict[str, Any]) -> list[dict[str, Any]]:
        sids = [params["sid"]] if "sid" in params else params.get("sids")
        if not sids:
            raise WsError(4, "Subscription IDs required")
        if len(sids) != 1:
            raise WsError(12, "Exactly one subscription ID is required")
        sub = session.subscriptions.get(sids[0])
        if sub is None:
            raise WsError(7, "Unknown subscription ID")
        action = params.get("action")
        if not action:
            raise WsError(15, "Action required")
        if action not in ("add_markets", "delete_markets", "get_snapshot"):
            raise WsError(13, "Unsupported action")
        if sub.channel not in _MARKET_CHANNELS or (action == "get_snapshot" and sub.channel != "orderbook_delta"):
            raise WsError(13, "Unsupported action")
        tickers = self._tickers(params, required=True) or []
        snapshot_for: list[str] = []
        if action == "add_markets":
            snapshot_for = sub.add_tickers(tickers)
        elif action == "delete_markets":
            sub.remove_tickers(tickers)
        else:
            snapshot_for = [t for t in tickers if sub.covers(t)]
        # The reply takes its seq before the snapshots that follow it.
        ok = {"id": command_id, "sid": sub.sid, "seq": session.next_seq(sub), "type": "ok",
              "msg": {"market_tickers": sorted(sub.tickers or [])}}
        return [ok, *self._initial(session, sub, snapshot_for, params)]

    # --- publishing --------------------------------------------------------------------------------------

    async def _publish_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval_s)
            self.publish()

    def publish(self) -> None:
        """Send everything that happened since the last call, second by second."""
        now_ms = self.venue.now_ms()
        self.venue.prune(now_ms)
        second = now_ms // 1000
        lifecycle = lifecycle_events(self.venue, self._last_lifecycle_ms, now_ms)
        self._last_lifecycle_ms = now_ms
        first = max(self._last_second + 1, second - _MAX_CATCH_UP_S + 1)
        self._last_second = max(self._last_second, second)
        books: dict[tuple[str, int], Book] = {}
        for session in list(self.sessions):
            for sub in list(session.subscriptions.values()):
                if sub.channel == "market_lifecycle_v2":
                    for _, kind, msg in lifecycle:
                        session.enqueue(session.data(sub, kind, msg))
                    continue
                for s in range(first, second + 1):
                    self._publish_second(session, sub, s, books)

    def _publish_second(self, session: Session, sub: Subscription, second: int,
                        books: dict[tuple[str, int], Book]) -> None:
        venue = self.venue
        ts_ms = second * 1000
        if sub.channel == "cfbenchmarks_value":
            window_s = venue.catalog.config.window_minutes * 60
            session.enqueue(session.data(sub, "cfbenchmarks_value", cfbenchmarks_msg(venue, second, window_s)))
            return
        if sub.tickers is None:
            markets = [m for m in venue.catalog.markets(ts_ms) if venue.trading(m, ts_ms)]
        else:
            markets = [m for t in sub.tickers if (m := venue.catalog.market(t, ts_ms)) is not None]
        for market in markets:
            if sub.channel == "orderbook_delta":
                book = books.get((market.ticker, second))
                if book is None:
                    book = books[(market.ticker, second)] = venue.book(market, ts_ms)
                old = sub.books.get(market.ticker, Book({}, {}))
                sub.books[market.ticker] = book
                for delta in book_deltas(market, old, book, ts_ms, use_yes_price=sub.use_yes_price):
                    session.enqueue(session.data(sub, "orderbook_delta", delta))
            elif sub.channel == "ticker":
                msg = ticker_msg(market, venue.top(market, ts_ms), ts_ms)
                key = tuple(v for k, v in msg.items() if k not in ("ts", "ts_ms", "time"))
                if sub.last_ticker.get(market.ticker) != key:
                    sub.last_ticker[market.ticker] = key
                    session.enqueue(session.data(sub, "ticker", msg))
            elif sub.channel == "trade":
                for trade in venue.trades(market, second, second):
                    session.enqueue(session.data(sub, "trade", trade_msg(trade)))

"""The simulated Advanced Trade market-data WebSocket (`wss://advanced-trade-ws.coinbase.com`, §1).

Protocol as documented: one `subscribe` per channel (`{"type", "product_ids", "channel"}`, §1.2), each
acknowledged by a `subscriptions` frame listing every current subscription; channels `ticker`,
`market_trades` and `heartbeats` (any other channel, or an Exchange-style `channels` list, gets the documented
`{"type": "error", "message"}` frame). The first frame of a data channel is a `snapshot`, later ones
`update`s. Every enveloped frame takes the next `sequence_num` of its connection, whatever its channel
(§1.6); error frames have no envelope and take none.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kbtc.sim.coinbase import messages
from kbtc.sim.coinbase.fault_scope import API_ADVANCED_TRADE
from kbtc.sim.coinbase.feed import FeedServer, Session
from kbtc.sim.coinbase.outbox import OutFrame
from kbtc.sim.coinbase.tape import Tape, Tick
from kbtc.sim.faults import FaultPlan

CHANNELS = frozenset({"ticker", "market_trades", "heartbeats"})
HEARTBEATS = "heartbeats"
SNAPSHOT_TRADES = 50


class AdvancedTradeFeed(FeedServer):
    """The Advanced Trade market-data feed for one product."""

    api = API_ADVANCED_TRADE

    def __init__(
        self,
        tape: Tape,
        faults: FaultPlan,
        *,
        product_id: str,
        host: str,
        subscribe_timeout_s: float,
        heartbeat_counter_as_int: bool,
        idle_close_s: float | None,
    ) -> None:
        super().__init__(tape, faults, product_id=product_id, host=host, subscribe_timeout_s=subscribe_timeout_s)
        self.heartbeat_counter_as_int = heartbeat_counter_as_int
        self.idle_close_s = idle_close_s

    def _enveloped(self, channel: str, events: list[dict[str, Any]]) -> OutFrame:
        return OutFrame(channel, messages.envelope(channel, events, time.time_ns()), sequenced=True)

    def on_message(self, session: Session, message: str | bytes) -> None:
        """Apply a subscribe/unsubscribe, answer with the `subscriptions` ack, or with an error frame."""
        try:
            request = json.loads(message)
        except ValueError:
            session.send(OutFrame("error", messages.error_frame("malformed JSON")))
            return
        problem = self._validate(request)
        if problem is not None:
            session.send(OutFrame("error", messages.error_frame(problem)))
            return
        channel: str = request["channel"]
        product_ids = [HEARTBEATS] if channel == HEARTBEATS else list(request["product_ids"])
        current = session.subscriptions.get(channel, [])
        if request["type"] == "subscribe":
            session.subscriptions[channel] = current + [p for p in product_ids if p not in current]
        else:
            remaining = [p for p in current if p not in product_ids]
            session.subscriptions.pop(channel, None)
            if remaining:
                session.subscriptions[channel] = remaining
        session.send(self._enveloped("subscriptions", [messages.subscriptions_event(session.subscriptions)]))
        if request["type"] == "subscribe" and not current:
            self._send_snapshot(session, channel)

    def _validate(self, request: object) -> str | None:
        if not isinstance(request, dict):
            return "message must be a JSON object"
        if request.get("type") not in ("subscribe", "unsubscribe"):
            return f"unknown message type {request.get('type')!r}"
        channel = request.get("channel")
        if not isinstance(channel, str):
            if "channels" in request:
                return "one channel per subscribe message: use 'channel', not 'channels'"
            return "channel is required"
        if channel not in CHANNELS:
            return f"channel {channel!r} is not supported"
        if channel == HEARTBEATS:
            return None  # product ids are optional for heartbeats (§1.5)
        product_ids = request.get("product_ids")
        if not isinstance(product_ids, list) or not product_ids or not all(isinstance(p, str) for p in product_ids):
            return "product_ids must be a non-empty list of product ids"
        unknown = [p for p in product_ids if p != self.product_id]
        if unknown:
            return f"unknown product id(s): {', '.join(unknown)}"
        return None

    def _send_snapshot(self, session: Session, channel: str) -> None:
        if channel == HEARTBEATS:
            return
        index = self.published_index
        if channel == "market_trades":
            trades = self.tape.recent_trades(index, SNAPSHOT_TRADES)
            event = messages.market_trades_event("snapshot", self.product_id, trades)
        else:
            tick = self.tape.last_trade_tick(index) or self.tape.tick(index)
            stats = self.tape.stats_24h(tick.time_ms, tick.price_usd)
            event = messages.ticker_event("snapshot", self.product_id, tick, stats)
        session.send(self._enveloped(channel, [event]))

    def on_tick(self, tick: Tick) -> None:
        """Publish a `ticker` and a `market_trades` update when the tick carries trades (§1.4, §1.7)."""
        if not tick.trades:
            return
        ticker: OutFrame | None = None
        trades: OutFrame | None = None
        for session in list(self.sessions):
            if self.product_id in session.subscriptions.get("ticker", ()):
                if ticker is None:
                    stats = self.tape.stats_24h(tick.time_ms, tick.price_usd)
                    ticker = self._enveloped(
                        "ticker", [messages.ticker_event("update", self.product_id, tick, stats)]
                    )
                session.send(ticker)
            if self.product_id in session.subscriptions.get("market_trades", ()):
                if trades is None:
                    trades = self._enveloped(
                        "market_trades", [messages.market_trades_event("update", self.product_id, list(tick.trades))]
                    )
                session.send(trades)

    def on_heartbeat(self, counter: int, now_ns: int) -> None:
        """Publish the heartbeat (§1.5) to every session subscribed to `heartbeats`; close idle ones.

        "Most channels close within 60-90 seconds if no updates are sent. Subscribe to heartbeats to keep
        all subscriptions open" (§1.5): a subscribed session without heartbeats that got no frame for
        `idle_close_s` is closed (code 1000; the docs do not give one).
        """
        event = messages.heartbeat_event(counter, now_ns, self.monotonic_ns(),
                                         counter_as_int=self.heartbeat_counter_as_int)
        frame = OutFrame(HEARTBEATS, messages.envelope(HEARTBEATS, [event], now_ns), sequenced=True)
        idle_before_ns = None if self.idle_close_s is None else time.monotonic_ns() - int(self.idle_close_s * 1e9)
        for session in list(self.sessions):
            if HEARTBEATS in session.subscriptions:
                session.send(frame)
            elif session.subscriptions and idle_before_ns is not None \
                    and session.last_frame_monotonic_ns < idle_before_ns:
                self.sessions.discard(session)
                self.close_session(session, 1000, "idle subscription")

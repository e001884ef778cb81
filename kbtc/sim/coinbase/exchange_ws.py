"""The simulated legacy Exchange feed (`wss://ws-feed.exchange.coinbase.com`, §2): `ticker` and `heartbeat`.

Unlike Advanced Trade, one subscribe may list several channels, as names (with top-level `product_ids`) or
as `{"name", "product_ids"}` objects; the reply is `{"type": "subscriptions", "channels": [...]}`. Messages
are flat and carry the product's own `sequence` (shared by every connection, gapped because the ticker shows
one message per batch of matches). The first ticker after subscribing lacks the trade fields (§2).
"""

from __future__ import annotations

import json
from typing import Any

from kbtc.sim.coinbase import messages
from kbtc.sim.coinbase.fault_scope import API_EXCHANGE
from kbtc.sim.coinbase.feed import FeedServer, Session
from kbtc.sim.coinbase.outbox import OutFrame
from kbtc.sim.coinbase.tape import Tick

CHANNELS = frozenset({"ticker", "heartbeat"})


def _error(reason: str) -> OutFrame:
    return OutFrame("error", messages.error_frame("Failed to subscribe") | {"reason": reason})


class ExchangeFeed(FeedServer):
    """The Exchange market-data feed for one product."""

    api = API_EXCHANGE

    def on_message(self, session: Session, message: str | bytes) -> None:
        """Apply a (multi-channel) subscribe/unsubscribe and answer with `subscriptions`, or an error."""
        try:
            request = json.loads(message)
        except ValueError:
            session.send(_error("malformed JSON"))
            return
        parsed = self._parse(request)
        if isinstance(parsed, str):
            session.send(_error(parsed))
            return
        subscribe = request["type"] == "subscribe"
        newly: list[str] = []
        for channel, product_ids in parsed.items():
            current = session.subscriptions.get(channel, [])
            if subscribe:
                session.subscriptions[channel] = current + [p for p in product_ids if p not in current]
                if not current:
                    newly.append(channel)
            else:
                remaining = [p for p in current if p not in product_ids]
                session.subscriptions.pop(channel, None)
                if remaining:
                    session.subscriptions[channel] = remaining
        session.send(OutFrame("subscriptions", messages.exchange_subscriptions(session.subscriptions)))
        if "ticker" in newly:
            index = self.published_index
            tick = self.tape.last_trade_tick(index) or self.tape.tick(index)
            stats = self.tape.stats_24h(tick.time_ms, tick.price_usd)
            session.send(OutFrame("ticker", messages.exchange_ticker(self.product_id, tick, stats, first=True)))

    def _parse(self, request: Any) -> dict[str, list[str]] | str:
        """Channel → product ids of a valid request, or why it is invalid."""
        if not isinstance(request, dict) or request.get("type") not in ("subscribe", "unsubscribe"):
            return "message type must be subscribe or unsubscribe"
        default_ids = request.get("product_ids", [])
        channels = request.get("channels")
        if not isinstance(channels, list) or not channels:
            return "channels must be a non-empty list"
        parsed: dict[str, list[str]] = {}
        for entry in channels:
            name, ids = (entry.get("name"), entry.get("product_ids", default_ids)) if isinstance(entry, dict) \
                else (entry, default_ids)
            if name not in CHANNELS:
                return f"{name} is not a valid channel"
            if not isinstance(ids, list) or not ids:
                return f"{name}: product_ids must be a non-empty list"
            for product_id in ids:
                if product_id != self.product_id:
                    return f"{product_id} is not a valid product"
            parsed[str(name)] = [str(p) for p in ids]
        return parsed

    def on_tick(self, tick: Tick) -> None:
        """Publish a ticker for the last match of the tick."""
        if not tick.trades:
            return
        frame: OutFrame | None = None
        for session in list(self.sessions):
            if self.product_id in session.subscriptions.get("ticker", ()):
                if frame is None:
                    stats = self.tape.stats_24h(tick.time_ms, tick.price_usd)
                    frame = OutFrame("ticker", messages.exchange_ticker(self.product_id, tick, stats, first=False))
                session.send(frame)

    def on_heartbeat(self, counter: int, now_ns: int) -> None:
        """Publish the product heartbeat: its current sequence and last trade id."""
        frame: OutFrame | None = None
        for session in list(self.sessions):
            if self.product_id in session.subscriptions.get("heartbeat", ()):
                if frame is None:
                    index = self.published_index
                    last = self.tape.last_trade_tick(index)
                    last_trade_id = last.trades[-1].trade_id if last is not None else 0
                    body = messages.exchange_heartbeat(self.product_id, self.tape.tick(index), last_trade_id, now_ns)
                    frame = OutFrame("heartbeat", body)
                session.send(frame)

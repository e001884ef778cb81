"""Builders for every frame the simulated Coinbase feeds send, shaped like `reference/samples/coinbase/`.

Advanced Trade frames (§1.3–§1.7) share the envelope `{channel, client_id, timestamp, sequence_num,
events}`; `sequence_num` is left at 0 here and stamped per connection when the frame is sent (§1.6:
one counter per connection, across channels). Exchange frames (§2) are flat and carry their own `sequence`.
"""

from __future__ import annotations

from typing import Any

from kbtc.sim.coinbase.tape import Stats24h, Tick, Trade
from kbtc.sim.coinbase.wire_format import (
    decimal_str,
    go_time_string,
    rfc3339_micro,
    rfc3339_nano,
)

NS_PER_MS = 1_000_000
# Exchange `sequence` counts every message of the product's full channel, of which the ticker shows only
# one per batch: spacing ticker sequences by this stride keeps them increasing and realistically gapped.
EXCHANGE_SEQUENCE_STRIDE = 8


def envelope(channel: str, events: list[dict[str, Any]], now_ns: int) -> dict[str, Any]:
    """The Advanced Trade envelope (§1.3); `sequence_num` is stamped when the frame is sent."""
    return {
        "channel": channel,
        "client_id": "",
        "timestamp": rfc3339_nano(now_ns),
        "sequence_num": 0,
        "events": events,
    }


def error_frame(message: str) -> dict[str, Any]:
    """The documented error frame: `{"type": "error", "message": ...}` — no envelope, no sequence number."""
    return {"type": "error", "message": message}


def subscriptions_event(subscriptions: dict[str, list[str]]) -> dict[str, Any]:
    """The `subscriptions` acknowledgement event listing everything currently subscribed (§1.2)."""
    return {"subscriptions": {channel: list(ids) for channel, ids in sorted(subscriptions.items())}}


def ticker_event(kind: str, product_id: str, tick: Tick, stats: Stats24h) -> dict[str, Any]:
    """A `ticker` event (§1.4); every number is a decimal string."""
    change_pct = (tick.price_usd / stats.open_usd - 1.0) * 100.0 if stats.open_usd else 0.0
    return {
        "type": kind,
        "tickers": [
            {
                "type": "ticker",
                "product_id": product_id,
                "price": decimal_str(tick.price_usd, 2),
                "volume_24_h": decimal_str(stats.volume_btc, 8),
                "low_24_h": decimal_str(stats.low_usd, 2),
                "high_24_h": decimal_str(stats.high_usd, 2),
                "low_52_w": decimal_str(stats.low_52w_usd, 2),
                "high_52_w": decimal_str(stats.high_52w_usd, 2),
                "price_percent_chg_24_h": decimal_str(change_pct, 14),
                "best_bid": decimal_str(tick.best_bid_usd, 2),
                "best_bid_quantity": decimal_str(tick.best_bid_btc, 8),
                "best_ask": decimal_str(tick.best_ask_usd, 2),
                "best_ask_quantity": decimal_str(tick.best_ask_btc, 8),
            }
        ],
    }


def market_trades_event(kind: str, product_id: str, trades: list[Trade]) -> dict[str, Any]:
    """A `market_trades` event (§1.7): the trades of one batch (or the recent-trades snapshot)."""
    return {
        "type": kind,
        "trades": [
            {
                "trade_id": str(trade.trade_id),
                "product_id": product_id,
                "price": decimal_str(trade.price_usd, 2),
                "size": decimal_str(trade.size_btc, 8),
                "side": trade.side,
                "time": rfc3339_nano(trade.time_ms * NS_PER_MS),
            }
            for trade in trades
        ],
    }


def heartbeat_event(counter: int, now_ns: int, monotonic_ns: int, *, counter_as_int: bool) -> dict[str, Any]:
    """A `heartbeats` event (§1.5); the docs show the counter as a string, live feeds send an integer."""
    return {
        "current_time": go_time_string(now_ns, monotonic_ns),
        "heartbeat_counter": counter if counter_as_int else str(counter),
    }


def exchange_sequence(tick: Tick) -> int:
    """The Exchange product `sequence` of the last message of tick `tick`."""
    return tick.index * EXCHANGE_SEQUENCE_STRIDE + len(tick.trades)


def exchange_ticker(product_id: str, tick: Tick, stats: Stats24h, *, first: bool) -> dict[str, Any]:
    """An Exchange `ticker` message (sample `exchange_ws_ticker.json`, §2) for the last trade of `tick`.

    The first ticker after subscribing carries no `side`, `time`, `trade_id` or `last_size` (§2).
    """
    message: dict[str, Any] = {
        "type": "ticker",
        "sequence": exchange_sequence(tick),
        "product_id": product_id,
        "price": decimal_str(tick.price_usd, 2),
        "open_24h": decimal_str(stats.open_usd, 2),
        "volume_24h": decimal_str(stats.volume_btc, 8),
        "low_24h": decimal_str(stats.low_usd, 2),
        "high_24h": decimal_str(stats.high_usd, 2),
        "volume_30d": decimal_str(stats.volume_btc * 30, 8),
        "best_bid": decimal_str(tick.best_bid_usd, 2),
        "best_bid_size": f"{tick.best_bid_btc:.8f}",
        "best_ask": decimal_str(tick.best_ask_usd, 2),
        "best_ask_size": f"{tick.best_ask_btc:.8f}",
    }
    if not first and tick.trades:
        last = tick.trades[-1]
        message |= {
            "side": last.side.lower(),
            "time": rfc3339_micro(last.time_ms * NS_PER_MS),
            "trade_id": last.trade_id,
            "last_size": f"{last.size_btc:.8f}",
        }
    return message


def exchange_heartbeat(product_id: str, tick: Tick, last_trade_id: int, now_ns: int) -> dict[str, Any]:
    """An Exchange `heartbeat` (§2): the product's sequence and last trade id, once a second."""
    return {
        "type": "heartbeat",
        "sequence": exchange_sequence(tick),
        "last_trade_id": last_trade_id,
        "product_id": product_id,
        "time": rfc3339_micro(now_ns),
    }


def exchange_subscriptions(subscriptions: dict[str, list[str]]) -> dict[str, Any]:
    """The Exchange `subscriptions` reply: every subscribed channel with its product ids."""
    return {
        "type": "subscriptions",
        "channels": [{"name": name, "product_ids": list(ids)} for name, ids in sorted(subscriptions.items())],
    }

"""Kalshi WebSocket message bodies (`msg`) per channel, as documented (`reference/kalshi_api.md` §5).

Builders only: the server adds the envelope (`type`, `sid`, `seq` where the channel has one).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import numpy as np

from kbtc.sim.kalshi.venue import KalshiVenue, TopOfBook, Trade, dollars, fp
from kbtc.sim.market_maker import PRICE_RANGES, PRICE_UNITS, Book
from kbtc.sim.markets import Catalog, Market, iso

# The lifecycle stream carries market events and, as message types on the same channel, event lifecycles.
LIFECYCLE_CHANNEL = "market_lifecycle_v2"


def market_id(ticker: str) -> str:
    """A stable UUID per market ticker (the venue's `market_id`)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "kalshi-sim/" + ticker))


def book_side(levels: dict[int, int], *, as_yes_price: bool = False) -> list[list[str]]:
    """Levels as `[[price_dollars, count_fp], ...]`, ascending; NO levels optionally in YES-leg prices."""
    prices = {(PRICE_UNITS - p if as_yes_price else p): c for p, c in levels.items()}
    return [[dollars(p), fp(c)] for p, c in sorted(prices.items())]


def snapshot_msg(market: Market, book: Book, *, use_yes_price: bool) -> dict[str, Any]:
    """`orderbook_snapshot`: a side's key is omitted when it has no bids."""
    msg: dict[str, Any] = {"market_ticker": market.ticker, "market_id": market_id(market.ticker)}
    if book.yes:
        msg["yes_dollars_fp"] = book_side(book.yes)
    if book.no:
        msg["no_dollars_fp"] = book_side(book.no, as_yes_price=use_yes_price)
    return msg


def book_deltas(market: Market, old: Book, new: Book, ts_ms: int, *, use_yes_price: bool) -> list[dict[str, Any]]:
    """`orderbook_delta` bodies turning `old` into `new`: one signed `delta_fp` per changed level."""
    out = []
    for side, before, after in (("yes", old.yes, new.yes), ("no", old.no, new.no)):
        for price in sorted(set(before) | set(after)):
            change = after.get(price, 0) - before.get(price, 0)
            if change:
                shown = PRICE_UNITS - price if side == "no" and use_yes_price else price
                out.append({
                    "market_ticker": market.ticker, "market_id": market_id(market.ticker),
                    "price_dollars": dollars(shown), "delta_fp": fp(change), "side": side,
                    "ts": iso(ts_ms), "ts_ms": ts_ms,
                })
    return out


def ticker_msg(market: Market, top: TopOfBook, ts_ms: int) -> dict[str, Any]:
    """`ticker` body (no `seq` on this channel)."""
    return {
        "market_ticker": market.ticker, "market_id": market_id(market.ticker),
        "price_dollars": dollars(top.last_price), "yes_bid_dollars": dollars(top.yes_bid),
        "yes_ask_dollars": dollars(top.yes_ask), "volume_fp": fp(top.volume_c),
        "open_interest_fp": fp(top.open_interest_c), "dollar_volume": top.dollar_volume,
        "dollar_open_interest": top.dollar_open_interest, "yes_bid_size_fp": fp(top.yes_bid_size_c),
        "yes_ask_size_fp": fp(top.yes_ask_size_c), "last_trade_size_fp": fp(top.last_trade_size_c),
        "ts": ts_ms // 1000, "ts_ms": ts_ms, "time": iso(ts_ms),
    }


def trade_msg(trade: Trade) -> dict[str, Any]:
    """`trade` body."""
    body = trade.to_json()
    body["market_ticker"] = body.pop("ticker")
    del body["created_time"]
    body["ts"], body["ts_ms"] = trade.second, trade.second * 1000
    return body


def lifecycle_events(venue: KalshiVenue, after_ms: int, upto_ms: int) -> list[tuple[int, str, dict[str, Any]]]:
    """Lifecycle messages `(ts_ms, type, msg)` for times in `(after_ms, upto_ms]`, oldest first.

    Market events: `created`, `metadata_updated` (the KXBTC15M target price, published after the open),
    `determined`, `settled`, plus pauses and early closes made through the control endpoint. The implicit
    initialized → active step at `open_time` sends nothing (`reference/kalshi_api.md` §5). A new event also
    sends an `event_lifecycle` message on this channel.
    """
    catalog = venue.catalog
    out: list[tuple[int, str, dict[str, Any]]] = []
    seen_events: set[str] = set()
    for market in catalog.markets(upto_ms):
        if after_ms < market.created_ms <= upto_ms:
            out.append((market.created_ms, "market_lifecycle_v2", _created(catalog, market)))
            if market.event_ticker not in seen_events:
                seen_events.add(market.event_ticker)
                out.append((market.created_ms, "event_lifecycle", _event_created(venue, market)))
        if market.series_ticker == "KXBTC15M" and after_ms < market.strike_known_ms <= upto_ms:
            out.append((market.strike_known_ms, "market_lifecycle_v2", _base(market, "metadata_updated") | {
                "strike_type": market.strike_type, "floor_strike": market.floor_strike,
                "custom_strike": {"round_digits": "2"}, "yes_sub_title": market.yes_sub_title,
            }))
        if after_ms < market.determination_ms <= upto_ms:
            value = catalog.expiration_value(market)
            yes = market.resolves_yes(value)
            out.append((market.determination_ms, "market_lifecycle_v2", _base(market, "determined") | {
                "result": "yes" if yes else "no", "determination_ts": market.determination_ms // 1000,
                "settlement_value": "1.0000" if yes else "0.0000",
            }))
        if after_ms < market.settled_ms <= upto_ms:
            out.append((market.settled_ms, "market_lifecycle_v2",
                        _base(market, "settled") | {"settled_ts": market.settled_ms // 1000}))
    for ts_ms, ticker, event_type, extra in catalog.manual_events:
        if after_ms < ts_ms <= upto_ms:
            manual = catalog.market(ticker, upto_ms)
            if manual is not None:
                out.append((ts_ms, "market_lifecycle_v2", _base(manual, event_type) | extra))
    out.sort(key=lambda item: item[0])
    return out


def _base(market: Market, event_type: str) -> dict[str, Any]:
    return {"market_ticker": market.ticker, "event_type": event_type, "exchange_index": 0}


def _created(catalog: Catalog, market: Market) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": market.title, "title": market.title, "yes_sub_title": market.yes_sub_title,
        "no_sub_title": market.yes_sub_title, "rules_primary": market.rules_primary,
        "rules_secondary": market.rules_secondary, "can_close_early": True, "event_ticker": market.event_ticker,
        "expected_expiration_ts": market.close_ms // 1000 + 300, "strike_type": market.strike_type,
    }
    if market.series_ticker == "KXBTC15M":
        # The target price is unknown at creation; it arrives with `metadata_updated` after the open.
        metadata["yes_sub_title"] = metadata["no_sub_title"] = "Target price: TBD"
    elif market.floor_strike is not None:
        metadata["floor_strike"] = market.floor_strike
    if market.cap_strike is not None:
        metadata["cap_strike"] = market.cap_strike
    return _base(market, "created") | {
        "open_ts": market.open_ms // 1000, "close_ts": catalog.close_ms(market) // 1000,
        "price_level_structure": market.price_level_structure,
        "price_ranges": PRICE_RANGES[market.price_level_structure], "additional_metadata": metadata,
    }


def _event_created(venue: KalshiVenue, market: Market) -> dict[str, Any]:
    event = venue.catalog.event(market.event_ticker, market.created_ms)
    title, subtitle = (event.title, event.sub_title) if event is not None else (market.title, "")
    return {"event_ticker": market.event_ticker, "exchange_index": 0, "title": title, "subtitle": subtitle,
            "collateral_return_type": "MECNET" if market.strike_type == "between" else "DIRECNET",
            "series_ticker": market.series_ticker}


def cfbenchmarks_msg(venue: KalshiVenue, second: int, window_s: int) -> dict[str, Any]:
    """`cfbenchmarks_value` for the BRTI print of `second` (1 Hz), with the trailing 60-second average.

    `avg_60s_data` covers `[ts − 60 000, ts)` (§5 and the documented sample: start = `time` − 60 000,
    `window_end_ts_exclusive` = `time`): the 60 prints before this one, not this one.
    `last_60s_windowed_average_15min` appears only in the minute before a window close: its window is
    `(close − 60 s, close]` and its count reaches 60 at the close tick (§5). The simulator's windows are
    the KXBTC15M windows of its time scale.
    """
    source = venue.catalog.source
    ts_ms = second * 1000
    value = source.index_usd(ts_ms)
    msg: dict[str, Any] = {
        "index_id": "BRTI", "received_at": ts_ms,
        "data": json.dumps({"type": "value", "id": "BRTI", "time": ts_ms, "value": f"{value:.2f}"}),
    }
    trailing = source.index_at_seconds(np.arange(max(second - 60, source.origin_s), second))
    if len(trailing):  # none only at the very first print of the path
        msg["avg_60s_data"] = {"value": f"{trailing.mean():.8f}", "window_size": len(trailing),
                               "window_start_ts_ms": ts_ms - 60_000, "window_end_ts_exclusive": ts_ms}
    close_s = -(-second // window_s) * window_s
    if close_s - second < 60:
        in_window = source.index_at_seconds(np.arange(max(close_s - 59, source.origin_s), second + 1))
        msg["last_60s_windowed_average_15min"] = {
            "value": f"{in_window.mean():.8f}", "window_size": len(in_window),
            "window_start_ts_ms": (close_s - 59) * 1000, "window_end_ts_exclusive": close_s * 1000 + 1,
        }
    return msg


_LEGACY_PRICES = {"price_dollars": "price", "yes_bid_dollars": "yes_bid", "yes_ask_dollars": "yes_ask",
                  "yes_price_dollars": "yes_price", "no_price_dollars": "no_price"}
_LEGACY_COUNTS = {"volume_fp": "volume", "open_interest_fp": "open_interest", "count_fp": "count",
                  "delta_fp": "delta"}


def with_legacy_fields(kind: str, msg: dict[str, Any]) -> dict[str, Any]:
    """Add the integer-cent/integer-count twins WebSocket messages carried before 2026-03-12 (§4)."""
    out = dict(msg)
    for name, legacy in _LEGACY_PRICES.items():
        if name in msg:
            out[legacy] = round(float(msg[name]) * 100)
    for name, legacy in _LEGACY_COUNTS.items():
        if name in msg:
            out[legacy] = int(float(msg[name]))
    if kind == "orderbook_snapshot":
        for side in ("yes", "no"):
            if f"{side}_dollars_fp" in msg:
                out[side] = [[round(float(p) * 100), int(float(c))] for p, c in msg[f"{side}_dollars_fp"]]
    return out

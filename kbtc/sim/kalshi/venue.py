"""The simulated Kalshi exchange state shared by the REST and WebSocket servers, and its wire shapes.

Shapes follow today's API (`reference/kalshi_api.md` §4): prices as `*_dollars` strings with 4 decimals,
counts as `*_fp` strings with 2 decimals, no integer-cent fields — unless `legacy_cents` is on, which adds
the pre-2026-03-12 integer fields next to them (for testing parsers against recorded history).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from kbtc.sim.market_maker import PRICE_RANGES, PRICE_UNITS, Book, MarketMaker
from kbtc.sim.markets import SERIES, SETTLEMENT_SOURCES, Catalog, Event, Market, iso

# `?status=` words → response statuses (`reference/kalshi_api.md` §4, status filter mapping).
STATUS_FILTERS: dict[str, frozenset[str]] = {
    "unopened": frozenset({"initialized"}),
    "open": frozenset({"active"}),
    "paused": frozenset({"inactive"}),
    "closed": frozenset({"closed", "determined"}),
    "settled": frozenset({"finalized"}),
}


def dollars(units: int) -> str:
    """$0.0001 price units → a 4-decimal dollar string."""
    return f"{units / PRICE_UNITS:.4f}"


def fp(count_c: int) -> str:
    """Hundredths of a contract → a 2-decimal count string."""
    return f"{count_c / 100:.2f}"


@dataclass(frozen=True, slots=True)
class TopOfBook:
    """Best quotes, sizes, last trade and running totals of a market at one second."""

    yes_bid: int
    yes_ask: int
    yes_bid_size_c: int
    yes_ask_size_c: int
    last_price: int
    last_trade_size_c: int
    volume_c: int
    open_interest_c: int
    dollar_volume: int
    dollar_open_interest: int


@dataclass(frozen=True, slots=True)
class Trade:
    """One public trade."""

    trade_id: str
    ticker: str
    second: int
    yes_price: int
    count_c: int
    taker_yes: bool

    def to_json(self) -> dict[str, Any]:
        """The REST `/markets/trades` row (the WebSocket `trade` msg adds `market_ticker` and `ts_ms`)."""
        side = "yes" if self.taker_yes else "no"
        return {
            "trade_id": self.trade_id, "ticker": self.ticker, "count_fp": fp(self.count_c),
            "yes_price_dollars": dollars(self.yes_price), "no_price_dollars": dollars(PRICE_UNITS - self.yes_price),
            "taker_side": side, "taker_outcome_side": side, "taker_book_side": "bid",
            "created_time": iso(self.second * 1000), "is_block_trade": False,
        }


class KalshiVenue:
    """Catalog + market maker + clock: everything the Kalshi servers serve, as JSON-ready dicts."""

    def __init__(self, catalog: Catalog, maker: MarketMaker, clock: Callable[[], int], *,
                 legacy_cents: bool = False) -> None:
        self.catalog = catalog
        self.maker = maker
        self.clock = clock
        self.legacy_cents = legacy_cents
        self._pruned_ms = 0

    def prune(self, now_ms: int, every_ms: int = 60_000) -> None:
        """At most once a minute, forget cached markets that are no longer listed."""
        if abs(now_ms - self._pruned_ms) < every_ms:
            return
        self._pruned_ms = now_ms
        self.catalog.forget_before(now_ms - self.catalog.config.history_s * 1000)
        self.maker.retain({m.ticker for m in self.catalog.markets(now_ms)})

    def now_ms(self) -> int:
        """The simulator's current time (epoch ms)."""
        return self.clock()

    def trading(self, market: Market, now_ms: int) -> bool:
        """True while the market shows a book (active or paused, before its effective close)."""
        return self.catalog.status(market, now_ms) in ("active", "inactive")

    def book(self, market: Market, now_ms: int) -> Book:
        """Resting bids now (empty outside trading hours)."""
        if not self.trading(market, now_ms):
            return Book({}, {})
        paused_since = self.catalog.paused_since(market, now_ms)
        return self.maker.book(market, (now_ms if paused_since is None else paused_since) // 1000)

    def top(self, market: Market, now_ms: int) -> TopOfBook:
        """Best quotes and running totals at `now_ms`."""
        book = self.book(market, now_ms)
        best_yes = max(book.yes) if book.yes else 0
        best_no = max(book.no) if book.no else 0
        tape = self.maker.tape(market)
        row = self.maker.last_trade_row(market, min(now_ms, self.catalog.close_ms(market) - 1) // 1000)
        volume_c = int(tape.cum_volume_c[row]) if row is not None else 0
        dollar_volume = float(tape.cum_dollar_volume[row]) if row is not None else 0.0
        last_price = int(tape.trade_price[row]) if row is not None else 0
        last_size_c = int(tape.trade_count_c[row]) if row is not None else 0
        if market.ticker in self.catalog.pauses:
            # Rare: recount from the trades actually printed (none while paused).
            printed = self.trades(market, market.open_ms // 1000, now_ms // 1000)
            volume_c = sum(t.count_c for t in printed)
            dollar_volume = sum(t.count_c * t.yes_price for t in printed) / 100 / PRICE_UNITS
            last_price = printed[-1].yes_price if printed else 0
            last_size_c = printed[-1].count_c if printed else 0
        # Open interest ignores netting; the simulator keeps it a fixed share of volume.
        oi_c = (volume_c * 3 // 5) // 100 * 100
        return TopOfBook(
            yes_bid=best_yes, yes_ask=PRICE_UNITS - best_no if book.no else PRICE_UNITS,
            yes_bid_size_c=book.yes.get(best_yes, 0), yes_ask_size_c=book.no.get(best_no, 0),
            last_price=last_price, last_trade_size_c=last_size_c,
            volume_c=volume_c, open_interest_c=oi_c, dollar_volume=round(dollar_volume),
            dollar_open_interest=round(dollar_volume * 0.6),
        )

    def trades(self, market: Market, first_s: int, last_s: int) -> list[Trade]:
        """Trades of a market in seconds `[first_s, last_s]`, oldest first."""
        tape = self.maker.tape(market)
        last_s = min(last_s, self.catalog.close_ms(market) // 1000 - 1)
        lo, hi = max(first_s - tape.open_s, 0), min(last_s - tape.open_s + 1, len(tape.fair))
        out = []
        for i in (lo + np.flatnonzero(tape.trade_count_c[lo:hi])).tolist():
            second = tape.open_s + i
            if self.catalog.paused_since(market, second * 1000) is None:
                out.append(Trade(_trade_id(self.maker.seed, market.ticker, second), market.ticker, second,
                                 int(tape.trade_price[i]), int(tape.trade_count_c[i]), bool(tape.trade_taker_yes[i])))
        return out

    def market_json(self, market: Market, now_ms: int) -> dict[str, Any]:
        """The Market object of `GET /markets/{ticker}` (`reference/kalshi_api.md` §4)."""
        catalog = self.catalog
        status = catalog.status(market, now_ms)
        top = self.top(market, now_ms)
        close_ms = catalog.close_ms(market)
        latest_ms = market.close_ms + 7 * 86400_000
        body: dict[str, Any] = {
            "ticker": market.ticker, "event_ticker": market.event_ticker, "market_type": "binary",
            "title": market.title, "subtitle": market.yes_sub_title,
            "yes_sub_title": market.yes_sub_title, "no_sub_title": market.yes_sub_title,
            "created_time": iso(market.created_ms), "updated_time": iso(self._updated_ms(market, now_ms)),
            "open_time": iso(market.open_ms), "close_time": iso(close_ms),
            "expected_expiration_time": iso(market.close_ms + 300_000),
            "expiration_time": iso(latest_ms), "latest_expiration_time": iso(latest_ms),
            "occurrence_datetime": iso(market.close_ms + 300_000),
            "settlement_timer_seconds": market.settlement_timer_s, "status": status,
            "can_close_early": True, "exchange_index": 0,
            "notional_value_dollars": "1.0000", "liquidity_dollars": "0.0000",
            "yes_bid_dollars": dollars(top.yes_bid), "yes_ask_dollars": dollars(top.yes_ask),
            "no_bid_dollars": dollars(PRICE_UNITS - top.yes_ask), "no_ask_dollars": dollars(PRICE_UNITS - top.yes_bid),
            "yes_bid_size_fp": fp(top.yes_bid_size_c), "yes_ask_size_fp": fp(top.yes_ask_size_c),
            "last_price_dollars": dollars(top.last_price),
            "previous_yes_bid_dollars": "0.0000", "previous_yes_ask_dollars": "0.0000",
            "previous_price_dollars": "0.0000",
            "volume_fp": fp(top.volume_c), "volume_24h_fp": fp(top.volume_c),
            "open_interest_fp": fp(top.open_interest_c),
            "result": "", "expiration_value": "",
            "rules_primary": market.rules_primary, "rules_secondary": market.rules_secondary,
            "price_level_structure": market.price_level_structure,
            "price_ranges": PRICE_RANGES[market.price_level_structure],
            "strike_type": market.strike_type,
        }
        if market.series_ticker == "KXBTC15M":
            body["custom_strike"] = {"round_digits": "2"}
            if now_ms < market.strike_known_ms:
                # The target price is the 60-s average before the open, published shortly after it (§8).
                body["yes_sub_title"] = body["no_sub_title"] = body["subtitle"] = "Target price: TBD"
        if market.floor_strike is not None and now_ms >= market.strike_known_ms:
            body["floor_strike"] = market.floor_strike
        if market.cap_strike is not None:
            body["cap_strike"] = market.cap_strike
        if now_ms >= market.determination_ms:
            value = catalog.expiration_value(market)
            yes = market.resolves_yes(value)
            body["result"] = "yes" if yes else "no"
            # KXBTC15M rounds to cents; the others settle on the raw mean of 60 cent prints (k/6000 dollars),
            # shown to 4 decimals, which never rounds onto an "X.99" strike it is not equal to.
            body["expiration_value"] = f"{value:.2f}" if market.series_ticker == "KXBTC15M" else f"{value:.4f}"
            body["settlement_value_dollars"] = "1.0000" if yes else "0.0000"
        if now_ms >= market.settled_ms:
            body["settlement_ts"] = iso(market.settled_ms)
        if self.legacy_cents:
            body.update(_legacy_fields(top))
        return body

    def _updated_ms(self, market: Market, now_ms: int) -> int:
        times = [market.created_ms, market.open_ms, market.strike_known_ms, market.close_ms,
                 market.determination_ms, market.settled_ms]
        return max(t for t in times if t <= now_ms)

    def event_json(self, event: Event, now_ms: int, *, nested: bool) -> dict[str, Any]:
        """EventData (`reference/kalshi_api.md` §3, `GET /events/{ticker}`)."""
        body: dict[str, Any] = {
            "event_ticker": event.event_ticker, "series_ticker": event.series_ticker,
            "title": event.title, "sub_title": event.sub_title,
            "collateral_return_type": "MECNET" if SERIES[event.series_ticker].kind == "range" else "DIRECNET",
            "mutually_exclusive": SERIES[event.series_ticker].kind == "range",
            "available_on_brokers": False, "category": "Crypto",
            "strike_date": iso(event.close_ms), "settlement_sources": SETTLEMENT_SOURCES,
            "product_metadata": {"cadence": "fifteen_min"} if event.series_ticker == "KXBTC15M" else None,
            "last_updated_ts": iso(max(self._updated_ms(m, now_ms) for m in event.markets)),
            "exchange_index": 0,
        }
        if nested:
            body["markets"] = [self.market_json(m, now_ms) for m in event.markets]
        return body

    def series_json(self, ticker: str) -> dict[str, Any]:
        """The Series object of `GET /series/{ticker}`, with `fee_type` and `fee_multiplier` (§3, §7)."""
        spec = SERIES[ticker]
        return {
            "ticker": spec.ticker, "frequency": spec.frequency, "title": spec.title, "category": "Crypto",
            "tags": ["BTC"], "settlement_sources": SETTLEMENT_SOURCES,
            "contract_url": "https://kalshi.com/markets/" + spec.ticker.lower(),
            "contract_terms_url": "https://kalshi.com/docs/" + spec.ticker.lower() + ".pdf",
            "product_metadata": {}, "fee_type": spec.fee_type, "fee_multiplier": spec.fee_multiplier,
            "additional_prohibitions": [], "last_updated_ts": iso(self.catalog.source.origin_ms),
            "exchange_index": 0,
        }

    def trade_json(self, trade: Trade) -> dict[str, Any]:
        """A `GET /markets/trades` row; with `legacy_cents`, also the integer `yes_price`/`no_price` (cents) and
        `count` removed on 2026-03-12 (§4 migration timeline)."""
        body = trade.to_json()
        if self.legacy_cents:
            no_price = PRICE_UNITS - trade.yes_price
            body |= {"yes_price": round(trade.yes_price / 100), "no_price": round(no_price / 100),
                     "count": trade.count_c // 100}
        return body

    def orderbook_json(self, market: Market, now_ms: int, depth: int) -> dict[str, Any]:
        """`GET /markets/{ticker}/orderbook`: bids only, ascending, best last (§3); `orderbook` too if legacy."""
        book = self.book(market, now_ms)
        sides = {name: sorted(levels.items()) for name, levels in (("yes", book.yes), ("no", book.no))}
        if depth > 0:
            sides = {name: levels[-depth:] for name, levels in sides.items()}
        body: dict[str, Any] = {"orderbook_fp": {
            f"{name}_dollars": [[dollars(p), fp(c)] for p, c in levels] for name, levels in sides.items()
        }}
        if self.legacy_cents:
            body["orderbook"] = {
                name: [[round(p / 100), c // 100] for p, c in levels] for name, levels in sides.items()
            }
        return body


def _legacy_fields(top: TopOfBook) -> dict[str, Any]:
    """The integer-cent and integer-count fields removed on 2026-03-12 (§4 migration timeline)."""

    def cents(units: int) -> int:
        return round(units / 100)

    return {
        "yes_bid": cents(top.yes_bid), "yes_ask": cents(top.yes_ask),
        "no_bid": 100 - cents(top.yes_ask), "no_ask": 100 - cents(top.yes_bid),
        "last_price": cents(top.last_price), "previous_yes_bid": 0, "previous_yes_ask": 0, "previous_price": 0,
        "notional_value": 100, "volume": top.volume_c // 100, "volume_24h": top.volume_c // 100,
        "open_interest": top.open_interest_c // 100, "liquidity": 0,
    }


def _trade_id(seed: int, ticker: str, second: int) -> str:
    digest = hashlib.blake2b(f"{seed}/{ticker}/{second}".encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))

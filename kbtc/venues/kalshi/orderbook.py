"""Order books: YES and NO bid ladders built from a snapshot plus signed deltas (kalshi_api.md §3, §5).

Kalshi publishes **bids only**, for YES and for NO. A NO bid at p is a YES ask at 1 − p, so:
best YES ask = 100 − best NO bid and best NO ask = 100 − best YES bid (in cents).

Prices are kept as integer $0.0001 units (exact, sub-penny ticks included) and sizes as float contracts.
NO levels are kept in NO-leg prices: by default the `orderbook_delta` channel quotes NO levels in NO-leg
prices; a subscription with `use_yes_price: true` quotes them in YES-leg prices, which `apply_delta`
converts (`1 − p`) when the book was created with `use_yes_price=True`.
Legacy payloads (before 2026-03-12) are read like current ones: integer-cent `yes`/`no` snapshot ladders and
integer-cent `price` / integer `delta` deltas, each used only when its `*_dollars` / `*_fp` twin is absent.
Sequence checks live in the stream client (`seq` is per subscription, not per book).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kbtc.venues.kalshi.parsing import UNITS_PER_DOLLAR, FieldError, price_units

_EPSILON = 1e-9  # sizes are multiples of 0.01 contract; anything below this is an empty level


@dataclass(frozen=True, slots=True)
class DepthFill:
    """What buying `requested` contracts against the book would fill: size, average and worst price."""

    requested: float
    filled: float
    avg_price_cents: float | None
    worst_price_cents: float | None


def _finite(value: Any, field: str) -> float:
    """A finite number from a number or numeric string, else `FieldError` (a crash would stop the stream)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FieldError(f"{field}: not a number: {value!r}") from None
    if not math.isfinite(number):
        raise FieldError(f"{field}: not finite: {value!r}")
    return number


def _levels(raw: Any, *, cents: bool) -> dict[int, float]:
    """`[[price, size], ...]` → {price units: size}; a missing/null/empty side is an empty ladder."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise FieldError(f"book side is not a list: {type(raw).__name__}")
    out: dict[int, float] = {}
    for level in raw:
        if not isinstance(level, list | tuple) or len(level) < 2:
            raise FieldError(f"book level is not [price, size]: {level!r}")
        if cents:
            units = _cent_units(level[0], "book price")
        else:
            parsed = price_units(level[0], "book price")
            if parsed is None:
                raise FieldError(f"book price missing: {level!r}")
            units = parsed
        size = _finite(level[1], "book size")
        if size > _EPSILON:
            out[units] = out.get(units, 0.0) + size
    return out


def parse_book_sides(payload: Mapping[str, Any]) -> tuple[dict[int, float], dict[int, float]]:
    """YES and NO bid ladders from any documented book shape.

    REST: `{"orderbook_fp": {"yes_dollars", "no_dollars"}}` (current), `{"orderbook": {"yes_dollars",
    "no_dollars", "yes", "no"}}` (Dec 2025) or `{"orderbook": {"yes", "no"}}` in integer cents (pre 2026-03).
    WS snapshot `msg`: `yes_dollars_fp`/`no_dollars_fp` (current) or `yes_dollars`/`no_dollars`/`yes`/`no`.
    A side that is missing, null or empty is an empty ladder (Kalshi/kalshi-python #2 crashed on null).
    """
    body: Any = payload
    for key in ("orderbook_fp", "orderbook"):
        if key in payload:
            body = payload[key] if payload[key] is not None else {}
            break
    if not isinstance(body, Mapping):
        raise FieldError("orderbook is not an object")
    sides: list[dict[int, float]] = []
    for side in ("yes", "no"):
        for key, cents in ((f"{side}_dollars_fp", False), (f"{side}_dollars", False), (side, True)):
            if body.get(key) is not None:
                sides.append(_levels(body[key], cents=cents))
                break
        else:
            sides.append({})
    return sides[0], sides[1]


def _dollar_units(value: Any, field: str) -> int:
    """A dollar price as $0.0001 units (the range is checked first: a huge float would overflow `round`)."""
    dollars = _finite(value, field)
    if not 0.0 <= dollars <= 1.0:
        raise FieldError(f"{field}: outside $0-$1: {value!r}")
    return round(dollars * UNITS_PER_DOLLAR)


def _cent_units(value: Any, field: str) -> int:
    """A legacy integer-cent price as $0.0001 units."""
    cents = _finite(value, field)
    if not 0.0 <= cents <= 100.0:
        raise FieldError(f"{field}: outside 0-100 cents: {value!r}")
    return round(cents * 100)


def parse_delta(msg: Mapping[str, Any]) -> tuple[str, int, float]:
    """(side, price in $0.0001, signed size change) of an `orderbook_delta` msg; `FieldError` names what is wrong.

    Current fields: `price_dollars`, `delta_fp`. Payloads from before 2026-03-12 carry the integer-cent `price`
    and the integer `delta`, read only when the current twin is absent (as for snapshots and every other message).
    """
    price = msg.get("price_dollars")
    if price is not None:
        units = _dollar_units(price, "price_dollars")
    elif msg.get("price") is not None:
        units = _cent_units(msg["price"], "price")
    else:
        raise FieldError("price_dollars: missing")
    change = msg.get("delta_fp")
    if change is not None:
        size = _finite(change, "delta_fp")
    elif msg.get("delta") is not None:
        size = _finite(msg["delta"], "delta")
    else:
        raise FieldError("delta_fp: missing")
    side = msg.get("side")
    if side is None:
        raise FieldError("side: missing")
    return side, units, size


class OrderBook:
    """One market's book: YES and NO bid ladders, best prices and sizes, depth to a size."""

    __slots__ = ("market_ticker", "no_bids", "seq", "stale", "use_yes_price", "yes_bids")

    def __init__(self, market_ticker: str, *, use_yes_price: bool = False) -> None:
        self.market_ticker = market_ticker
        self.use_yes_price = use_yes_price
        self.yes_bids: dict[int, float] = {}
        self.no_bids: dict[int, float] = {}
        self.seq: int | None = None
        self.stale = True  # until the first snapshot

    def apply_snapshot(self, payload: Mapping[str, Any], seq: int | None = None) -> None:
        """Replace both ladders with a snapshot (`orderbook_snapshot` msg or a REST orderbook body)."""
        yes, no = parse_book_sides(payload)
        if self.use_yes_price:
            no = {UNITS_PER_DOLLAR - units: size for units, size in no.items()}
        self.yes_bids, self.no_bids = yes, no
        self.seq = seq
        self.stale = False

    def apply_delta(self, side: str, price_dollars: str, delta_fp: str, seq: int | None = None) -> None:
        """Add a signed size change at one level (`orderbook_delta` msg: side, price_dollars, delta_fp)."""
        self.apply_change(side, _dollar_units(price_dollars, "price_dollars"), _finite(delta_fp, "delta_fp"), seq)

    def apply_change(self, side: str, units: int, change: float, seq: int | None = None) -> None:
        """Add a signed size change at a price in $0.0001 (`parse_delta` gives the arguments)."""
        if side == "yes":
            ladder = self.yes_bids
        elif side == "no":
            ladder = self.no_bids
            if self.use_yes_price:
                units = UNITS_PER_DOLLAR - units
        else:
            raise FieldError(f"side: not yes/no: {side!r}")
        size = ladder.get(units, 0.0) + change
        if size > _EPSILON:
            ladder[units] = size
        else:
            ladder.pop(units, None)
        if seq is not None:
            self.seq = seq

    # -- top of book ------------------------------------------------------------------------------------

    def best_yes_bid_cents(self) -> float | None:
        """Highest YES bid in cents."""
        return max(self.yes_bids) / 100 if self.yes_bids else None

    def best_no_bid_cents(self) -> float | None:
        """Highest NO bid in cents."""
        return max(self.no_bids) / 100 if self.no_bids else None

    def best_yes_ask_cents(self) -> float | None:
        """Cheapest YES offer: 100 − best NO bid."""
        return (UNITS_PER_DOLLAR - max(self.no_bids)) / 100 if self.no_bids else None

    def best_no_ask_cents(self) -> float | None:
        """Cheapest NO offer: 100 − best YES bid."""
        return (UNITS_PER_DOLLAR - max(self.yes_bids)) / 100 if self.yes_bids else None

    def top(self) -> dict[str, float | None]:
        """Best bids and asks on both sides with their sizes (quote-row field names)."""
        best_yes = max(self.yes_bids) if self.yes_bids else None
        best_no = max(self.no_bids) if self.no_bids else None
        return {
            "yes_bid_cents": None if best_yes is None else best_yes / 100,
            "yes_ask_cents": None if best_no is None else (UNITS_PER_DOLLAR - best_no) / 100,
            "no_bid_cents": None if best_no is None else best_no / 100,
            "no_ask_cents": None if best_yes is None else (UNITS_PER_DOLLAR - best_yes) / 100,
            "yes_bid_size": None if best_yes is None else self.yes_bids[best_yes],
            "yes_ask_size": None if best_no is None else self.no_bids[best_no],
        }

    def depth(self, buy: str, size: float) -> DepthFill:
        """Fill `size` contracts buying `buy` ("yes" or "no") against the opposite bids, best first."""
        opposite = self.no_bids if buy == "yes" else self.yes_bids
        remaining = size
        cost_units = 0.0
        worst: int | None = None
        for units in sorted(opposite, reverse=True):
            if remaining <= _EPSILON:
                break
            take = min(remaining, opposite[units])
            ask_units = UNITS_PER_DOLLAR - units
            cost_units += take * ask_units
            remaining -= take
            worst = ask_units
        filled = size - max(remaining, 0.0)
        avg = cost_units / filled / 100 if filled > _EPSILON else None
        return DepthFill(size, filled, avg, None if worst is None else worst / 100)

    def ladders_json(self) -> tuple[str, str]:
        """YES and NO ladders as JSON `[[price_cents, size], ...]`, best (highest) price first."""
        return (
            json.dumps([[u / 100, s] for u, s in sorted(self.yes_bids.items(), reverse=True)]),
            json.dumps([[u / 100, s] for u, s in sorted(self.no_bids.items(), reverse=True)]),
        )

    def snapshot_row(self, book_ts: int, received_ts: int, source: str) -> dict[str, Any]:
        """The book as an `orderbook_snapshots` row."""
        yes_json, no_json = self.ladders_json()
        return {
            "market_ticker": self.market_ticker,
            "book_ts": book_ts,
            "received_ts": received_ts,
            "source": source,
            "seq": self.seq,
            "yes_bids_json": yes_json,
            "no_bids_json": no_json,
            "best_yes_bid_cents": self.best_yes_bid_cents(),
            "best_no_bid_cents": self.best_no_bid_cents(),
        }

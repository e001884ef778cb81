"""Typed records of the Coinbase feeds and the field readers both wire shapes share (no I/O).

`SpotTick` is one `spot_ticks` row; `ParsedFrame` is what a frame turned out to be. Field readers raise
`FrameError(reason)`, and the reason becomes the reject's reason. Numbers arrive as strings
(reference/coinbase_api.md §1.4); timestamps are RFC 3339 with up to nine fractional digits, kept whole (§1.3).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from kbtc.venues.records import RejectRecord

SOURCE_ADVANCED = "coinbase_advanced"
SOURCE_EXCHANGE = "coinbase_exchange"
REJECT_SOURCE = "coinbase_ws"
FeedSource = Literal["advanced", "exchange"]


class FrameKind(StrEnum):
    """What a frame turned out to be."""

    TICKER = "ticker"
    HEARTBEAT = "heartbeat"
    SUBSCRIPTIONS = "subscriptions"
    MARKET_TRADES = "market_trades"
    ERROR = "error"
    OTHER = "other"  # a channel/type we do not use (ignored, per the protocol)
    REJECTED = "rejected"  # could not be parsed at all


class SpotTick(NamedTuple):
    """One ticker update, a `spot_ticks` row: venue time at full precision (ns, and ms) and our receive time (ms).

    A tuple in the table's column order, so a batch of ticks is handed to the database as it is.
    """

    product_id: str
    source: str
    tick_ts: int
    venue_time_ns: int
    received_ts: int
    price: float
    best_bid: float | None
    best_ask: float | None
    best_bid_size: float | None
    best_ask_size: float | None
    sequence_num: int | None


TICK_COLUMNS = SpotTick._fields


@dataclass(slots=True)
class ParsedFrame:
    """The result of parsing one frame."""

    kind: FrameKind
    sequence_num: int | None = None
    # Exchange only: the product the sequence belongs to (sequences are per product there).
    sequence_product: str | None = None
    ticks: list[SpotTick] = field(default_factory=list)
    rejects: list[RejectRecord] = field(default_factory=list)
    heartbeat_counter: int | None = None
    subscriptions: dict[str, list[str]] | None = None
    error_message: str | None = None


class FrameError(ValueError):
    """A frame or a field in it is unusable; the message is the reject reason."""


# ---------------------------------------------------------------------------------------------------------
# Timestamps
# ---------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _epoch_seconds(whole_seconds: str) -> int:
    # Frames arrive many per second: the calendar part repeats, so it is parsed once per distinct second.
    moment = datetime.fromisoformat(whole_seconds)
    if moment.tzinfo is None:
        raise FrameError("bad_timestamp")
    return int(moment.timestamp())


_FRACTION_SCALE: dict[int, int] = {digits: 10 ** (9 - digits) for digits in range(1, 10)}


def rfc3339_to_ns(text: object) -> int:
    """Epoch nanoseconds of an RFC 3339 time with up to 9 fractional digits (`...T20:30:37.167359596Z`).

    `datetime.fromisoformat` would truncate to microseconds (reference/coinbase_api.md §1.3), so the fraction
    is read separately and kept whole.
    """
    if not isinstance(text, str) or len(text) < 20:
        raise FrameError("bad_timestamp")
    if text[-1] == "Z" and text[19] == "." and 21 < len(text) <= 30:
        # The common shape, `YYYY-MM-DDTHH:MM:SS.fffffffffZ`: no splitting beyond two slices.
        fraction = text[20:-1]
        if fraction.isdigit():
            try:
                seconds = _epoch_seconds(text[:19] + "+00:00")
            except ValueError:
                raise FrameError("bad_timestamp") from None
            return seconds * 1_000_000_000 + int(fraction) * _FRACTION_SCALE[len(fraction)]
    if text.endswith(("Z", "z")):
        body, offset = text[:-1], "+00:00"
    elif len(text) > 25 and text[-6] in "+-" and text[-3] == ":":
        body, offset = text[:-6], text[-6:]
    else:
        raise FrameError("bad_timestamp")
    whole, dot, fraction = body.partition(".")
    if dot and not (0 < len(fraction) <= 9 and fraction.isdigit()):
        raise FrameError("bad_timestamp")
    try:
        seconds = _epoch_seconds(whole + offset)
    except ValueError:
        raise FrameError("bad_timestamp") from None
    nanos = int(fraction.ljust(9, "0")) if dot else 0
    return seconds * 1_000_000_000 + nanos


# ---------------------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------------------


_INF = math.inf


def _number(value: object, name: str) -> float:
    # Numbers arrive as strings (§1.4); the string case is the hot path.
    if value.__class__ is str:
        try:
            number = float(value)
        except ValueError:
            raise FrameError(f"non_numeric_{name}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        raise FrameError(f"missing_{name}")
    if not math.isfinite(number):
        raise FrameError(f"non_numeric_{name}")
    return number


def _price(value: object, name: str) -> float:
    number = _number(value, name)
    if number <= 0:
        raise FrameError(f"non_positive_{name}")
    return number


def _optional_number(value: object, name: str, *, positive: bool) -> float | None:
    # Empty strings appear in documented-but-empty payloads (ccxt's empty ticker_batch, §1.4).
    if value is None or value == "":
        return None
    number = _number(value, name)
    if number < 0 or (positive and number == 0):
        raise FrameError(f"non_positive_{name}" if positive else f"negative_{name}")
    return number


def parse_counter(value: object) -> int | None:
    """`heartbeat_counter` as an int: a string in the docs, an integer on live feeds (§1.5)."""
    if isinstance(value, bool):
        raise FrameError("bad_heartbeat_counter")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if value is None:
        return None
    raise FrameError("bad_heartbeat_counter")


def parse_sequence(value: object, name: str) -> int:
    """A non-negative sequence number (an integer or a digit string)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise FrameError(f"bad_{name}")
    if isinstance(value, str):
        if not value.isdigit():
            raise FrameError(f"bad_{name}")
        return int(value)
    if value < 0:
        raise FrameError(f"bad_{name}")
    return value


def build_tick(
    data: dict[str, Any],
    *,
    source: str,
    venue_time_ns: int,
    received_ts: int,
    sequence_num: int | None,
    bid_size_key: str,
    ask_size_key: str,
) -> SpotTick:
    """A validated tick from a ticker object (Advanced Trade or Exchange field names)."""
    tick_ts = venue_time_ns // 1_000_000
    # Fast path for the usual ticker: every field a numeric string, positive prices, an uncrossed book.
    # Anything else falls through to the checks below, which name the problem.
    try:
        product_id, price_s, bid_s, ask_s = data["product_id"], data["price"], data["best_bid"], data["best_ask"]
        bid_size_s, ask_size_s = data[bid_size_key], data[ask_size_key]
        if (
            product_id.__class__ is str
            and product_id
            and price_s.__class__ is str
            and bid_s.__class__ is str
            and ask_s.__class__ is str
            and bid_size_s.__class__ is str
            and ask_size_s.__class__ is str
        ):
            price, bid, ask = float(price_s), float(bid_s), float(ask_s)
            bid_size, ask_size = float(bid_size_s), float(ask_size_s)
            if 0 < price < _INF and 0 < bid <= ask < _INF and 0 <= bid_size < _INF and 0 <= ask_size < _INF:
                return SpotTick(
                    product_id, source, tick_ts, venue_time_ns, received_ts, price, bid, ask, bid_size, ask_size,
                    sequence_num,
                )
    except (KeyError, ValueError):
        pass
    product_id = data.get("product_id")
    if not isinstance(product_id, str) or not product_id:
        raise FrameError("missing_product_id")
    price = _price(data.get("price"), "price")
    best_bid = _optional_number(data.get("best_bid"), "best_bid", positive=True)
    best_ask = _optional_number(data.get("best_ask"), "best_ask", positive=True)
    if best_bid is not None and best_ask is not None and best_bid > best_ask:
        raise FrameError("crossed_book")
    return SpotTick(
        product_id,
        source,
        tick_ts,
        venue_time_ns,
        received_ts,
        price,
        best_bid,
        best_ask,
        _optional_number(data.get(bid_size_key), bid_size_key, positive=False),
        _optional_number(data.get(ask_size_key), ask_size_key, positive=False),
        sequence_num,
    )


def as_text(raw: str | bytes) -> str:
    """The frame as text (bytes decoded as UTF-8, bad bytes replaced)."""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def reject_record(raw: str | bytes, reason: str, received_ts: int) -> RejectRecord:
    """A `rejects` record of a WebSocket frame."""
    return RejectRecord(REJECT_SOURCE, reason, received_ts, as_text(raw))


def load_object(raw: str | bytes) -> dict[str, Any]:
    """The frame as a JSON object, or `FrameError`."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise FrameError("malformed_json") from None
    if not isinstance(data, dict):
        raise FrameError("not_an_object")
    return data

"""Market-data records: quotes, trades, lifecycle updates and index prints (kalshi_api.md §3–§5).

- REST market → quote: `yes_bid/yes_ask/no_bid/no_ask_dollars`, `yes_bid/ask_size_fp`, `last_price_dollars`,
  `volume_fp`, `volume_24h_fp`, `open_interest_fp` (legacy integer twins read only when the new ones are absent).
  A REST snapshot carries no quote time, so `quote_ts` is our receive time.
- WS `ticker` → quote: `yes_bid/ask_dollars` and sizes; the NO side is the complement (`no_bid = 100 − yes_ask`).
  `quote_ts` = `ts_ms`, else `ts` (seconds), else the receive time.
- Trades: REST `ticker`/`created_time`, WS `market_ticker`/`ts_ms`; `taker_outcome_side`, else the
  deprecated `taker_side`.
- `market_lifecycle_v2`: every event is kept; `determined` (result, settlement value), `settled`,
  `close_date_updated`, `metadata_updated` and `created` also update the market row.
- Quotes, trades and index prints are NamedTuples: cheap to build per frame, and rows as they are.
- `cfbenchmarks_value`: the BRTI print (inside `data`, a JSON-encoded string) and Kalshi's trailing 60 s average.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from kbtc.venues.kalshi.catalog import event_ticker_of, series_ticker_of
from kbtc.venues.kalshi.parsing import (
    FieldError,
    as_json,
    count,
    dollars_to_cents,
    number,
    price_cents,
    raw_json,
    text,
    time_ms,
)


class QuoteRecord(NamedTuple):
    """A row of `quotes`."""

    market_ticker: str
    quote_ts: int
    received_ts: int
    source: str
    yes_bid_cents: float | None
    yes_ask_cents: float | None
    no_bid_cents: float | None
    no_ask_cents: float | None
    yes_bid_size: float | None
    yes_ask_size: float | None
    last_price_cents: float | None
    volume: float | None
    volume_24h: float | None
    open_interest: float | None

    def as_row(self) -> dict[str, Any]:
        """The record as a table row."""
        return self._asdict()


class TradeRecord(NamedTuple):
    """A row of `kalshi_trades`."""

    trade_id: str
    market_ticker: str
    trade_ts: int
    received_ts: int
    yes_price_cents: float | None
    no_price_cents: float | None
    contracts: float | None  # the `count` column (a NamedTuple cannot have a field named count)
    taker_side: str | None
    source: str

    def as_row(self) -> dict[str, Any]:
        """The record as a table row."""
        row = self._asdict()
        row["count"] = row.pop("contracts")
        return row


@dataclass(frozen=True, slots=True)
class LifecycleRecord:
    """A `market_lifecycle_v2` message: the event row and the partial market update it implies."""

    market_ticker: str
    event_type: str
    event_ts: int
    received_ts: int
    raw_json: str
    market_update: dict[str, Any]

    def as_row(self) -> dict[str, Any]:
        """The `market_lifecycle_events` row."""
        return {
            "market_ticker": self.market_ticker,
            "event_type": self.event_type,
            "event_ts": self.event_ts,
            "received_ts": self.received_ts,
            "raw_json": self.raw_json,
        }


class IndexPriceRecord(NamedTuple):
    """A row of `index_prices` (e.g. BRTI relayed by Kalshi)."""

    index_id: str
    value_ts: int
    received_ts: int
    value_usd: float
    avg_60s_usd: float | None
    avg_60s_count: int | None
    avg_15min_usd: float | None = None
    avg_15min_count: int | None = None

    def as_row(self) -> dict[str, Any]:
        """The record as a table row."""
        return self._asdict()


def _require_ticker(payload: Mapping[str, Any], *keys: str) -> str:
    for key in keys:
        value = text(payload.get(key))
        if value is not None:
            return value
    raise FieldError(f"{keys[0]}: missing")


def quote_from_market(payload: Mapping[str, Any], received_ts: int) -> QuoteRecord:
    """A REST Market object → a quote (source `rest`, quote time = receive time)."""
    return QuoteRecord(
        market_ticker=_require_ticker(payload, "ticker"),
        quote_ts=received_ts,
        received_ts=received_ts,
        source="rest",
        yes_bid_cents=price_cents(payload, "yes_bid_dollars", "yes_bid"),
        yes_ask_cents=price_cents(payload, "yes_ask_dollars", "yes_ask"),
        no_bid_cents=price_cents(payload, "no_bid_dollars", "no_bid"),
        no_ask_cents=price_cents(payload, "no_ask_dollars", "no_ask"),
        yes_bid_size=count(payload, "yes_bid_size_fp"),
        yes_ask_size=count(payload, "yes_ask_size_fp"),
        last_price_cents=price_cents(payload, "last_price_dollars", "last_price"),
        volume=count(payload, "volume_fp", "volume"),
        volume_24h=count(payload, "volume_24h_fp", "volume_24h"),
        open_interest=count(payload, "open_interest_fp", "open_interest"),
    )


def quote_from_ticker(msg: Mapping[str, Any], received_ts: int) -> QuoteRecord:
    """A WS `ticker` msg → a quote (source `ws`); NO prices are the complements of the YES ask/bid.

    Runs once per ticker frame: positional construction and an inlined `ts_ms` fast path.
    """
    ticker = msg.get("market_ticker")
    if type(ticker) is not str or not ticker:
        raise FieldError("market_ticker: missing")
    yes_bid = price_cents(msg, "yes_bid_dollars", "yes_bid")
    yes_ask = price_cents(msg, "yes_ask_dollars", "yes_ask")
    quote_ts = msg.get("ts_ms")
    if type(quote_ts) is not int:
        quote_ts = time_ms(quote_ts, "ts_ms")
        if quote_ts is None:
            quote_ts = time_ms(msg.get("ts"), "ts")
    return QuoteRecord(
        ticker,
        received_ts if quote_ts is None else quote_ts,
        received_ts,
        "ws",
        yes_bid,
        yes_ask,
        None if yes_ask is None else (10_000 - round(yes_ask * 100)) / 100,
        None if yes_bid is None else (10_000 - round(yes_bid * 100)) / 100,
        count(msg, "yes_bid_size_fp"),
        count(msg, "yes_ask_size_fp"),
        price_cents(msg, "price_dollars", "price"),
        count(msg, "volume_fp", "volume"),
        None,
        count(msg, "open_interest_fp", "open_interest"),
    )


def validate_quote(quote: QuoteRecord) -> str | None:
    """A reason to reject a quote (crossed YES or NO side), or None."""
    for side in ("yes", "no"):
        bid, ask = getattr(quote, f"{side}_bid_cents"), getattr(quote, f"{side}_ask_cents")
        if bid is not None and ask is not None and bid > ask:
            return f"{side}_bid_gt_{side}_ask"
    return None


def parse_trade(payload: Mapping[str, Any], received_ts: int, source: str) -> TradeRecord:
    """A REST trade (`ticker`, `created_time`) or WS `trade` msg (`market_ticker`, `ts_ms`) → a trade."""
    trade_id = _require_ticker(payload, "trade_id")
    trade_ts = time_ms(payload.get("ts_ms"), "ts_ms")
    if trade_ts is None:
        trade_ts = time_ms(payload.get("created_time"), "created_time")
    if trade_ts is None:
        trade_ts = time_ms(payload.get("ts"), "ts")
    if trade_ts is None:
        raise FieldError("created_time: missing")
    return TradeRecord(
        trade_id=trade_id,
        market_ticker=_require_ticker(payload, "market_ticker", "ticker"),
        trade_ts=trade_ts,
        received_ts=received_ts,
        yes_price_cents=price_cents(payload, "yes_price_dollars", "yes_price"),
        no_price_cents=price_cents(payload, "no_price_dollars", "no_price"),
        contracts=count(payload, "count_fp", "count"),
        taker_side=text(payload.get("taker_outcome_side")) or text(payload.get("taker_side")),
        source=source,
    )


_STATUS_AFTER = {"activated": "active", "deactivated": "inactive", "determined": "determined", "settled": "finalized"}


def parse_lifecycle(envelope: Mapping[str, Any], received_ts: int) -> LifecycleRecord:
    """A `market_lifecycle_v2` frame → the event row plus the market columns it updates."""
    msg = envelope.get("msg")
    if not isinstance(msg, Mapping):
        raise FieldError("msg: missing")
    ticker = _require_ticker(msg, "market_ticker")
    event_type = _require_ticker(msg, "event_type")
    meta = msg.get("additional_metadata") if isinstance(msg.get("additional_metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    event_ticker = text(meta.get("event_ticker")) or event_ticker_of(ticker)
    update: dict[str, Any] = {
        "market_ticker": ticker,
        "event_ticker": event_ticker,
        "series_ticker": series_ticker_of(event_ticker),
        "open_ts": time_ms(msg.get("open_ts"), "open_ts"),
        "close_ts": time_ms(msg.get("close_ts"), "close_ts"),
        "status": _STATUS_AFTER.get(event_type),
        "result": text(msg.get("result")),
        "determined_ts": time_ms(msg.get("determination_ts"), "determination_ts"),
        "settled_ts": time_ms(msg.get("settled_ts"), "settled_ts"),
        "price_level_structure": text(msg.get("price_level_structure")),
        "price_ranges_json": as_json(msg.get("price_ranges")),
        "yes_sub_title": text(msg.get("yes_sub_title")) or text(meta.get("yes_sub_title")),
        "strike_type": text(msg.get("strike_type")) or text(meta.get("strike_type")),
        "floor_strike": number(msg.get("floor_strike", meta.get("floor_strike")), "floor_strike"),
        "cap_strike": number(msg.get("cap_strike", meta.get("cap_strike")), "cap_strike"),
        "custom_strike_json": as_json(msg.get("custom_strike", meta.get("custom_strike"))),
        "expected_expiration_ts": time_ms(meta.get("expected_expiration_ts"), "expected_expiration_ts"),
        "rules_primary": text(meta.get("rules_primary")),
        "title": text(meta.get("title")),
    }
    value = dollars_to_cents(msg.get("settlement_value"), "settlement_value")
    update["settlement_value_dollars"] = None if value is None else value / 100
    update["settlement_ts"] = update["close_ts"] or update["expected_expiration_ts"]
    event_ts = {
        "determined": update["determined_ts"],
        "settled": update["settled_ts"],
        "close_date_updated": update["close_ts"],
    }.get(event_type)
    if event_ts is None:
        event_ts = time_ms(envelope.get("sending_ts_ms"), "sending_ts_ms") or received_ts
    return LifecycleRecord(ticker, event_type, event_ts, received_ts, raw_json(envelope), update)


def parse_index_value(envelope: Mapping[str, Any], received_ts: int) -> IndexPriceRecord:
    """A `cfbenchmarks_value` frame → an index print with Kalshi's trailing 60 s average.

    `last_60s_windowed_average_15min` (present only in the minute before each :00/:15/:30/:45, window
    `(close − 60 s, close]`, its count reaching 60 at the close: the KXBTC15M settlement proxy, §5) becomes
    `avg_15min_usd` / `avg_15min_count`; NULL outside that minute.
    """
    msg = envelope.get("msg")
    if not isinstance(msg, Mapping):
        raise FieldError("msg: missing")
    data = msg.get("data")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            raise FieldError("data: not JSON") from None
    if not isinstance(data, Mapping):
        raise FieldError("data: missing")
    value = number(data.get("value"), "data.value")
    value_ts = time_ms(data.get("time"), "data.time") or time_ms(msg.get("received_at"), "received_at")
    if value is None or value_ts is None:
        raise FieldError("data.value/time: missing")
    avg_usd, avg_count = _window_average(msg, "avg_60s_data")
    close_usd, close_count = _window_average(msg, "last_60s_windowed_average_15min")
    return IndexPriceRecord(
        index_id=_require_ticker(msg, "index_id"),
        value_ts=value_ts,
        received_ts=received_ts,
        value_usd=value,
        avg_60s_usd=avg_usd,
        avg_60s_count=avg_count,
        avg_15min_usd=close_usd,
        avg_15min_count=close_count,
    )


def _window_average(msg: Mapping[str, Any], key: str) -> tuple[float | None, int | None]:
    """(`value`, `window_size`) of one of the `cfbenchmarks_value` averages; (None, None) when absent."""
    window = msg.get(key)
    if not isinstance(window, Mapping):
        return None, None
    size = window.get("window_size")
    return number(window.get("value"), f"{key}.value"), size if type(size) is int else None


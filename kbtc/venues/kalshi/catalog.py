"""The catalog: series, events and markets (kalshi_api.md §3–§4) parsed leniently into records.

Every field is optional except the ticker and a time that bounds the contract: `close_time`, else
`expected_expiration_time`, else `settlement_ts` (the horizon fallback). Unknown fields stay in `raw_json`.
A market that cannot be parsed becomes a `RejectRecord` with the reason and the payload; the batch continues.

Strike types (§4, the eight documented values): `greater`, `greater_or_equal`, `less`, `less_or_equal`,
`between` are priced (floor for greater*, cap for less*, both for between); `functional`, `custom` and
`structured` are stored like the others and their record's `skip_reason` is `unsupported_strike_type`.
KXBTC15M is `greater_or_equal` with a `floor_strike` that is filled only after its window opens (the 60 s BRTI
average before `open_time`), so until then its record says `missing_bounds`. The reason is counted by
`refresh-markets`, not stored: the edge engine derives the same reasons from `strike_type` and the bounds
(`kbtc/edge/selection.py`; there a pending KXBTC15M strike is `strike_pending`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from kbtc.venues.kalshi.parsing import (
    FieldError,
    as_json,
    dollars_to_cents,
    first_time_ms,
    number,
    raw_json,
    text,
    time_ms,
)
from kbtc.venues.records import RejectRecord

PRICED_STRIKE_TYPES = frozenset({"greater", "greater_or_equal", "less", "less_or_equal", "between"})
UNPRICED_STRIKE_TYPES = frozenset({"functional", "custom", "structured"})
_NEEDS_FLOOR = frozenset({"greater", "greater_or_equal", "between"})
_NEEDS_CAP = frozenset({"less", "less_or_equal", "between"})


def strike_skip_reason(strike_type: str | None, floor_strike: float | None, cap_strike: float | None) -> str | None:
    """Why a market cannot be priced from its strike definition, or None when it can."""
    if strike_type is None:
        return "missing_strike_type"
    if strike_type in UNPRICED_STRIKE_TYPES:
        return "unsupported_strike_type"
    if strike_type not in PRICED_STRIKE_TYPES:
        return "unknown_strike_type"
    if (strike_type in _NEEDS_FLOOR and floor_strike is None) or (strike_type in _NEEDS_CAP and cap_strike is None):
        return "missing_bounds"
    if strike_type == "between" and cap_strike is not None and floor_strike is not None and cap_strike <= floor_strike:
        return "invalid_bounds"
    return None


def event_ticker_of(market_ticker: str) -> str:
    """The event part of a market ticker (`KXBTCD-26AUG1717-T72749.99` → `KXBTCD-26AUG1717`)."""
    return market_ticker.rsplit("-", 1)[0] if "-" in market_ticker else market_ticker


def series_ticker_of(event_ticker: str) -> str:
    """The series part of an event ticker (`KXBTCD-26AUG1717` → `KXBTCD`)."""
    return event_ticker.split("-", 1)[0]


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    """A row of `series`."""

    series_ticker: str
    title: str | None
    category: str | None
    frequency: str | None
    fee_type: str | None
    fee_multiplier: float | None
    settlement_sources_json: str | None
    updated_ts: int
    raw_json: str

    def as_row(self) -> dict[str, Any]:
        """The record as a table row."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A row of `events`."""

    event_ticker: str
    series_ticker: str
    title: str | None
    sub_title: str | None
    strike_ts: int | None
    mutually_exclusive: bool | None
    fee_type_override: str | None
    fee_multiplier_override: float | None
    updated_ts: int
    raw_json: str

    def as_row(self) -> dict[str, Any]:
        """The record as a table row."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class MarketRecord:
    """A row of `markets` (fees are filled in by the catalog step from the series and event)."""

    market_ticker: str
    event_ticker: str
    series_ticker: str
    market_type: str | None
    title: str | None
    yes_sub_title: str | None
    strike_type: str | None
    floor_strike: float | None
    cap_strike: float | None
    custom_strike_json: str | None
    open_ts: int | None
    close_ts: int | None
    expected_expiration_ts: int | None
    latest_expiration_ts: int | None
    settlement_ts: int
    settlement_timer_s: int | None
    status: str | None
    can_close_early: bool | None
    price_level_structure: str | None
    price_ranges_json: str | None
    result: str | None
    expiration_value: float | None
    settlement_value_dollars: float | None
    settled_ts: int | None
    rules_primary: str | None
    updated_ts: int
    raw_json: str
    skip_reason: str | None

    def as_row(self) -> dict[str, Any]:
        """The record as a `markets` row (without `skip_reason`, which is derived, and fees)."""
        row = asdict(self)
        del row["skip_reason"]
        return row


def parse_series(payload: Mapping[str, Any], received_ts: int) -> SeriesRecord:
    """`GET /series/{ticker}` → a series record (raises `FieldError`/`KeyError` on an unusable payload)."""
    ticker = text(payload.get("ticker"))
    if ticker is None:
        raise FieldError("ticker: missing")
    return SeriesRecord(
        series_ticker=ticker,
        title=text(payload.get("title")),
        category=text(payload.get("category")),
        frequency=text(payload.get("frequency")),
        fee_type=text(payload.get("fee_type")),
        fee_multiplier=number(payload.get("fee_multiplier"), "fee_multiplier"),
        settlement_sources_json=as_json(payload.get("settlement_sources")),
        updated_ts=received_ts,
        raw_json=raw_json(payload),
    )


def parse_event(payload: Mapping[str, Any], received_ts: int) -> EventRecord:
    """An EventData object → an event record (nested `markets` are dropped from its raw JSON)."""
    ticker = text(payload.get("event_ticker"))
    if ticker is None:
        raise FieldError("event_ticker: missing")
    mutually_exclusive = payload.get("mutually_exclusive")
    return EventRecord(
        event_ticker=ticker,
        series_ticker=text(payload.get("series_ticker")) or series_ticker_of(ticker),
        title=text(payload.get("title")),
        sub_title=text(payload.get("sub_title")),
        strike_ts=time_ms(payload.get("strike_date"), "strike_date"),
        mutually_exclusive=mutually_exclusive if isinstance(mutually_exclusive, bool) else None,
        fee_type_override=text(payload.get("fee_type_override")),
        fee_multiplier_override=number(payload.get("fee_multiplier_override"), "fee_multiplier_override"),
        updated_ts=received_ts,
        raw_json=raw_json({k: v for k, v in payload.items() if k != "markets"}),
    )


def parse_market(payload: Mapping[str, Any], received_ts: int) -> MarketRecord:
    """A Market object → a market record; raises `FieldError` when the ticker or every horizon time is missing."""
    ticker = text(payload.get("ticker")) or text(payload.get("market_ticker"))
    if ticker is None:
        raise FieldError("ticker: missing")
    close_ts = time_ms(payload.get("close_time"), "close_time")
    expected_ts = time_ms(payload.get("expected_expiration_time"), "expected_expiration_time")
    settled_ts = first_time_ms(payload, "settlement_ts", "settled_time")
    horizon_ts = close_ts if close_ts is not None else expected_ts if expected_ts is not None else settled_ts
    if horizon_ts is None:
        raise FieldError("close_time: missing (and no expected_expiration_time or settlement_ts)")
    event_ticker = text(payload.get("event_ticker")) or event_ticker_of(ticker)
    strike_type = text(payload.get("strike_type"))
    floor_strike = number(payload.get("floor_strike"), "floor_strike")
    cap_strike = number(payload.get("cap_strike"), "cap_strike")
    timer = payload.get("settlement_timer_seconds")
    can_close_early = payload.get("can_close_early")
    return MarketRecord(
        market_ticker=ticker,
        event_ticker=event_ticker,
        series_ticker=series_ticker_of(event_ticker),
        market_type=text(payload.get("market_type")),
        title=text(payload.get("title")),
        yes_sub_title=text(payload.get("yes_sub_title")) or text(payload.get("subtitle")),
        strike_type=strike_type,
        floor_strike=floor_strike,
        cap_strike=cap_strike,
        custom_strike_json=as_json(payload.get("custom_strike")),
        open_ts=time_ms(payload.get("open_time"), "open_time"),
        close_ts=close_ts,
        expected_expiration_ts=expected_ts,
        latest_expiration_ts=first_time_ms(payload, "latest_expiration_time", "expiration_time"),
        settlement_ts=horizon_ts,
        settlement_timer_s=int(timer) if isinstance(timer, int | float) and not isinstance(timer, bool) else None,
        status=text(payload.get("status")),
        can_close_early=can_close_early if isinstance(can_close_early, bool) else None,
        price_level_structure=text(payload.get("price_level_structure")),
        price_ranges_json=as_json(payload.get("price_ranges")),
        result=text(payload.get("result")),
        expiration_value=number(payload.get("expiration_value"), "expiration_value"),
        settlement_value_dollars=_settlement_value(payload),
        settled_ts=settled_ts,
        rules_primary=text(payload.get("rules_primary")),
        updated_ts=received_ts,
        raw_json=raw_json(payload),
        skip_reason=strike_skip_reason(strike_type, floor_strike, cap_strike),
    )


def _settlement_value(payload: Mapping[str, Any]) -> float | None:
    cents = dollars_to_cents(payload.get("settlement_value_dollars"), "settlement_value_dollars")
    if cents is None and payload.get("settlement_value") is not None:
        # Legacy integer cents (restored briefly in March 2026, removed 2026-04-02).
        cents = number(payload.get("settlement_value"), "settlement_value")
    return None if cents is None else cents / 100


def parse_markets(
    payloads: Iterable[Any], received_ts: int, source: str = "kalshi.rest.markets"
) -> tuple[list[MarketRecord], list[RejectRecord]]:
    """Parse a page of markets; unusable ones become rejects (reason + raw payload) and the page continues."""
    records: list[MarketRecord] = []
    rejects: list[RejectRecord] = []
    for payload in payloads:
        try:
            if not isinstance(payload, Mapping):
                raise FieldError(f"market is not an object: {type(payload).__name__}")
            records.append(parse_market(payload, received_ts))
        except FieldError as exc:
            raw = raw_json(payload) if isinstance(payload, Mapping) else repr(payload)
            rejects.append(RejectRecord(source=source, reason=str(exc), received_ts=received_ts, raw=raw))
    return records, rejects

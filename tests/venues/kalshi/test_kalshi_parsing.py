"""Parsing of the documented payloads: current and legacy shapes, all strike types, rejects, exact prices."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kalshi_samples import sample

from kbtc.venues.kalshi.catalog import parse_event, parse_market, parse_markets, parse_series
from kbtc.venues.kalshi.marketdata import (
    parse_index_value,
    parse_lifecycle,
    parse_trade,
    quote_from_market,
    quote_from_ticker,
    validate_quote,
)
from kbtc.venues.kalshi.parsing import FieldError, dollars_to_cents, time_ms

RECEIVED = 1_786_900_000_000


def _market() -> dict[str, Any]:
    return copy.deepcopy(sample("event_with_nested_markets_shape.json")["event"]["markets"][0])


def test_market_from_documented_shape() -> None:
    record = parse_market(_market(), RECEIVED)
    assert record.market_ticker == "KXBTCD-26AUG1717-T72749.99"
    assert (record.event_ticker, record.series_ticker) == ("KXBTCD-26AUG1717", "KXBTCD")
    assert (record.strike_type, record.floor_strike, record.cap_strike) == ("greater", 72749.99, None)
    assert record.close_ts == 1_787_000_400_000  # 2026-08-17T21:00:00Z
    assert record.settlement_ts == record.close_ts
    assert record.expected_expiration_ts == record.close_ts + 300_000
    assert record.latest_expiration_ts == record.close_ts + 7 * 86_400_000
    assert record.settlement_timer_s == 60 and record.status == "active" and record.skip_reason is None
    assert record.result is None and record.expiration_value is None
    assert json.loads(record.raw_json)["liquidity_dollars"] == "0.0000"  # unknown/unused fields are kept


def test_market_quote_current_and_legacy_shapes() -> None:
    quote = quote_from_market(_market(), RECEIVED)
    assert (quote.yes_bid_cents, quote.yes_ask_cents, quote.no_bid_cents, quote.no_ask_cents) == (0.0, 1.0, 99.0, 100.0)
    assert (quote.yes_ask_size, quote.volume, quote.open_interest, quote.quote_ts) == (14862.0, 2.0, 2.0, RECEIVED)
    legacy = {"ticker": "OLD-1", "yes_bid": 45, "yes_ask": 53, "no_bid": 47, "no_ask": 55, "volume": 10,
              "open_interest": 3, "last_price": 50}
    old = quote_from_market(legacy, RECEIVED)
    assert (old.yes_bid_cents, old.yes_ask_cents, old.no_bid_cents, old.no_ask_cents) == (45.0, 53.0, 47.0, 55.0)
    assert (old.volume, old.open_interest, old.last_price_cents) == (10.0, 3.0, 50.0)
    both = {"ticker": "X", "yes_bid": 0, "yes_bid_dollars": "0.4512"}  # the dollars field wins
    assert quote_from_market(both, RECEIVED).yes_bid_cents == 45.12


@pytest.mark.parametrize(
    ("text", "cents"), [("0.9530", 95.3), ("0.0010", 0.1), ("0.1234", 12.34), ("1.0000", 100.0), ("0.960", 96.0)]
)
def test_sub_penny_prices_are_exact(text: str, cents: float) -> None:
    value = dollars_to_cents(text)
    assert value == cents
    assert value is not None and round(value * 100) == round(float(text) * 10_000)


@pytest.mark.parametrize("bad", ["0.12345", "1.5", "-0.01", "abc"])
def test_bad_prices_raise(bad: str) -> None:
    with pytest.raises(FieldError):
        dollars_to_cents(bad)


@pytest.mark.parametrize(
    ("strike_type", "floor", "cap", "reason"),
    [
        ("greater", 1.0, None, None),
        ("greater_or_equal", 1.0, None, None),
        ("less", None, 2.0, None),
        ("less_or_equal", None, 2.0, None),
        ("between", 1.0, 2.0, None),
        ("between", 2.0, 1.0, "invalid_bounds"),
        ("greater_or_equal", None, None, "missing_bounds"),
        ("functional", None, None, "unsupported_strike_type"),
        ("custom", None, None, "unsupported_strike_type"),
        ("structured", None, None, "unsupported_strike_type"),
        ("sideways", None, None, "unknown_strike_type"),
        (None, None, None, "missing_strike_type"),
    ],
)
def test_all_strike_types(strike_type: str | None, floor: float | None, cap: float | None, reason: str | None) -> None:
    payload = _market()
    payload.update(strike_type=strike_type, floor_strike=floor, cap_strike=cap)
    record = parse_market(payload, RECEIVED)
    assert (record.strike_type, record.skip_reason) == (strike_type, reason)


def test_lenient_market_and_rejects_keep_the_batch_going() -> None:
    minimal = {"ticker": "KXBTC15M-26AUG170100-00", "expected_expiration_time": "2026-08-17T05:05:00Z"}
    no_time = {"ticker": "KXBTC-X-B1"}
    bad_time = {"ticker": "KXBTC-X-B2", "close_time": "tomorrow"}
    records, rejects = parse_markets([minimal, no_time, "junk", bad_time, _market()], RECEIVED)
    assert [r.market_ticker for r in records] == ["KXBTC15M-26AUG170100-00", "KXBTCD-26AUG1717-T72749.99"]
    first = records[0]
    assert first.close_ts is None and first.settlement_ts == time_ms("2026-08-17T05:05:00Z")
    assert (first.event_ticker, first.series_ticker, first.yes_sub_title) == ("KXBTC15M-26AUG170100", "KXBTC15M", None)
    assert [r.reason.split(":")[0] for r in rejects] == ["close_time", "market is not an object", "close_time"]
    assert json.loads(rejects[0].raw) == no_time and rejects[0].source == "kalshi.rest.markets"


def test_settled_market_fields() -> None:
    payload = _market()
    payload.update(status="finalized", result="yes", expiration_value="72801.23", settlement_value_dollars="1.0000",
                   settlement_ts="2026-08-17T21:06:00Z")
    record = parse_market(payload, RECEIVED)
    assert (record.result, record.expiration_value, record.settlement_value_dollars) == ("yes", 72801.23, 1.0)
    assert record.settled_ts == time_ms("2026-08-17T21:06:00Z")


def test_series_and_event() -> None:
    series = parse_series({"ticker": "KXBTC15M", "fee_type": "quadratic", "fee_multiplier": 1,
                           "frequency": "fifteen_min", "settlement_sources": [{"name": "CF Benchmarks"}]}, RECEIVED)
    assert (series.fee_type, series.fee_multiplier, series.frequency) == ("quadratic", 1.0, "fifteen_min")
    event = parse_event(sample("event_with_nested_markets_shape.json")["event"], RECEIVED)
    assert (event.event_ticker, event.series_ticker, event.mutually_exclusive) == ("KXBTCD-26AUG1717", "KXBTCD", False)
    assert "markets" not in json.loads(event.raw_json)
    fee = sample("ws_event_fee_update.json")["msg"]
    assert parse_event(fee, RECEIVED).fee_multiplier_override == 1.0


def test_ws_ticker_quote() -> None:
    quote = quote_from_ticker(sample("ws_ticker.json")["msg"], RECEIVED)
    assert (quote.yes_bid_cents, quote.yes_ask_cents, quote.no_bid_cents, quote.no_ask_cents) == (45.0, 53.0, 47.0, 55.0)
    assert (quote.quote_ts, quote.yes_bid_size, quote.last_price_cents, quote.source) == (1669149841000, 300.0, 48.0, "ws")
    sub_penny = quote_from_ticker({"market_ticker": "M", "yes_bid_dollars": "0.9530", "yes_ask_dollars": "0.9610",
                                   "ts": 1669149841}, RECEIVED)
    assert (sub_penny.no_bid_cents, sub_penny.no_ask_cents, sub_penny.quote_ts) == (3.9, 4.7, 1669149841000)
    legacy = quote_from_ticker({"market_ticker": "M", "yes_bid": 45, "yes_ask": 53, "price": 48}, RECEIVED)
    assert (legacy.no_bid_cents, legacy.no_ask_cents, legacy.quote_ts) == (47.0, 55.0, RECEIVED)
    crossed = quote_from_ticker({"market_ticker": "M", "yes_bid_dollars": "0.60", "yes_ask_dollars": "0.50"}, RECEIVED)
    assert validate_quote(crossed) == "yes_bid_gt_yes_ask" and validate_quote(quote) is None


def test_trades_ws_and_rest() -> None:
    ws = parse_trade(sample("ws_trade.json")["msg"], RECEIVED, "ws")
    assert (ws.market_ticker, ws.yes_price_cents, ws.no_price_cents, ws.contracts) == ("HIGHNY-22DEC23-B53.5", 36.0, 64.0, 136.0)
    assert (ws.trade_ts, ws.taker_side) == (1669149841000, "no")
    rest = parse_trade({"trade_id": "t1", "ticker": "M", "count_fp": "1.50", "yes_price_dollars": "0.0150",
                        "no_price_dollars": "0.9850", "taker_outcome_side": "yes", "taker_side": "no",
                        "created_time": "2026-08-17T21:00:00Z"}, RECEIVED, "rest")
    assert (rest.yes_price_cents, rest.contracts, rest.taker_side, rest.trade_ts) == (1.5, 1.5, "yes", 1_787_000_400_000)


def test_lifecycle_messages() -> None:
    created = parse_lifecycle(sample("ws_market_lifecycle_v2_created.json"), RECEIVED)
    update = created.market_update
    assert (created.event_type, update["event_ticker"], update["series_ticker"]) == ("created", "INXD-23SEP14", "INXD")
    assert (update["open_ts"], update["close_ts"], update["floor_strike"]) == (1694635200000, 1694721600000, 4487.0)
    assert update["strike_type"] == "greater" and created.event_ts == RECEIVED
    determined = parse_lifecycle({"type": "market_lifecycle_v2", "sid": 13, "msg": {
        "market_ticker": "KXBTCD-26AUG1717-T72749.99", "event_type": "determined", "result": "no",
        "determination_ts": 1787000700, "settlement_value": "0.0000"}}, RECEIVED)
    assert (determined.event_ts, determined.market_update["result"]) == (1787000700000, "no")
    assert determined.market_update["settlement_value_dollars"] == 0.0
    assert determined.market_update["status"] == "determined"
    with pytest.raises(FieldError):
        parse_lifecycle({"type": "market_lifecycle_v2", "msg": {"event_type": "created"}}, RECEIVED)


def test_cfbenchmarks_index_value() -> None:
    record = parse_index_value(sample("ws_cfbenchmarks_value.json"), RECEIVED)
    assert (record.index_id, record.value_ts, record.value_usd) == ("BRTI", 1710000000123, 68000.12)
    assert (record.avg_60s_usd, record.avg_60s_count) == (68000.12, 3)
    assert (record.avg_15min_usd, record.avg_15min_count) == (68000.23, 14)
    outside = sample("ws_cfbenchmarks_value.json")
    del outside["msg"]["last_60s_windowed_average_15min"]  # sent only in the minute before a quarter hour
    assert parse_index_value(outside, RECEIVED).as_row()["avg_15min_usd"] is None

"""Parsing of the documented Coinbase payloads (reference/samples/coinbase, copied to payloads/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kbtc.venues.coinbase.messages import SOURCE_ADVANCED, SOURCE_EXCHANGE, FrameKind, parse_counter, rfc3339_to_ns
from kbtc.venues.coinbase.parsing import parse_advanced_frame, parse_exchange_frame, subscribe_messages

PAYLOADS = Path(__file__).parent / "payloads"


def payload(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / name).read_text())


def test_advanced_ticker_sample() -> None:
    raw = (PAYLOADS / "advanced_trade_ws_ticker.json").read_text()
    parsed = parse_advanced_frame(raw, 1_700_000_000_000, "BTC-USD")
    assert parsed.kind is FrameKind.TICKER
    assert parsed.sequence_num == 0
    assert parsed.rejects == []
    (tick,) = parsed.ticks
    assert tick.source == SOURCE_ADVANCED
    assert tick.price == 21932.98
    assert (tick.best_bid, tick.best_ask) == (21931.98, 21933.98)
    assert (tick.best_bid_size, tick.best_ask_size) == (8000.21, 8038.07770938)
    # The envelope timestamp at full (nanosecond) precision; ms for tick_ts.
    assert tick.venue_time_ns == 1675974637_167359596
    assert tick.tick_ts == 1675974637_167
    assert tick.received_ts == 1_700_000_000_000


def test_advanced_ticker_other_product_is_skipped() -> None:
    raw = (PAYLOADS / "advanced_trade_ws_ticker.json").read_text()
    parsed = parse_advanced_frame(raw, 1, "ETH-USD")
    assert parsed.ticks == [] and parsed.rejects == []


@pytest.mark.parametrize(
    ("name", "counter", "seq"),
    [("advanced_trade_ws_heartbeats.json", 3049, 0), ("advanced_trade_ws_heartbeats_int_counter.json", 14191, 150)],
)
def test_heartbeat_counter_string_or_int(name: str, counter: int, seq: int) -> None:
    parsed = parse_advanced_frame((PAYLOADS / name).read_text(), 1)
    assert parsed.kind is FrameKind.HEARTBEAT
    assert parsed.heartbeat_counter == counter
    assert parsed.sequence_num == seq


def test_parse_counter_rejects_garbage() -> None:
    assert parse_counter("12") == 12
    assert parse_counter(12) == 12
    with pytest.raises(ValueError, match="bad_heartbeat_counter"):
        parse_counter("x12")
    with pytest.raises(ValueError, match="bad_heartbeat_counter"):
        parse_counter(True)


def test_subscriptions_ack_error_and_market_trades() -> None:
    ack = parse_advanced_frame((PAYLOADS / "advanced_trade_ws_subscriptions_ack.json").read_text(), 1)
    assert ack.kind is FrameKind.SUBSCRIPTIONS
    assert ack.subscriptions == {"ticker_batch": ["EURC-USDC"]}
    assert ack.sequence_num == 1
    error = parse_advanced_frame((PAYLOADS / "advanced_trade_ws_error.json").read_text(), 1)
    assert error.kind is FrameKind.ERROR and error.error_message == "authentication failure"
    trades = parse_advanced_frame((PAYLOADS / "advanced_trade_ws_market_trades.json").read_text(), 1)
    assert trades.kind is FrameKind.MARKET_TRADES and trades.sequence_num == 0


def test_unknown_channel_is_ignored_but_sequenced() -> None:
    frame = {"channel": "l2_data", "client_id": "", "timestamp": "2024-01-01T00:00:00Z", "sequence_num": 7, "events": []}
    parsed = parse_advanced_frame(json.dumps(frame), 1)
    assert parsed.kind is FrameKind.OTHER and parsed.sequence_num == 7 and parsed.rejects == []


def _ticker_frame(**ticker_changes: Any) -> str:
    frame = payload("advanced_trade_ws_ticker.json")
    ticker = frame["events"][0]["tickers"][0]
    for key, value in ticker_changes.items():
        if value is None:
            ticker.pop(key, None)
        else:
            ticker[key] = value
    return json.dumps(frame)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"best_bid": "21940.00"}, "crossed_book"),
        ({"price": "0"}, "non_positive_price"),
        ({"price": "-5"}, "non_positive_price"),
        ({"best_ask": "0"}, "non_positive_best_ask"),
        ({"price": "abc"}, "non_numeric_price"),
        ({"price": "NaN"}, "non_numeric_price"),
        ({"price": "inf"}, "non_numeric_price"),
        ({"price": True}, "missing_price"),
        ({"best_bid_quantity": "-1"}, "negative_best_bid_quantity"),
        ({"best_ask": 21940}, None),  # a JSON number instead of a string is still a number
        ({"price": None}, "missing_price"),
        ({"product_id": None}, "missing_product_id"),
    ],
)
def test_bad_tickers_become_rejects(changes: dict[str, Any], reason: str | None) -> None:
    parsed = parse_advanced_frame(_ticker_frame(**changes), 5, None)
    if reason is None:
        assert len(parsed.ticks) == 1 and parsed.rejects == []
        return
    assert parsed.ticks == []
    (reject,) = parsed.rejects
    assert reject.reason == reason
    assert reject.received_ts == 5
    assert "21932.98" in reject.raw or "BTC-USD" in reject.raw


def test_empty_quotes_are_missing_not_rejected() -> None:
    parsed = parse_advanced_frame(_ticker_frame(best_bid="", best_ask=None, best_bid_quantity=""), 1, "BTC-USD")
    (tick,) = parsed.ticks
    assert tick.best_bid is None and tick.best_ask is None and tick.best_bid_size is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "malformed_json"),
        ("[1, 2]", "not_an_object"),
        ('{"channel": "ticker", "events": []}', "bad_sequence_num"),
        ('{"sequence_num": 1, "events": []}', "missing_channel"),
        ('{"channel": "ticker", "sequence_num": 1}', "missing_events"),
        ('{"channel": "ticker", "sequence_num": 1, "timestamp": "yesterday", "events": []}', "bad_timestamp"),
    ],
)
def test_malformed_frames_become_rejects(raw: str, reason: str) -> None:
    parsed = parse_advanced_frame(raw, 1)
    assert [r.reason for r in parsed.rejects] == [reason]
    assert parsed.rejects[0].raw == raw


def test_bytes_frames_are_accepted() -> None:
    raw = (PAYLOADS / "advanced_trade_ws_ticker.json").read_bytes()
    assert len(parse_advanced_frame(raw, 1, "BTC-USD").ticks) == 1


def test_exchange_ticker_sample() -> None:
    raw = (PAYLOADS / "exchange_ws_ticker.json").read_text()
    parsed = parse_exchange_frame(raw, 9, "ETH-USD")
    assert parsed.kind is FrameKind.TICKER
    assert parsed.sequence_num == 37475248783 and parsed.sequence_product == "ETH-USD"
    (tick,) = parsed.ticks
    assert tick.source == SOURCE_EXCHANGE
    assert tick.price == 1285.22
    assert (tick.best_bid, tick.best_ask, tick.best_bid_size, tick.best_ask_size) == (1285.04, 1285.27, 0.46688654, 1.5663704)
    assert tick.venue_time_ns == 1666222102_061769000


def test_exchange_first_ticker_without_time_is_rejected() -> None:
    frame = payload("exchange_ws_ticker.json")
    for key in ("time", "side", "trade_id", "last_size"):
        frame.pop(key)
    parsed = parse_exchange_frame(json.dumps(frame), 1, "ETH-USD")
    assert parsed.ticks == [] and [r.reason for r in parsed.rejects] == ["missing_time"]


def test_exchange_heartbeat_subscriptions_and_error() -> None:
    hb = parse_exchange_frame(
        '{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2024-01-01T00:00:00.1Z"}', 1
    )
    assert hb.kind is FrameKind.HEARTBEAT and hb.sequence_num == 90 and hb.sequence_product == "BTC-USD"
    subs = parse_exchange_frame('{"type":"subscriptions","channels":[{"name":"ticker","product_ids":["BTC-USD"]}]}', 1)
    assert subs.subscriptions == {"ticker": ["BTC-USD"]}
    error = parse_exchange_frame((PAYLOADS / "exchange_ws_error.json").read_text(), 1)
    assert error.kind is FrameKind.ERROR and error.error_message is not None
    assert error.error_message.startswith("Failed to subscribe: level2")


@pytest.mark.parametrize("channels", ["1", '"ticker"', '{"name":"ticker"}'])
def test_exchange_subscriptions_with_channels_not_a_list_are_rejected(channels: str) -> None:
    # Found by the parser fuzzing (tests/hardening): `channels` of another type raised instead of rejecting.
    parsed = parse_exchange_frame(f'{{"type":"subscriptions","channels":{channels}}}', 1)
    assert parsed.kind is FrameKind.REJECTED and parsed.rejects[0].reason == "bad_channels"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-02-09T20:30:37.167359596Z", 1675974637_167359596),
        ("2023-02-09T20:30:37.1Z", 1675974637_100000000),
        ("2023-02-09T20:30:37Z", 1675974637_000000000),
        ("2023-02-09T21:30:37.5+01:00", 1675974637_500000000),
    ],
)
def test_rfc3339_full_precision(text: str, expected: int) -> None:
    assert rfc3339_to_ns(text) == expected


@pytest.mark.parametrize("text", ["2023-02-09T20:30:37", "2023-02-09T20:30:37.1234567890Z", "2023-02-09T20:30:37.xZ", 5])
def test_rfc3339_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="bad_timestamp"):
        rfc3339_to_ns(text)


def test_subscribe_messages() -> None:
    advanced = subscribe_messages("advanced", "BTC-USD", market_trades=True)
    assert [m["channel"] for m in advanced] == ["ticker", "heartbeats", "market_trades"]
    assert all(m["type"] == "subscribe" and m["product_ids"] == ["BTC-USD"] for m in advanced)
    (exchange,) = subscribe_messages("exchange", "BTC-USD")
    assert exchange["channels"] == ["ticker", "heartbeat"]

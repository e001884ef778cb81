"""Coinbase market-data frames → `SpotTick`s, heartbeats, acks, errors and rejects (no I/O).

Two wire shapes are understood (reference/coinbase_api.md):
- Advanced Trade (§1.3–1.7): an envelope `{channel, client_id, timestamp, sequence_num, events[]}`; a ticker
  carries no trade time, so the envelope `timestamp` (RFC 3339, up to nanoseconds) is the venue time;
  `heartbeat_counter` arrives as a string in the docs and as an integer on live feeds (§1.5).
- Exchange (§2): flat messages `{type, sequence, product_id, ..., time}`; `sequence` counts every message of
  the product's full channel, so ticker sequences jump by design and only an out-of-order number is an anomaly.

Every numeric field arrives as a string (§1.4). Prices are stored as float (`spot_ticks` columns are REAL).
A frame that is not JSON, an envelope without its fields, a ticker with a missing/non-numeric price, a
non-positive price or a crossed book (bid > ask) becomes a `RejectRecord`; unknown channels are ignored, as
the protocol asks (§1.2), but still counted by the sequence check and kept on the tape.
"""

from __future__ import annotations

from typing import Any

from kbtc.venues.coinbase.messages import (
    SOURCE_ADVANCED,
    SOURCE_EXCHANGE,
    FeedSource,
    FrameError,
    FrameKind,
    ParsedFrame,
    build_tick,
    load_object,
    parse_counter,
    parse_sequence,
    reject_record,
    rfc3339_to_ns,
)

# ---------------------------------------------------------------------------------------------------------
# Advanced Trade
# ---------------------------------------------------------------------------------------------------------


def parse_advanced_frame(raw: str | bytes, received_ts: int, product_id: str | None = None) -> ParsedFrame:
    """Parse one Advanced Trade frame; tickers of other products than `product_id` (when given) are skipped."""
    try:
        data = load_object(raw)
        if data.get("type") == "error":  # §1.10: error frames carry no envelope
            return ParsedFrame(FrameKind.ERROR, error_message=str(data.get("message") or data.get("reason") or ""))
        channel = data.get("channel")
        if not isinstance(channel, str):
            raise FrameError("missing_channel")
        sequence_num = parse_sequence(data.get("sequence_num"), "sequence_num")
        events = data.get("events")
        if not isinstance(events, list):
            raise FrameError("missing_events")
    except FrameError as exc:
        return ParsedFrame(FrameKind.REJECTED, rejects=[reject_record(raw, str(exc), received_ts)])
    if channel == "ticker":
        return _advanced_ticker(raw, data, events, sequence_num, received_ts=received_ts, product_id=product_id)
    if channel == "heartbeats":
        first = events[0] if events and isinstance(events[0], dict) else {}
        try:
            counter = parse_counter(first.get("heartbeat_counter"))
        except FrameError as exc:
            return ParsedFrame(FrameKind.HEARTBEAT, sequence_num, rejects=[reject_record(raw, str(exc), received_ts)])
        return ParsedFrame(FrameKind.HEARTBEAT, sequence_num, heartbeat_counter=counter)
    if channel == "subscriptions":
        subscriptions: dict[str, list[str]] = {}
        for event in events:
            subs = event.get("subscriptions") if isinstance(event, dict) else None
            if isinstance(subs, dict):
                for name, products in subs.items():
                    subscriptions[str(name)] = [str(p) for p in products] if isinstance(products, list) else []
        return ParsedFrame(FrameKind.SUBSCRIPTIONS, sequence_num, subscriptions=subscriptions)
    if channel == "market_trades":
        return ParsedFrame(FrameKind.MARKET_TRADES, sequence_num)
    return ParsedFrame(FrameKind.OTHER, sequence_num)


def _advanced_ticker(
    raw: str | bytes,
    data: dict[str, Any],
    events: list[Any],
    sequence_num: int,
    *,
    received_ts: int,
    product_id: str | None,
) -> ParsedFrame:
    parsed = ParsedFrame(FrameKind.TICKER, sequence_num)
    try:
        # The ticker has no trade time: the envelope timestamp is the only venue clock (§1.4).
        venue_time_ns = rfc3339_to_ns(data.get("timestamp"))
    except FrameError as exc:
        parsed.rejects.append(reject_record(raw, str(exc), received_ts))
        return parsed
    for event in events:
        tickers = event.get("tickers") if isinstance(event, dict) else None
        if not isinstance(tickers, list):
            parsed.rejects.append(reject_record(raw, "missing_tickers", received_ts))
            continue
        for ticker in tickers:
            if not isinstance(ticker, dict):
                parsed.rejects.append(reject_record(raw, "bad_ticker", received_ts))
                continue
            if product_id is not None and ticker.get("product_id") != product_id:
                continue
            try:
                parsed.ticks.append(
                    build_tick(
                        ticker,
                        source=SOURCE_ADVANCED,
                        venue_time_ns=venue_time_ns,
                        received_ts=received_ts,
                        sequence_num=sequence_num,
                        bid_size_key="best_bid_quantity",
                        ask_size_key="best_ask_quantity",
                    )
                )
            except FrameError as exc:
                parsed.rejects.append(reject_record(raw, str(exc), received_ts))
    return parsed


# ---------------------------------------------------------------------------------------------------------
# Exchange (legacy feed)
# ---------------------------------------------------------------------------------------------------------


def parse_exchange_frame(raw: str | bytes, received_ts: int, product_id: str | None = None) -> ParsedFrame:
    """Parse one Exchange feed message (`ticker`, `heartbeat`, `subscriptions`, `error`)."""
    try:
        data = load_object(raw)
        kind = data.get("type")
        if not isinstance(kind, str):
            raise FrameError("missing_type")
    except FrameError as exc:
        return ParsedFrame(FrameKind.REJECTED, rejects=[reject_record(raw, str(exc), received_ts)])
    if kind == "error":
        message = str(data.get("message") or "")
        reason = data.get("reason")
        return ParsedFrame(FrameKind.ERROR, error_message=f"{message}: {reason}" if reason else message)
    if kind == "subscriptions":
        channels = data.get("channels")
        if channels is not None and not isinstance(channels, list):
            return ParsedFrame(FrameKind.REJECTED, rejects=[reject_record(raw, "bad_channels", received_ts)])
        subscriptions: dict[str, list[str]] = {}
        for channel in channels or []:
            if isinstance(channel, dict) and isinstance(channel.get("name"), str):
                products = channel.get("product_ids")
                subscriptions[channel["name"]] = [str(p) for p in products] if isinstance(products, list) else []
        return ParsedFrame(FrameKind.SUBSCRIPTIONS, subscriptions=subscriptions)
    if kind not in ("ticker", "heartbeat"):
        return ParsedFrame(FrameKind.OTHER)
    frame_product = data.get("product_id")
    try:
        sequence = parse_sequence(data.get("sequence"), "sequence")
    except FrameError as exc:
        return ParsedFrame(FrameKind.REJECTED, rejects=[reject_record(raw, str(exc), received_ts)])
    product = frame_product if isinstance(frame_product, str) else None
    if kind == "heartbeat":
        return ParsedFrame(FrameKind.HEARTBEAT, sequence, product)
    parsed = ParsedFrame(FrameKind.TICKER, sequence, product)
    if product_id is not None and frame_product != product_id:
        return parsed
    try:
        # The first ticker after subscribing may lack `time` (§2); without a venue time there is no row to key.
        if data.get("time") is None:
            raise FrameError("missing_time")
        parsed.ticks.append(
            build_tick(
                data,
                source=SOURCE_EXCHANGE,
                venue_time_ns=rfc3339_to_ns(data.get("time")),
                received_ts=received_ts,
                sequence_num=sequence,
                bid_size_key="best_bid_size",
                ask_size_key="best_ask_size",
            )
        )
    except FrameError as exc:
        parsed.rejects.append(reject_record(raw, str(exc), received_ts))
    return parsed


def parse_frame(source: FeedSource, raw: str | bytes, received_ts: int, product_id: str | None = None) -> ParsedFrame:
    """Parse a frame of the given feed shape."""
    if source == "exchange":
        return parse_exchange_frame(raw, received_ts, product_id)
    return parse_advanced_frame(raw, received_ts, product_id)


def subscribe_messages(source: FeedSource, product_id: str, *, market_trades: bool = False) -> list[dict[str, Any]]:
    """The subscribe messages to send right after connecting (within 5 s, §1.2 and §2).

    Advanced Trade takes one message per channel; the Exchange feed takes a list of channels in one message
    and names its heartbeat channel in the singular.
    """
    if source == "exchange":
        return [{"type": "subscribe", "product_ids": [product_id], "channels": ["ticker", "heartbeat"]}]
    channels = ["ticker", "heartbeats"] + (["market_trades"] if market_trades else [])
    return [{"type": "subscribe", "product_ids": [product_id], "channel": channel} for channel in channels]

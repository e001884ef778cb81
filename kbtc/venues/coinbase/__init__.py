"""Coinbase BTC-USD spot: WebSocket feed (Advanced Trade or Exchange), frame parsing, REST candles.

No database code here: the pipeline (`kbtc.pipeline.spot_collector`, `kbtc.pipeline.backfill`) stores what
these clients produce.
"""

from kbtc.venues.coinbase.messages import (
    SOURCE_ADVANCED,
    SOURCE_EXCHANGE,
    FeedSource,
    FrameKind,
    ParsedFrame,
    SpotTick,
    rfc3339_to_ns,
)
from kbtc.venues.coinbase.parsing import parse_frame, subscribe_messages
from kbtc.venues.coinbase.ws import CoinbaseFeed, FeedConfig, FeedSink, FeedStats, SequenceTracker

__all__ = [
    "SOURCE_ADVANCED",
    "SOURCE_EXCHANGE",
    "CoinbaseFeed",
    "FeedConfig",
    "FeedSink",
    "FeedSource",
    "FeedStats",
    "FrameKind",
    "ParsedFrame",
    "SequenceTracker",
    "SpotTick",
    "parse_frame",
    "rfc3339_to_ns",
    "subscribe_messages",
]

"""Kalshi Trade API v2 clients: signing, REST, WebSocket stream, parsing, order books (no database code).

The facts these modules implement are in `shared/reference/kalshi_api.md`; `docs/KALSHI_API_CONTRACT.md`
lists every call, every field read and the column it lands in.
"""

from kbtc.venues.kalshi.auth import KalshiSigner
from kbtc.venues.kalshi.catalog import EventRecord, MarketRecord, SeriesRecord, parse_markets
from kbtc.venues.kalshi.errors import (
    KalshiApiError,
    KalshiAuthError,
    KalshiError,
    KalshiFatalError,
    KalshiInputError,
    KalshiPayloadError,
    KalshiRateLimitedError,
    KalshiRetriesExhaustedError,
    KalshiServerError,
    KalshiStreamError,
    KalshiTimeoutError,
    KalshiTransientError,
)
from kbtc.venues.kalshi.marketdata import IndexPriceRecord, LifecycleRecord, QuoteRecord, TradeRecord
from kbtc.venues.kalshi.orderbook import DepthFill, OrderBook
from kbtc.venues.kalshi.ratelimit import TokenBucket, shared_read_bucket
from kbtc.venues.kalshi.rest import KalshiRestClient, RetryPolicy, rest_client_from_settings
from kbtc.venues.kalshi.ws import BookUpdate, KalshiStream, StreamSettings

__all__ = [
    "BookUpdate",
    "DepthFill",
    "EventRecord",
    "IndexPriceRecord",
    "KalshiApiError",
    "KalshiAuthError",
    "KalshiError",
    "KalshiFatalError",
    "KalshiInputError",
    "KalshiPayloadError",
    "KalshiRateLimitedError",
    "KalshiRestClient",
    "KalshiRetriesExhaustedError",
    "KalshiServerError",
    "KalshiSigner",
    "KalshiStream",
    "KalshiStreamError",
    "KalshiTimeoutError",
    "KalshiTransientError",
    "LifecycleRecord",
    "MarketRecord",
    "OrderBook",
    "QuoteRecord",
    "RetryPolicy",
    "SeriesRecord",
    "StreamSettings",
    "TokenBucket",
    "TradeRecord",
    "parse_markets",
    "rest_client_from_settings",
    "shared_read_bucket",
]

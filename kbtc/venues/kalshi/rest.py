"""Async REST client for Kalshi market data (kalshi_api.md §3): catalog, books, trades, historical data.

Every call: a timeout; the token bucket (`rest_client_from_settings` shares one per process and base URL);
a fresh RSA-PSS signature when a signer is configured (public endpoints accept signed requests, and signed
requests are metered against our key, §2/§6);
capped exponential backoff with jitter on timeouts, dropped connections, 429 and 5xx only. Any other 4xx
raises at once: `KalshiAuthError` for 401/403, else `KalshiApiError` with the venue's `code` and `message`.
A 200 whose body is not the documented JSON object raises `KalshiPayloadError` carrying the raw body.

List endpoints page with `cursor` until it comes back empty or missing, repeating the filters on every page;
the page size (`limit`) is the client's `page_size` (`KALSHI_MARKET_LIMIT`) unless a call passes its own, capped
at each endpoint's maximum (1000; `GET /events` 200).
The base URL and the httpx transport are injectable (tests and the simulator use them).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from kbtc.log import get_logger
from kbtc.venues.backoff import Backoff
from kbtc.venues.kalshi.auth import KalshiSigner
from kbtc.venues.kalshi.errors import (
    KalshiApiError,
    KalshiAuthError,
    KalshiPayloadError,
    KalshiRateLimitedError,
    KalshiRetriesExhaustedError,
    KalshiServerError,
    KalshiTimeoutError,
    KalshiTransientError,
)
from kbtc.venues.kalshi.parsing import time_ms
from kbtc.venues.kalshi.ratelimit import DEFAULT_COST, TokenBucket, shared_read_bucket

if TYPE_CHECKING:
    from kbtc.config import Settings

_log = get_logger(__name__)

MARKET_STATUSES = ("unopened", "open", "paused", "closed", "settled")
# Which `status` each timestamp-filter family may be combined with (§3, GET /markets).
_TS_FAMILIES: dict[str, tuple[tuple[str, ...], tuple[str | None, ...]]] = {
    "created": (("min_created_ts", "max_created_ts"), ("unopened", "open", None)),
    "close": (("min_close_ts", "max_close_ts"), ("closed", None)),
    "settled": (("min_settled_ts", "max_settled_ts"), ("settled", None)),
    "updated": (("min_updated_ts",), (None,)),
}
MAX_ORDERBOOK_TICKERS = 100
MAX_PAGE_SIZE = 1000  # GET /markets, /markets/trades, /historical/markets (§3)
MAX_EVENTS_PAGE_SIZE = 200  # GET /events (§3)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently transient failures are retried."""

    max_attempts: int = 6
    backoff: Backoff = field(default_factory=lambda: Backoff(base_s=0.5, cap_s=8.0))


def market_filters(
    *,
    status: str | None = None,
    series_ticker: str | None = None,
    event_ticker: str | None = None,
    tickers: Sequence[str] | None = None,
    mve_filter: str | None = None,
    **timestamps: int | None,
) -> dict[str, Any]:
    """Query parameters for `GET /markets`, checked against the documented combination rules (ValueError)."""
    if status is not None and status not in MARKET_STATUSES:
        raise ValueError(f"status must be one of {', '.join(MARKET_STATUSES)}, got {status!r}")
    used = {name: value for name, value in timestamps.items() if value is not None}
    known = {name for names, _ in _TS_FAMILIES.values() for name in names}
    if set(used) - known:
        raise ValueError(f"unknown market filters: {', '.join(sorted(set(used) - known))}")
    families = [fam for fam, (names, _) in _TS_FAMILIES.items() if any(n in used for n in names)]
    if len(families) > 1:
        raise ValueError(f"timestamp filters from different families cannot be combined: {', '.join(families)}")
    if families:
        allowed = _TS_FAMILIES[families[0]][1]
        if status not in allowed:
            raise ValueError(f"{families[0]} timestamp filters do not combine with status={status}")
        if families[0] == "updated" and mve_filter != "exclude":
            raise ValueError("min_updated_ts requires mve_filter=exclude")
    params: dict[str, Any] = {
        "status": status,
        "series_ticker": series_ticker,
        "event_ticker": event_ticker,
        "tickers": ",".join(tickers) if tickers else None,
        "mve_filter": mve_filter,
        **used,
    }
    return {key: value for key, value in params.items() if value is not None}


class KalshiRestClient:
    """Kalshi Trade API v2 market-data client (use as `async with`)."""

    def __init__(
        self,
        base_url: str,
        *,
        signer: KalshiSigner | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | None = None,
        bucket: TokenBucket | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            transport=transport,
            timeout=timeout or httpx.Timeout(10.0, connect=5.0),
            headers={"Accept": "application/json"},
        )
        self._signer = signer
        self.bucket = bucket or TokenBucket.for_reads(20.0)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng
        self.page_size = page_size
        self.requests_sent = 0
        self.retries = 0

    async def __aenter__(self) -> KalshiRestClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.aclose()

    # -- transport ----------------------------------------------------------------------------------------

    async def get(
        self, path: str, params: Mapping[str, Any] | None = None, *, cost: int = DEFAULT_COST
    ) -> dict[str, Any]:
        """GET `path` (relative to the base URL) and return the JSON object, retrying transient failures."""
        last: KalshiTransientError | None = None
        for attempt in range(self.retry.max_attempts):
            if attempt:
                self.retries += 1
                await self._sleep(self.retry.backoff.delay_s(attempt - 1, self._rng))
            await self.bucket.acquire(cost)
            try:
                return await self._get_once(path, params)
            except KalshiTransientError as exc:
                last = exc
                _log.warning("kalshi_rest_retry", path=path, attempt=attempt + 1, error=str(exc))
        raise KalshiRetriesExhaustedError(
            f"GET {path} failed {self.retry.max_attempts} times; last error: {last}"
        ) from last

    async def _get_once(self, path: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        request = self._http.build_request("GET", path, params=dict(params or {}))
        if self._signer is not None:
            request.headers.update(self._signer.headers("GET", request.url.path))
        self.requests_sent += 1
        try:
            response = await self._http.send(request)
        except httpx.TimeoutException as exc:
            raise KalshiTimeoutError(f"timeout on GET {path}: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise KalshiTimeoutError(f"connection error on GET {path}: {type(exc).__name__}") from exc
        status = response.status_code
        if status == 429:
            raise KalshiRateLimitedError(f"429 on GET {path}")
        if status >= 500:
            raise KalshiServerError(status, response.text[:200])
        if status >= 400:
            code, message = _error_fields(response)
            if status in (401, 403):
                raise KalshiAuthError(
                    f"HTTP {status} on {request.url.path}: {code or 'unauthorized'}: {message} "
                    "(check KALSHI_API_KEY_ID, the private key, and the clock)",
                    status_code=status,
                    code=code,
                )
            raise KalshiApiError(status, code, message, request.url.path)
        try:
            body = response.json()
        except ValueError:
            raise KalshiPayloadError(f"GET {path}: response is not JSON", response.text) from None
        if not isinstance(body, dict):
            raise KalshiPayloadError(f"GET {path}: response is not a JSON object", response.text)
        return body

    async def pages(
        self, path: str, key: str, params: Mapping[str, Any] | None = None, *, limit: int | None = None
    ) -> AsyncIterator[list[Any]]:
        """Yield each page's `key` list, following `cursor` to completion with the same filters."""
        query = dict(params or {})
        if limit is not None:
            query["limit"] = limit
        seen: set[str] = set()
        while True:
            body = await self.get(path, query)
            items = body.get(key)
            if items is None:
                items = []
            if not isinstance(items, list):
                raise KalshiPayloadError(f"GET {path}: {key!r} is not a list", str(body)[:2000])
            yield items
            cursor = body.get("cursor")
            if not cursor:
                return
            if not isinstance(cursor, str):
                raise KalshiPayloadError(f"GET {path}: cursor is not a string", str(body)[:2000])
            if cursor in seen:
                raise KalshiPayloadError(f"GET {path}: cursor {cursor!r} repeated", str(body)[:2000])
            seen.add(cursor)
            query["cursor"] = cursor

    async def collect(
        self,
        path: str,
        key: str,
        params: Mapping[str, Any] | None = None,
        *,
        limit: int | None = None,
        max_items: int | None = None,
    ) -> list[Any]:
        """Every item of every page, or the first `max_items` (paging stops there)."""
        out: list[Any] = []
        if max_items is not None and limit is not None:
            limit = max(1, min(limit, max_items))
        async for page in self.pages(path, key, params, limit=limit):
            out.extend(page)
            if max_items is not None and len(out) >= max_items:
                return out[:max_items]
        return out

    def _limit(self, limit: int | None, maximum: int = MAX_PAGE_SIZE) -> int:
        """A call's page size: its own `limit`, else the client's `page_size`, capped at the endpoint's maximum."""
        return min(self.page_size if limit is None else limit, maximum)

    # -- endpoints ----------------------------------------------------------------------------------------

    async def get_series(self, series_ticker: str) -> dict[str, Any]:
        """`GET /series/{ticker}` → the Series object."""
        return _object(await self.get(f"/series/{series_ticker}"), "series")

    async def list_series(self, *, category: str | None = None, tags: Sequence[str] = ()) -> list[Any]:
        """`GET /series` (filters: category, tags)."""
        params = {k: v for k, v in {"category": category, "tags": ",".join(tags) or None}.items() if v}
        return await self.collect("/series", "series", params)

    async def list_events(
        self,
        *,
        series_ticker: str | None = None,
        status: str | None = None,
        with_nested_markets: bool = False,
        min_close_ts: int | None = None,
        tickers: Sequence[str] = (),
        limit: int | None = None,
    ) -> list[Any]:
        """`GET /events` to completion (status matches any child market: unopened/open/closed/settled)."""
        params: dict[str, Any] = {
            "series_ticker": series_ticker,
            "status": status,
            "with_nested_markets": "true" if with_nested_markets else None,
            "min_close_ts": min_close_ts,
            "tickers": ",".join(tickers) or None,
        }
        query = {k: v for k, v in params.items() if v is not None}
        return await self.collect("/events", "events", query, limit=self._limit(limit, MAX_EVENTS_PAGE_SIZE))

    async def get_event(self, event_ticker: str, *, with_nested_markets: bool = True) -> dict[str, Any]:
        """`GET /events/{ticker}` → the EventData object (nested markets in `event.markets`)."""
        body = await self.get(f"/events/{event_ticker}", {"with_nested_markets": str(with_nested_markets).lower()})
        event = _object(body, "event")
        if not event.get("markets") and isinstance(body.get("markets"), list):
            event = {**event, "markets": body["markets"]}  # the deprecated top-level array
        return event

    async def list_markets(
        self, *, limit: int | None = None, max_items: int | None = None, **filters: Any
    ) -> list[Any]:
        """`GET /markets` to completion (or `max_items`); `filters` as in `market_filters` (validated first)."""
        return await self.collect("/markets", "markets", market_filters(**filters), limit=self._limit(limit),
                                  max_items=max_items)

    async def get_market(self, market_ticker: str) -> dict[str, Any]:
        """`GET /markets/{ticker}` → the Market object."""
        return _object(await self.get(f"/markets/{market_ticker}"), "market")

    async def get_orderbook(self, market_ticker: str, *, depth: int | None = None) -> dict[str, Any]:
        """`GET /markets/{ticker}/orderbook` → the whole body (parse with `orderbook.parse_book_sides`)."""
        return await self.get(f"/markets/{market_ticker}/orderbook", {"depth": depth} if depth else None)

    async def get_orderbooks(self, market_tickers: Iterable[str]) -> list[dict[str, Any]]:
        """`GET /markets/orderbooks?tickers=` in chunks of 100 → `[{"ticker", "orderbook_fp"}, ...]`."""
        tickers = list(market_tickers)
        out: list[dict[str, Any]] = []
        for start in range(0, len(tickers), MAX_ORDERBOOK_TICKERS):
            chunk = tickers[start : start + MAX_ORDERBOOK_TICKERS]
            body = await self.get("/markets/orderbooks", {"tickers": ",".join(chunk)})
            books = body.get("orderbooks")
            if not isinstance(books, list):
                raise KalshiPayloadError("GET /markets/orderbooks: 'orderbooks' is not a list", str(body)[:2000])
            out.extend(book for book in books if isinstance(book, dict))
        return out

    async def list_trades(
        self,
        *,
        ticker: str | None = None,
        min_ts: int | None = None,
        max_ts: int | None = None,
        limit: int | None = None,
    ) -> list[Any]:
        """`GET /markets/trades` to completion (`min_ts`/`max_ts` in Unix seconds)."""
        params = {k: v for k, v in {"ticker": ticker, "min_ts": min_ts, "max_ts": max_ts}.items() if v is not None}
        return await self.collect("/markets/trades", "trades", params, limit=self._limit(limit))

    async def get_historical_cutoff(self) -> dict[str, Any]:
        """`GET /historical/cutoff` → `market_settled_ts`, `trades_created_ts`, ..."""
        return await self.get("/historical/cutoff")

    async def list_historical_markets(
        self, *, limit: int | None = None, max_items: int | None = None, **filters: Any
    ) -> list[Any]:
        """`GET /historical/markets` to completion or `max_items` (markets settled before the cutoff)."""
        query = {k: v for k, v in filters.items() if v is not None}
        return await self.collect("/historical/markets", "markets", query, limit=self._limit(limit),
                                  max_items=max_items)

    async def settled_markets(
        self, series_ticker: str, min_settled_ts: int, max_settled_ts: int, *, max_items: int | None = None
    ) -> list[Any]:
        """Markets of a series settled in [min, max] (Unix seconds): the live listing merged with the
        historical one when the window reaches behind the cutoff (§3 "Historical partition"); live wins.
        At most `max_items`, live ones first."""
        live = await self.list_markets(
            series_ticker=series_ticker, status="settled",
            min_settled_ts=min_settled_ts, max_settled_ts=max_settled_ts, max_items=max_items,
        )
        if max_items is not None and len(live) >= max_items:
            return live
        cutoff = await self.get_historical_cutoff()
        cutoff_ts = _epoch_s(cutoff.get("market_settled_ts"))
        if cutoff_ts is None or cutoff_ts <= min_settled_ts:
            return live
        historical = await self.list_historical_markets(series_ticker=series_ticker)
        seen = {m.get("ticker") for m in live if isinstance(m, dict)}
        merged = list(live)
        for market in historical:
            if isinstance(market, dict) and market.get("ticker") not in seen:
                settled = _epoch_s(market.get("settlement_ts"))
                if settled is None or min_settled_ts <= settled <= max_settled_ts:
                    merged.append(market)
        return merged if max_items is None else merged[:max_items]


def _object(body: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise KalshiPayloadError(f"response has no {key!r} object", str(body)[:2000])
    return value


def _error_fields(response: httpx.Response) -> tuple[str | None, str]:
    """The venue's `code` and `message` (`{"code", "message", "details"}`, §2), else the body text."""
    try:
        body = response.json()
    except ValueError:
        return None, response.text[:200] or response.reason_phrase
    if isinstance(body, dict):
        nested = body.get("error")
        error: dict[str, Any] = nested if isinstance(nested, dict) else body
        code = error.get("code")
        message = error.get("message") or error.get("error") or response.reason_phrase
        return (None if code is None else str(code)), str(message)
    return None, response.text[:200]


def _epoch_s(value: Any) -> int | None:
    """A Unix-seconds value from an int or an ISO string."""
    ms = time_ms(value)
    return None if ms is None else ms // 1000


def rest_client_from_settings(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None, signer: KalshiSigner | None = None
) -> KalshiRestClient:
    """A client for `KALSHI_REST_URL`, signing when credentials are configured, paced at the read budget,
    paging with `KALSHI_MARKET_LIMIT` items per request.

    Every client made here for the same URL and budget shares one token bucket (`shared_read_bucket`).
    """
    return KalshiRestClient(
        settings.kalshi_rest_url,
        signer=signer if signer is not None else KalshiSigner.from_settings(settings),
        transport=transport,
        bucket=shared_read_bucket(settings.kalshi_rest_url, settings.kalshi_reads_per_second),
        page_size=settings.kalshi_market_limit,
    )

"""Coinbase REST candles for backfill: Advanced Trade public candles or Exchange candles (no auth).

- Advanced Trade (reference/coinbase_api.md §3.1): `GET /api/v3/brokerage/market/products/{id}/candles` with
  `start`/`end` (unix seconds), `granularity` (`ONE_MINUTE`, …) and `limit` ≤ 350; body
  `{"candles": [{"start", "low", "high", "open", "close", "volume"}]}`, all strings, newest first.
- Exchange (§3.2): `GET /products/{id}/candles?granularity=60&start=…&end=…`, ≤ 300 candles per request (a
  larger range is rejected); rows `[time, low, high, open, close, volume]` — low before high — newest first,
  possibly including candles before `start`. Minutes without trades are simply absent: a gap is not an outage.
- Both allow about 10 public requests/s per IP (§3.3); over the limit the answer is HTTP 429.

Errors:
```
CoinbaseRestError
├── TransientRestError    429, 5xx, timeouts, dropped connections — retried with backoff, raised when exhausted
└── RestRequestError      any other 4xx (bad product, bad range): bad input, never retried
```
A candle that fails validation becomes a `RejectRecord`; the rest of the page is kept.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from kbtc.venues.backoff import Backoff
from kbtc.venues.records import RejectRecord

RestSource = Literal["advanced", "exchange"]
REJECT_SOURCE = "coinbase_rest"
ADVANCED_MAX_CANDLES = 350
EXCHANGE_MAX_CANDLES = 300
ADVANCED_GRANULARITY = {
    60: "ONE_MINUTE",
    300: "FIVE_MINUTE",
    900: "FIFTEEN_MINUTE",
    1800: "THIRTY_MINUTE",
    3600: "ONE_HOUR",
    7200: "TWO_HOUR",
    14400: "FOUR_HOUR",
    21600: "SIX_HOUR",
    86400: "ONE_DAY",
}
EXCHANGE_GRANULARITY = frozenset({60, 300, 900, 3600, 21600, 86400})


class CoinbaseRestError(Exception):
    """A Coinbase REST request failed."""


class TransientRestError(CoinbaseRestError):
    """Rate limiting, a server error or a network failure that outlasted the retries."""


class RestRequestError(CoinbaseRestError):
    """The venue refused the request as invalid (a 4xx other than 429)."""


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLCV bucket; `start_ts` in epoch ms."""

    start_ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float | None


@dataclass(slots=True)
class CandlePage:
    """The valid candles of one response, oldest first, and the rejected ones."""

    candles: list[Candle] = field(default_factory=list)
    rejects: list[RejectRecord] = field(default_factory=list)


def max_candles(source: RestSource) -> int:
    """The most candles one request may cover."""
    return EXCHANGE_MAX_CANDLES if source == "exchange" else ADVANCED_MAX_CANDLES


def check_granularity(source: RestSource, granularity_s: int) -> None:
    """Raise `ValueError` when the venue does not offer this granularity."""
    allowed = EXCHANGE_GRANULARITY if source == "exchange" else frozenset(ADVANCED_GRANULARITY)
    if granularity_s not in allowed:
        raise ValueError(f"granularity {granularity_s} s is not offered by the {source} API: {sorted(allowed)}")


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("missing_field")
    try:
        number = float(value)
    except ValueError:
        raise ValueError("non_numeric") from None
    if not math.isfinite(number):
        raise ValueError("non_numeric")
    return number


def parse_candle(source: RestSource, item: object) -> Candle:
    """One candle of either shape; `ValueError(reason)` when it is unusable."""
    if source == "exchange":
        if not isinstance(item, list) or len(item) < 5:
            raise ValueError("bad_candle_row")
        start, low, high, open_, close = (_number(v) for v in item[:5])
        volume = _number(item[5]) if len(item) > 5 and item[5] is not None else None
    else:
        if not isinstance(item, dict):
            raise ValueError("bad_candle")
        start, low, high, open_, close = (_number(item.get(k)) for k in ("start", "low", "high", "open", "close"))
        volume = _number(item["volume"]) if item.get("volume") not in (None, "") else None
    if min(open_, high, low, close) <= 0:
        raise ValueError("non_positive_price")
    if low > high or not (low <= open_ <= high and low <= close <= high):
        raise ValueError("inconsistent_ohlc")
    if start != int(start) or start < 0:
        raise ValueError("bad_start")
    return Candle(int(start) * 1000, open_, high, low, close, volume)


def parse_candles(source: RestSource, body: Any, received_ts: int) -> CandlePage:
    """A response body → valid candles (oldest first) and rejects."""
    items = body if source == "exchange" else (body.get("candles") if isinstance(body, dict) else None)
    if not isinstance(items, list):
        raise RestRequestError(f"unexpected candles body: {json.dumps(body)[:200]}")
    page = CandlePage()
    for item in items:
        try:
            page.candles.append(parse_candle(source, item))
        except ValueError as exc:
            page.rejects.append(RejectRecord(REJECT_SOURCE, str(exc), received_ts, json.dumps(item)))
    page.candles.sort(key=lambda candle: candle.start_ts)  # both APIs answer newest first
    return page


def _retry_after_s(response: httpx.Response) -> float:
    # Coinbase documents no Retry-After; honour a standard one (seconds) when it is there, capped at a minute.
    value = response.headers.get("retry-after", "")
    try:
        return min(60.0, max(0.0, float(value)))
    except ValueError:
        return 0.0


class CandlesClient:
    """Fetch candle pages, at most `requests_per_s` requests per second, retrying transient failures."""

    def __init__(
        self,
        source: RestSource,
        base_url: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 10.0,
        requests_per_s: float = 10.0,
        max_attempts: int = 6,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self._client = httpx.Client(base_url=base_url.rstrip("/"), transport=transport, timeout=timeout_s)
        self._min_interval_s = 1.0 / requests_per_s
        self._max_attempts = max_attempts
        self._backoff = backoff or Backoff(base_s=0.5, cap_s=10.0)
        self._sleep = sleep
        self._clock = clock
        self._next_request_mono = 0.0
        self.requests = 0
        self.retries = 0

    def _path_and_params(
        self, product_id: str, start_s: int, end_s: int, granularity_s: int
    ) -> tuple[str, dict[str, str]]:
        if self.source == "exchange":
            params = {"granularity": str(granularity_s), "start": str(start_s), "end": str(end_s)}
            return f"/products/{product_id}/candles", params
        params = {
            "start": str(start_s),
            "end": str(end_s),
            "granularity": ADVANCED_GRANULARITY[granularity_s],
            "limit": str(ADVANCED_MAX_CANDLES),
        }
        return f"/api/v3/brokerage/market/products/{product_id}/candles", params

    def _pace(self) -> None:
        wait_s = self._next_request_mono - self._clock()
        if wait_s > 0:
            self._sleep(wait_s)
        self._next_request_mono = max(self._clock(), self._next_request_mono) + self._min_interval_s

    def fetch(self, product_id: str, start_s: int, end_s: int, granularity_s: int) -> CandlePage:
        """Candles whose bucket starts in [start_s, end_s] (unix seconds, aligned to the granularity).

        Neither API documents whether `end` is inclusive, so the request asks up to the last second of the
        last bucket (`end_s + granularity − 1`): the last bucket is included either way and no further one.
        """
        check_granularity(self.source, granularity_s)
        path, params = self._path_and_params(product_id, start_s, end_s + granularity_s - 1, granularity_s)
        last_problem = ""
        wait_s = 0.0
        for attempt in range(self._max_attempts):
            if attempt:
                self.retries += 1
                self._sleep(max(wait_s, self._backoff.delay_s(attempt - 1)))
            wait_s = 0.0
            self._pace()
            self.requests += 1
            try:
                response = self._client.get(path, params=params)
            except httpx.TransportError as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last_problem = f"HTTP {response.status_code}"
                wait_s = _retry_after_s(response)
                continue
            if response.status_code >= 400:
                raise RestRequestError(f"HTTP {response.status_code} for {path}: {response.text[:200]}")
            try:
                body = response.json()
            except ValueError:
                last_problem = "response is not JSON"
                continue
            received_ts = time.time_ns() // 1_000_000
            page = parse_candles(self.source, body, received_ts)
            # The Exchange API may include candles before `start` (§3.2): keep the asked range only.
            page.candles = [c for c in page.candles if start_s * 1000 <= c.start_ts <= end_s * 1000]
            return page
        raise TransientRestError(f"candles {path} failed {self._max_attempts} times; last: {last_problem}")

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> CandlesClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

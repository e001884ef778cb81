"""The simulated Kalshi REST API under `/trade-api/v2` (`reference/kalshi_api.md` §3), as a Starlette app.

Market-data endpoints with the documented filters and cursor paging; Kalshi's error body
`{"code", "message", "details"}`; a token bucket answering `429 {"error": "too many requests"}` without
`Retry-After`; RSA-PSS signatures required on every request when API keys are configured. Faults from the
shared `FaultPlan` apply per request (429 bursts, 5xx, slow answers, malformed JSON, unknown or missing
fields). The control endpoints under `/_sim` are the simulator's own, not Kalshi's (see `kbtc.sim.control`).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kbtc.sim.faults import FaultKind, FaultPlan, FaultTarget
from kbtc.sim.kalshi.auth import ApiKey, AuthError, TokenBucket, verify
from kbtc.sim.kalshi.venue import STATUS_FILTERS, KalshiVenue
from kbtc.sim.markets import SERIES, Market, iso

API_ROOT = "/trade-api/v2"
_TARGET = FaultTarget.KALSHI_REST
# Fields dropped by a MISSING_FIELDS fault unless the fault names others: the subtitles really went missing
# on KXBTC15M markets in production (pbeets/kalshi-trade-rs #36, `reference/kalshi_api.md` §9).
DEFAULT_MISSING_FIELDS = ("subtitle", "yes_sub_title", "no_sub_title")


class ApiError(Exception):
    """An error answered in Kalshi's error shape."""

    def __init__(self, status: int, code: str, message: str, details: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def response(self) -> JSONResponse:
        """The error as an HTTP response."""
        return JSONResponse({"code": self.code, "message": self.message, "details": self.details},
                            status_code=self.status)


def _int(params: Mapping[str, str], name: str, default: int | None = None, lo: int | None = None,
         hi: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameters", f"{name} must be an integer") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ApiError(400, "invalid_parameters", f"{name} must be between {lo} and {hi}")
    return value


def _csv(params: Mapping[str, str], name: str) -> list[str]:
    return [part.strip() for part in params.get(name, "").split(",") if part.strip()]


def _bool(params: Mapping[str, str], name: str) -> bool:
    return params.get(name, "").lower() in ("true", "1")


def encode_cursor(key: list[Any]) -> str:
    """An opaque keyset cursor (the sort key of the last row of the page)."""
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _decode_cursor(cursor: str) -> list[Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_parameters", "invalid cursor") from None
    if not isinstance(key, list):
        raise ApiError(400, "invalid_parameters", "invalid cursor")
    return key


def page(rows: list[Any], key: Callable[[Any], list[Any]], cursor: str | None, limit: int) -> tuple[list[Any], str]:
    """Keyset paging over rows sorted by `key`: rows after the cursor, and the next cursor ("" at the end)."""
    if cursor:
        after = _decode_cursor(cursor)
        rows = [r for r in rows if key(r) > after]
    chunk = rows[:limit]
    more = len(rows) > limit
    return chunk, encode_cursor(key(chunk[-1])) if more and chunk else ""


class KalshiRest:
    """Handlers of the REST API; `routes()` gives the Starlette routes."""

    def __init__(self, venue: KalshiVenue, faults: FaultPlan, *, keys: Mapping[str, ApiKey] | None = None,
                 rate_limit_per_s: float | None = 20.0, max_skew_ms: int = 30_000) -> None:
        self.venue = venue
        self.faults = faults
        self.keys = dict(keys or {})
        self.bucket = None if rate_limit_per_s is None else TokenBucket(rate_limit_per_s, 2 * rate_limit_per_s)
        self.max_skew_ms = max_skew_ms

    def routes(self) -> list[Route]:
        """The `/trade-api/v2` routes."""
        table: list[tuple[str, Callable[[Request, int], dict[str, Any]]]] = [
            ("/series", self.list_series), ("/series/{ticker}", self.get_series),
            ("/events", self.list_events), ("/events/{ticker}", self.get_event),
            ("/markets", self.list_markets), ("/markets/trades", self.list_trades),
            ("/markets/orderbooks", self.get_orderbooks), ("/markets/{ticker}", self.get_market),
            ("/markets/{ticker}/orderbook", self.get_orderbook),
            ("/historical/cutoff", self.historical_cutoff), ("/historical/markets", self.historical_markets),
            ("/historical/markets/{ticker}", self.historical_market), ("/exchange/status", self.exchange_status),
        ]
        return [Route(API_ROOT + path, self._wrap(handler), methods=["GET"]) for path, handler in table]

    def _wrap(self, handler: Callable[[Request, int], dict[str, Any]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self._serve(request, handler)

        return endpoint

    async def _serve(self, request: Request, handler: Callable[[Request, int], dict[str, Any]]) -> Response:
        now_ms = self.venue.now_ms()
        self.venue.prune(now_ms)
        slow = self.faults.take(_TARGET, FaultKind.SLOW_RESPONSE)
        if slow is not None:
            await asyncio.sleep(slow.duration_s or 2.0)
        client = request.client.host if request.client else "?"
        if self.keys:
            try:
                client = verify(request.headers, request.method, request.url.path, self.keys, now_ms=now_ms,
                                max_skew_ms=self.max_skew_ms).key_id
            except AuthError as exc:
                return ApiError(401, "authentication_error", str(exc)).response()
        if self.faults.take(_TARGET, FaultKind.HTTP_429) is not None or (
            self.bucket is not None and not self.bucket.allow(client)
        ):
            return JSONResponse({"error": "too many requests"}, status_code=429)
        server_error = self.faults.take(_TARGET, FaultKind.HTTP_5XX)
        if server_error is not None:
            status = int(server_error.params.get("status", 503))
            return ApiError(status, "internal_server_error", "simulated server error").response()
        try:
            body = handler(request, now_ms)
        except ApiError as exc:
            return exc.response()
        return self._render(body)

    def _render(self, body: dict[str, Any]) -> Response:
        if self.faults.take(_TARGET, FaultKind.UNKNOWN_FIELDS) is not None:
            _walk_objects(body, lambda obj: obj.update({"sim_unknown_field": {"added": True}}))
        missing = self.faults.take(_TARGET, FaultKind.MISSING_FIELDS)
        if missing is not None:
            names = tuple(missing.params.get("fields", DEFAULT_MISSING_FIELDS))
            _walk_objects(body, lambda obj: [obj.pop(n, None) for n in names])
        text = json.dumps(body, separators=(",", ":"))
        if self.faults.take(_TARGET, FaultKind.MALFORMED_JSON) is not None:
            text = text[: max(1, len(text) // 2)]
        return Response(text, media_type="application/json")

    # --- catalog -----------------------------------------------------------------------------------------

    def list_series(self, request: Request, now_ms: int) -> dict[str, Any]:
        """`GET /series`."""
        return {"series": [self.venue.series_json(t) for t in self.venue.catalog.config.series]}

    def get_series(self, request: Request, now_ms: int) -> dict[str, Any]:
        """`GET /series/{ticker}`."""
        ticker = request.path_params["ticker"]
        if ticker not in SERIES or ticker not in self.venue.catalog.config.series:
            raise ApiError(404, "not_found", f"series {ticker} not found")
        return {"series": self.venue.series_json(ticker)}

    def list_events(self, request: Request, now_ms: int) -> dict[str, Any]:
        """`GET /events`: status (any child market matches), series_ticker, tickers, min_close_ts, nesting."""
        q = request.query_params
        limit = _int(q, "limit", 200, 1, 200) or 200
        status = q.get("status")
        if status and status not in STATUS_FILTERS:
            raise ApiError(400, "invalid_parameters", f"unknown status {status!r}")
        tickers = set(_csv(q, "tickers"))
        min_close_s = _int(q, "min_close_ts")
        catalog = self.venue.catalog
        events = [
            e for e in catalog.events(now_ms)
            if (not q.get("series_ticker") or e.series_ticker == q["series_ticker"])
            and (not tickers or e.event_ticker in tickers)
            and (min_close_s is None or any(catalog.close_ms(m) > min_close_s * 1000 for m in e.markets))
            and (not status or any(catalog.status(m, now_ms) in STATUS_FILTERS[status] for m in e.markets))
        ]
        chunk, cursor = page(events, lambda e: [e.close_ms, e.event_ticker], q.get("cursor"), limit)
        nested = _bool(q, "with_nested_markets")
        return {"events": [self.venue.event_json(e, now_ms, nested=nested) for e in chunk], "cursor": cursor}

    def get_event(self, request: Request, now_ms: int) -> dict[str, Any]:
        """`GET /events/{ticker}`: the event, plus the deprecated top-level `markets` array."""
        event = self.venue.catalog.event(request.path_params["ticker"], now_ms)
        if event is None:
            raise ApiError(404, "not_found", "event not found")
        nested = _bool(request.query_params, "with_nested_markets")
        return {"event": self.venue.event_json(event, now_ms, nested=nested),
                "markets": [self.venue.market_json(m, now_ms) for m in event.markets]}

    def _cutoff_ms(self, now_ms: int) -> int:
        return now_ms - self.venue.catalog.config.historical_cutoff_s * 1000

    def _filtered_markets(self, request: Request, now_ms: int, *, historical: bool) -> list[Market]:
        q = request.query_params
        catalog = self.venue.catalog
        cutoff = self._cutoff_ms(now_ms)
        status = q.get("status")
        if status and status not in STATUS_FILTERS:
            raise ApiError(400, "invalid_parameters", f"status must be one of {', '.join(STATUS_FILTERS)}")
        families = {
            "created": ("min_created_ts", "max_created_ts"), "close": ("min_close_ts", "max_close_ts"),
            "settled": ("min_settled_ts", "max_settled_ts"),
        }
        used = [name for name, keys in families.items() if any(q.get(k) for k in keys)]
        allowed = {"created": ("unopened", "open"), "close": ("closed",), "settled": ("settled",)}
        # Timestamp families are mutually exclusive and each allows only some statuses (§3, GET /markets).
        if len(used) > 1:
            raise ApiError(400, "invalid_parameters", "timestamp filters of different families cannot be combined")
        if used and status and status not in allowed[used[0]]:
            raise ApiError(400, "invalid_parameters", f"{used[0]} timestamp filters are incompatible with status")
        tickers = set(_csv(q, "tickers"))
        bounds = {k: _int(q, k) for keys in families.values() for k in keys}

        def in_range(value_ms: int, lo: str, hi: str) -> bool:
            low, high = bounds[lo], bounds[hi]
            return (low is None or value_ms >= low * 1000) and (high is None or value_ms <= high * 1000)

        out = []
        for m in catalog.markets(now_ms):
            if (m.settled_ms < cutoff) != historical:
                continue
            if q.get("event_ticker") and m.event_ticker != q["event_ticker"]:
                continue
            if q.get("series_ticker") and m.series_ticker != q["series_ticker"]:
                continue
            if tickers and m.ticker not in tickers:
                continue
            if status and catalog.status(m, now_ms) not in STATUS_FILTERS[status]:
                continue
            if not (in_range(m.created_ms, "min_created_ts", "max_created_ts")
                    and in_range(catalog.close_ms(m), "min_close_ts", "max_close_ts")
                    and (not used or used[0] != "settled" or m.settled_ms <= now_ms)
                    and in_range(m.settled_ms, "min_settled_ts", "max_settled_ts")):
                continue
            out.append(m)
        return sorted(out, key=lambda m: (m.close_ms, m.ticker))

    def list_markets(self, request: Request, now_ms: int) -> dict[str, Any]:
        """`GET /markets`: filters and cursor paging (limit ≤ 1000, default 100)."""
        q = request.query_params
        limit = _int(q, "limit", 100, 0, 1000) or 100
        markets = self._filtered_markets(request, now_ms, historical=False)
        chunk, cursor = page(markets, lambda m: [m.close_ms, m.ticker], q.get("cursor"), limit)
        return {"markets": [self.venue.market_json(m, now_ms) for m in chunk], "cursor": cursor}

    def _market(self, request: Request, now_ms: int) -> Market:
        market = self.venue.catalog.market(request.path_params["ticker"], now_ms)
        if market is None:
            raise ApiError(404, "not_found", "market not found")
        return market

    def get_market(self, request: Request, now_ms: int) -> dict[str, Any]:
        """`GET /markets/{ticker}` (settled-before-cutoff markets are only under /historical)."""
        market = self._market(request, now_ms)
        if market.settled_ms < self._cutoff_ms(now_ms):
            raise ApiError(404, "not_found", "market not found; see /historical/markets")
        return {"market": self.venue.market_json(market, now_ms)}

    def get_orderbook(self, request: Request, now_ms: int) -> dict[str, Any]:
        """`GET /markets/{ticker}/orderbook?depth=`: depth ≤ 0 means every level."""
        depth = _int(request.query_params, "depth", 0, hi=100) or 0
        return self.venue.orderbook_json(self._market(request, now_ms), now_ms, depth)

    def get_orderbooks(self, request: Request, now_ms: int) -> dict[str, Any]:
        """`GET /markets/orderbooks?tickers=` (up to 100 tickers)."""
        tickers = _csv(request.query_params, "tickers")
        if not tickers:
            raise ApiError(400, "invalid_parameters", "tickers is required")
        if len(tickers) > 100:
            raise ApiError(400, "invalid_parameters", "at most 100 tickers")
        books = []
        for ticker in tickers:
            market = self.venue.catalog.market(ticker, now_ms)
            if market is not None:
                books.append({"ticker": ticker, **self.venue.orderbook_json(market, now_ms, 0)})
        return {"orderbooks": books}

    def list_trades(self, request: Request, now_ms: int) -> dict[str, Any]:
        """`GET /markets/trades`: newest first; ticker, min_ts/max_ts (seconds), limit ≤ 1000, cursor."""
        q = request.query_params
        limit = _int(q, "limit", 100, 1, 1000) or 100
        min_s = _int(q, "min_ts", 0) or 0
        max_s = min(_int(q, "max_ts", now_ms // 1000) or 0, now_ms // 1000)
        catalog = self.venue.catalog
        if q.get("ticker"):
            market = catalog.market(q["ticker"], now_ms)
            markets = [market] if market is not None else []
        else:
            markets = catalog.markets(now_ms)
        trades = [t for m in markets if m.open_ms // 1000 <= max_s and m.close_ms // 1000 >= min_s
                  for t in self.venue.trades(m, min_s, max_s)]
        trades.sort(key=lambda t: (-t.second, t.ticker))
        chunk, cursor = page(trades, lambda t: [-t.second, t.ticker], q.get("cursor"), limit)
        return {"trades": [self.venue.trade_json(t) for t in chunk], "cursor": cursor}

    # --- historical partition ----------------------------------------------------------------------------

    def historical_cutoff(self, request: Request, now_ms: int) -> dict[str, Any]:
        """`GET /historical/cutoff`: where the live endpoints stop."""
        cutoff = iso(self._cutoff_ms(now_ms))
        return {"market_settled_ts": cutoff, "trades_created_ts": cutoff, "orders_updated_ts": cutoff,
                "market_positions_last_updated_ts": cutoff}

    def historical_markets(self, request: Request, now_ms: int) -> dict[str, Any]:
        """`GET /historical/markets`: markets settled before the cutoff; its filters are mutually exclusive."""
        q = request.query_params
        if sum(bool(q.get(k)) for k in ("tickers", "event_ticker", "series_ticker")) > 1:
            raise ApiError(400, "invalid_parameters", "tickers, event_ticker and series_ticker are exclusive")
        limit = _int(q, "limit", 100, 0, 1000) or 100
        markets = self._filtered_markets(request, now_ms, historical=True)
        chunk, cursor = page(markets, lambda m: [m.close_ms, m.ticker], q.get("cursor"), limit)
        return {"markets": [self.venue.market_json(m, now_ms) for m in chunk], "cursor": cursor}

    def historical_market(self, request: Request, now_ms: int) -> dict[str, Any]:
        """`GET /historical/markets/{ticker}`."""
        market = self._market(request, now_ms)
        if market.settled_ms >= self._cutoff_ms(now_ms):
            raise ApiError(404, "not_found", "market not in the historical partition")
        return {"market": self.venue.market_json(market, now_ms)}

    def exchange_status(self, request: Request, now_ms: int) -> dict[str, Any]:
        """`GET /exchange/status`."""
        return {"exchange_active": True, "trading_active": True}


def _walk_objects(body: Any, apply: Callable[[dict[str, Any]], object]) -> None:
    """Apply to every market/event/series-like object (dicts carrying a ticker) in a response."""
    if isinstance(body, dict):
        if "ticker" in body or "event_ticker" in body:
            apply(body)
        for value in body.values():
            _walk_objects(value, apply)
    elif isinstance(body, list):
        for value in body:
            _walk_objects(value, apply)

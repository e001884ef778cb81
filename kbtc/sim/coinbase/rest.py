"""The simulated public candle endpoints of both Coinbase REST APIs, on one HTTP server (§3.1, §3.2).

- Advanced Trade `GET /api/v3/brokerage/market/products/{product_id}/candles?start=&end=&granularity=[&limit=]`:
  `start`/`end` unix seconds and a granularity enum, all required; at most 350 candles (`limit` ≤ 350);
  `{"candles": [{"start", "low", "high", "open", "close", "volume"}]}` with every value a string; errors
  `{"error", "code", "message", "details"}`.
- Exchange `GET /products/{product_id}/candles?granularity=60[&start=&end=]`: granularity in
  {60, 300, 900, 3600, 21600, 86400}; at most 300 rows `[time, low, high, open, close, volume]` of numbers;
  `start`/`end` as ISO 8601 or unix seconds, both ignored unless both are given (then: the 300 buckets up
  to now); errors `{"message"}`.

Both answer newest first and leave out minutes without trades. Faults (target `COINBASE_REST`, scoped by
`api`): `slow_response` (delay `duration_s`), `http_429`, `http_5xx` (`status` param, default 503),
`malformed_json`, `unknown_fields` (extra keys, or a seventh row element), `missing_fields` (`fields` param;
default: `volume`, i.e. rows of five — the Exchange doc blurb's own omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import polars as pl
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kbtc.sim.coinbase.candles import (
    ADVANCED_TRADE_GRANULARITY_S,
    EXCHANGE_GRANULARITY_S,
    CandleBook,
    requested_count,
)
from kbtc.sim.coinbase.fault_scope import API_ADVANCED_TRADE, API_EXCHANGE, take_scoped
from kbtc.sim.faults import FaultKind, FaultPlan, FaultTarget

ADVANCED_TRADE_MAX_CANDLES = 350
EXCHANGE_MAX_CANDLES = 300
# gRPC status names and codes, as the Advanced Trade error body carries them.
_GRPC = {400: ("INVALID_ARGUMENT", 3), 404: ("NOT_FOUND", 5), 429: ("RESOURCE_EXHAUSTED", 8),
         500: ("INTERNAL", 13), 502: ("UNAVAILABLE", 14), 503: ("UNAVAILABLE", 14), 504: ("DEADLINE_EXCEEDED", 4)}


class _RejectedError(ValueError):
    """A request the venue rejects; `status` is its HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _error_body(api: str, status: int, message: str) -> dict[str, Any]:
    if api == API_EXCHANGE:
        return {"message": message}
    name, code = _GRPC.get(status, ("UNKNOWN", 2))
    return {"error": name, "code": code, "message": message, "details": []}


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the process embedding the simulator owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class CandleApi:
    """The HTTP server answering both candle endpoints from a `CandleBook`."""

    def __init__(self, book: CandleBook, faults: FaultPlan, *, product_id: str, host: str) -> None:
        self.book = book
        self.faults = faults
        self.product_id = product_id
        self.host = host
        self.app = Starlette(routes=[
            Route("/api/v3/brokerage/market/products/{product_id}/candles", self._advanced_trade),
            Route("/products/{product_id}/candles", self._exchange),
        ])
        self._socket: socket.socket | None = None
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """`http://host:port` of the running server."""
        if self._socket is None:
            raise RuntimeError("the REST server is not running")
        return f"http://{self.host}:{self._socket.getsockname()[1]}"

    async def start(self) -> None:
        """Listen on a port chosen by the OS."""
        self._socket = socket.create_server((self.host, 0))
        config = uvicorn.Config(self.app, log_config=None, log_level="warning", access_log=False, lifespan="off",
                                ws="none", timeout_graceful_shutdown=1)
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # surfaces the start-up error
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Finish in-flight requests (up to 1 s) and close the socket."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        self._server = self._task = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def _respond(
        self, api: str, request: Request, build: Callable[[Any], Awaitable[Any]]
    ) -> Response:
        """Apply request-level faults, build the body (or an error), then body-level faults."""
        def take(kind: FaultKind) -> Any:
            return take_scoped(self.faults, FaultTarget.COINBASE_REST, kind, api=api)

        if (slow := take(FaultKind.SLOW_RESPONSE)) is not None:
            await asyncio.sleep(slow.duration_s)
        if (limited := take(FaultKind.HTTP_429)) is not None:
            headers = {"Retry-After": str(limited.params["retry_after_s"])} if "retry_after_s" in limited.params else {}
            return _json(429, _error_body(api, 429, "Too Many Requests"), headers)
        if (failed := take(FaultKind.HTTP_5XX)) is not None:
            status = int(failed.params.get("status", 503))
            return _json(status, _error_body(api, status, "service unavailable"))
        try:
            if request.path_params["product_id"] != self.product_id:
                raise _RejectedError("product not found", 404)
            body = await build(request.query_params)
        except _RejectedError as rejected:
            return _json(rejected.status, _error_body(api, rejected.status, str(rejected)))
        if (extra := take(FaultKind.UNKNOWN_FIELDS)) is not None:
            body = _with_unknown(body, extra.params.get("fields", {"sim_unlisted_field": "unlisted"}))
        if (missing := take(FaultKind.MISSING_FIELDS)) is not None:
            body = _without(body, frozenset(missing.params.get("fields", ("volume",))))
        text = json.dumps(body, separators=(",", ":"))
        if take(FaultKind.MALFORMED_JSON) is not None:
            text = text[: len(text) // 2]
        return Response(text, 200, media_type="application/json")

    async def _advanced_trade(self, request: Request) -> Response:
        return await self._respond(API_ADVANCED_TRADE, request, self._advanced_trade_body)

    async def _exchange(self, request: Request) -> Response:
        return await self._respond(API_EXCHANGE, request, self._exchange_body)

    async def _advanced_trade_body(self, query: Any) -> dict[str, Any]:
        start_s, end_s = _unix_param(query, "start"), _unix_param(query, "end")
        name = query.get("granularity")
        if name not in ADVANCED_TRADE_GRANULARITY_S:
            raise _RejectedError(f"granularity must be one of {', '.join(ADVANCED_TRADE_GRANULARITY_S)}")
        limit = _int_param(query, "limit", ADVANCED_TRADE_MAX_CANDLES)
        if not 1 <= limit <= ADVANCED_TRADE_MAX_CANDLES:
            raise _RejectedError(f"limit must be between 1 and {ADVANCED_TRADE_MAX_CANDLES}")
        granularity_s = ADVANCED_TRADE_GRANULARITY_S[name]
        if requested_count(start_s, end_s, granularity_s) > ADVANCED_TRADE_MAX_CANDLES:
            raise _RejectedError(
                f"start and end argument is invalid - number of candles requested should be less than or equal "
                f"to {ADVANCED_TRADE_MAX_CANDLES}"
            )
        frame = await self._candles(start_s, end_s, granularity_s, limit)
        rows = frame.select(
            pl.col("start_s").cast(pl.String).alias("start"),
            *(_decimal_strings(c, 2) for c in ("low", "high", "open", "close")),
            _decimal_strings("volume", 8),
        ).to_dicts()
        return {"candles": rows}

    async def _exchange_body(self, query: Any) -> list[list[float]]:
        granularity_s = _int_param(query, "granularity", 60)
        if granularity_s not in EXCHANGE_GRANULARITY_S:
            raise _RejectedError("Unsupported granularity")
        now_s = time.time_ns() // 1_000_000_000
        if query.get("start") is not None and query.get("end") is not None:
            start_s, end_s = _time_param(query["start"]), _time_param(query["end"])
            if start_s > end_s:
                raise _RejectedError("start must be before end")
        else:  # "If either one of the start or end fields are not provided then both fields will be ignored."
            end_s = now_s - now_s % granularity_s + granularity_s
            start_s = end_s - EXCHANGE_MAX_CANDLES * granularity_s
        if requested_count(start_s, end_s, granularity_s) > EXCHANGE_MAX_CANDLES:
            raise _RejectedError(
                "granularity too small for the requested time range. Count of aggregations requested exceeds 300"
            )
        frame = await self._candles(start_s, end_s, granularity_s, EXCHANGE_MAX_CANDLES)
        return [[int(r[0]), *r[1:]] for r in frame.rows()]

    async def _candles(self, start_s: int, end_s: int, granularity_s: int, limit: int) -> pl.DataFrame:
        now_ms = time.time_ns() // 1_000_000
        first_bucket_s = start_s - start_s % granularity_s
        await self.book.prefetch(first_bucket_s * 1000, (end_s - 1) * 1000, now_ms)
        return self.book.candles(start_s=start_s, end_s=end_s, granularity_s=granularity_s, now_ms=now_ms,
                                 limit=limit)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status, headers=headers, media_type="application/json")


def _decimal_strings(column: str, places: int) -> pl.Expr:
    """Decimal strings without trailing zeros, as Advanced Trade writes numbers ("140.21", "15460", "0.3")."""
    exact = pl.col(column).round(places).cast(pl.Decimal(38, places)).cast(pl.String)
    return exact.str.replace(r"\.?0+$", "").alias(column)


def _int_param(query: Any, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise _RejectedError(f"{name} must be an integer") from None


def _unix_param(query: Any, name: str) -> int:
    raw = query.get(name)
    if raw is None:
        raise _RejectedError(f"{name} is required (unix seconds)")
    try:
        return int(raw)
    except ValueError:
        raise _RejectedError(f"{name} must be unix seconds") from None


def _time_param(raw: str) -> int:
    """Unix seconds, or an ISO 8601 time (a naive one is UTC), as epoch seconds."""
    try:
        return int(float(raw))
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _RejectedError(f"invalid time {raw!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def _with_unknown(body: Any, extra: dict[str, Any]) -> Any:
    if isinstance(body, list):  # Exchange rows: an unlisted seventh element
        return [[*row, next(iter(extra.values()), 0)] for row in body]
    return {**body, "candles": [{**c, **extra} for c in body["candles"]], **extra}


def _without(body: Any, fields: frozenset[str]) -> Any:
    if isinstance(body, list):  # Exchange rows are positional: a missing volume shortens each row
        columns = ("time", "low", "high", "open", "close", "volume")
        keep = [i for i, name in enumerate(columns) if name not in fields]
        return [[row[i] for i in keep] for row in body]
    return {"candles": [{k: v for k, v in c.items() if k not in fields} for c in body["candles"]]}

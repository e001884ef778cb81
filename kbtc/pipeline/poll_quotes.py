"""Step `poll-quotes`: REST top of book for the tracked markets, every `interval` seconds for `seconds`.

Tracked markets come from the catalog (`markets`): listed, of the configured series, with the given venue
status (e.g. `active`) and not yet closed. Each poll fetches them with the batch form of `GET /markets`
(`tickers=`, 100 per request, at most `concurrency` requests in flight — the seed's `--concurrency`, which
bounded its one-request-per-market polls; the token bucket paces them either way) — the Market object carries
the top of book on both sides, its sizes, the last price, volume and open interest — and stores one `quotes`
row per market (source `rest`, quote time = the request's receive time). Crossed quotes go to `rejects`. A
request that fails (after its retries) fails the poll; the other requests' quotes are still stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from kbtc.db.store import read_frame
from kbtc.log import get_logger
from kbtc.pipeline.kalshi_store import write_quotes
from kbtc.pipeline.recording import record_rejects
from kbtc.venues.kalshi.errors import KalshiError, KalshiFatalError
from kbtc.venues.kalshi.marketdata import QuoteRecord, quote_from_market, validate_quote
from kbtc.venues.kalshi.parsing import FieldError, raw_json
from kbtc.venues.kalshi.rest import KalshiRestClient
from kbtc.venues.records import RejectRecord

_log = get_logger(__name__)
TICKERS_PER_REQUEST = 100
DEFAULT_CONCURRENCY = 5


@dataclass(slots=True)
class PollSummary:
    """Counters of a polling session."""

    markets: int = 0
    polls: int = 0
    quotes: int = 0
    rejects: int = 0
    failures: int = 0


def tracked_markets(
    engine: Engine, series: Sequence[str], status: str | None, now_ms: int, max_horizon_s: float | None = None
) -> list[str]:
    """Listed markets of the series with the given venue status, not closed yet, ordered by close."""
    if not series:
        return []
    names = [f"s{i}" for i in range(len(series))]
    params: dict[str, object] = dict(zip(names, series, strict=True))
    params["now"] = now_ms
    where = [f"series_ticker IN ({', '.join(':' + n for n in names)})", "catalog_status = 'listed'",
             "(close_ts IS NULL OR close_ts >= :now)"]
    if status is not None:
        where.append("status = :status")
        params["status"] = status
    if max_horizon_s is not None:
        where.append("(close_ts IS NULL OR close_ts <= :horizon)")
        params["horizon"] = now_ms + int(max_horizon_s * 1000)
    sql = f"SELECT market_ticker FROM markets WHERE {' AND '.join(where)} ORDER BY close_ts, market_ticker"  # noqa: S608
    return [str(t) for t in read_frame(engine, sql, params)["market_ticker"].to_list()]


async def poll_once(
    engine: Engine, client: KalshiRestClient, tickers: Sequence[str], *, concurrency: int = DEFAULT_CONCURRENCY
) -> tuple[int, int, list[KalshiError]]:
    """One poll of every ticker, `concurrency` requests at a time; return (quotes stored, rejects, request errors).

    A fatal venue error (e.g. 401) is raised once the requests that did answer are stored.
    """
    gate = asyncio.Semaphore(max(1, concurrency))

    async def fetch(chunk: Sequence[str]) -> tuple[list[Any], int]:
        async with gate:
            markets = await client.list_markets(tickers=list(chunk), limit=len(chunk))
            return markets, int(time.time() * 1000)

    chunks = [tickers[start : start + TICKERS_PER_REQUEST] for start in range(0, len(tickers), TICKERS_PER_REQUEST)]
    answers = await asyncio.gather(*(fetch(chunk) for chunk in chunks), return_exceptions=True)
    quotes: list[QuoteRecord] = []
    rejects: list[RejectRecord] = []
    errors: list[KalshiError] = []
    for answer in answers:
        if isinstance(answer, KalshiError):
            errors.append(answer)
            continue
        if isinstance(answer, BaseException):
            raise answer  # a bug, not the venue: do not hide it
        markets, received_ts = answer
        for market in markets:
            try:
                if not isinstance(market, dict):
                    raise FieldError("market is not an object")
                quote = quote_from_market(market, received_ts)
            except FieldError as exc:
                rejects.append(RejectRecord("kalshi.rest.quotes", str(exc), received_ts, raw_json({"market": market})))
                continue
            reason = validate_quote(quote)
            if reason is not None:
                rejects.append(RejectRecord("kalshi.rest.quotes", reason, received_ts, raw_json(market)))
                continue
            quotes.append(quote)
    write_quotes(engine, quotes)
    record_rejects(engine, rejects)
    fatal = next((e for e in errors if isinstance(e, KalshiFatalError)), None)
    if fatal is not None:
        raise fatal
    return len(quotes), len(rejects), errors


async def poll_quotes(
    engine: Engine,
    client: KalshiRestClient,
    series: Sequence[str],
    *,
    seconds: float = 60.0,
    interval_s: float = 5.0,
    status: str | None = "active",
    max_horizon_s: float | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    now_ms: int | None = None,
) -> PollSummary:
    """Poll the tracked markets (as of `now_ms`, default now) every `interval_s` for `seconds` (at least once).

    `failures` counts polls in which at least one request failed.
    """
    summary = PollSummary()
    asof = now_ms if now_ms is not None else int(time.time() * 1000)
    tickers = tracked_markets(engine, series, status, asof, max_horizon_s)
    summary.markets = len(tickers)
    if not tickers:
        return summary
    deadline = time.monotonic() + seconds
    while True:
        started = time.monotonic()
        stored, rejected, errors = await poll_once(engine, client, tickers, concurrency=concurrency)
        summary.quotes += stored
        summary.rejects += rejected
        if errors:
            summary.failures += 1
            _log.warning("kalshi_poll_failed", failed_requests=len(errors), error=str(errors[0]))
        summary.polls += 1
        next_at = started + interval_s
        if next_at >= deadline:
            return summary
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))

"""Step `poll-quotes`: REST top of book for the tracked markets, every `interval` seconds for `seconds`.

Tracked markets come from the catalog (`markets`): listed, of the configured series, with the given venue
status (e.g. `active`) and not yet closed. Each poll fetches them with the batch form of `GET /markets`
(`tickers=`, 100 per request) — the Market object carries the top of book on both sides, its sizes, the last
price, volume and open interest — and stores one `quotes` row per market (source `rest`, quote time = the
poll's receive time). Crossed quotes go to `rejects`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

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


async def poll_once(engine: Engine, client: KalshiRestClient, tickers: Sequence[str]) -> tuple[int, int]:
    """One poll of every ticker; return (quotes stored, rejects)."""
    quotes: list[QuoteRecord] = []
    rejects: list[RejectRecord] = []
    for start in range(0, len(tickers), TICKERS_PER_REQUEST):
        chunk = tickers[start : start + TICKERS_PER_REQUEST]
        markets = await client.list_markets(tickers=chunk, limit=len(chunk))
        received_ts = int(time.time() * 1000)
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
    return len(quotes), len(rejects)


async def poll_quotes(
    engine: Engine,
    client: KalshiRestClient,
    series: Sequence[str],
    *,
    seconds: float = 60.0,
    interval_s: float = 5.0,
    status: str | None = "active",
    max_horizon_s: float | None = None,
    now_ms: int | None = None,
) -> PollSummary:
    """Poll the tracked markets (as of `now_ms`, default now) every `interval_s` for `seconds` (at least once)."""
    summary = PollSummary()
    asof = now_ms if now_ms is not None else int(time.time() * 1000)
    tickers = tracked_markets(engine, series, status, asof, max_horizon_s)
    summary.markets = len(tickers)
    if not tickers:
        return summary
    deadline = time.monotonic() + seconds
    while True:
        started = time.monotonic()
        try:
            stored, rejected = await poll_once(engine, client, tickers)
            summary.quotes += stored
            summary.rejects += rejected
        except KalshiFatalError:
            raise
        except KalshiError as exc:
            summary.failures += 1
            _log.warning("kalshi_poll_failed", error=str(exc))
        summary.polls += 1
        next_at = started + interval_s
        if next_at >= deadline:
            return summary
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))

"""Steps `refresh-markets` and `scan-markets`: the catalog of the configured series, walked series → events → markets.

Per series: `GET /series/{ticker}` (fee parameters), then `GET /events?series_ticker=&with_nested_markets=true`
to completion (an event returned without nested markets is completed with `GET /markets?event_ticker=`).
Fees per market are the event override, else the series value. Markets are upserted (never overwritten with
nulls); after a **complete** listing of a series, listed markets of that series (within the status filter)
that were not returned are demoted to `catalog_status = 'vanished'`. A series whose listing failed is
reported and left untouched. Unparseable markets go to `rejects`.

Restricted to one event (`KALSHI_EVENT_TICKER`), the refresh covers only that event's series, lists the event
with `GET /events/{ticker}` instead, and demotes only markets of that event.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from kbtc.log import get_logger
from kbtc.pipeline.kalshi_store import demote_vanished, write_events, write_markets, write_series
from kbtc.pipeline.recording import record_rejects
from kbtc.transient import is_transient
from kbtc.venues.kalshi.catalog import EventRecord, parse_event, parse_markets, parse_series, series_ticker_of
from kbtc.venues.kalshi.errors import KalshiAuthError, KalshiError, KalshiPayloadError
from kbtc.venues.kalshi.parsing import FieldError, raw_json
from kbtc.venues.kalshi.rest import KalshiRestClient
from kbtc.venues.records import RejectRecord

_log = get_logger(__name__)

# `?status=` filter value → the statuses markets carry in responses (kalshi_api.md §4 "status filter mapping").
STATUS_FILTER_TO_MARKET = {
    "unopened": ("initialized",),
    "open": ("active",),
    "paused": ("inactive",),
    "closed": ("closed", "determined", "disputed", "amended"),
    "settled": ("finalized",),
}
# GET /events accepts a narrower status set than GET /markets.
_EVENT_STATUSES = ("unopened", "open", "closed", "settled")


@dataclass(slots=True)
class SeriesResult:
    """What one series' refresh found."""

    series_ticker: str
    events: int = 0
    markets: int = 0
    rejects: int = 0
    demoted: int = 0
    skip_reasons: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    error_transient: bool = False  # the error may go away on retry (kbtc.transient): a timeout, 429, 5xx


@dataclass(slots=True)
class CatalogSummary:
    """The refresh of every configured series."""

    series: list[SeriesResult]

    @property
    def ok(self) -> bool:
        """True when every series listed at least one market and none failed."""
        return all(s.error is None and s.markets > 0 for s in self.series)


def event_series(series: Sequence[str], event_ticker: str) -> list[str]:
    """The series of `series` that `event_ticker` belongs to, as a one-element list (ValueError when none)."""
    owner = series_ticker_of(event_ticker)
    if owner not in series:
        raise ValueError(f"event {event_ticker!r} belongs to series {owner!r}, which is not among the series "
                         f"listed ({', '.join(series)})")
    return [owner]


async def fetch_series_catalog(
    client: KalshiRestClient,
    series_ticker: str,
    status: str | None,
    received_ts: int,
    *,
    event_ticker: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[Any]]:
    """The series object, its events and all their markets (raw payloads) for one series (or one of its events)."""
    series = await client.get_series(series_ticker)
    if event_ticker is not None:
        events: list[Any] = [await client.get_event(event_ticker, with_nested_markets=True)]
    else:
        events = await client.list_events(
            series_ticker=series_ticker,
            status=status if status in _EVENT_STATUSES else None,
            with_nested_markets=True,
        )
    markets: list[Any] = []
    for event in events:
        if not isinstance(event, dict):
            continue
        nested = event.get("markets")
        if isinstance(nested, list):
            markets.extend(nested)
        else:
            ticker = event.get("event_ticker")
            markets.extend(await client.list_markets(event_ticker=ticker, status=status) if ticker else [])
    if status is not None:
        wanted = STATUS_FILTER_TO_MARKET[status]
        markets = [m for m in markets if not isinstance(m, dict) or m.get("status") in wanted]
    return series, [e for e in events if isinstance(e, dict)], markets


async def refresh_series(
    engine: Engine,
    client: KalshiRestClient,
    series_ticker: str,
    status: str | None,
    now_ms: int,
    *,
    event_ticker: str | None = None,
) -> SeriesResult:
    """Refresh one series (or one of its events); errors are caught into the result (fatal auth errors propagate)."""
    result = SeriesResult(series_ticker)
    try:
        series_raw, events_raw, markets_raw = await fetch_series_catalog(
            client, series_ticker, status, now_ms, event_ticker=event_ticker
        )
    except KalshiPayloadError as exc:
        record_rejects(engine, [RejectRecord("kalshi.rest.catalog", str(exc), now_ms, exc.raw or str(exc))])
        result.error = str(exc)
        return result
    except KalshiAuthError:
        raise  # every series would fail the same way
    except KalshiError as exc:
        result.error = str(exc)
        result.error_transient = is_transient(exc)
        return result
    rejects: list[RejectRecord] = []
    try:
        series_record = parse_series(series_raw, now_ms)
    except FieldError as exc:
        record_rejects(engine, [RejectRecord("kalshi.rest.series", str(exc), now_ms, raw_json(series_raw))])
        result.error = f"series: {exc}"
        return result
    events: list[EventRecord] = []
    for payload in events_raw:
        try:
            events.append(parse_event(payload, now_ms))
        except FieldError as exc:
            rejects.append(RejectRecord("kalshi.rest.events", str(exc), now_ms, raw_json(payload)))
    markets, market_rejects = parse_markets(markets_raw, now_ms)
    rejects.extend(market_rejects)
    by_event = {e.event_ticker: e for e in events}
    fees: dict[str, tuple[str | None, float | None]] = {}
    for market in markets:
        event = by_event.get(market.event_ticker)
        fee_type = (event.fee_type_override if event else None) or series_record.fee_type
        multiplier = event.fee_multiplier_override if event and event.fee_multiplier_override is not None else None
        fees[market.event_ticker] = (fee_type, multiplier if multiplier is not None else series_record.fee_multiplier)
    write_series(engine, [series_record])
    write_events(engine, events)
    write_markets(engine, markets, fees)
    record_rejects(engine, rejects)
    returned = {m.market_ticker for m in markets}
    statuses = STATUS_FILTER_TO_MARKET.get(status) if status else None
    demoted = demote_vanished(engine, series_ticker, returned, statuses, now_ms, event_ticker=event_ticker)
    result.events, result.markets = len(events), len(markets)
    result.rejects, result.demoted = len(rejects), len(demoted)
    result.skip_reasons.update(m.skip_reason for m in markets if m.skip_reason)
    _log.info("kalshi_series_refreshed", series=series_ticker, events=result.events, markets=result.markets,
              rejects=result.rejects, demoted=result.demoted, skip_reasons=dict(result.skip_reasons))
    return result


async def refresh_markets(
    engine: Engine,
    client: KalshiRestClient,
    series: Sequence[str],
    *,
    status: str | None = "open",
    event_ticker: str | None = None,
    now_ms: int | None = None,
) -> CatalogSummary:
    """Refresh the catalog of every series, or only `event_ticker` (which must belong to one of them: ValueError).

    Idempotent: re-running changes nothing when the venue did not.
    """
    if status is not None and status not in STATUS_FILTER_TO_MARKET:
        raise ValueError(f"status must be one of {', '.join(STATUS_FILTER_TO_MARKET)}")
    chosen = list(series) if event_ticker is None else event_series(series, event_ticker)
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    return CatalogSummary(
        [await refresh_series(engine, client, s, status, now, event_ticker=event_ticker) for s in chosen]
    )


@dataclass(frozen=True, slots=True)
class SeriesScan:
    """What a series lists now (no database writes)."""

    series_ticker: str
    markets: int
    by_status: dict[str, int]
    samples: list[str]
    error: str | None = None


async def scan_markets(
    client: KalshiRestClient, series: Sequence[str], *, status: str | None = None, event_ticker: str | None = None
) -> list[SeriesScan]:
    """List each series' markets now (or only `event_ticker`'s, in its series): counts by status and samples."""
    out: list[SeriesScan] = []
    for series_ticker in series if event_ticker is None else event_series(series, event_ticker):
        try:
            markets = await client.list_markets(series_ticker=series_ticker, event_ticker=event_ticker, status=status)
        except KalshiAuthError:
            raise  # every series would fail the same way
        except KalshiError as exc:
            out.append(SeriesScan(series_ticker, 0, {}, [], str(exc)))
            continue
        statuses = Counter(str(m.get("status")) for m in markets if isinstance(m, dict))
        tickers = [str(m.get("ticker")) for m in markets if isinstance(m, dict)][:5]
        out.append(SeriesScan(series_ticker, len(markets), dict(statuses), tickers))
    return out

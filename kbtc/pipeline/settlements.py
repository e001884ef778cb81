"""Step `refresh-settlements`: results, expiration values and settlement values of settled markets.

Sources, merged per market:
1. REST: per series, `GET /markets?status=settled&min_settled_ts=&max_settled_ts=` merged with
   `GET /historical/markets` when the window reaches behind the historical cutoff (kalshi_api.md §3).
   With `--status all` no status is sent (the settled-time filters still apply).
2. Stored `market_lifecycle_v2` events (`determined`: result + settlement value; `settled`: settled time)
   received by the collector in the same window, re-applied (idempotent).

A stored non-null `result` that disagrees with the venue is counted as a conflict and kept unless `force`.
Markets never seen before are created from the payload. Unparseable markets go to `rejects`.

`limit` caps the markets fetched in one run, as the seed's `--limit` did: `limit // len(series)` per series
(at least 1), live ones first, in the venue's order; paging stops there. 0 (our default) fetches everything
in the window — the seed's 600 (200 a series) would drop most of a day's KXBTCD strikes. Each market's
outcome is logged at DEBUG (`kalshi_settlement_market`: created / updated / conflict).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy import Engine, bindparam, text

from kbtc.db.store import read_frame
from kbtc.log import get_logger
from kbtc.pipeline.kalshi_store import write_lifecycle, write_markets
from kbtc.pipeline.recording import record_rejects
from kbtc.venues.kalshi.catalog import MarketRecord, parse_markets
from kbtc.venues.kalshi.errors import KalshiAuthError, KalshiError
from kbtc.venues.kalshi.marketdata import LifecycleRecord, parse_lifecycle
from kbtc.venues.kalshi.parsing import FieldError
from kbtc.venues.kalshi.rest import KalshiRestClient

_log = get_logger(__name__)
STATUS_CHOICES = ("resolved", "settled", "all")


@dataclass(slots=True)
class SettlementSummary:
    """Counters of a settlement refresh."""

    fetched: int = 0
    with_result: int = 0
    created: int = 0
    conflicts: int = 0
    rejects: int = 0
    lifecycle_applied: int = 0
    failed_series: int = 0


def _stored_results(engine: Engine, tickers: Sequence[str]) -> dict[str, str | None]:
    if not tickers:
        return {}
    stmt = text("SELECT market_ticker, result FROM markets WHERE market_ticker IN :t").bindparams(
        bindparam("t", expanding=True)
    )
    out: dict[str, str | None] = {}
    for start in range(0, len(tickers), 500):
        frame = read_frame(engine, stmt, {"t": list(tickers[start : start + 500])})
        out.update(zip(frame["market_ticker"].to_list(), frame["result"].to_list(), strict=True))
    return out


def _resolve_conflicts(
    engine: Engine, records: list[MarketRecord], force: bool, summary: SettlementSummary
) -> list[MarketRecord]:
    stored = _stored_results(engine, [r.market_ticker for r in records])
    out = []
    for record in records:
        outcome = "updated"
        if record.market_ticker not in stored:
            summary.created += 1
            outcome = "created"
        old = stored.get(record.market_ticker)
        if old is not None and record.result is not None and old != record.result and not force:
            summary.conflicts += 1
            outcome = "conflict"
            _log.warning("kalshi_settlement_conflict", market=record.market_ticker, stored=old, venue=record.result)
            out.append(replace(record, result=None))  # a null keeps the stored value
        else:
            out.append(record)
        _log.debug("kalshi_settlement_market", market=record.market_ticker, outcome=outcome, stored=old,
                   result=record.result, expiration_value=record.expiration_value, settled_ts=record.settled_ts)
    return out


def _lifecycle_since(engine: Engine, since_ts: int) -> list[LifecycleRecord]:
    sql = """SELECT raw_json, received_ts FROM market_lifecycle_events
             WHERE event_type IN ('determined', 'settled') AND received_ts >= :since ORDER BY received_ts"""
    frame = read_frame(engine, sql, {"since": since_ts})
    records = []
    for raw, received_ts in frame.iter_rows():
        try:
            records.append(parse_lifecycle(json.loads(raw), int(received_ts)))
        except (FieldError, ValueError, TypeError):
            continue  # stored rows were parsed once already; a row that no longer parses is not ours to fix
    return records


async def refresh_settlements(
    engine: Engine,
    client: KalshiRestClient,
    series: Sequence[str],
    *,
    status: str = "resolved",
    since_seconds: float = 604_800,
    force: bool = False,
    dry_run: bool = False,
    limit: int = 0,
    now_ms: int | None = None,
) -> SettlementSummary:
    """Store the outcomes of markets settled in the last `since_seconds` (idempotent; `dry_run` only counts).

    `limit` > 0 caps the markets fetched: `limit // len(series)` per series (at least 1).
    """
    if status not in STATUS_CHOICES:
        raise ValueError(f"status must be one of {', '.join(STATUS_CHOICES)}")
    if limit < 0:
        raise ValueError("limit must be 0 (no cap) or positive")
    per_series = max(1, limit // len(series)) if limit and series else None
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    since_ms = now - int(since_seconds * 1000)
    summary = SettlementSummary()
    for series_ticker in series:
        try:
            if status == "all":
                raw = await client.list_markets(
                    series_ticker=series_ticker, min_settled_ts=since_ms // 1000, max_settled_ts=now // 1000,
                    max_items=per_series,
                )
            else:
                raw = await client.settled_markets(series_ticker, since_ms // 1000, now // 1000, max_items=per_series)
        except KalshiAuthError:
            raise  # every series would fail the same way
        except KalshiError as exc:
            summary.failed_series += 1
            _log.warning("kalshi_settlements_series_failed", series=series_ticker, error=str(exc))
            continue
        records, rejects = parse_markets(raw, now, source="kalshi.rest.settlements")
        summary.fetched += len(records)
        summary.rejects += len(rejects)
        summary.with_result += sum(1 for r in records if r.result is not None)
        resolved = _resolve_conflicts(engine, records, force, summary)
        if not dry_run:
            record_rejects(engine, rejects)
            write_markets(engine, resolved, catalog_status=None)
    lifecycle = _lifecycle_since(engine, since_ms)
    if lifecycle and not dry_run:
        write_lifecycle(engine, lifecycle)
    summary.lifecycle_applied = len(lifecycle)
    return summary

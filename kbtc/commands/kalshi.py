"""Kalshi steps as commands: refresh-markets, poll-quotes, refresh-settlements, scan-markets, collect-kalshi."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from kbtc.commands.common import console, engine_or_exit, fail, setup
from kbtc.config import Settings

T = TypeVar("T")
SeriesOption = Annotated[
    list[str] | None, typer.Option("--series", help="Series ticker (repeatable; default KALSHI_SERIES).")
]
CatalogSeriesOption = Annotated[
    list[str] | None,
    typer.Option("--series", help="Series ticker (repeatable; default KALSHI_SERIES_TICKER, else KALSHI_SERIES)."),
]


def _catalog_scope(settings: Settings, series: list[str] | None) -> list[str]:
    """The series a catalog listing covers; with KALSHI_EVENT_TICKER, the event's series (one line if not listed)."""
    from kbtc.pipeline.kalshi_catalog import event_series

    chosen = series or list(settings.catalog_series)
    if settings.kalshi_event_ticker is None:
        return chosen
    try:
        return event_series(chosen, settings.kalshi_event_ticker)
    except ValueError as exc:
        raise fail(f"KALSHI_EVENT_TICKER: {exc}") from None


def _run(settings: Settings, step: Callable[..., Awaitable[T]], **kwargs: object) -> T:
    """Run an async step with a REST client and an engine, turning fatal venue errors into one line."""
    from kbtc.venues.kalshi.errors import KalshiFatalError
    from kbtc.venues.kalshi.rest import rest_client_from_settings

    async def go() -> T:
        async with rest_client_from_settings(settings) as client:
            return await step(engine, client, **kwargs)

    engine = engine_or_exit(settings)
    try:
        return asyncio.run(go())
    except KalshiFatalError as exc:
        raise fail(str(exc), code=1) from None
    finally:
        engine.dispose()


def refresh_markets_command(
    status: Annotated[str | None, typer.Option(help="open, unopened, paused, closed, settled or all.")] = None,
    series: CatalogSeriesOption = None,
) -> None:
    """Refresh series → events → markets (strikes, times, fees, status); demote markets that vanished.

    KALSHI_EVENT_TICKER restricts the refresh (and the demotion) to that one event.
    """
    from kbtc.pipeline.kalshi_catalog import STATUS_FILTER_TO_MARKET, refresh_markets

    settings = setup()
    chosen = settings.kalshi_market_status if status is None else status
    if chosen != "all" and chosen not in STATUS_FILTER_TO_MARKET:
        raise fail(f"--status must be one of {', '.join(STATUS_FILTER_TO_MARKET)} or all, got {chosen!r}")
    summary = _run(settings, refresh_markets, series=_catalog_scope(settings, series),
                   status=None if chosen == "all" else chosen, event_ticker=settings.kalshi_event_ticker)
    table = Table("series", "events", "markets", "rejects", "demoted", "unpriced", "error", title="refresh-markets")
    for s in summary.series:
        unpriced = ", ".join(f"{k}={v}" for k, v in sorted(s.skip_reasons.items()))
        table.add_row(s.series_ticker, str(s.events), str(s.markets), str(s.rejects), str(s.demoted),
                      unpriced, s.error or "")
    console.print(table)
    if not summary.ok:
        raise typer.Exit(1)


def poll_quotes_command(  # noqa: PLR0917 — typer maps each option to a parameter
    seconds: Annotated[float, typer.Option(help="How long to poll.")] = 60.0,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 5.0,
    status: Annotated[str | None, typer.Option(help="Venue status of the tracked markets (e.g. active).")] = None,
    max_horizon_seconds: Annotated[float, typer.Option(help="Only markets closing within this (0 = any).")] = 21_600,
    concurrency: Annotated[int, typer.Option(min=1, help="Batch requests (100 markets each) in flight at once.")] = 5,
    series: SeriesOption = None,
) -> None:
    """Poll top of book over REST (batch `GET /markets?tickers=`) for the tracked markets.

    No tracked market is a normal state (between two windows, before the next catalog refresh): the command
    says so and exits 0, as the `poll-quotes` flow completes.
    """
    from kbtc.pipeline.poll_quotes import poll_quotes

    settings = setup()
    summary = _run(settings, poll_quotes, series=series or list(settings.kalshi_series), seconds=seconds,
                   interval_s=interval, status=status, max_horizon_s=max_horizon_seconds or None,
                   concurrency=concurrency)
    console.print(f"markets={summary.markets} polls={summary.polls} quotes={summary.quotes} "
                  f"rejects={summary.rejects} failures={summary.failures}")
    if summary.markets == 0:
        console.print("nothing to poll: the catalog lists no unclosed market of these series within the horizon "
                      "(normal between two windows; on a new database, run refresh-markets first)")


def refresh_settlements_command(  # noqa: PLR0917 — typer maps each option to a parameter
    status: Annotated[str, typer.Option(help="resolved, settled or all.")] = "resolved",
    since_seconds: Annotated[float, typer.Option(help="Window of settlement times.")] = 604_800,
    force: Annotated[bool, typer.Option(help="Overwrite a stored result that disagrees.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Fetch and count, write nothing.")] = False,
    limit: Annotated[int, typer.Option(min=0, help="Markets fetched at most, split evenly over the series "
                                                   "(0 = every market in the window).")] = 0,
    debug: Annotated[bool, typer.Option("--debug", help="Debug logging: every market's outcome.")] = False,
    series: SeriesOption = None,
) -> None:
    """Store results, expiration values and settlement values of settled markets (REST + lifecycle events)."""
    from kbtc.pipeline.settlements import STATUS_CHOICES, refresh_settlements

    if status not in STATUS_CHOICES:
        raise fail(f"--status must be one of {', '.join(STATUS_CHOICES)}")
    settings = setup(debug)
    summary = _run(settings, refresh_settlements, series=series or list(settings.kalshi_series), status=status,
                   since_seconds=since_seconds, force=force, dry_run=dry_run, limit=limit)
    console.print(f"fetched={summary.fetched} with_result={summary.with_result} created={summary.created} "
                  f"conflicts={summary.conflicts} rejects={summary.rejects} "
                  f"lifecycle_applied={summary.lifecycle_applied} failed_series={summary.failed_series}")
    if summary.failed_series:
        raise typer.Exit(1)


def scan_markets_command(
    status: Annotated[str | None, typer.Option(help="Market status filter (default: any).")] = None,
    series: CatalogSeriesOption = None,
) -> None:
    """Print what each configured series lists now (no database writes); KALSHI_EVENT_TICKER: that event only."""
    from kbtc.pipeline.kalshi_catalog import SeriesScan, scan_markets
    from kbtc.venues.kalshi.errors import KalshiFatalError
    from kbtc.venues.kalshi.rest import rest_client_from_settings

    settings = setup()
    chosen = _catalog_scope(settings, series)

    async def go() -> list[SeriesScan]:
        async with rest_client_from_settings(settings) as client:
            return await scan_markets(client, chosen, status=status, event_ticker=settings.kalshi_event_ticker)

    try:
        scans = asyncio.run(go())
    except KalshiFatalError as exc:
        raise fail(str(exc), code=1) from None
    table = Table("series", "markets", "by status", "samples", "error", title="scan-markets")
    empty = False
    for scan in scans:
        by_status = ", ".join(f"{k}={v}" for k, v in sorted(scan.by_status.items()))
        table.add_row(scan.series_ticker, str(scan.markets), by_status, " ".join(scan.samples), scan.error or "")
        empty = empty or scan.markets == 0
    console.print(table)
    if empty:
        raise typer.Exit(1)


def collect_kalshi_command(
    seconds: Annotated[float | None, typer.Option(help="Session length (default COLLECTOR_SECONDS).")] = None,
    market: Annotated[list[str] | None, typer.Option("--market", help="Market ticker (repeatable).")] = None,
    cfbenchmarks: Annotated[bool, typer.Option(help="Also store BRTI from cfbenchmarks_value (entitled key).")] = False,
) -> None:
    """Stream ticker, order books, trades and lifecycle events over the WebSocket into the database."""
    from kbtc.pipeline.kalshi_collector import collect_kalshi
    from kbtc.venues.kalshi.errors import KalshiFatalError
    from kbtc.venues.kalshi.ws import StreamSettings

    settings = setup()
    engine = engine_or_exit(settings)
    stream = StreamSettings(index_ids=("BRTI",) if cfbenchmarks else ())
    try:
        summary = asyncio.run(collect_kalshi(
            settings, engine, settings.collector_seconds if seconds is None else seconds,
            markets=market or None, stream_settings=stream,
        ))
    except KalshiFatalError as exc:
        raise fail(str(exc), code=1) from None
    finally:
        engine.dispose()
    console.print(f"markets={summary.markets} frames={summary.frames} quotes={summary.quotes} books={summary.books} "
                  f"trades={summary.trades} lifecycle={summary.lifecycle} index={summary.index_prices} "
                  f"feed_events={summary.feed_events} rejects={summary.rejects} connects={summary.connects}")


def register(app: typer.Typer) -> None:
    """Add the Kalshi commands to the `kbtc` app."""
    app.command("refresh-markets")(refresh_markets_command)
    app.command("poll-quotes")(poll_quotes_command)
    app.command("refresh-settlements")(refresh_settlements_command)
    app.command("scan-markets")(scan_markets_command)
    app.command("collect-kalshi")(collect_kalshi_command)

"""Spot commands: `kbtc collect` (Coinbase and/or Kalshi streams) and `kbtc backfill-spot` (REST candles)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Annotated

import typer

from kbtc.commands.common import console, engine_or_exit, fail, setup
from kbtc.log import get_logger

if TYPE_CHECKING:

    from kbtc.venues.coinbase.rest import RestSource

_log = get_logger(__name__)


def collect(
    coinbase: Annotated[bool, typer.Option("--coinbase", help="Collect the Coinbase spot feed.")] = False,
    kalshi: Annotated[bool, typer.Option("--kalshi", help="Collect the Kalshi market-data streams.")] = False,
    seconds: Annotated[
        float | None, typer.Option(help="Run time in seconds (default COLLECTOR_SECONDS; 0 = until SIGINT/SIGTERM).")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Log every frame (DEBUG level).")] = False,
) -> None:
    """Collect live streams into the database and the tape; flush and exit cleanly on SIGINT/SIGTERM."""
    from websockets.exceptions import InvalidURI

    from kbtc.db.migrate import DatabaseRevisionError, upgrade_database
    from kbtc.pipeline.collect import run_collectors
    from kbtc.pipeline.sessions import stream_collectors
    from kbtc.pipeline.spot_collector import SpotCollectResult
    from kbtc.venues.kalshi.errors import KalshiFatalError

    if seconds is not None and seconds < 0:
        raise fail("--seconds must be >= 0")
    settings = setup(debug)
    run_s = settings.collector_seconds if seconds is None else seconds
    engine = engine_or_exit(settings)
    try:
        collectors = stream_collectors(settings, engine, coinbase=coinbase, kalshi=kalshi, debug=debug)
        try:
            upgrade_database(settings.sqlalchemy_url)
        except DatabaseRevisionError as exc:
            raise fail(str(exc)) from None
        if not collectors:
            # As the seed's collector: with neither flag it only initialises the database.
            _log.info("collect_startup", collectors=[])
            console.print("database ready; nothing to collect (use --coinbase and/or --kalshi)")
            return
        _log.info("collect_start", collectors=list(collectors), seconds=run_s)
        results = asyncio.run(run_collectors(collectors, run_s))
    except InvalidURI as exc:
        raise fail(f"not a WebSocket URL: {exc}") from None
    except KalshiFatalError as exc:  # bad credentials or a rejected subscription: retrying cannot help
        raise fail(str(exc), code=1) from None
    finally:
        engine.dispose()
    spot = results.get("coinbase")
    if isinstance(spot, SpotCollectResult):
        stats = spot.feed
        console.print(
            f"coinbase: {spot.ticks_written:,} ticks, {stats.frames:,} frames, {spot.rejects_written:,} rejects, "
            f"{stats.connects} connects, {stats.gaps} gaps, {stats.stale_periods} stale periods"
            + (f"; tape under {spot.tape_root}" if spot.tape_root is not None else "")
        )
    for name, result in results.items():
        if name != "coinbase":
            console.print(f"{name}: {result}")


def parse_time_s(text: str, *, now_s: float | None = None) -> int:
    """Unix seconds from epoch seconds, an ISO-8601 time (UTC when no offset) or `now`."""
    from datetime import UTC, datetime

    value = text.strip()
    if value.lower() == "now":
        return int(time.time() if now_s is None else now_s)
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise fail(f"not a time: {text!r} (use epoch seconds or ISO-8601, e.g. 2026-11-25T08:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def backfill_spot_command(
    *,
    start: Annotated[
        str | None, typer.Option(help="Start: ISO-8601 (UTC unless an offset is given) or epoch seconds.")
    ] = None,
    end: Annotated[str, typer.Option(help="End (inclusive): ISO-8601, epoch seconds or 'now'.")] = "now",
    granularity: Annotated[int, typer.Option(help="Candle size in seconds.")] = 60,
    source: Annotated[
        str | None, typer.Option(help="advanced or exchange candles (default COINBASE_SOURCE).")
    ] = None,
    product: Annotated[str | None, typer.Option(help="Product (default COINBASE_PRODUCT_ID).")] = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Only the windows where spot data is missing (tick holes > 30 s, unfilled sequence gaps).",
        ),
    ] = False,
    hours: Annotated[float, typer.Option(help="With --repair and no --start: look back this many hours.")] = 24.0,
) -> None:
    """Backfill spot_candles from Coinbase REST candles (paged, <= 10 req/s, idempotent)."""
    from rich.progress import Progress, TaskID

    from kbtc.db.migrate import DatabaseRevisionError, upgrade_database
    from kbtc.pipeline.backfill import BackfillResult, backfill_spot, repair_windows
    from kbtc.venues.coinbase.rest import CandlesClient, CoinbaseRestError, check_granularity

    settings = setup()
    chosen = (source or settings.coinbase_source).lower()
    if chosen not in ("advanced", "exchange"):
        raise fail(f"--source must be advanced or exchange, got {chosen!r}")
    rest_source: RestSource = "exchange" if chosen == "exchange" else "advanced"
    try:
        check_granularity(rest_source, granularity)
    except ValueError as exc:
        raise fail(str(exc)) from None
    end_s = parse_time_s(end)
    if start is None and not repair:
        raise fail("--start is required (or use --repair)")
    start_s = parse_time_s(start) if start is not None else int(end_s - hours * 3600)
    if end_s < start_s:
        raise fail("--end is before --start")
    base_url = settings.coinbase_exchange_rest_url if rest_source == "exchange" else settings.coinbase_rest_url
    product_id = product or settings.coinbase_product_id
    try:
        upgrade_database(settings.sqlalchemy_url)
    except DatabaseRevisionError as exc:
        raise fail(str(exc)) from None
    engine = engine_or_exit(settings)
    results: list[BackfillResult] = []
    try:
        windows = (
            [(a // 1000, b // 1000) for a, b in repair_windows(engine, product_id, start_s * 1000, end_s * 1000)]
            if repair
            else [(start_s, end_s)]
        )
        with CandlesClient(rest_source, base_url) as client, Progress(console=console, transient=True) as bar:
            for first_s, last_s in windows:
                task = bar.add_task(f"{product_id} {granularity}s candles from {first_s}", total=None)

                def advance(done: int, total: int, task: TaskID = task) -> None:
                    bar.update(task, completed=done, total=total)

                results.append(
                    backfill_spot(
                        engine,
                        client,
                        product_id,
                        first_s,
                        last_s,
                        granularity_s=granularity,
                        progress=advance,
                    )
                )
    except CoinbaseRestError as exc:
        raise fail(str(exc)) from None
    finally:
        engine.dispose()
    console.print(
        (f"{len(windows)} window(s) to repair; " if repair else "")
        + f"{product_id}: {sum(r.candles for r in results):,} candles in {sum(r.pages for r in results)} requests, "
        f"{sum(r.rejects for r in results)} rejects, {sum(r.empty_buckets for r in results):,} buckets without trades"
    )


def register(app: typer.Typer) -> None:
    """Add the spot commands to the `kbtc` app."""
    app.command("collect")(collect)
    app.command("backfill-spot")(backfill_spot_command)

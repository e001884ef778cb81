"""Spot commands: `kbtc collect` (Coinbase and/or Kalshi streams) and `kbtc backfill-spot` (REST candles)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Annotated, Any

import typer

from kbtc.commands.common import console, fail, setup
from kbtc.config import Settings
from kbtc.log import get_logger

_log = get_logger(__name__)


def _kalshi_collector(settings: Settings, engine: Any, debug: bool) -> Any:
    # The Kalshi stream collector arrives with the Kalshi client; wiring it is this one call:
    # `return partial(collect_kalshi, settings, engine, debug=debug)`.
    raise fail("the Kalshi collector is not available yet (it lands with the Kalshi client); use --coinbase")


def collect(
    coinbase: Annotated[bool, typer.Option("--coinbase", help="Collect the Coinbase spot feed.")] = False,
    kalshi: Annotated[bool, typer.Option("--kalshi", help="Collect the Kalshi market-data streams.")] = False,
    seconds: Annotated[
        float | None, typer.Option(help="Run time in seconds (default COLLECTOR_SECONDS; 0 = until SIGINT/SIGTERM).")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Log every frame (DEBUG level).")] = False,
) -> None:
    """Collect live streams into the database and the tape; flush and exit cleanly on SIGINT/SIGTERM."""
    from kbtc.db.engine import make_engine
    from kbtc.db.migrate import DatabaseRevisionError, upgrade_database
    from kbtc.pipeline.collect import Collector, run_collectors
    from kbtc.pipeline.spot_collector import SpotCollectResult, collect_spot

    if not coinbase and not kalshi:
        raise fail("choose what to collect: --coinbase, --kalshi or both")
    if seconds is not None and seconds < 0:
        raise fail("--seconds must be >= 0")
    settings = setup(debug)
    run_s = settings.collector_seconds if seconds is None else seconds
    engine = make_engine(settings.sqlalchemy_url)
    try:
        collectors: dict[str, Collector] = {}
        if kalshi:
            collectors["kalshi"] = _kalshi_collector(settings, engine, debug)
        if coinbase:
            collectors["coinbase"] = partial(collect_spot, settings, engine, debug=debug)
        try:
            upgrade_database(settings.sqlalchemy_url)
        except DatabaseRevisionError as exc:
            raise fail(str(exc)) from None
        _log.info("collect_start", collectors=list(collectors), seconds=run_s)
        results = asyncio.run(run_collectors(collectors, run_s))
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


def register(app: typer.Typer) -> None:
    """Add the spot commands to the `kbtc` app."""
    app.command("collect")(collect)

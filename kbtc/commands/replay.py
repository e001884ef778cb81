"""Research commands over recorded data: `replay` (frames → database → edges → scores) and `sweep` (settings
compared on history). Formats and method: docs/RESEARCH.md."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kbtc.commands.common import console, engine_or_exit, err_console, fail, setup
from kbtc.commands.spot import parse_time_s
from kbtc.config import Settings

if TYPE_CHECKING:
    from kbtc.pipeline.edges import EdgeSettings

MAX_ERRORS_SHOWN = 20


def _cadence_s(text: str) -> float:
    from kbtc.pipeline.sweep import SweepParamError, parse_duration_s

    try:
        value = parse_duration_s(text)
    except SweepParamError as exc:
        raise fail(f"--cadence: {exc}") from None
    if value <= 0:
        raise fail("--cadence must be positive")
    return value


def _period(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    from_ts = None if start is None else parse_time_s(start) * 1000
    to_ts = None if end is None else parse_time_s(end) * 1000
    if from_ts is not None and to_ts is not None and to_ts < from_ts:
        raise fail("--to is before --from")
    return from_ts, to_ts


def _base_settings(settings: Settings, contracts: float) -> EdgeSettings:
    from kbtc.pipeline.edges import edge_settings_from

    return edge_settings_from(settings, contracts=contracts)


def replay_command(  # noqa: PLR0917 — typer maps each option to a parameter
    tape: Annotated[list[Path], typer.Option(help="Tape directory or JSONL(.gz) file; repeat for more.",
                                             exists=True)],
    start: Annotated[str | None, typer.Option("--from", help="Replay frames received from (ISO-8601/epoch s).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="… up to this time (inclusive).")] = None,
    cadence: Annotated[str, typer.Option(help="Edge cadence over the period (e.g. 10s, 1m).")] = "10s",
    settlements: Annotated[Path | None, typer.Option(help="Settlements CSV (ticker,result[,expiration_value,"
                                                          "settled_time]).", exists=True, dir_okay=False)] = None,
    book_interval: Annotated[float, typer.Option(help="Seconds between stored book rows per market.")] = 1.0,
    contracts: Annotated[float, typer.Option(help="Order size the fees and EVs are computed for.")] = 1.0,
) -> None:
    """Replay recorded frames into the database (DATABASE_URL/DB_PATH), compute edges over the period, score.

    A SQLite file the replay creates is written with bulk-load pragmas (synchronous=OFF, a larger page cache):
    an OS crash mid-replay can corrupt it, and re-running the replay rebuilds it.
    """
    from kbtc.db.engine import sqlite_file_is_new
    from kbtc.db.migrate import DatabaseRevisionError, upgrade_database
    from kbtc.pipeline.replay import run_replay

    settings = setup()
    cadence_s = _cadence_s(cadence)
    from_ts, to_ts = _period(start, end)
    created = sqlite_file_is_new(settings.sqlalchemy_url)
    try:
        upgrade_database(settings.sqlalchemy_url)
    except DatabaseRevisionError as exc:
        raise fail(str(exc)) from None
    engine = engine_or_exit(settings, bulk_load=created)
    try:
        result = run_replay(engine, tape, _base_settings(settings, contracts), cadence_s=cadence_s, from_ts=from_ts,
                            to_ts=to_ts, settlements=settlements, book_interval_s=book_interval)
    finally:
        engine.dispose()
    ingest = result.ingest
    console.print(
        f"frames: {ingest.frames:,} replayed ({ingest.skipped_outside:,} outside the period); "
        f"quotes {ingest.quotes:,}, "
        f"books {ingest.books:,}, trades {ingest.trades:,}, lifecycle {ingest.lifecycle:,}, "
        f"index prints {ingest.index_prices:,}, spot ticks {ingest.ticks:,}, feed events {ingest.feed_events:,}, "
        f"rejects {ingest.rejects:,}", soft_wrap=True, highlight=False)
    if settlements is not None:
        console.print(f"settlements: {result.settlements_applied:,} applied, "
                      f"{len(result.settlement_errors):,} rejected")
        for line, reason in result.settlement_errors[:MAX_ERRORS_SHOWN]:
            err_console.print(f"  {settlements}:{line}: {reason}", highlight=False, soft_wrap=True)
    scored = result.score.inserted if result.score is not None else 0
    console.print(f"edges: {result.asofs:,} as-of times, {result.edges_written:,} edges, "
                  f"{result.snapshots_written:,} snapshots; {scored:,} snapshots scored", highlight=False)
    console.print("time: " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in result.stage_s.items()),
                  highlight=False)
    if ingest.frames == 0:
        raise typer.Exit(1)


def sweep_command(  # noqa: PLR0917 — typer maps each option to a parameter
    param: Annotated[list[str], typer.Option(help="name=v1,v2,… e.g. vol.half_life=5m,15m (repeat: product).")],
    start: Annotated[str, typer.Option("--from", help="First as-of time (ISO-8601/epoch s).")],
    end: Annotated[str, typer.Option("--to", help="Last as-of time.")],
    cadence: Annotated[str, typer.Option(help="As-of cadence (e.g. 10s, 1m).")] = "1m",
    plot: Annotated[Path | None, typer.Option(help="Write the comparison plot (PNG) here.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write the comparison table here (.csv or .parquet).")] = None,
    contracts: Annotated[float, typer.Option(help="Order size the fees and EVs are computed for.")] = 1.0,
) -> None:
    """Recompute edges over history for each setting, score each against settlements, compare."""
    import polars as pl

    from kbtc.pipeline.sweep import SweepParamError, run_sweep, sweep_plot, sweep_settings

    settings = setup()
    cadence_s = _cadence_s(cadence)
    from_ts, to_ts = _period(start, end)
    assert from_ts is not None and to_ts is not None
    try:
        points = sweep_settings(_base_settings(settings, contracts), param)
    except SweepParamError as exc:
        raise fail(str(exc)) from None
    engine = engine_or_exit(settings)
    try:
        result = run_sweep(engine, points, from_ts, to_ts, cadence_s)
    except ValueError as exc:
        raise fail(str(exc)) from None
    finally:
        engine.dispose()
    with pl.Config(tbl_rows=100, tbl_cols=30, tbl_width_chars=200, float_precision=4):
        console.print(str(result.comparison), highlight=False, soft_wrap=True)
        if result.by_lead.height:
            console.print(str(result.by_lead), highlight=False, soft_wrap=True)
    if output is not None:
        if output.suffix == ".parquet":
            result.comparison.write_parquet(output)
        else:
            result.comparison.write_csv(output)
        console.print(f"comparison written to {output}")
    if plot is not None:
        console.print(f"plot written to {sweep_plot(result, plot)}")
    if int(result.comparison["snapshots"].sum()) == 0:
        err_console.print("no settled snapshots in the period: nothing was scored")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `replay` and `sweep` to the `kbtc` app."""
    app.command("replay")(replay_command)
    app.command("sweep")(sweep_command)

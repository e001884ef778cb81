"""Operational commands: data health, export for notebooks, retention."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kbtc.commands.common import console, engine_or_exit, fail, setup


def _frame_table(title: str, rows: list[dict[str, object]]) -> Table:
    table = Table(title=title)
    if not rows:
        table.add_column("(none)")
        return table
    for name in rows[0]:
        table.add_column(name)
    for row in rows:
        table.add_row(*("—" if value is None else f"{value:,.1f}" if isinstance(value, float) else str(value)
                        for value in row.values()))
    return table


def health(window_hours: Annotated[float, typer.Option(help="Window for events and rejects.")] = 24.0) -> None:
    """Show stream freshness, feed events (gaps, stale periods, reconnects) and rejects."""
    from kbtc.pipeline.health import data_health

    settings = setup()
    engine = engine_or_exit(settings)
    try:
        report = data_health(engine, int(time.time() * 1000), window_hours * 3600)
    finally:
        engine.dispose()
    console.print(_frame_table("freshness", report.freshness.drop("latest_ts").to_dicts()))
    console.print(_frame_table(f"feed events, last {window_hours:g} h", report.feed_events.to_dicts()))
    console.print(_frame_table(f"rejects, last {window_hours:g} h", report.rejects.to_dicts()))


def export(
    table: Annotated[str, typer.Option(help="Table to export.")],
    output: Annotated[Path | None, typer.Option(help="Output file (default data/export/<table>.<fmt>).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    since_hours: Annotated[float | None, typer.Option(help="Only rows newer than this.")] = None,
) -> None:
    """Export a table to Parquet or CSV (time columns as UTC datetimes; edge_snapshots with the contracts and
    params_json of their model params)."""
    from kbtc.pipeline.export import export_table

    if fmt not in ("parquet", "csv"):
        raise fail(f"--format must be parquet or csv, got {fmt!r}")
    settings = setup()
    target = output or settings.data_dir / "export" / f"{table}.{fmt}"
    since_ts = None if since_hours is None else int((time.time() - since_hours * 3600) * 1000)
    engine = engine_or_exit(settings)
    try:
        rows = export_table(engine, table, target, fmt="csv" if fmt == "csv" else "parquet", since_ts=since_ts)
    except ValueError as exc:
        raise fail(str(exc)) from None
    finally:
        engine.dispose()
    console.print(f"wrote {rows:,} rows to {target}")


def prune_command(
    older_than_days: Annotated[float, typer.Option(help="Delete data older than this many days.")] = 30.0,
    tables: Annotated[str | None, typer.Option(help="Comma-separated tables (default: all prunable).")] = None,
    tapes: Annotated[bool, typer.Option(help="Also delete old tape files under DATA_DIR/tape.")] = True,
) -> None:
    """Delete old raw market data (ticks, quotes, books, trades, feed events, rejects) and old tapes."""
    from kbtc.pipeline.prune import PRUNABLE, prune

    settings = setup()
    chosen = tuple(t.strip() for t in tables.split(",") if t.strip()) if tables else tuple(PRUNABLE)
    cutoff_ts = int((time.time() - older_than_days * 86_400) * 1000)
    engine = engine_or_exit(settings)
    try:
        result = prune(engine, older_than_ts=cutoff_ts, tables=chosen,
                       tape_root=settings.data_dir / "tape" if tapes else None)
    except ValueError as exc:
        raise fail(str(exc)) from None
    finally:
        engine.dispose()
    for table, count in result.rows_deleted.items():
        console.print(f"{table}: {count:,} rows deleted")
    console.print(f"tape: {result.tape_files_removed} files, {result.tape_bytes_removed:,} bytes removed")


def register(app: typer.Typer) -> None:
    """Add the maintenance commands to the `kbtc` app."""
    app.command("health")(health)
    app.command("export")(export)
    app.command("prune")(prune_command)

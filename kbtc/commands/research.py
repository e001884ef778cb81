"""Research commands: import the CSV files users have."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from kbtc.commands.common import console, engine_or_exit, err_console, fail, setup

MAX_ERRORS_SHOWN = 20


def import_command(
    kind: Annotated[str, typer.Argument(help="markets, quotes, spot, candles or settlements.")],
    paths: Annotated[list[Path], typer.Argument(help="CSV files.", exists=True, dir_okay=False)],
    price_unit: Annotated[str, typer.Option(help="Quote prices: auto, dollars or cents.")] = "auto",
    product_id: Annotated[str, typer.Option(help="Spot product for spot/candle files without one.")] = "BTC-USD",
    granularity_s: Annotated[int, typer.Option(help="Candle width for files without one.")] = 60,
) -> None:
    """Import CSV files (formats: docs/RESEARCH.md); bad rows are reported with line numbers and kept out."""
    from kbtc.pipeline.imports import IMPORT_KINDS, ImportFormatError, import_csv

    if kind not in IMPORT_KINDS:
        raise fail(f"kind must be one of {', '.join(IMPORT_KINDS)}, got {kind!r}")
    if price_unit not in ("auto", "dollars", "cents"):
        raise fail(f"--price-unit must be auto, dollars or cents, got {price_unit!r}")
    settings = setup()
    engine = engine_or_exit(settings)
    total_written = 0
    total_errors = 0
    try:
        for path in paths:
            try:
                result = import_csv(
                    engine, kind, path, now_ts=int(time.time() * 1000), price_unit=price_unit,  # type: ignore[arg-type]
                    product_id=product_id, granularity_s=granularity_s,
                )
            except ImportFormatError as exc:
                raise fail(str(exc)) from None
            console.print(f"{path}: {result.rows_read:,} rows read, {result.rows_written:,} imported, "
                          f"{len(result.errors):,} rejected", soft_wrap=True)
            for line, reason in result.errors[:MAX_ERRORS_SHOWN]:
                err_console.print(f"  {path}:{line}: {reason}", highlight=False, soft_wrap=True)
            if len(result.errors) > MAX_ERRORS_SHOWN:
                err_console.print(f"  … {len(result.errors) - MAX_ERRORS_SHOWN} more")
            total_written += result.rows_written
            total_errors += len(result.errors)
    finally:
        engine.dispose()
    if total_written == 0 and total_errors:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the research commands to the `kbtc` app."""
    app.command("import")(import_command)

"""Ledger and scoring commands: opportunity loop, ledger settlement, snapshot scoring, performance reports."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kbtc.commands.common import console, engine_or_exit, fail, setup
from kbtc.log import get_logger

if TYPE_CHECKING:
    import polars as pl

    from kbtc.pipeline.opportunities import OpportunityTick

_log = get_logger("kbtc.scoring")


def _now_ms() -> int:
    return int(time.time() * 1000)


def score_snapshots_command(
    batch_rows: Annotated[int, typer.Option(help="Snapshots scored per batch.", min=1)] = 50_000,
) -> None:
    """Score every settled, not yet scored edge snapshot (model and market side by side). Idempotent."""
    from kbtc.pipeline.score_snapshots import score_snapshots

    settings = setup()
    engine = engine_or_exit(settings)
    try:
        run = score_snapshots(engine, _now_ms(), batch_rows=batch_rows)
    finally:
        engine.dispose()
    _log.info("snapshots_scored", candidates=run.candidates, inserted=run.inserted, errors=run.errors)
    console.print(f"scored {run.inserted:,} snapshots ({run.errors:,} with errors)")


def settle_ledger_command() -> None:
    """Close open shadow positions whose market has a result: outcome and realised PnL with fees."""
    from kbtc.pipeline.settle_ledger import settle_ledger

    settings = setup()
    engine = engine_or_exit(settings)
    try:
        run = settle_ledger(engine)
    finally:
        engine.dispose()
    _log.info("ledger_settled", open_before=run.open_before, settled=run.settled, pnl_dollars=run.pnl_dollars)
    console.print(f"settled {run.settled:,} of {run.open_before:,} open positions, PnL ${run.pnl_dollars:+,.4f}")


def _print_tick(tick: OpportunityTick) -> None:
    reasons = ", ".join(f"{code} {count}" for code, count in tick.reason_counts.items()) or "—"
    console.print(f"{tick.status}: {tick.evaluated} evaluated, {tick.takes} TAKE; PASS reasons: {reasons}",
                  soft_wrap=True)
    if not tick.takes:
        return
    for row in tick.decisions.filter(decision="TAKE").iter_rows(named=True):
        console.print(f"  TAKE {row['market_ticker']} {row['side']} at {row['price_cents']:.2f}¢ "
                      f"p_model {row['p_model']:.3f} p_market {row['p_market']:.3f} "
                      f"ev_net ${row['ev_net_dollars']:+.4f}", soft_wrap=True)


def run_opportunity_loop_command(
    *,
    interval_seconds: Annotated[float, typer.Option(help="Seconds between ticks.", min=0.0)] = 10.0,
    once: Annotated[bool, typer.Option("--once", help="Run one tick and exit.")] = False,
    min_ev: Annotated[float, typer.Option(help="TAKE when ev_net ≥ this ($/contract).")] = 0.03,
    cost_buffer: Annotated[float, typer.Option(help="Subtracted from the raw EV ($/contract).", min=0.0)] = 0.01,
    emit_passes: Annotated[bool, typer.Option("--emit-passes", help="Record PASS rows too.")] = False,
    both_sides: Annotated[bool, typer.Option("--both-sides", help="Evaluate YES and NO separately.")] = False,
    max_takes_per_tick: Annotated[int, typer.Option(help="TAKEs allowed per tick.", min=0)] = 1,
    cooldown_seconds: Annotated[float, typer.Option(help="No new TAKE on a market side for this long.")] = 120.0,
    max_spot_age: Annotated[float, typer.Option(help="spot_stale above this age (s).")] = 10.0,
    max_quote_age: Annotated[float, typer.Option(help="quote_stale above this age (s).")] = 10.0,
    max_snapshot_age_seconds: Annotated[float, typer.Option(help="Refuse older snapshot batches.")] = 60.0,
    kelly_multiplier: Annotated[float, typer.Option(help="Fraction of full Kelly recorded.")] = 0.25,
) -> None:
    """Turn the newest edge snapshots into TAKE/PASS ledger rows and shadow positions, every interval."""
    from kbtc.pipeline.opportunities import run_opportunity_loop
    from kbtc.scoring.ledger import LedgerParams

    settings = setup()
    params = LedgerParams(
        min_ev_dollars=min_ev, cost_buffer_dollars=cost_buffer, both_sides=both_sides,
        max_takes_per_tick=max_takes_per_tick, cooldown_s=cooldown_seconds, max_spot_age_s=max_spot_age,
        max_quote_age_s=max_quote_age, kelly_multiplier=kelly_multiplier,
    )
    engine = engine_or_exit(settings)

    def on_tick(tick: OpportunityTick) -> None:
        _log.info("opportunity_tick", status=tick.status, asof_ts=tick.asof_ts, evaluated=tick.evaluated,
                  takes=tick.takes, reasons=tick.reason_counts)
        _print_tick(tick)

    try:
        run_opportunity_loop(engine, params, interval_s=interval_seconds, duration_s=0.0 if once else None,
                             emit_passes=emit_passes, max_snapshot_age_s=max_snapshot_age_seconds, on_tick=on_tick)
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        engine.dispose()

def _print_frame(title: str, frame: pl.DataFrame) -> None:
    from rich.table import Table

    from kbtc.pipeline.report import format_value

    table = Table(title=title, title_justify="left")
    if frame.height == 0:
        table.add_column("(no rows)")
    for name in frame.columns:
        table.add_column(name, overflow="fold")
    for row in frame.iter_rows():
        table.add_row(*(format_value(value) for value in row))
    console.print(table)


def report_model_performance(
    since_seconds: Annotated[float, typer.Option(help="Window length in seconds.", min=1.0)] = 604_800.0,
    scope: Annotated[str, typer.Option(help="Ledger rows: policy (TAKEs) or all (every recorded decision).")]
    = "policy",
    output_dir: Annotated[Path | None, typer.Option(help="Where the markdown and PNGs go "
                                                         "(default DATA_DIR/reports).")] = None,
    files: Annotated[bool, typer.Option(help="Write the markdown file and PNG plots.")] = True,
    bins: Annotated[int, typer.Option(help="Equal-mass calibration bins.", min=1)] = 10,
) -> None:
    """Model vs market scores, calibration, ledger PnL and data health over a window."""
    from kbtc.pipeline.report import build_performance_report

    if scope not in ("policy", "all"):
        raise fail(f"--scope must be policy or all, got {scope!r}")
    settings = setup()
    target = (output_dir or settings.data_dir / "reports") if files else None
    engine = engine_or_exit(settings)
    try:
        report = build_performance_report(engine, _now_ms(), since_s=since_seconds,
                                          scope="policy" if scope == "policy" else "all", output_dir=target,
                                          n_bins=bins)
    finally:
        engine.dispose()
    for name, frame in report.tables.items():
        _print_frame(name, frame)
    if report.markdown_path is not None:
        console.print(f"wrote {report.markdown_path} and {len(report.plot_paths)} plots", soft_wrap=True)


def report_open_positions(
    limit: Annotated[int, typer.Option(help="Open positions shown.", min=1)] = 100,
    settled_limit: Annotated[int, typer.Option(help="Settled positions shown (0 = all).", min=0)] = 30,
) -> None:
    """Open shadow positions marked to the latest quote, and the most recently settled ones."""
    from kbtc.pipeline.positions_report import positions_report

    settings = setup()
    engine = engine_or_exit(settings)
    try:
        report = positions_report(engine, _now_ms(), limit=limit, settled_limit=settled_limit)
    finally:
        engine.dispose()
    _print_frame("open positions", report.open_positions)
    _print_frame("settled positions", report.settled_positions)
    _print_frame("totals", report.totals)


def register(app: typer.Typer) -> None:
    """Add the ledger and scoring commands to the `kbtc` app."""
    app.command("run-opportunity-loop")(run_opportunity_loop_command)
    app.command("settle-ledger")(settle_ledger_command)
    app.command("score-snapshots")(score_snapshots_command)
    app.command("report-model-performance")(report_model_performance)
    app.command("report-open-positions")(report_open_positions)


"""Edge commands: one tick (`compute-edges`), a bounded live loop (`run-live-edges`), and the what-if
calculator / batch API (`price`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kbtc.commands.common import console, engine_or_exit, fail, setup
from kbtc.config import Settings
from kbtc.edge.params import EdgeParams
from kbtc.log import get_logger

if TYPE_CHECKING:
    from kbtc.pipeline.edges import EdgeSettings

_log = get_logger("kbtc.commands.edges")


def _edge_settings(
    settings: Settings,
    *,
    contracts: float,
    settlement: str,
    basis: bool | None,
    index_spot: bool | None,
    sigma_fallback: str | None,
) -> EdgeSettings:
    from kbtc.pipeline.edges import edge_settings_from

    if settlement not in ("average", "point"):
        raise fail(f"--settlement must be average or point, got {settlement!r}")
    if sigma_fallback not in (None, "prior", "none"):
        raise fail(f"--sigma-fallback must be prior or none, got {sigma_fallback!r}")
    return edge_settings_from(
        settings,
        contracts=contracts,
        settlement=settlement,  # type: ignore[arg-type]
        basis=basis,
        index_spot=index_spot,
        sigma_fallback=sigma_fallback,  # type: ignore[arg-type]
    )


# The model switches of both tick commands; unset, each follows its setting (EDGE_BASIS, EDGE_INDEX_SPOT,
# EDGE_SIGMA_FALLBACK).
BasisOption = Annotated[
    bool | None,
    typer.Option("--basis/--no-basis", help="Correct Coinbase to the settlement index (default: EDGE_BASIS)."),
]
IndexSpotOption = Annotated[
    bool | None,
    typer.Option("--index-spot/--no-index-spot",
                 help="Use fresh index prints as the spot (default: EDGE_INDEX_SPOT)."),
]
SigmaFallbackOption = Annotated[
    str | None,
    typer.Option(help="σ when the estimate is not ready: prior, or none (skip: sigma_not_ready). "
                      "Default: EDGE_SIGMA_FALLBACK."),
]


def compute_edges_command(  # noqa: PLR0917 — typer maps each option to a parameter
    debug: Annotated[bool, typer.Option("--debug", help="Debug logging, and print every market's outcome.")] = False,
    contracts: Annotated[float, typer.Option(help="Order size the fees and EVs are computed for.")] = 1.0,
    settlement: Annotated[str, typer.Option(help="average (60 s settlement average) or point.")] = "average",
    basis: BasisOption = None,
    index_spot: IndexSpotOption = None,
    sigma_fallback: SigmaFallbackOption = None,
) -> None:
    """Run one edge tick now: write edges and edge_snapshots and print the sanity lines."""
    from kbtc.pipeline.edges import compute_edge_tick, sanity_lines

    settings = setup(debug)
    edge_settings = _edge_settings(settings, contracts=contracts, settlement=settlement, basis=basis,
                                   index_spot=index_spot, sigma_fallback=sigma_fallback)
    engine = engine_or_exit(settings)
    try:
        tick = compute_edge_tick(engine, int(time.time() * 1000), edge_settings)
    finally:
        engine.dispose()
    for line in sanity_lines(tick):
        console.print(line, highlight=False, soft_wrap=True)
    if debug:
        for row in tick.edges.select("market_ticker", "skip_reason", "p_model", "p_market").iter_rows():
            console.print("  " + "  ".join("—" if v is None else str(v) for v in row), highlight=False)
    _log.info("edges_tick", asof_ts=tick.asof_ts, edges=tick.edges_written, snapshots=tick.snapshots_written,
              outcomes=tick.skip_counts())
    if tick.snapshots_written == 0:
        raise typer.Exit(1)  # as the original: no relevant market is an error worth a non-zero status


def run_live_edges(  # noqa: PLR0917 — typer maps each option to a parameter
    interval_seconds: Annotated[float, typer.Option(help="Seconds between ticks.")] = 10.0,
    duration_seconds: Annotated[float, typer.Option(help="Run this long, then exit (bounded loop).")] = 300.0,
    once: Annotated[bool, typer.Option("--once", help="One tick, then exit.")] = False,
    contracts: Annotated[float, typer.Option(help="Order size the fees and EVs are computed for.")] = 1.0,
    settlement: Annotated[str, typer.Option(help="average or point.")] = "average",
    basis: BasisOption = None,
    index_spot: IndexSpotOption = None,
    sigma_fallback: SigmaFallbackOption = None,
    debug: Annotated[bool, typer.Option("--debug")] = False,
) -> None:
    """Compute edges every INTERVAL seconds for DURATION seconds (a tick's failure is logged; the loop goes on)."""
    from kbtc.pipeline.edges import EdgeTick, LiveTickCache, compute_edge_tick
    from kbtc.pipeline.loop import run_bounded_loop

    settings = setup(debug)
    edge_settings = _edge_settings(settings, contracts=contracts, settlement=settlement, basis=basis,
                                   index_spot=index_spot, sigma_fallback=sigma_fallback)
    engine = engine_or_exit(settings)
    cache = LiveTickCache()  # the market list and latest quotes, read incrementally between ticks

    def step(now_ts: int) -> EdgeTick:
        tick = compute_edge_tick(engine, now_ts, edge_settings, cache)
        console.print(f"{now_ts}: {tick.snapshots_written} snapshots; {tick.skip_counts()}", highlight=False)
        return tick

    try:
        result = run_bounded_loop(
            step, interval_s=interval_seconds, duration_s=0.0 if once else duration_seconds, name="live_edges"
        )
    finally:
        engine.dispose()
    console.print(f"{result.iterations} ticks, {result.failures} failed, {result.skipped_ticks} skipped")


def price_command(
    input_path: Annotated[Path, typer.Option("--input", help="CSV or Parquet rows to price.", exists=True)],
    output: Annotated[Path, typer.Option(help="Output file (.csv or .parquet).")],
    settlement: Annotated[str, typer.Option(help="average or point.")] = "average",
    contracts: Annotated[float, typer.Option(help="Default order size for rows without `contracts`.")] = 1.0,
    fee_rounding: Annotated[str, typer.Option(help="cent (per order) or ten_thousandth ($0.0001).")] = "cent",
) -> None:
    """Price rows of (spot, sigma, strike_type, floor_strike, cap_strike, seconds_to_close, yes_bid, yes_ask).

    Prices in cents; optional columns: contracts, no_ask, fee_type, fee_multiplier, basis_usd, basis_std_usd,
    fixed_avg_usd. Writes p_model, fees, EVs, break-evens, Kelly fractions and skip_reason per row.
    """
    import polars as pl

    from kbtc.edge.batch import BatchInputError, price_rows

    if settlement not in ("average", "point"):
        raise fail(f"--settlement must be average or point, got {settlement!r}")
    if fee_rounding not in ("cent", "ten_thousandth"):
        raise fail(f"--fee-rounding must be cent or ten_thousandth, got {fee_rounding!r}")
    suffix = input_path.suffix.lower()
    rows = pl.read_parquet(input_path) if suffix == ".parquet" else pl.read_csv(input_path, infer_schema_length=None)
    params = EdgeParams(settlement=settlement, contracts=contracts, fee_rounding=fee_rounding)  # type: ignore[arg-type]
    try:
        priced = price_rows(rows, params)
    except BatchInputError as exc:
        raise fail(str(exc)) from None
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".parquet":
        priced.write_parquet(output)
    else:
        priced.write_csv(output)
    skipped = priced["skip_reason"].is_not_null().sum()
    console.print(f"priced {priced.height - skipped:,} of {priced.height:,} rows → {output}")


def register(app: typer.Typer) -> None:
    """Add the edge commands to the `kbtc` app."""
    app.command("compute-edges")(compute_edges_command)
    app.command("run-live-edges")(run_live_edges)
    app.command("price")(price_command)

"""`kbtc demo`: the main job on a fresh machine — the real Prefect flows against the exchange simulator.

Like `kbtc serve`, the command reaches into `flows/` lazily (inside the command), after pointing Prefect at a
home under the demo's data directory: no Prefect server needs to run (the flows start Prefect's temporary
one), nothing beyond loopback is contacted, and the user's own database and Prefect state are never touched.
`--live` (or `KBTC_LIVE=1`) skips the simulator and uses the configured venues instead.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from kbtc.commands.common import console, fail, settings_or_exit


def demo_command(  # noqa: PLR0917 - a Typer command: every option is a parameter
    minutes: Annotated[float, typer.Option(help="How long to collect and run pipeline cycles.")] = 5.0,
    window_minutes: Annotated[int, typer.Option(help="Length of every simulated market (minutes).")] = 2,
    cycle_seconds: Annotated[float, typer.Option(help="One pipeline cycle this often.")] = 15.0,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 7,
    data_dir: Annotated[Path, typer.Option(help="Parent of the run's directory (database, log, tape, plots).")]
    = Path("./data/demo"),
    live: Annotated[bool, typer.Option("--live", envvar="KBTC_LIVE",
                                       help="Skip the simulator; use the configured venues (KBTC_LIVE=1).")] = False,
) -> None:
    """Run the real flows end to end on short simulated markets; print the report and where everything is."""
    if minutes <= 0 or cycle_seconds <= 0:
        raise fail("--minutes and --cycle-seconds must be positive")
    if window_minutes < 1:
        raise fail("--window-minutes must be at least 1")
    settings_or_exit()  # a bad configuration fails here, in one line, before anything starts
    run_dir = data_dir / f"{'live' if live else 'sim'}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    # Prefect reads its settings at import: set them before `flows` is imported.
    os.environ.setdefault("PREFECT_HOME", str((data_dir / "prefect").resolve()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary server's first start migrates its own database: ~20 s on a small machine (default limit 20 s).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from flows.demo import DemoConfig, run_demo

    lead_seconds = 20 if window_minutes > 1 else 10  # collectors warm up before the first window opens
    config = DemoConfig(minutes=minutes, window_minutes=window_minutes, cycle_seconds=cycle_seconds,
                        lead_seconds=lead_seconds, seed=seed, live=live)
    source = "the configured venues" if live else f"the simulator ({window_minutes}-minute markets)"
    console.print(f"kbtc demo: {minutes:g} min against {source}; output in {run_dir}")
    result = run_demo(config, run_dir)
    markdown_path = Path(result.report["markdown_path"])
    console.print(markdown_path.read_text(), highlight=False, soft_wrap=True)
    last = result.cycles[-1] if result.cycles else {}
    console.print(f"cycles: {len(result.cycles)}; last: {last.get('edges')} {last.get('opportunities')}")
    console.print(f"database  {result.database_url}")
    console.print(f"log       {result.log_path}")
    console.print(f"tape      {result.tape_dir}")
    console.print(f"report    {markdown_path}")
    console.print(f"plots     {result.reports_dir}")
    console.print(f"inspect   DATABASE_URL={result.database_url} kbtc status", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `kbtc demo` to the `kbtc` app."""
    app.command("demo")(demo_command)

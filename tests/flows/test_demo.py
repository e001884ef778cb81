"""`kbtc demo` end to end (short): the real flows against the simulator leave edges, TAKE decisions, settled
markets, scores and a report behind; and the command's own checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kbtc.cli import app
from kbtc.db.engine import make_engine
from kbtc.db.store import read_frame


@pytest.mark.slow
@pytest.mark.serial
def test_demo_smoke(prefect_server: None, tmp_path: Path) -> None:
    from flows.demo import DemoConfig, run_demo

    # 1-minute markets, the first opening 5 s after the start: it closes at ~65 s and is determined at ~70 s,
    # before the final cycle after the 75-s collection. A noisier maker makes TAKE decisions near certain.
    config = DemoConfig(minutes=1.25, window_minutes=1, cycle_seconds=10, lead_seconds=5, maker_noise=0.08)
    result = run_demo(config, tmp_path / "demo")
    engine = make_engine(result.database_url)
    try:
        counts = read_frame(engine, """
            SELECT (SELECT COUNT(*) FROM edges) AS edges,
                   (SELECT COUNT(*) FROM edge_snapshots WHERE skip_reason IS NULL) AS priced,
                   (SELECT COUNT(*) FROM opportunities WHERE decision = 'TAKE') AS takes,
                   (SELECT COUNT(*) FROM markets WHERE result IS NOT NULL) AS settled,
                   (SELECT COUNT(*) FROM snapshot_scores) AS scores,
                   (SELECT COUNT(*) FROM spot_ticks) AS ticks
        """).row(0, named=True)
    finally:
        engine.dispose()
    assert all(counts[name] > 0 for name in counts), counts
    assert Path(result.report["markdown_path"]).read_text().startswith("# kbtc model performance")
    assert {"coinbase", "kalshi"} <= set(result.collectors)
    assert result.log_path.exists() and any(result.tape_dir.rglob("*"))
    assert result.cycles[-1]["artifacts"] == ["kbtc-latest-edges", "kbtc-take-opportunities", "kbtc-data-health"]


def test_demo_command_rejects_bad_options() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["demo", "--minutes", "0"])
    assert result.exit_code == 2 and "--minutes" in result.output
    result = runner.invoke(app, ["demo", "--window-minutes", "0"])
    assert result.exit_code == 2 and "--window-minutes" in result.output

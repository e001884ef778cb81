"""The ledger and scoring commands end to end on a SQLite file: loop tick, settlement, scoring, reports."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from scoring_factories import MINUTE, market, snapshot, store_snapshots
from typer.testing import CliRunner

from kbtc.cli import app
from kbtc.db.engine import make_engine
from kbtc.db.store import read_frame, upsert

A, B = "KXBTCD-26NOV2517-T95000", "KXBTCD-26NOV2517-T96000"


@pytest.mark.slow
def test_commands_end_to_end(sqlite_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": sqlite_url, "DATA_DIR": str(tmp_path / "data")}
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    now = int(time.time() * 1000)
    engine = make_engine(sqlite_url)
    close = now + 30 * MINUTE
    upsert(engine, "markets", [market(A, close_ts=close), market(B, close_ts=close)])
    store_snapshots(engine, [
        snapshot(A, now - 1_000, p_model=0.70, yes_bid=55.0, yes_ask=57.0, close_ts=close),
        snapshot(B, now - 1_000, p_model=0.50, yes_bid=49.0, yes_ask=51.0, close_ts=close),
    ])
    result = runner.invoke(app, ["run-opportunity-loop", "--once", "--emit-passes", "--both-sides"], env=env,
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "ok: 4 evaluated, 1 TAKE" in result.output and f"TAKE {A} YES at 57.00¢" in result.output
    assert read_frame(engine, "SELECT COUNT(*) AS n FROM opportunities")["n"][0] == 4

    upsert(engine, "markets", [market(A, result="yes", close_ts=close), market(B, result="no", close_ts=close)])
    result = runner.invoke(app, ["settle-ledger"], env=env)
    assert result.exit_code == 0 and "settled 1 of 1 open positions, PnL $+0.4100" in result.output
    result = runner.invoke(app, ["score-snapshots"], env=env)
    assert result.exit_code == 0 and "scored 2 snapshots (0 with errors)" in result.output

    result = runner.invoke(app, ["report-model-performance", "--since-seconds", "3600", "--scope", "all"],
                           env=env, terminal_width=400)
    assert result.exit_code == 0, result.output
    assert "model_vs_market" in result.output and "ledger_decisions" in result.output
    assert (tmp_path / "data" / "reports" / "model_performance.md").exists()
    assert (tmp_path / "data" / "reports" / "reliability.png").exists()
    assert runner.invoke(app, ["report-model-performance", "--scope", "mine"], env=env).exit_code == 2

    result = runner.invoke(app, ["report-open-positions"], env=env, terminal_width=400)
    assert result.exit_code == 0, result.output
    assert "settled positions" in result.output and "0.41" in result.output
    engine.dispose()

"""`kbtc sweep`: parameter specs, one scored comparison row per setting (the same scores as the live scoring
step), the plot, and the command; settlements import validation with line numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from replay_support import START_MS, replayed_database, tickers
from sqlalchemy import Engine
from typer.testing import CliRunner

from kbtc.cli import app
from kbtc.db.store import read_frame
from kbtc.edge import EdgeParams
from kbtc.pipeline.edges import EdgeSettings
from kbtc.pipeline.imports import import_csv
from kbtc.pipeline.sweep import SweepParamError, parse_duration_s, run_sweep, sweep_plot, sweep_settings

BASE = EdgeSettings(params=EdgeParams(series=("KXBTCD",)))


@pytest.fixture
def replayed(tmp_path: Path) -> Engine:
    engine = replayed_database(tmp_path, BASE, cadence_s=10, yes_markets=2)
    yield engine  # type: ignore[misc]
    engine.dispose()


def test_param_specs_parse_durations_types_and_products() -> None:
    assert parse_duration_s("5m") == 300 and parse_duration_s("250ms") == 0.25 and parse_duration_s("2") == 2
    points = sweep_settings(BASE, ["vol.half_life=5m,1h", "edge.contracts=1,10", "basis.enabled=false"])
    assert [p.label for p in points][:2] == ["vol.half_life=5m edge.contracts=1 basis.enabled=false",
                                             "vol.half_life=5m edge.contracts=10 basis.enabled=false"]
    assert len(points) == 4
    assert [p.settings.vol.half_life_s for p in points] == [300, 300, 3600, 3600]
    assert points[1].settings.params.contracts == 10.0 and points[0].settings.basis.enabled is False
    assert sweep_settings(BASE, [])[0].label == "baseline"
    for bad in ("vol.nope=1", "weird.x=1", "vol.half_life=soon", "novalue", "contracts="):
        with pytest.raises(SweepParamError):
            sweep_settings(BASE, [bad])


def test_sweep_scores_each_setting_like_the_scoring_step(replayed: Engine, tmp_path: Path) -> None:
    # Ten minutes of spot is short of the estimator's minimum span: σ is the prior, which the sweep varies.
    points = sweep_settings(BASE, ["vol.prior_sigma_annual=0.3,0.9"])
    result = run_sweep(replayed, points, START_MS, START_MS + 600_000, 10)
    assert result.comparison["setting"].to_list() == ["vol.prior_sigma_annual=0.3", "vol.prior_sigma_annual=0.9"]
    assert (result.comparison["snapshots"] > 0).all()
    # The market's forecast does not depend on the model's settings; the model's does.
    assert result.comparison["brier_market"].n_unique() == 1
    assert result.comparison["brier_model"].n_unique() == 2
    assert set(result.by_lead["lead_bucket"].to_list()) == {"15-60m"}
    # The same settings as the replay give the same Brier as the stored scores of the live scoring step.
    # (the replay's period: its first and last frame)
    baseline = run_sweep(replayed, sweep_settings(BASE, []), START_MS + 15, START_MS + 599_015, 10)
    stored = read_frame(replayed, "SELECT AVG(brier_model) AS b, COUNT(*) AS n FROM snapshot_scores").row(0)
    assert baseline.comparison["snapshots"][0] == stored[1]
    assert baseline.comparison["brier_model"][0] == pytest.approx(stored[0], rel=1e-12)
    png = sweep_plot(result, tmp_path / "sweep.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_command(replayed: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", str(replayed.url))
    monkeypatch.setenv("KALSHI_SERIES", "KXBTCD")
    out = tmp_path / "cmp.csv"
    args = ["sweep", "--param", "vol.half_life=5m,15m", "--from", str(START_MS // 1000),
            "--to", str(START_MS // 1000 + 600), "--cadence", "30s", "--output", str(out),
            "--plot", str(tmp_path / "p.png")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "vol.half_life=15m" in result.output
    assert pl.read_csv(out).height == 2 and (tmp_path / "p.png").exists()
    bad = CliRunner().invoke(app, ["sweep", "--param", "vol.bogus=1", "--from", "0", "--to", "1"])
    assert bad.exit_code == 2 and "no such setting" in bad.output


def test_settlements_import_reports_bad_lines(replayed: Engine, tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text(f"ticker,result,expiration_value,settled_time\n{tickers()[0]},no,100123.45,2026-11-18T12:00:00Z\n"
                    f"KXBTCD-NOPE,yes,,\n{tickers()[1]},maybe,,\n{tickers()[2]},yes,abc,\n{tickers()[3]},yes,,later\n")
    result = import_csv(replayed, "settlements", path, now_ts=1)
    assert result.rows_written == 1
    assert result.errors == [(3, "unknown market (import the catalog first)"), (4, "result must be yes or no"),
                             (5, "unparseable expiration_value"), (6, "unparseable settled_time")]
    row = read_frame(replayed, "SELECT result, expiration_value, settled_ts FROM markets WHERE market_ticker = :t",
                     {"t": tickers()[0]}).row(0)
    noon = int(datetime(2026, 11, 18, 12, tzinfo=UTC).timestamp() * 1000)
    assert row == ("no", 100123.45, noon)

"""The sweep flow publishes its comparison as artifacts with stable keys."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "research"))
from replay_support import START_MS, recording_lines, seed_catalog, tickers, write_jsonl

from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.edge import EdgeParams
from kbtc.pipeline.edges import EdgeSettings
from kbtc.pipeline.replay import run_replay


@pytest.mark.slow
def test_sweep_flow_publishes_artifacts(prefect_server: None, sqlite_url: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.research import ARTIFACT_KEYS, parameter_sweep

    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    seed_catalog(engine)
    settled = tmp_path / "settled.csv"
    settled.write_text("ticker,result\n" + "".join(f"{t},yes\n" for t in tickers()))
    run_replay(engine, [write_jsonl(tmp_path / "rec.jsonl", recording_lines(seconds=120))],
               EdgeSettings(params=EdgeParams(series=("KXBTCD",))), cadence_s=30, settlements=settled)
    engine.dispose()
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("KALSHI_SERIES", "KXBTCD")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOG_PATH", str(tmp_path / "logs" / "app.jsonl"))
    out = parameter_sweep(["vol.prior_sigma_annual=0.3,0.9"], START_MS, START_MS + 120_000, 30.0)
    assert out["settings"] == ["vol.prior_sigma_annual=0.3", "vol.prior_sigma_annual=0.9"]
    assert out["artifact_keys"] == list(ARTIFACT_KEYS)
    assert '"event":"sweep_done"' in (tmp_path / "logs" / "app.jsonl").read_text()  # the flow's JSONL log
    # Read back through the REST API (this Prefect client sends nulls the pinned server rejects).
    import httpx
    from prefect.settings import PREFECT_API_URL

    body = {"artifacts": {"key": {"any_": list(ARTIFACT_KEYS)}}, "limit": 50, "offset": 0, "sort": "KEY_ASC"}
    stored = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=body, timeout=30).json()
    assert {artifact["key"] for artifact in stored} == set(ARTIFACT_KEYS)
    comparison = next(a for a in stored if a["key"] == "kbtc-sweep-comparison")
    assert "vol.prior_sigma_annual=0.9" in comparison["data"]

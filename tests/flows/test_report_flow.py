"""The report flow settles, scores, and publishes the report as artifacts with stable keys."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scoring"))
from scoring_factories import HOUR, MINUTE, market, snapshot, store_snapshots

from flows.artifacts import HEALTH_KEY, json_rows
from flows.report import artifact_key
from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import read_frame, upsert


def test_artifact_keys_and_json_rows() -> None:
    assert artifact_key("kbtc-report-by_lead_time") == "kbtc-report-by-lead-time"
    frame = pl.DataFrame({"x": [1.0, float("nan"), float("inf")], "n": [1, 2, 3]})
    assert json_rows(frame) == [{"x": 1.0, "n": 1}, {"x": None, "n": 2}, {"x": None, "n": 3}]


@pytest.mark.slow
def test_report_flow_publishes_artifacts(prefect_server: None, sqlite_url: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.report import model_performance_report

    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    now = int(time.time() * 1000)
    ticker = "KXBTCD-26NOV2517-T95000"
    upsert(engine, "markets", [market(ticker, result="yes", close_ts=now - HOUR, settled_ts=now - 50 * MINUTE)])
    store_snapshots(engine, [snapshot(ticker, now - 2 * HOUR, p_model=0.8, close_ts=now - HOUR)])
    upsert(engine, "positions", [{"market_ticker": ticker, "side": "YES", "opened_ts": now - 2 * HOUR,
                                  "contracts": 1.0, "entry_price_cents": 52.0, "entry_fee_dollars": 0.02,
                                  "status": "open"}])
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    result = model_performance_report(since_seconds=86_400, scope="policy")
    assert result["settlement"]["settled"] == 1 and result["scoring"]["inserted"] == 1
    assert Path(result["markdown_path"]).exists()
    keys = set(result["artifact_keys"])
    assert {"kbtc-model-performance", "kbtc-report-ledger", "kbtc-report-model-vs-market",
            "kbtc-plot-reliability", "kbtc-plot-cumulative-pnl", "kbtc-plot-brier-by-lead-time"} <= keys
    assert read_frame(engine, "SELECT status FROM positions")["status"][0] == "settled"
    engine.dispose()

    # Read back through the REST API (this Prefect client sends nulls the pinned server rejects).
    import httpx
    from prefect.settings import PREFECT_API_URL

    body = {"artifacts": {"key": {"any_": sorted(keys)}}, "limit": 200, "offset": 0, "sort": "KEY_ASC"}
    stored = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=body, timeout=30).json()
    assert {artifact["key"] for artifact in stored} == keys
    scores = next(artifact for artifact in stored if artifact["key"] == "kbtc-report-snapshot-scores")
    assert '"snapshots": 1' in scores["data"]


@pytest.mark.slow
def test_opportunity_loop_flow(prefect_server: None, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.ledger import opportunity_loop

    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    now = int(time.time() * 1000)
    ticker, fair = "KXBTCD-26NOV2517-T95000", "KXBTCD-26NOV2517-T96000"
    upsert(engine, "markets", [market(ticker, close_ts=now + HOUR), market(fair, close_ts=now + HOUR)])
    store_snapshots(engine, [snapshot(ticker, now - 1_000, p_model=0.70, yes_bid=55.0, yes_ask=57.0,
                                               close_ts=now + HOUR),
                                      snapshot(fair, now - 1_000, p_model=0.56, yes_bid=55.0, yes_ask=57.0,
                                               close_ts=now + HOUR)])
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    # The flow records PASS rows by default (the CLI only with --emit-passes): every evaluation is kept.
    assert opportunity_loop(duration_seconds=0) == {"ticks": 1, "evaluated": 2, "takes": 1, "failures": 0}
    decisions = read_frame(engine, "SELECT market_ticker, decision FROM opportunities ORDER BY market_ticker")
    assert decisions.rows() == [(ticker, "TAKE"), (fair, "PASS")]
    engine.dispose()


@pytest.mark.slow
def test_score_and_settle_flow_publishes_data_health(prefect_server: None, sqlite_url: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.report import score_and_settle

    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    now = int(time.time() * 1000)
    ticker = "KXBTCD-26NOV2517-T96000"
    upsert(engine, "markets", [market(ticker, result="no", close_ts=now - HOUR, settled_ts=now - 50 * MINUTE)])
    store_snapshots(engine, [snapshot(ticker, now - 2 * HOUR, p_model=0.3, close_ts=now - HOUR)])
    upsert(engine, "positions", [{"market_ticker": ticker, "side": "NO", "opened_ts": now - 2 * HOUR,
                                  "contracts": 1.0, "entry_price_cents": 60.0, "entry_fee_dollars": 0.02,
                                  "status": "open"}])
    upsert(engine, "spot_ticks", [{"product_id": "BTC-USD", "source": "cb", "tick_ts": now - 5_000,
                                   "venue_time_ns": (now - 5_000) * 10**6, "received_ts": now - 5_000,
                                   "price": 95_000.0}])
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    result = score_and_settle()
    assert result["settlement"]["settled"] == 1 and result["scoring"]["inserted"] == 1
    assert result["artifact_keys"] == [HEALTH_KEY]
    assert read_frame(engine, "SELECT status FROM positions")["status"][0] == "settled"
    assert score_and_settle()["scoring"]["inserted"] == 0  # idempotent
    engine.dispose()

    import httpx
    from prefect.settings import PREFECT_API_URL

    body = {"artifacts": {"key": {"any_": [HEALTH_KEY]}}, "limit": 10, "offset": 0, "sort": "CREATED_DESC"}
    stored = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=body, timeout=30).json()
    assert stored and stored[0]["key"] == HEALTH_KEY
    rows = stored[0]["data"]
    rows = json.loads(rows) if isinstance(rows, str) else rows
    spot = next(row for row in rows if row["kind"] == "freshness" and row["name"] == "spot_ticks")
    assert spot["count"] == 1 and 0 <= spot["value"] < 600

"""Each step flow against the simulator (one shared simulator, one database), and `kbtc collect --coinbase
--kalshi` driving both collectors in one process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.demo import DemoConfig, SimulatorThread, environment, sim_config
from kbtc.cli import app
from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import read_frame, upsert

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sim_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A simulator with 2-minute markets, and the environment that points kbtc at it and a fresh database."""
    data = tmp_path_factory.mktemp("steps")
    simulator = SimulatorThread(sim_config(DemoConfig(window_minutes=2), int(time.time())))
    env = simulator.start() | {
        "DATABASE_URL": f"sqlite:///{data / 'kbtc.sqlite'}", "DATA_DIR": str(data), "LOG_PATH": str(data / "app.jsonl"),
        "KALSHI_SERIES": "KXBTC15M,KXBTCD,KXBTC", "KALSHI_MARKET_TICKERS": "",
    }
    upgrade_database(env["DATABASE_URL"])
    try:
        yield env
    finally:
        simulator.stop()


def _count(url: str, sql: str) -> int:
    engine = make_engine(url)
    try:
        return int(read_frame(engine, sql)[0, 0])
    finally:
        engine.dispose()


def test_step_flows(prefect_server: None, sim_env: dict[str, str]) -> None:
    from flows.collect import collect_streams
    from flows.edges import edge_loop
    from flows.kalshi import poll_quotes_flow, refresh_markets_flow, refresh_settlements_flow

    url = sim_env["DATABASE_URL"]
    with environment(sim_env):
        catalog = refresh_markets_flow()
        assert catalog["markets"] > 0 and catalog["events"] >= 3
        collected = collect_streams(seconds=4)
        assert collected["coinbase"]["ticks_written"] > 0 and collected["kalshi"]["frames"] > 0
        polled = poll_quotes_flow(seconds=0, interval_seconds=1)
        assert polled["polls"] == 1 and polled["quotes"] > 0
        assert edge_loop(duration_seconds=0)["ticks"] == 1
        settled = refresh_settlements_flow(since_seconds=3600)
        assert settled["fetched"] > 0  # markets of the listing history settled before the start
        log_text = Path(sim_env["LOG_PATH"]).read_text()
    assert _count(url, "SELECT COUNT(*) FROM edges") > 0
    assert _count(url, "SELECT COUNT(*) FROM quotes WHERE source = 'rest'") > 0
    assert '"event":"kalshi_collect_done"' in log_text  # the steps' own events reach the JSONL log


def test_collect_both_streams_command(sim_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in sim_env.items():
        monkeypatch.setenv(name, value)
    url = sim_env["DATABASE_URL"]
    before = _count(url, "SELECT COUNT(*) FROM spot_ticks")
    result = CliRunner().invoke(app, ["collect", "--coinbase", "--kalshi", "--seconds", "3"])
    assert result.exit_code == 0, result.output
    assert "coinbase:" in result.output and "kalshi:" in result.output
    assert _count(url, "SELECT COUNT(*) FROM spot_ticks") > before


def test_refresh_settlements_flow_closes_the_ledger(prefect_server: None, sim_env: dict[str, str]) -> None:
    from flows.kalshi import refresh_settlements_flow

    url = sim_env["DATABASE_URL"]
    with environment(sim_env):
        first = refresh_settlements_flow(since_seconds=3600)  # stores results of the listing history
        assert first["with_result"] > 0
        engine = make_engine(url)
        try:
            ticker = read_frame(engine, "SELECT market_ticker FROM markets WHERE result IN ('yes', 'no') "
                                        "ORDER BY market_ticker LIMIT 1")["market_ticker"][0]
            upsert(engine, "positions", [{"market_ticker": ticker, "side": "YES", "opened_ts": 1, "contracts": 1.0,
                                          "entry_price_cents": 40.0, "entry_fee_dollars": 0.02, "status": "open"}])
            again = refresh_settlements_flow(since_seconds=3600)
            status = read_frame(engine, "SELECT status FROM positions WHERE market_ticker = :t", {"t": ticker})
        finally:
            engine.dispose()
    assert again["ledger"]["settled"] == 1 and status["status"].to_list() == ["settled"]


def test_pipeline_flow_runs_one_full_cycle(prefect_server: None, sim_env: dict[str, str]) -> None:
    import httpx
    from prefect.settings import PREFECT_API_URL

    from flows.pipeline import run_pipeline

    keys = ["kbtc-latest-edges", "kbtc-take-opportunities", "kbtc-data-health"]
    with environment(sim_env):
        cycle = run_pipeline(settlements_since_seconds=3600)
    assert cycle["catalog"]["markets"] > 0
    assert cycle["poll"]["polls"] == 1 and cycle["poll"]["quotes"] > 0
    assert cycle["edges"]["markets"] > 0
    assert cycle["settlements"]["fetched"] > 0
    assert {"settled", "open_before"} <= set(cycle["ledger"]) and "inserted" in cycle["scoring"]
    assert cycle["artifacts"] == keys
    body = {"artifacts": {"key": {"any_": keys}}, "limit": 50, "offset": 0, "sort": "KEY_ASC"}
    stored = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=body, timeout=30).json()
    assert {artifact["key"] for artifact in stored} == set(keys)

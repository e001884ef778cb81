"""The performance report and the positions report on a small database whose numbers are known by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
from scoring_factories import HOUR, MINUTE, NOW, market, snapshot, store_snapshots

from kbtc.db.engine import make_engine
from kbtc.db.store import upsert
from kbtc.pipeline.positions_report import positions_report
from kbtc.pipeline.report import build_performance_report
from kbtc.pipeline.score_snapshots import score_snapshots

A, B, C = "KXBTCD-26NOV1917-T95000", "KXBTCD-26NOV1918-T96000", "KXBTCD-26NOV1919-T97000"


def _opportunity(ticker: str, side: str, decision: str, price: float, *, reasons: str | None = None,
                 p_model: float = 0.7, p_market: float = 0.6) -> dict[str, object]:
    return {
        "eval_ts": NOW - 2 * HOUR, "market_ticker": ticker, "side": side, "decision": decision, "reasons": reasons,
        "eligible": decision == "TAKE", "snapshot_asof_ts": NOW - 2 * HOUR, "event_ticker": ticker.rsplit("-", 1)[0],
        "series_ticker": "KXBTCD", "p_model": p_model, "p_market": p_market, "price_cents": price,
        "fee_dollars": 0.02, "contracts": 1.0, "model_version": "gbm-avg-1",
    }


@pytest.fixture
def engine(migrated_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(migrated_url)
    upsert(engine, "markets", [
        market(A, result="yes", close_ts=NOW - HOUR, settled_ts=NOW - 50 * MINUTE),
        market(B, result="no", close_ts=NOW - HOUR, settled_ts=NOW - 40 * MINUTE),
        market(C, close_ts=NOW + HOUR),
    ])
    store_snapshots(engine, [
        snapshot(A, NOW - 2 * HOUR, p_model=0.8, yes_bid=60.0, yes_ask=62.0, close_ts=NOW - HOUR),
        snapshot(B, NOW - 2 * HOUR, p_model=0.3, yes_bid=20.0, yes_ask=24.0, close_ts=NOW - HOUR),
        snapshot(C, NOW - 2 * HOUR, p_model=0.5, close_ts=NOW + HOUR),
    ])
    upsert(engine, "opportunities", [
        _opportunity(A, "YES", "TAKE", 62.0),  # wins 1 − 0.62 − 0.02 = 0.36
        _opportunity(B, "YES", "TAKE", 24.0),  # loses 0.24 + 0.02 = −0.26
        _opportunity(C, "NO", "TAKE", 50.0),  # unsettled
        _opportunity(B, "NO", "PASS", 80.0, reasons="ev_below_threshold"),  # would have won 0.18
    ])
    score_snapshots(engine, NOW)
    yield engine
    engine.dispose()


def test_performance_report_numbers_and_files(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = build_performance_report(engine, NOW, since_s=86_400, scope="policy", output_dir=tmp_path / "out")
    ledger = report.tables["ledger"].row(0, named=True)
    assert (ledger["decisions"], ledger["settled"], ledger["unsettled"]) == (3, 2, 1)
    assert ledger["hit_rate"] == pytest.approx(0.5)
    assert ledger["pnl_total"] == pytest.approx(0.10) and ledger["pnl_mean"] == pytest.approx(0.05)
    # Two events, one row each: the clustered SE is the ordinary s/√2 = |0.36 − (−0.26)|/2.
    assert ledger["events"] == 2 and ledger["pnl_se"] == pytest.approx(0.31)
    # A settles first (+0.36, the peak), then B (−0.26): drawdown 0.26 below the peak.
    assert ledger["max_drawdown"] == pytest.approx(-0.26)
    scores = report.tables["snapshot_scores"].row(0, named=True)
    assert scores["paired"] == 2 and scores["brier_model"] == pytest.approx((0.04 + 0.09) / 2)
    vs = {row["loss"]: row for row in report.tables["model_vs_market"].iter_rows(named=True)}
    assert vs["brier"]["mean"] == pytest.approx(((0.04 - 0.1521) + (0.09 - 0.0484)) / 2)
    assert vs["brier"]["clusters"] == 2
    murphy = report.tables["murphy_decomposition"]
    assert murphy["forecast"].to_list() == ["model", "market"]
    assert murphy["residual"].abs().max() < 1e-12
    coverage = report.tables["scoring_coverage"].row(0, named=True)
    assert coverage["snapshots_in_window"] == 3 and coverage["scored_with_outcome"] == 2
    assert set(report.plot_paths) == {"reliability", "cumulative_pnl", "brier_by_lead_time"}
    for path in report.plot_paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.markdown_path is not None and report.markdown_path.exists()
    assert "## Ledger" in report.markdown and "![reliability](reliability.png)" in report.markdown

    everything = build_performance_report(engine, NOW, since_s=86_400, scope="all")
    assert everything.tables["ledger"]["pnl_total"][0] == pytest.approx(0.28)
    decisions = everything.tables["ledger_decisions"]
    assert decisions.rows() == [("TAKE", "trade_signal", 3), ("PASS", "ev_below_threshold", 1)]
    assert everything.markdown_path is None and not everything.plot_paths


def test_report_on_an_empty_database(sqlite_url: str, tmp_path: Path) -> None:
    from kbtc.db.migrate import upgrade_database

    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    report = build_performance_report(engine, NOW, output_dir=tmp_path)
    assert report.tables["ledger"]["decisions"][0] == 0
    assert report.tables["snapshot_scores"]["snapshots"][0] == 0
    assert all(path.exists() for path in report.plot_paths.values())
    engine.dispose()


def test_positions_report_marks_open_and_lists_settled(engine) -> None:  # type: ignore[no-untyped-def]
    from kbtc.pipeline.settle_ledger import settle_ledger

    upsert(engine, "positions", [
        {"market_ticker": A, "side": "YES", "opened_ts": NOW - 2 * HOUR, "contracts": 1.0, "entry_price_cents": 62.0,
         "entry_fee_dollars": 0.02, "status": "open"},
        {"market_ticker": C, "side": "NO", "opened_ts": NOW - 2 * HOUR, "contracts": 2.0, "entry_price_cents": 50.0,
         "entry_fee_dollars": 0.04, "status": "open"},
    ])
    upsert(engine, "quotes", [{"market_ticker": C, "quote_ts": NOW - 5_000, "received_ts": NOW - 4_900,
                               "source": "ws", "yes_bid_cents": 40.0, "yes_ask_cents": 42.0,
                               "no_bid_cents": 58.0, "no_ask_cents": 60.0}])
    settle_ledger(engine)
    report = positions_report(engine, NOW)
    open_row = report.open_positions.row(0, named=True)
    # NO held at 50 ¢, now bid 58 ¢: 2 · 0.08 − 0.04 fee.
    assert open_row["market_ticker"] == C and open_row["mark_cents"] == 58.0
    assert open_row["unrealised_dollars"] == pytest.approx(0.12) and open_row["quote_age_s"] == 5.0
    settled = report.settled_positions.row(0, named=True)
    assert settled["market_ticker"] == A and settled["pnl_dollars"] == pytest.approx(0.36)
    totals = report.totals.row(0, named=True)
    assert (totals["open_positions"], totals["settled_positions"]) == (1, 1)
    assert totals["realised_dollars"] == pytest.approx(0.36)

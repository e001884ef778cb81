"""The scoring step scores settled snapshots once, model beside market, and a re-run changes nothing."""

from __future__ import annotations

import math

import polars as pl
import pytest
from scoring_factories import HOUR, MINUTE, NOW, market, snapshot, store_snapshots

from kbtc.db.engine import make_engine
from kbtc.db.store import read_frame, upsert
from kbtc.pipeline.score_snapshots import score_snapshots, scored_snapshots
from kbtc.scoring.snapshots import summary


def test_score_snapshots_by_hand_and_idempotent(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    upsert(engine, "markets", [
        market("KXBTCD-26NOV1917-T95000", result="yes"),
        market("KXBTCD-26NOV1917-T96000", result="no"),
        market("KXBTCD-26NOV1917-T97000"),  # not settled yet
    ])
    store_snapshots(engine, [
        snapshot("KXBTCD-26NOV1917-T95000", NOW - 30 * MINUTE, p_model=0.8, yes_bid=60.0, yes_ask=62.0),
        snapshot("KXBTCD-26NOV1917-T96000", NOW - 30 * MINUTE, p_model=0.3, yes_bid=20.0, yes_ask=24.0),
        snapshot("KXBTCD-26NOV1917-T96000", NOW - 20 * MINUTE, p_model=None, yes_bid=None, yes_ask=24.0),
        snapshot("KXBTCD-26NOV1917-T97000", NOW - 30 * MINUTE),
        # Fees of a 10-contract order, and no NO ask quoted (implied 100 − yes_bid = 40 ¢).
        snapshot("KXBTCD-26NOV1917-T95000", NOW - 10 * MINUTE, yes_bid=60.0, yes_ask=62.0, fee_yes=0.17,
                 fee_no=0.17, no_ask_cents=None, contracts=10.0),
    ])
    run = score_snapshots(engine, now_ts=NOW)
    assert (run.candidates, run.inserted, run.errors) == (4, 4, 1)
    scores = read_frame(engine, "SELECT * FROM snapshot_scores ORDER BY market_ticker, asof_ts")
    yes_row, ten_row, no_row, broken = scores.to_dicts()
    assert ten_row["pnl_yes_dollars"] == pytest.approx(1 - 0.62 - 0.017)
    assert ten_row["pnl_no_dollars"] == pytest.approx(0 - 0.40 - 0.017) and ten_row["error"] is None
    # YES settled; model 0.8, market mid 0.61; YES bought at 62 ¢ + 2 ¢ fee, NO at 40 ¢ + 2 ¢.
    assert yes_row["outcome"] == 1 and yes_row["settled_ts"] == NOW + HOUR + 5 * MINUTE
    assert yes_row["brier_model"] == pytest.approx(0.04)
    assert yes_row["brier_market"] == pytest.approx(0.39**2)
    assert yes_row["logloss_model"] == pytest.approx(-math.log(0.8))
    assert yes_row["logloss_market"] == pytest.approx(-math.log(0.61))
    assert yes_row["pnl_yes_dollars"] == pytest.approx(0.36)
    assert yes_row["pnl_no_dollars"] == pytest.approx(-0.42)
    # NO settled; model 0.3, market 0.22: NO bought at 80 ¢ wins 0.18, YES at 24 ¢ loses 0.26.
    assert no_row["brier_model"] == pytest.approx(0.09) and no_row["brier_market"] == pytest.approx(0.0484)
    assert no_row["pnl_yes_dollars"] == pytest.approx(-0.26) and no_row["pnl_no_dollars"] == pytest.approx(0.18)
    assert no_row["error"] is None
    # No model probability and no bid (so no market mid): scored as far as possible, with the reasons.
    assert broken["error"] == "missing_prob,missing_market_prob,missing_no_ask"
    assert broken["brier_model"] is None and broken["pnl_yes_dollars"] == pytest.approx(-0.26)

    again = score_snapshots(engine, now_ts=NOW + HOUR)
    assert (again.candidates, again.inserted) == (0, 0)
    assert read_frame(engine, "SELECT * FROM snapshot_scores ORDER BY market_ticker, asof_ts").equals(scores)

    scored = scored_snapshots(engine, NOW - HOUR, NOW).filter(pl.col("asof_ts") < NOW - 10 * MINUTE)
    assert scored.height == 3
    overall = summary(scored).row(0, named=True)
    assert overall["paired"] == 2 and overall["events"] == 1
    assert overall["brier_model"] == pytest.approx((0.04 + 0.09) / 2)
    assert overall["bss"] == pytest.approx(1 - 0.065 / ((0.1521 + 0.0484) / 2))
    # The model's EV picks YES in both: 0.8 − 0.62 − 0.02 > 0 (wins 0.36), 0.3 − 0.24 − 0.02 > 0 (loses 0.26).
    assert overall["model_picks"] == 2 and overall["pnl_model_total"] == pytest.approx(0.36 - 0.26)
    by_lead = summary(scored, ["lead_bucket"])
    assert by_lead["lead_bucket"].to_list() == ["1-4h"] and by_lead["snapshots"][0] == 3
    engine.dispose()


def test_small_batches_score_the_same_rows(migrated_url: str) -> None:
    """Batches page by key (asof_ts, market_ticker): batches of 2 give the rows one batch gives."""
    engine = make_engine(migrated_url)
    tickers = [f"KXBTCD-26NOV1917-T9{k}000" for k in range(5)]
    upsert(engine, "markets", [market(t, result="yes" if k % 2 else "no") for k, t in enumerate(tickers)])
    store_snapshots(engine, [snapshot(t, NOW - m * MINUTE, p_model=0.5) for t in tickers for m in (30, 20, 10)])
    run = score_snapshots(engine, now_ts=NOW, batch_rows=2)
    assert (run.candidates, run.inserted) == (15, 15)
    small = read_frame(engine, "SELECT * FROM snapshot_scores ORDER BY asof_ts, market_ticker").drop("id", strict=False)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM snapshot_scores")
    assert score_snapshots(engine, now_ts=NOW).inserted == 15
    one = read_frame(engine, "SELECT * FROM snapshot_scores ORDER BY asof_ts, market_ticker").drop("id", strict=False)
    assert small.equals(one)
    engine.dispose()

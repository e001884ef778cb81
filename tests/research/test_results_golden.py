"""Scoring, the ledger and the sweep give the results recorded in `golden/` on the same replayed data.

The golden files were written by the code before `edge_snapshots.params_json` moved to `model_params`
(migration 0004): a storage change must not change a number. The order size is 10 contracts, so the fee basis
(`model_params.contracts`) matters. Regenerate deliberately, after a change that is meant to move results:
`KBTC_WRITE_GOLDEN=1 .venv/bin/pytest tests/research/test_results_golden.py`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from replay_support import START_MS, replayed_database
from sqlalchemy import Engine

from kbtc.db.store import read_frame
from kbtc.edge import EdgeParams
from kbtc.pipeline.edges import EdgeSettings
from kbtc.pipeline.opportunities import run_opportunity_tick
from kbtc.pipeline.score_snapshots import scored_snapshots
from kbtc.pipeline.sweep import run_sweep, sweep_settings
from kbtc.scoring.ledger import LedgerParams

GOLDEN = Path(__file__).parent / "golden"
SETTINGS = EdgeSettings(params=EdgeParams(series=("KXBTCD",), contracts=10.0))
END_MS = START_MS + 600_000
# The scores of each snapshot (its inputs are in `snapshot_scores` and the ledger's rows).
SCORED = ["asof_ts", "market_ticker", "contracts", "outcome", "p_mkt", "brier_model", "brier_market",
          "logloss_model", "logloss_market", "logloss_model_grid", "logloss_market_grid", "pnl_yes_dollars",
          "pnl_no_dollars", "pnl_model_dollars", "error", "lead_bucket", "moneyness_bucket"]


def _digest(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    engine = replayed_database(tmp_path_factory.mktemp("golden"), SETTINGS, cadence_s=30, yes_markets=3)
    yield engine  # type: ignore[misc]
    engine.dispose()


def _results(engine: Engine) -> dict[str, pl.DataFrame]:
    asofs = read_frame(engine, "SELECT DISTINCT asof_ts FROM edge_snapshots ORDER BY asof_ts")["asof_ts"].to_list()
    # Ten minutes of spot is short of σ's minimum span: accept the prior, so that some rows are TAKEs.
    ledger = LedgerParams(both_sides=True, max_takes_per_tick=2, min_ev_dollars=0.0,
                          sigma_ready_statuses=("ok", "insufficient_points", "insufficient_span"))
    for asof in asofs:
        assert run_opportunity_tick(engine, asof, ledger, emit_passes=True).status == "ok"
    opportunities = read_frame(engine, "SELECT * FROM opportunities ORDER BY eval_ts, market_ticker, side").drop("id")
    points = sweep_settings(SETTINGS, ["vol.prior_sigma_annual=0.3,0.9"])
    sweep = run_sweep(engine, points, START_MS, END_MS, 30)
    return {
        "snapshot_scores": read_frame(engine, "SELECT * FROM snapshot_scores ORDER BY asof_ts, market_ticker"),
        "scored_snapshots": scored_snapshots(engine, START_MS, END_MS).select(SCORED),
        # The ledger's params_json holds the model's full parameters (1.3 kB a row): compared by digest.
        "opportunities": opportunities.with_columns(
            pl.col("params_json").map_elements(_digest, return_dtype=pl.String)
        ),
        "positions": read_frame(engine, "SELECT * FROM positions ORDER BY market_ticker, side, opened_ts"),
        "sweep_comparison": sweep.comparison,
        "sweep_by_lead": sweep.by_lead,
        "sweep_scored": pl.concat([frame.select(pl.lit(label).alias("setting"), *SCORED)
                                   for label, frame in sweep.scored.items()]),
    }


def test_results_match_the_golden_files(replayed: Engine) -> None:
    results = _results(replayed)
    if os.environ.get("KBTC_WRITE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        for name, frame in results.items():
            frame.write_ndjson(GOLDEN / f"{name}.ndjson")
    for name, frame in results.items():
        assert frame.height > 0, name
        golden = pl.read_ndjson(GOLDEN / f"{name}.ndjson", schema=frame.schema)
        # Floats to 1e-12 relative: Polars' group-by sums a group's values in an order that varies from run to
        # run (seen with Polars 2.2: the sweep's ECE moves in the last bit between runs on the same rows); the
        # other columns exactly.
        assert_frame_equal(frame, golden, check_exact=False, rel_tol=1e-12, abs_tol=0)
    decisions = results["opportunities"]
    assert set(decisions["decision"]) == {"TAKE", "PASS"} and set(decisions["contracts"]) == {10.0}

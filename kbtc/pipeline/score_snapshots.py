"""The scoring step: score every edge snapshot whose market has settled, once.

Candidates are snapshots with no `snapshot_scores` row whose market has a `yes`/`no` result. Rows are
written with ON CONFLICT DO NOTHING on (asof_ts, market_ticker), so re-running the step — or two runs
overlapping — never changes a stored score (`reference/seed_system.md` §4.5). The ε = 0.01 log loss and the
model-pick PnL are not stored: `scored_snapshots` recomputes them from the same stored inputs with the same
expressions, so every number in the report is reproducible from the database.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from sqlalchemy import Engine

from kbtc.db.store import read_frame, upsert
from kbtc.pipeline.edge_inputs import read_typed
from kbtc.pipeline.model_params import CONTRACTS_SQL, PARAMS_JOIN_SQL
from kbtc.scoring.metrics import outcome_from_result
from kbtc.scoring.snapshots import score_frame, with_buckets

DEFAULT_BATCH_ROWS = 50_000

# The snapshot columns scoring reads, with their types (a batch where a column is all NULL stays typed).
SNAPSHOT_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "asof_ts": pl.Int64,
    "market_ticker": pl.String,
    "event_ticker": pl.String,
    "series_ticker": pl.String,
    "strike_type": pl.String,
    "floor_strike": pl.Float64,
    "cap_strike": pl.Float64,
    "close_ts": pl.Int64,
    "settlement_ts": pl.Int64,
    "horizon_s": pl.Float64,
    "spot_usd": pl.Float64,
    "spot_age_s": pl.Float64,
    "quote_age_s": pl.Float64,
    "p_model": pl.Float64,
    "p_market": pl.Float64,
    "yes_bid_cents": pl.Float64,
    "yes_ask_cents": pl.Float64,
    "no_bid_cents": pl.Float64,
    "no_ask_cents": pl.Float64,
    "fee_yes_dollars": pl.Float64,
    "fee_no_dollars": pl.Float64,
    "ev_yes_dollars": pl.Float64,
    "ev_no_dollars": pl.Float64,
    "model_version": pl.String,
}
_SELECT = ", ".join(f"s.{name}" for name in SNAPSHOT_COLUMNS)
# What `score_frame` reads to fill a `snapshot_scores` row: the scoring step fetches these only (half the
# columns, half the SQLite fetch; the report's `scored_snapshots` reads them all).
_SCORING_INPUTS = (
    "asof_ts", "market_ticker", "p_model", "p_market", "yes_bid_cents", "yes_ask_cents", "no_bid_cents",
    "no_ask_cents", "fee_yes_dollars", "fee_no_dollars", "ev_yes_dollars", "ev_no_dollars",
)
_SELECT_SCORING = ", ".join(f"s.{name}" for name in _SCORING_INPUTS)
# When the venue has not stamped a settlement time yet, the determination time stands in.
_SETTLED_TS = "COALESCE(mk.settled_ts, mk.determined_ts, mk.settlement_ts)"


SCORE_COLUMNS = [
    "asof_ts", "market_ticker", "outcome", "settled_ts", "brier_model", "brier_market", "logloss_model",
    "logloss_market", "pnl_yes_dollars", "pnl_no_dollars", "error", "scored_ts",
]


@dataclass(frozen=True, slots=True)
class ScoreRun:
    """What one scoring run did."""

    candidates: int
    inserted: int
    errors: int


def _candidates(engine: Engine, limit: int, after: tuple[int, str] | None) -> pl.DataFrame:
    # Keyset pagination: each batch starts after the previous one's last key (every candidate of a batch is
    # scored), instead of re-scanning the scored rows from the start: the run is linear, not quadratic, in the
    # snapshots (a day's replay writes a million).
    later = "" if after is None else (
        "AND (s.asof_ts > :after_ts OR (s.asof_ts = :after_ts AND s.market_ticker > :after_ticker))"
    )
    sql = f"""
        SELECT {_SELECT_SCORING}, {CONTRACTS_SQL} AS contracts, mk.result AS result, {_SETTLED_TS} AS settled_ts
        FROM edge_snapshots s
        JOIN markets mk ON mk.market_ticker = s.market_ticker
        {PARAMS_JOIN_SQL}
        LEFT JOIN snapshot_scores sc ON sc.asof_ts = s.asof_ts AND sc.market_ticker = s.market_ticker
        WHERE sc.asof_ts IS NULL AND LOWER(mk.result) IN ('yes', 'no') {later}
        ORDER BY s.asof_ts, s.market_ticker
        LIMIT :limit
    """  # noqa: S608 — the column list and the condition are constants
    schema = {
        **{name: SNAPSHOT_COLUMNS[name] for name in _SCORING_INPUTS},
        "contracts": pl.Float64,
        "result": pl.String,
        "settled_ts": pl.Int64,
    }
    params: dict[str, object] = {"limit": limit}
    if after is not None:
        params.update(after_ts=after[0], after_ticker=after[1])
    # Typed column-wise from the driver's cursor: a SQLAlchemy Row per row and a row-wise frame cost ~30 % of
    # scoring a day's million snapshots.
    return read_typed(engine, sql, params, schema)


def score_snapshots(engine: Engine, now_ts: int, *, batch_rows: int = DEFAULT_BATCH_ROWS) -> ScoreRun:
    """Score all settled, unscored snapshots in batches; return counts. Idempotent."""
    candidates = inserted = errors = 0
    after: tuple[int, str] | None = None
    while True:
        batch = _candidates(engine, batch_rows, after)
        if batch.height == 0:
            break
        scored = (
            score_frame(batch.with_columns(outcome_from_result("result").alias("outcome")))
            .with_columns(pl.lit(now_ts, pl.Int64).alias("scored_ts"))
            .select(SCORE_COLUMNS)
            .collect()
        )
        upsert(engine, "snapshot_scores", scored, on_conflict="ignore")
        candidates += batch.height
        inserted += scored.height
        errors += int(scored["error"].is_not_null().sum())
        if batch.height < batch_rows:
            break
        after = (int(batch["asof_ts"][-1]), str(batch["market_ticker"][-1]))
    return ScoreRun(candidates=candidates, inserted=inserted, errors=errors)


def scored_snapshots(engine: Engine, since_ts: int, until_ts: int) -> pl.DataFrame:
    """Scored snapshots with as-of time in [since_ts, until_ts], all per-snapshot scores and buckets added."""
    sql = f"""
        SELECT {_SELECT}, {CONTRACTS_SQL} AS contracts, sc.outcome AS outcome, sc.settled_ts AS settled_ts
        FROM snapshot_scores sc
        JOIN edge_snapshots s ON s.asof_ts = sc.asof_ts AND s.market_ticker = sc.market_ticker
        {PARAMS_JOIN_SQL}
        WHERE sc.asof_ts >= :since AND sc.asof_ts <= :until AND sc.outcome IS NOT NULL
        ORDER BY s.asof_ts, s.market_ticker
    """  # noqa: S608 — the column list is a constant
    schema = {**SNAPSHOT_COLUMNS, "contracts": pl.Float64, "outcome": pl.Int32, "settled_ts": pl.Int64}
    frame = read_frame(engine, sql, {"since": since_ts, "until": until_ts}, schema=schema).cast(schema)  # type: ignore[arg-type]
    return with_buckets(score_frame(frame)).collect()

"""The opportunity step: evaluate the newest batch of edge snapshots into the ledger and open shadow positions.

One tick (`reference/seed_system.md` §4.2): take the newest snapshot batch (`MAX(asof_ts) ≤ now`) — in a loop,
every fresh batch since the last evaluated one, oldest first, where the original skipped all but the newest; refuse it
as `stale_edge_snapshots` when it is older than `max_snapshot_age_s`, or report `no_edge_snapshots`; decide
every snapshot with `kbtc.scoring.ledger.decide` against the open positions and recent TAKEs; write TAKE
rows (and PASS rows with `emit_passes`) to `opportunities` and one `positions` row per TAKE.

Both writes are INSERT … ON CONFLICT DO NOTHING on natural keys — (eval_ts, market, side) and (market, side,
opened_ts) with eval_ts = opened_ts = the snapshot's as-of time — so re-running a tick over the same
snapshots never duplicates a decision or a position and never rewrites one (ledger rows are immutable). The
book a tick decides against is read as of the batch's time, so a re-run reaches the same decisions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
from sqlalchemy import Engine

from kbtc.db.store import read_frame, upsert
from kbtc.pipeline.model_params import CONTRACTS_SQL, PARAMS_JOIN_SQL
from kbtc.scoring.ledger import LedgerParams, decide, positions_from_takes

DEFAULT_MAX_SNAPSHOT_AGE_S = 60.0

_SNAPSHOT_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "asof_ts": pl.Int64, "market_ticker": pl.String, "event_ticker": pl.String, "series_ticker": pl.String,
    "close_ts": pl.Int64, "spot_usd": pl.Float64, "spot_age_s": pl.Float64, "sigma_annual": pl.Float64,
    "sigma_status": pl.String, "p_model": pl.Float64, "p_market": pl.Float64, "quote_age_s": pl.Float64,
    "yes_bid_cents": pl.Float64, "yes_ask_cents": pl.Float64, "no_bid_cents": pl.Float64,
    "no_ask_cents": pl.Float64, "fee_yes_dollars": pl.Float64, "fee_no_dollars": pl.Float64,
    "ev_yes_dollars": pl.Float64, "ev_no_dollars": pl.Float64, "kelly_yes": pl.Float64, "kelly_no": pl.Float64,
    "model_version": pl.String,
}
# With each snapshot: its model params (joined from `model_params`) and their order size.
_PARAMS_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {"params_json": pl.String, "contracts": pl.Float64}
_SNAPSHOT_SQL = (
    f"SELECT {', '.join(f's.{name}' for name in _SNAPSHOT_SCHEMA)}, p.params_json AS params_json, "  # noqa: S608
    f"{CONTRACTS_SQL} AS contracts FROM edge_snapshots s {PARAMS_JOIN_SQL} WHERE s.asof_ts = :asof"
)


@dataclass(frozen=True, slots=True)
class OpportunityTick:
    """What one tick did: `status` is `ok`, `no_edge_snapshots`, `no_new_snapshots` or `stale_edge_snapshots`."""

    status: str
    asof_ts: int | None
    evaluated: int
    takes: int
    rows_sent: int
    reason_counts: dict[str, int]
    decisions: pl.DataFrame


def _empty_tick(status: str, asof_ts: int | None) -> OpportunityTick:
    return OpportunityTick(status, asof_ts, 0, 0, 0, {}, pl.DataFrame())


def reason_counts(decisions: pl.DataFrame) -> dict[str, int]:
    """How often each reason code occurs among the decisions (a row can carry several)."""
    if decisions.height == 0:
        return {}
    counts = (
        decisions.select(pl.col("reasons").str.split(",").alias("reason")).explode("reason")
        .drop_nulls().group_by("reason").len().sort(["len", "reason"], descending=[True, False])
    )
    return dict(counts.iter_rows())


def run_opportunity_tick(
    engine: Engine,
    now_ts: int,
    params: LedgerParams,
    *,
    emit_passes: bool = False,
    max_snapshot_age_s: float = DEFAULT_MAX_SNAPSHOT_AGE_S,
    after_asof_ts: int | None = None,
) -> OpportunityTick:
    """Evaluate a snapshot batch at `now_ts` and record the decisions; idempotent per batch.

    Without `after_asof_ts` the newest batch is evaluated. With it (the batch a loop evaluated last), the oldest
    fresh batch after it is, so a loop catches up on every batch instead of skipping those that arrived
    together; when none is newer the tick is `no_new_snapshots`.
    """
    latest = _next_batch(engine, now_ts, after_asof_ts, max_snapshot_age_s)
    if latest is None:
        return _empty_tick("no_edge_snapshots", None)
    asof_ts = int(latest)
    if after_asof_ts is not None and asof_ts <= after_asof_ts:
        return _empty_tick("no_new_snapshots", asof_ts)
    if now_ts - asof_ts > max_snapshot_age_s * 1000:
        return _empty_tick("stale_edge_snapshots", asof_ts)
    schema = {**_SNAPSHOT_SCHEMA, **_PARAMS_SCHEMA}
    with engine.connect() as conn:
        snapshots = read_frame(conn, _SNAPSHOT_SQL, {"asof": asof_ts}, schema=schema).cast(schema)  # type: ignore[arg-type]
        open_positions = read_frame(
            # Open as of the batch, not as of now: a re-run of the batch sees the same book, so the TAKE the
            # first run recorded cannot block itself and hand its take_cap slot to another market.
            conn,
            "SELECT market_ticker, side FROM positions "
            "WHERE opened_ts < :asof AND (status = 'open' OR settled_ts > :asof)",
            {"asof": asof_ts},
            schema={"market_ticker": pl.String, "side": pl.String},
        ).cast({"market_ticker": pl.String, "side": pl.String})
        recent_takes = read_frame(
            conn,
            "SELECT market_ticker, side, eval_ts FROM opportunities "
            "WHERE decision = 'TAKE' AND eval_ts >= :start AND eval_ts < :asof",
            {"start": asof_ts - int(params.cooldown_s * 1000), "asof": asof_ts},
            schema={"market_ticker": pl.String, "side": pl.String, "eval_ts": pl.Int64},
        ).cast({"market_ticker": pl.String, "side": pl.String, "eval_ts": pl.Int64})
    decisions = decide(snapshots, open_positions, recent_takes, params)
    to_write = decisions if emit_passes else decisions.filter(pl.col("decision") == "TAKE")
    written = upsert(engine, "opportunities", to_write, on_conflict="ignore")
    upsert(engine, "positions", positions_from_takes(decisions), on_conflict="ignore")
    takes = int((decisions["decision"] == "TAKE").sum())
    return OpportunityTick("ok", asof_ts, decisions.height, takes, written, reason_counts(decisions), decisions)


def _next_batch(engine: Engine, now_ts: int, after_asof_ts: int | None, max_snapshot_age_s: float) -> int | None:
    """The newest batch at `now_ts`, or the oldest fresh one after `after_asof_ts` (else the newest)."""
    if after_asof_ts is None:
        sql = "SELECT MAX(asof_ts) AS asof_ts FROM edge_snapshots WHERE asof_ts <= :now"
    else:
        sql = ("SELECT COALESCE(MIN(CASE WHEN asof_ts > :after AND asof_ts >= :fresh THEN asof_ts END), "
               "MAX(asof_ts)) AS asof_ts FROM edge_snapshots WHERE asof_ts <= :now")
    params = {"now": now_ts, "after": after_asof_ts, "fresh": now_ts - int(max_snapshot_age_s * 1000)}
    value = read_frame(engine, sql, params)["asof_ts"][0]
    return None if value is None else int(value)


def _newest_batch(engine: Engine, now_ts: int) -> int | None:
    value = read_frame(engine, "SELECT MAX(asof_ts) AS asof_ts FROM edge_snapshots WHERE asof_ts <= :now",
                       {"now": now_ts})["asof_ts"][0]
    return None if value is None else int(value)


@dataclass(frozen=True, slots=True)
class LoopSummary:
    """What a loop of ticks did."""

    ticks: int
    evaluated: int
    takes: int


def run_opportunity_catch_up(
    engine: Engine,
    now_ts: int,
    params: LedgerParams,
    *,
    after_asof_ts: int | None = None,
    emit_passes: bool = False,
    max_snapshot_age_s: float = DEFAULT_MAX_SNAPSHOT_AGE_S,
) -> list[OpportunityTick]:
    """One loop tick at `now_ts`: every fresh batch after `after_asof_ts`, oldest first, so none is skipped
    (without `after_asof_ts`, the newest only). Returns at least one tick; the last one that is `ok` carries the
    `asof_ts` to pass as `after_asof_ts` next time."""
    ticks: list[OpportunityTick] = []
    last_asof = after_asof_ts
    while True:
        tick = run_opportunity_tick(engine, now_ts, params, emit_passes=emit_passes,
                                    max_snapshot_age_s=max_snapshot_age_s, after_asof_ts=last_asof)
        ticks.append(tick)
        if tick.status != "ok":
            return ticks
        last_asof = tick.asof_ts
        newest = _newest_batch(engine, now_ts)
        if newest is None or last_asof is None or newest <= last_asof:
            return ticks


def run_opportunity_loop(
    engine: Engine,
    params: LedgerParams,
    *,
    interval_s: float = 10.0,
    duration_s: float | None = None,
    emit_passes: bool = False,
    max_snapshot_age_s: float = DEFAULT_MAX_SNAPSHOT_AGE_S,
    on_tick: Callable[[OpportunityTick], None] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> LoopSummary:
    """Run ticks every `interval_s` until `duration_s` has passed (None: forever; 0: exactly one tick).

    Each batch is evaluated once, in order: a tick evaluates every fresh batch that arrived since the last one
    (the first tick only the newest), and a tick that finds none does nothing.
    """
    started = clock()
    ticks = evaluated = takes = 0
    last_asof: int | None = None
    while True:
        tick_start = clock()
        for tick in run_opportunity_catch_up(engine, int(tick_start * 1000), params, after_asof_ts=last_asof,
                                             emit_passes=emit_passes, max_snapshot_age_s=max_snapshot_age_s):
            ticks += 1
            evaluated += tick.evaluated
            takes += tick.takes
            if tick.status == "ok":
                last_asof = tick.asof_ts
            if on_tick is not None:
                on_tick(tick)
        elapsed = clock() - tick_start
        if duration_s is not None and clock() - started + max(0.0, interval_s - elapsed) >= duration_s:
            return LoopSummary(ticks, evaluated, takes)
        sleep(max(0.0, interval_s - elapsed))

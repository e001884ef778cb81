"""The opportunity tick and ledger settlement against a database: recorded once, never duplicated."""

from __future__ import annotations

import pytest
from scoring_factories import HOUR, MINUTE, NOW, market, snapshot, store_snapshots

from kbtc.db.engine import make_engine
from kbtc.db.store import read_frame, upsert
from kbtc.pipeline.opportunities import run_opportunity_tick
from kbtc.pipeline.settle_ledger import settle_ledger
from kbtc.scoring.ledger import LedgerParams

A, B, C = "KXBTCD-26NOV1917-T95000", "KXBTCD-26NOV1917-T96000", "KXBTCD-26NOV1917-T97000"


def _ledger(engine: object) -> list[tuple[object, ...]]:
    return read_frame(engine, "SELECT eval_ts, market_ticker, side, decision, reasons FROM opportunities "  # type: ignore[arg-type]
                      "ORDER BY eval_ts, market_ticker, side").rows()


def test_tick_records_decisions_and_positions_once(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    assert run_opportunity_tick(engine, NOW, LedgerParams()).status == "no_edge_snapshots"
    upsert(engine, "markets", [market(A), market(B), market(C)])
    store_snapshots(engine, [
        snapshot(A, NOW - 10_000, p_model=0.70, yes_bid=55.0, yes_ask=57.0),  # YES ev_net 0.10
        snapshot(B, NOW - 10_000, p_model=0.20, yes_bid=40.0, yes_ask=42.0),  # NO ev_net 0.17
        snapshot(C, NOW - 10_000, p_model=0.50, yes_bid=49.0, yes_ask=51.0),  # nothing
    ])
    assert run_opportunity_tick(engine, NOW + HOUR, LedgerParams()).status == "stale_edge_snapshots"

    tick = run_opportunity_tick(engine, NOW, LedgerParams(), emit_passes=True)
    assert (tick.status, tick.asof_ts, tick.evaluated, tick.takes) == ("ok", NOW - 10_000, 3, 1)
    assert tick.reason_counts == {"ev_below_threshold": 1, "take_cap": 1}
    first = _ledger(engine)
    assert first == [
        (NOW - 10_000, A, "YES", "PASS", "take_cap"),
        (NOW - 10_000, B, "NO", "TAKE", None),
        (NOW - 10_000, C, "YES", "PASS", "ev_below_threshold"),
    ]
    positions = read_frame(engine, "SELECT * FROM positions").to_dicts()
    assert len(positions) == 1 and positions[0]["market_ticker"] == B and positions[0]["status"] == "open"
    assert positions[0]["entry_price_cents"] == 60.0 and positions[0]["entry_fee_dollars"] == 0.02

    # A re-run over the same batch reaches the same decisions: nothing new, nothing rewritten.
    again = run_opportunity_tick(engine, NOW + 1_000, LedgerParams(), emit_passes=True)
    assert again.takes == 1 and again.reason_counts == tick.reason_counts
    assert _ledger(engine) == first
    assert read_frame(engine, "SELECT COUNT(*) AS n FROM positions")["n"][0] == 1

    # The next batch: B's position is open, so A gets the slot; TAKE rows only without --emit-passes.
    store_snapshots(engine, [
        snapshot(A, NOW, p_model=0.70, yes_bid=55.0, yes_ask=57.0),
        snapshot(B, NOW, p_model=0.20, yes_bid=40.0, yes_ask=42.0),
    ])
    nxt = run_opportunity_tick(engine, NOW + 2_000, LedgerParams())
    assert nxt.takes == 1 and nxt.reason_counts == {"cooldown_active": 1, "position_open": 1}
    assert _ledger(engine)[-1] == (NOW, A, "YES", "TAKE", None)
    engine.dispose()


def test_settlement_closes_positions_once(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    upsert(engine, "markets", [market(A), market(B)])
    upsert(engine, "positions", [
        {"market_ticker": A, "side": "YES", "opened_ts": NOW, "contracts": 1.0, "entry_price_cents": 57.0,
         "entry_fee_dollars": 0.02, "status": "open"},
        {"market_ticker": B, "side": "NO", "opened_ts": NOW, "contracts": 1.0, "entry_price_cents": 60.0,
         "entry_fee_dollars": 0.02, "status": "open"},
    ])
    assert settle_ledger(engine).settled == 0  # no results yet
    upsert(engine, "markets", [market(A, result="no", settled_ts=NOW + HOUR + 2 * MINUTE)])
    run = settle_ledger(engine)
    assert (run.open_before, run.settled) == (2, 1) and run.pnl_dollars == pytest.approx(-0.59)
    rows = read_frame(engine, "SELECT * FROM positions ORDER BY market_ticker").to_dicts()
    assert rows[0]["status"] == "settled" and rows[0]["outcome"] == 0
    assert rows[0]["settled_ts"] == NOW + HOUR + 2 * MINUTE and rows[0]["pnl_dollars"] == pytest.approx(-0.59)
    assert rows[1]["status"] == "open" and rows[1]["pnl_dollars"] is None
    assert settle_ledger(engine).settled == 0  # re-running changes nothing
    assert read_frame(engine, "SELECT * FROM positions ORDER BY market_ticker").to_dicts() == rows
    engine.dispose()


def test_loop_evaluates_each_batch_once_within_its_duration(migrated_url: str) -> None:
    from kbtc.pipeline.opportunities import OpportunityTick, run_opportunity_loop

    engine = make_engine(migrated_url)
    upsert(engine, "markets", [market(A)])
    store_snapshots(engine, [snapshot(A, NOW - 1_000, p_model=0.70, yes_bid=55.0, yes_ask=57.0)])
    now_s = [NOW / 1000]
    slept: list[float] = []
    statuses: list[str] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now_s[0] += seconds
        if len(slept) == 1:  # a new batch arrives during the first sleep
            store_snapshots(engine, [snapshot(A, int(now_s[0] * 1000) - 500, p_model=0.70,
                                                       yes_bid=55.0, yes_ask=57.0)])

    def on_tick(tick: OpportunityTick) -> None:
        statuses.append(tick.status)

    summary = run_opportunity_loop(engine, LedgerParams(), interval_s=10.0, duration_s=25.0, emit_passes=True,
                                   on_tick=on_tick, clock=lambda: now_s[0], sleep=sleep)
    assert statuses == ["ok", "ok", "no_new_snapshots"] and slept == [10.0, 10.0]
    assert (summary.ticks, summary.evaluated, summary.takes) == (3, 2, 1)
    # The second batch found the first TAKE's position open: recorded as a PASS.
    assert _ledger(engine)[-1][3:] == ("PASS", "position_open,cooldown_active")
    once = run_opportunity_loop(engine, LedgerParams(), duration_s=0.0, clock=lambda: now_s[0], sleep=sleep)
    assert once.ticks == 1 and len(slept) == 2
    engine.dispose()


def test_loop_catches_up_on_batches_that_arrived_together(migrated_url: str) -> None:
    """Two edge ticks between two ledger ticks: both batches are evaluated, oldest first (none skipped)."""
    from kbtc.pipeline.opportunities import OpportunityTick, run_opportunity_loop

    engine = make_engine(migrated_url)
    upsert(engine, "markets", [market(A), market(B)])
    store_snapshots(engine, [snapshot(A, NOW - 1_000, p_model=0.50, yes_bid=49.0, yes_ask=51.0)])
    now_s = [NOW / 1000]
    evaluated_batches: list[tuple[str, int | None]] = []

    def sleep(seconds: float) -> None:
        now_s[0] += seconds
        if len(evaluated_batches) == 1:  # two batches land during the first sleep
            for lag_ms in (6_000, 1_000):
                store_snapshots(engine, [snapshot(B, int(now_s[0] * 1000) - lag_ms, p_model=0.50,
                                                           yes_bid=49.0, yes_ask=51.0)])

    def on_tick(tick: OpportunityTick) -> None:
        evaluated_batches.append((tick.status, tick.asof_ts))

    run_opportunity_loop(engine, LedgerParams(), interval_s=10.0, duration_s=15.0, emit_passes=True,
                         on_tick=on_tick, clock=lambda: now_s[0], sleep=sleep)
    later = int((NOW / 1000 + 10.0) * 1000)
    assert evaluated_batches == [("ok", NOW - 1_000), ("ok", later - 6_000), ("ok", later - 1_000)]
    assert [row[0] for row in _ledger(engine)] == [NOW - 1_000, later - 6_000, later - 1_000]
    engine.dispose()

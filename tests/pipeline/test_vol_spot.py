"""Backfilled candles warm up volatility after downtime: the estimator's spot series is the ticks, completed from
1-minute candles in minutes without a tick, each candle visible only from its end on; ticks win where both exist;
the live tick and the history path build the same series."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import Engine, text

from kbtc.db.engine import make_engine
from kbtc.db.store import read_frame, upsert
from kbtc.edge.volatility import VolParams, estimate_volatility
from kbtc.pipeline.edge_history import load_history
from kbtc.pipeline.edge_inputs import load_edge_inputs
from kbtc.pipeline.edges import EdgeSettings, compute_edge_tick
from kbtc.pipeline.vol_spot import complete_with_candles, needs_candles

MINUTE = 60_000
T0 = 29_916_667 * MINUTE  # the collector restarts at T0 − 10 min; a whole minute
RESTART = T0 - 10 * MINUTE
LOOKBACK_S = VolParams().lookback_s
SETTINGS = EdgeSettings(persist_vol=False)


def price_path() -> tuple[np.ndarray, np.ndarray]:
    """One price a second, from 80 minutes before T0 to an hour after it (σ ≈ 0.5 a year)."""
    ts = np.arange(T0 - 80 * MINUTE, T0 + 60 * MINUTE + 1, 1000, dtype=np.int64)
    rng = np.random.default_rng(7)
    return ts, 100_000 * np.exp(np.cumsum(rng.normal(0, 0.5 / 5615.7, ts.size)))


def candle_rows(starts: list[int], *, scale: float = 1.0, product: str = "BTC-USD",
                source: str = "coinbase_advanced") -> list[dict[str, object]]:
    ts, price = price_path()
    rows = []
    for start in starts:
        close = float(price[np.searchsorted(ts, start + 59_000)]) * scale
        rows.append({"product_id": product, "source": source, "granularity_s": 60, "start_ts": start,
                     "open": close, "high": close, "low": close, "close": close, "volume": 1.0, "received_ts": 0})
    return rows


def downtime_candles() -> list[int]:
    """Backfilled minutes: from before the lookback of T0 up to the restart."""
    return list(range(T0 - 70 * MINUTE, RESTART, MINUTE))


@pytest.fixture
def engine(migrated_url: str) -> Engine:
    """Ticks every 2 s from the restart on; before it only the backfilled candles (and noise the loaders skip)."""
    eng = make_engine(migrated_url)
    ts, price = price_path()
    live = (ts >= RESTART) & ((ts - RESTART) % 2000 == 0)
    upsert(eng, "spot_ticks", pl.DataFrame({
        "product_id": "BTC-USD", "source": "coinbase_advanced", "tick_ts": ts[live], "venue_time_ns": ts[live] * 1_000_000,
        "received_ts": ts[live], "price": price[live], "best_bid": price[live] - 0.005, "best_ask": price[live] + 0.005,
    }))
    upsert(eng, "spot_candles", candle_rows(downtime_candles()))
    # Another product and a 5-minute candle are not this estimator's; an Exchange duplicate loses to Advanced Trade.
    upsert(eng, "spot_candles", candle_rows([T0 - 30 * MINUTE], scale=3.0, product="ETH-USD"))
    upsert(eng, "spot_candles", [{**candle_rows([T0 - 40 * MINUTE], scale=3.0)[0], "granularity_s": 300}])
    upsert(eng, "spot_candles", candle_rows([T0 - 20 * MINUTE], scale=3.0, source="coinbase_exchange"))
    yield eng  # type: ignore[misc]
    eng.dispose()


def vol_at(engine: Engine, asof: int) -> dict[str, object]:
    inputs = load_edge_inputs(engine, asof, series=["KXBTCD"], product_id="BTC-USD", spot_lookback_s=LOOKBACK_S)
    return estimate_volatility(inputs.vol_spot, [asof]).row(0, named=True)


def test_candles_warm_up_sigma_where_ticks_alone_are_not_ready(engine: Engine) -> None:
    inputs = load_edge_inputs(engine, T0, series=["KXBTCD"], product_id="BTC-USD", spot_lookback_s=LOOKBACK_S)
    ticks_only = estimate_volatility(inputs.spot, [T0]).row(0, named=True)
    assert ticks_only["sigma_status"] == "insufficient_span"  # ten minutes of ticks
    warmed = estimate_volatility(inputs.vol_spot, [T0]).row(0, named=True)
    assert warmed["sigma_status"] == "ok"
    assert warmed["vol_span_s"] == LOOKBACK_S and warmed["vol_points"] > ticks_only["vol_points"]
    assert 0.3 < warmed["sigma_annual"] < 0.7

    # Computed from both: the candles' closes at their ends (those ending in the lookback), then the ticks.
    start = T0 - round(LOOKBACK_S * 1000)
    candles = pl.DataFrame(candle_rows([s for s in downtime_candles() if s + MINUTE >= start])).select(
        (pl.col("start_ts") + MINUTE).alias("ts"), pl.col("close").alias("price"),
        pl.lit(None, pl.Float64).alias("best_bid"), pl.lit(None, pl.Float64).alias("best_ask"))
    expected = pl.concat([candles, inputs.spot]).sort("ts", maintain_order=True)
    assert_frame_equal(inputs.vol_spot, expected)
    assert estimate_volatility(expected, [T0]).row(0, named=True) == warmed

    # The live tick prices with it and records it as ready.
    compute_edge_tick(engine, T0)
    stored = read_frame(engine, "SELECT status, sigma_annual FROM vol_estimates WHERE asof_ts = :t", {"t": T0})
    assert stored.rows() == [("ok", pytest.approx(warmed["sigma_annual"]))]


def test_no_candle_is_used_before_it_ended(engine: Engine) -> None:
    # The backfilled minute [RESTART − 2 min, RESTART − 1 min) counts from its end on, not before.
    before, at = RESTART - 90_000, RESTART - 60_000
    baseline = {asof: vol_at(engine, asof) for asof in (before, at)}
    history = load_history(engine, before, at, SETTINGS)
    upsert(engine, "spot_candles", candle_rows([RESTART - 2 * MINUTE], scale=1.2), on_conflict="update")
    assert vol_at(engine, before) == baseline[before]
    assert vol_at(engine, at) != baseline[at]  # visible once it ended
    perturbed = load_history(engine, before, at, SETTINGS)
    for inputs in (history, perturbed):
        assert estimate_volatility(inputs.vol_spot, [before]).row(0, named=True) == baseline[before]
    assert estimate_volatility(perturbed.vol_spot, [at]).row(0, named=True) == vol_at(engine, at)


def test_ticks_win_over_candles(engine: Engine) -> None:
    baseline = vol_at(engine, T0)
    # Wild candles for every minute with ticks change nothing…
    upsert(engine, "spot_candles", candle_rows(list(range(RESTART, T0, MINUTE)), scale=1.5))
    assert vol_at(engine, T0) == baseline
    # …and one tick in a backfilled minute replaces that minute's candle.
    tick_ts = RESTART - 30 * MINUTE + 5_000
    upsert(engine, "spot_ticks", [{"product_id": "BTC-USD", "source": "coinbase_advanced", "tick_ts": tick_ts,
                                   "venue_time_ns": tick_ts * 1_000_000, "received_ts": tick_ts, "price": 90_000.0}])
    spot = load_edge_inputs(engine, T0, series=["KXBTCD"], product_id="BTC-USD", spot_lookback_s=LOOKBACK_S).vol_spot
    assert tick_ts in spot["ts"].to_list()
    assert tick_ts - 5_000 + MINUTE not in spot["ts"].to_list()


def test_history_builds_the_live_series(engine: Engine) -> None:
    # A second, 90-second outage: the minute [T0 − 8 min, T0 − 7 min) has ticks in its first half only (its wild
    # candle is never used), the next one none. As-of times include lookbacks that start on a backfilled
    # minute's end (T0 + 55 min: RESTART) and inside the half-ticked minute (the last: T0 − 7 min − 20 s), where
    # the live loader must see the ticks before its lookback to know that minute had any.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM spot_ticks WHERE tick_ts >= :a AND tick_ts < :b"),
                     {"a": T0 - 450_000, "b": T0 - 6 * MINUTE})
    upsert(engine, "spot_candles", candle_rows([T0 - 8 * MINUTE], scale=1.5) + candle_rows([T0 - 7 * MINUTE]))
    asofs = [RESTART - 90_000, RESTART, T0, T0 + 30 * MINUTE, T0 + 55 * MINUTE, T0 + 55 * MINUTE + 20_000,
             T0 + 58 * MINUTE - 20_000]
    history = load_history(engine, asofs[0], asofs[-1], SETTINGS)
    batched = estimate_volatility(history.vol_spot, asofs)
    live = pl.DataFrame([vol_at(engine, asof) for asof in asofs], schema=batched.schema)
    assert_frame_equal(batched, live, check_exact=False, rel_tol=1e-12, abs_tol=0)
    assert batched["sigma_status"].to_list()[:3] == ["ok", "ok", "ok"]


def test_no_candle_read_while_ticks_cover_the_lookback(engine: Engine) -> None:
    asof = T0 + 58 * MINUTE  # the lookback starts after the restart: ticks every 2 s throughout
    inputs = load_edge_inputs(engine, asof, series=["KXBTCD"], product_id="BTC-USD", spot_lookback_s=LOOKBACK_S)
    assert inputs.vol_spot is inputs.spot
    ticks = pl.Series([10_000, 40_000, 100_000], dtype=pl.Int64)
    assert not needs_candles(ticks, 0, 160_000)
    assert needs_candles(ticks, 0, 160_001)  # the tail: [100 s, 160 s) could be tickless
    assert needs_candles(ticks, -50_000, 160_000)  # the head: [−50 s, 10 s)
    assert needs_candles(pl.Series([0, 60_001], dtype=pl.Int64), 0, 60_001)
    assert not needs_candles(pl.Series([], dtype=pl.Int64), 0, 59_999)


def test_completion_keeps_ticks_and_their_order() -> None:
    ticks = pl.DataFrame({"ts": [60_000, 130_000], "price": [1.0, 2.0], "best_bid": [0.9, None],
                          "best_ask": [1.1, None]})
    candles = pl.DataFrame({"start_ts": [0, 60_000, 120_000, 180_000, 0],
                            "source": ["coinbase_exchange", "coinbase_advanced", "coinbase_advanced",
                                       "coinbase_advanced", "coinbase_advanced"],
                            "close": [7.0, 8.0, 9.0, 10.0, 6.0]})
    out = complete_with_candles(ticks, candles)
    # [0, 60 s): tickless, Advanced Trade's close at its end, before the tick at the same time; the minutes
    # holding the two ticks keep them; [180 s, 240 s) is tickless.
    assert out.rows() == [(60_000, 6.0, None, None), (60_000, 1.0, 0.9, 1.1), (130_000, 2.0, None, None),
                          (240_000, 10.0, None, None)]
    assert out.schema == ticks.schema
    assert complete_with_candles(ticks, candles.clear()) is ticks

"""Volatility estimates are stored in `vol_estimates`, idempotently, with their status and parameters."""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from kbtc.db.engine import make_engine
from kbtc.db.store import read_frame
from kbtc.edge.volatility import VolParams, estimate_volatility
from kbtc.pipeline.volatility import persist_vol_estimates

T0 = 1_795_000_000_000


def test_persist_round_trip_and_idempotent(migrated_url: str) -> None:
    rng = np.random.default_rng(4)
    ts = T0 + np.arange(0, 4_000_000, 500, dtype=np.int64)
    mid = 95_000 * np.exp(np.cumsum(rng.normal(0, 6e-5, ts.shape[0])))
    spot = pl.DataFrame({"ts": ts, "price": mid, "best_bid": mid - 0.005, "best_ask": mid + 0.005})
    asof = [T0 + 60_000, T0 + 3_999_000]
    params = VolParams()
    frame = estimate_volatility(spot, asof, params)
    engine = make_engine(migrated_url)
    assert persist_vol_estimates(engine, frame, "BTC-USD", params) == 2
    assert persist_vol_estimates(engine, frame, "BTC-USD", params) == 2
    stored = read_frame(engine, "SELECT * FROM vol_estimates ORDER BY asof_ts")
    assert stored.height == 2
    assert stored["status"].to_list() == frame["sigma_status"].to_list() == ["insufficient_span", "ok"]
    assert stored["sigma_annual"].to_list() == frame["sigma_annual"].to_list()
    assert stored["points"].to_list() == frame["vol_points"].to_list()
    assert set(stored["method"]) == {"ewma"}
    assert json.loads(stored["params_json"][0])["half_life_s"] == params.half_life_s
    engine.dispose()

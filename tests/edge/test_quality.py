"""The off-grid check: markets of one grid range (checked column by column) and of several (matched price by
price) flag exactly what the general one-row-per-price match flags."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from kbtc.edge.quality import _off_grid_rows_any, off_grid_rows, price_grids


def test_off_grid_rows_equal_the_general_match_on_adversarial_quotes() -> None:
    rng = np.random.default_rng(11)
    n = 4_000
    structures = np.array(["linear_cent", "deci_cent", "tapered_deci_cent", "unknown", None], dtype=object)
    ranges = [None, json.dumps([{"start": "0.0000", "end": "1.0000", "step": "0.0100"}]),
              json.dumps([{"start": "0.0000", "end": "0.1000", "step": "0.0010"},
                          {"start": "0.1000", "end": "0.9000", "step": "0.0100"},
                          {"start": "0.9000", "end": "1.0000", "step": "0.0010"}]),
              json.dumps([{"start": "0.2000", "end": "0.8000", "step": "0.0500"}]),
              json.dumps([{"start": "x", "end": "1.0000", "step": "0.0100"}])]  # unparsable start: null bound
    markets = pl.DataFrame({
        "market_ticker": [f"M{i}" for i in range(n)],
        "price_level_structure": structures[rng.integers(0, len(structures), n)],
        "price_ranges": pl.Series([ranges[k] for k in rng.integers(0, len(ranges), n)], dtype=pl.String),
    })

    def prices() -> pl.Series:
        whole = rng.integers(-1, 102, n).astype(float)
        tenths = np.round(rng.uniform(0, 100, n), 1)
        fine = np.round(rng.uniform(0, 100, n), 4)
        pick = rng.integers(0, 4, n)
        values = np.where(pick == 0, whole, np.where(pick == 1, tenths, fine))
        values[rng.random(n) < 0.05] = np.nan
        return pl.Series(values).scatter(np.flatnonzero(rng.random(n) < 0.1), None)  # nulls too

    # One quote per (as-of time, market), as the engine has.
    quotes = pl.DataFrame({"asof_ts": rng.integers(0, 3, n), "market_ticker": [f"M{i}" for i in rng.permutation(n)],
                           "yes_bid_cents": prices(), "yes_ask_cents": prices(), "no_bid_cents": prices(),
                           "no_ask_cents": prices()})
    grids = price_grids(markets)
    assert grids.group_by("market_ticker").len()["len"].max() == 3  # both kinds of market are exercised
    flagged = off_grid_rows(quotes, grids).sort("asof_ts", "market_ticker")
    assert 0 < flagged.height < quotes.height
    assert_frame_equal(flagged, _off_grid_rows_any(quotes, grids).sort("asof_ts", "market_ticker"))

"""The streaming morsel size kbtc sets: an operator's choice wins, and prices do not depend on it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from kbtc.edge.params import EdgeParams
from kbtc.edge.pricing import price
from kbtc.edge.streaming import STREAMING_CHUNK_ROWS, apply_streaming_chunk_size

VARIABLE = "POLARS_IDEAL_MORSEL_SIZE"


@pytest.fixture
def restore_morsel_size() -> Iterator[None]:
    """Put the process's morsel size back as it was (Polars re-reads the variable only when told to)."""
    before = os.environ.get(VARIABLE)
    yield
    pl.Config.set_streaming_chunk_size(int(before) if before is not None else None)


def _chunks_of_a_streamed_frame(rows: int) -> int:
    return pl.DataFrame({"a": range(rows)}).lazy().with_columns(b=pl.col("a") * 2).collect().n_chunks()


def test_importing_the_engine_sets_the_morsel_size() -> None:
    # A fresh interpreter without the variable: what every kbtc process that prices gets.
    env = {k: v for k, v in os.environ.items() if k != VARIABLE}
    code = (
        "import os, polars as pl, kbtc.edge\n"
        f"frame = pl.DataFrame({{'a': range({4 * STREAMING_CHUNK_ROWS})}})\n"
        "print(os.environ['POLARS_IDEAL_MORSEL_SIZE'], frame.lazy().with_columns(b=pl.col('a') * 2).collect().n_chunks())"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(STREAMING_CHUNK_ROWS), "4"]


def test_an_operators_morsel_size_wins(restore_morsel_size: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, "5000")
    apply_streaming_chunk_size(777)
    assert os.environ[VARIABLE] == "5000"


def test_unset_morsel_size_is_set(restore_morsel_size: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VARIABLE)
    apply_streaming_chunk_size(1000)
    assert os.environ[VARIABLE] == "1000"
    assert _chunks_of_a_streamed_frame(10_000) == 10


def test_prices_do_not_depend_on_the_morsel_size(restore_morsel_size: None) -> None:
    rng = np.random.default_rng(11)
    n = 20_000
    kinds = np.array(["greater", "less", "between", "greater_or_equal", "less_or_equal"])[rng.integers(0, 5, n)]
    floor = 100_000 + rng.normal(0, 1_500, n)
    frame = pl.DataFrame(
        {
            "model_spot_usd": 100_000 + rng.normal(0, 2_000, n),
            "sigma_annual": rng.uniform(0.0, 1.2, n),
            "horizon_s": rng.uniform(-5, 3_600, n),
            "strike_type": kinds,
            "floor_strike": np.where(np.isin(kinds, ["less", "less_or_equal"]), np.nan, floor),
            "cap_strike": np.where(np.isin(kinds, ["greater", "greater_or_equal"]), np.nan, floor + 500),
            "fixed_sum_usd": 100_000 * 30 + rng.normal(0, 1_000, n),
            "basis_std_usd": rng.uniform(0, 10, n),
            "yes_ask_used_cents": np.round(rng.uniform(1, 99, n), 2),
            "no_ask_used_cents": np.round(rng.uniform(1, 99, n), 2),
            "contracts": rng.integers(1, 200, n).astype(float),
            "fee_type": "quadratic",
            "fee_multiplier": 1.0,
        }
    ).with_columns(pl.col("floor_strike", "cap_strike").fill_nan(None))
    priced = []
    for rows in (997, 100_000):
        pl.Config.set_streaming_chunk_size(rows)
        priced.append(price(frame.lazy(), EdgeParams()).collect())
    assert priced[0]["p_model"].null_count() < n
    assert_frame_equal(priced[0], priced[1])

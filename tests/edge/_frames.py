"""Helpers for the edge-engine tests: build probability input frames."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from kbtc.edge.probability import with_probability


def prob_frame(
    *,
    spot: float | Sequence[float],
    sigma: float | Sequence[float],
    horizon_s: float | Sequence[float],
    strike_type: str | Sequence[str],
    floor: float | Sequence[float | None] | None = None,
    cap: float | Sequence[float | None] | None = None,
    fixed_sum: float | Sequence[float | None] | None = None,
    basis_std: float | Sequence[float | None] | None = None,
) -> pl.DataFrame:
    """A frame of probability inputs; scalars broadcast to the longest list."""
    columns = {
        "model_spot_usd": spot,
        "sigma_annual": sigma,
        "horizon_s": horizon_s,
        "strike_type": strike_type,
        "floor_strike": floor,
        "cap_strike": cap,
        "fixed_sum_usd": fixed_sum,
        "basis_std_usd": basis_std,
    }
    n = max((len(v) for v in columns.values() if isinstance(v, list | tuple)), default=1)
    data = {k: list(v) if isinstance(v, list | tuple) else [v] * n for k, v in columns.items()}
    schema = {k: (pl.String if k == "strike_type" else pl.Float64) for k in data}
    return pl.DataFrame(data, schema=schema)


def probabilities(frame: pl.DataFrame, mode: str = "average", column: str = "p_model_raw") -> list[float | None]:
    """Run the probability step and return one column."""
    return with_probability(frame.lazy(), mode=mode).collect()[column].to_list()  # type: ignore[arg-type]

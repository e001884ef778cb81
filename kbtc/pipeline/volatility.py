"""Persist volatility estimates: one `vol_estimates` row per (product, as-of time, method), idempotently."""

from __future__ import annotations

import polars as pl
from sqlalchemy import Engine

from kbtc.db.schema import VolEstimate
from kbtc.db.store import upsert
from kbtc.edge.volatility import VolParams, vol_estimate_rows


def persist_vol_estimates(engine: Engine, frame: pl.DataFrame, product_id: str, params: VolParams) -> int:
    """Upsert the output of `estimate_volatility` for `product_id`; return the rows written.

    Re-running an as-of time replaces its row (same natural key), so replays never duplicate estimates.
    """
    return upsert(engine, VolEstimate, vol_estimate_rows(frame, product_id, params))

"""UI artifacts of the pipeline, each under a fixed key so the Prefect UI keeps a versioned history:

- `kbtc-latest-edges`        the newest edge tick: priced markets by best EV, then the skip reasons
- `kbtc-take-opportunities`  the TAKE decisions of the newest ledger tick
- `kbtc-data-health`         freshness per stream, feed events and rejects over the last hour (published by
                             score-and-settle every 10 minutes, and by each pipeline cycle)

(The report flow publishes `kbtc-model-performance`, `kbtc-report-*` and `kbtc-plot-*`: flows/report.py.)
"""

from __future__ import annotations

from typing import Any

import polars as pl
from prefect.artifacts import create_table_artifact

from kbtc.pipeline.health import DataHealth

EDGES_KEY = "kbtc-latest-edges"
TAKES_KEY = "kbtc-take-opportunities"
HEALTH_KEY = "kbtc-data-health"
_EDGE_COLUMNS = ("market_ticker", "close_ts", "skip_reason", "p_model", "p_market", "yes_bid_cents",
                 "yes_ask_cents", "ev_yes_dollars", "ev_no_dollars", "sigma_annual")
_TAKE_COLUMNS = ("market_ticker", "side", "snapshot_asof_ts", "p_model", "p_market", "price_cents", "fee_dollars",
                 "ev_net_dollars", "kelly_fraction", "contracts")


def json_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows for a table artifact: non-finite floats (NaN, ±inf) become null, which JSON can carry."""
    floats = [name for name, dtype in frame.schema.items() if dtype.is_float()]
    cleaned = frame.with_columns(pl.when(pl.col(name).is_finite()).then(pl.col(name)).alias(name) for name in floats)
    return cleaned.to_dicts()


def edges_table(edges: pl.DataFrame, top: int = 50) -> pl.DataFrame:
    """The newest tick's markets: priced ones first (best EV of either side first), then skipped ones."""
    best_ev = pl.max_horizontal(pl.col("ev_yes_dollars"), pl.col("ev_no_dollars"))
    ordered = edges.with_columns(best_ev.alias("_best")).sort(
        [pl.col("skip_reason").is_not_null(), "_best", "market_ticker"], descending=[False, True, False],
        nulls_last=True)
    return ordered.select([c for c in _EDGE_COLUMNS if c in edges.columns]).head(top)


def publish_edges(edges: pl.DataFrame) -> str:
    """Publish the newest edge tick; return the key."""
    priced = int(edges["skip_reason"].is_null().sum()) if edges.height else 0
    _publish_table(json_rows(edges_table(edges)), EDGES_KEY,
                   f"Newest edge tick: {priced} priced of {edges.height} markets")
    return EDGES_KEY


def publish_takes(decisions: pl.DataFrame) -> str:
    """Publish the TAKE decisions of the newest ledger tick (an empty table when there were none)."""
    takes = decisions.filter(pl.col("decision") == "TAKE") if decisions.height else decisions
    columns = [c for c in _TAKE_COLUMNS if c in takes.columns]
    _publish_table(json_rows(takes.select(columns)), TAKES_KEY,
                   f"{takes.height} TAKE of {decisions.height} decisions")
    return TAKES_KEY


def health_rows(health: DataHealth) -> list[dict[str, object]]:
    """One table: freshness per stream, then feed events and rejects (as `kind` rows)."""
    freshness = health.freshness.select(
        pl.lit("freshness").alias("kind"), pl.col("stream").alias("name"),
        pl.col("age_s").alias("value"), pl.col("rows_in_window").alias("count"))
    events = health.feed_events.select(
        pl.lit("feed_event").alias("kind"), pl.concat_str("feed", pl.lit(":"), "kind").alias("name"),
        pl.col("total_duration_s").cast(pl.Float64).alias("value"), pl.col("events").cast(pl.Int64).alias("count"))
    rejects = health.rejects.select(
        pl.lit("reject").alias("kind"), pl.concat_str("source", pl.lit(":"), "reason").alias("name"),
        pl.lit(None, pl.Float64).alias("value"), pl.col("rejects").cast(pl.Int64).alias("count"))
    schema = {"kind": pl.String, "name": pl.String, "value": pl.Float64, "count": pl.Int64}
    frames = [frame.cast(schema) for frame in (freshness, events, rejects)]  # type: ignore[arg-type]
    return json_rows(pl.concat(frames))


def publish_health(health: DataHealth) -> str:
    """Publish the data-health table (value: age in s for freshness, total duration in s for feed events)."""
    _publish_table(health_rows(health), HEALTH_KEY,
                   "Data health: stream age (s) and rows, feed events, rejects")
    return HEALTH_KEY


def _publish_table(rows: list[dict[str, object]], key: str, description: str) -> None:
    # `_sync=True` is the switch of Prefect's `async_dispatch` (untyped): the async `pipeline` flow publishes
    # from its worker thread, where Prefect would otherwise return an un-awaited coroutine and publish nothing.
    create_table_artifact(table=rows, key=key, description=description, _sync=True)  # type: ignore[call-arg]

"""Export tables to Parquet or CSV for notebooks (time columns as UTC datetimes).

Rows are fetched in chunks from one cursor; CSV is streamed to disk chunk by chunk, Parquet is assembled in
Arrow memory (compact) and written once.

`edge_snapshots` rows come with their model parameters: `contracts` and `params_json` of the `model_params` row
their `params_id` refers to, joined in Polars (the few params rows are read once; every row of a set shares one
copy of its text in memory, and Parquet stores it once per page).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl
from sqlalchemy import Engine, text

from kbtc.db.schema import EdgeSnapshot, metadata
from kbtc.db.store import read_frame

ExportFormat = Literal["parquet", "csv"]
_TS_SUFFIX = "_ts"


def _with_datetimes(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.from_epoch(pl.col(name), time_unit="ms").dt.cast_time_unit("ms").dt.replace_time_zone("UTC").alias(name)
        for name, dtype in frame.schema.items()
        if name.endswith(_TS_SUFFIX) and dtype.is_integer()
    )


_PARAMS_SCHEMA = {"params_id": pl.String, "contracts": pl.Float64, "params_json": pl.String}


def _model_params(engine: Engine) -> pl.DataFrame:
    """Every params set, to join onto exported snapshots by `params_id`."""
    frame = read_frame(engine, "SELECT params_id, contracts, params_json FROM model_params", schema=_PARAMS_SCHEMA)
    return frame.cast(_PARAMS_SCHEMA)  # type: ignore[arg-type]


def export_table(
    engine: Engine,
    table: str,
    output: Path,
    *,
    fmt: ExportFormat = "parquet",
    since_ts: int | None = None,
    chunk_rows: int = 250_000,
) -> int:
    """Write `table` (optionally only rows whose first `*_ts` column ≥ `since_ts`) to `output`; return rows.

    `edge_snapshots` gets two more columns, `contracts` and `params_json` of its `model_params` row.
    """
    if table not in metadata.tables:
        raise ValueError(f"unknown table {table!r}; choose from: {', '.join(sorted(metadata.tables))}")
    sa_table = metadata.tables[table]
    columns = [column.name for column in sa_table.columns]
    ts_column = next((name for name in columns if name.endswith(_TS_SUFFIX)), None)
    order = ", ".join(column.name for column in sa_table.primary_key.columns)
    where = f"WHERE {ts_column} >= :since" if since_ts is not None and ts_column else ""
    # Names come from our metadata, values are bound.
    sql = text(f"SELECT {', '.join(columns)} FROM {table} {where} ORDER BY {order}")  # noqa: S608
    params = _model_params(engine) if table == EdgeSnapshot.__tablename__ else None
    columns_out = columns if params is None else [*columns, "contracts", "params_json"]
    output.parent.mkdir(parents=True, exist_ok=True)
    parts: list[pl.DataFrame] = []
    written = 0
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True).execute(sql, {"since": since_ts})
        while rows := result.fetchmany(chunk_rows):
            chunk = _with_datetimes(
                pl.DataFrame([tuple(r) for r in rows], schema=columns, orient="row", infer_schema_length=None)
            )
            if params is not None:
                chunk = chunk.with_columns(pl.col("params_id").cast(pl.String)).join(
                    params, on="params_id", how="left", maintain_order="left"
                )
            if fmt == "csv":
                with output.open("a" if written else "w", encoding="utf-8") as handle:
                    chunk.write_csv(handle, include_header=written == 0)
            else:
                parts.append(chunk)
            written += chunk.height
    if fmt == "parquet":
        empty = pl.DataFrame(schema=dict.fromkeys(columns_out, pl.Null))
        (pl.concat(parts, how="vertical_relaxed") if parts else empty).write_parquet(output)
    elif written == 0:
        pl.DataFrame(schema=dict.fromkeys(columns_out, pl.Null)).write_csv(output)
    return written

"""Bulk idempotent writes and reads that return Polars frames.

`upsert` compiles one dialect-aware `INSERT ... ON CONFLICT (<natural key>) DO UPDATE/NOTHING` statement
and hands the rows straight to the driver's `executemany` in batches, each batch its own short write
transaction: that keeps SQLAlchemy's per-row overhead out of the hot path (see benchmarks/store.py) while
staying portable across SQLite and PostgreSQL.

`copy_upsert` is the same upsert for large frames on PostgreSQL: Polars writes the frame as CSV, `COPY` loads it
into a temporary table and one `INSERT … SELECT … ON CONFLICT` applies it — no Python object per value on the way.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import polars as pl
from sqlalchemy import Column, Connection, Dialect, Engine, Table, UniqueConstraint, func, select, text
from sqlalchemy import column as sql_column
from sqlalchemy import table as sql_table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Executable

from kbtc.db.engine import write_transaction
from kbtc.db.schema import Base

DEFAULT_BATCH_ROWS = 50_000
ConflictAction = Literal["update", "ignore"]


def table_of(target: Table | type[Base] | str) -> Table:
    """Resolve a table name, ORM class or Table to the Table."""
    if isinstance(target, Table):
        return target
    if isinstance(target, str):
        return Base.metadata.tables[target]
    table = target.__table__
    assert isinstance(table, Table)
    return table


def natural_key(table: Table) -> tuple[str, ...]:
    """The columns of the table's natural key: its first unique constraint, else its primary key.

    Surrogate integer ids are never a natural key, so tables that have one declare a unique constraint.
    """
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            return tuple(column.name for column in constraint.columns)
    return tuple(column.name for column in table.primary_key.columns)


def _frame_for_write(frame: pl.DataFrame, table: Table) -> pl.DataFrame:
    unknown = [name for name in frame.columns if name not in table.c]
    if unknown:
        raise ValueError(f"columns not in table {table.name}: {', '.join(unknown)}")
    conversions = [
        pl.col(name).dt.epoch("ms").alias(name)
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime)
    ]
    return frame.with_columns(conversions) if conversions else frame


def _on_conflict(
    stmt: Any,
    table: Table,
    key: Sequence[str],
    columns: Sequence[str],
    *,
    on_conflict: ConflictAction,
    update_columns: Sequence[str] | None,
    keep_when_null: Sequence[str] = (),
) -> Any:
    """`stmt` (a dialect INSERT) with its `ON CONFLICT (key)` clause: DO NOTHING, or DO UPDATE of
    `update_columns` (default: every non-key column), `keep_when_null` ones keeping a stored value over a null."""
    if update_columns is None:
        update_columns = [name for name in columns if name not in key]
    if on_conflict == "ignore" or not update_columns:
        return stmt.on_conflict_do_nothing(index_elements=list(key))
    excluded = stmt.excluded
    set_: dict[str, Any] = {}
    for name in update_columns:
        column: Column[Any] = table.c[name]
        set_[name] = func.coalesce(excluded[name], column) if name in keep_when_null else excluded[name]
    return stmt.on_conflict_do_update(index_elements=list(key), set_=set_)


def upsert_sql(
    engine: Engine | Connection,
    table: Table,
    columns: Sequence[str],
    *,
    on_conflict: ConflictAction = "update",
    update_columns: Sequence[str] | None = None,
    keep_when_null: Sequence[str] = (),
    key: Sequence[str] | None = None,
) -> tuple[str, tuple[str, ...] | None]:
    """Compile the upsert for `columns`; return (SQL, positional parameter order or None for named).

    Compiled once per dialect, table and column set (a collector or an edge tick asks every batch: ~0.5 ms).
    """
    return _compiled_upsert(
        engine.dialect,
        table,
        tuple(columns),
        on_conflict=on_conflict,
        update_columns=None if update_columns is None else tuple(update_columns),
        keep_when_null=tuple(keep_when_null),
        key=tuple(key or natural_key(table)),
    )


@functools.lru_cache(maxsize=256)
def _compiled_upsert(
    dialect: Dialect,
    table: Table,
    columns: tuple[str, ...],
    *,
    on_conflict: ConflictAction,
    update_columns: tuple[str, ...] | None,
    keep_when_null: tuple[str, ...],
    key: tuple[str, ...],
) -> tuple[str, tuple[str, ...] | None]:
    missing_key = [name for name in key if name not in columns]
    if missing_key:
        raise ValueError(f"rows for {table.name} lack natural-key columns: {', '.join(missing_key)}")
    if dialect.name == "sqlite":
        stmt: Any = sqlite.insert(table)
    elif dialect.name == "postgresql":
        stmt = postgresql.insert(table)
    else:
        raise NotImplementedError(f"upsert is not implemented for dialect {dialect.name}")
    stmt = _on_conflict(stmt, table, key, columns, on_conflict=on_conflict, update_columns=update_columns,
                        keep_when_null=keep_when_null)
    compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
    order = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
    extra = sorted(set(order or ()) - set(columns))
    if extra:  # e.g. a Python-side column default: the schema uses server defaults instead
        raise ValueError(f"upsert into {table.name} would need parameters not in the rows: {extra}")
    return compiled.string, order


def upsert(
    engine: Engine,
    target: Table | type[Base] | str,
    rows: pl.DataFrame | Sequence[Mapping[str, Any]],
    *,
    on_conflict: ConflictAction = "update",
    update_columns: Sequence[str] | None = None,
    keep_when_null: Sequence[str] = (),
    key: Sequence[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> int:
    """Insert rows, resolving natural-key conflicts by updating (default) or ignoring; return rows sent.

    `rows` is a Polars frame (Datetime columns become epoch ms) or a sequence of dicts with the same keys.
    `keep_when_null` columns keep their stored value when the new one is null (never overwrite with nulls).
    Each batch of `batch_rows` is one short write transaction.
    """
    table = table_of(target)
    frame = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(list(rows), infer_schema_length=None)
    if frame.height == 0:
        return 0
    frame = _frame_for_write(frame, table)
    sql, order = upsert_sql(
        engine,
        table,
        frame.columns,
        on_conflict=on_conflict,
        update_columns=update_columns,
        keep_when_null=keep_when_null,
        key=key,
    )
    if order is not None:
        frame = frame.select(order)
    for start in range(0, frame.height, batch_rows):
        chunk = frame.slice(start, batch_rows)
        params: list[Any] = list(chunk.iter_rows()) if order is not None else chunk.to_dicts()
        with write_transaction(engine) as conn:
            conn.exec_driver_sql(sql, params)
    return frame.height


def upsert_in(
    conn: Connection,
    target: Table | type[Base] | str,
    rows: Sequence[Mapping[str, Any]],
    *,
    on_conflict: ConflictAction = "update",
) -> int:
    """`upsert` of a few rows (all with the same keys) inside the caller's transaction: one statement, no commit."""
    if not rows:
        return 0
    sql, order = upsert_sql(conn, table_of(target), list(rows[0]), on_conflict=on_conflict)
    params: list[Any] = [tuple(row[name] for name in order) for row in rows] if order is not None \
        else [dict(row) for row in rows]
    conn.exec_driver_sql(sql, params)
    return len(rows)


def copy_upsert(
    conn: Connection,
    target: Table | type[Base] | str,
    frame: pl.DataFrame,
    *,
    on_conflict: ConflictAction = "update",
    update_columns: Sequence[str] | None = None,
) -> int:
    """`upsert` of `frame` inside the caller's PostgreSQL transaction, sent with `COPY`; return rows sent.

    The CSV is Polars': floats in their shortest round-trip form (PostgreSQL reads them back exactly, NaN and
    ±inf included), nulls as empty fields, empty strings quoted. The staging table lives until the commit.
    The rows must not repeat a natural key (ValueError).
    """
    if conn.dialect.name != "postgresql":
        raise NotImplementedError(f"copy_upsert needs PostgreSQL, not {conn.dialect.name}")
    table = table_of(target)
    if frame.height == 0:
        return 0
    frame = _frame_for_write(frame, table)
    columns = frame.columns
    key = natural_key(table)
    if frame.select(pl.struct(list(key)).is_duplicated().any()).item():
        # INSERT … SELECT … ON CONFLICT cannot touch a row twice (executemany would let the last one win).
        raise ValueError(f"rows for {table.name} repeat a natural key: {', '.join(key)}")
    stage = f"kbtc_stage_{table.name}"
    names = ", ".join(f'"{name}"' for name in columns)
    # Names from the metadata (`_frame_for_write` rejects any other column): nothing user-supplied is interpolated.
    conn.exec_driver_sql(
        f'CREATE TEMPORARY TABLE IF NOT EXISTS "{stage}" (LIKE "{table.name}" INCLUDING DEFAULTS) ON COMMIT DROP'
    )
    conn.exec_driver_sql(f'TRUNCATE "{stage}"')  # a second call in the same transaction
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(f'COPY "{stage}" ({names}) FROM STDIN (FORMAT csv)') as copy:
            copy.write(frame.write_csv(include_header=False, quote_style="necessary"))
    finally:
        cursor.close()
    statement = postgresql.insert(table).from_select(
        columns, select(*(sql_column(name) for name in columns)).select_from(sql_table(stage))
    )
    conn.execute(_on_conflict(statement, table, key, columns, on_conflict=on_conflict, update_columns=update_columns))
    return frame.height


def read_frame(
    conn: Connection | Engine,
    query: Executable | str,
    params: Mapping[str, Any] | None = None,
    *,
    schema: Mapping[str, pl.DataType | type[pl.DataType]] | None = None,
) -> pl.DataFrame:
    """Run a query and return its rows as a Polars frame (an empty frame keeps the column names)."""
    if isinstance(conn, Engine):
        with conn.connect() as connection:
            return read_frame(connection, query, params, schema=schema)
    statement = text(query) if isinstance(query, str) else query
    result = conn.execute(statement, dict(params or {}))
    names = list(result.keys())
    data = result.fetchall()
    overrides = dict(schema or {})
    if not data:
        return pl.DataFrame(schema={name: overrides.get(name, pl.Null) for name in names})
    return pl.DataFrame(
        [tuple(row) for row in data],
        schema=names,
        orient="row",
        infer_schema_length=None,
        schema_overrides=overrides or None,
    )


def latest_quotes(
    conn: Connection | Engine,
    asof_ts: int,
    *,
    max_age_ms: int = 3_600_000,
    market_tickers: Iterable[str] | None = None,
) -> pl.DataFrame:
    """The newest quote per market with `quote_ts` in [asof − max_age, asof] (no look-ahead)."""
    tickers = list(market_tickers) if market_tickers is not None else None
    ticker_filter = ""
    params: dict[str, Any] = {"asof": asof_ts, "start": asof_ts - max_age_ms}
    if tickers is not None:
        if not tickers:
            return read_frame(conn, "SELECT * FROM quotes WHERE 1 = 0")
        names = [f"t{i}" for i in range(len(tickers))]
        ticker_filter = f"AND market_ticker IN ({', '.join(':' + n for n in names)})"
        params.update(zip(names, tickers, strict=True))
    sql = f"""
        SELECT * FROM (
            SELECT q.*, ROW_NUMBER() OVER (
                PARTITION BY market_ticker ORDER BY quote_ts DESC, received_ts DESC, source DESC
            ) AS rn
            FROM quotes q
            WHERE quote_ts <= :asof AND quote_ts >= :start {ticker_filter}
        ) ranked
        WHERE rn = 1
        ORDER BY market_ticker
    """  # noqa: S608 — only generated placeholder names are interpolated; values are bound
    return read_frame(conn, sql, params).drop("rn", strict=False)


def spot_ticks_between(
    conn: Connection | Engine, product_id: str, start_ts: int, end_ts: int
) -> pl.DataFrame:
    """Spot ticks of a product with `tick_ts` in [start_ts, end_ts], oldest first."""
    sql = """
        SELECT tick_ts, received_ts, price, best_bid, best_ask, best_bid_size, best_ask_size,
               sequence_num, source
        FROM spot_ticks
        WHERE product_id = :product AND tick_ts >= :start AND tick_ts <= :end
        ORDER BY tick_ts, venue_time_ns
    """
    return read_frame(conn, sql, {"product": product_id, "start": start_ts, "end": end_ts})


def count_rows(conn: Connection | Engine, target: Table | type[Base] | str) -> int:
    """Row count of a table."""
    table = table_of(target)
    # The table name comes from our metadata, never from input.
    frame = read_frame(conn, f"SELECT COUNT(*) AS n FROM {table.name}")  # noqa: S608
    return int(frame["n"][0])

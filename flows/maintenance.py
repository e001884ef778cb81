"""Database maintenance flows: migrate to the newest schema, and prune old raw market data (retention).

Artifacts: `kbtc-database-status` (rows per table after migration) and `kbtc-prune` (rows deleted per table, and
tape files removed).
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.common import flow_settings, run_name, task_options
from kbtc.config import Settings
from kbtc.db.migrate import open_engine, upgrade_database
from kbtc.pipeline.prune import PRUNABLE, PruneResult, prune
from kbtc.pipeline.status import table_counts


@task(name="upgrade-schema", **task_options(600))
def upgrade_schema(url: str) -> None:
    """Apply pending Alembic migrations."""
    upgrade_database(url)


@task(name="prune", **task_options(3600))
def prune_task(settings: Settings, older_than_ts: int, tables: tuple[str, ...], tapes: bool) -> PruneResult:
    """Delete raw rows (and tape files, with `tapes`) older than `older_than_ts`, in bounded batches."""
    engine = open_engine(settings.sqlalchemy_url)
    try:
        return prune(engine, older_than_ts=older_than_ts, tables=tables,
                     tape_root=settings.data_dir / "tape" if tapes else None)
    finally:
        engine.dispose()


@flow(name="migrate-database", flow_run_name=run_name("migrate-database"), timeout_seconds=900)
def migrate_database() -> dict[str, int | None]:
    """Bring the database to the newest schema; publish `kbtc-database-status` (rows per table)."""
    settings = flow_settings()
    upgrade_schema(settings.sqlalchemy_url)
    engine = open_engine(settings.sqlalchemy_url)
    try:
        counts = table_counts(engine)
    finally:
        engine.dispose()
    create_table_artifact(
        key="kbtc-database-status",
        table=[{"table": name, "rows": rows} for name, rows in counts.items()],
        description="Rows per table after migration",
    )
    get_run_logger().info("database migrated; %d tables", len(counts))
    return counts


@flow(name="prune", flow_run_name=run_name("prune-{older_than_days:g}d"), timeout_seconds=3900)
def prune_data(older_than_days: float = 30.0, tables: list[str] | None = None, tapes: bool = True) -> dict[str, Any]:
    """`kbtc prune` as a flow: delete raw market data (ticks, quotes, books, trades, feed events, rejects) older
    than `older_than_days`, and with `tapes` the tape files under `DATA_DIR/tape` on this machine; publish
    `kbtc-prune`. The catalog and the ledger are never pruned."""
    settings = flow_settings()
    cutoff_ts = int((time.time() - older_than_days * 86_400) * 1000)
    result = prune_task(settings, cutoff_ts, tuple(tables) if tables else tuple(PRUNABLE), tapes)
    deleted: list[dict[str, Any]] = [{"data": name, "deleted": count} for name, count in result.rows_deleted.items()]
    create_table_artifact(
        key="kbtc-prune",
        table=[*deleted, {"data": "tape files", "deleted": result.tape_files_removed}],
        description=f"Pruned data older than {older_than_days:g} days ({result.tape_bytes_removed:,} tape bytes)",
    )
    get_run_logger().info("pruned %d rows and %d tape files older than %g days",
                          sum(result.rows_deleted.values()), result.tape_files_removed, older_than_days)
    return {"rows_deleted": result.rows_deleted, "tape_files_removed": result.tape_files_removed,
            "tape_bytes_removed": result.tape_bytes_removed}

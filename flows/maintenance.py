"""Database maintenance flow: migrate to the newest schema and publish the row counts as an artifact."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.common import flow_settings, run_name, task_options
from kbtc.db.migrate import upgrade_database
from kbtc.pipeline.status import table_counts


@task(name="upgrade-schema", **task_options(600))
def upgrade_schema(url: str) -> None:
    """Apply pending Alembic migrations."""
    upgrade_database(url)


@flow(name="migrate-database", flow_run_name=run_name("migrate-database"), timeout_seconds=900)
def migrate_database() -> dict[str, int | None]:
    """Bring the database to the newest schema; publish `kbtc-database-status` (rows per table)."""
    settings = flow_settings()
    upgrade_schema(settings.sqlalchemy_url)
    counts = table_counts(settings)
    create_table_artifact(
        key="kbtc-database-status",
        table=[{"table": name, "rows": rows} for name, rows in counts.items()],
        description="Rows per table after migration",
    )
    get_run_logger().info("database migrated; %d tables", len(counts))
    return counts


"""Database status: where it is, which schema revision, how many rows each table holds."""

from __future__ import annotations

from rich.table import Table

from kbtc.config import Settings, mask_url_password
from kbtc.db.engine import make_engine
from kbtc.db.migrate import current_revision, head_revision
from kbtc.db.schema import metadata
from kbtc.db.store import count_rows


def table_counts(settings: Settings) -> dict[str, int | None]:
    """Row count per table (None for a table that does not exist yet)."""
    from sqlalchemy import inspect

    engine = make_engine(settings.sqlalchemy_url)
    try:
        existing = set(inspect(engine).get_table_names())
        return {
            name: (count_rows(engine, name) if name in existing else None)
            for name in sorted(metadata.tables)
        }
    finally:
        engine.dispose()


def database_status(settings: Settings) -> Table:
    """A rich table describing the database: URL, revision vs code head, row counts."""
    engine = make_engine(settings.sqlalchemy_url)
    try:
        revision = current_revision(engine)
    finally:
        engine.dispose()
    table = Table(
        "table",
        "rows",
        title=(
            f"{mask_url_password(settings.sqlalchemy_url)} — schema {revision or '(none)'}"
            f" (code head {head_revision()})"
        ),
    )
    for name, count in table_counts(settings).items():
        table.add_row(name, "—" if count is None else f"{count:,}")
    return table

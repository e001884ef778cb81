"""Database status: where it is, which schema revision, how many rows each table holds."""

from __future__ import annotations

from rich.table import Table
from sqlalchemy import Engine, inspect

from kbtc.config import mask_url_password
from kbtc.db.migrate import current_revision, head_revision
from kbtc.db.schema import metadata
from kbtc.db.store import count_rows


def table_counts(engine: Engine) -> dict[str, int | None]:
    """Row count per table (None for a table that does not exist yet)."""
    existing = set(inspect(engine).get_table_names())
    return {name: (count_rows(engine, name) if name in existing else None) for name in sorted(metadata.tables)}


def database_status(engine: Engine, url: str) -> Table:
    """A rich table describing the database at `url`: URL (password masked), revision vs code head, row counts."""
    table = Table(
        "table",
        "rows",
        title=f"{mask_url_password(url)} — schema {current_revision(engine) or '(none)'} (code head {head_revision()})",
    )
    for name, count in table_counts(engine).items():
        table.add_row(name, "—" if count is None else f"{count:,}")
    return table
